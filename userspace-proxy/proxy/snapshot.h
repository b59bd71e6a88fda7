// The configuration one connection is decided with: an immutable snapshot of
// everything loaded from --config plus the registry built over it. Workers
// read the current one with one atomic load; a connection keeps the snapshot
// it started with (shared_ptr), so a reload never changes a decision half-way.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/model.h"
#include "core/policy/destination.h"
#include "core/policy/sidecar_scope.h"
#include "core/policy/gateway_servers.h"
#include "core/policy/request_plan.h"
#include "core/policy/registry.h"
#include "core/policy/routing.h"

namespace sluice::proxy {

// What the proxy is, for the parts of the config that depend on it.
struct ProxyIdentity {
  bool gateway = false;               // --role gateway
  // The proxy's labels: a gateway's (Gateway selectors), a sidecar's
  // workload's (Sidecar workloadSelector).
  std::map<std::string, std::string> labels;
  // The proxy's namespace: a sidecar's workload's (exportTo, the Sidecar
  // resource that applies), a gateway's own.
  std::string namespace_ = "default";
  // A sidecar for one workload (--namespace or --label given): its
  // VirtualService source matches apply.
  bool workload_known = false;
};

struct Snapshot {
  Snapshot(config::ConfigSet loaded, uint64_t gen, const ProxyIdentity& identity = {});
  Snapshot(policy::ProxyView view, uint64_t gen, const ProxyIdentity& identity);
  Snapshot(const Snapshot&) = delete;  // the registry points into `config`
  Snapshot& operator=(const Snapshot&) = delete;

  // The effective outboundTrafficPolicy: a sidecar's Sidecar resource's,
  // else the mesh config (the `istio` ConfigMap) when one was loaded, else
  // the install option, else ALLOW_ANY.
  config::OutboundTrafficPolicyMode mode() const;
  // The tables a policy::plan_* call reads.
  policy::PlanTables tables() const { return {&config, &registry, &routes, &destinations, mode()}; }

  // Which Sidecar resource scopes a sidecar's `config` (empty: none).
  const std::string sidecar_scope;
  // The proxy's view (policy::proxy_view): what its namespace is exported
  // and, for a sidecar, what the Sidecar resource that applies imports.
  const config::ConfigSet config;
  const policy::Registry registry;
  const policy::RouteTable routes;
  const policy::DestinationRules destinations;
  // The Gateway servers selecting this proxy (empty for a sidecar).
  const policy::GatewayServers gateway_servers;
  const uint64_t generation;
  // Some DestinationRule's consistentHash hashes on the client's address.
  const bool client_address_needed;
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

struct SnapshotLoad {
  SnapshotPtr snapshot;              // null when the files have errors
  config::Diagnostics diagnostics;   // loader + validation findings
};

// Loads and validates `paths`; errors leave `snapshot` null.
SnapshotLoad load_snapshot(const std::vector<std::string>& paths, uint64_t generation,
                           const ProxyIdentity& identity = {});

// Holds the current snapshot for all workers.
class SnapshotStore {
 public:
  SnapshotPtr current() const { return current_.load(std::memory_order_acquire); }
  void publish(SnapshotPtr next) { current_.store(std::move(next), std::memory_order_release); }

 private:
  std::atomic<std::shared_ptr<const Snapshot>> current_;
};

}  // namespace sluice::proxy
