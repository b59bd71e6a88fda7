// How the proxy opens, keeps and limits the upstream connections of one
// plan: the mesh config's defaults (connectTimeout, tcpKeepalive) with the
// DestinationRule's connectionPool over them, as Istio builds an Envoy
// cluster. Pure: resolved once per plan, read by the proxy and shown by
// `sluicectl explain`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/config/model.h"
#include "core/policy/destination.h"

namespace sluice::policy {

struct ConnectionSettings {
  // An idle timeout the rule turns off (0s): none at all. The engine's
  // Verdict::kNoTimeout is the same value.
  static constexpr config::Duration kNoTimeout = config::Duration::max();

  // Each connect attempt's bound; nullopt: the proxy's --connect-timeout.
  std::optional<config::Duration> connect_timeout;
  bool connect_timeout_from_rule = false;  // else the mesh config's
  // TCP keep-alive on upstream sockets (SO_KEEPALIVE), whole seconds as
  // Istio hands them to Envoy; 0: the kernel's net.ipv4.tcp_keepalive_*.
  bool keepalive = false;
  uint32_t keepalive_probes = 0;
  uint32_t keepalive_time_s = 0;
  uint32_t keepalive_interval_s = 0;
  // How long a pooled upstream connection waits idle:
  // connectionPool.http.idleTimeout, else tcp.idleTimeout (as Istio fills
  // the cluster's HTTP idle_timeout); nullopt: the proxy's; kNoTimeout: no bound.
  std::optional<config::Duration> idle_timeout;
  // connectionPool.tcp.idleTimeout for a TCP proxy connection (no bytes
  // either way for this long closes it; kNoTimeout: never); nullopt: the proxy's
  // (1 h, as Envoy's tcp_proxy).
  std::optional<config::Duration> tcp_idle_timeout;
  // connectionPool.tcp.maxConnectionDuration: a TCP proxy connection is
  // closed this long after it was accepted (flag DT); an HTTP upstream
  // connection this old carries no further request (it ends after the one
  // under way). nullopt: no bound.
  std::optional<config::Duration> max_connection_duration;
  // connectionPool.http.maxRequestsPerConnection (0: unlimited; 1: no
  // keep-alive to the upstream).
  int32_t max_requests_per_connection = 0;
  // Envoy's circuit breakers (0: none, Istio's default 2^32-1).
  int32_t max_connections = 0;       // tcp.maxConnections
  int32_t max_pending_requests = 0;  // http.http1MaxPendingRequests (the queue for maxConnections)
  int32_t max_requests = 0;          // http.http2MaxRequests
  int32_t max_retries = 0;           // http.maxRetries

  bool has_circuit_breakers() const {
    return max_connections > 0 || max_pending_requests > 0 || max_requests > 0 || max_retries > 0;
  }
  // One line for `sluicectl explain` ("connect timeout 10000 ms (mesh
  // connectTimeout); ..."), empty when everything is at its default. `http`:
  // the plan carries HTTP requests (pooling, the request queue and the
  // request and retry limits apply); else a TCP connection over
  // maxConnections is refused at once.
  std::string describe(bool http) const;
};

// The settings for a plan under `policy` (the DestinationRule's, or none).
ConnectionSettings connection_settings(const config::MeshConfig& mesh, const EffectivePolicy& policy);

}  // namespace sluice::policy
