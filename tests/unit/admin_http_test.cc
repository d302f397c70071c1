// The admin HTTP endpoint over real loopback sockets: routes, status codes,
// headers, and that silent or oversized clients cannot wedge the server.
#include "net/admin_http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace ringmx {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// A blocking loopback client; every read gives up after `timeout_s` seconds.
int connect_to(uint16_t port, int timeout_s = 5) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{};
  tv.tv_sec = timeout_s;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads until the server closes; `closed` tells whether that happened cleanly
// (rather than by timeout or reset).
std::string read_all(int fd, bool* closed = nullptr) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (closed != nullptr) *closed = n == 0;
    return out;
  }
}

struct Reply {
  std::string status_line;
  std::string headers;  // every header line, each ending in \r\n
  std::string body;
  bool closed = false;
};

Reply parse(const std::string& raw, bool closed) {
  Reply r;
  r.closed = closed;
  size_t eol = raw.find("\r\n");
  size_t end = raw.find("\r\n\r\n");
  if (eol == std::string::npos || end == std::string::npos) {
    r.status_line = raw;
    return r;
  }
  r.status_line = raw.substr(0, eol);
  r.headers = raw.substr(eol + 2, end + 2 - (eol + 2));
  r.body = raw.substr(end + 4);
  return r;
}

Reply roundtrip(uint16_t port, std::string_view request) {
  int fd = connect_to(port);
  if (fd < 0) return {};
  bool closed = false;
  std::string raw;
  if (send_all(fd, request)) raw = read_all(fd, &closed);
  close(fd);
  return parse(raw, closed);
}

Reply get(uint16_t port, std::string_view path) {
  return roundtrip(port, "GET " + std::string(path) + " HTTP/1.1\r\nHost: x\r\n\r\n");
}

bool has_header(const Reply& r, std::string_view line) {
  return r.headers.find(std::string(line) + "\r\n") != std::string::npos;
}

class AdminHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AdminHttp::Handlers h;
    h.metrics = [this] { return metrics_text_; };
    h.healthy = [this] { return healthy_.load(); };
    h.ready = [this] { return ready_.load(); };
    server_ = std::make_unique<AdminHttp>("127.0.0.1", 0, std::move(h));
    server_->start();
  }

  uint16_t port() const { return server_->port(); }

  std::string metrics_text_ = "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n";
  std::atomic<bool> healthy_{true};
  std::atomic<bool> ready_{false};
  std::unique_ptr<AdminHttp> server_;
};

TEST_F(AdminHttpTest, BindsAnEphemeralPort) {
  EXPECT_NE(port(), 0);
}

