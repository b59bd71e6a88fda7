// From the Istio config model to TLS context options: a Gateway server's
// `tls` and a DestinationRule's `tls`, with what this data plane cannot do
// reported instead of silently ignored.
#pragma once

#include <string>
#include <string_view>

#include "core/config/model.h"
#include "userspace-proxy/tls/tls_context.h"

namespace sluice::tls {

// minProtocolVersion / maxProtocolVersion: "" and TLS_AUTO keep the
// default; TLSV1_0/TLSV1_1 are raised to TLS 1.2 as a minimum and refused
// as a maximum (this proxy never speaks them).
bool parse_min_version(std::string_view istio, TlsVersion* out, std::string* error);
bool parse_max_version(std::string_view istio, TlsVersion* out, std::string* error);

// SIMPLE, MUTUAL, ISTIO_MUTUAL and OPTIONAL_MUTUAL. PASSTHROUGH and
// AUTO_PASSTHROUGH do not terminate TLS (route on SNI instead), so they are
// an error here, as are credentialName (SDS) and SPKI/hash pinning.
bool server_tls_options(const config::ServerTLSSettings& tls, std::string_view mesh_identity_dir, ServerTlsOptions* out,
                        std::string* error);

// SIMPLE, MUTUAL, ISTIO_MUTUAL. DISABLE means no client side at all: the
// caller should not ask (an error here).
bool client_tls_options(const config::ClientTLSSettings& tls, std::string_view mesh_identity_dir, ClientTlsOptions* out,
                        std::string* error);

}  // namespace sluice::tls
