// Immutable TLS contexts, one per config generation: a server context for a
// Gateway server's `tls` (termination) and a client context for a
// DestinationRule's `tls` (origination). Each wraps one SSL_CTX with its
// credentials loaded and verification configured, and is shared by every
// worker and connection that uses it (std::shared_ptr<const ...>). When the
// config or a credential file changes the caller builds a new context and
// hands it to new connections; connections in flight keep theirs alive.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "userspace-proxy/tls/credentials.h"
#include "userspace-proxy/tls/openssl_ptr.h"
#include "userspace-proxy/tls/peer_identity.h"
#include "userspace-proxy/tls/session_cache.h"

namespace sluice::tls {

// TLS 1.2 is the floor: Istio's TLSV1_0/TLSV1_1 settings are raised to it.
enum class TlsVersion : uint8_t { kTls12, kTls13 };

std::string_view to_string(TlsVersion v);  // "TLSv1.2", "TLSv1.3"

// Gateway `tls.mode` values that terminate TLS (PASSTHROUGH and
// AUTO_PASSTHROUGH do not: no context for them).
enum class ServerTlsMode : uint8_t {
  kSimple,          // server certificate only
  kMutual,          // client certificate required, verified against ca_certificates
  kIstioMutual,     // as kMutual with the mesh identity files
  kOptionalMutual,  // client certificate verified if sent, not required
};

struct ServerTlsOptions {
  ServerTlsMode mode = ServerTlsMode::kSimple;
  // SIMPLE: cert_chain + private_key; (OPTIONAL_)MUTUAL: also ca_certificates.
  // Ignored for ISTIO_MUTUAL, which uses mesh_identity_dir.
  CertificateFiles files;
  std::string mesh_identity_dir = std::string(kDefaultMeshIdentityDir);
  // Client identities allowed (exact URI SAN, or DNS SAN with wildcard
  // rules); empty: any client certificate the CA vouches for.
  std::vector<std::string> subject_alt_names;
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  // TLS 1.2 cipher suites by OpenSSL/Envoy name (ECDHE-ECDSA-AES128-GCM-SHA256);
  // empty: ECDHE with AES-GCM or ChaCha20. TLS 1.3 suites are OpenSSL's.
  std::vector<std::string> cipher_suites;
  // ALPN protocols in preference order; empty: no ALPN negotiated (clients
  // then speak HTTP/1.1).
  std::vector<std::string> alpn;
};

class TlsServerContext {
 public:
  // Loads the credentials and builds the SSL_CTX. Null with *error set
  // ("<file>: <reason>" for credential problems).
  static std::shared_ptr<const TlsServerContext> create(const ServerTlsOptions& options, std::string* error);

  SSL_CTX* ssl_ctx() const { return ctx_.get(); }
  const ServerTlsOptions& options() const { return options_; }
  // The SANs of our own certificate (for logs: "serving as spiffe://...").
  const PeerIdentity& identity() const { return identity_; }
  // Client identities to check at the end of chain verification.
  const std::vector<std::string>& allowed_client_sans() const { return options_.subject_alt_names; }
  // What was loaded but will not work as one would think (a caCrl past its
  // nextUpdate or before its lastUpdate: every check against it fails), for
  // the log.
  const std::vector<std::string>& warnings() const { return warnings_; }

  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

 private:
  TlsServerContext() = default;
  ServerTlsOptions options_;
  PeerIdentity identity_;
  std::vector<std::string> warnings_;
  std::string alpn_wire_;  // ALPN list in wire format, for the select callback
  SslCtxPtr ctx_;
};

// DestinationRule `tls.mode` values that originate TLS.
enum class ClientTlsMode : uint8_t {
  kSimple,       // verify the server; no client certificate
  kMutual,       // also present files.cert_chain / files.private_key
  kIstioMutual,  // mesh identity as client certificate and trust root
};

struct ClientTlsOptions {
  ClientTlsMode mode = ClientTlsMode::kSimple;
  // MUTUAL: cert_chain + private_key. SIMPLE/MUTUAL: ca_certificates, empty
  // meaning the system's trusted roots. Ignored for ISTIO_MUTUAL.
  CertificateFiles files;
  std::string mesh_identity_dir = std::string(kDefaultMeshIdentityDir);
  // SNI sent to the upstream (a connection may override it); empty: none.
  std::string sni;
  // Accepted server identities (exact URI SAN such as a SPIFFE id, or a name
  // matched against DNS SANs with wildcard rules). Empty: see verify_sni_san.
  std::vector<std::string> subject_alt_names;
  // SIMPLE/MUTUAL only: skip chain and SAN verification entirely.
  bool insecure_skip_verify = false;
  // SIMPLE/MUTUAL without subject_alt_names: the server certificate must
  // name the SNI host (what Istio does with VERIFY_CERTIFICATE_AT_CLIENT;
  // Istio 1.4 checked the chain only, which this turns into when false).
  bool verify_sni_san = true;
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  std::vector<std::string> cipher_suites;  // as in ServerTlsOptions
  std::vector<std::string> alpn;           // offered, in order; empty: none
  // Sessions kept for resumption (keys: upstream + SNI); 0 disables it.
  size_t session_cache_size = 256;
};

class TlsClientContext {
 public:
  static std::shared_ptr<const TlsClientContext> create(const ClientTlsOptions& options, std::string* error);

  SSL_CTX* ssl_ctx() const { return ctx_.get(); }
  const ClientTlsOptions& options() const { return options_; }
  // Our client certificate's SANs (MUTUAL, ISTIO_MUTUAL), for logs.
  const PeerIdentity& identity() const { return identity_; }
  // The server identities a connection that sends `sni` must see; empty
  // when any verified certificate (or, with insecure_skip_verify, any
  // certificate) is acceptable.
  std::vector<std::string> expected_server_sans(std::string_view sni) const;
  bool verifies_server() const { return verify_; }
  // As TlsServerContext::warnings.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Shared, internally locked; sessions are only valid with this context.
  ClientSessionCache& session_cache() const { return sessions_; }

  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

 private:
  TlsClientContext() : sessions_(0) {}
  explicit TlsClientContext(size_t cache_size) : sessions_(cache_size) {}
  ClientTlsOptions options_;
  PeerIdentity identity_;
  std::vector<std::string> warnings_;
  bool verify_ = true;
  mutable ClientSessionCache sessions_;
  SslCtxPtr ctx_;
};

}  // namespace sluice::tls
