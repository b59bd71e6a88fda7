#include "userspace-proxy/engine/worker.h"

#include "userspace-proxy/engine/deadline.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <poll.h>

namespace sluice::engine {

namespace {

// user_data: a ConnectionImpl pointer (16-byte aligned) with the operation in
// the low bits, or a small constant for worker-level operations.
constexpr uint64_t kTagRecv0 = 0;  // kTagRecv0 + side
constexpr uint64_t kTagSend0 = 2;  // kTagSend0 + side
constexpr uint64_t kTagConnect = 4;
constexpr uint64_t kTagPool = 5;  // on a PooledUpstream: its idle poll
constexpr uint64_t kTagMask = 15;
constexpr uint64_t kUdIgnore = 1;  // cancels, link timeouts: nothing to do
constexpr uint64_t kUdAccept = 2;
constexpr uint64_t kUdWake = 3;
constexpr uint64_t kUdSpecialLimit = 4096;

uint64_t ud(ConnectionImpl* c, uint64_t tag) { return reinterpret_cast<uint64_t>(c) | tag; }

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t to_ns(std::chrono::milliseconds ms) { return static_cast<int64_t>(ms.count()) * 1000000; }
// A verdict's timeout: Verdict::kNoTimeout (none), and anything too long to
// count in nanoseconds, become INT64_MAX.
int64_t timeout_ns(std::chrono::milliseconds ms) { return saturating_ns(ms); }

bool is_reset_error(int err) { return err == ECONNRESET || err == EPIPE || err == ECONNABORTED; }

CloseReason reset_reason(int s) { return s == 0 ? CloseReason::kDownstreamReset : CloseReason::kUpstreamReset; }

}  // namespace

// FilterOutput over the chunk being filtered. For a chunk that is a ring
// buffer (bid != kNoBuffer), a forward() of a prefix keeps the buffer itself
// (zero-copy); everything else, and every byte of a chunk that is not a ring
// buffer (held bytes gathered into scratch_, end of stream), is copied into
// local buffers.
class Worker::Output final : public FilterOutput {
 public:
  Output(Worker* w, ConnectionImpl* c, int s, const uint8_t* data, uint32_t len, uint32_t bid)
      : w_(w), c_(c), s_(s), data_(data), bid_(bid), len_(len) {}

  int forward(size_t n) override {
    if (n > len_ - consumed_) return -EINVAL;
    if (n == 0) return 0;
    if (consumed_ == 0 && bid_ != kNoBuffer) {
      // The ring buffer itself joins the queue; later copies from it stay valid
      // because it is not coalesced away (and not sent before we return).
      w_->enqueue(c_->side[1 - s_].out, bid_, 0, static_cast<uint32_t>(n), /*coalesce=*/false);
      buffer_kept_ = true;
      consumed_ = static_cast<uint32_t>(n);
      return 0;
    }
    int rc = w_->enqueue_copy(c_->side[1 - s_].out, {data_ + consumed_, n});
    if (rc < 0) return rc;
    consumed_ += static_cast<uint32_t>(n);
    return 0;
  }
  void skip(size_t n) override { consumed_ += static_cast<uint32_t>(std::min<size_t>(n, len_ - consumed_)); }
  int inject(Direction dir, std::span<const uint8_t> bytes) override {
    int target = dir == Direction::kDownstreamToUpstream ? 1 : 0;
    return w_->enqueue_copy(c_->side[target].out, bytes);
  }
  void set_timer(std::chrono::milliseconds after) override {
    c_->filter_deadline_ns = after.count() > 0 ? w_->now_ns_ + to_ns(after) : INT64_MAX;
    if (c_->phase == Phase::kRelaying || c_->phase == Phase::kConnecting) w_->reschedule_timer(c_);
  }
  bool buffer_kept() const { return buffer_kept_; }

 private:
  Worker* w_;
  ConnectionImpl* c_;
  int s_;
  const uint8_t* data_;
  uint32_t bid_;
  uint32_t len_;
  uint32_t consumed_ = 0;
  bool buffer_kept_ = false;
};

Waker ConnectionImpl::waker() { return Waker(owner->mailbox(), stats.id); }

void ConnectionImpl::spawn(int fd, uint64_t tag) { owner->queue_spawn(fd, tag); }

bool ConnectionImpl::draining() const { return owner->draining(); }

bool ConnectionImpl::pool_has_idle(const std::string& key) const { return owner->pool_has_idle(key); }

bool Worker::pool_has_idle(const std::string& key) const {
  if (draining_) return false;  // adopt_pooled takes none then
  auto it = pool_idle_.find(key);
  return it != pool_idle_.end() && !it->second.empty();
}

void Worker::accept_spawned() {
  // A spawned connection's callbacks may spawn more: take batches until none
  // is left.
  while (!spawned_.empty()) {
    spawning_.swap(spawned_);
    for (const auto& [fd, tag] : spawning_) {
      counters_.spawned.add();
      if (draining_) {
        close(fd);
        handler_->on_spawn_dropped(tag);
        continue;
      }
      accept_conn(fd, tag);
    }
    spawning_.clear();
  }
}

void Waker::wake() const {
  if (!mailbox_) return;
  auto* mb = static_cast<WakeMailbox*>(mailbox_.get());
  std::lock_guard<std::mutex> lock(mb->mu);
  if (!mb->open) return;  // the worker has stopped: nothing left to wake
  mb->ids.push_back(id_);
  if (mb->ids.size() == 1) {
    // First request since the worker's last drain: interrupt its ring wait.
    // Later ones ride on this write (the worker swaps the whole vector out).
    // Written under the lock so the worker cannot close the fd in between.
    uint64_t one = 1;
    ssize_t n = write(mb->fd, &one, sizeof(one));
    (void)n;  // EAGAIN only if the counter saturates: a wake is pending anyway
  }
}

Worker::Worker(const EngineConfig& config, uint32_t index, int listen_fd)
    : config_(config), index_(index), listen_fd_(listen_fd), mailbox_(std::make_shared<WakeMailbox>()) {
  starved_head_.prev = starved_head_.next = &starved_head_;
}

Worker::~Worker() {
  join();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

int Worker::start(std::string* error) {
  std::promise<std::pair<int, std::string>> ready;
  auto fut = ready.get_future();
  thread_ = std::thread([this, &ready] {
    std::string err;
    int rc = setup(&err);
    ready.set_value({rc, err});
    if (rc == 0) run();
    teardown();
  });
  auto [rc, err] = fut.get();
  if (rc < 0) {
    *error = err;
    join();
  }
  return rc;
}

void Worker::request_stop(std::chrono::milliseconds drain) {
  int64_t expected = -1;
  drain_ns_.compare_exchange_strong(expected, std::max<int64_t>(0, to_ns(drain)));
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof(one));
    (void)n;
  }
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------- setup

int Worker::setup_ring(std::string* error) {
  struct Attempt {
    RingMode mode;
    unsigned flags;
    const char* name;
  };
  const Attempt attempts[] = {
      {RingMode::kDeferTaskrun, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "defer_taskrun"},
      {RingMode::kCoopTaskrun, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
       "coop_taskrun+single_issuer"},
      {RingMode::kCoopTaskrun, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, "coop_taskrun"},
      {RingMode::kPlain, 0, "plain"},
  };
  int rc = -EINVAL;
  for (const auto& a : attempts) {
    bool wanted = config_.ring_mode == RingMode::kAuto || config_.ring_mode == a.mode ||
                  (config_.ring_mode == RingMode::kDeferTaskrun && a.mode != RingMode::kDeferTaskrun) ||
                  (config_.ring_mode == RingMode::kCoopTaskrun && a.mode == RingMode::kPlain);
    // A forced mode is the first attempt; weaker modes remain fallbacks.
    if (!wanted) continue;
    io_uring_params p{};
    p.flags = a.flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = config_.ring_entries * 4;
    rc = io_uring_queue_init_params(config_.ring_entries, &ring_, &p);
    if (rc == 0) {
      ring_mode_name_ = a.name;
      multishot_recv_ = config_.recv_multishot && (a.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
      ring_ready_ = true;
      // Saves an fd-table lookup on every io_uring_enter; optional (5.18+).
      io_uring_register_ring_fd(&ring_);
      if (!(p.features & IORING_FEAT_EXT_ARG)) {
        *error = "io_uring lacks IORING_FEAT_EXT_ARG (kernel < 5.11); need >= 6.0";
        return -ENOSYS;
      }
      return 0;
    }
    if (rc != -EINVAL) break;
  }
  *error = std::string("io_uring_queue_init_params: ") + strerror(-rc);
  return rc;
}

// Maps `mem_buffers` buffers of `size` bytes (touched only when used) and a
// provided ring (group `bgid`) holding the first `entries` of them, with
// buffer ids from `first_id` on.
int Worker::map_provided_ring(ProvidedRing& r, uint16_t bgid, uint32_t entries, uint32_t mem_buffers, uint32_t size,
                              uint32_t first_id, std::string* error) {
  r.mem_bytes = static_cast<size_t>(mem_buffers) * size;
  void* mem = mmap(nullptr, r.mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    *error = "mmap buffers (group " + std::to_string(bgid) + "): " + strerror(errno);
    return -errno;
  }
  r.mem = static_cast<uint8_t*>(mem);
  r.ring_bytes = static_cast<size_t>(entries) * sizeof(io_uring_buf);
  mem = mmap(nullptr, r.ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    *error = "mmap buffer ring (group " + std::to_string(bgid) + "): " + strerror(errno);
    return -errno;
  }
  r.ring = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(r.ring);
  reg.ring_entries = entries;
  reg.bgid = bgid;
  int rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (rc < 0) {
    *error = "io_uring_register_buf_ring (group " + std::to_string(bgid) + "): " + strerror(-rc) +
             " (needs kernel >= 5.19)";
    return rc;
  }
  r.registered = true;
  r.bgid = bgid;
  r.entries = entries;
  r.size = size;
  io_uring_buf_ring_init(r.ring);
  const int mask = io_uring_buf_ring_mask(entries);
  for (uint32_t i = 0; i < entries; ++i) {
    io_uring_buf_ring_add(r.ring, r.mem + static_cast<size_t>(i) * size, size,
                          static_cast<unsigned short>(first_id + i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(r.ring, static_cast<int>(entries));
  return 0;
}

void Worker::unmap_provided_ring(ProvidedRing& r) {
  if (r.ring) munmap(r.ring, r.ring_bytes);
  if (r.mem) munmap(r.mem, r.mem_bytes);
  r = ProvidedRing{};
}

// Hands a buffer back to its provided ring.
void Worker::provide(ProvidedRing& r, uint32_t bid, uint8_t* addr) {
  io_uring_buf_ring_add(r.ring, addr, r.size, static_cast<unsigned short>(bid), io_uring_buf_ring_mask(r.entries), 0);
  io_uring_buf_ring_advance(r.ring, 1);
}

int Worker::setup_buffers(std::string* error) {
  const uint32_t n = config_.buffer_count;
  if (n == 0 || n > 32768 || (n & (n - 1)) != 0) {
    *error = "buffer_count must be a power of two in [1, 32768], got " + std::to_string(n);
    return -EINVAL;
  }
  if (config_.buffer_size < 512) {
    *error = "buffer_size must be >= 512";
    return -EINVAL;
  }
  // The small ring's memory also holds the local buffers, after its n.
  int rc = map_provided_ring(small_, 0, n, n + config_.local_buffer_count, config_.buffer_size, 0, error);
  if (rc < 0) return rc;
  // Ids: the small ring's, then the bulk ring's (both 16-bit: the kernel
  // hands them back), then the local buffers' (never seen by the kernel).
  rc = setup_bulk_buffers(n, error);
  if (rc < 0) return rc;
  local_base_ = n + (bulk_base_ == UINT32_MAX ? 0 : config_.bulk_buffer_count);
  const uint32_t total = local_base_ + config_.local_buffer_count;
  seg_next_.assign(total, kNoBuffer);
  seg_off_.assign(total, 0);
  seg_len_.assign(total, 0);
  local_free_.reserve(config_.local_buffer_count);
  for (uint32_t i = total; i > local_base_; --i) local_free_.push_back(i - 1);
  scratch_.resize(config_.max_sniff_bytes + config_.buffer_size);
  return 0;
}

// The second provided ring (group 1) for bulk directions; its entries carry
// ids from bulk_base_ on, so a completion's buffer id alone says which ring.
int Worker::setup_bulk_buffers(uint32_t first_id, std::string* error) {
  const uint32_t n = config_.bulk_buffer_count;
  if (n == 0) return 0;
  if ((n & (n - 1)) != 0 || n > 32768) {
    *error = "bulk_buffer_count must be a power of two in [0, 32768], got " + std::to_string(n);
    return -EINVAL;
  }
  if (config_.bulk_buffer_size <= config_.buffer_size || config_.bulk_buffer_size > (1u << 20)) {
    *error = "bulk_buffer_size must be larger than buffer_size and at most 1 MiB";
    return -EINVAL;
  }
  if (static_cast<uint64_t>(first_id) + n > 65536) {
    *error = "buffer_count + bulk_buffer_count must be at most 65536 (16-bit buffer ids)";
    return -EINVAL;
  }
  if (config_.bulk_after_full_reads < 1 || config_.bulk_after_full_reads > 255) {
    *error = "bulk_after_full_reads must be in [1, 255]";
    return -EINVAL;
  }
  int rc = map_provided_ring(bulk_, 1, n, n, config_.bulk_buffer_size, first_id, error);
  if (rc < 0) return rc;
  bulk_base_ = first_id;
  return 0;
}

int Worker::setup(std::string* error) {
  std::string prefix = "worker " + std::to_string(index_) + ": ";
  int rc = setup_ring(error);
  if (rc == 0) rc = setup_buffers(error);
  if (rc == 0) {
    wake_fd_ = eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      rc = -errno;
      *error = "eventfd: " + std::string(strerror(errno));
    } else {
      std::lock_guard<std::mutex> lock(mailbox_->mu);
      mailbox_->fd = wake_fd_;
      mailbox_->open = true;
    }
  }
  if (rc == 0 && config_.handler_factory) handler_ = config_.handler_factory(index_);
  if (rc == 0 && !handler_) {
    rc = -EINVAL;
    *error = "handler_factory returned no handler";
  }
  if (rc < 0) {
    *error = prefix + *error;
    return rc;
  }
  now_ns_ = monotonic_ns();
  int64_t tick = std::max<int64_t>(1000000, to_ns(config_.timer_tick));
  wheel_ = std::make_unique<TimerWheel>(tick, 1024, now_ns_);
  int64_t ct = std::max<int64_t>(1, to_ns(config_.connect_timeout));
  connect_ts_.tv_sec = ct / 1000000000;
  connect_ts_.tv_nsec = ct % 1000000000;
  arm_accept();
  arm_wake();
  rc = io_uring_submit(&ring_);
  if (rc < 0) {
    *error = prefix + "io_uring_submit: " + strerror(-rc);
    return rc;
  }
  return 0;
}

void Worker::teardown() {
  for (const auto& [fd, tag] : spawned_) close(fd);  // spawned after the loop ended
  spawned_.clear();
  {
    // From here on Waker::wake() is a no-op; it can no longer touch wake_fd_
    // (closed in ~Worker) nor grow a vector nobody drains.
    std::lock_guard<std::mutex> lock(mailbox_->mu);
    mailbox_->open = false;
    mailbox_->fd = -1;
    mailbox_->ids.clear();
  }
  deferred_.clear();
  pool_close_all();
  if (ring_ready_) {
    for (ProvidedRing* r : {&small_, &bulk_}) {
      if (r->registered) io_uring_unregister_buf_ring(&ring_, r->bgid);
    }
    io_uring_queue_exit(&ring_);
    ring_ready_ = false;
  }
  // Unmapped once the ring is gone: nothing can write into them any more.
  unmap_provided_ring(small_);
  unmap_provided_ring(bulk_);
  bulk_base_ = local_base_ = UINT32_MAX;
  handler_.reset();  // wake_fd_ stays open until ~Worker: request_stop may race with exit
}

// ---------------------------------------------------------------- loop

io_uring_sqe* Worker::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // SQ full: flush it now rather than queue work in userspace.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void Worker::arm_accept() {
  if (listen_fd_ < 0 || accept_armed_) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, kUdAccept);
  accept_armed_ = true;
}

void Worker::arm_wake() {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof(wake_buf_), 0);
  io_uring_sqe_set_data64(sqe, kUdWake);
  wake_armed_ = true;
}

void Worker::run() {
  for (;;) {
    counters_.loop_iterations.add();
    if (draining_) {
      if (conns_active_ == 0 && !accept_armed_) break;
      if (now_ns_ >= drain_deadline_ns_) {
        for (auto& slab : slabs_) {
          for (uint32_t i = 0; i < slab_size_; ++i) {
            ConnectionImpl* c = &slab[i];
            if (c->phase != Phase::kFree && c->phase != Phase::kClosing) {
              counters_.drain_aborted.add();
              begin_close(c, CloseReason::kDrainDeadline, 0, true, true);
              settle(c);
            }
          }
        }
        drain_deadline_ns_ = INT64_MAX;  // abort once; then wait for cancels to land
      }
    }
    int64_t wake_at = wheel_->next_tick_ns();
    if (draining_) wake_at = std::min(wake_at, drain_deadline_ns_);
    if (accept_retry_) wake_at = std::min(wake_at, now_ns_ + to_ns(config_.timer_tick));
    if (pool_idle_count_ > 0) wake_at = std::min(wake_at, pool_next_sweep_ns_);
    __kernel_timespec ts{};
    __kernel_timespec* tsp = nullptr;
    if (wake_at != INT64_MAX) {
      int64_t d = std::max<int64_t>(0, wake_at - now_ns_);
      ts.tv_sec = d / 1000000000;
      ts.tv_nsec = d % 1000000000;
      tsp = &ts;
    }
    io_uring_cqe* cqe = nullptr;
    counters_.sqe_submitted.add(io_uring_sq_ready(&ring_));
    // One syscall per iteration: submit everything queued, wait for one CQE or the next tick.
    int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, tsp, nullptr);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      counters_.ring_errors.add();
    }
    now_ns_ = monotonic_ns();
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      process_cqe(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    if (!spawned_.empty()) accept_spawned();
    if (starved_head_.next != &starved_head_) rearm_starved();
    if (accept_retry_ && !draining_) {
      accept_retry_ = false;
      arm_accept();
    }
    wheel_->advance(now_ns_, [this](TimerNode* n) { on_timer(static_cast<ConnectionImpl*>(n->owner)); });
    if (pool_idle_count_ > 0 && now_ns_ >= pool_next_sweep_ns_) pool_sweep();
    // Buffers the timers or the sweep gave back go to connections waiting
    // for them now (the loop no longer wakes every tick).
    if (starved_head_.next != &starved_head_) rearm_starved();
    if (!spawned_.empty()) accept_spawned();  // from timer callbacks
    int64_t drain = drain_ns_.load(std::memory_order_relaxed);
    if (drain >= 0 && !draining_) {
      drain_deadline_ns_ = now_ns_ + drain;
      begin_drain();
    }
  }
  // Final submit so queued closes/cancels reach the kernel before exit.
  io_uring_submit(&ring_);
}