TEST_F(AdminHttpTest, ServesMetrics) {
  Reply r = get(port(), "/metrics");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_TRUE(has_header(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8")) << r.headers;
  EXPECT_TRUE(has_header(r, "Content-Length: " + std::to_string(metrics_text_.size())));
  EXPECT_TRUE(has_header(r, "Connection: close"));
  EXPECT_EQ(r.body, metrics_text_);
  EXPECT_TRUE(r.closed);
}

TEST_F(AdminHttpTest, LargeMetricsBodyArrivesWhole) {
  metrics_text_.clear();
  for (int i = 0; i < 20000; ++i) metrics_text_ += "x_total{i=\"" + std::to_string(i) + "\"} 1\n";
  Reply r = get(port(), "/metrics");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body.size(), metrics_text_.size());
  EXPECT_TRUE(r.body == metrics_text_);
}

TEST_F(AdminHttpTest, QueryStringIsIgnoredAndHttp10Works) {
  Reply r = roundtrip(port(), "GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, metrics_text_);
  // Bare LF line endings are tolerated.
  r = roundtrip(port(), "GET /healthz HTTP/1.1\nHost: x\n\n");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
}

TEST(AdminHttp, QueueRequestsGetTheirTargetWithItsQuery) {
  std::mutex mu;
  std::vector<std::string> seen;
  AdminHttp::Handlers h;
  h.queue = [&](std::string_view method, std::string_view target) {
    std::lock_guard<std::mutex> g(mu);
    seen.push_back(std::string(method) + " " + std::string(target));
    return std::pair<int, std::string>(200, "{}\n");
  };
  AdminHttp server("127.0.0.1", 0, std::move(h));
  server.start();
  EXPECT_EQ(get(server.port(), "/queue?limit=2&after=AB.1").status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(roundtrip(server.port(), "POST /queue/flush HTTP/1.1\r\nHost: x\r\n\r\n").body, "{}\n");
  EXPECT_EQ(get(server.port(), "/queuex").status_line, "HTTP/1.1 404 Not Found");
  std::lock_guard<std::mutex> g(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"GET /queue?limit=2&after=AB.1", "POST /queue/flush"}));
}

TEST_F(AdminHttpTest, RequestSplitAcrossWrites) {
  int fd = connect_to(port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET /heal"));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ASSERT_TRUE(send_all(fd, "thz HTTP/1.1\r\nHost: x\r"));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ASSERT_TRUE(send_all(fd, "\n\r\n"));
  bool closed = false;
  Reply r = parse(read_all(fd, &closed), closed);
  close(fd);
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, "ok\n");
}

TEST_F(AdminHttpTest, HealthzFollowsHandler) {
  Reply r = get(port(), "/healthz");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_TRUE(has_header(r, "Content-Type: text/plain; charset=utf-8"));
  EXPECT_TRUE(has_header(r, "Content-Length: 3"));
  EXPECT_EQ(r.body, "ok\n");
  healthy_ = false;
  r = get(port(), "/healthz");
  EXPECT_EQ(r.status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_EQ(r.body, "unhealthy\n");
}

TEST_F(AdminHttpTest, ReadyzFollowsHandler) {
  Reply r = get(port(), "/readyz");
  EXPECT_EQ(r.status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_EQ(r.body, "not ready\n");
  ready_ = true;
  r = get(port(), "/readyz");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, "ready\n");
}

TEST_F(AdminHttpTest, UnknownPathIs404) {
  for (const char* path : {"/", "/metricsx", "/metrics/", "/HEALTHZ", "*"}) {
    Reply r = get(port(), path);
    EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found") << path;
    EXPECT_TRUE(has_header(r, "Connection: close"));
    EXPECT_TRUE(has_header(r, "Content-Length: " + std::to_string(r.body.size())));
  }
}

TEST_F(AdminHttpTest, NonGetIs405) {
  for (const char* method : {"POST", "PUT", "DELETE", "get"}) {
    Reply r = roundtrip(
        port(), std::string(method) + " /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 405 Method Not Allowed") << method;
    EXPECT_TRUE(has_header(r, "Allow: GET, HEAD"));
    EXPECT_TRUE(has_header(r, "Connection: close"));
  }
}

TEST_F(AdminHttpTest, HeadHasHeadersButNoBody) {
  Reply r = roundtrip(port(), "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_TRUE(has_header(r, "Content-Length: " + std::to_string(metrics_text_.size())));
  EXPECT_EQ(r.body, "");
  EXPECT_TRUE(r.closed);
}

TEST_F(AdminHttpTest, MalformedRequestLineIs400) {
  for (const char* req :
       {"garbage\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/2.0\r\n\r\n", "GET /metrics HTTP/1.1 x\r\n\r\n", "\r\n\r\n"}) {
    Reply r = roundtrip(port(), req);
    EXPECT_EQ(r.status_line, "HTTP/1.1 400 Bad Request") << req;
    EXPECT_TRUE(r.closed);
  }
}

TEST_F(AdminHttpTest, OversizedRequestIsRefusedAndClosed) {
  std::string huge = "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(20000, 'a');
  Reply r = roundtrip(port(), huge);
  EXPECT_EQ(r.status_line, "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_TRUE(has_header(r, "Connection: close"));
  EXPECT_TRUE(r.closed);
  // A request line longer than the cap, with no line end at all.
  r = roundtrip(port(), "GET /" + std::string(9000, 'b'));
  EXPECT_EQ(r.status_line, "HTTP/1.1 431 Request Header Fields Too Large");
  // Still serving.
  EXPECT_EQ(get(port(), "/healthz").status_line, "HTTP/1.1 200 OK");
}

TEST_F(AdminHttpTest, ClientClosingEarlyIsHarmless) {
  int fd = connect_to(port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET /met"));
  close(fd);
  fd = connect_to(port());
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(get(port(), "/healthz").status_line, "HTTP/1.1 200 OK");
}

// A silent client holds only its own slot: others are served meanwhile, and
// it is dropped, without a reply, at its request deadline.
TEST_F(AdminHttpTest, SilentClientDoesNotDelayOthersAndTimesOut) {
  auto t0 = Clock::now();
  int silent = connect_to(port());
  ASSERT_GE(silent, 0);
  ASSERT_TRUE(send_all(silent, "GET /heal"));  // half a request line, then nothing
  Reply r = get(port(), "/healthz");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_LT(ms_since(t0), 1500);  // not queued behind the silent client's 2 s
  bool closed = false;
  EXPECT_EQ(read_all(silent, &closed), "");  // dropped without a reply
  EXPECT_TRUE(closed);
  EXPECT_GE(ms_since(t0), 1500);  // ... once its 2 s were up
  close(silent);
}

// Slow clients by the hundred, past the connection limit: every new client
// takes the slot of the one that has been reading longest, so a health check
// and a scrape are still answered, and each slow one is closed in turn.
TEST(AdminHttp, SlowClientsPastTheLimitCannotKeepAHealthCheckOut) {
  AdminHttp::Handlers h;
  h.healthy = [] { return true; };
  h.metrics = [] { return std::string(100000, 'm'); };
  AdminHttp::Limits limits;
  limits.max_connections = 16;
  limits.request_timeout_ms = 30000;
  AdminHttp server("127.0.0.1", 0, std::move(h), limits);
  server.start();
  std::vector<int> slow;
  for (int i = 0; i < 200; ++i) {
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "GET /metrics HTTP/1.1\r\nHost: sl"));
    slow.push_back(fd);
  }
  auto t0 = Clock::now();
  EXPECT_EQ(get(server.port(), "/healthz").status_line, "HTTP/1.1 200 OK");
  const Reply m = get(server.port(), "/metrics");
  EXPECT_EQ(m.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(m.body.size(), 100000u);
  EXPECT_LT(ms_since(t0), 10000);  // never their 30 s
  // All but the newest few were closed to make room, without a reply (a
  // reset: their unread request is thrown away with them).
  int closed_count = 0;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int fd : slow) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1) {
      char c;
      const ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) ++closed_count;
    }
    close(fd);
  }
  EXPECT_GE(closed_count, 200 - 16);
  server.stop();
}

