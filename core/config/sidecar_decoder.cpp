// networking.istio.io Sidecar spec: the egress listeners' hosts and the
// outboundTrafficPolicy (the egress side Sluice applies); the inbound side is
// accepted and counted.
#include "core/config/resource_decoders.h"

namespace sluice::config::detail {

namespace {

// The proto's enum: REGISTRY_ONLY is 0, the default of a policy written
// without a mode.
constexpr EnumName<OutboundTrafficPolicyMode> kSidecarOutboundModes[] = {
    {"REGISTRY_ONLY", OutboundTrafficPolicyMode::kRegistryOnly},
    {"ALLOW_ANY", OutboundTrafficPolicyMode::kAllowAny},
};

void decode_egress_listener(const Field& f, SidecarEgressListener& l) {
  f.read_object({
      {"port", [&](Field& v) { read_optional(v, l.port, decode_gateway_port); }},
      {"bind", [&](Field& v) { v.read(l.bind); }},
      {"captureMode", [&](Field& v) { v.read_enum_string(l.capture_mode, {"DEFAULT", "IPTABLES", "NONE"}); }},
      {"hosts", [&](Field& v) { v.read(l.hosts); }},
  });
}

void decode_outbound_policy(const Field& f, SidecarOutboundTrafficPolicy& p) {
  f.read_object({
      {"mode", [&](Field& v) { v.read_enum(p.mode, kSidecarOutboundModes); }},
      {"egressProxy", [&](Field& v) { read_optional(v, p.egress_proxy, decode_destination); }},
  });
}

}  // namespace

void decode_sidecar_spec(const Field& spec, Sidecar& sc) {
  spec.read_object({
      {"workloadSelector", [&](Field& v) { decode_workload_selector(v, sc.workload_selector); }},
      {"egress",
       [&](Field& v) { v.read_list([&](Field& item) { decode_egress_listener(item, sc.egress.emplace_back()); }); }},
      {"ingress", [&](Field& v) { v.read_list([&](Field&) { ++sc.ingress_count; }); }},
      {"inboundConnectionPool", [&](Field&) { sc.inbound_connection_pool = true; }},
      {"outboundTrafficPolicy",
       [&](Field& v) { read_optional(v, sc.outbound_traffic_policy, decode_outbound_policy); }},
  });
}

}  // namespace sluice::config::detail
