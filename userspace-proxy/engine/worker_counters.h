#pragma once

#include <atomic>
#include <cstdint>

namespace sluice::engine {

// A counter written by one worker thread and read by any: a relaxed
// load+store (no locked instruction on the hot path).
class Counter {
 public:
  void add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
  void set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  void max(uint64_t n) {
    if (n > v_.load(std::memory_order_relaxed)) v_.store(n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

#define SLUICE_ENGINE_COUNTERS(X)                                                        \
  X(accepted)             /* connections accepted */                                    \
  X(accept_errors)        /* accept CQEs with an error */                               \
  X(accept_rearms)        /* multishot accept ended and was re-armed */                 \
  X(spawned)              /* sockets handed over by Connection::spawn (in accepted) */  \
  X(pool_exhausted)       /* accepted then closed: max_connections_per_worker */       \
  X(active_connections)   /* gauge */                                                   \
  X(closed)               /* connections finished (on_close delivered) */               \
  X(connect_attempts)                                                                   \
  X(connect_failures)     /* refused/unreachable attempts */                            \
  X(connect_timeouts)                                                                   \
  X(so_mark_eperm)        /* SO_MARK not permitted (no CAP_NET_ADMIN) */                \
  X(recv_rearms)          /* multishot recv ended (no F_MORE) and was re-armed */      \
  X(recv_enobufs)         /* recv found the buffer ring empty */                        \
  X(backpressure_pauses)  /* recv cancelled because the peer's queue was full */       \
  X(buffers_in_use)       /* gauge: ring buffers held by userspace */                   \
  X(buffers_in_use_peak)                                                                \
  X(bulk_buffers_in_use)  /* gauge: bulk ring buffers held by userspace */              \
  X(bulk_promotions)      /* a direction moved to bulk buffers */                       \
  X(bulk_enobufs)         /* a bulk recv found the bulk ring empty (back to small) */   \
  X(queued_bytes_peak)    /* most bytes queued for one direction of one connection */  \
  X(local_buffers_exhausted)                                                            \
  X(bytes_downstream_to_upstream)                                                       \
  X(bytes_upstream_to_downstream)                                                       \
  X(resets_sent)          /* sockets closed with SO_LINGER{1,0} */                      \
  X(idle_timeouts)                                                                      \
  X(duration_timeouts)    /* closed at Verdict::with_max_duration */                    \
  X(detection_timeouts)                                                                 \
  X(defers)               /* Verdict::defer() applied */                                \
  X(wakes)                /* wakes delivered to on_wake */                              \
  X(wakes_ignored)        /* wakes for connections no longer deferred (or gone) */      \
  X(local_responses)                                                                    \
  X(lingered_after_end)   /* kEndDownstream's client drained: it sent unread bytes */   \
  X(drain_aborted)        /* connections cut at the drain deadline */                  \
  X(loop_iterations)                                                                    \
  X(ring_errors)          /* io_uring_enter failures other than ETIME/EINTR */         \
  X(sqe_submitted)                                                                      \
  X(upstream_pooled)      /* upstream connections parked for reuse */                  \
  X(upstream_reused)      /* connections that took a pooled upstream */                \
  X(upstream_pool_dropped) /* pooled upstreams closed: peer closed or sent bytes */    \
  X(upstream_pool_expired) /* pooled upstreams closed: idle too long, overflow, drain */ \
  X(upstream_pool_idle)   /* gauge: upstreams in the pool */                          \
  X(upstream_switches)    /* connections that left an upstream for another (kNewUpstream) */

struct WorkerCounters {
#define SLUICE_DECLARE_COUNTER(name) Counter name;
  SLUICE_ENGINE_COUNTERS(SLUICE_DECLARE_COUNTER)
#undef SLUICE_DECLARE_COUNTER
};

// A plain copy, summed over workers (peaks take the max).
struct CounterSnapshot {
#define SLUICE_DECLARE_FIELD(name) uint64_t name = 0;
  SLUICE_ENGINE_COUNTERS(SLUICE_DECLARE_FIELD)
#undef SLUICE_DECLARE_FIELD
};

}  // namespace sluice::engine