TEST_F(AdminHttpTest, StopJoinsPromptlyEvenMidRequest) {
  int silent = connect_to(port());
  ASSERT_GE(silent, 0);
  ASSERT_TRUE(send_all(silent, "GET /metrics HTTP/1.1\r\n"));  // head never finished
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto t0 = Clock::now();
  server_->stop();
  EXPECT_LT(ms_since(t0), 500);
  server_->stop();  // idempotent
  uint16_t p = port();
  server_.reset();
  close(silent);
  EXPECT_LT(connect_to(p), 0);  // the listener is gone
}

TEST(AdminHttp, HandlerFailuresAnd404ForMissingHandlers) {
  AdminHttp::Handlers h;
  h.metrics = []() -> std::string { throw std::runtime_error("boom"); };
  h.healthy = nullptr;
  h.ready = [] { return true; };
  AdminHttp server("127.0.0.1", 0, std::move(h));
  server.start();
  EXPECT_EQ(get(server.port(), "/metrics").status_line, "HTTP/1.1 500 Internal Server Error");
  EXPECT_EQ(get(server.port(), "/healthz").status_line, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(get(server.port(), "/readyz").status_line, "HTTP/1.1 200 OK");
}

TEST(AdminHttp, DestructorWithoutStart) {
  AdminHttp server("127.0.0.1", 0, {});
  EXPECT_NE(server.port(), 0);
}

TEST(AdminHttp, BindFailureNamesTheAddress) {
  AdminHttp first("127.0.0.1", 0, {});
  std::string where = "127.0.0.1:" + std::to_string(first.port());
  try {
    AdminHttp second("127.0.0.1", first.port(), {});
    FAIL() << "second bind on " << where << " succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
  }
  EXPECT_THROW(AdminHttp("localhost", 9100, {}), std::runtime_error);
  EXPECT_THROW(AdminHttp("256.0.0.1", 9100, {}), std::runtime_error);
  try {
    AdminHttp bad("not an address", 9100, {});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not an address"), std::string::npos) << e.what();
  }
}

TEST(AdminHttp, Ipv6Loopback) {
  std::unique_ptr<AdminHttp> server;
  try {
    server = std::make_unique<AdminHttp>("::1", 0, AdminHttp::Handlers{});
  } catch (const std::runtime_error& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  server->start();
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  timeval tv{};
  tv.tv_sec = 5;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(server->port());
  addr.sin6_addr = in6addr_loopback;
  ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_TRUE(send_all(fd, "GET /nope HTTP/1.1\r\n\r\n"));
  Reply r = parse(read_all(fd), true);
  close(fd);
  EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found");
}

}  // namespace
}  // namespace ringmx
