// The shard's io_uring as its operations see it. Owns the ring and two
// promises the rest of net/ relies on:
//   - a chain of linked SQEs always reaches the kernel in one submission
//     (a link never spans two submissions: if it did, the kernel would run
//     the halves independently, and an fdatasync could complete before the
//     write it was meant to follow);
//   - taking SQEs never fails and never throws after init(): when the
//     submission queue has no room even after a submit (the kernel refused
//     it), the chain is deferred and prepared later, in the order asked.
// Callers set their own bookkeeping (ops in flight, armed flags) when they
// ask, so an object an operation points to stays alive while it is deferred.
// Shard thread only.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <utility>

namespace ringmx {

// The open completion interface: an operation whose user_data is
// completion_tag(&c) ends in c.complete(res, flags), whatever c is (a relay
// connection's connect, recv or send, a spool read, ...). The shard's own
// operations keep their closed set of tags (net/connection.h); everything
// added since goes through this. The object must stay alive (and 16-aligned)
// until its completion arrives.
struct alignas(16) Completion {
  virtual void complete(int res, uint32_t flags) = 0;

 protected:
  Completion() = default;
  Completion(const Completion&) = default;
  Completion& operator=(const Completion&) = default;
  ~Completion() = default;
};
// Equal to tag(&c, kOpCompletion) in net/connection.h.
inline uint64_t completion_tag(Completion* c) {
  return reinterpret_cast<uint64_t>(c) | 15U;
}

class Ring {
 public:
  // The longest chain anyone asks for (write + fdatasync today).
  static constexpr unsigned kMaxChain = 4;

  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  // Start-up only: throws std::runtime_error naming the failure.
  void init(unsigned sq_entries, unsigned cq_entries, unsigned flags);
  bool ready() const { return ready_; }
  // Tears the ring down (also done by the destructor); deferred chains are dropped.
  void exit();
  io_uring& raw() { return ring_; }

  // Prepares a chain of `n` SQEs (1 <= n <= kMaxChain): `fill(sqes)` fills
  // sqes[0..n) — setting IOSQE_IO_LINK on all but the last is the caller's
  // part — now if the queue has room for all n (submitting first if it must),
  // else later, from run_deferred(). Never fails.
  template <class Fill>
  void prep(unsigned n, Fill&& fill) {
    if (deferred_.empty() && make_room(n)) {
      io_uring_sqe* s[kMaxChain] = {};
      take(n, s);
      fill(s);
      return;
    }
    deferred_.push_back({n, std::function<void(io_uring_sqe**)>(std::forward<Fill>(fill))});
    ++deferrals_;
  }

  // Prepares deferred chains, oldest first, while they fit (submitting full
  // queues on the way). Returns how many are still waiting.
  size_t run_deferred();
  size_t deferred() const { return deferred_.size(); }
  // Chains that had to wait since start (a metric: non-zero means the queue
  // was too small for a burst, or the kernel refused a submission).
  uint64_t deferrals() const { return deferrals_; }
  // Times the queue was full and went to the kernel early to make room.
  uint64_t full_submits() const { return full_submits_; }

  // io_uring_submit, unless a test made submissions fail.
  int submit();
  // Tests: the next `n` submits fail with -EBUSY and submit nothing.
  void fail_submits_for_test(unsigned n) { fail_submits_ = n; }

 private:
  struct Deferred {
    unsigned n;
    std::function<void(io_uring_sqe**)> fill;
  };
  bool make_room(unsigned n);
  void take(unsigned n, io_uring_sqe** out);

  io_uring ring_{};
  bool ready_ = false;
  std::deque<Deferred> deferred_;
  uint64_t deferrals_ = 0;
  uint64_t full_submits_ = 0;
  unsigned fail_submits_ = 0;
};

}  // namespace ringmx
