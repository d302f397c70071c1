// SQE reservation for linked chains and deferral instead of failure (ring.h).
#include "net/ring.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ringmx {

Ring::~Ring() {
  exit();
}

void Ring::exit() {
  deferred_.clear();
  if (ready_) io_uring_queue_exit(&ring_);
  ready_ = false;
}

void Ring::init(unsigned sq_entries, unsigned cq_entries, unsigned flags) {
  io_uring_params p{};
  p.flags = flags;
  if (cq_entries) {
    p.flags |= IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
  }
  const int r = io_uring_queue_init_params(sq_entries, &ring_, &p);
  if (r < 0) throw std::runtime_error(std::string("io_uring_queue_init: ") + std::strerror(-r));
  ready_ = true;
}

int Ring::submit() {
  if (fail_submits_ > 0) {
    --fail_submits_;
    return -EBUSY;
  }
  return io_uring_submit(&ring_);
}

bool Ring::make_room(unsigned n) {
  if (io_uring_sq_space_left(&ring_) >= n) return true;
  // Everything prepared so far goes to the kernel first, so the chain that
  // follows starts a submission of its own and is never split.
  ++full_submits_;
  submit();
  return io_uring_sq_space_left(&ring_) >= n;
}

void Ring::take(unsigned n, io_uring_sqe** out) {
  // make_room() made sure all n are there: none of these returns null.
  for (unsigned i = 0; i < n; ++i) out[i] = io_uring_get_sqe(&ring_);
}

size_t Ring::run_deferred() {
  while (!deferred_.empty()) {
    Deferred& d = deferred_.front();
    if (!make_room(d.n)) break;
    io_uring_sqe* s[kMaxChain] = {};
    take(d.n, s);
    d.fill(s);
    deferred_.pop_front();
  }
  return deferred_.size();
}

}  // namespace ringmx