void Worker::begin_drain() {
  draining_ = true;
  if (accept_armed_) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, kUdAccept, 0);
    io_uring_sqe_set_data64(sqe, kUdIgnore);
  }
  // The in-flight accept holds its own file reference; closing now removes
  // this worker from the SO_REUSEPORT group as soon as the cancel lands.
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  // Idle upstreams carry nothing: close them now (a draining worker parks
  // no more).
  pool_close_all();
  // Clients kept after a local answer and idle since: nothing is under way
  // on them, so they end now with a FIN (Envoy closes idle HTTP/1
  // connections when it drains), not at the deadline with a reset.
  for (auto& slab : slabs_) {
    for (uint32_t i = 0; i < slab_size_; ++i) {
      ConnectionImpl* c = &slab[i];
      if (c->phase == Phase::kSniffing && c->answered_idle && c->side[1].out.count == 0) {
        close_with(c, {}, CloseReason::kLocalClose);
        settle(c);
      } else if (c->phase == Phase::kRelaying) {
        tell_drain(c);
        settle(c);
      }
    }
  }
}

// A filter callback without a chunk (its timer, the drain): its output is
// sent, its status carried out.
template <typename Fn>
void Worker::call_filter(ConnectionImpl* c, Fn fn) {
  Output out(this, c, 1, nullptr, 0, kNoBuffer);
  FilterStatus st = fn(*c->filter, out);
  for (int s = 0; s < 2; ++s) {
    if (c->side[s].out.count > 0) kick_send(c, s);
  }
  filter_status(c, st);
}

// A relaying connection's filter hears of the drain (an HTTP one ends an
// idle keep-alive client now, a busy one after its next response); not one
// that is ending already. Once per filter: begin_drain tells the connections
// relaying then, enter_relaying those that start relaying afterwards (a new
// filter, or a TLS terminator's new inner one, after a switch).
void Worker::tell_drain(ConnectionImpl* c) {
  if (!c->filter || c->phase != Phase::kRelaying || c->ending_downstream) return;
  call_filter(c, [](StreamFilter& f, FilterOutput& out) { return f.on_drain(out); });
}

void Worker::process_cqe(const io_uring_cqe* cqe) {
  const uint64_t data = cqe->user_data;
  if (data < kUdSpecialLimit) {
    if (data == kUdAccept) on_accept_cqe(cqe);
    else if (data == kUdWake) on_wake_cqe(cqe);
    return;
  }
  const uint64_t tag = data & kTagMask;
  if (tag == kTagPool) {
    on_pool_cqe(reinterpret_cast<PooledUpstream*>(data & ~kTagMask), cqe->res);
    return;
  }
  auto* c = reinterpret_cast<ConnectionImpl*>(data & ~kTagMask);
  if (tag == kTagConnect) {
    on_connect_cqe(c, cqe->res);
  } else if (tag < kTagSend0) {
    on_recv_cqe(c, static_cast<int>(tag - kTagRecv0), cqe->res, cqe->flags);
  } else {
    on_send_cqe(c, static_cast<int>(tag - kTagSend0), cqe->res);
  }
  settle(c);
}

void Worker::on_accept_cqe(const io_uring_cqe* cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) {
    accept_armed_ = false;
    if (!draining_) {
      counters_.accept_rearms.add();
      if (cqe->res < 0) accept_retry_ = true;  // EMFILE & co.: back off one tick
      else arm_accept();
    }
  }
  if (cqe->res < 0) {
    if (cqe->res != -ECANCELED) counters_.accept_errors.add();
    return;
  }
  accept_conn(cqe->res);
}

void Worker::on_wake_cqe(const io_uring_cqe* cqe) {
  (void)cqe;
  wake_armed_ = false;
  // Re-armed while draining too: deferred connections still get woken until
  // the drain deadline. The stop request itself is read from drain_ns_ at the
  // end of the iteration.
  arm_wake();
  drain_mailbox();
}

void Worker::drain_mailbox() {
  {
    std::lock_guard<std::mutex> lock(mailbox_->mu);
    // Swap rather than copy: the producers get back the capacity of the
    // previous batch, so steady-state wakes do not allocate.
    wake_batch_.swap(mailbox_->ids);
  }
  for (uint64_t id : wake_batch_) wake_conn(id);
  wake_batch_.clear();
}

