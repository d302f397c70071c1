// Contract: the load generator's io_uring runner against a small scripted SMTP
// server in this process (127.0.0.1, a thread per connection): the closed loop
// splits the budget into whole connections, the open loop issues on schedule,
// and whatever the server does (4xx, closing mid-transaction, silence, nobody
// listening) every issued message gets exactly one outcome, within the bounds.
#include "bench/load_runner.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/message_gen.h"

namespace ringmx::bench {
namespace {

class FakeServer {
 public:
  enum class Mode { normal, tempfail_every_third, close_at_fifth_data, silent_at_data };

  explicit FakeServer(Mode mode) : mode_(mode) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(::listen(fd_, 128), 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FakeServer() {
    ::shutdown(fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(fd_);
    std::lock_guard<std::mutex> g(mu_);
    for (int c : open_) ::shutdown(c, SHUT_RDWR);
    for (auto& t : sessions_) t.join();
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  int delivered() const { return delivered_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      ++accepted_;
      std::lock_guard<std::mutex> g(mu_);
      open_.push_back(c);
      sessions_.emplace_back([this, c] { session(c); });
    }
  }

  static void put(int c, const std::string& s) {
    (void)!::send(c, s.data(), s.size(), MSG_NOSIGNAL);
  }

  void session(int c) {
    put(c, "220 fake ESMTP\r\n");
    std::string in;
    bool data = false;
    size_t bdat_left = 0;
    bool in_bdat = false;
    bool silent = false;
    char buf[8192];
    for (;;) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      std::string out;
      bool close_now = false;
      for (;;) {
        if (silent) {  // reads and says nothing, QUIT included
          in.clear();
          break;
        }
        if (in_bdat) {
          const size_t take = std::min(bdat_left, in.size());
          in.erase(0, take);
          bdat_left -= take;
          if (bdat_left > 0) break;
          in_bdat = false;
          ++delivered_;
          out += "250 2.0.0 queued\r\n";
          continue;
        }
        if (data) {
          const size_t end = in.find("\r\n.\r\n");
          if (end == std::string::npos) break;
          in.erase(0, end + 5);
          data = false;
          const int k = ++data_ends_;
          if (mode_ == Mode::silent_at_data) silent = true;  // not a word more
          if (silent) continue;
          if (mode_ == Mode::close_at_fifth_data && k == 5) {
            close_now = true;
            break;
          }
          if (mode_ == Mode::tempfail_every_third && k % 3 == 0) {
            out += "451 4.3.0 try again\r\n";
          } else {
            ++delivered_;
            out += "250 2.0.0 queued\r\n";
          }
          continue;
        }
        const size_t nl = in.find("\r\n");
        if (nl == std::string::npos) break;
        const std::string line = in.substr(0, nl);
        in.erase(0, nl + 2);
        const std::string verb = line.substr(0, 4);
        if (verb == "EHLO") {
          out += "250-fake\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
        } else if (verb == "BDAT") {
          bdat_left = std::stoul(line.substr(5));
          in_bdat = true;
        } else if (verb == "DATA") {
          out += "354 go ahead\r\n";
          data = true;
        } else if (verb == "QUIT") {
          out += "221 bye\r\n";
          close_now = true;
          break;
        } else {
          out += "250 ok\r\n";
        }
      }
      if (!silent) put(c, out);
      if (close_now) break;
    }
    ::shutdown(c, SHUT_RDWR);
  }

  Mode mode_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> sessions_;
  std::vector<int> open_;
  std::atomic<int> accepted_{0};
  std::atomic<int> delivered_{0};
  std::atomic<int> data_ends_{0};
};

LoadConfig config(uint16_t port, uint32_t threads, uint64_t connections, uint64_t messages,
                  uint64_t per_connection) {
  LoadConfig cfg;
  auto* sa = reinterpret_cast<sockaddr_in*>(&cfg.target);
  sa->sin_family = AF_INET;
  sa->sin_port = htons(port);
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cfg.target_len = sizeof(sockaddr_in);
  cfg.threads = threads;
  cfg.connections = connections;
  cfg.messages = messages;
  cfg.per_connection = per_connection;
  cfg.duration_ns = int64_t{20} * 1'000'000'000;
  cfg.timeout_ns = int64_t{5} * 1'000'000'000;
  return cfg;
}

LoadResult run(const LoadConfig& cfg) {
  const MessagePool pool(cfg.seed, 1500, cfg.messages, cfg.client.bdat);
  std::vector<Progress> progress(cfg.threads);
  LoadControl control;
  LoadResult r = run_load(cfg, pool, progress, control);
  EXPECT_TRUE(r.errors.empty()) << (r.errors.empty() ? "" : r.errors.front());
  uint64_t sent = 0;
  for (const Progress& p : progress) {
    sent += p.sent.load();
    EXPECT_EQ(p.open.load(), 0u);  // every connection closed
  }
  EXPECT_EQ(sent, r.stats.sent);
  RunInfo info;
  info.issued = r.issued;
  EXPECT_TRUE(outcomes_consistent(info, r.stats));
  return r;
}

TEST(BenchLoadRunner, MessagePoolIsDeterministic) {
  const MessagePool data(7, 2000, 1000);
  EXPECT_EQ(data.distinct(), 64u);
  EXPECT_EQ(data.body(3).stuffed, dot_stuff(make_message(10, 2000)) + ".\r\n");
  EXPECT_EQ(data.body(3 + 64).stuffed, data.body(3).stuffed);
  EXPECT_TRUE(data.body(3).raw.empty());
  const MessagePool bdat(7, 2000, 5, true);
  EXPECT_EQ(bdat.distinct(), 5u);
  EXPECT_EQ(bdat.body(1).raw, make_message(8, 2000));
  EXPECT_TRUE(bdat.body(1).stuffed.empty());
  const MessagePool big(1, size_t{48} << 20, 10);  // no more than fits in about 64 MiB
  EXPECT_EQ(big.distinct(), 1u);
  EXPECT_EQ(big.body(5).stuffed.size() >= (size_t{48} << 20), true);
}

TEST(BenchLoadRunner, ClosedLoopSplitsTheBudgetIntoWholeConnections) {
  FakeServer srv(FakeServer::Mode::normal);
  // Per thread: 15 messages over connections of at most 4 -> 4 connections.
  const LoadResult r = run(config(srv.port(), 2, 3, 30, 4));
  EXPECT_EQ(r.issued, 30u);
  EXPECT_EQ(r.stats.sent, 30u);
  EXPECT_EQ(r.stats.ok, 30u);
  EXPECT_EQ(r.stats.conn_ready, 8u);
  EXPECT_EQ(r.stats.conn_attempts, 8u);
  EXPECT_EQ(srv.delivered(), 30);
  EXPECT_EQ(r.stats.message.count(), 30u);
  EXPECT_EQ(r.stats.connect.count(), 8u);
  EXPECT_GT(r.stats.bytes_out, 30u * 1500);
  EXPECT_GT(r.end_ns, r.start_ns);
}

TEST(BenchLoadRunner, BdatAndLockStep) {
  FakeServer srv(FakeServer::Mode::normal);
  LoadConfig cfg = config(srv.port(), 1, 2, 10, 5);
  cfg.client.bdat = true;
  LoadResult r = run(cfg);
  EXPECT_EQ(r.stats.ok, 10u);
  cfg.client.bdat = false;
  cfg.client.use_pipelining = false;
  cfg.client.recipients = {"a@x.test", "b@x.test"};
  r = run(cfg);
  EXPECT_EQ(r.stats.ok, 10u);
  EXPECT_EQ(srv.delivered(), 20);
}

TEST(BenchLoadRunner, EveryMessageHasOneOutcomeWhateverTheServerDoes) {
  {
    FakeServer srv(FakeServer::Mode::tempfail_every_third);
    const LoadResult r = run(config(srv.port(), 2, 4, 30, 3));
    EXPECT_EQ(r.stats.sent, 30u);
    EXPECT_EQ(r.stats.by_code[451], 10u);
    EXPECT_EQ(r.stats.ok, 20u);
  }
  {
    FakeServer srv(FakeServer::Mode::close_at_fifth_data);
    const LoadResult r = run(config(srv.port(), 1, 2, 20, 10));
    EXPECT_EQ(r.stats.sent, 20u);
    // The message cut off, and the one pipelined behind it.
    EXPECT_EQ(r.stats.by_kind[static_cast<size_t>(ErrorKind::closed)], 2u);
    EXPECT_EQ(r.stats.ok, 18u);
  }
}

TEST(BenchLoadRunner, SilentServerTimesOutWithinTheBounds) {
  FakeServer srv(FakeServer::Mode::silent_at_data);
  LoadConfig cfg = config(srv.port(), 1, 2, 4, 1);
  cfg.timeout_ns = 300'000'000;
  const int64_t t0 = mono_ns();
  const LoadResult r = run(cfg);
  EXPECT_LT(mono_ns() - t0, int64_t{5} * 1'000'000'000);
  EXPECT_EQ(r.stats.sent, 4u);
  EXPECT_EQ(r.stats.by_kind[static_cast<size_t>(ErrorKind::timeout)], 4u);
}

TEST(BenchLoadRunner, DurationBoundsAnOpenLoopRun) {
  FakeServer srv(FakeServer::Mode::normal);
  LoadConfig cfg = config(srv.port(), 2, 4, 100000, 20);
  cfg.rate = 200;
  cfg.duration_ns = 500'000'000;
  const LoadResult r = run(cfg);
  // 0.5 s at 200/s: messages 0..99 of the schedule.
  EXPECT_NEAR(static_cast<double>(r.stats.sent), 100.0, 2.0);
  EXPECT_EQ(r.stats.ok, r.stats.sent);
  EXPECT_LT(r.end_ns - r.start_ns, int64_t{2} * 1'000'000'000);
}

TEST(BenchLoadRunner, NobodyListening) {
  int port = 0;
  {
    FakeServer srv(FakeServer::Mode::normal);  // take a free port, then free it
    port = srv.port();
  }
  const LoadResult r = run(config(static_cast<uint16_t>(port), 2, 2, 10, 1));
  EXPECT_EQ(r.stats.sent, 10u);
  EXPECT_EQ(r.stats.by_kind[static_cast<size_t>(ErrorKind::refused)], 10u);
  EXPECT_EQ(r.stats.conn_failed, 10u);
}

TEST(BenchLoadRunner, StopRequestFinishesWhatIsInFlight) {
  FakeServer srv(FakeServer::Mode::normal);
  LoadConfig cfg = config(srv.port(), 1, 2, 1'000'000, 1000);
  const MessagePool pool(cfg.seed, 1500, 64);
  std::vector<Progress> progress(1);
  LoadControl control;
  std::thread stopper([&] {
    while (progress[0].ok.load() < 50) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    control.stop = 1;
  });
  const LoadResult r = run_load(cfg, pool, progress, control);
  stopper.join();
  EXPECT_GE(r.stats.ok, 50u);
  EXPECT_LT(r.stats.ok, 1'000'000u);
  EXPECT_EQ(r.stats.sent, r.issued);
  EXPECT_EQ(r.stats.failed, 0u);
}

sockaddr_storage address(const char* text) {
  sockaddr_storage ss{};
  if (std::string(text).find(':') != std::string::npos) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, text, &sa.sin6_addr), 1) << text;
    std::memcpy(&ss, &sa, sizeof sa);
  } else {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, text, &sa.sin_addr), 1) << text;
    std::memcpy(&ss, &sa, sizeof sa);
  }
  return ss;
}

