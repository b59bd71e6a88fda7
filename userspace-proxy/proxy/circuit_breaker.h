// Envoy's circuit breaker on a cluster's upstream connections, shared by all
// workers: at most DestinationRule connectionPool.tcp.maxConnections
// connections in use at once, and a first-come, first-served queue of the
// requests (and TCP connections) that wait for one, bounded by
// connectionPool.http.http1MaxPendingRequests (beyond it: 503 UO, Envoy's
// upstream_rq_pending_overflow).
//
// A connection holds a ConnectionSlot while it uses an upstream of the
// cluster. One that finds every slot taken waits with a SlotTicket: when a
// slot is freed it goes to the ticket at the head of the queue (not to
// whoever asks next), and that ticket's connection is woken through its
// engine::Waker to take it. An HTTP connection gives its slot up at each
// response end (its upstream goes back to the pool), as Envoy's pool takes
// a connection back when a response ends: an idle keep-alive client holds
// none, and its next request is admitted like any other.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "userspace-proxy/engine/connection_handler.h"

namespace sluice::proxy {

class CircuitBreaker;
struct ConnectingToken;

// One of a cluster's connection slots; freed when destroyed.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(std::shared_ptr<CircuitBreaker> breaker) : breaker_(std::move(breaker)) {}
  ~ConnectionSlot();
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  std::shared_ptr<CircuitBreaker> breaker_;
};

// A connection's place in a cluster's queue. It leaves the queue when
// destroyed (the connection closed while waiting); a slot already handed to
// it and not taken goes on to the next in line.
class SlotTicket {
 public:
  SlotTicket() = default;
  ~SlotTicket() { leave(); }
  SlotTicket(const SlotTicket&) = delete;
  SlotTicket& operator=(const SlotTicket&) = delete;
  // Gives up the place (and a slot handed to it, to the next in line).
  void leave();
  // In a queue, or a slot is waiting for it (under the breaker's lock).
  bool waiting() const;
  bool granted() const;

 private:
  friend class CircuitBreaker;
  std::shared_ptr<CircuitBreaker> breaker_;  // set while waiting
  std::list<SlotTicket*>::iterator pos_;
  bool queued_ = false;   // in breaker_->queue_ (under its lock)
  bool granted_ = false;  // a slot was handed to it, not yet taken (under its lock)
  engine::Waker waker_;
};

class CircuitBreaker : public std::enable_shared_from_this<CircuitBreaker> {
 public:
  struct Admission {
    enum class Kind : uint8_t {
      kAdmitted,  // `slot` is the connection's
      kQueued,    // waiting: the ticket's waker is called when a slot is handed to it; admit() again then
      kOverflow,  // the queue is full (max_pending): 503 UO
    };
    Kind kind = Kind::kAdmitted;
    std::shared_ptr<ConnectionSlot> slot;
    // Limits::counts_connect: the request is pending until its upstream is
    // ready (start_connect's token, taken under the same lock: one handed a
    // slot from the queue is never refused for it).
    std::shared_ptr<void> connect_token;
    std::string reason;  // kOverflow: which limit
  };

  struct Limits {
    int64_t max_connections = 0;  // > 0
    int64_t max_pending = 0;      // 0: an unbounded queue (Istio's default, 2^32-1)
    bool may_wait = true;         // false: no queue, kOverflow at once (Envoy's TCP proxy)
    // An HTTP request under http1MaxPendingRequests: admitted, it counts as
    // pending until its connection is ready (Admission::connect_token).
    bool counts_connect = false;
    // The config generation the caller decided under: the newest one's
    // limits apply to everyone from then on (a reload that raises
    // maxConnections hands the new slots to the queue); an older caller's
    // do not change them.
    uint64_t generation = 0;
  };
  // A ticket handed a slot gets it whatever the limits are now.
  Admission admit(const Limits& limits, engine::Waker waker, SlotTicket& ticket);

  int64_t active() const;    // slots held or handed out
  size_t queue_size() const;

  // Envoy's other two circuit breakers, counters without a queue: a token
  // held while the thing counted is under way, null when `max` (> 0) are
  // already (the caller answers 503 UO, or does not retry).
  // - http2MaxRequests (Envoy's max_requests, HTTP/1.1 too): a request
  //   sent to the cluster, until its response ends (or it is given up);
  // - maxRetries (max_retries): a retry, from its decision until its try's
  //   response head (or its end without one), as Envoy's RetryState holds it.
  std::shared_ptr<void> start_request(int64_t max) { return take(requests_, max); }
  std::shared_ptr<void> start_retry(int64_t max) { return take(retries_, max); }
  // http1MaxPendingRequests also counts an HTTP request waiting for its new
  // upstream connection to be made (Envoy's pending requests: queued for a
  // slot or for a connect): a token held from the connect verdict until
  // the upstream is ready (a pooled one at once); null when `max_pending`
  // (> 0) are pending already, the queue's included (503 UO).
  std::shared_ptr<void> start_connect(int64_t max_pending);

 private:
  friend class ConnectionSlot;
  friend class SlotTicket;
  friend struct ConnectingToken;
  // A slot is free: to the head of the queue while below the limit (under
  // mu_; the tickets' wakers are collected, to be called unlocked).
  void grant(std::vector<engine::Waker>& wake);
  void release();
  std::shared_ptr<void> take(std::atomic<int64_t>& count, int64_t max);
  std::shared_ptr<void> connecting_token();  // under mu_

  mutable std::mutex mu_;
  int64_t active_ = 0;
  int64_t max_ = 0;
  uint64_t generation_ = 0;
  std::list<SlotTicket*> queue_;
  int64_t connecting_ = 0;  // start_connect tokens (under mu_)
  int64_t granted_ = 0;     // tickets handed a slot, not yet claimed (under mu_): still pending
  // The requests Envoy calls pending: queued, handed a slot but not awake
  // yet, or connecting (under mu_).
  int64_t pending_locked() const { return static_cast<int64_t>(queue_.size()) + granted_ + connecting_; }
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> retries_{0};
};

}  // namespace sluice::proxy
