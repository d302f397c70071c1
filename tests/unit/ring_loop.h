// Unit tests that drive a Ring the way a shard does: submit, wait a moment
// for completions, hand each tagged one to its Completion.
#pragma once

#include <liburing.h>

#include <cstdint>

#include "net/ring.h"

namespace ringmx::test {

// Submits what waits, waits up to `wait_ns` for a completion, and hands every
// completion that is there to its Completion (completion_tag); the others
// (user_data 0: ignored operations) are skipped.
inline void pass_completions(Ring& ring, long long wait_ns) {
  ring.run_deferred();
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{0, wait_ns};
  io_uring_submit_and_wait_timeout(&ring.raw(), &cqe, 1, &ts, nullptr);
  unsigned head = 0;
  unsigned n = 0;
  io_uring_for_each_cqe(&ring.raw(), head, cqe) {
    const uint64_t data = cqe->user_data;
    ++n;
    if ((data & 15U) != 15U) continue;
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the completion tag.
    reinterpret_cast<Completion*>(data & ~uint64_t{15})->complete(cqe->res, cqe->flags);
  }
  io_uring_cq_advance(&ring.raw(), n);
}

}  // namespace ringmx::test
