// DATA decoder: against a plain reference model on random bodies, at every
// split point, and on the SMTP smuggling sequences.
#include "core/data_decoder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace ringmx {
namespace {

struct Decoded {
  std::string body;
  size_t consumed = 0;
  bool done = false;
  bool bare_cr = false;
  bool bare_lf = false;
  bool overflow = false;
};

// Reference: find the first CRLF.CRLF (the body starts at a line start), cut
// the body there, remove the first dot of every CRLF-delimited line.
Decoded reference(const std::string& in) {
  Decoded d;
  std::string s = "\r\n" + in;
  size_t k = s.find("\r\n.\r\n");
  std::string raw;
  if (k == std::string::npos) {
    raw = in;
    d.consumed = in.size();
  } else {
    d.done = true;
    raw = s.substr(2, k);  // includes the last line's CRLF
    d.consumed = k + 3;    // "\r\n.\r\n" minus the virtual leading CRLF
  }
  bool line_start = true;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (line_start && c == '.') {
      line_start = false;
      continue;
    }
    line_start = false;
    if (c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') {
      d.body += "\r\n";
      ++i;
      line_start = true;
      continue;
    }
    if (c == '\r' && (k != std::string::npos || i + 1 < raw.size())) d.bare_cr = true;
    if (c == '\n') d.bare_lf = true;
    d.body.push_back(c);
  }
  return d;
}

Decoded run(const std::string& in, const std::vector<size_t>& cuts,
            BareLinePolicy policy = BareLinePolicy::reject, uint64_t max = 1 << 30) {
  DataDecoder dec;
  dec.reset(policy, max);
  ByteBuffer out;
  Decoded d;
  size_t pos = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(in.size());
  for (size_t end : ends) {
    if (end < pos) continue;
    auto r = dec.decode(std::string_view(in).substr(pos, end - pos), out);
    d.consumed += r.consumed;
    pos = end;
    if (r.done) {
      d.done = true;
      break;
    }
  }
  d.body.assign(out.view());
  d.bare_cr = dec.saw_bare_cr();
  d.bare_lf = dec.saw_bare_lf();
  d.overflow = dec.overflow();
  return d;
}

void expect_same(const Decoded& want, const Decoded& got, const std::string& in) {
  EXPECT_EQ(want.done, got.done) << testing::PrintToString(in);
  EXPECT_EQ(want.consumed, got.consumed) << testing::PrintToString(in);
  if (want.done) {
    // Before the end, the decoder may still hold a CR or a dot it cannot judge yet.
    EXPECT_EQ(want.body, got.body) << testing::PrintToString(in);
    EXPECT_EQ(want.bare_cr, got.bare_cr) << testing::PrintToString(in);
    EXPECT_EQ(want.bare_lf, got.bare_lf) << testing::PrintToString(in);
  }
}

TEST(DataDecoder, SimpleBody) {
  auto d = run("Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", {});
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "Subject: x\r\n\r\nhello\r\n");
  EXPECT_EQ(d.consumed, std::string("Subject: x\r\n\r\nhello\r\n.\r\n").size());
}

TEST(DataDecoder, EmptyBody) {
  auto d = run(".\r\n", {});
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "");
  EXPECT_EQ(d.consumed, 3u);
}

TEST(DataDecoder, Unstuffing) {
  auto d = run("..\r\n...x\r\n.y\r\na.b\r\n.\r\n", {});
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, ".\r\n..x\r\ny\r\na.b\r\n");
  EXPECT_FALSE(d.bare_cr);
  EXPECT_FALSE(d.bare_lf);
}

TEST(DataDecoder, SmugglingSequencesNeverEndData) {
  const char* seqs[] = {"a\n.\nb", "a\r.\rb", "a\n.\r\nb", "a\r\n.\nb", "a\r\n.\rb", "a\n.\r\nb"};
  for (const char* s : seqs) {
    std::string in = std::string(s) + "\r\nMAIL FROM:<x@y>\r\n";
    auto d = run(in, {});
    EXPECT_FALSE(d.done) << s;
    EXPECT_EQ(d.consumed, in.size()) << s;
    // At the real end the bare ending is known.
    auto full = run(std::string(s) + "\r\n.\r\n", {});
    EXPECT_TRUE(full.done) << s;
    EXPECT_TRUE(full.bare_cr || full.bare_lf) << s;
  }
}

