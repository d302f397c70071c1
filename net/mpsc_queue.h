// A bounded lock-free queue for many producers and one consumer (D. Vyukov's
// array queue: a sequence number per cell says whose turn it is). The admin
// thread (and any other) hands requests to a shard through one of these; the
// shard drains it when its ring wakes it. push() fails when the queue is
// full, never blocks; pop() is the consumer's only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

namespace ringmx {

template <class T>
class MpscQueue {
 public:
  // `capacity` is rounded up to a power of two (at least 2).
  explicit MpscQueue(size_t capacity) {
    size_t n = 2;
    while (n < capacity) n *= 2;
    mask_ = n - 1;
    cells_ = std::make_unique<Cell[]>(n);
    for (size_t i = 0; i < n; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  bool push(T value) {
    size_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      const size_t seq = c.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (diff == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          c.value = std::move(value);
          c.seq.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  std::optional<T> pop() {
    Cell& c = cells_[head_ & mask_];
    const size_t seq = c.seq.load(std::memory_order_acquire);
    if (seq != head_ + 1) return std::nullopt;  // empty (or a push not finished yet)
    std::optional<T> out(std::move(c.value));
    c.seq.store(head_ + mask_ + 1, std::memory_order_release);
    ++head_;
    return out;
  }

 private:
  struct Cell {
    std::atomic<size_t> seq{0};
    T value{};
  };
  std::unique_ptr<Cell[]> cells_;
  size_t mask_ = 0;
  alignas(64) std::atomic<size_t> tail_{0};
  alignas(64) size_t head_ = 0;  // the consumer's
};

}  // namespace ringmx
