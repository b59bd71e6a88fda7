#include "userspace-proxy/proxy/snapshot.h"

#include "core/config/loader.h"
#include "core/config/validation.h"
#include "core/policy/outbound_mode.h"

namespace sluice::proxy {

Snapshot::Snapshot(config::ConfigSet loaded, uint64_t gen, const ProxyIdentity& identity)
    : config(std::move(loaded)),
      registry(config),
      routes(config),
      destinations(config),
      gateway_servers(identity.gateway ? policy::GatewayServers(config, identity.labels)
                                       : policy::GatewayServers()),
      generation(gen) {}

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
