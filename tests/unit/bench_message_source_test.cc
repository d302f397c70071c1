#include "bench/message_source.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/load_runner.h"
#include "bench/message_gen.h"

namespace ringmx::bench {
namespace {

SizeMix parse_ok(const std::string& text) {
  SizeMix mix;
  std::string err;
  EXPECT_TRUE(parse_size_mix(text, mix, err)) << text << ": " << err;
  return mix;
}

std::string parse_error(const std::string& text) {
  SizeMix mix;
  std::string err;
  EXPECT_FALSE(parse_size_mix(text, mix, err)) << text;
  EXPECT_FALSE(err.empty()) << text;
  return err;
}

TEST(BenchMessageSource, ParsesOneSizeWithOrWithoutSuffix) {
  for (const auto& [text, want] :
       std::vector<std::pair<std::string, size_t>>{{"512", 512},
                                                   {"1024", 1024},
                                                   {"1k", 1024},
                                                   {"4K", 4096},
                                                   {"1m", 1048576},
                                                   {"2M", 2097152},
                                                   {"256m", size_t{256} << 20},
                                                   {" 3000 ", 3000},
                                                   {"2k:7", 2048}}) {
    const SizeMix mix = parse_ok(text);
    ASSERT_EQ(mix.classes.size(), 1u) << text;
    EXPECT_EQ(mix.classes[0].size, want) << text;
    EXPECT_EQ(mix.describe(), std::to_string(want));
    EXPECT_DOUBLE_EQ(mix.mean_size(), static_cast<double>(want));
  }
}

TEST(BenchMessageSource, ParsesAWeightedList) {
  const SizeMix mix = parse_ok("1k:70,10k:25,1m:5");
  ASSERT_EQ(mix.classes.size(), 3u);
  EXPECT_EQ(mix.classes[0].size, 1024u);
  EXPECT_EQ(mix.classes[0].weight, 70u);
  EXPECT_EQ(mix.classes[1].size, 10240u);
  EXPECT_EQ(mix.classes[1].weight, 25u);
  EXPECT_EQ(mix.classes[2].size, 1048576u);
  EXPECT_EQ(mix.classes[2].weight, 5u);
  EXPECT_EQ(mix.total_weight(), 100u);
  EXPECT_DOUBLE_EQ(mix.mean_size(), (1024.0 * 70 + 10240.0 * 25 + 1048576.0 * 5) / 100);
  EXPECT_EQ(mix.describe(), "1024:70,10240:25,1048576:5");
  EXPECT_EQ(parse_ok("600:1, 2k:1").classes.size(), 2u);
}

TEST(BenchMessageSource, RefusesBadSizes) {
  for (const char* text : {"",
                           " ",
                           "abc",
                           "1k:0",
                           "1k:",
                           "1k:x",
                           "1k:-1",
                           ":5",
                           "1k:70,",
                           ",1k:70",
                           "1k:70,,2k:1",
                           "511",
                           "100",
                           "0",
                           "1",
                           "0k",
                           "-1k",
                           "1.5k",
                           "1g",
                           "1kk",
                           "257m",
                           "268435457",
                           "99999999999999999999",
                           "1k:70,2k",
                           "1k,2k",
                           "1k:1,1024:2",
                           "1k:1000001",
                           "200m:1,100m:1"}) {
    parse_error(text);
  }
  EXPECT_NE(parse_error("1k:0").find("weight"), std::string::npos);
  EXPECT_NE(parse_error("100").find("512"), std::string::npos);
  EXPECT_NE(parse_error("").find("empty"), std::string::npos);
  size_t size = 0;
  std::string err;
  EXPECT_TRUE(parse_size("64k", size, err));
  EXPECT_EQ(size, 65536u);
  EXPECT_FALSE(parse_size("64x", size, err));
}

TEST(BenchMessageSource, DrawsAreDeterministicAndFollowTheWeights) {
  const SizeMix mix = parse_ok("1k:70,10k:25,1m:5");
  constexpr uint64_t kDraws = 100000;
  std::vector<uint64_t> counts(3);
  std::vector<size_t> first;
  for (uint64_t id = 0; id < kDraws; ++id) {
    const size_t c = draw_size_class(mix, 42, id);
    ASSERT_LT(c, 3u);
    ASSERT_EQ(c, draw_size_class(mix, 42, id));  // same seed, same draw
    ++counts[c];
    if (id < 200) first.push_back(c);
  }
  // Weights 70/25/5: each share within 1.5 points (the expected spread is ~0.15).
  EXPECT_NEAR(static_cast<double>(counts[0]) / kDraws, 0.70, 0.015);
  EXPECT_NEAR(static_cast<double>(counts[1]) / kDraws, 0.25, 0.015);
  EXPECT_NEAR(static_cast<double>(counts[2]) / kDraws, 0.05, 0.015);
  // Another seed, another sequence.
  std::vector<size_t> other;
  for (uint64_t id = 0; id < 200; ++id) other.push_back(draw_size_class(mix, 43, id));
  EXPECT_NE(first, other);
  // One size: always class 0.
  const SizeMix one = parse_ok("2k");
  for (uint64_t id = 0; id < 100; ++id) EXPECT_EQ(draw_size_class(one, 42, id), 0u);
}

TEST(BenchMessageSource, PoolDrawsSizesFromTheMix) {
  const SizeMix mix = parse_ok("600:1,2k:3");
  const MessagePool pool(5, mix, 100000);
  EXPECT_EQ(pool.distinct_in_class(0), 64u);
  EXPECT_EQ(pool.distinct_in_class(1), 64u);
  EXPECT_EQ(pool.distinct(), 128u);
  const MessagePool again(5, mix, 100000);
  uint64_t big = 0;
  for (uint64_t id = 0; id < 4000; ++id) {
    const MessageBody b = pool.body(id);
    ASSERT_TRUE(b.raw.empty());
    const std::string raw =
        make_message(5 + 64 * pool.size_class(id) + id % 64, pool.size_class(id) == 0 ? 600 : 2048);
    ASSERT_EQ(b.stuffed, dot_stuff(raw) + ".\r\n") << id;
    ASSERT_EQ(again.body(id).stuffed, b.stuffed);
    if (raw.size() == 2048) ++big;
  }
  EXPECT_NEAR(static_cast<double>(big) / 4000, 0.75, 0.05);
  // Bounded: a class gets its share of about 64 MiB (at least one body).
  const MessagePool large(1, parse_ok("1m:1,2m:1"), 1000, true);
  EXPECT_EQ(large.distinct_in_class(0), 32u);
  EXPECT_EQ(large.distinct_in_class(1), 16u);
  // No more distinct bodies than messages.
  EXPECT_EQ(MessagePool(1, parse_ok("1k:1,2k:1"), 3).distinct(), 6u);
}

TEST(BenchMessageSource, NormalisesLineEnds) {
  EXPECT_EQ(normalize_crlf("a\nb\n"), "a\r\nb\r\n");
  EXPECT_EQ(normalize_crlf("a\r\nb\r\n"), "a\r\nb\r\n");
  EXPECT_EQ(normalize_crlf("a\r\nb"), "a\r\nb\r\n");
  EXPECT_EQ(normalize_crlf("a\rb\n\n"), "a\r\nb\r\n\r\n");
  EXPECT_EQ(normalize_crlf("a\n\r\nb\r"), "a\r\n\r\nb\r\n");
  EXPECT_EQ(normalize_crlf(""), "");
}

class BenchEmlDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ringmx-bench-eml-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& bytes) {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    out << bytes;
  }
  std::string dir_;
};

