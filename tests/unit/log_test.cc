#include "net/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace ringmx {
namespace {

// Reads from `fd` until `want` has arrived or 5 s passed.
std::string read_until(int fd, const std::string& want) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got.find(want) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() { EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0); }
  ~Pipe() {
    close(fds[0]);
    close(fds[1]);
  }
};

// A quiet logger sleeps until a line comes: it wakes once per burst, never on
// a timer, and every line still gets written.
TEST(Logger, SleepsUntilALineArrives) {
  Pipe p;
  Logger logger(LogLevel::info, p.fds[1]);
  LogRing& ring = logger.make_ring();
  logger.start();
  for (int round = 1; round <= 3; ++round) {
    // Quiet for a while: no wake-ups at all.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const uint64_t before = logger.wakeups();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(logger.wakeups(), before) << "woke with nothing to log";
    const std::string line = "line " + std::to_string(round) + "\n";
    EXPECT_TRUE(ring.push(line));
    EXPECT_NE(read_until(p.fds[0], line).find(line), std::string::npos);
    EXPECT_EQ(logger.wakeups(), before + 1);
  }
  logger.stop();
}

// Lines pushed from several threads while the logger goes to sleep and
// wakes are all written (no lost wake-up), and stop() returns.
TEST(Logger, NoLineIsLeftBehindByARacingSleep) {
  Pipe p;
  Logger logger(LogLevel::info, p.fds[1]);
  LogRing& a = logger.make_ring();
  LogRing& b = logger.make_ring();
  logger.start();
  std::string expect_last;
  for (int i = 0; i < 60; ++i) {
    const std::string la = "a" + std::to_string(i) + "\n";
    const std::string lb = "b" + std::to_string(i) + "\n";
    std::thread ta([&] { a.push(la); });
    std::thread tb([&] { b.push(lb); });
    ta.join();
    tb.join();
    const std::string got = read_until(p.fds[0], i % 2 ? la : lb);
    ASSERT_NE(got.find(i % 2 ? la : lb), std::string::npos) << i;
    if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  logger.stop();
}

std::string rfc3339(int64_t unix_ms) {
  std::string s;
  append_rfc3339_ms(s, unix_ms);
  return s;
}

TEST(LogTime, Rfc3339WithMilliseconds) {
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339(1), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(rfc3339(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(rfc3339(951782400000), "2000-02-29T00:00:00.000Z");  // a 400-year leap day
  EXPECT_EQ(rfc3339(1709251199999), "2024-02-29T23:59:59.999Z");
  EXPECT_EQ(rfc3339(1709251200000), "2024-03-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339(4107542400000), "2100-03-01T00:00:00.000Z");  // 2100 is no leap year
  EXPECT_EQ(rfc3339(1796454591123), "2026-12-05T07:09:51.123Z");
  EXPECT_EQ(rfc3339(253402300799999), "9999-12-31T23:59:59.999Z");
}

// Restores the process-wide format after a test.
struct FormatScope {
  explicit FormatScope(LogFormat f) { set_log_format(f); }
  ~FormatScope() { set_log_format(LogFormat::logfmt); }
};

TEST(LogLineFormat, Logfmt) {
  FormatScope scope(LogFormat::logfmt);
  LogLine l(LogLevel::warn, "reply", 1796454591123);
  l.kv("client", "192.0.2.1").kv("code", uint64_t{550}).kv("text", "Error: no \"such\" user");
  l.kv("arg", "TO:<a=b@x>").kv("empty", "").kv("ctl", std::string_view("a\r\nb\x01", 5));
  EXPECT_EQ(l.finish(),
            "ts=2026-12-05T07:09:51.123Z level=warn event=reply client=192.0.2.1 code=550 "
            "text=\"Error: no \\\"such\\\" user\" arg=\"TO:<a=b@x>\" empty=\"\" "
            "ctl=\"a\\r\\nb\\x01\"\n");
  EXPECT_EQ(l.finish(), l.finish());  // closed once
}

TEST(LogLineFormat, JsonOneObjectPerLine) {
  FormatScope scope(LogFormat::json);
  LogLine l(LogLevel::info, "transaction", 1796454591123);
  l.kv("qid", "38I515SMG0BL30001").kv("size", uint64_t{1234}).kv("delta", int64_t{-5});
  l.kv("text", "quote \" backslash \\ tab \t nl \n cr \r bell \x07 del \x7f");
  l.kv("utf8", "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x93\xa7");
  l.kv("bad", std::string_view("\xff\xc3(\xe2\x82 \xed\xa0\x80 \xc0\xaf", 12));
  EXPECT_EQ(l.finish(),
            "{\"ts\":\"2026-12-05T07:09:51.123Z\",\"level\":\"info\",\"event\":\"transaction\","
            "\"qid\":\"38I515SMG0BL30001\",\"size\":1234,\"delta\":-5,"
            "\"text\":\"quote \\\" backslash \\\\ tab \\t nl \\n cr \\r bell \\u0007 del "
            "\\u007f\","
            "\"utf8\":\"gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x93\xa7\","
            "\"bad\":\"\\u00ff\\u00c3(\\u00e2\\u0082 \\u00ed\\u00a0\\u0080 \\u00c0\\u00af\"}\n");
}

}  // namespace
}  // namespace ringmx
