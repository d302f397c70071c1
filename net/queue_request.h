// An operator's request about the delivery queue (ringmxctl through the admin
// endpoint), as the admin thread hands it to every shard (each through its
// bounded lock-free MpscQueue, woken by its control eventfd) and waits for
// their answers. A shard answers only about the messages it holds.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace ringmx {

enum class QueueOp : uint8_t {
  list,     // every message: one JSON object per line
  show,     // the message `id` (the same form)
  flush,    // every deferred message: its next attempt now
  retry,    // the message `id`: its next attempt now
  remove,   // the message `id`: dropped, no DSN (its recipients count as done)
  hold,     // the message `id`: no attempt until released (kept across restarts)
  release,  // undoes hold; the next attempt now
};

struct QueueRequest {
  QueueOp op = QueueOp::list;
  std::string id;
  std::mutex mu;
  std::condition_variable cv;
  uint32_t remaining = 0;  // shards yet to answer
  std::string out;         // the answers, concatenated (JSON lines)
  uint64_t matched = 0;    // messages the request found (or changed)

  // A shard's answer (any thread).
  void answer(const std::string& part, uint64_t n) {
    std::lock_guard<std::mutex> g(mu);
    out += part;
    matched += n;
    if (remaining > 0 && --remaining == 0) cv.notify_all();
  }
};

}  // namespace ringmx
