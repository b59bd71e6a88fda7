// Which outboundTrafficPolicy mode a loaded configuration puts in force, and
// where that mode came from. Istio reads the mode from the mesh config (the
// `istio` ConfigMap); the install option values.global.outboundTrafficPolicy
// .mode only seeds that ConfigMap at install time. So a loaded ConfigMap
// always wins, the install option applies when no ConfigMap was loaded, and
// with neither the built-in mesh config (ALLOW_ANY, or whatever a
// `--set meshConfig.outboundTrafficPolicy.mode` put there) decides.
//
// Header-only so that every consumer (the proxy's snapshot, sluicectl) can
// share it without a new library.
#pragma once

#include "core/config/model.h"

namespace sluice::policy {

struct OutboundMode {
  enum class Source {
    kMeshConfig,     // a loaded `istio` ConfigMap / MeshConfig: config.mesh.file:line
    kInstallOption,  // values.global.outboundTrafficPolicy.mode (config.install.file, or --set)
    kBuiltIn,        // no mesh config loaded: the built-in default (plus --set meshConfig.*)
    kSidecar,        // the workload's Sidecar resource (config.sidecar_source)
  };
  config::OutboundTrafficPolicyMode mode = config::OutboundTrafficPolicyMode::kAllowAny;
  Source source = Source::kBuiltIn;
};

inline OutboundMode effective_outbound_mode(const config::ConfigSet& config) {
  if (config.sidecar_outbound) return {config.sidecar_outbound->mode, OutboundMode::Source::kSidecar};
  if (!config.mesh.file.empty()) return {config.mesh.outbound_traffic_policy, OutboundMode::Source::kMeshConfig};
  if (config.install.outbound_traffic_policy) {
    return {*config.install.outbound_traffic_policy, OutboundMode::Source::kInstallOption};
  }
  return {config.mesh.outbound_traffic_policy, OutboundMode::Source::kBuiltIn};
}

inline const char* to_string(OutboundMode::Source s) {
  switch (s) {
    case OutboundMode::Source::kMeshConfig: return "mesh config";
    case OutboundMode::Source::kInstallOption: return "install option";
    case OutboundMode::Source::kBuiltIn: return "built-in default";
    case OutboundMode::Source::kSidecar: return "Sidecar";
  }
  return "?";
}

}  // namespace sluice::policy
