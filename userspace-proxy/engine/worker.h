#pragma once

// Internal to the engine: one thread, one io_uring, one buffer ring, one
// listener. Not part of the public interface (see engine.h).

#include <liburing.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "userspace-proxy/engine/connection_handler.h"
#include "userspace-proxy/engine/engine_config.h"
#include "userspace-proxy/engine/timer_wheel.h"
#include "userspace-proxy/engine/worker_counters.h"

namespace sluice::engine {

class Worker;

inline constexpr uint32_t kNoBuffer = UINT32_MAX;
inline constexpr int kMaxSendIov = 8;

// Buffers waiting to be written to one socket, as a FIFO linked through the
// worker's per-buffer segment table: no allocation, bounded by the buffers
// that exist.
struct SendQueue {
  uint32_t head = kNoBuffer;
  uint32_t tail = kNoBuffer;
  uint32_t count = 0;
  uint64_t bytes = 0;
};

enum class RecvState : uint8_t {
  kIdle,        // no recv armed
  kArmed,       // multishot recv in flight
  kCancelling,  // cancel sent (backpressure or stop reading); terminal CQE pending
  kStarved,     // ended with -ENOBUFS; on the worker's starved list
};

struct Side {
  int fd = -1;
  RecvState recv = RecvState::kIdle;
  bool read_eof = false;       // no more reading from this side (FIN or told to stop)
  bool write_shut = false;     // we sent FIN to this side
  bool send_inflight = false;
  bool reset_on_close = false; // close with SO_LINGER{1,0}
  // Multishot recv drains the whole socket receive queue into the shared ring
  // before a cancel lands. After a backpressure pause the side reads one
  // buffer per (single-shot) recv until a short read shows the socket is
  // drained, so one slow peer cannot take the whole ring.
  bool multishot = true;
  bool paused = false;         // recv held back by the peer's full queue
  bool bulk = false;           // the next recv reads into a bulk buffer
  bool armed_bulk = false;     // the recv in flight selects from the bulk ring
  uint8_t full_reads = 0;      // reads in a row that filled their buffer
  bool end_filtered = false;   // the filter was told this side's FIN (on_end_stream)
  // A send went with MSG_MORE because our FIN follows it (fin_follows): the
  // kernel may hold its last partial segment for that FIN to carry, so it is
  // pushed (shutdown, or TCP_NODELAY before a reset) before any close(),
  // which drops unsent bytes when unread ones are left.
  bool tail_held = false;
  SendQueue out;               // bytes to write to this side
  TimerNode starved;           // link on the worker's starved list (prev/next only)
  iovec iov[kMaxSendIov];
  msghdr msg;
};

// A provided buffer ring and the memory of its buffers.
struct ProvidedRing {
  io_uring_buf_ring* ring = nullptr;
  size_t ring_bytes = 0;
  uint8_t* mem = nullptr;
  size_t mem_bytes = 0;
  uint32_t entries = 0;
  uint32_t size = 0;
  uint16_t bgid = 0;
  bool registered = false;
};

// kSniffing and kDeferred are adjacent so "no decision yet" is one range
// check on the per-chunk path.
// kSwitching: a filter asked for another upstream (FilterStatus::kNewUpstream);
// the old one is being stopped, then the connection is kSniffing again.
enum class Phase : uint8_t { kFree, kSniffing, kDeferred, kConnecting, kRelaying, kSwitching, kLingering, kClosing };

inline bool undecided(Phase p) { return p == Phase::kSniffing || p == Phase::kDeferred; }

// Cross-thread wake requests for one worker (Waker::wake). Shared with every
// Waker through a shared_ptr, so a Waker that outlives its worker (or the
// whole Engine) still points at valid memory; `open` turns false, under the
// lock, before the worker closes `fd`, so wake() never writes to a closed (or
// reused) descriptor.
//
// A mutex-protected vector rather than a lock-free MPSC queue: wakes are rare
// (one per deferred decision, e.g. a DNS answer), the critical section is one
// push_back into capacity the worker hands back after each drain, and an
// intrusive lock-free queue would need a node that outlives the connection
// (a Waker may be used after the connection is gone). Only the first wake
// into an empty mailbox writes the eventfd, so a burst costs one syscall.
struct WakeMailbox {
  std::mutex mu;
  std::vector<uint64_t> ids;  // connection ids to wake, in arrival order
  int fd = -1;                // the worker's eventfd
  bool open = false;
};

class alignas(16) ConnectionImpl final : public Connection {
 public:
  uint64_t id() const override { return stats.id; }
  uint32_t worker() const override { return stats.worker; }
  int downstream_fd() const override { return side[0].fd; }
  uint64_t context() const override { return ctx; }
  void set_context(uint64_t v) override { ctx = v; }
  Waker waker() override;
  void spawn(int fd, uint64_t tag) override;
  bool draining() const override;
  bool pool_has_idle(const std::string& key) const override;

