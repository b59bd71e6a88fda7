#include "userspace-proxy/admin/admin_endpoints.h"

#include <utility>

#include "userspace-proxy/admin/prometheus_text.h"

namespace sluice::admin {

std::string_view to_string(ServerState state) {
  switch (state) {
    case ServerState::kPreInitializing: return "PRE_INITIALIZING";
    case ServerState::kInitializing: return "INITIALIZING";
    case ServerState::kLive: return "LIVE";
    case ServerState::kDraining: return "DRAINING";
  }
  return "PRE_INITIALIZING";
}

bool register_admin_endpoints(AdminServer& server, AdminEndpoints e) {
  if (e.state == nullptr || e.metrics == nullptr) return false;
  bool ok = true;

  const ServerStateCell* state = e.state;
  ok &= server.add_handler("/ready", kGet, "200 when the proxy is LIVE, 503 with its state otherwise",
                           [state](const AdminRequest&) {
                             ServerState s = state->get();
                             return AdminResponse::text(s == ServerState::kLive ? 200 : 503,
                                                        std::string(to_string(s)) + "\n");
                           });

  ok &= server.add_handler("/healthz", kGet, "200 while the process is healthy",
                           [liveness = std::move(e.liveness)](const AdminRequest&) {
                             std::string problem = liveness ? liveness() : std::string();
                             if (problem.empty()) return AdminResponse::text(200, "ok\n");
                             return AdminResponse::text(503, problem + "\n");
                           });

  const MetricsRegistry* metrics = e.metrics;
  ok &= server.add_handler("/stats/prometheus", kGet, "metrics in the Prometheus text format",
                           [metrics](const AdminRequest&) {
                             AdminResponse r = AdminResponse::text(200, metrics->render());
                             r.content_type = std::string(kPrometheusContentType);
                             return r;
                           });

  if (e.config_dump) {
    ok &= server.add_handler("/config_dump", kGet, "the active configuration (JSON)",
                             [dump = std::move(e.config_dump)](const AdminRequest&) {
                               return AdminResponse::json(200, dump());
                             });
  }

  if (e.log_level != nullptr) {
    LogLevelSetting* level = e.log_level;
    ok &= server.add_handler(
        "/logging", kGetOrPost, "GET: the log level; POST ?level=L: change it",
        [level](const AdminRequest& req) {
          const std::string* wanted = req.param("level");
          if (wanted != nullptr) {
            // Changing state takes POST, so a stray GET (a crawler, a
            // prefetching browser) cannot change it.
            if (req.method != "POST") {
              AdminResponse r = AdminResponse::text(405, "use POST /logging?level=... to change the level\n");
              r.headers.emplace_back("Allow", "POST");
              return r;
            }
            std::optional<LogLevel> l = parse_log_level(*wanted);
            if (!l) {
              return AdminResponse::text(400, "unknown log level \"" + *wanted + "\": one of " +
                                                  std::string(log_level_names()) + "\n");
            }
            level->set(*l);
          } else if (req.method == "POST" && !req.params.empty()) {
            return AdminResponse::text(400, "POST /logging takes ?level=" + std::string(log_level_names()) + "\n");
          }
          return AdminResponse::text(200, "active level: " + std::string(to_string(level->get())) + "\n");
        });
  }
  return ok;
}

}  // namespace sluice::admin
