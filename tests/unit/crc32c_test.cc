// CRC32C: the published check values (RFC 3720 B.4 and the CRC catalogue's
// "123456789"), piecewise summing, and the SSE4.2 path against the table on
// random lengths and alignments.
#include "pipeline/crc32c.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ringmx {
namespace {

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t);

struct Impl {
  const char* name;
  ExtendFn fn;
};

std::vector<Impl> impls() {
  std::vector<Impl> v = {{"dispatch", crc32c_extend}, {"table", crc32c_extend_table}};
  if (crc32c_hardware_available()) v.push_back({"sse4.2", crc32c_extend_hardware});
  return v;
}

uint32_t sum(ExtendFn fn, const std::vector<uint8_t>& data) {
  return fn(0, data.data(), data.size());
}

TEST(Crc32c, KnownVectors) {
  std::vector<uint8_t> zeros(32, 0x00);
  std::vector<uint8_t> ones(32, 0xFF);
  std::vector<uint8_t> up(32);
  std::vector<uint8_t> down(32);
  for (size_t i = 0; i < 32; ++i) {
    up[i] = static_cast<uint8_t>(i);
    down[i] = static_cast<uint8_t>(31 - i);
  }
  const std::string check = "123456789";
  for (const Impl& impl : impls()) {
    SCOPED_TRACE(impl.name);
    EXPECT_EQ(impl.fn(0, check.data(), check.size()), 0xE3069283u);
    EXPECT_EQ(sum(impl.fn, zeros), 0x8A9136AAu);
    EXPECT_EQ(sum(impl.fn, ones), 0x62A8AB43u);
    EXPECT_EQ(sum(impl.fn, up), 0x46DD794Eu);
    EXPECT_EQ(sum(impl.fn, down), 0x113FDB5Cu);
    EXPECT_EQ(impl.fn(0, nullptr, 0), 0u);
    EXPECT_EQ(impl.fn(0x12345678, nullptr, 0), 0x12345678u);
  }
  EXPECT_EQ(crc32c(check), 0xE3069283u);
}

TEST(Crc32c, PiecesSumLikeTheWhole) {
  std::mt19937 rng(7);
  std::vector<uint8_t> data(3000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (const Impl& impl : impls()) {
    SCOPED_TRACE(impl.name);
    const uint32_t whole = sum(impl.fn, data);
    for (size_t cut :
         {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{1500}, data.size()}) {
      const uint32_t first = impl.fn(0, data.data(), cut);
      EXPECT_EQ(impl.fn(first, data.data() + cut, data.size() - cut), whole) << cut;
    }
  }
}

TEST(Crc32c, HardwareMatchesTableOnRandomLengthsAndAlignments) {
  if (!crc32c_hardware_available()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937_64 rng(42);
  std::vector<uint8_t> buf(70000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (int i = 0; i < 2000; ++i) {
    const size_t offset = rng() % 16;
    const size_t len = i < 200 ? static_cast<size_t>(i) : rng() % (buf.size() - 16);
    const auto seed = static_cast<uint32_t>(rng());
    const uint8_t* p = buf.data() + offset;
    ASSERT_EQ(crc32c_extend_hardware(seed, p, len), crc32c_extend_table(seed, p, len))
        << "offset " << offset << " length " << len;
  }
}

// Combining the CRCs of two parts gives the CRC of the whole, for every
// split point and lengths from empty to past a few blocks.
TEST(Crc32c, CombineEqualsTheWhole) {
  std::mt19937 rng(7);
  std::string data(70000, '\0');
  for (char& ch : data) ch = static_cast<char>(rng());
  for (size_t len : {size_t{0}, size_t{1}, size_t{9}, size_t{100}, size_t{4096}, size_t{70000}}) {
    const std::string_view whole(data.data(), len);
    for (size_t cut : {size_t{0}, len / 3, len / 2, len}) {
      const uint32_t a = crc32c(whole.substr(0, cut));
      const uint32_t b = crc32c(whole.substr(cut));
      EXPECT_EQ(crc32c_combine(a, b, len - cut), crc32c(whole)) << len << " cut at " << cut;
    }
  }
  // The check value in two pieces.
  EXPECT_EQ(crc32c_combine(crc32c("1234"), crc32c("56789"), 5), 0xE3069283u);
}

}  // namespace
}  // namespace ringmx
