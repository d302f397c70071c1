// One hashed timer wheel per shard: connection deadlines without a kernel
// timeout per connection. Nodes are intrusive (no allocation); a node whose
// deadline moved later is simply re-filed when its slot comes round, so
// pushing a deadline back costs nothing until it would have fired.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringmx {

struct TimerNode {
  TimerNode* prev = nullptr;
  TimerNode* next = nullptr;
  int64_t deadline_ms = 0;
  bool linked() const { return prev != nullptr; }
};

class TimerWheel {
 public:
  explicit TimerWheel(int64_t now_ms, uint32_t tick_ms = 10, uint32_t slots = 4096)
      : tick_ms_(tick_ms), slots_(slots), heads_(slots), current_tick_(now_ms / tick_ms) {
    for (auto& h : heads_) h.prev = h.next = &h;
  }
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // (Re)files `n` to fire at `deadline_ms` (a past deadline fires at the next advance).
  void schedule(TimerNode& n, int64_t deadline_ms) {
    cancel(n);
    n.deadline_ms = deadline_ms;
    int64_t tick = deadline_ms / tick_ms_;
    if (tick <= current_tick_) tick = current_tick_ + 1;
    TimerNode& head = heads_[static_cast<size_t>(tick % slots_)];
    n.next = head.next;
    n.prev = &head;
    head.next->prev = &n;
    head.next = &n;
    ++size_;
  }

  void cancel(TimerNode& n) {
    if (!n.linked()) return;
    n.prev->next = n.next;
    n.next->prev = n.prev;
    n.prev = n.next = nullptr;
    --size_;
  }

  // Fires every node whose deadline is <= now_ms: `on_expire(node)` may
  // schedule or cancel any node, including this one.
  template <class F>
  void advance(int64_t now_ms, F&& on_expire) {
    const int64_t target = now_ms / tick_ms_;
    // Walk at most one full turn: past that, every slot has been seen.
    int64_t from = current_tick_ + 1;
    if (target - current_tick_ > static_cast<int64_t>(slots_)) from = target - slots_ + 1;
    for (int64_t t = from; t <= target; ++t) {
      current_tick_ = t;
      TimerNode& head = heads_[static_cast<size_t>(t % slots_)];
      // Detach the slot, then re-file or fire each node.
      TimerNode pending;
      if (head.next == &head) continue;
      pending.next = head.next;
      pending.prev = head.prev;
      pending.next->prev = &pending;
      pending.prev->next = &pending;
      head.next = head.prev = &head;
      while (pending.next != &pending) {
        TimerNode* n = pending.next;
        pending.next = n->next;
        n->next->prev = &pending;
        n->prev = n->next = nullptr;
        --size_;
        if (n->deadline_ms <= now_ms) {
          on_expire(*n);
        } else {
          schedule(*n, n->deadline_ms);
        }
      }
    }
    current_tick_ = target;
  }

  size_t size() const { return size_; }
  uint32_t tick_ms() const { return tick_ms_; }

 private:
  uint32_t tick_ms_;
  uint32_t slots_;
  std::vector<TimerNode> heads_;
  int64_t current_tick_;
  size_t size_ = 0;
};

}  // namespace ringmx