void Worker::wake_conn(uint64_t id) {
  auto it = deferred_.find(id);
  if (it == deferred_.end()) {
    // Closed, already woken, timed out, or never deferred: the map holds
    // only connections that are deferred right now, keyed by their unique
    // id, so a stale id cannot reach a reused slot.
    counters_.wakes_ignored.add();
    return;
  }
  ConnectionImpl* c = it->second;
  counters_.wakes.add();
  leave_deferred(c);
  Verdict v = handler_->on_wake(*c, pending_downstream(c));
  apply_verdict(c, std::move(v), CloseReason::kLocalClose);
  settle(c);
}

void Worker::on_timer(ConnectionImpl* c) {
  if (c->phase == Phase::kFree || c->phase == Phase::kClosing) return;
  int64_t deadline = conn_deadline(c);
  if (deadline > now_ns_) {
    wheel_->schedule(&c->timer, deadline);
    return;
  }
  if (c->filter_deadline_ns <= now_ns_ && (c->phase == Phase::kRelaying || c->phase == Phase::kConnecting)) {
    fire_filter_timer(c);
  } else if (undecided(c->phase) && c->phase_deadline_ns <= now_ns_) {
    counters_.detection_timeouts.add();
    if (c->phase == Phase::kDeferred) leave_deferred(c);  // a late wake is then ignored
    Verdict v = handler_->on_detection_timeout(*c, pending_downstream(c));
    apply_verdict(c, std::move(v), CloseReason::kDetectionTimeout);
  } else if (c->phase == Phase::kLingering) {
    begin_close(c, CloseReason::kLocalClose, 0, false, false);
  } else if (c->phase == Phase::kConnecting && c->connect_retry_ns <= now_ns_ && c->max_end_ns > now_ns_) {
    c->connect_retry_ns = INT64_MAX;
    start_connect(c);
  } else if (c->max_end_ns <= now_ns_ &&
             (c->phase == Phase::kConnecting || c->phase == Phase::kRelaying || c->phase == Phase::kSwitching)) {
    counters_.duration_timeouts.add();
    begin_close(c, CloseReason::kMaxDuration, 0, false, false);
  } else {
    counters_.idle_timeouts.add();
    begin_close(c, CloseReason::kIdleTimeout, 0, false, false);
  }
  if (c->phase != Phase::kClosing && !c->timer.linked()) reschedule_timer(c);
  settle(c);
}

void Worker::fire_filter_timer(ConnectionImpl* c) {
  c->filter_deadline_ns = INT64_MAX;
  if (!c->filter) return;
  if (c->phase == Phase::kConnecting) {
    fire_filter_timer_connecting(c);
    return;
  }
  call_filter(c, [](StreamFilter& f, FilterOutput& out) { return f.on_timer(out); });
}

// The filter's timer (an HTTP route timeout, which spans the connect as
// Envoy's does) ran out before any upstream was connected: an attempt in
// flight or a wait between attempts. Ended by the filter, the connect is
// given up: nothing goes upstream, the filter's reply (Envoy's 504) goes to
// the client, which then gets its FIN.
void Worker::fire_filter_timer_connecting(ConnectionImpl* c) {
  Output out(this, c, 1, nullptr, 0, kNoBuffer);
  const FilterStatus st = c->filter->on_timer(out);
  if (st == FilterStatus::kContinue) {
    if (c->side[0].out.count > 0) kick_send(c, 0);
    return;  // (a timer set again: on_timer reschedules)
  }
  if (st == FilterStatus::kReset) {
    begin_close(c, CloseReason::kFilterClose, 0, true, true);
    return;
  }
  abandon_connect(c);
  release_queue(c->side[1].out);  // never to be sent
  if (c->stats.reason == CloseReason::kNone) c->stats.reason = CloseReason::kFilterClose;
  if (c->side[0].out.count == 0) {
    begin_close(c, CloseReason::kFilterClose, 0, false, false);
    return;
  }
  counters_.local_responses.add();
  enter_lingering(c);
}

// A connecting connection stops connecting: the attempt in flight (if any;
// none during a wait between attempts) is cancelled and its socket closed;
// its completion, still due, finds the connection no longer connecting.
// The close goes through the ring after the cancel: the connect may still
// be queued unsubmitted (started this very loop), and a descriptor closed
// now could be reused by another connection's socket before the kernel
// reads that connect.
void Worker::abandon_connect(ConnectionImpl* c) {
  c->connect_retry_ns = INT64_MAX;
  c->upstream_next = c->upstream_count;
  c->stats.upstream = SocketAddress();
  Side& up = c->side[1];
  if (up.fd < 0) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, ud(c, kTagConnect), 0);
  io_uring_sqe_set_data64(sqe, kUdIgnore);
  sqe = get_sqe();
  io_uring_prep_close(sqe, up.fd);
  io_uring_sqe_set_data64(sqe, kUdIgnore);
  up.fd = -1;
}

int64_t Worker::conn_deadline(const ConnectionImpl* c) const {
  const int64_t idle =
      deadline_after(c->last_activity_ns, c->idle_ns != 0 ? c->idle_ns : to_ns(config_.idle_timeout));
  switch (c->phase) {
    case Phase::kSniffing:
    case Phase::kDeferred: return std::min(idle, c->phase_deadline_ns);
    case Phase::kLingering: return c->last_activity_ns + to_ns(config_.linger_timeout);
    // A filter's timer runs during the connect too (an HTTP route timeout
    // spans it). The idle timeout does as well, as Envoy's tcp_proxy has
    // started it since 1.36 (it used to wait for the upstream).
    case Phase::kConnecting: return std::min({idle, c->max_end_ns, c->connect_retry_ns, c->filter_deadline_ns});
    case Phase::kRelaying: return std::min({idle, c->filter_deadline_ns, c->max_end_ns});
    case Phase::kSwitching: return std::min(idle, c->max_end_ns);
    default: return INT64_MAX;
  }
}

void Worker::reschedule_timer(ConnectionImpl* c) {
  int64_t d = conn_deadline(c);
  if (d == INT64_MAX) wheel_->cancel(&c->timer);
  else wheel_->schedule(&c->timer, d);
}

// ---------------------------------------------------------------- buffers

void Worker::enqueue(SendQueue& q, uint32_t bid, uint32_t off, uint32_t len, bool coalesce) {
  // Small reads are folded into the tail buffer's free room, so a trickle of
  // small writes (or a slow-sniffed header) does not pin one buffer per packet.
  if (coalesce && q.tail != kNoBuffer) {
    uint32_t t = q.tail;
    uint32_t end = seg_off_[t] + seg_len_[t];
    if (len <= config_.buffer_size / 8 && end + len <= buf_size(t)) {
      std::memcpy(buf_addr(t) + end, buf_addr(bid) + off, len);
      seg_len_[t] += len;
      q.bytes += len;
      release_buffer(bid);
      return;
    }
  }
  seg_next_[bid] = kNoBuffer;
  seg_off_[bid] = off;
  seg_len_[bid] = len;
  if (q.tail == kNoBuffer) q.head = bid;
  else seg_next_[q.tail] = bid;
  q.tail = bid;
  q.count++;
  q.bytes += len;
  counters_.queued_bytes_peak.max(q.bytes);
}

// Drops the first `n` bytes of `q` in place (sent, or answered locally).
void Worker::drop_front(SendQueue& q, uint64_t n) {
  n = std::min<uint64_t>(n, q.bytes);
  q.bytes -= n;
  while (n > 0 && q.head != kNoBuffer) {
    uint32_t b = q.head;
    if (n >= seg_len_[b]) {
      n -= seg_len_[b];
      q.head = seg_next_[b];
      if (q.head == kNoBuffer) q.tail = kNoBuffer;
      q.count--;
      release_buffer(b);
    } else {
      seg_off_[b] += static_cast<uint32_t>(n);
      seg_len_[b] -= static_cast<uint32_t>(n);
      n = 0;
    }
  }
}

int Worker::enqueue_copy(SendQueue& q, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    uint32_t t = q.tail;
    if (t != kNoBuffer && is_local(t)) {
      uint32_t end = seg_off_[t] + seg_len_[t];
      uint32_t room = config_.buffer_size - end;
      if (room > 0) {
        uint32_t n = static_cast<uint32_t>(std::min<size_t>(room, bytes.size()));
        std::memcpy(buf_addr(t) + end, bytes.data(), n);
        seg_len_[t] += n;
        q.bytes += n;
        bytes = bytes.subspan(n);
        continue;
      }
    }
    if (local_free_.empty()) {
      counters_.local_buffers_exhausted.add();
      return -ENOBUFS;
    }
    uint32_t bid = local_free_.back();
    local_free_.pop_back();
    seg_next_[bid] = kNoBuffer;
    seg_off_[bid] = 0;
    seg_len_[bid] = 0;
    if (q.tail == kNoBuffer) q.head = bid;
    else seg_next_[q.tail] = bid;
    q.tail = bid;
    q.count++;
  }
  counters_.queued_bytes_peak.max(q.bytes);
  return 0;
}

void Worker::release_buffer(uint32_t bid) {
  if (bid >= config_.buffer_count) [[unlikely]] {
    if (is_local(bid)) {
      local_free_.push_back(bid);
      return;
    }
    provide(bulk_, bid, buf_addr(bid));
    bulk_held_--;
    counters_.bulk_buffers_in_use.set(bulk_held_);
    return;
  }
  provide(small_, bid, buf_addr(bid));
  ring_buffers_held_--;
  counters_.buffers_in_use.set(ring_buffers_held_);
}

void Worker::release_queue(SendQueue& q) {
  uint32_t b = q.head;
  while (b != kNoBuffer) {
    uint32_t next = seg_next_[b];
    release_buffer(b);
    b = next;
  }
  q = SendQueue{};
}

void Worker::starved_push(ConnectionImpl* c, int s) {
  TimerNode* n = &c->side[s].starved;
  n->owner = c;
  n->deadline_ns = s;
  n->prev = starved_head_.prev;
  n->next = &starved_head_;
  starved_head_.prev->next = n;
  starved_head_.prev = n;
}

void Worker::starved_remove(ConnectionImpl* c, int s) {
  TimerNode* n = &c->side[s].starved;
  if (!n->linked()) return;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = nullptr;
}

void Worker::rearm_starved() {
  // Re-arm only with real headroom, and no more sides than there are free
  // buffers, or the starved recvs just fail again (-ENOBUFS churn).
  const uint32_t threshold = std::max<uint32_t>(1, config_.buffer_count / 16);
  uint32_t free_buffers = config_.buffer_count - ring_buffers_held_;
  if (free_buffers < threshold) return;
  while (starved_head_.next != &starved_head_ && free_buffers > 0) {
    TimerNode* n = starved_head_.next;
    auto* c = static_cast<ConnectionImpl*>(n->owner);
    int s = static_cast<int>(n->deadline_ns);
    starved_remove(c, s);
    c->side[s].recv = RecvState::kIdle;
    maybe_arm_recv(c, s);
    if (c->side[s].recv == RecvState::kArmed) --free_buffers;
  }
}

// ---------------------------------------------------------------- connections

ConnectionImpl* Worker::alloc_conn() {
  if (free_list_ == nullptr) {
    if (conns_allocated_ >= config_.max_connections_per_worker) return nullptr;
    auto slab = std::make_unique<ConnectionImpl[]>(slab_size_);
    for (uint32_t i = slab_size_; i > 0; --i) {
      slab[i - 1].owner = this;
      slab[i - 1].next_free = free_list_;
      free_list_ = &slab[i - 1];
    }
    conns_allocated_ += slab_size_;
    slabs_.push_back(std::move(slab));
  }
  ConnectionImpl* c = free_list_;
  free_list_ = c->next_free;
  c->next_free = nullptr;
  return c;
}

