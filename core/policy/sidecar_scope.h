// The Sidecar resource that applies to a workload's proxy, and the config
// that proxy sees through it: Istio's SidecarScope, egress side.
//
// Selection (as istiod): in the workload's namespace, a Sidecar whose
// workloadSelector matches the workload's labels, else that namespace's
// Sidecar without a selector, else the root namespace's (mesh
// rootNamespace, istio-system) Sidecar without a selector; several
// candidates: the first in load order (Istio takes the oldest).
//
// What the proxy sees: ServiceEntries, VirtualServices and DestinationRules
// exported to its namespace (exportTo), and of those the services the
// Sidecar's egress hosts name ("namespace/dnsName"; "." is the workload's
// namespace, "*" any, "~" none): a destination port with a listener of its
// own takes that listener's hosts, any other port the catch-all
// listener's; a Sidecar without egress sees everything exported. Its
// outboundTrafficPolicy replaces the mesh config's mode, and with
// ALLOW_ANY an egressProxy takes the traffic that would be passed through.
#pragma once

#include <string>

#include "core/config/model.h"

namespace sluice::policy {

struct WorkloadIdentity {
  std::string namespace_ = "default";
  config::Labels labels;
  // The proxy serves this one workload (its namespace or labels were given):
  // VirtualService sourceNamespace/sourceLabels match against it. A proxy
  // for many pods (on a node) leaves it false: they never match.
  bool source = false;
};

struct SidecarSelection {
  const config::Sidecar* sidecar = nullptr;  // none applies
  std::string reason;                        // which and why, for logs and explain
};

SidecarSelection select_sidecar(const config::ConfigSet& config, const WorkloadIdentity& workload);

// The workload's view of `config` (a copy; Sidecars themselves are dropped):
// what is exported to its namespace, a DestinationRule with a
// workloadSelector only for its own namespace's matching workloads, and
// view_namespace set (DestinationRules then looks a destination's rule up in
// Istio's namespace order). A gateway's view is this with no Sidecar.
config::ConfigSet scoped_config(const config::ConfigSet& config, const WorkloadIdentity& workload,
                                const SidecarSelection& selection);

// What a proxy runs with, as sluice-proxy and sluicectl build it: a
// sidecar's scoped_config under the Sidecar that applies, a gateway's
// without one. `scope`: which Sidecar applies and why (empty: none).
struct ProxyView {
  config::ConfigSet config;
  std::string scope;
};
ProxyView proxy_view(const config::ConfigSet& all, const WorkloadIdentity& workload, bool gateway);

}  // namespace sluice::policy
