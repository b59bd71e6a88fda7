#include "userspace-proxy/engine/timer_wheel.h"

#include <gtest/gtest.h>

#include <vector>

namespace sluice::engine {
namespace {

constexpr int64_t kMs = 1000000;

TEST(TimerWheel, FiresAtOrAfterDeadlineInOrderOfTicks) {
  TimerWheel w(10 * kMs, 64, 0);
  TimerNode a, b, c;
  w.schedule(&a, 25 * kMs);
  w.schedule(&b, 5 * kMs);
  w.schedule(&c, 100 * kMs);
  std::vector<TimerNode*> fired;
  auto fire = [&](TimerNode* n) { fired.push_back(n); };
  w.advance(9 * kMs, fire);
  EXPECT_TRUE(fired.empty());
  w.advance(10 * kMs, fire);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0], &b);
  w.advance(30 * kMs, fire);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[1], &a);
  EXPECT_EQ(w.size(), 1u);
  w.advance(100 * kMs, fire);
  ASSERT_EQ(fired.size(), 3u);
  EXPECT_EQ(w.size(), 0u);
}

TEST(TimerWheel, DeadlinesBeyondOneTurnWaitForTheirTurn) {
  TimerWheel w(1 * kMs, 8, 0);
  TimerNode a;
  w.schedule(&a, 50 * kMs);  // wheel spans 8 ms
  int fired = 0;
  for (int64_t t = 1; t < 50; ++t) w.advance(t * kMs, [&](TimerNode*) { ++fired; });
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(a.linked());
  w.advance(50 * kMs, [&](TimerNode*) { ++fired; });
  EXPECT_EQ(fired, 1);
}

TEST(TimerWheel, CancelAndRescheduleFromCallback) {
  TimerWheel w(1 * kMs, 16, 0);
  TimerNode a, b;
  w.schedule(&a, 3 * kMs);
  w.schedule(&b, 3 * kMs);
  w.cancel(&b);
  int fired = 0;
  w.advance(3 * kMs, [&](TimerNode* n) {
    ++fired;
    if (fired == 1) w.schedule(n, 7 * kMs);  // lazy idle timer: pushed out again
  });
  EXPECT_EQ(fired, 1);
  EXPECT_TRUE(a.linked());
  EXPECT_FALSE(b.linked());
  w.advance(1000 * kMs, [&](TimerNode*) { ++fired; });  // a long jump visits each slot once
  EXPECT_EQ(fired, 2);
  EXPECT_EQ(w.next_tick_ns(), INT64_MAX);
}

// The wheel's next work is its earliest occupied tick, not the next tick:
// an idle worker sleeps until then.
TEST(TimerWheel, NextTickIsTheEarliestOccupiedOne) {
  TimerWheel w(10 * kMs, 64, 0);
  TimerNode far, near;
  w.schedule(&far, 400 * kMs);
  EXPECT_EQ(w.next_tick_ns(), 400 * kMs);
  w.schedule(&near, 35 * kMs);  // an earlier one moves it back
  EXPECT_EQ(w.next_tick_ns(), 40 * kMs);
  w.cancel(&near);
  EXPECT_EQ(w.next_tick_ns(), 400 * kMs);
  int fired = 0;
  w.advance(399 * kMs, [&](TimerNode*) { ++fired; });
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(w.next_tick_ns(), 400 * kMs);
  // Beyond one turn (64 ticks): its slot comes round at the turn's end,
  // where the node is linked again, nearer.
  TimerNode later;
  w.schedule(&later, 5000 * kMs);
  w.cancel(&far);
  EXPECT_EQ(w.next_tick_ns(), (39 + 63) * 10 * kMs);
  w.advance((39 + 63) * 10 * kMs, [&](TimerNode*) { ++fired; });
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(later.linked());
  EXPECT_EQ(w.next_tick_ns(), (39 + 63 + 63) * 10 * kMs);
  w.advance(5000 * kMs, [&](TimerNode*) { ++fired; });
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(w.next_tick_ns(), INT64_MAX);
}

}  // namespace
}  // namespace sluice::engine
