// How many events a client caused in the last `window` milliseconds, kept
// in 16 bytes: the count of the current window, the count of the one before
// it, and where the current one started. The estimate adds to the current
// count the part of the previous count that still lies inside the last
// `window` ms (as if the previous window's events were spread evenly over
// it). Events that all fall into one window are counted exactly; a burst at
// the end of the previous window is under-counted, one at its start
// over-counted, never by more than the previous window's count.
//
// A window starts with the first event after a quiet spell (not on a global
// clock tick), so a burst from a client that was quiet is always counted
// exactly. Pure: time is passed in (milliseconds, monotonic).
#pragma once

#include <cstdint>

namespace ringmx {

class SlidingCount {
 public:
  // The events of the last `window` ms, as estimated above.
  uint64_t estimate(int64_t now_ms, int64_t window_ms) {
    roll(now_ms, window_ms);
    const int64_t into = now_ms - start_ms_;  // 0 <= into < window
    const int64_t left = window_ms - into;    // the previous window's share still inside
    return cur_ +
           (uint64_t{prev_} * static_cast<uint64_t>(left)) / static_cast<uint64_t>(window_ms);
  }
  // Counts one event unless `limit` are already counted; true if it was counted.
  bool try_add(int64_t now_ms, int64_t window_ms, uint64_t limit) {
    if (estimate(now_ms, window_ms) >= limit) return false;
    if (cur_ != UINT32_MAX) ++cur_;
    return true;
  }
  uint32_t current() const { return cur_; }
  uint32_t previous() const { return prev_; }

 private:
  void roll(int64_t now_ms, int64_t window_ms) {
    if (!started_ || now_ms < start_ms_) {  // the first event (or a clock that went back)
      started_ = true;
      start_ms_ = now_ms;
      prev_ = 0;
      cur_ = 0;
      return;
    }
    const int64_t elapsed = now_ms - start_ms_;
    if (elapsed < window_ms) return;
    if (elapsed < 2 * window_ms) {  // the next window: this one becomes the previous
      prev_ = cur_;
      start_ms_ += window_ms;
    } else {  // quiet for a whole window: nothing of the past counts
      prev_ = 0;
      start_ms_ = now_ms;
    }
    cur_ = 0;
  }

  int64_t start_ms_ = 0;
  uint32_t prev_ = 0;
  uint32_t cur_ = 0;
  bool started_ = false;
};

}  // namespace ringmx
