// The identity a certificate asserts, as Istio reads it: URI SANs (SPIFFE ids
// such as spiffe://cluster.local/ns/default/sa/sleep) and DNS SANs.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

namespace sluice::tls {

struct PeerIdentity {
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;

  bool empty() const { return uri_sans.empty() && dns_sans.empty(); }
  // "spiffe://a/ns/b/sa/c,DNS:x.example.com" style list for logs and errors:
  // URI SANs as they are, DNS SANs prefixed with "DNS:".
  std::string to_string() const;
};

// The SANs of `cert` (nullptr: none). Entries holding NUL bytes are dropped:
// they cannot be compared safely as C strings and no valid name contains one.
PeerIdentity certificate_identity(const X509* cert);

// The SANs of the certificate the peer of `ssl` presented (also after a
// resumed handshake: the session keeps the peer's certificate). Empty when
// the peer sent none.
PeerIdentity peer_identity(const SSL* ssl);

}  // namespace sluice::tls
