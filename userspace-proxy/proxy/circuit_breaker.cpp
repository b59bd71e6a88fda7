#include "userspace-proxy/proxy/circuit_breaker.h"

namespace sluice::proxy {

ConnectionSlot::~ConnectionSlot() {
  if (breaker_) breaker_->release();
}

void SlotTicket::leave() {
  std::shared_ptr<CircuitBreaker> b = std::move(breaker_);
  if (!b) return;
  std::vector<engine::Waker> wake;
  {
    std::lock_guard<std::mutex> lock(b->mu_);
    if (queued_) {
      b->queue_.erase(pos_);
      queued_ = false;
    }
    if (granted_) {
      // The slot handed to it was never taken: the next in line gets it.
      granted_ = false;
      --b->granted_;
      --b->active_;
      b->grant(wake);
    }
  }
  for (const engine::Waker& w : wake) w.wake();
}

bool SlotTicket::waiting() const {
  std::shared_ptr<CircuitBreaker> b = breaker_;
  if (!b) return false;
  std::lock_guard<std::mutex> lock(b->mu_);
  return queued_ || granted_;
}

bool SlotTicket::granted() const {
  std::shared_ptr<CircuitBreaker> b = breaker_;
  if (!b) return false;
  std::lock_guard<std::mutex> lock(b->mu_);
  return granted_;
}

void CircuitBreaker::grant(std::vector<engine::Waker>& wake) {
  while (!queue_.empty() && active_ < max_) {
    SlotTicket* t = queue_.front();
    queue_.pop_front();
    t->queued_ = false;
    t->granted_ = true;
    ++granted_;
    ++active_;
    wake.push_back(t->waker_);
  }
}

void CircuitBreaker::release() {
  std::vector<engine::Waker> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --active_;
    grant(wake);
  }
  for (const engine::Waker& w : wake) w.wake();
}

CircuitBreaker::Admission CircuitBreaker::admit(const Limits& limits, engine::Waker waker, SlotTicket& ticket) {
  // A place in another cluster's queue (the connection's plan changed
  // while it waited) is given up first.
  if (ticket.breaker_ && ticket.breaker_.get() != this) ticket.leave();
  Admission out;
  std::vector<engine::Waker> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (limits.generation >= generation_) {
      generation_ = limits.generation;
      max_ = limits.max_connections;
    }
    if (ticket.breaker_.get() == this && ticket.granted_) {
      // Handed to it by a release: already counted (and pending already).
      ticket.granted_ = false;
      --granted_;
      ticket.breaker_.reset();
      out.slot = std::make_shared<ConnectionSlot>(shared_from_this());
      if (limits.counts_connect) out.connect_token = connecting_token();
      return out;
    }
    if (ticket.breaker_.get() == this && ticket.queued_) {
      out.kind = Admission::Kind::kQueued;  // a wake meant for something else
      ticket.waker_ = std::move(waker);
      return out;
    }
    // A raised limit frees slots for those already waiting, first.
    grant(wake);
    if (queue_.empty() && active_ < max_ && limits.counts_connect && limits.max_pending > 0 &&
        pending_locked() >= limits.max_pending) {
      // A slot, but as many requests as http1MaxPendingRequests wait for
      // their connections already.
      out.kind = Admission::Kind::kOverflow;
      out.reason = "http1MaxPendingRequests " + std::to_string(limits.max_pending) +
                   " reached (requests waiting for a connection)";
    } else if (queue_.empty() && active_ < max_) {
      ++active_;
      out.slot = std::make_shared<ConnectionSlot>(shared_from_this());
      if (limits.counts_connect) out.connect_token = connecting_token();
    } else if (!limits.may_wait) {
      out.kind = Admission::Kind::kOverflow;
      out.reason = "maxConnections " + std::to_string(max_) + " reached";
    } else if (limits.max_pending > 0 && pending_locked() >= limits.max_pending) {
      out.kind = Admission::Kind::kOverflow;
      out.reason = "http1MaxPendingRequests " + std::to_string(limits.max_pending) + " reached (maxConnections " +
                   std::to_string(max_) + " in use)";
    } else {
      out.kind = Admission::Kind::kQueued;
      queue_.push_back(&ticket);
      ticket.pos_ = std::prev(queue_.end());
      ticket.queued_ = true;
      ticket.breaker_ = shared_from_this();
      ticket.waker_ = std::move(waker);
    }
  }
  for (const engine::Waker& w : wake) w.wake();
  return out;
}

std::shared_ptr<void> CircuitBreaker::take(std::atomic<int64_t>& count, int64_t max) {
  if (count.fetch_add(1, std::memory_order_relaxed) >= max) {
    count.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;
  }
  // The token keeps the breaker (and so the counter) alive.
  std::shared_ptr<CircuitBreaker> self = shared_from_this();
  return std::shared_ptr<void>(static_cast<void*>(&count), [self](void* p) {
    static_cast<std::atomic<int64_t>*>(p)->fetch_sub(1, std::memory_order_relaxed);
  });
}

std::shared_ptr<void> CircuitBreaker::start_connect(int64_t max_pending) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_locked() >= max_pending) return nullptr;
  return connecting_token();
}

// A request's place among the connecting ones; its destructor takes the
// breaker's lock, so one is never dropped while that is held (they go with
// connections, outside the breaker).
struct ConnectingToken {
  explicit ConnectingToken(std::shared_ptr<CircuitBreaker> b) : breaker(std::move(b)) {}
  ~ConnectingToken() {
    std::lock_guard<std::mutex> lock(breaker->mu_);
    --breaker->connecting_;
  }
  std::shared_ptr<CircuitBreaker> breaker;
};

std::shared_ptr<void> CircuitBreaker::connecting_token() {
  // Made whole before it is counted: an allocation that fails leaves no
  // object whose destructor would take the lock held here.
  auto token = std::make_shared<ConnectingToken>(shared_from_this());
  ++connecting_;
  return token;
}

int64_t CircuitBreaker::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

size_t CircuitBreaker::queue_size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

}  // namespace sluice::proxy
