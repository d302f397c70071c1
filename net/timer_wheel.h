// One hashed timer wheel per shard: connection deadlines without a kernel
// timeout per connection. Nodes are intrusive (no allocation); a node whose
// deadline moved later is simply re-filed when its slot comes round, so
// pushing a deadline back costs nothing until it would have fired.
//
// Two levels: a fine one (tick_ms per slot, `slots` slots: 41 s at the
// defaults) for near deadlines, and a coarse one (64 fine ticks per slot:
// 44 min) for the rest, whose slot moves its nodes to the fine level when it
// comes round. A bitmap per level tells which slots hold nodes, so
// next_wake_ms() finds the next thing to do without walking empty slots: the
// owner sleeps until then instead of waking every tick.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace ringmx {

struct TimerNode {
  TimerNode* prev = nullptr;
  TimerNode* next = nullptr;
  // Set: what the shard calls when the node fires (relays, retries, ...);
  // null: the node is a connection's (the shard's own dispatch).
  void (*fire)(TimerNode&) = nullptr;
  int64_t deadline_ms = 0;
  uint32_t slot = 0;  // where it is filed: level * slots + slot of that level
  bool linked() const { return prev != nullptr; }
};

class TimerWheel {
 public:
  // Fine ticks per coarse slot (at most half the fine turn, so a coarse slot
  // that comes round always fits in the fine level).
  static constexpr uint32_t kCoarseTicks = 64;
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

  explicit TimerWheel(int64_t now_ms, uint32_t tick_ms = 10, uint32_t slots = 4096)
      : tick_ms_(tick_ms),
        coarse_ms_(int64_t{tick_ms} * std::max<uint32_t>(1, std::min(kCoarseTicks, slots / 2))),
        slots_(slots),
        words_((slots + 63) / 64),
        heads_(size_t{2} * slots),
        bits_(size_t{2} * words_),
        fine_tick_(now_ms / tick_ms),
        coarse_tick_(now_ms / coarse_ms_) {
    for (auto& h : heads_) h.prev = h.next = &h;
  }
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // (Re)files `n` to fire at `deadline_ms` (a past deadline fires at the next advance).
  void schedule(TimerNode& n, int64_t deadline_ms) {
    cancel(n);
    n.deadline_ms = deadline_ms;
    file(n);
  }

  void cancel(TimerNode& n) {
    if (!n.linked()) return;
    n.prev->next = n.next;
    n.next->prev = n.prev;
    n.prev = n.next = nullptr;
    --size_;
    TimerNode& head = heads_[n.slot];
    if (head.next == &head) clear_bit(n.slot);
  }

  // Fires every node whose deadline is <= now_ms: `on_expire(node)` may
  // schedule or cancel any node, including this one.
  template <class F>
  void advance(int64_t now_ms, F&& on_expire) {
    walk(fine_tick_, now_ms / tick_ms_, 0, now_ms, on_expire);
    // Coarse slots that came round: their nodes fire now or move to the
    // fine level (they are due within one coarse slot, well inside it).
    walk(coarse_tick_, now_ms / coarse_ms_, slots_, now_ms, on_expire);
  }

  // When advance() next has work: the end of the first fine slot holding a
  // node (every node filed there is due by then), or the start of the first
  // coarse slot holding one; kNever when nothing is filed. Nodes whose
  // deadline moved later since they were filed may make it early, never late.
  // A node fires less than two ticks after its deadline (one due later in
  // the tick being walked waits for the next slot).
  int64_t next_wake_ms() const {
    if (size_ == 0) return kNever;
    int64_t wake = kNever;
    const int64_t fine = first_from(0, fine_tick_ + 1);
    if (fine >= 0) wake = (fine_tick_ + 1 + fine + 1) * tick_ms_ - 1;
    const int64_t coarse = first_from(1, coarse_tick_ + 1);
    if (coarse >= 0) wake = std::min(wake, (coarse_tick_ + 1 + coarse) * coarse_ms_);
    return wake;
  }

  size_t size() const { return size_; }

