#include "userspace-proxy/proxy/snapshot.h"

#include "core/config/loader.h"
#include "core/config/validation.h"
#include "core/policy/load_balancer.h"
#include "core/policy/outbound_mode.h"
#include "core/policy/sidecar_scope.h"

namespace sluice::proxy {

namespace {

bool hashes_by_client(const std::optional<config::LoadBalancerSettings>& lb) {
  return lb && lb->consistent_hash && policy::hashes_on_client_address(*lb->consistent_hash);
}

bool hashes_by_client(const std::optional<config::TrafficPolicy>& tp) {
  if (!tp) return false;
  if (hashes_by_client(tp->load_balancer)) return true;
  for (const auto& port : tp->port_level_settings) {
    if (hashes_by_client(port.load_balancer)) return true;
  }
  return false;
}

// Whether some DestinationRule hashes on the client's address (useSourceIp,
// or a cookie made up from it): only then does every connection look it up.
bool needs_client_address(const config::ConfigSet& config) {
  for (const auto& dr : config.destination_rules) {
    if (hashes_by_client(dr.traffic_policy)) return true;
    for (const auto& subset : dr.subsets) {
      if (hashes_by_client(subset.traffic_policy)) return true;
    }
  }
  return false;
}

}  // namespace

namespace {

// The proxy's view (exportTo; a sidecar's Sidecar resource).
policy::ProxyView view_of(const config::ConfigSet& loaded, const ProxyIdentity& identity) {
  policy::WorkloadIdentity w;
  w.namespace_ = identity.namespace_;
  w.labels = identity.labels;
  // A gateway is one workload, its labels its --label (the selector's);
  // a sidecar is one when told which.
  w.source = identity.workload_known || identity.gateway;
  return policy::proxy_view(loaded, w, identity.gateway);
}

}  // namespace

Snapshot::Snapshot(config::ConfigSet loaded, uint64_t gen, const ProxyIdentity& identity)
    : Snapshot(view_of(loaded, identity), gen, identity) {}

Snapshot::Snapshot(policy::ProxyView view, uint64_t gen, const ProxyIdentity& identity)
    : sidecar_scope(std::move(view.scope)),
      config(std::move(view.config)),
      registry(config),
      routes(config),
      destinations(config),
      gateway_servers(identity.gateway ? policy::GatewayServers(config, identity.labels)
                                       : policy::GatewayServers()),
      generation(gen),
      client_address_needed(needs_client_address(config)) {}

config::OutboundTrafficPolicyMode Snapshot::mode() const { return policy::effective_outbound_mode(config).mode; }

SnapshotLoad load_snapshot(const std::vector<std::string>& paths, uint64_t generation,
                           const ProxyIdentity& identity) {
  config::LoadResult loaded = config::load_paths(paths);
  SnapshotLoad out;
  out.diagnostics = std::move(loaded.diagnostics);
  out.diagnostics.append(config::validate(loaded.config));
  if (out.diagnostics.has_errors()) return out;
  out.snapshot = std::make_shared<const Snapshot>(std::move(loaded.config), generation, identity);
  return out;
}

}  // namespace sluice::proxy