void Worker::accept_conn(int fd, uint64_t spawn_tag) {
  if (conns_active_ >= config_.max_connections_per_worker) {
    counters_.pool_exhausted.add();
    close(fd);
    if (spawn_tag != 0) handler_->on_spawn_dropped(spawn_tag);
    return;
  }
  ConnectionImpl* c = alloc_conn();
  if (c == nullptr) {
    counters_.pool_exhausted.add();
    close(fd);
    if (spawn_tag != 0) handler_->on_spawn_dropped(spawn_tag);
    return;
  }
  counters_.accepted.add();
  conns_active_++;
  counters_.active_connections.set(conns_active_);
  c->phase = Phase::kSniffing;
  c->upstream_count = c->upstream_next = 0;
  c->connect_retry_ns = INT64_MAX;
  c->last_connect_timed_out = 0;
  c->eof_unreported = false;
  c->defer_ended_by_eof = false;
  c->answered_idle = false;
  c->inflight_ops = 0;
  c->ctx = 0;
  c->parking = c->ending_downstream = c->filter_closed = false;
  c->pool_key.clear();
  c->keepalive = {};
  c->pool_idle_ns = 0;
  c->idle_ns = 0;
  c->max_end_ns = INT64_MAX;
  c->last_activity_ns = now_ns_;
  c->phase_deadline_ns = INT64_MAX;
  c->filter_deadline_ns = INT64_MAX;
  for (auto& side : c->side) {
    side.fd = -1;
    side.recv = RecvState::kIdle;
    side.read_eof = side.write_shut = side.send_inflight = side.reset_on_close = false;
    side.multishot = multishot_recv_;
    side.paused = false;
    side.bulk = side.armed_bulk = false;
    side.full_reads = 0;
    side.end_filtered = side.tail_held = false;
    side.out = SendQueue{};
    side.starved.prev = side.starved.next = nullptr;
  }
  c->side[0].fd = fd;
  c->timer.owner = c;
  c->stats = ConnectionStats{};
  c->stats.id = (static_cast<uint64_t>(index_) << 48) | next_conn_seq_++;
  c->stats.worker = index_;
  c->stats.start_monotonic_ns = now_ns_;
  c->stats.start_realtime_ns = realtime_ns();

  AcceptInfo info(fd, spawn_tag);
  Verdict v = handler_->on_accept(*c, info);
  apply_verdict(c, std::move(v), CloseReason::kLocalClose);
  if (c->phase != Phase::kClosing) {
    maybe_arm_recv(c, 0);
    reschedule_timer(c);
  }
  settle(c);
}

// Linearizes up to `limit` bytes of `q` into scratch_ (grown if needed: held
// bytes can exceed max_sniff_bytes by one read, or by what a filter wrote).
size_t Worker::gather(const SendQueue& q, size_t limit) {
  const size_t total = std::min<size_t>(q.bytes, limit);
  if (scratch_.size() < total) scratch_.resize(total);
  size_t n = 0;
  for (uint32_t b = q.head; b != kNoBuffer && n < total; b = seg_next_[b]) {
    size_t take = std::min<size_t>(seg_len_[b], total - n);
    std::memcpy(scratch_.data() + n, buf_addr(b) + seg_off_[b], take);
    n += take;
  }
  return n;
}

std::span<const uint8_t> Worker::pending_downstream(ConnectionImpl* c) {
  const SendQueue& q = c->side[1].out;
  if (q.head == kNoBuffer) return {};
  if (q.head == q.tail) {
    return {buf_addr(q.head) + seg_off_[q.head], std::min<size_t>(seg_len_[q.head], config_.max_sniff_bytes)};
  }
  return {scratch_.data(), gather(q, config_.max_sniff_bytes)};
}

// A connection gets at most one filter: a connect verdict may confirm the
// one need_more() installed (by carrying none) but not replace it, since the
// first one already holds stream state (a TLS session) the second would lack.
bool Worker::install_filter(ConnectionImpl* c, StreamFilterPtr f) {
  if (c->filter) {
    begin_close(c, CloseReason::kInternalError, EEXIST, true, true);
    return false;
  }
  c->filter = std::move(f);
  return true;
}

// Runs the bytes queued toward the upstream through the connection's filter
// and replaces them with its output: as one on_data chunk (kData: a need_more
// filter installed after they were read, e.g. the ClientHello a handler took
// an SNI from) or as on_start's held bytes (kStart). Returns false when the
// filter's status ended the undecided phase (closing or lingering).
bool Worker::filter_held(ConnectionImpl* c, HeldUse use) {
  const size_t n = gather(c->side[1].out, SIZE_MAX);
  // scratch_ has its own copy, so the queue goes first (its ring buffers back
  // to the kernel) and the filter's output is built in an empty queue.
  release_queue(c->side[1].out);
  std::span<const uint8_t> held(scratch_.data(), n);
  Output out(this, c, 0, held.data(), static_cast<uint32_t>(n), kNoBuffer);
  FilterStatus st = use == HeldUse::kStart ? c->filter->on_start(held, out)
                                           : c->filter->on_data(Direction::kDownstreamToUpstream, held, out);
  if (c->side[0].out.count > 0) kick_send(c, 0);
  filter_status(c, st);
  return undecided(c->phase);
}

// A filter installed while sniffing owns the bytes toward the client (a TLS
// server filter encrypts them), so a local response is its plaintext: it goes
// through on_data as upstream->downstream bytes, then on_end_stream in that
// direction (close_notify before the FIN). Anything the filter writes toward
// the upstream is dropped: there is none. Returns false if it reset.
bool Worker::filter_local_response(ConnectionImpl* c, std::span<const uint8_t> response) {
  FilterStatus st = FilterStatus::kContinue;
  if (!response.empty()) {
    Output out(this, c, 1, response.data(), static_cast<uint32_t>(response.size()), kNoBuffer);
    st = c->filter->on_data(Direction::kUpstreamToDownstream, response, out);
  }
  if (st != FilterStatus::kReset && !c->side[1].end_filtered) {
    c->side[1].end_filtered = true;
    Output out(this, c, 1, nullptr, 0, kNoBuffer);
    st = c->filter->on_end_stream(Direction::kUpstreamToDownstream, out);
  }
  release_queue(c->side[1].out);
  if (st == FilterStatus::kReset) {
    begin_close(c, CloseReason::kFilterClose, 0, true, true);
    return false;
  }
  return true;  // kClose or kContinue: the connection closes after the flush either way
}

// Verdict::respond: the answer goes out (through the filter: plaintext for
// a TLS server, without its end of stream) and the answered request's bytes
// leave the pending ones. False when the connection ended instead: the
// filter failed, or the client does not read its answers (their queue beyond
// the sniffing window: this one is the last, then a close).
bool Worker::respond_locally(ConnectionImpl* c, std::span<const uint8_t> response, size_t consumed) {
  counters_.local_responses.add();
  // The answered request's bytes leave the pending ones (in place; first:
  // the filter's output below goes elsewhere).
  drop_front(c->side[1].out, consumed);
  if (c->filter) {
    Output out(this, c, 1, response.data(), static_cast<uint32_t>(response.size()), kNoBuffer);
    const FilterStatus st = c->filter->on_data(Direction::kUpstreamToDownstream, response, out);
    if (st == FilterStatus::kReset) {
      begin_close(c, CloseReason::kFilterClose, 0, true, true);
      return false;
    }
    if (st != FilterStatus::kContinue) {
      // The filter ends the stream (a TLS session that failed): what it
      // wrote goes, then the close.
      close_with(c, {}, CloseReason::kFilterClose);
      return false;
    }
  } else if (enqueue_copy(c->side[0].out, response) < 0) {
    begin_close(c, CloseReason::kResourceExhausted, ENOBUFS, true, false);
    return false;
  }
  c->last_activity_ns = now_ns_;
  if (c->side[0].out.bytes > config_.max_sniff_bytes) {
    close_with(c, {}, CloseReason::kLocalClose);
    return false;
  }
  kick_send(c, 0);
  return true;
}

// Verdict::close, and the end of a connection kept after local answers (the
// client half-closed, the worker drains, answers pile up unread): the
// pending bytes go, `response` (through the filter, which ends its stream:
// a TLS server's close_notify) and what was queued for the client before it
// are sent, then a FIN, the client drained until its own.
void Worker::close_with(ConnectionImpl* c, std::span<const uint8_t> response, CloseReason reason) {
  release_queue(c->side[1].out);
  c->eof_unreported = false;
  if (c->filter) {
    if (!filter_local_response(c, response)) return;
  } else if (!response.empty() && enqueue_copy(c->side[0].out, response) < 0) {
    begin_close(c, CloseReason::kResourceExhausted, ENOBUFS, true, false);
    return;
  }
  c->stats.reason = reason;
  enter_lingering(c);
}

void Worker::enter_deferred(ConnectionImpl* c) {
  c->phase = Phase::kDeferred;
  deferred_.emplace(c->stats.id, c);
  counters_.defers.add();
}

void Worker::leave_deferred(ConnectionImpl* c) {
  deferred_.erase(c->stats.id);
  c->phase = Phase::kSniffing;
}

