#include "bench/message_gen.h"

#include <gtest/gtest.h>

#include "core/data_decoder.h"

namespace ringmx {
namespace {

TEST(MessageGen, DeterministicExactSizeAndCrlf) {
  for (size_t size : {512u, 513u, 1024u, 4097u, 100000u}) {
    std::string a = bench::make_message(5, size);
    EXPECT_EQ(a, bench::make_message(5, size));
    EXPECT_NE(a, bench::make_message(6, size));
    EXPECT_EQ(a.size(), size);
    EXPECT_EQ(a.substr(a.size() - 2), "\r\n");
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] == '\n') {
        ASSERT_EQ(a[i - 1], '\r') << i;
      }
      if (a[i] == '\r') {
        ASSERT_EQ(a[i + 1], '\n') << i;
      }
    }
  }
}

TEST(MessageGen, DotStuffingRoundTripsThroughTheDecoder) {
  std::string m = bench::make_message(9, 200000);
  ASSERT_NE(m.find("\r\n."), std::string::npos);  // the generator does make dot lines
  std::string wire = bench::dot_stuff(m) + ".\r\n";
  EXPECT_EQ(bench::dot_stuff(".a\r\nb\r\n..c\r\n"), "..a\r\nb\r\n...c\r\n");
  DataDecoder d;
  d.reset(BareLinePolicy::reject, 1 << 30);
  ByteBuffer out;
  auto r = d.decode(wire, out);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.consumed, wire.size());
  EXPECT_EQ(out.view(), m);
}

}  // namespace
}  // namespace ringmx
