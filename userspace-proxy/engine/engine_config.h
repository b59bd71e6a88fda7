#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "userspace-proxy/engine/connection_handler.h"
#include "userspace-proxy/engine/socket_address.h"

namespace sluice::engine {

// Which io_uring setup flags to try. kAuto probes SINGLE_ISSUER|DEFER_TASKRUN,
// then COOP_TASKRUN, then none; the others force a level (tests use them to
// exercise the fallbacks).
enum class RingMode : uint8_t { kAuto, kDeferTaskrun, kCoopTaskrun, kPlain };

struct EngineConfig {
  SocketAddress listen = SocketAddress::loopback4(0);
  // 0 = one per online CPU. Each worker owns a ring, a buffer ring, a
  // connection pool and its own SO_REUSEPORT listener on `listen`.
  unsigned workers = 0;
  int listen_backlog = 4096;

  RingMode ring_mode = RingMode::kAuto;
  uint32_t ring_entries = 2048;   // SQ size; the CQ is 4x

  // Provided buffer ring per worker: buffer_count x buffer_size bytes is the
  // hard bound on relay memory per worker. buffer_count: power of two <= 32768.
  uint32_t buffer_size = 16 * 1024;
  uint32_t buffer_count = 1024;
  // Engine-owned buffers for local responses and filter output (per worker).
  uint32_t local_buffer_count = 64;
  // Bulk buffers: a relaying direction whose reads fill `buffer_size`
  // buffers `bulk_after_full_reads` times in a row (a download, an upload)
  // reads into these larger ones instead, from a second provided ring: a
  // quarter of the recv/send completions per byte at 64 KiB. A read that
  // would have fit a small buffer moves it back; when the bulk ring is empty
  // the direction reads small buffers again. Memory is mapped up front but
  // touched only when used. bulk_buffer_count: power of two, 0 = off.
  uint32_t bulk_buffer_size = 64 * 1024;
  uint32_t bulk_buffer_count = 64;
  uint32_t bulk_after_full_reads = 2;

  // Backpressure: stop reading a side once this many buffers wait to be sent
  // to its peer; resume at half. Multishot receive can overshoot by one
  // kernel burst before the cancel lands; the buffer ring bounds that too.
  uint32_t max_queued_buffers = 4;
  // Multishot recv (fewer SQEs) is used when the ring runs DEFER_TASKRUN; it
  // can overshoot the watermark by what the kernel delivers in one
  // io_uring_enter. false = single-shot buffer-select recvs everywhere: one
  // SQE per buffer, but the watermark is then exact per direction.
  bool recv_multishot = true;
  // Most bytes the handler may ask to see before deciding (the filter's
  // output when need_more() installed one), and most held while deferred.
  uint32_t max_sniff_bytes = 16 * 1024;

  uint32_t max_connections_per_worker = 65536;

  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds idle_timeout{3600 * 1000};
  // After a local response: how long to keep draining the client's bytes so
  // close() sends FIN rather than RST (nginx's lingering close).
  std::chrono::milliseconds linger_timeout{1000};
  // Pooled upstream connections (Verdict::with_pool): closed after this long
  // unused (keep it below the upstreams' own idle timeout, or a request may
  // race their close), and at most this many idle per pool key.
  std::chrono::milliseconds upstream_pool_idle_timeout{30000};
  uint32_t upstream_pool_max_idle_per_key = 256;
  // Granularity of the per-worker timer wheel (idle/detection/linger/drain).
  std::chrono::milliseconds timer_tick{10};

  // SO_MARK for upstream sockets so interception skips the proxy's own
  // traffic (Istio uses 0x539). 0 = don't set. EPERM is counted, not fatal.
  uint32_t upstream_mark = 0x539;
  // Optional source address to bind upstream sockets to (port 0).
  std::optional<SocketAddress> upstream_source_v4;
  std::optional<SocketAddress> upstream_source_v6;

  // Called once per worker, on the worker thread, before it accepts.
  std::function<ConnectionHandlerPtr(uint32_t worker)> handler_factory;
};

}  // namespace sluice::engine