// Verdicts come from handler calls made while the connection is undecided
// (kSniffing; a deferred one is moved back to kSniffing before on_wake or
// on_detection_timeout).
void Worker::apply_verdict(ConnectionImpl* c, Verdict v, CloseReason close_reason) {
  // A local answer that keeps the connection goes on as need_more(), or asks
  // the handler again for the bytes after the answered request (a loop, not
  // a recursion: a read may hold many small pipelined requests).
  while (v.kind() == Verdict::Kind::kRespond) {
    if ((!v.response().empty() || v.consumed() > 0) && !respond_locally(c, v.response(), v.consumed())) return;
    // Reading may have stopped at max_sniff_bytes while the handler was
    // deciding (deferred): what is left pending now is below it.
    c->side[0].paused = false;
    maybe_arm_recv(c, 0);
    if (c->side[1].out.count > 0) {
      v = handler_->on_downstream_data(*c, pending_downstream(c));
    } else if (c->side[0].read_eof || draining_) {
      // The client half-closed after its request, or the worker is
      // draining (a connection kept idle would only be reset at the
      // deadline): the answer, then a FIN.
      close_with(c, {}, CloseReason::kLocalClose);
      return;
    } else {
      v = Verdict::need_more(v.detection_timeout());
      c->answered_idle = true;
    }
  }
  switch (v.kind()) {
    case Verdict::Kind::kNeedMore: {
      if (StreamFilterPtr f = v.take_filter()) {
        if (!install_filter(c, std::move(f))) return;
        if (c->side[1].out.count > 0) {
          if (!filter_held(c, HeldUse::kData)) return;
          // The filter made plaintext out of what was already read: show it
          // now, as nothing more may come before the client hears back.
          if (c->side[1].out.count > 0 && !c->side[0].read_eof) {
            Verdict again = handler_->on_downstream_data(*c, pending_downstream(c));
            apply_verdict(c, std::move(again), close_reason);
            return;
          }
        }
      }
      if (c->side[1].out.bytes >= config_.max_sniff_bytes) {
        begin_close(c, CloseReason::kSniffLimit, 0, false, false);
        return;
      }
      if (c->side[0].read_eof) {
        if (c->eof_unreported) {
          // The FIN came while deferred; this is the handler's first chance.
          c->eof_unreported = false;
          report_sniff_eof(c);
          return;
        }
        // Nothing more will come; the handler had its chance in on_downstream_eof.
        if (c->side[0].out.count > 0 || c->side[0].send_inflight) {
          // A local answer (Verdict::respond) is still going out: it goes first.
          close_with(c, {}, close_reason);
          return;
        }
        begin_close(c, close_reason, 0, false, false);
        return;
      }
      c->phase_deadline_ns = v.detection_timeout().count() > 0 ? now_ns_ + to_ns(v.detection_timeout()) : INT64_MAX;
      reschedule_timer(c);
      return;
    }
    case Verdict::Kind::kDefer: {
      // on_wake is shown everything pending; while deferred the reading
      // stops at max_sniff_bytes (on_bytes, maybe_arm_recv), so what is held
      // stays bounded without closing on a handler that is still deciding.
      if (v.is_ended_by_eof() && c->eof_unreported) {
        // The FIN came before this wait (during an earlier one): it ends
        // this one at once.
        // (A second defer waits as usual: the FIN, read already, cannot
        // end it again.)
        c->eof_unreported = false;
        apply_verdict(c, handler_->on_downstream_eof(*c, pending_downstream(c)), close_reason);
        return;
      }
      c->phase_deadline_ns = v.detection_timeout().count() > 0 ? now_ns_ + to_ns(v.detection_timeout()) : INT64_MAX;
      c->defer_ended_by_eof = v.is_ended_by_eof();
      enter_deferred(c);
      reschedule_timer(c);
      return;
    }
    case Verdict::Kind::kClose:
      if (!v.response().empty()) counters_.local_responses.add();
      close_with(c, v.response(), close_reason);
      return;
    case Verdict::Kind::kRespond:
      return;  // handled above
    case Verdict::Kind::kConnect: {
      auto ups = v.upstreams();
      if (ups.empty()) {
        begin_close(c, CloseReason::kUpstreamConnectFailed, EDESTADDRREQ, false, false);
        return;
      }
      if (StreamFilterPtr f = v.take_filter()) {
        if (!install_filter(c, std::move(f))) return;
      }
      std::copy(ups.begin(), ups.end(), c->upstreams.begin());
      c->upstream_count = static_cast<uint8_t>(ups.size());
      c->upstream_next = 0;
      c->connect_retry_ns = INT64_MAX;
      if (v.connect_timeout().count() > 0) {
        const int64_t ct = to_ns(v.connect_timeout());
        c->connect_ts.tv_sec = ct / 1000000000;
        c->connect_ts.tv_nsec = ct % 1000000000;
      } else {
        c->connect_ts = connect_ts_;
      }
      c->keepalive = v.tcp_keepalive();
      c->pool_idle_ns = timeout_ns(v.pool_idle_timeout());
      if (v.idle_timeout().count() >= 0) c->idle_ns = timeout_ns(v.idle_timeout());
      // From the decision, as Envoy's tcp_proxy starts it once the listener
      // filters (its protocol detection) are done.
      if (v.max_duration().count() > 0) c->max_end_ns = deadline_after(now_ns_, timeout_ns(v.max_duration()));
      c->pool_key = v.take_pool_key();
      // A pooled upstream first: its filter state must be in place before
      // on_start encrypts the held bytes.
      const bool pooled = !c->pool_key.empty() && adopt_pooled(c);
      // One virtual call per connection that has a filter; none without.
      if (c->filter && c->filter->takes_held_bytes() && !filter_held(c, HeldUse::kStart)) return;
      c->eof_unreported = false;  // forwarded upstream instead, after the held bytes
      c->phase = Phase::kConnecting;
      reschedule_timer(c);
      // A FIN read before the decision reaches the filter after the held
      // bytes, as it would have had it arrived later.
      if (c->side[0].read_eof) {
        filter_end_stream(c, 0);
        if (c->phase == Phase::kClosing) return;
      }
      if (pooled) enter_relaying(c);
      else start_connect(c);
      return;
    }
  }
}

void Worker::enter_lingering(ConnectionImpl* c) {
  if (c->phase == Phase::kDeferred) leave_deferred(c);
  c->phase = Phase::kLingering;
  c->last_activity_ns = now_ns_;
  reschedule_timer(c);
  if (c->side[0].out.count > 0) kick_send(c, 0);
  else maybe_shutdown_write(c, 0);
  maybe_arm_recv(c, 0);
}

namespace {

// A value the kernel refuses (out of its range: 1..32767 s, 1..127 probes)
// leaves its default in place and the connect goes on (Envoy fails the
// connection instead); the config check warns about such values.
void set_keepalive(int fd, const TcpKeepalive& k) {
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  auto opt = [fd](int name, uint32_t v) {
    if (v == 0) return;
    int value = static_cast<int>(std::min<uint32_t>(v, INT32_MAX));
    setsockopt(fd, IPPROTO_TCP, name, &value, sizeof(value));
  };
  opt(TCP_KEEPCNT, k.probes);
  opt(TCP_KEEPIDLE, k.time_s);
  opt(TCP_KEEPINTVL, k.interval_s);
}

}  // namespace

void Worker::start_connect(ConnectionImpl* c) {
  int err = EHOSTUNREACH;
  while (c->upstream_next < c->upstream_count) {
    const SocketAddress& addr = c->upstreams[c->upstream_next++];
    int fd = socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (config_.upstream_mark != 0) {
      uint32_t mark = config_.upstream_mark;
      if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
        // Without CAP_NET_ADMIN the mark is unavailable; interception must
        // then exempt the proxy by uid/cgroup instead. Counted, not fatal.
        if (errno == EPERM) counters_.so_mark_eperm.add();
      }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->keepalive.enabled) set_keepalive(fd, c->keepalive);
    const auto& src = addr.family() == AF_INET ? config_.upstream_source_v4 : config_.upstream_source_v6;
    if (src && src->valid()) {
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      if (bind(fd, src->sa(), src->len()) != 0) {
        err = errno;
        close(fd);
        continue;
      }
    }
    c->side[1].fd = fd;
    c->stats.upstream = addr;
    c->stats.connect_attempts++;
    counters_.connect_attempts.add();
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_connect(sqe, fd, c->upstreams[c->upstream_next - 1].sa(), addr.len());
    io_uring_sqe_set_data64(sqe, ud(c, kTagConnect));
    sqe->flags |= IOSQE_IO_LINK;
    sqe = get_sqe();
    io_uring_prep_link_timeout(sqe, &c->connect_ts, 0);
    io_uring_sqe_set_data64(sqe, kUdIgnore);
    c->inflight_ops++;
    return;
  }
  c->stats.upstream = SocketAddress();
  fail_connect(c, c->last_connect_timed_out, c->last_connect_timed_out ? ETIMEDOUT : err);
}

// No upstream address could be connected: the filter may answer the client
// first (an HTTP request gets Envoy's 503), then the connection closes.
void Worker::fail_connect(ConnectionImpl* c, bool timed_out, int err) {
  const CloseReason reason = timed_out ? CloseReason::kUpstreamConnectTimeout : CloseReason::kUpstreamConnectFailed;
  if (c->filter && !c->side[0].write_shut && c->side[0].fd >= 0) {
    release_queue(c->side[1].out);  // never to be sent
    Output out(this, c, 1, nullptr, 0, kNoBuffer);
    const FilterStatus st = c->filter->on_connect_failed(out, timed_out);
    if (st != FilterStatus::kReset && c->side[0].out.count > 0) {
      counters_.local_responses.add();
      c->stats.reason = reason;
      c->stats.error = err;
      enter_lingering(c);
      return;
    }
  }
  begin_close(c, reason, err, false, false);
}

void Worker::on_connect_cqe(ConnectionImpl* c, int res) {
  c->inflight_ops--;
  if (c->phase == Phase::kClosing) return;
  // Given up meanwhile (abandon_connect: the socket is closed already); the
  // connection lingers over its local reply.
  if (c->phase != Phase::kConnecting) return;
  if (res < 0) {
    // -ECANCELED here means the linked timeout fired (closing was handled above).
    bool timed_out = res == -ECANCELED || res == -ETIME;
    if (timed_out) counters_.connect_timeouts.add();
    else counters_.connect_failures.add();
    c->last_connect_timed_out = timed_out;
    close(c->side[1].fd);
    c->side[1].fd = -1;
    const bool another_left = c->upstream_next < c->upstream_count;
    const std::chrono::milliseconds wait =
        handler_->on_connect_attempt_failed(*c, c->stats.upstream, timed_out, another_left);
    if (!another_left || wait < std::chrono::milliseconds(0)) {
      fail_connect(c, timed_out, timed_out ? ETIMEDOUT : -res);
    } else if (wait.count() == 0) {
      start_connect(c);
    } else {
      // No socket while waiting: the timer starts the next attempt.
      c->connect_retry_ns = deadline_after(now_ns_, saturating_ns(wait));
      reschedule_timer(c);
    }
    return;
  }
  enter_relaying(c);
  if (c->phase == Phase::kRelaying && c->filter) {
    Output out(this, c, 1, nullptr, 0, kNoBuffer);
    c->filter->on_upstream_ready(out);
  }
}

void Worker::enter_relaying(ConnectionImpl* c) {
  c->phase = Phase::kRelaying;
  c->stats.upstream_connected_monotonic_ns = now_ns_;
  c->last_activity_ns = now_ns_;
  reschedule_timer(c);
  handler_->on_upstream_connected(*c, c->stats.upstream);
  if (c->phase != Phase::kRelaying) return;
  if (c->side[1].out.count > 0) kick_send(c, 1);
  else maybe_shutdown_write(c, 1);
  // A filter that closed while connecting (both sides stopped reading) left
  // the downstream's FIN waiting for the relaying phase.
  maybe_shutdown_write(c, 0);
  maybe_arm_recv(c, 1);
  maybe_arm_recv(c, 0);
  // Decided while the worker drains (or moved to another upstream).
  if (draining_) tell_drain(c);
}

void Worker::arm_recv(ConnectionImpl* c, int s) {
  Side& side = c->side[s];
  io_uring_sqe* sqe = get_sqe();
  side.armed_bulk = side.bulk;
  if (side.multishot) io_uring_prep_recv_multishot(sqe, side.fd, nullptr, 0, 0);
  else io_uring_prep_recv(sqe, side.fd, nullptr, side.bulk ? config_.bulk_buffer_size : config_.buffer_size, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = side.bulk ? 1 : 0;
  io_uring_sqe_set_data64(sqe, ud(c, kTagRecv0 + static_cast<uint64_t>(s)));
  side.recv = RecvState::kArmed;
  side.paused = false;
  c->inflight_ops++;
}

void Worker::maybe_arm_recv(ConnectionImpl* c, int s) {
  Side& side = c->side[s];
  if (side.recv != RecvState::kIdle || side.read_eof || side.fd < 0) return;
  switch (c->phase) {
    case Phase::kDeferred:
      // Held back past max_sniff_bytes until the handler decides.
      if (s == 0 && c->side[1].out.bytes >= config_.max_sniff_bytes) {
        side.paused = true;
        return;
      }
      break;
    case Phase::kSniffing:
    case Phase::kLingering: break;  // sniffing is bounded by max_sniff_bytes; lingering discards
    case Phase::kConnecting:
      if (s == 1) return;
      [[fallthrough]];
    case Phase::kRelaying:
      // Multishot resumes at the low watermark; single-shot keeps the queue
      // topped up to the high one (it cannot overshoot).
      if (side.multishot ? c->side[1 - s].out.count > config_.max_queued_buffers / 2
                         : c->side[1 - s].out.count >= config_.max_queued_buffers) {
        if (!side.paused) counters_.backpressure_pauses.add();
        side.paused = true;
        return;
      }
      break;
    default: return;
  }
  arm_recv(c, s);
}

void Worker::cancel_recv(ConnectionImpl* c, int s) {
  Side& side = c->side[s];
  if (side.recv == RecvState::kStarved) {
    starved_remove(c, s);
    side.recv = RecvState::kIdle;
    return;
  }
  if (side.recv != RecvState::kArmed) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, ud(c, kTagRecv0 + static_cast<uint64_t>(s)), 0);
  io_uring_sqe_set_data64(sqe, kUdIgnore);
  side.recv = RecvState::kCancelling;
}

