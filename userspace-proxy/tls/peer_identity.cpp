#include "userspace-proxy/tls/peer_identity.h"

#include <openssl/x509v3.h>

#include <cstring>

namespace sluice::tls {

namespace {

bool to_string(const ASN1_STRING* s, std::string* out) {
  if (s == nullptr) return false;
  const unsigned char* data = ASN1_STRING_get0_data(s);
  const int len = ASN1_STRING_length(s);
  if (data == nullptr || len <= 0) return false;
  if (std::memchr(data, 0, static_cast<size_t>(len)) != nullptr) return false;
  out->assign(reinterpret_cast<const char*>(data), static_cast<size_t>(len));
  return true;
}

}  // namespace

std::string PeerIdentity::to_string() const {
  std::string s;
  for (const std::string& u : uri_sans) {
    if (!s.empty()) s += ',';
    s += u;
  }
  for (const std::string& d : dns_sans) {
    if (!s.empty()) s += ',';
    s += "DNS:";
    s += d;
  }
  return s;
}

PeerIdentity certificate_identity(const X509* cert) {
  PeerIdentity id;
  if (cert == nullptr) return id;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return id;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    std::string value;
    if (name->type == GEN_URI && to_string(name->d.uniformResourceIdentifier, &value)) {
      id.uri_sans.push_back(std::move(value));
    } else if (name->type == GEN_DNS && to_string(name->d.dNSName, &value)) {
      id.dns_sans.push_back(std::move(value));
    }
  }
  GENERAL_NAMES_free(names);
  return id;
}

PeerIdentity peer_identity(const SSL* ssl) {
  if (ssl == nullptr) return {};
  return certificate_identity(SSL_get0_peer_certificate(ssl));
}

}  // namespace sluice::tls