TEST_F(BenchEmlDir, LoadsInNameOrderNormalisedAndStuffsForData) {
  write("b.eml", "Subject: lf\n\nline one\n.dot line\n..two dots\nlast\n");
  write("a.eml", "Subject: crlf\r\n\r\nbody\r\n.\r\n");
  write("c.EML", "Subject: no final newline\n\nend");
  write("notes.txt", "not a message\n");
  std::filesystem::create_directory(dir_ + "/d.eml");  // a directory: skipped
  std::vector<EmlFile> files;
  std::string err;
  ASSERT_TRUE(load_eml_dir(dir_, files, err)) << err;
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].name, "a.eml");
  EXPECT_EQ(files[1].name, "b.eml");
  EXPECT_EQ(files[2].name, "c.EML");
  EXPECT_EQ(files[0].message, "Subject: crlf\r\n\r\nbody\r\n.\r\n");
  EXPECT_EQ(files[1].message, "Subject: lf\r\n\r\nline one\r\n.dot line\r\n..two dots\r\nlast\r\n");
  EXPECT_EQ(files[2].message, "Subject: no final newline\r\n\r\nend\r\n");

  std::vector<std::string> messages;
  for (const EmlFile& f : files) messages.push_back(f.message);
  const MessagePool data(messages, false);
  EXPECT_EQ(data.distinct(), 3u);
  EXPECT_EQ(data.body(0).stuffed, "Subject: crlf\r\n\r\nbody\r\n..\r\n.\r\n");
  EXPECT_EQ(data.body(4).stuffed,
            "Subject: lf\r\n\r\nline one\r\n..dot line\r\n...two dots\r\nlast\r\n.\r\n");
  EXPECT_EQ(data.body(5).stuffed, "Subject: no final newline\r\n\r\nend\r\n.\r\n");
  for (uint64_t id = 0; id < 6; ++id) {
    const std::string_view s = data.body(id).stuffed;
    EXPECT_TRUE(s.ends_with("\r\n.\r\n")) << id;
    EXPECT_TRUE(data.body(id).raw.empty());
    EXPECT_EQ(s, data.body(id + 3).stuffed);  // cycled in name order
  }
  const MessagePool bdat(messages, true);
  for (uint64_t id = 0; id < 6; ++id) {
    EXPECT_EQ(bdat.body(id).raw, files[id % 3].message);
    EXPECT_TRUE(bdat.body(id).stuffed.empty());
    EXPECT_EQ(bdat.body(id).raw.find('\n'), bdat.body(id).raw.find("\r\n") + 1);
  }
}

TEST_F(BenchEmlDir, RefusesAnEmptyDirectoryAndBadFiles) {
  std::vector<EmlFile> files;
  std::string err;
  EXPECT_FALSE(load_eml_dir(dir_ + "/missing", files, err));
  EXPECT_FALSE(err.empty());
  write("only.txt", "x\n");
  EXPECT_FALSE(load_eml_dir(dir_, files, err));
  EXPECT_NE(err.find("no .eml file"), std::string::npos) << err;
  write("empty.eml", "");
  EXPECT_FALSE(load_eml_dir(dir_, files, err));
  EXPECT_NE(err.find("empty"), std::string::npos) << err;
  std::filesystem::remove(dir_ + "/empty.eml");
  // Over 64 MiB: refused from its size, without reading it (a sparse file).
  const std::string big = dir_ + "/big.eml";
  write("big.eml", "x");
  std::filesystem::resize_file(big, kMaxEmlFileBytes + 1);
  EXPECT_FALSE(load_eml_dir(dir_, files, err));
  EXPECT_NE(err.find("larger than 64 MiB"), std::string::npos) << err;
  std::filesystem::resize_file(big, 10);
  EXPECT_TRUE(load_eml_dir(dir_, files, err)) << err;
  EXPECT_EQ(files.size(), 1u);
}

}  // namespace
}  // namespace ringmx::bench
