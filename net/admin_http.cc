// Admin HTTP server: a blocking poll() loop on its own thread over the listen
// socket and an eventfd that stop() signals. Each client gets a 2 s deadline to
// deliver at most 8 KiB of request head and another to take the response; then
// the socket is half-closed and drained briefly so the reply is not lost to a
// reset. Only the request line is interpreted.
#include "net/admin_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace ringmx {

namespace {

constexpr size_t kMaxRequest = 8192;
constexpr int64_t kIoTimeoutMs = 2000;
constexpr int64_t kLingerMs = 500;
constexpr size_t kLingerMaxBytes = 65536;
constexpr int64_t kBackoffMs = 100;  // after accept() runs out of resources

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

enum class Wait { ready, timeout, stopped, error };

// Waits until `fd` has `events`, `deadline` (monotonic ms) passes, or the
// wake fd fires.
Wait wait_for(int fd, short events, int wake_fd, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return Wait::timeout;
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    int n = poll(fds, 2, static_cast<int>(left));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Wait::error;
    }
    if (n == 0) return Wait::timeout;
    if (fds[1].revents != 0) return Wait::stopped;
    if ((fds[0].revents & events) != 0) return Wait::ready;
    if ((fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) return Wait::error;
  }
}

// The request head is complete once an empty line follows a line.
bool head_complete(std::string_view buf) {
  for (size_t i = buf.find('\n'); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
    if (i + 1 < buf.size() && buf[i + 1] == '\n') return true;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return true;
  }
  return false;
}

enum class ReadResult { complete, too_large, gone };

ReadResult read_request(int fd, int wake_fd, std::string& buf) {
  const int64_t deadline = now_ms() + kIoTimeoutMs;
  char chunk[2048];
  for (;;) {
    if (wait_for(fd, POLLIN, wake_fd, deadline) != Wait::ready) return ReadResult::gone;
    size_t room = std::min(sizeof chunk, kMaxRequest - buf.size());
    ssize_t n = recv(fd, chunk, room, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return ReadResult::gone;
    }
    if (n == 0) {
      // Half-closed after the request line: serve what was asked.
      return buf.find('\n') != std::string::npos ? ReadResult::complete : ReadResult::gone;
    }
    size_t scan_from = buf.size() < 2 ? 0 : buf.size() - 2;
    buf.append(chunk, static_cast<size_t>(n));
    if (head_complete(std::string_view(buf).substr(scan_from))) return ReadResult::complete;
    if (buf.size() >= kMaxRequest) return ReadResult::too_large;
  }
}

bool write_all(int fd, int wake_fd, std::string_view data) {
  const int64_t deadline = now_ms() + kIoTimeoutMs;
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    if (wait_for(fd, POLLOUT, wake_fd, deadline) != Wait::ready) return false;
  }
  return true;
}

// Half-close, then discard what the client still sends (bounded), so closing
// with unread input does not reset the connection before the reply is read.
void linger_close(int fd, int wake_fd) {
  shutdown(fd, SHUT_WR);
  const int64_t deadline = now_ms() + kLingerMs;
  char sink[4096];
  size_t drained = 0;
  while (drained < kLingerMaxBytes) {
    if (wait_for(fd, POLLIN, wake_fd, deadline) != Wait::ready) return;
    ssize_t n = recv(fd, sink, sizeof sink, 0);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return;
    }
    drained += static_cast<size_t>(n);
  }
}

struct Response {
  int status = 200;
  std::string_view content_type = "text/plain; charset=utf-8";
  std::string body;
  bool allow_header = false;
};

std::string_view reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