TEST(BenchLoadRunner, DefaultThreadsLeaveHalfTheCpusToALoopbackServer) {
  for (const char* loopback :
       {"127.0.0.1", "127.1.2.3", "127.255.255.254", "::1", "::ffff:127.0.0.1"}) {
    const sockaddr_storage t = address(loopback);
    EXPECT_TRUE(is_loopback(t)) << loopback;
    EXPECT_EQ(default_threads(t, 0), 1u) << loopback;
    EXPECT_EQ(default_threads(t, 1), 1u) << loopback;
    EXPECT_EQ(default_threads(t, 2), 1u) << loopback;
    EXPECT_EQ(default_threads(t, 3), 1u) << loopback;
    EXPECT_EQ(default_threads(t, 8), 4u) << loopback;
    EXPECT_EQ(default_threads(t, 64), 32u) << loopback;
  }
  for (const char* remote : {"192.0.2.1", "10.0.0.1", "128.0.0.1", "126.255.255.255", "::2",
                             "2001:db8::1", "::ffff:192.0.2.1", "::"}) {
    const sockaddr_storage t = address(remote);
    EXPECT_FALSE(is_loopback(t)) << remote;
    EXPECT_EQ(default_threads(t, 0), 1u) << remote;  // unknown CPU count
    EXPECT_EQ(default_threads(t, 2), 2u) << remote;
    EXPECT_EQ(default_threads(t, 64), 64u) << remote;
  }
}

}  // namespace
}  // namespace ringmx::bench