void Worker::on_recv_cqe(ConnectionImpl* c, int s, int res, uint32_t flags) {
  Side& side = c->side[s];
  const bool more = flags & IORING_CQE_F_MORE;
  // Parking stopped reading the upstream at a response boundary: anything it
  // sends or signals after that (bytes, FIN, an error) makes it unusable.
  if (s == 1 && c->parking && res != -ECANCELED && res != -ENOBUFS) c->parking = false;
  if (!more) {
    c->inflight_ops--;
    if (side.recv != RecvState::kStarved) side.recv = RecvState::kIdle;
  }
  const bool was_bulk = side.armed_bulk;
  uint32_t bid = kNoBuffer;
  if (flags & IORING_CQE_F_BUFFER) {
    bid = flags >> IORING_CQE_BUFFER_SHIFT;
    if (bid < config_.buffer_count) [[likely]] {
      ring_buffers_held_++;
      counters_.buffers_in_use.set(ring_buffers_held_);
      counters_.buffers_in_use_peak.max(ring_buffers_held_);
    } else {
      bulk_held_++;
      counters_.bulk_buffers_in_use.set(bulk_held_);
    }
  }
  if (res > 0 && bid != kNoBuffer) {
    if (!side.multishot && multishot_recv_ && static_cast<uint32_t>(res) < buf_size(bid)) side.multishot = true;
    if (bulk_base_ != UINT32_MAX && c->phase == Phase::kRelaying) note_read_size(c, s, static_cast<uint32_t>(res));
    if (c->phase == Phase::kClosing || side.read_eof || c->phase == Phase::kLingering) {
      // Discarded: closing, told to stop reading, or lingering. Discards do
      // not count as activity, so a client that keeps sending cannot hold a
      // lingering connection open.
      release_buffer(bid);
    } else {
      on_bytes(c, s, bid, static_cast<uint32_t>(res));
    }
  } else {
    if (bid != kNoBuffer) release_buffer(bid);
    if (c->phase == Phase::kClosing) return;
    if (res == 0) {
      if (!side.read_eof) on_eof(c, s);
    } else if (res == -ENOBUFS && was_bulk) {
      // The bulk ring is empty: this direction reads small buffers again
      // (re-armed below) and may come back after more full reads.
      counters_.bulk_enobufs.add();
      side.bulk = false;
      side.full_reads = 0;
    } else if (res == -ENOBUFS) {
      counters_.recv_enobufs.add();
      if (!more && side.recv == RecvState::kIdle && !side.read_eof) {
        side.recv = RecvState::kStarved;
        starved_push(c, s);
      }
      return;
    } else if (res == -ECANCELED) {
      // Our backpressure cancel landed; re-armed from the send path below.
    } else if (res < 0) {
      if (s == 1 && c->phase == Phase::kSwitching) {
        // The upstream being left broke: it is closed, not parked.
        c->parking = false;
      } else if (s == 1 && (c->ending_downstream || c->phase == Phase::kLingering)) {
        upstream_broke_after_end(c);
      } else if (c->phase == Phase::kLingering) {
        begin_close(c, CloseReason::kLocalClose, -res, false, false);
      } else if (is_reset_error(-res)) {
        if (s == 1 && upstream_reset_to_filter(c)) return;
        begin_close(c, reset_reason(s), -res, s == 1, s == 0);
      } else {
        begin_close(c, CloseReason::kInternalError, -res, true, true);
      }
      return;
    }
  }
  if (!more && c->phase != Phase::kClosing && side.recv == RecvState::kIdle && !side.read_eof) {
    if (res > 0 && side.multishot) counters_.recv_rearms.add();
    maybe_arm_recv(c, s);
  }
}

// Bulk detection for a relaying direction: reads that fill their small
// buffer `bulk_after_full_reads` times in a row move it to the bulk ring (a
// multishot recv on the small ring is cancelled so the re-arm switches); a
// read that would have fit a small buffer moves it back.
void Worker::note_read_size(ConnectionImpl* c, int s, uint32_t len) {
  Side& side = c->side[s];
  if (side.bulk) {
    if (len < config_.buffer_size) {
      side.bulk = false;
      side.full_reads = 0;
      // A multishot recv on the bulk ring would go on taking 64 KiB
      // buffers for small reads: the re-arm goes back to the small ring.
      if (side.recv == RecvState::kArmed && side.multishot && side.armed_bulk) cancel_recv(c, s);
    }
    return;
  }
  if (len < config_.buffer_size) {
    side.full_reads = 0;
    return;
  }
  if (++side.full_reads < config_.bulk_after_full_reads) return;
  side.bulk = true;
  counters_.bulk_promotions.add();
  if (side.recv == RecvState::kArmed && side.multishot && !side.armed_bulk) cancel_recv(c, s);
}

void Worker::on_bytes(ConnectionImpl* c, int s, uint32_t bid, uint32_t len) {
  c->last_activity_ns = now_ns_;
  if (s == 0) {
    c->answered_idle = false;
    c->stats.bytes_from_downstream += len;
  } else {
    c->stats.bytes_from_upstream += len;
  }
  // A filter sees every byte read once it is installed: during sniffing
  // (Verdict::need_more with a filter: its output is what the handler sees),
  // while the upstream connect is in flight (an L7 policy filter must not
  // miss a pipelined request) and while relaying. Lingering and closing
  // connections never get here (their bytes are discarded).
  if (c->filter) {
    run_filter(c, s, bid, len);
    if (c->phase == Phase::kClosing || c->phase == Phase::kLingering) return;
  } else {
    enqueue(c->side[1 - s].out, bid, 0, len);
  }
  if (undecided(c->phase)) [[unlikely]] {
    if (c->phase == Phase::kDeferred) {
      // Not reported until the wake; the handler sees it all in on_wake.
      // Past max_sniff_bytes the reading stops (the client's TCP holds the
      // rest) until the handler decides: a request body arriving while its
      // decision waits (DNS, a fault delay) is held back, not cut off.
      if (c->side[1].out.bytes >= config_.max_sniff_bytes && c->side[0].recv == RecvState::kArmed) {
        counters_.backpressure_pauses.add();
        c->side[0].paused = true;
        c->side[0].multishot = false;
        cancel_recv(c, 0);
      }
      return;
    }
    Verdict v = handler_->on_downstream_data(*c, pending_downstream(c));
    apply_verdict(c, std::move(v), CloseReason::kLocalClose);
    return;
  }
  Side& dst = c->side[1 - s];
  if (c->phase == Phase::kRelaying) kick_send(c, 1 - s);
  // (kCancelling: a cancel is on its way already, for a move to or from
  // the bulk ring; the re-arm must still be single-shot.)
  if (dst.out.count >= config_.max_queued_buffers &&
      (c->side[s].recv == RecvState::kArmed || c->side[s].recv == RecvState::kCancelling)) {
    counters_.backpressure_pauses.add();
    c->side[s].paused = true;
    c->side[s].multishot = false;
    cancel_recv(c, s);
  }
}

void Worker::run_filter(ConnectionImpl* c, int s, uint32_t bid, uint32_t len) {
  Output out(this, c, s, buf_addr(bid), len, bid);
  Direction dir = s == 0 ? Direction::kDownstreamToUpstream : Direction::kUpstreamToDownstream;
  FilterStatus st = c->filter->on_data(dir, {buf_addr(bid), len}, out);
  if (!out.buffer_kept()) release_buffer(bid);
  if (c->side[s].out.count > 0) kick_send(c, s);  // output injected back toward the sender
  // An upstream's bytes may have let the filter release the client's FIN
  // it held (upstream_end_held: a tunnel now open, nothing of the client's
  // left to send): it goes now if nothing else is queued.
  if (st == FilterStatus::kContinue && s == 1 && c->phase == Phase::kRelaying) maybe_shutdown_write(c, 1);
  filter_status(c, st);
}

void Worker::filter_status(ConnectionImpl* c, FilterStatus st) {
  if (st == FilterStatus::kContinue) return;
  if (c->phase == Phase::kSwitching) {
    if (st == FilterStatus::kNewUpstream) return;  // on its way
    if (st != FilterStatus::kReset) {
      // No upstream to finish with: flush what the filter wrote to the
      // client (a local reply), then FIN it; the old upstream's in-flight
      // operations end with the connection.
      if (c->stats.reason == CloseReason::kNone) c->stats.reason = CloseReason::kFilterClose;
      c->parking = false;
      enter_lingering(c);
      return;
    }
  }
  // A client whose end is already decided (its last bytes may be held for
  // the FIN) is not kept for another upstream: a held tail would wait for a
  // FIN that never comes.
  if (st == FilterStatus::kNewUpstream && c->ending_downstream) st = FilterStatus::kClose;
  if (st == FilterStatus::kNewUpstream) {
    if (c->phase == Phase::kRelaying) {
      begin_switch(c);
      return;
    }
    st = FilterStatus::kClose;  // no upstream to leave yet
  }
  if (st == FilterStatus::kEndDownstream) {
    if (undecided(c->phase) || c->phase == Phase::kConnecting) {
      st = FilterStatus::kClose;  // no exchange to end gracefully
    } else {
      // The client's end as a completed exchange (its unread bytes drained
      // before the close, not reset); the upstream is parked when pooled,
      // else closed with the connection.
      if (c->stats.reason == CloseReason::kNone) c->stats.reason = CloseReason::kCompleted;
      c->parking = !c->pool_key.empty();
      c->ending_downstream = true;
      stop_reading(c, 0);
      stop_reading(c, 1);
      maybe_shutdown_write(c, 0);  // FIN once flushed; then the connection ends
      return;
    }
  }
  if (st == FilterStatus::kReset) {
    begin_close(c, CloseReason::kFilterClose, 0, true, true);
    return;
  }
  if (undecided(c->phase)) {
    // No upstream yet: drop what was meant for it, flush what the filter
    // wrote to the client (a TLS alert), then FIN and drain like a local
    // response so the client reads it rather than an RST.
    c->stats.reason = CloseReason::kFilterClose;
    release_queue(c->side[1].out);
    enter_lingering(c);
    return;
  }
  // kClose: flush both queues, then FIN both ways through the half-close path.
  if (c->stats.reason == CloseReason::kNone) c->stats.reason = CloseReason::kFilterClose;
  c->filter_closed = true;
  for (int s = 0; s < 2; ++s) stop_reading(c, s);
  for (int s = 0; s < 2; ++s) maybe_shutdown_write(c, s);
}

// The upstream reset while relaying: its filter hears of it as the end of
// the upstream's stream first. An answer that deals with it (kNewUpstream: a
// retry elsewhere; kClose: a local reply such as Envoy's 503 for a reset
// before any response) is carried out instead of resetting the client; with
// kContinue (a response already under way) the reset goes on to the client.
bool Worker::upstream_reset_to_filter(ConnectionImpl* c) {
  Side& up = c->side[1];
  if (c->phase != Phase::kRelaying || !c->filter || up.end_filtered) return false;
  up.read_eof = true;
  up.end_filtered = true;
  c->parking = false;
  Output out(this, c, 1, nullptr, 0, kNoBuffer);
  const FilterStatus st = c->filter->on_end_stream(Direction::kUpstreamToDownstream, out);
  if (st == FilterStatus::kContinue || st == FilterStatus::kReset) return false;
  if (c->stats.reason == CloseReason::kNone && st != FilterStatus::kNewUpstream) {
    c->stats.reason = CloseReason::kUpstreamReset;
  }
  // Nothing more goes to the dead socket (a FIN attempt on it is harmless).
  release_queue_if_idle(c, 1);
  if (c->side[0].out.count > 0) kick_send(c, 0);
  filter_status(c, st);
  return true;
}

void Worker::release_queue_if_idle(ConnectionImpl* c, int s) {
  if (!c->side[s].send_inflight) release_queue(c->side[s].out);
}

void Worker::stop_reading(ConnectionImpl* c, int s) {
  c->side[s].read_eof = true;
  cancel_recv(c, s);
}

