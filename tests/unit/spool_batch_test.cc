// net/connection.h SpoolBatch::advance: after a short write (one writev moves
// at most about 2 GiB) the batch goes on from exactly where the kernel stopped.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "net/connection.h"

namespace ringmx {
namespace {

// What is left to write, as one string.
std::string rest(const SpoolBatch& b) {
  std::string out;
  for (size_t i = b.iov_done; i < b.iov.size(); ++i) {
    out.append(static_cast<const char*>(b.iov[i].iov_base), b.iov[i].iov_len);
  }
  return out;
}

TEST(SpoolBatch, AdvanceGoesOnWhereAShortWriteStopped) {
  std::string a = "envelope\n\n", m = "Received: x\r\nbody\r\n", t = "crc32c 0123abcd\n";
  const std::string whole = a + m + t;
  for (size_t cut = 0; cut <= whole.size(); ++cut) {
    for (size_t second = 0; cut + second <= whole.size(); second += 7) {
      SpoolBatch b;
      b.iov = {{a.data(), a.size()}, {m.data(), m.size()}, {t.data(), t.size()}};
      b.total = whole.size();
      b.advance(cut);
      EXPECT_EQ(b.written, cut);
      EXPECT_EQ(rest(b), whole.substr(cut)) << cut;
      b.advance(second);
      EXPECT_EQ(b.written, cut + second);
      EXPECT_EQ(rest(b), whole.substr(cut + second)) << cut << "+" << second;
    }
  }
}

}  // namespace
}  // namespace ringmx