  Phase phase = Phase::kFree;
  uint8_t upstream_count = 0;
  uint8_t upstream_next = 0;
  uint8_t last_connect_timed_out = 0;
  // The linked timeout of each connect attempt (the kernel reads it when the
  // SQE is submitted, so it lives with the connection).
  __kernel_timespec connect_ts{};
  TcpKeepalive keepalive;  // for the upstream sockets this connection opens
  int64_t pool_idle_ns = 0;  // the verdict's pool idle timeout; 0: the engine's; INT64_MAX: none
  int64_t idle_ns = 0;       // Verdict::with_idle_timeout; 0: the engine's; INT64_MAX: none
  int64_t max_end_ns = INT64_MAX;  // Verdict::with_max_duration: closed at this time
  // The next address is tried at this time (the handler's wait after a
  // failed attempt; no socket meanwhile).
  int64_t connect_retry_ns = INT64_MAX;
  // The upstream is to be parked in the pool once the connection is closed
  // (kEndDownstream with a pool key); cleared by anything that makes it
  // unusable (bytes or FIN from it, an unfinished send, a reset).
  bool parking = false;
  // The filter ended the downstream (kEndDownstream): once its queue is
  // written it gets our FIN and the connection ends, whether or not the
  // upstream can still be parked.
  bool ending_downstream = false;
  // The filter closed the connection (kClose): both sides get their FIN
  // once flushed, whatever it still holds (StreamFilter::upstream_end_held).
  bool filter_closed = false;
  // The downstream FIN arrived while deferred and the handler has not been
  // told yet (on_downstream_eof once it asks for more bytes again).
  bool eof_unreported = false;
  // The current defer() ends on a downstream FIN (Verdict::ended_by_eof).
  bool defer_ended_by_eof = false;
  // Verdict::respond answered a request and the connection waits for the
  // next one (a drain ends it gracefully rather than at the deadline).
  bool answered_idle = false;
  int inflight_ops = 0;  // SQEs whose final CQE has not arrived
  uint64_t ctx = 0;
  int64_t last_activity_ns = 0;
  int64_t phase_deadline_ns = 0;  // detection (sniffing) or linger deadline
  int64_t filter_deadline_ns = INT64_MAX;  // FilterOutput::set_timer
  Side side[2];                   // [0] downstream, [1] upstream
  TimerNode timer;
  StreamFilterPtr filter;
  std::array<SocketAddress, Verdict::kMaxUpstreams> upstreams;
  ConnectionStats stats;
  std::string pool_key;  // Verdict::with_pool; empty: not pooled
  ConnectionImpl* next_free = nullptr;
  Worker* owner = nullptr;
};

// An idle upstream connection in a worker's pool. While idle a POLLIN
// poll watches it: any byte or FIN from the peer means it cannot carry a new
// request, and it is closed. Slots live until that poll's CQE is in.
struct alignas(16) PooledUpstream {
  int fd = -1;
  SocketAddress address;
  UpstreamStatePtr state;
  std::string key;
  int64_t parked_ns = 0;
  int64_t expires_ns = 0;    // closed by the sweep from then on
  bool idle = false;         // in pool_idle_[key]
  bool poll_armed = false;   // its POLL_ADD has not completed yet
  PooledUpstream* next_free = nullptr;
};

class Worker {
 public:
  Worker(const EngineConfig& config, uint32_t index, int listen_fd);
  ~Worker();

  // Starts the thread; returns once it accepts (0) or failed (-errno).
  int start(std::string* error);
  void request_stop(std::chrono::milliseconds drain);
  void join();

  const WorkerCounters& counters() const { return counters_; }
  const char* ring_mode_name() const { return ring_mode_name_; }
  const std::shared_ptr<WakeMailbox>& mailbox() const { return mailbox_; }
  // Connection::spawn (worker thread): queued, taken after the current callback.
  void queue_spawn(int fd, uint64_t tag) { spawned_.emplace_back(fd, tag); }
  bool draining() const { return draining_; }
  bool pool_has_idle(const std::string& key) const;

 private:
  class Output;
  friend class Output;

