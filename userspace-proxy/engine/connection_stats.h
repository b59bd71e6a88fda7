#pragma once

#include <cstdint>
#include <string_view>

#include "userspace-proxy/engine/socket_address.h"

namespace sluice::engine {

// Why a connection ended. The short codes follow Envoy's response flags where
// one exists so access logs read the same as Istio's.
enum class CloseReason : uint8_t {
  kNone = 0,               // still open
  kCompleted,              // both directions finished with FIN
  kLocalClose,             // the handler closed it (policy deny, local response)
  kUpstreamConnectFailed,  // every upstream refused/unreachable ("UF")
  kUpstreamConnectTimeout, // connect timed out ("UF" + "UT" in logs)
  kDownstreamReset,        // downstream sent RST / broke the pipe ("DR")
  kUpstreamReset,          // upstream sent RST / broke the pipe ("UR")
  kIdleTimeout,            // no bytes either way for idle_timeout ("IT" ~ Envoy's stream idle)
  kDetectionTimeout,       // the handler's detection timeout fired and it gave up
  kSniffLimit,             // the handler wanted more bytes than the engine holds
  kDrainDeadline,          // aborted when the drain deadline passed on stop
  kFilterClose,            // a StreamFilter asked to close/reset
  kResourceExhausted,      // connection pool or local buffer pool exhausted
  kInternalError,          // an unexpected errno from a socket call
  kMaxDuration,            // Verdict::with_max_duration passed (max_downstream_connection_duration: the proxy logs Envoy's DT)
};

std::string_view close_reason_code(CloseReason r);  // "UF", "UR", ...
std::string_view close_reason_name(CloseReason r);  // "upstream_connect_failed", ...

// What the access log needs about one connection; delivered in on_close().
struct ConnectionStats {
  uint64_t id = 0;
  uint32_t worker = 0;
  SocketAddress upstream;             // the address connected to (invalid if none)
  uint64_t bytes_from_downstream = 0; // read from the client
  uint64_t bytes_to_upstream = 0;     // written to the upstream
  uint64_t bytes_from_upstream = 0;
  uint64_t bytes_to_downstream = 0;
  int64_t start_realtime_ns = 0;      // wall clock at accept, for the log timestamp
  int64_t start_monotonic_ns = 0;
  int64_t end_monotonic_ns = 0;
  int64_t upstream_connected_monotonic_ns = 0;  // 0 if never connected
  CloseReason reason = CloseReason::kNone;
  int error = 0;                      // errno behind the reason, if any (ECONNREFUSED...)
  uint8_t connect_attempts = 0;
  uint16_t upstream_switches = 0;     // earlier upstreams left for another (FilterStatus::kNewUpstream)
  bool upstream_reused = false;       // the upstream came from the worker's pool (no connect)
};

}  // namespace sluice::engine