 private:
  void file(TimerNode& n) {
    int64_t tick = n.deadline_ms / tick_ms_;
    if (tick - fine_tick_ < static_cast<int64_t>(slots_)) {
      if (tick <= fine_tick_) tick = fine_tick_ + 1;
      link(n, static_cast<uint32_t>(tick % slots_));
      return;
    }
    int64_t c = n.deadline_ms / coarse_ms_;
    if (c <= coarse_tick_) c = coarse_tick_ + 1;
    // Beyond the coarse turn: filed at its far end, filed again from there.
    if (c - coarse_tick_ >= static_cast<int64_t>(slots_)) c = coarse_tick_ + slots_ - 1;
    link(n, slots_ + static_cast<uint32_t>(c % slots_));
  }

  void link(TimerNode& n, uint32_t slot) {
    TimerNode& head = heads_[slot];
    n.slot = slot;
    n.next = head.next;
    n.prev = &head;
    head.next->prev = &n;
    head.next = &n;
    bits_[slot / slots_ * words_ + slot % slots_ / 64] |= uint64_t{1} << (slot % slots_ % 64);
    ++size_;
  }

  // Moves a slot's nodes onto the list headed by `pending`; false if it was empty.
  bool detach(uint32_t slot, TimerNode& pending) {
    TimerNode& head = heads_[slot];
    if (head.next == &head) return false;
    pending.next = head.next;
    pending.prev = head.prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    head.next = head.prev = &head;
    clear_bit(slot);
    return true;
  }

  // Visits the slots of one level (the first at `base` in heads_) from the
  // tick after `current` up to `target`, at most one full turn (past that,
  // every slot has been seen): fires what is due, files the rest again.
  template <class F>
  void walk(int64_t& current, int64_t target, uint32_t base, int64_t now_ms, F& on_expire) {
    int64_t t = current + 1;
    if (target - current > static_cast<int64_t>(slots_)) t = target - slots_ + 1;
    for (; t <= target; ++t) {
      current = t;
      TimerNode pending;
      if (!detach(base + static_cast<uint32_t>(t % slots_), pending)) continue;
      while (pending.next != &pending) {
        TimerNode& n = take_first(pending);
        if (n.deadline_ms <= now_ms) {
          on_expire(n);
        } else {
          file(n);
        }
      }
    }
    current = target;
  }

  TimerNode& take_first(TimerNode& pending) {
    TimerNode* n = pending.next;
    pending.next = n->next;
    n->next->prev = &pending;
    n->prev = n->next = nullptr;
    --size_;
    return *n;
  }

  void clear_bit(uint32_t slot) {
    bits_[slot / slots_ * words_ + slot % slots_ / 64] &= ~(uint64_t{1} << (slot % slots_ % 64));
  }

  // Distance (in slots) from the slot of `tick` to the first occupied slot of
  // `level`, going round once; -1 if none.
  int64_t first_from(uint32_t level, int64_t tick) const {
    const uint64_t* w = &bits_[size_t{level} * words_];
    const uint32_t start = static_cast<uint32_t>(tick % slots_);
    uint32_t i = start;
    uint32_t walked = 0;
    while (walked < slots_) {
      const uint32_t word = i / 64;
      const uint32_t bit = i % 64;
      uint64_t m = w[word] >> bit;
      // Slots left in this word before the end of the wheel.
      const uint32_t in_word = std::min<uint32_t>(64 - bit, slots_ - i);
      if (in_word < 64) m &= (uint64_t{1} << in_word) - 1;
      if (m != 0) {
        const uint32_t d = walked + static_cast<uint32_t>(std::countr_zero(m));
        return d < slots_ ? d : -1;
      }
      walked += in_word;
      i += in_word;
      if (i == slots_) i = 0;
    }
    return -1;
  }

  uint32_t tick_ms_;
  int64_t coarse_ms_;
  uint32_t slots_;
  uint32_t words_;
  std::vector<TimerNode> heads_;  // fine slots, then coarse slots
  std::vector<uint64_t> bits_;    // occupied slots: fine words, then coarse words
  int64_t fine_tick_;
  int64_t coarse_tick_;
  size_t size_ = 0;
};

}  // namespace ringmx
