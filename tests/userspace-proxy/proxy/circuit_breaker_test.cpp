// Envoy's circuit breaker on a cluster's connections: maxConnections slots,
// a first-come, first-served queue bounded by http1MaxPendingRequests, slots
// handed to the head of the queue, tickets that leave.
#include "userspace-proxy/proxy/circuit_breaker.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace sluice::proxy {
namespace {

using Kind = CircuitBreaker::Admission::Kind;

CircuitBreaker::Admission admit(CircuitBreaker& b, int64_t max, int64_t pending, SlotTicket& t, uint64_t generation = 0,
                                bool may_wait = true) {
  CircuitBreaker::Limits l;
  l.max_connections = max;
  l.max_pending = pending;
  l.may_wait = may_wait;
  l.generation = generation;
  return b.admit(l, {}, t);
}

TEST(CircuitBreakerTest, SlotsUpToTheLimitThenTheQueue) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket t1, t2, t3;
  CircuitBreaker::Admission a = admit(*b, 2, 0, t1);
  CircuitBreaker::Admission c = admit(*b, 2, 0, t2);
  ASSERT_EQ(a.kind, Kind::kAdmitted);
  ASSERT_EQ(c.kind, Kind::kAdmitted);
  EXPECT_TRUE(a.slot && c.slot);
  EXPECT_EQ(admit(*b, 2, 0, t3).kind, Kind::kQueued);
  EXPECT_TRUE(t3.waiting());
  EXPECT_FALSE(t3.granted());
  EXPECT_EQ(b->active(), 2);
  // Asked again before a slot is free (a wake meant for something else):
  // still queued, still one place.
  EXPECT_EQ(admit(*b, 2, 0, t3).kind, Kind::kQueued);
  EXPECT_EQ(b->queue_size(), 1u);
  a.slot.reset();
  EXPECT_TRUE(t3.granted()) << "the freed slot goes to the head of the queue";
  EXPECT_EQ(b->active(), 2);
  CircuitBreaker::Admission d = admit(*b, 2, 0, t3);
  ASSERT_EQ(d.kind, Kind::kAdmitted);
  EXPECT_FALSE(t3.waiting());
  d.slot.reset();
  c.slot.reset();
  EXPECT_EQ(b->active(), 0);
}

TEST(CircuitBreakerTest, ANewcomerDoesNotJumpTheQueue) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket holder, first, newcomer;
  CircuitBreaker::Admission h = admit(*b, 1, 0, holder);
  ASSERT_EQ(h.kind, Kind::kAdmitted);
  ASSERT_EQ(admit(*b, 1, 0, first).kind, Kind::kQueued);
  h.slot.reset();  // handed to `first`, which has not taken it yet
  EXPECT_EQ(admit(*b, 1, 0, newcomer).kind, Kind::kQueued);
  EXPECT_EQ(admit(*b, 1, 0, first).kind, Kind::kAdmitted);
  EXPECT_TRUE(newcomer.waiting());
}

TEST(CircuitBreakerTest, AFullQueueOverflows) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket t1, t2, t3;
  CircuitBreaker::Admission h = admit(*b, 1, 1, t1);
  ASSERT_EQ(h.kind, Kind::kAdmitted);
  EXPECT_EQ(admit(*b, 1, 1, t2).kind, Kind::kQueued);
  CircuitBreaker::Admission o = admit(*b, 1, 1, t3);
  EXPECT_EQ(o.kind, Kind::kOverflow);
  EXPECT_FALSE(o.slot);
  EXPECT_EQ(o.reason, "http1MaxPendingRequests 1 reached (maxConnections 1 in use)");
  EXPECT_FALSE(t3.waiting());
}

