#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::engine {

// An intrusive node; the owner embeds one and finds itself through `owner`.
struct TimerNode {
  TimerNode* prev = nullptr;
  TimerNode* next = nullptr;
  int64_t deadline_ns = 0;
  void* owner = nullptr;
  bool linked() const { return prev != nullptr; }
};

// A hashed timer wheel with lazy rescheduling: one node per connection, no
// allocation after construction, O(1) schedule/cancel. Activity does not touch
// the wheel; the owner stores its last-activity time and, when the node fires
// early, schedules it again at the real deadline. That is how one idle timer
// per connection costs a store per event instead of a timer SQE per event.
class TimerWheel {
 public:
  TimerWheel(int64_t tick_ns, uint32_t slots, int64_t now_ns);
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // (Re)links `n` to fire at the first tick at or after `deadline_ns`.
  void schedule(TimerNode* n, int64_t deadline_ns);
  void cancel(TimerNode* n);

  // Calls fire(node) for every node whose deadline is <= now_ns (the node is
  // unlinked first; fire may schedule it again). Nodes whose slot came round
  // before their deadline stay linked.
  template <typename F>
  void advance(int64_t now_ns, F&& fire);

  // When advance() next has work to do: the first tick whose slot holds a
  // node (not merely the next tick: an idle worker need not wake every tick);
  // INT64_MAX when the wheel is empty.
  int64_t next_tick_ns() const;
  size_t size() const { return size_; }

 private:
  void link(TimerNode* n);
  void unlink(TimerNode* n);

  int64_t tick_ns_;
  uint32_t mask_;
  int64_t current_tick_;  // every slot up to and including this tick is processed
  std::vector<TimerNode> heads_;  // circular sentinels
  size_t size_ = 0;
  // No node is linked at a tick before this one (lowered by link(), raised
  // by next_tick_ns()'s scan): the scan resumes where it stopped, so finding
  // the next occupied slot costs the slots passed, not a turn per call.
  mutable int64_t no_node_before_ = 0;
};

template <typename F>
void TimerWheel::advance(int64_t now_ns, F&& fire) {
  int64_t now_tick = now_ns / tick_ns_;
  if (now_tick <= current_tick_) return;
  int64_t first = current_tick_ + 1;
  if (now_tick - first >= static_cast<int64_t>(mask_)) first = now_tick - mask_;  // visit each slot once
  current_tick_ = now_tick;
  for (int64_t t = first; t <= now_tick; ++t) {
    TimerNode* head = &heads_[static_cast<uint32_t>(t) & mask_];
    // Detach the slot so nodes scheduled by fire() land in fresh lists.
    TimerNode pending;
    if (head->next == head) continue;
    pending.next = head->next;
    pending.prev = head->prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    head->next = head->prev = head;
    while (pending.next != &pending) {
      TimerNode* n = pending.next;
      n->prev->next = n->next;
      n->next->prev = n->prev;
      n->prev = n->next = nullptr;
      --size_;
      if (n->deadline_ns <= now_ns) {
        fire(n);
      } else {
        link(n);
      }
    }
  }
}

}  // namespace sluice::engine