TEST(DataDecoder, NormalisePolicy) {
  auto d = run("a\nb\rc\r\n.x\n\r\n.\r\n", {}, BareLinePolicy::normalise);
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "a\r\nb\r\nc\r\nx\r\n\r\n");
  EXPECT_TRUE(d.bare_cr);
  EXPECT_TRUE(d.bare_lf);
  // A normalised bare LF never becomes a line start for the end line.
  auto s = run("a\n.\nb\r\n.\r\n", {}, BareLinePolicy::normalise);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.body, "a\r\n.\r\nb\r\n");
}

TEST(DataDecoder, OverflowCountsButStopsStoring) {
  auto d = run("0123456789\r\n0123456789\r\n.\r\n", {}, BareLinePolicy::reject, 15);
  EXPECT_TRUE(d.done);
  EXPECT_TRUE(d.overflow);
  EXPECT_EQ(d.body.size(), 15u);
}

TEST(DataDecoder, EverySplitPointOfTwoPieces) {
  const std::string in =
      "From: a@b\r\nSubject: dots\r\n\r\n.leading\r\n..two\r\nmid.dle\r\n.\rodd\r\n"
      "bare\nlf\r\n\r\n.\r\nNEXT\r\n";
  const Decoded want = reference(in);
  ASSERT_TRUE(want.done);
  for (size_t cut = 0; cut <= in.size(); ++cut) expect_same(want, run(in, {cut}), in);
}

TEST(DataDecoder, OneByteFeeds) {
  const std::string in = "x\r\n..\r\n.\r.\n\r\n.y\r\n.\r\n";
  std::vector<size_t> cuts;
  for (size_t i = 1; i < in.size(); ++i) cuts.push_back(i);
  expect_same(reference(in), run(in, cuts), in);
}

TEST(DataDecoder, RandomBodiesMatchReference) {
  std::mt19937 rng(12345);
  const char alphabet[] = {'a', 'b', '.', '.', '\r', '\r', '\n', '\n', ' '};
  for (int iter = 0; iter < 20000; ++iter) {
    std::string in;
    size_t len = rng() % 120;
    for (size_t i = 0; i < len; ++i) in.push_back(alphabet[rng() % sizeof alphabet]);
    if (rng() % 2) in += "\r\n.\r\n";
    if (rng() % 4 == 0) in += std::string(rng() % 70, 'z');  // exercise the SIMD path
    if (rng() % 2) in += "\r\n.\r\nafter";
    const Decoded want = reference(in);
    std::vector<size_t> cuts;
    size_t pieces = rng() % 4;
    for (size_t i = 0; i < pieces; ++i) cuts.push_back(in.empty() ? 0 : rng() % in.size());
    std::sort(cuts.begin(), cuts.end());
    expect_same(want, run(in, cuts), in);
    if (HasFailure()) return;
  }
}

TEST(DataDecoder, ScanFindsEachEventKind) {
  std::string base(64, 'x');
  for (size_t pos = 1; pos < 60; ++pos) {
    for (const char* ev : {"\r?", "\n", "\r\n."}) {
      std::string s = base;
      std::string e = ev;
      if (e == "\r?") e = "\ry";
      s.replace(pos, e.size(), e);
      EXPECT_EQ(scan_body_event(s.data(), 1, s.size()), pos) << pos << " " << ev;
    }
  }
  std::string clean;
  for (int i = 0; i < 10; ++i) clean += "line of text\r\n";
  EXPECT_EQ(scan_body_event(clean.data(), 1, clean.size()), clean.size() - 2);
}

}  // namespace
}  // namespace ringmx