// Envoy's TCP proxy does not queue: no slot is an overflow at once.
TEST(CircuitBreakerTest, ACallerThatMayNotWaitOverflowsAtOnce) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket t1, t2;
  CircuitBreaker::Admission h = admit(*b, 1, 0, t1, 0, /*may_wait=*/false);
  ASSERT_EQ(h.kind, Kind::kAdmitted);
  CircuitBreaker::Admission o = admit(*b, 1, 0, t2, 0, /*may_wait=*/false);
  EXPECT_EQ(o.kind, Kind::kOverflow);
  EXPECT_EQ(o.reason, "maxConnections 1 reached");
  EXPECT_EQ(b->queue_size(), 0u);
}

// A connection still on an older config (keep-alive across a reload) does
// not set the limit back.
TEST(CircuitBreakerTest, AnOlderGenerationDoesNotChangeTheLimit) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket t1, t2, t3;
  CircuitBreaker::Admission a = admit(*b, 2, 0, t1, /*generation=*/2);
  ASSERT_EQ(a.kind, Kind::kAdmitted);
  CircuitBreaker::Admission c = admit(*b, 1, 0, t2, /*generation=*/1);
  EXPECT_EQ(c.kind, Kind::kAdmitted) << "the limit is generation 2's: 2";
  EXPECT_EQ(admit(*b, 1, 0, t3, /*generation=*/1).kind, Kind::kQueued);
}

TEST(CircuitBreakerTest, ALeavingTicketPassesItsSlotOn) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket holder, gone, next;
  CircuitBreaker::Admission h = admit(*b, 1, 0, holder);
  ASSERT_EQ(admit(*b, 1, 0, gone).kind, Kind::kQueued);
  ASSERT_EQ(admit(*b, 1, 0, next).kind, Kind::kQueued);
  h.slot.reset();
  ASSERT_TRUE(gone.granted());
  gone.leave();  // its connection closed before taking the slot
  EXPECT_TRUE(next.granted());
  EXPECT_EQ(b->active(), 1);
  {
    SlotTicket queued;  // leaves the queue when destroyed
    EXPECT_EQ(admit(*b, 1, 0, queued).kind, Kind::kQueued);
    EXPECT_EQ(b->queue_size(), 1u);
  }
  EXPECT_EQ(b->queue_size(), 0u);
  CircuitBreaker::Admission n = admit(*b, 1, 0, next);
  EXPECT_EQ(n.kind, Kind::kAdmitted);
  n.slot.reset();
  EXPECT_EQ(b->active(), 0);
}

TEST(CircuitBreakerTest, ARaisedLimitServesTheQueueFirst) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket holder, waiting, newcomer;
  CircuitBreaker::Admission h = admit(*b, 1, 0, holder);
  ASSERT_EQ(admit(*b, 1, 0, waiting).kind, Kind::kQueued);
  // A reload raises maxConnections to 2: the waiting ticket gets the new
  // slot; the newcomer queues behind nobody but the limit.
  EXPECT_EQ(admit(*b, 2, 0, newcomer).kind, Kind::kQueued);
  EXPECT_TRUE(waiting.granted());
  h.slot.reset();
  EXPECT_TRUE(newcomer.granted());
}

TEST(CircuitBreakerTest, ALoweredLimitHoldsTheQueueUntilBelowIt) {
  auto b = std::make_shared<CircuitBreaker>();
  SlotTicket t1, t2, t3;
  CircuitBreaker::Admission a = admit(*b, 2, 0, t1);
  CircuitBreaker::Admission c = admit(*b, 2, 0, t2);
  ASSERT_EQ(admit(*b, 1, 0, t3).kind, Kind::kQueued);
  a.slot.reset();
  EXPECT_FALSE(t3.granted()) << "2 held, limit 1: one release is not enough";
  c.slot.reset();
  EXPECT_TRUE(t3.granted());
}

TEST(CircuitBreakerTest, ATicketMovesToAnotherCluster) {
  auto b1 = std::make_shared<CircuitBreaker>();
  auto b2 = std::make_shared<CircuitBreaker>();
  SlotTicket holder, t;
  CircuitBreaker::Admission h = admit(*b1, 1, 0, holder);
  ASSERT_EQ(admit(*b1, 1, 0, t).kind, Kind::kQueued);
  CircuitBreaker::Admission a = admit(*b2, 1, 0, t);
  EXPECT_EQ(a.kind, Kind::kAdmitted);
  EXPECT_EQ(b1->queue_size(), 0u) << "its place in the first queue is given up";
}

