#include "userspace-proxy/engine/timer_wheel.h"

#include <climits>

namespace sluice::engine {

TimerWheel::TimerWheel(int64_t tick_ns, uint32_t slots, int64_t now_ns)
    : tick_ns_(tick_ns > 0 ? tick_ns : 1) {
  uint32_t n = 1;
  while (n < slots) n <<= 1;
  mask_ = n - 1;
  heads_.resize(n);
  for (auto& h : heads_) h.prev = h.next = &h;
  current_tick_ = now_ns / tick_ns_;
}

void TimerWheel::schedule(TimerNode* n, int64_t deadline_ns) {
  if (n->linked()) unlink(n);
  n->deadline_ns = deadline_ns;
  link(n);
}

void TimerWheel::cancel(TimerNode* n) {
  if (n->linked()) unlink(n);
}

void TimerWheel::link(TimerNode* n) {
  int64_t tick = (n->deadline_ns + tick_ns_ - 1) / tick_ns_;
  if (tick <= current_tick_) tick = current_tick_ + 1;
  if (tick - current_tick_ > static_cast<int64_t>(mask_)) tick = current_tick_ + mask_;
  if (tick < no_node_before_) no_node_before_ = tick;
  TimerNode* head = &heads_[static_cast<uint32_t>(tick) & mask_];
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
  ++size_;
}

void TimerWheel::unlink(TimerNode* n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = nullptr;
  --size_;
}

int64_t TimerWheel::next_tick_ns() const {
  if (size_ == 0) return INT64_MAX;
  // Every linked node is at a tick in (current_tick_, current_tick_ + mask_].
  int64_t t = no_node_before_ > current_tick_ ? no_node_before_ : current_tick_ + 1;
  const int64_t last = current_tick_ + mask_;
  for (; t < last; ++t) {
    const TimerNode* head = &heads_[static_cast<uint32_t>(t) & mask_];
    if (head->next != head) break;
  }
  no_node_before_ = t;
  return t * tick_ns_;
}

}  // namespace sluice::engine