// Tells the filter, once, that side `s` sent FIN. Returns false when the
// filter's answer ended the connection's relaying (closing or lingering).
bool Worker::filter_end_stream(ConnectionImpl* c, int s) {
  Side& side = c->side[s];
  if (!c->filter || side.end_filtered) return true;
  side.end_filtered = true;
  Output out(this, c, s, nullptr, 0, kNoBuffer);
  Direction dir = s == 0 ? Direction::kDownstreamToUpstream : Direction::kUpstreamToDownstream;
  FilterStatus st = c->filter->on_end_stream(dir, out);
  if (c->side[s].out.count > 0) kick_send(c, s);
  if (c->side[1 - s].out.count > 0) kick_send(c, 1 - s);
  filter_status(c, st);
  return c->phase != Phase::kClosing && c->phase != Phase::kLingering;
}

void Worker::on_eof(ConnectionImpl* c, int s) {
  c->side[s].read_eof = true;
  c->last_activity_ns = now_ns_;
  switch (c->phase) {
    case Phase::kSniffing:
      report_sniff_eof(c);
      return;
    case Phase::kDeferred:
      // The filter hears of it now, like of the bytes before it; the handler
      // after the wake, when it next waits for bytes (see apply_verdict). A
      // connect verdict forwards it upstream instead.
      if (!filter_end_stream(c, 0)) return;
      if (c->defer_ended_by_eof) {
        // The handler gives the wait up on a FIN: it hears of it now.
        leave_deferred(c);
        Verdict v = handler_->on_downstream_eof(*c, pending_downstream(c));
        apply_verdict(c, std::move(v), CloseReason::kLocalClose);
        return;
      }
      c->eof_unreported = true;
      return;
    case Phase::kLingering:
      begin_close(c, CloseReason::kLocalClose, 0, false, false);
      return;
    case Phase::kSwitching:
      // The downstream's FIN waits for the next decision (see finish_switch);
      // the old upstream's was read_eof already.
      return;
    case Phase::kConnecting:
    case Phase::kRelaying:
      if (!filter_end_stream(c, s)) return;
      // While connecting this waits: the FIN is forwarded once connected and
      // the queue is flushed.
      maybe_shutdown_write(c, 1 - s);
      return;
    default:
      return;
  }
}

// The downstream FIN, reported to an undecided connection: the filter (if
// any) first, so a TLS filter can answer close_notify, then the handler.
void Worker::report_sniff_eof(ConnectionImpl* c) {
  if (!filter_end_stream(c, 0)) return;
  Verdict v = handler_->on_downstream_eof(*c, pending_downstream(c));
  apply_verdict(c, std::move(v), CloseReason::kLocalClose);
}

// Send FIN to side `s` once everything queued for it is written and its
// source has ended; close when both directions are done.
void Worker::maybe_shutdown_write(ConnectionImpl* c, int s) {
  Side& dst = c->side[s];
  if (c->parking && s == 1) return;  // a parked upstream stays open both ways
  if (dst.write_shut || dst.send_inflight || dst.out.count > 0 || dst.fd < 0) return;
  const bool source_done = c->phase == Phase::kLingering ? s == 0 : c->side[1 - s].read_eof;
  if (!source_done) return;
  if (c->phase != Phase::kRelaying && c->phase != Phase::kLingering) return;
  // The filter still holds bytes for it (a tunnel waiting for its proxy),
  // unless it closed the connection. Asked last: only once the FIN is due.
  if (s == 1 && c->filter && !c->filter_closed && c->filter->upstream_end_held()) return;
  dst.write_shut = true;
  // When the connection closes right after, close() sends this FIN (behind
  // anything still unsent, as shutdown would): one syscall fewer.
  if (c->ending_downstream && s == 0 && c->phase == Phase::kRelaying) {
    // The client of an ending connection (its upstream parked, or closed
    // with it when it spoke or broke after the end; `parking` while relaying
    // implies this). One that sent bytes nobody read (an upload an early
    // answer cut short, requests pipelined after its last) is drained first
    // like a local reply's: a close() now would reset it and drop what is
    // still unsent.
    int unread = 0;
    if (ioctl(dst.fd, FIONREAD, &unread) == 0 && unread > 0) {
      linger_after_end(c);
      return;
    }
    begin_close(c, CloseReason::kCompleted, 0, false, false);
  } else if (c->phase == Phase::kRelaying && c->side[0].write_shut && c->side[1].write_shut && c->side[0].read_eof &&
             c->side[1].read_eof) {
    begin_close(c, CloseReason::kCompleted, 0, false, false);
  } else if (c->phase == Phase::kLingering && c->side[0].read_eof) {
    // The client's FIN was already read: nothing left to drain.
    begin_close(c, CloseReason::kLocalClose, 0, false, false);
  } else {
    shutdown(dst.fd, SHUT_WR);
    dst.tail_held = false;  // the FIN pushed it
  }
}

// Whether our FIN to side `s` is decided and goes as soon as its queue is
// written: the client of a connection whose filter ended it (kEndDownstream:
// a `Connection: close` exchange, its upstream parked) or one lingering after
// a local reply. Its last bytes then go with MSG_MORE: the kernel holds the
// final partial segment and the FIN rides on it (tcp_send_fin marks an unsent
// tail), one segment and one wake-up of the client instead of two. Not for
// an upstream FIN (the pool may keep the socket) nor for a client FIN that
// only follows the upstream's (a filter may still switch upstreams and keep
// the client): a held tail would wait for a FIN that never comes.
bool Worker::fin_follows(const ConnectionImpl* c, int s) const {
  if (s != 0 || c->side[0].write_shut) return false;
  if (c->phase == Phase::kLingering) return true;
  return c->phase == Phase::kRelaying && c->ending_downstream;
}

// The upstream failed (reset, a send error) after the filter ended the
// downstream, or while the client lingers: the client's answer is complete,
// so it still gets the rest of it and a FIN (or its drain goes on), not a
// reset; the upstream is only not parked, and written to no more.
void Worker::upstream_broke_after_end(ConnectionImpl* c) {
  c->parking = false;
  c->side[1].write_shut = true;
  release_queue_if_idle(c, 1);
  if (c->phase == Phase::kRelaying) maybe_shutdown_write(c, 0);
}

// kEndDownstream's client still had unread bytes when its queue was written:
// FIN (its held tail with it), then read and discard until its FIN or
// linger_timeout, as after a local reply. The upstream is not parked (what
// it was sent may be cut short) and closes with the connection.
void Worker::linger_after_end(ConnectionImpl* c) {
  Side& d = c->side[0];
  shutdown(d.fd, SHUT_WR);
  d.tail_held = false;
  c->parking = false;
  counters_.lingered_after_end.add();
  // Reading again: the recv is armed now, or when its cancel lands.
  d.read_eof = false;
  d.paused = false;
  enter_lingering(c);
  // An upload still being written to the upstream stops: its buffers come
  // back when the cancel's CQE does (upstream_broke_after_end).
  c->side[1].write_shut = true;
  cancel_send(c, 1);
}

void Worker::cancel_send(ConnectionImpl* c, int s) {
  if (!c->side[s].send_inflight) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, ud(c, kTagSend0 + static_cast<uint64_t>(s)), 0);
  io_uring_sqe_set_data64(sqe, kUdIgnore);
}

void Worker::kick_send(ConnectionImpl* c, int s) {
  Side& dst = c->side[s];
  if (dst.send_inflight || dst.out.count == 0 || dst.fd < 0 || dst.write_shut) return;
  if (s == 1 && c->phase != Phase::kRelaying) return;
  int flags = MSG_NOSIGNAL;
  if (fin_follows(c, s)) {
    flags |= MSG_MORE;
    dst.tail_held = true;
  }
  io_uring_sqe* sqe = get_sqe();
  uint32_t b = dst.out.head;
  if (dst.out.count == 1) {
    io_uring_prep_send(sqe, dst.fd, buf_addr(b) + seg_off_[b], seg_len_[b], flags);
  } else {
    int n = 0;
    for (; b != kNoBuffer && n < kMaxSendIov; b = seg_next_[b], ++n) {
      dst.iov[n].iov_base = buf_addr(b) + seg_off_[b];
      dst.iov[n].iov_len = seg_len_[b];
    }
    std::memset(&dst.msg, 0, sizeof(dst.msg));
    dst.msg.msg_iov = dst.iov;
    dst.msg.msg_iovlen = static_cast<size_t>(n);
    io_uring_prep_sendmsg(sqe, dst.fd, &dst.msg, flags);
  }
  io_uring_sqe_set_data64(sqe, ud(c, kTagSend0 + static_cast<uint64_t>(s)));
  dst.send_inflight = true;
  c->inflight_ops++;
}

void Worker::on_send_cqe(ConnectionImpl* c, int s, int res) {
  Side& dst = c->side[s];
  c->inflight_ops--;
  dst.send_inflight = false;
  if (c->phase == Phase::kClosing) return;
  if (res <= 0) {
    int err = res == 0 ? EPIPE : -res;
    if (s == 1 && c->phase == Phase::kSwitching) {
      c->parking = false;  // the upstream being left broke: closed, not parked
      return;
    }
    if (s == 1 && (c->ending_downstream || c->phase == Phase::kLingering)) {
      upstream_broke_after_end(c);
    } else if (c->phase == Phase::kLingering) {
      begin_close(c, CloseReason::kLocalClose, err, false, false);
    } else {
      // The side we write to is gone: it was reset, so reset the other one too.
      begin_close(c, is_reset_error(err) ? reset_reason(s) : CloseReason::kInternalError, err, s == 1, s == 0);
    }
    return;
  }
  c->last_activity_ns = now_ns_;
  uint64_t sent = static_cast<uint64_t>(res);
  if (s == 1) {
    c->stats.bytes_to_upstream += sent;
    counters_.bytes_downstream_to_upstream.add(sent);
  } else {
    c->stats.bytes_to_downstream += sent;
    counters_.bytes_upstream_to_downstream.add(sent);
  }
  SendQueue& q = dst.out;
  drop_front(q, sent);
  if (q.count > 0) kick_send(c, s);
  else maybe_shutdown_write(c, s);
  if (c->phase == Phase::kClosing) return;
  if (c->phase != Phase::kLingering) maybe_arm_recv(c, 1 - s);
}

void Worker::begin_close(ConnectionImpl* c, CloseReason reason, int error, bool rst_down, bool rst_up) {
  if (c->phase == Phase::kClosing || c->phase == Phase::kFree) return;
  if (c->phase == Phase::kDeferred) leave_deferred(c);
  const bool connecting = c->phase == Phase::kConnecting;
  c->phase = Phase::kClosing;
  // The first reason wins: a local close or filter close that ends in a clean
  // FIN exchange stays a local close.
  if (c->stats.reason == CloseReason::kNone) c->stats.reason = reason;
  if (c->stats.error == 0) c->stats.error = error;
  c->stats.end_monotonic_ns = now_ns_;
  wheel_->cancel(&c->timer);
  if (rst_up || c->side[1].send_inflight || c->side[1].out.count > 0) c->parking = false;
  bool rst[2] = {rst_down, rst_up};
  for (int s = 0; s < 2; ++s) {
    Side& side = c->side[s];
    starved_remove(c, s);
    if (side.fd < 0) continue;
    if (rst[s]) {
      linger lg{1, 0};
      setsockopt(side.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      side.reset_on_close = true;
      counters_.resets_sent.add();
    }
  }
  if (c->inflight_ops > 0) {
    // In-flight requests hold file references, so close() alone would neither
    // stop them nor send the RST: each one still running is cancelled first,
    // by its user_data (a hash lookup; a cancel by descriptor scans every
    // armed request of the ring). A socket has at most a recv and a send in
    // flight, the upstream also its connect; a recv being cancelled already
    // (kCancelling) needs nothing more.
    for (int s = 0; s < 2; ++s) {
      if (c->side[s].fd < 0) continue;
      cancel_recv(c, s);
      cancel_send(c, s);
    }
    if (connecting) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, ud(c, kTagConnect), 0);
      io_uring_sqe_set_data64(sqe, kUdIgnore);
    }
  }
}

