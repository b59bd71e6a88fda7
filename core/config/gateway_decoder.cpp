// networking.istio.io Gateway spec: servers and their TLS settings.
#include "core/config/resource_decoders.h"

namespace sluice::config::detail {

namespace {

constexpr EnumName<ServerTLSMode> kServerTLSModes[] = {
    {"PASSTHROUGH", ServerTLSMode::kPassthrough},
    {"SIMPLE", ServerTLSMode::kSimple},
    {"MUTUAL", ServerTLSMode::kMutual},
    {"AUTO_PASSTHROUGH", ServerTLSMode::kAutoPassthrough},
    {"ISTIO_MUTUAL", ServerTLSMode::kIstioMutual},
    {"OPTIONAL_MUTUAL", ServerTLSMode::kOptionalMutual},
};

void decode_tls_protocol_version(Field& v, std::string& out) {
  v.read_enum_string(out, {"TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"});
}

void decode_server_tls(const Field& f, ServerTLSSettings& tls) {
  f.read_object({
      {"httpsRedirect", [&](Field& v) { v.read(tls.https_redirect); }},
      {"mode", [&](Field& v) { v.read_enum(tls.mode, kServerTLSModes); }},
      {"serverCertificate", [&](Field& v) { v.read(tls.server_certificate); }},
      {"privateKey", [&](Field& v) { v.read(tls.private_key); }},
      {"caCertificates", [&](Field& v) { v.read(tls.ca_certificates); }},
      {"credentialName", [&](Field& v) { v.read(tls.credential_name); }},
      {"subjectAltNames", [&](Field& v) { v.read(tls.subject_alt_names); }},
      {"verifyCertificateSpki", [&](Field& v) { v.read(tls.verify_certificate_spki); }},
      {"verifyCertificateHash", [&](Field& v) { v.read(tls.verify_certificate_hash); }},
      {"minProtocolVersion",
       [&](Field& v) { decode_tls_protocol_version(v, tls.min_protocol_version); }},
      {"maxProtocolVersion",
       [&](Field& v) { decode_tls_protocol_version(v, tls.max_protocol_version); }},
      {"cipherSuites", [&](Field& v) { v.read(tls.cipher_suites); }},
      {"caCrl", [&](Field& v) { v.read(tls.ca_crl); }},
      {"credentialNames", warn_unsupported},
      {"tlsCertificates", warn_unsupported},
  });
}

void decode_server(const Field& f, Server& server) {
  f.read_object({
      {"port", [&](Field& v) { decode_gateway_port(v, server.port); }},
      {"bind", [&](Field& v) { v.read(server.bind); }},
      {"hosts", [&](Field& v) { v.read(server.hosts); }},
      {"tls", [&](Field& v) { read_optional(v, server.tls, decode_server_tls); }},
      {"name", [&](Field& v) { v.read(server.name); }},
      {"defaultEndpoint", warn_unsupported},
  });
}

}  // namespace

void decode_gateway_port(const Field& f, GatewayPort& port) {
  f.read_object({
      {"number", [&](Field& v) { v.read(port.number); }},
      {"protocol", [&](Field& v) { v.read_upper(port.protocol); }},
      {"name", [&](Field& v) { v.read(port.name); }},
      {"targetPort", [&](Field& v) { v.read(port.target_port); }},
  });
}

void decode_gateway_spec(const Field& spec, Gateway& gw) {
  spec.read_object({
      {"selector", [&](Field& v) { v.read(gw.selector); }},
      {"servers",
       [&](Field& v) {
         v.read_list([&](Field& item) { decode_server(item, gw.servers.emplace_back()); });
       }},
  });
}

}  // namespace sluice::config::detail