// http1MaxPendingRequests counts requests waiting for a connect as well as
// those queued for a slot (Envoy's pending requests): connects alone are
// bounded, and a connect in progress takes a place of the queue's.
TEST(CircuitBreakerTest, ConnectsInProgressArePending) {
  auto b = std::make_shared<CircuitBreaker>();
  std::shared_ptr<void> first = b->start_connect(2);
  std::shared_ptr<void> second = b->start_connect(2);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(b->start_connect(2), nullptr) << "two pending already";
  first.reset();  // connected
  std::shared_ptr<void> third = b->start_connect(2);
  EXPECT_TRUE(third);
  third.reset();
  second.reset();
  // With maxConnections 1: the holder's connect is pending, so a request
  // that would queue finds the one place taken.
  SlotTicket t1, t2;
  CircuitBreaker::Admission holder = admit(*b, 1, 1, t1);
  ASSERT_EQ(holder.kind, Kind::kAdmitted);
  std::shared_ptr<void> connecting = b->start_connect(1);
  ASSERT_TRUE(connecting);
  EXPECT_EQ(admit(*b, 1, 1, t2).kind, Kind::kOverflow);
  connecting.reset();
  EXPECT_EQ(admit(*b, 1, 1, t2).kind, Kind::kQueued) << "once connected, the place is free";
  EXPECT_EQ(b->start_connect(1), nullptr) << "the queue's request is pending";
  t2.leave();
}

// A request handed a slot from the queue is pending already: admitted with
// its connect counted, never refused for the place a newcomer took since.
TEST(CircuitBreakerTest, AGrantedTicketIsNeverRefusedForItsConnect) {
  auto b = std::make_shared<CircuitBreaker>();
  CircuitBreaker::Limits l;
  l.max_connections = 1;
  l.max_pending = 1;
  l.counts_connect = true;
  SlotTicket t1, t2, t3;
  CircuitBreaker::Admission holder = b->admit(l, {}, t1);
  ASSERT_EQ(holder.kind, Kind::kAdmitted);
  ASSERT_TRUE(holder.connect_token);
  holder.connect_token.reset();  // connected
  EXPECT_EQ(b->admit(l, {}, t2).kind, Kind::kQueued);
  holder.slot.reset();  // the response ended: the slot goes to t2
  EXPECT_TRUE(t2.granted());
  EXPECT_EQ(b->admit(l, {}, t3).kind, Kind::kOverflow) << "t2, handed the slot but not awake yet, is pending";
  CircuitBreaker::Admission second = b->admit(l, {}, t2);
  ASSERT_EQ(second.kind, Kind::kAdmitted) << "t2 was handed its slot";
  EXPECT_TRUE(second.connect_token) << "and counts as pending till connected";
  EXPECT_EQ(b->admit(l, {}, t3).kind, Kind::kOverflow) << "t2 connecting";
  second.connect_token.reset();
  EXPECT_EQ(b->admit(l, {}, t3).kind, Kind::kQueued) << "t2 connected: t3 waits for the slot";
  t3.leave();
}

TEST(CircuitBreakerTest, ConcurrentUseKeepsCountsExact) {
  auto b = std::make_shared<CircuitBreaker>();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&b] {
      for (int i = 0; i < 2000; ++i) {
        SlotTicket ticket;
        CircuitBreaker::Admission a = admit(*b, 2, 0, ticket);
        // Queued: poll until handed a slot (no waker in a test).
        while (a.kind == Kind::kQueued) {
          std::this_thread::yield();
          a = admit(*b, 2, 0, ticket);
        }
        ASSERT_EQ(a.kind, Kind::kAdmitted);
        ASSERT_LE(b->active(), 2);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(b->active(), 0);
  EXPECT_EQ(b->queue_size(), 0u);
}

}  // namespace
}  // namespace sluice::proxy
