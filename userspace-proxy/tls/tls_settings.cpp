#include "userspace-proxy/tls/tls_settings.h"

namespace sluice::tls {

bool parse_min_version(std::string_view istio, TlsVersion* out, std::string* error) {
  if (istio.empty() || istio == "TLS_AUTO" || istio == "TLSV1_0" || istio == "TLSV1_1" || istio == "TLSV1_2") {
    *out = TlsVersion::kTls12;
    return true;
  }
  if (istio == "TLSV1_3") {
    *out = TlsVersion::kTls13;
    return true;
  }
  *error = "unknown minProtocolVersion '" + std::string(istio) + "'";
  return false;
}

bool parse_max_version(std::string_view istio, TlsVersion* out, std::string* error) {
  if (istio.empty() || istio == "TLS_AUTO" || istio == "TLSV1_3") {
    *out = TlsVersion::kTls13;
    return true;
  }
  if (istio == "TLSV1_2") {
    *out = TlsVersion::kTls12;
    return true;
  }
  if (istio == "TLSV1_0" || istio == "TLSV1_1") {
    *error = "maxProtocolVersion " + std::string(istio) + " is not supported (TLS 1.2 is the minimum)";
    return false;
  }
  *error = "unknown maxProtocolVersion '" + std::string(istio) + "'";
  return false;
}

bool server_tls_options(const config::ServerTLSSettings& tls, std::string_view mesh_identity_dir, ServerTlsOptions* out,
                        std::string* error) {
  ServerTlsOptions o;
  switch (tls.mode) {
    case config::ServerTLSMode::kSimple:
      o.mode = ServerTlsMode::kSimple;
      break;
    case config::ServerTLSMode::kMutual:
      o.mode = ServerTlsMode::kMutual;
      break;
    case config::ServerTLSMode::kIstioMutual:
      o.mode = ServerTlsMode::kIstioMutual;
      break;
    case config::ServerTLSMode::kOptionalMutual:
      o.mode = ServerTlsMode::kOptionalMutual;
      break;
    case config::ServerTLSMode::kPassthrough:
    case config::ServerTLSMode::kAutoPassthrough:
      *error = "tls mode PASSTHROUGH/AUTO_PASSTHROUGH does not terminate TLS";
      return false;
  }
  if (!tls.credential_name.empty()) {
    *error = "tls.credentialName (SDS) is not supported: use serverCertificate/privateKey/caCertificates files";
    return false;
  }
  if (!tls.verify_certificate_spki.empty() || !tls.verify_certificate_hash.empty()) {
    *error = "tls.verifyCertificateSpki/verifyCertificateHash are not supported";
    return false;
  }
  o.files.cert_chain = tls.server_certificate;
  o.files.private_key = tls.private_key;
  o.files.ca_certificates = tls.ca_certificates;
  o.files.ca_crl = tls.ca_crl;
  if (!mesh_identity_dir.empty()) o.mesh_identity_dir = std::string(mesh_identity_dir);
  o.subject_alt_names = tls.subject_alt_names;
  o.cipher_suites = tls.cipher_suites;
  if (!parse_min_version(tls.min_protocol_version, &o.min_version, error)) return false;
  if (!parse_max_version(tls.max_protocol_version, &o.max_version, error)) return false;
  *out = std::move(o);
  return true;
}

bool client_tls_options(const config::ClientTLSSettings& tls, std::string_view mesh_identity_dir, ClientTlsOptions* out,
                        std::string* error) {
  ClientTlsOptions o;
  switch (tls.mode) {
    case config::ClientTLSMode::kSimple:
      o.mode = ClientTlsMode::kSimple;
      break;
    case config::ClientTLSMode::kMutual:
      o.mode = ClientTlsMode::kMutual;
      break;
    case config::ClientTLSMode::kIstioMutual:
      o.mode = ClientTlsMode::kIstioMutual;
      break;
    case config::ClientTLSMode::kDisable:
      *error = "tls mode DISABLE does not originate TLS";
      return false;
  }
  if (!tls.credential_name.empty()) {
    *error = "tls.credentialName (SDS) is not supported: use clientCertificate/privateKey/caCertificates files";
    return false;
  }
  if (o.mode == ClientTlsMode::kMutual) {
    o.files.cert_chain = tls.client_certificate;
    o.files.private_key = tls.private_key;
  }
  o.files.ca_certificates = tls.ca_certificates;
  o.files.ca_crl = tls.ca_crl;
  if (!mesh_identity_dir.empty()) o.mesh_identity_dir = std::string(mesh_identity_dir);
  o.sni = tls.sni;
  o.subject_alt_names = tls.subject_alt_names;
  o.insecure_skip_verify = tls.insecure_skip_verify;
  *out = std::move(o);
  return true;
}

}  // namespace sluice::tls