void Worker::settle(ConnectionImpl* c) {
  if (c->phase == Phase::kSwitching && c->side[1].recv == RecvState::kIdle && !c->side[1].send_inflight) {
    finish_switch(c);
  }
  if (c->phase == Phase::kClosing && c->inflight_ops == 0) finalize(c);
}

void Worker::begin_switch(ConnectionImpl* c) {
  c->phase = Phase::kSwitching;
  counters_.upstream_switches.add();
  // Back to the pool if it is still at a message boundary once quiet (any
  // byte, FIN or error from it until then clears this, as when parking).
  // An upstream that already ended a direction (its FIN or reset, ours) is
  // done with.
  const Side& up = c->side[1];
  c->parking = !c->pool_key.empty() && !up.read_eof && !up.write_shut && !up.reset_on_close;
  c->filter_deadline_ns = INT64_MAX;  // the filter's timer was for the old upstream's responses
  // The upstream is read no more; the downstream neither until the next
  // decision (what its in-flight recv still brings goes to the filter).
  c->side[1].read_eof = true;
  cancel_recv(c, 1);
  cancel_recv(c, 0);
  reschedule_timer(c);
}

void Worker::finish_switch(ConnectionImpl* c) {
  Side& up = c->side[1];
  if (c->parking) pool_park(c);  // takes the fd when every condition holds
  c->parking = false;
  if (up.fd >= 0) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_close(sqe, up.fd);
    io_uring_sqe_set_data64(sqe, kUdIgnore);
  }
  up.fd = -1;
  release_queue(up.out);
  up.recv = RecvState::kIdle;
  up.read_eof = up.write_shut = up.send_inflight = up.reset_on_close = false;
  up.multishot = multishot_recv_;
  up.paused = false;
  up.end_filtered = false;
  // Bulk detection starts over with the next exchange (both directions).
  for (auto& side : c->side) {
    side.bulk = false;
    side.full_reads = 0;
  }
  // The next filter hears of a downstream FIN this one was told of.
  c->side[0].end_filtered = false;
  if (c->stats.upstream_switches != UINT16_MAX) c->stats.upstream_switches++;  // saturates
  c->stats.upstream_reused = false;
  c->upstream_count = c->upstream_next = 0;
  c->connect_retry_ns = INT64_MAX;
  c->pool_key.clear();
  c->keepalive = {};
  c->pool_idle_ns = 0;
  c->phase = Phase::kSniffing;
  c->phase_deadline_ns = INT64_MAX;
  c->last_activity_ns = now_ns_;
  // What the filter held for the upstream it left becomes the pending bytes.
  Output out(this, c, 0, nullptr, 0, kNoBuffer);
  if (!c->filter->on_new_upstream(out)) c->filter.reset();
  if (c->side[0].out.count > 0) kick_send(c, 0);
  c->eof_unreported = c->side[0].read_eof;
  reschedule_timer(c);
  Verdict v = handler_->on_new_upstream(*c, pending_downstream(c));
  apply_verdict(c, std::move(v), CloseReason::kLocalClose);
  if (c->phase != Phase::kClosing) maybe_arm_recv(c, 0);
}

void Worker::finalize(ConnectionImpl* c) {
  if (c->parking) pool_park(c);
  for (auto& side : c->side) {
    if (side.fd >= 0) {
      // Batched with the loop's next submit rather than a syscall of its
      // own. Nothing is in flight on the socket any more, and its number
      // stays taken until the close runs, so no accept can reuse it early.
      if (side.tail_held) {
        // The held tail goes out before the close (a close() finding unread
        // bytes, or one with SO_LINGER{1,0}, resets instead and drops unsent
        // bytes): with the FIN, by a plain shutdown() (io_uring runs every
        // IORING_OP_SHUTDOWN on an io-wq thread: a context switch or two per
        // connection, measured), or, when the client is to be reset anyway
        // (its upstream reset after the response), pushed without one
        // (TCP_NODELAY pushes pending frames), as it went before the reset
        // when no tail was held.
        if (side.reset_on_close) {
          const int one = 1;
          setsockopt(side.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        } else {
          shutdown(side.fd, SHUT_WR);
        }
      }
      side.tail_held = false;
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_close(sqe, side.fd);
      io_uring_sqe_set_data64(sqe, kUdIgnore);
    }
    side.fd = -1;
    release_queue(side.out);
  }
  if (c->stats.end_monotonic_ns == 0) c->stats.end_monotonic_ns = now_ns_;
  // Counters first: whoever learns of the close through on_close (a test, a
  // metrics scrape triggered by it) sees them already settled.
  conns_active_--;
  counters_.active_connections.set(conns_active_);
  counters_.closed.add();
  handler_->on_close(*c, c->stats);
  c->filter.reset();
  c->phase = Phase::kFree;
  c->next_free = free_list_;
  free_list_ = c;
}

}  // namespace sluice::engine

namespace sluice::engine {

// ---------------------------------------------------------------- upstream pool

// A pooled upstream for c->pool_key, most recently parked first (its peer is
// least likely to have timed it out). Its poll is cancelled; the slot is
// freed when that CQE comes in.
bool Worker::adopt_pooled(ConnectionImpl* c) {
  if (draining_) return false;
  auto it = pool_idle_.find(c->pool_key);
  while (it != pool_idle_.end() && !it->second.empty()) {
    PooledUpstream* e = it->second.back();
    pool_unlink(e);
    // Its poll reports a FIN only at our next io_uring_enter. A socket idle
    // for a second or more is the kind a peer's keep-alive timeout closes:
    // one non-blocking peek tells it live (EAGAIN) from closed or written
    // to. Busier ones skip the syscall (a close racing it answers 503 UC).
    uint8_t probe;
    const bool check = now_ns_ - e->parked_ns >= 1'000'000'000;
    const ssize_t n = check ? recv(e->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) : -1;
    if (check && !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
      pool_close(e, false);
      it = pool_idle_.find(c->pool_key);
      continue;
    }
    // Past its expiry (idle too long, or too old for its state) though the
    // sweep has not come round yet: not handed out.
    if (e->expires_ns <= now_ns_) {
      pool_close(e, true);
      it = pool_idle_.find(c->pool_key);
      continue;
    }
    const bool ok = c->filter ? c->filter->adopt_upstream(std::move(e->state)) : e->state == nullptr;
    if (!ok) {
      pool_close(e, true);
      it = pool_idle_.find(c->pool_key);
      continue;
    }
    c->side[1].fd = e->fd;
    c->stats.upstream = e->address;
    c->stats.upstream_reused = true;
    e->fd = -1;
    pool_free(e);
    counters_.upstream_reused.add();
    return true;
  }
  return false;
}

void Worker::pool_park(ConnectionImpl* c) {
  c->parking = false;
  Side& up = c->side[1];
  // Only a connection to the key's own endpoint (the first choice; a
  // connect retry may have landed elsewhere) goes back under that key.
  if (draining_ || up.fd < 0 || up.reset_on_close || up.out.count > 0 || !c->filter ||
      !(c->stats.upstream == c->upstreams[0]) || !c->filter->upstream_reusable()) {
    return;
  }
  PooledUpstream* e = pool_free_;
  if (e != nullptr) {
    pool_free_ = e->next_free;
  } else {
    pool_slots_.push_back(std::make_unique<PooledUpstream>());
    e = pool_slots_.back().get();
  }
  e->next_free = nullptr;
  e->fd = up.fd;
  e->address = c->stats.upstream;
  e->state = c->filter->release_upstream();
  e->key = c->pool_key;
  e->parked_ns = now_ns_;
  e->expires_ns = deadline_after(now_ns_, c->pool_idle_ns > 0 ? c->pool_idle_ns : to_ns(config_.upstream_pool_idle_timeout));
  // A filter's state may bound it sooner (an HTTP upstream's
  // maxConnectionDuration).
  if (e->state) e->expires_ns = std::min(e->expires_ns, e->state->expires_ns());
  up.fd = -1;  // the pool owns it now
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_poll_add(sqe, e->fd, POLLIN | POLLRDHUP);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(e) | kTagPool);
  e->poll_armed = true;
  auto& list = pool_idle_[e->key];
  list.push_back(e);
  e->idle = true;
  ++pool_idle_count_;
  counters_.upstream_pooled.add();
  if (list.size() > config_.upstream_pool_max_idle_per_key) pool_close(list.front(), true);
  counters_.upstream_pool_idle.set(pool_idle_count_);
  if (pool_next_sweep_ns_ <= now_ns_) pool_next_sweep_ns_ = now_ns_ + sweep_interval_ns();
  // A shorter timeout than the engine's (a DestinationRule's) is met too.
  pool_next_sweep_ns_ = std::min(pool_next_sweep_ns_, std::max(e->expires_ns, now_ns_ + to_ns(config_.timer_tick)));
}

void Worker::pool_unlink(PooledUpstream* e) {
  if (!e->idle) return;
  e->idle = false;
  --pool_idle_count_;
  counters_.upstream_pool_idle.set(pool_idle_count_);
  auto it = pool_idle_.find(e->key);
  if (it == pool_idle_.end()) return;
  auto& list = it->second;
  list.erase(std::find(list.begin(), list.end(), e));
  if (list.empty()) pool_idle_.erase(it);
  if (e->poll_armed) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_remove(sqe, reinterpret_cast<uint64_t>(e) | kTagPool);
    io_uring_sqe_set_data64(sqe, kUdIgnore);
  }
}

void Worker::pool_close(PooledUpstream* e, bool expired) {
  pool_unlink(e);
  if (expired) counters_.upstream_pool_expired.add();
  else counters_.upstream_pool_dropped.add();
  if (e->fd >= 0) close(e->fd);
  e->fd = -1;
  pool_free(e);
}

// Back to the free list once nothing refers to it (its poll's CQE is in).
void Worker::pool_free(PooledUpstream* e) {
  e->state.reset();
  if (e->idle || e->poll_armed || e->fd >= 0) return;
  e->key.clear();
  e->next_free = pool_free_;
  pool_free_ = e;
}

void Worker::on_pool_cqe(PooledUpstream* e, int res) {
  (void)res;
  e->poll_armed = false;
  if (e->idle) {
    // Readable while idle: the peer closed it or sent something no request
    // asked for. Either way it cannot carry the next request.
    pool_close(e, false);
    return;
  }
  pool_free(e);
}

// Idle upstreams are checked this often: a tenth of their idle timeout,
// between one tick and a second.
int64_t Worker::sweep_interval_ns() const {
  const int64_t tick = to_ns(config_.timer_tick);
  return std::max<int64_t>(tick, std::min<int64_t>(to_ns(config_.upstream_pool_idle_timeout) / 10, 1'000'000'000));
}

void Worker::pool_sweep() {
  std::vector<PooledUpstream*> expired;
  int64_t next = now_ns_ + sweep_interval_ns();
  for (auto& [key, list] : pool_idle_) {
    for (PooledUpstream* e : list) {
      if (e->expires_ns <= now_ns_) expired.push_back(e);
      else next = std::min(next, e->expires_ns);
    }
  }
  for (PooledUpstream* e : expired) pool_close(e, true);
  pool_next_sweep_ns_ = std::max(next, now_ns_ + to_ns(config_.timer_tick));
}

void Worker::pool_close_all() {
  std::vector<PooledUpstream*> all;
  for (auto& [key, list] : pool_idle_) all.insert(all.end(), list.begin(), list.end());
  for (PooledUpstream* e : all) pool_close(e, true);
}

}  // namespace sluice::engine