  // Setup and loop.
  int setup(std::string* error);
  void run();
  void teardown();
  int setup_ring(std::string* error);
  int setup_buffers(std::string* error);
  int setup_bulk_buffers(uint32_t first_id, std::string* error);
  int map_provided_ring(ProvidedRing& r, uint16_t bgid, uint32_t entries, uint32_t mem_buffers, uint32_t size,
                        uint32_t first_id, std::string* error);
  void unmap_provided_ring(ProvidedRing& r);
  void provide(ProvidedRing& r, uint32_t bid, uint8_t* addr);
  io_uring_sqe* get_sqe();
  void arm_accept();
  void arm_wake();
  void process_cqe(const io_uring_cqe* cqe);
  void on_accept_cqe(const io_uring_cqe* cqe);
  void on_wake_cqe(const io_uring_cqe* cqe);
  void drain_mailbox();
  void wake_conn(uint64_t id);
  void begin_drain();
  void on_timer(ConnectionImpl* c);
  void fire_filter_timer(ConnectionImpl* c);
  void fire_filter_timer_connecting(ConnectionImpl* c);
  void abandon_connect(ConnectionImpl* c);
  void tell_drain(ConnectionImpl* c);
  template <typename Fn>
  void call_filter(ConnectionImpl* c, Fn fn);
  void rearm_starved();

  // Connection lifecycle.
  ConnectionImpl* alloc_conn();
  void accept_conn(int fd, uint64_t spawn_tag = 0);
  void accept_spawned();
  void apply_verdict(ConnectionImpl* c, Verdict v, CloseReason close_reason);
  bool install_filter(ConnectionImpl* c, StreamFilterPtr f);
  void enter_deferred(ConnectionImpl* c);
  void leave_deferred(ConnectionImpl* c);
  void report_sniff_eof(ConnectionImpl* c);
  enum class HeldUse : uint8_t { kData, kStart };
  bool filter_held(ConnectionImpl* c, HeldUse use);
  bool filter_local_response(ConnectionImpl* c, std::span<const uint8_t> response);
  void start_connect(ConnectionImpl* c);
  void enter_relaying(ConnectionImpl* c);
  void fail_connect(ConnectionImpl* c, bool timed_out, int err);
  bool adopt_pooled(ConnectionImpl* c);
  // FilterStatus::kNewUpstream: stop the upstream, then (from settle, once
  // nothing is in flight on it) park or close it and ask the handler again.
  void begin_switch(ConnectionImpl* c);
  void finish_switch(ConnectionImpl* c);

  // Upstream pool.
  void pool_park(ConnectionImpl* c);
  void pool_unlink(PooledUpstream* e);
  void pool_close(PooledUpstream* e, bool expired);
  void pool_free(PooledUpstream* e);
  void pool_sweep();
  int64_t sweep_interval_ns() const;
  void pool_close_all();
  void on_pool_cqe(PooledUpstream* e, int res);
  void on_connect_cqe(ConnectionImpl* c, int res);
  void on_recv_cqe(ConnectionImpl* c, int s, int res, uint32_t flags);
  void on_send_cqe(ConnectionImpl* c, int s, int res);
  void on_bytes(ConnectionImpl* c, int s, uint32_t bid, uint32_t len);
  void on_eof(ConnectionImpl* c, int s);
  void run_filter(ConnectionImpl* c, int s, uint32_t bid, uint32_t len);
  void filter_status(ConnectionImpl* c, FilterStatus st);
  bool filter_end_stream(ConnectionImpl* c, int s);
  void stop_reading(ConnectionImpl* c, int s);
  bool upstream_reset_to_filter(ConnectionImpl* c);
  void release_queue_if_idle(ConnectionImpl* c, int s);  // drops queued bytes unless a send uses them
  void arm_recv(ConnectionImpl* c, int s);
  void maybe_arm_recv(ConnectionImpl* c, int s);
  void cancel_send(ConnectionImpl* c, int s);
  void cancel_recv(ConnectionImpl* c, int s);
  void kick_send(ConnectionImpl* c, int s);
  void maybe_shutdown_write(ConnectionImpl* c, int s);
  bool fin_follows(const ConnectionImpl* c, int s) const;
  void linger_after_end(ConnectionImpl* c);
  void upstream_broke_after_end(ConnectionImpl* c);
  void enter_lingering(ConnectionImpl* c);
  void begin_close(ConnectionImpl* c, CloseReason reason, int error, bool rst_down, bool rst_up);
  void settle(ConnectionImpl* c);  // finalize if closing and nothing in flight
  void finalize(ConnectionImpl* c);
  void reschedule_timer(ConnectionImpl* c);
  int64_t conn_deadline(const ConnectionImpl* c) const;
  std::span<const uint8_t> pending_downstream(ConnectionImpl* c);
  bool respond_locally(ConnectionImpl* c, std::span<const uint8_t> response, size_t consumed);
  void close_with(ConnectionImpl* c, std::span<const uint8_t> response, CloseReason reason);
  size_t gather(const SendQueue& q, size_t limit);  // linearize into scratch_

