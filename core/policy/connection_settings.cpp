#include "core/policy/connection_settings.h"

#include <algorithm>

namespace sluice::policy {

namespace {

uint32_t whole_seconds(const config::Duration& d) {
  return static_cast<uint32_t>(std::max<int64_t>(0, d.count() / 1000));
}

// Istio's applyTCPKeepalive: each field set replaces the one below it.
void apply_keepalive(ConnectionSettings& out, const config::TCPSettings::KeepAlive& k) {
  out.keepalive = true;
  if (k.probes > 0) out.keepalive_probes = k.probes;
  if (k.time) out.keepalive_time_s = whole_seconds(*k.time);
  if (k.interval) out.keepalive_interval_s = whole_seconds(*k.interval);
}

}  // namespace

ConnectionSettings connection_settings(const config::MeshConfig& mesh, const EffectivePolicy& policy) {
  ConnectionSettings out;
  out.connect_timeout = mesh.connect_timeout;
  if (mesh.tcp_keepalive) apply_keepalive(out, *mesh.tcp_keepalive);
  const config::ConnectionPoolSettings* pool = policy.connection_pool;
  if (!pool) return out;
  if (const auto& tcp = pool->tcp) {
    if (tcp->connect_timeout) {
      out.connect_timeout = tcp->connect_timeout;
      out.connect_timeout_from_rule = true;
    }
    if (tcp->tcp_keepalive) apply_keepalive(out, *tcp->tcp_keepalive);
    out.max_connections = std::max(0, tcp->max_connections);
    // 0s turns it off (Envoy's idle_timeout 0).
    std::optional<config::Duration> idle = tcp->idle_timeout;
    if (idle && idle->count() == 0) idle = ConnectionSettings::kNoTimeout;
    out.tcp_idle_timeout = idle;
    out.idle_timeout = idle;
    out.max_connection_duration = tcp->max_connection_duration;
  }
  if (const auto& http = pool->http) {
    if (http->idle_timeout) out.idle_timeout = http->idle_timeout;
    out.max_requests_per_connection = std::max(0, http->max_requests_per_connection);
    out.max_pending_requests = std::max(0, http->http1_max_pending_requests);
    out.max_requests = std::max(0, http->http2_max_requests);
    out.max_retries = std::max(0, http->max_retries);
  }
  return out;
}

std::string ConnectionSettings::describe(bool http) const {
  std::string out;
  auto add = [&out](const std::string& s) {
    if (!out.empty()) out += "; ";
    out += s;
  };
  if (connect_timeout) {
    add("connect timeout " + std::to_string(connect_timeout->count()) + " ms (" +
        (connect_timeout_from_rule ? "DestinationRule" : "mesh connectTimeout") + ")");
  }
  if (keepalive) {
    auto or_kernel = [](uint32_t v, const char* unit) {
      return v == 0 ? std::string("kernel default") : std::to_string(v) + unit;
    };
    add("TCP keep-alive probes " + or_kernel(keepalive_probes, "") + ", time " + or_kernel(keepalive_time_s, " s") +
        ", interval " + or_kernel(keepalive_interval_s, " s"));
  }
  if (!http) {
    if (tcp_idle_timeout) {
      add(*tcp_idle_timeout == kNoTimeout ? std::string("no idle timeout")
                                          : "idle timeout " + std::to_string(tcp_idle_timeout->count()) + " ms");
    }
    if (max_connection_duration) {
      add("closed " + std::to_string(max_connection_duration->count()) + " ms after it was accepted (DT)");
    }
    if (max_connections > 0) {
      add("at most " + std::to_string(max_connections) + " upstream connection(s), more are closed at once (UO)");
    }
    return out;
  }
  if (idle_timeout) {
    add(*idle_timeout == kNoTimeout ? std::string("pooled connections idle without bound")
                                    : "pooled connections idle up to " + std::to_string(idle_timeout->count()) + " ms");
  }
  if (max_connection_duration) {
    add("an upstream connection carries no request after " + std::to_string(max_connection_duration->count()) +
        " ms");
  }
  if (max_requests_per_connection == 1) add("one request per upstream connection (no keep-alive)");
  else if (max_requests_per_connection > 1) add("at most " + std::to_string(max_requests_per_connection) + " requests per upstream connection");
  if (max_connections > 0) {
    add("at most " + std::to_string(max_connections) + " upstream connection(s) in use, other requests wait " +
        (max_pending_requests > 0 ? "(at most " + std::to_string(max_pending_requests) +
                                        " pending, connecting ones included, then 503 UO)"
                                  : std::string("(no bound)")));
  } else if (max_pending_requests > 0) {
    add("at most " + std::to_string(max_pending_requests) +
        " requests waiting for an upstream connection to be made (then 503 UO)");
  }
  if (max_requests > 0) add("at most " + std::to_string(max_requests) + " requests under way (then 503 UO)");
  if (max_retries > 0) add("at most " + std::to_string(max_retries) + " retries under way (then no retry, UO)");
  return out;
}

}  // namespace sluice::policy
