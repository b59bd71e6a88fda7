// Decoders from a Field (see yaml_reader.h) to the model, one per Istio
// message. Each follows the proto's field names (camelCase in YAML) and
// leaves model defaults in place for fields the document omits.
// Internal to the loader.
#pragma once

#include "core/config/model.h"
#include "core/config/yaml_reader.h"

namespace sluice::config::detail {

// Shared pieces (common_decoders.cpp).
void decode_object_meta(const Field& metadata, ObjectMeta& meta);
void decode_string_match(const Field& f, StringMatch& out);
void decode_port_selector(const Field& f, PortSelector& out);
void decode_destination(const Field& f, Destination& out);
void decode_percent(const Field& f, Percent& out);
void decode_workload_selector(const Field& f, std::optional<Labels>& out);
// TCPSettings.TcpKeepalive (a DestinationRule's, and the mesh config's).
void decode_tcp_keepalive(const Field& f, TCPSettings::KeepAlive& out);

// Handlers for fields that exist in Istio's API but that Sluice does not
// implement: warn, so nobody believes they took effect.
void warn_unsupported_field(Field& f);
inline constexpr auto warn_unsupported = [](Field& f) { warn_unsupported_field(f); };
// Handler for fields accepted and deliberately dropped (bookkeeping).
inline constexpr auto ignore_field = [](Field&) {};

// One file per resource kind.
void decode_service_entry_spec(const Field& spec, ServiceEntry& out);
void decode_virtual_service_spec(const Field& spec, VirtualService& out);
void decode_destination_rule_spec(const Field& spec, DestinationRule& out);
void decode_gateway_spec(const Field& spec, Gateway& out);
void decode_sidecar_spec(const Field& spec, Sidecar& out);
// A Gateway server's port; a Sidecar listener's port has the same fields.
void decode_gateway_port(const Field& f, GatewayPort& port);

// mesh.istio.io/v1alpha1 MeshConfig, as the `istio` ConfigMap's `mesh` key
// holds it. Fields the document sets overwrite `out`; others stay.
void decode_mesh_config(const Field& root, MeshConfig& out);
// True if `key` names a top-level MeshConfig field: how a bare MeshConfig
// document (no apiVersion/kind) is told apart from other YAML.
bool is_mesh_config_field(std::string_view key);

// Helm values (`global.proxy.includeIPRanges`, ...). A `meshConfig` key, as
// the istiod chart takes it, goes to `mesh`.
void decode_helm_values(const Field& root, InstallOptions& out, MeshConfig& mesh, bool& mesh_set);
// IstioOperator spec: `values` as Helm values, `meshConfig` as MeshConfig.
void decode_istio_operator_spec(const Field& spec, InstallOptions& out, MeshConfig& mesh,
                                bool& mesh_set);

}  // namespace sluice::config::detail
