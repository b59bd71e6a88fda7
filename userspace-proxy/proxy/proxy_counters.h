// Process-wide counters of sluice-proxy (relaxed atomics: workers add, the
// main thread prints them on exit and on SIGUSR1).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "core/policy/outbound_policy.h"
#include "userspace-proxy/engine/connection_stats.h"

namespace sluice::proxy {

struct ProxyCounters {
  using Counter = std::atomic<uint64_t>;
  Counter accepted{0};
  Counter no_original_dst{0};   // reached the proxy without a redirect record: refused
  Counter http_requests{0};
  Counter upstream_changed{0};  // a later request on a keep-alive connection went to another upstream
  // Envoy's circuit breakers (DestinationRule connectionPool): requests and
  // TCP connections that waited for a connection slot (maxConnections);
  // those refused with 503 UO (the queue full: http1MaxPendingRequests; or
  // http2MaxRequests under way); retries not made (maxRetries under way).
  Counter upstream_queued{0};
  Counter upstream_overflow{0};
  Counter retry_overflow{0};
  Counter retries{0};           // requests sent again after a retriable response or reset (route retries)
  Counter faults_delayed{0};    // requests held back by a VirtualService fault delay (flag DI)
  Counter faults_aborted{0};    // requests answered by a VirtualService fault abort (flag FI)
  Counter mirrored{0};          // copies of requests sent to a VirtualService mirror (Envoy's shadow)
  Counter mirror_skipped{0};    // chosen for a mirror but not copied (an Upgrade/CONNECT, a body not streamable)
  Counter mirror_cut{0};        // copies whose body was cut short (the copy fell behind, or the original ended)
  Counter dns_failures{0};
  Counter protocol_errors{0};
  // TLS handshakes, both sides (terminated from downstreams, originated to
  // upstreams), and how many of the originated ones resumed a session.
  Counter tls_handshakes{0};
  Counter tls_handshake_failures{0};
  Counter tls_resumed{0};
  // Decisions by policy::Action: one per TCP/TLS connection and one per
  // HTTP request (a keep-alive connection's later requests too).
  std::array<Counter, 4> actions{};
  std::array<Counter, 16> close_reasons{};   // by engine::CloseReason

  void count(policy::Action a) { actions[static_cast<size_t>(a)].fetch_add(1, std::memory_order_relaxed); }
  void count(engine::CloseReason r) {
    size_t i = static_cast<size_t>(r);
    if (i < close_reasons.size()) close_reasons[i].fetch_add(1, std::memory_order_relaxed);
  }
  // "accepted=3 no_original_dst=1 route=1 passthrough=2 ... close.completed=2 ..."
  std::string summary() const;
};

inline void bump(std::atomic<uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

}  // namespace sluice::proxy
