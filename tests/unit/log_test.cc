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

}  // namespace
}  // namespace ringmx
