// net/ring.h: a linked chain is never split across submissions, and taking
// SQEs never fails, even when the kernel refuses submissions for a while.
#include "net/ring.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace ringmx {
namespace {

struct Cqe {
  uint64_t id;
  int res;
};

// Every completion that is ready now, in arrival order.
std::vector<Cqe> reap(Ring& r, unsigned want, int wait_ms) {
  std::vector<Cqe> got;
  while (got.size() < want) {
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{};
    ts.tv_nsec = static_cast<long>(wait_ms) * 1'000'000;
    if (io_uring_wait_cqe_timeout(&r.raw(), &cqe, &ts) != 0) break;
    got.push_back({cqe->user_data, cqe->res});
    io_uring_cqe_seen(&r.raw(), cqe);
  }
  return got;
}

void prep_nop(Ring& r, uint64_t id) {
  r.prep(1, [id](io_uring_sqe** s) {
    io_uring_prep_nop(s[0]);
    io_uring_sqe_set_data64(s[0], id);
  });
}

// The queue is one slot short of full when a two-SQE chain comes: a chain
// taken SQE by SQE (submitting when the queue is full) lands its first half
// in one submission and its second in the next, where the kernel runs it
// unlinked. The chain here is "read from an empty pipe" -> "nop": linked,
// the nop cannot complete before the read does.
TEST(Ring, ChainIsNeverSplitAcrossSubmissions) {
  Ring r;
  r.init(8, 64, 0);
  for (uint64_t i = 0; i < 7; ++i) prep_nop(r, 100 + i);
  ASSERT_EQ(io_uring_sq_space_left(&r.raw()), 1u);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  char byte = 0;
  r.prep(2, [&](io_uring_sqe** s) {
    io_uring_prep_read(s[0], p[0], &byte, 1, 0);
    s[0]->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(s[0], 1);
    io_uring_prep_nop(s[1]);
    io_uring_sqe_set_data64(s[1], 2);
  });
  ASSERT_GE(r.submit(), 0);
  // The seven nops complete; the chain waits on the pipe, nop included.
  std::vector<Cqe> first = reap(r, 9, 200);
  ASSERT_EQ(first.size(), 7u);
  for (const Cqe& c : first) EXPECT_GE(c.id, 100u);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  std::vector<Cqe> rest = reap(r, 2, 2000);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].id, 1u);
  EXPECT_EQ(rest[0].res, 1);
  EXPECT_EQ(rest[1].id, 2u);
  EXPECT_EQ(rest[1].res, 0);
  close(p[0]);
  close(p[1]);
}

// The kernel refuses submissions (as it may under memory pressure or a
// full completion queue): the queue fills, and every further request waits
// in order instead of throwing or being lost.
TEST(Ring, FullQueueDefersInOrderAndNeverThrows) {
  Ring r;
  r.init(8, 256, 0);
  r.fail_submits_for_test(1000);
  for (uint64_t i = 0; i < 40; ++i) prep_nop(r, i);
  EXPECT_EQ(io_uring_sq_space_left(&r.raw()), 0u);
  EXPECT_EQ(r.deferred(), 32u);
  EXPECT_EQ(r.deferrals(), 32u);
  EXPECT_EQ(r.run_deferred(), 32u);  // still refused: nothing moves
  r.fail_submits_for_test(0);
  std::vector<Cqe> got;
  for (int round = 0; round < 20 && got.size() < 40; ++round) {
    r.run_deferred();
    ASSERT_GE(r.submit(), 0);
    std::vector<Cqe> more = reap(r, 40, 50);
    got.insert(got.end(), more.begin(), more.end());
  }
  EXPECT_EQ(r.deferred(), 0u);
  ASSERT_EQ(got.size(), 40u);
  for (uint64_t i = 0; i < 40; ++i) EXPECT_EQ(got[i].id, i);
}

// A chain that does not fit behind deferred work waits its turn too, and is
// then prepared whole in one go.
TEST(Ring, DeferredChainStaysWhole) {
  Ring r;
  r.init(8, 64, 0);
  r.fail_submits_for_test(1);
  for (uint64_t i = 0; i < 7; ++i) prep_nop(r, i);
  r.prep(2, [](io_uring_sqe** s) {
    io_uring_prep_nop(s[0]);
    s[0]->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(s[0], 7);
    io_uring_prep_nop(s[1]);
    io_uring_sqe_set_data64(s[1], 8);
  });
  EXPECT_EQ(r.deferred(), 1u);
  prep_nop(r, 9);  // behind the chain, not before it
  EXPECT_EQ(r.deferred(), 2u);
  EXPECT_EQ(r.run_deferred(), 0u);
  // Prepared in the order asked, the chain's two halves next to each other
  // and its link flag intact.
  io_uring_sq& sq = r.raw().sq;
  std::vector<uint64_t> order;
  for (unsigned i = sq.sqe_head; i != sq.sqe_tail; ++i) {
    const io_uring_sqe& e = sq.sqes[i & sq.ring_mask];
    order.push_back(e.user_data);
    EXPECT_EQ((e.flags & IOSQE_IO_LINK) != 0, e.user_data == 7) << e.user_data;
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{7, 8, 9}));
  ASSERT_GE(r.submit(), 0);
  std::vector<Cqe> got = reap(r, 10, 500);
  ASSERT_EQ(got.size(), 10u);
  std::vector<uint64_t> ids;
  for (const Cqe& c : got) ids.push_back(c.id);
  std::sort(ids.begin(), ids.end());
  for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(ids[i], i);
}

}  // namespace
}  // namespace ringmx
