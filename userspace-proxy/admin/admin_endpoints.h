// The admin endpoints every Sluice proxy serves, as an Istio proxy's admin
// port does:
//   GET  /ready              200 "LIVE" once listening; 503 with the state otherwise
//                            (readiness probe; DRAINING on shutdown takes the pod out
//                            of Service endpoints before connections are cut)
//   GET  /healthz            200 "ok" while the process is healthy (liveness probe)
//   GET  /stats/prometheus   the metrics registry, Prometheus text format
//   GET  /config_dump        the active configuration as JSON
//   GET  /logging            the current log level
//   POST /logging?level=L    sets it (trace, debug, info, warning, error, critical, off)
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "userspace-proxy/admin/admin_server.h"
#include "userspace-proxy/admin/log_level.h"
#include "userspace-proxy/admin/metrics_registry.h"

namespace sluice::admin {

// Envoy's server states, as /ready reports them.
enum class ServerState : uint8_t { kPreInitializing, kInitializing, kLive, kDraining };
std::string_view to_string(ServerState state);  // "PRE_INITIALIZING", ..., "LIVE", "DRAINING"

class ServerStateCell {
 public:
  ServerState get() const { return state_.load(std::memory_order_acquire); }
  void set(ServerState s) { state_.store(s, std::memory_order_release); }

 private:
  std::atomic<ServerState> state_{ServerState::kPreInitializing};
};

struct AdminEndpoints {
  const ServerStateCell* state = nullptr;     // /ready (required)
  // /healthz: "" when healthy, otherwise what is wrong (503). Unset: the admin
  // thread answering is the health signal.
  std::function<std::string()> liveness{};
  const MetricsRegistry* metrics = nullptr;   // /stats/prometheus (required)
  std::function<std::string()> config_dump{};  // /config_dump: a JSON document (unset: not registered)
  LogLevelSetting* log_level = nullptr;       // /logging (unset: not registered)
};

// Registers the endpoints above on `server` (before start()). False when a
// required piece is missing or a path is already taken.
bool register_admin_endpoints(AdminServer& server, AdminEndpoints endpoints);

}  // namespace sluice::admin
