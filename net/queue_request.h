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
  list,     // a page of messages, by queue id: one JSON object per line
  show,     // the message `id` (the same form)
  flush,    // every deferred message: its next attempt now
  retry,    // the message `id`: its next attempt now
  remove,   // the message `id`: dropped, no DSN (its recipients count as done)
  hold,     // the message `id`: no attempt until released (kept across restarts)
  release,  // undoes hold; the next attempt now
};

struct QueueRequest {
  // list: at most this many messages a page, and this many octets of them
  // per shard (a message with many recipients is a long line).
  static constexpr uint32_t kDefaultLimit = 1000;
  static constexpr uint32_t kMaxLimit = 10000;
  static constexpr size_t kMaxShardBytes = size_t{4} << 20;

  QueueOp op = QueueOp::list;
  std::string id;
  // list: messages whose queue id sorts after `after` (empty: from the
  // first), the first `limit` of them.
  std::string after;
  uint32_t limit = kDefaultLimit;
  std::mutex mu;
  std::condition_variable cv;
  uint32_t remaining = 0;  // shards yet to answer
  std::string out;         // the answers, concatenated (JSON lines)
  uint64_t matched = 0;    // messages the request found (or changed)
  // list: the lowest queue id at which a shard stopped with more to come
  // (its limit or its octets reached); empty while none did.
  std::string cutoff;

  // A shard's answer (any thread); `stopped_at`: list only, see cutoff.
  void answer(const std::string& part, uint64_t n, const std::string& stopped_at = {}) {
    std::lock_guard<std::mutex> g(mu);
    out += part;
    matched += n;
    if (!stopped_at.empty() && (cutoff.empty() || stopped_at < cutoff)) cutoff = stopped_at;
    if (remaining > 0 && --remaining == 0) cv.notify_all();
  }
};

}  // namespace ringmx