Response plain(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool is_http1(std::string_view v) {
  return v.size() == 8 && v.substr(0, 7) == "HTTP/1." && v[7] >= '0' && v[7] <= '9';
}

// Answers 503 when `fn` is false (or 404 when there is no handler).
Response probe(const std::function<bool()>& fn, std::string_view yes, std::string_view no) {
  if (!fn) return plain(404, "not found\n");
  return fn() ? plain(200, std::string(yes)) : plain(503, std::string(no));
}

// Routes one request head; `head_only` is set for HEAD.
Response route(std::string_view request, const AdminHttp::Handlers& h, bool& head_only) {
  std::string_view line = request.substr(0, request.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return plain(400, "bad request\n");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || target.empty() || !is_http1(version)) {
    return plain(400, "bad request\n");
  }
  if (method != "GET" && method != "HEAD") {
    Response r = plain(405, "method not allowed\n");
    r.allow_header = true;
    return r;
  }
  head_only = method == "HEAD";
  std::string_view path = target.substr(0, target.find('?'));
  try {
    if (path == "/metrics" && h.metrics) {
      Response r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = h.metrics();
      return r;
    }
    if (path == "/healthz") return probe(h.healthy, "ok\n", "unhealthy\n");
    if (path == "/readyz") return probe(h.ready, "ready\n", "not ready\n");
  } catch (...) {
    return plain(500, "internal error\n");
  }
  return plain(404, "not found\n");
}

std::string serialize(const Response& r, bool head_only) {
  std::string out;
  out.reserve(160 + (head_only ? 0 : r.body.size()));
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out.push_back(' ');
  out += reason(r.status);
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(r.body.size());
  out += "\r\nConnection: close\r\n";
  if (r.allow_header) out += "Allow: GET, HEAD\r\n";
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

}  // namespace

AdminHttp::AdminHttp(const std::string& host, uint16_t port, Handlers h) : handlers_(std::move(h)) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string where;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    addr_len = sizeof(sockaddr_in);
    where = host + ":" + std::to_string(port);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    addr_len = sizeof(sockaddr_in6);
    where = "[" + host + "]:" + std::to_string(port);
  } else {
    throw std::runtime_error("admin http: '" + host +
                             "' is not an IPv4 or IPv6 address literal (port " +
                             std::to_string(port) + ")");
  }

  auto fail = [&](const char* what) {
    int err = errno;
    if (listen_fd_ >= 0) close(listen_fd_);
    if (wake_fd_ >= 0) close(wake_fd_);
    listen_fd_ = wake_fd_ = -1;
    throw std::runtime_error("admin http: cannot " + std::string(what) + " " + where + ": " +
                             std::system_category().message(err));
  };

  listen_fd_ = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) fail("create a socket for");
  int one = 1;
  if (setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    fail("set SO_REUSEADDR on");
  }
  if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), addr_len) != 0) fail("bind");
  if (listen(listen_fd_, 16) != 0) fail("listen on");
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  if (getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    fail("read the bound port of");
  }
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) fail("create the stop eventfd for");
}

AdminHttp::~AdminHttp() {
  stop();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void AdminHttp::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void AdminHttp::stop() {
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void AdminHttp::run() noexcept {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (wait_for(wake_fd_, POLLIN, wake_fd_, now_ms() + kBackoffMs) != Wait::timeout) return;
      continue;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) {
      // POLLERR/POLLNVAL on the listener: back off rather than spin.
      if (wait_for(wake_fd_, POLLIN, wake_fd_, now_ms() + kBackoffMs) != Wait::timeout) return;
      continue;
    }
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        if (wait_for(wake_fd_, POLLIN, wake_fd_, now_ms() + kBackoffMs) != Wait::timeout) return;
      }
      continue;
    }
    try {
      serve_client(client);
    } catch (...) {
      // Out of memory building a reply: drop this client, keep serving.
    }
    close(client);
  }
}

void AdminHttp::serve_client(int fd) {
  std::string request;
  request.reserve(1024);
  Response response;
  bool head_only = false;
  switch (read_request(fd, wake_fd_, request)) {
    case ReadResult::gone: return;
    case ReadResult::too_large: response = plain(431, "request header fields too large\n"); break;
    case ReadResult::complete: response = route(request, handlers_, head_only); break;
  }
  if (write_all(fd, wake_fd_, serialize(response, head_only))) linger_close(fd, wake_fd_);
}

}  // namespace ringmx