  // Buffers.
  // Buffer ids: [0, buffer_count) the small ring (group 0), then the bulk
  // ring (group 1) from bulk_base_, then the local buffers from local_base_
  // (their memory follows the small ring's).
  uint8_t* buf_addr(uint32_t bid) const {
    if (bid < config_.buffer_count) [[likely]] return small_.mem + static_cast<size_t>(bid) * config_.buffer_size;
    if (bid >= local_base_) {
      return small_.mem + static_cast<size_t>(config_.buffer_count + (bid - local_base_)) * config_.buffer_size;
    }
    return bulk_.mem + static_cast<size_t>(bid - bulk_base_) * config_.bulk_buffer_size;
  }
  bool is_bulk(uint32_t bid) const { return bid >= config_.buffer_count && bid < local_base_; }
  uint32_t buf_size(uint32_t bid) const { return is_bulk(bid) ? config_.bulk_buffer_size : config_.buffer_size; }
  bool is_local(uint32_t bid) const { return bid >= local_base_; }
  void note_read_size(ConnectionImpl* c, int s, uint32_t len);
  void enqueue(SendQueue& q, uint32_t bid, uint32_t off, uint32_t len, bool coalesce = true);
  void drop_front(SendQueue& q, uint64_t n);
  int enqueue_copy(SendQueue& q, std::span<const uint8_t> bytes);  // into local buffers
  void release_buffer(uint32_t bid);
  void release_queue(SendQueue& q);
  void starved_push(ConnectionImpl* c, int s);
  void starved_remove(ConnectionImpl* c, int s);

  EngineConfig config_;
  uint32_t index_;
  int listen_fd_;
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  std::atomic<int64_t> drain_ns_{-1};
  std::shared_ptr<WakeMailbox> mailbox_;
  std::vector<uint64_t> wake_batch_;  // swapped with mailbox_->ids on each drain
  std::vector<std::pair<int, uint64_t>> spawned_;   // Connection::spawn, not taken yet
  std::vector<std::pair<int, uint64_t>> spawning_;  // the batch being taken
  // Deferred connections by id: a wake names a connection only by id, and a
  // slot may be reused by then. Only deferring connections pay for an entry.
  std::unordered_map<uint64_t, ConnectionImpl*> deferred_;
  std::thread thread_;
  ConnectionHandlerPtr handler_;

  io_uring ring_{};
  bool ring_ready_ = false;
  const char* ring_mode_name_ = "none";
  // Multishot recv only with DEFER_TASKRUN: completions then run inside our
  // own io_uring_enter, after the cancels we submit in it, so a burst before a
  // backpressure cancel lands is bounded (the kernel retries a multishot recv
  // at most 32 times per run). With COOP/no taskrun flags they run
  // asynchronously and one multishot recv could take the whole ring.
  bool multishot_recv_ = false;
  ProvidedRing small_;  // group 0, with the local buffers after its entries
  ProvidedRing bulk_;   // group 1
  std::vector<uint32_t> seg_next_;  // per buffer id: next in its SendQueue
  std::vector<uint32_t> seg_off_;
  std::vector<uint32_t> seg_len_;
  std::vector<uint32_t> local_free_;  // stack of free local buffer ids
  uint32_t ring_buffers_held_ = 0;
  uint32_t bulk_base_ = UINT32_MAX;  // first bulk buffer id (UINT32_MAX: no bulk ring)
  uint32_t local_base_ = UINT32_MAX;  // first local buffer id
  uint32_t bulk_held_ = 0;
  std::vector<uint8_t> scratch_;      // linearized sniff/held bytes
  __kernel_timespec connect_ts_{};

  std::vector<std::unique_ptr<ConnectionImpl[]>> slabs_;
  uint32_t slab_size_ = 256;
  uint32_t conns_allocated_ = 0;
  uint32_t conns_active_ = 0;
  ConnectionImpl* free_list_ = nullptr;
  uint64_t next_conn_seq_ = 1;

  std::vector<std::unique_ptr<PooledUpstream>> pool_slots_;
  PooledUpstream* pool_free_ = nullptr;
  std::unordered_map<std::string, std::vector<PooledUpstream*>> pool_idle_;  // oldest first
  uint64_t pool_idle_count_ = 0;
  int64_t pool_next_sweep_ns_ = 0;

  std::unique_ptr<TimerWheel> wheel_;
  TimerNode starved_head_;  // circular list of Side::starved nodes
  int64_t now_ns_ = 0;

  bool accept_armed_ = false;
  bool accept_retry_ = false;  // re-arm accept on the next tick (after EMFILE & co.)
  bool wake_armed_ = false;
  bool draining_ = false;
  int64_t drain_deadline_ns_ = 0;
  WorkerCounters counters_;
};

}  // namespace sluice::engine
