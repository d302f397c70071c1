// Admin HTTP server: one epoll loop on its own thread over the listen
// socket, an eventfd that stop() signals, and up to max_connections clients,
// each a small state machine (read the head, write the reply, half-close and
// drain briefly so the reply is not lost to a reset). No client can hold
// another up: a slow one only holds its own slot, until its request deadline;
// when every slot is taken, a new client takes the slot of the one that has
// been reading its request longest. Only the request line is interpreted.
#include "net/admin_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace ringmx {

namespace {

constexpr size_t kMaxRequest = 8192;
constexpr int64_t kWriteTimeoutMs = 5000;  // for the client to take more of the reply
constexpr int64_t kLingerMs = 500;
constexpr size_t kLingerMaxBytes = 65536;
constexpr int64_t kBackoffMs = 100;  // after accept() runs out of resources

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// The request head is complete once an empty line follows a line.
bool head_complete(std::string_view buf) {
  for (size_t i = buf.find('\n'); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
    if (i + 1 < buf.size() && buf[i + 1] == '\n') return true;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return true;
  }
  return false;
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
  std::string_view path = target.substr(0, target.find('?'));
  const bool queue_path = path == "/queue" || path.starts_with("/queue/");
  if (method != "GET" && method != "HEAD" && !(method == "POST" && queue_path)) {
    Response r = plain(405, "method not allowed\n");
    r.allow_header = true;
    return r;
  }
  head_only = method == "HEAD";
  try {
    if (queue_path && h.queue) {
      auto [status, body] = h.queue(method == "HEAD" ? "GET" : method, target);
      Response r;
      r.status = status;
      r.content_type = "application/json";
      r.body = std::move(body);
      return r;
    }
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

AdminHttp::AdminHttp(const std::string& host, uint16_t port, Handlers h, Limits limits)
    : handlers_(std::move(h)), limits_(limits) {
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
  if (listen(listen_fd_, 128) != 0) fail("listen on");
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

// One admin client: its socket and where it is in the exchange.
struct AdminHttp::Client {
  enum class Stage : uint8_t { reading, writing, lingering };
  int fd = -1;
  Stage stage = Stage::reading;
  std::string buf;  // the request head, then the reply
  size_t sent = 0;
  size_t drained = 0;
  int64_t deadline = 0;
};

namespace {

void watch(int ep, int fd, uint32_t events, void* tag, int op) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = tag;
  epoll_ctl(ep, op, fd, &ev);
}

}  // namespace

void AdminHttp::run() noexcept {
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return;
  watch(ep, listen_fd_, EPOLLIN, &listen_fd_, EPOLL_CTL_ADD);
  watch(ep, wake_fd_, EPOLLIN, &wake_fd_, EPOLL_CTL_ADD);
  std::list<Client> clients;  // in accept order: the front has waited longest
  int64_t accept_resume = 0;
  auto drop = [&](std::list<Client>::iterator it) {
    if (it->fd >= 0) close(it->fd);  // also takes it out of the epoll set
    return clients.erase(it);
  };
  epoll_event events[64];
  for (;;) {
    int64_t now = now_ms();
    int64_t next = accept_resume ? accept_resume : -1;
    for (const Client& c : clients) {
      if (next < 0 || c.deadline < next) next = c.deadline;
    }
    const int timeout = next < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, next - now));
    const int n = epoll_wait(ep, events, 64, timeout);
    if (n < 0 && errno != EINTR) break;
    now = now_ms();
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &wake_fd_) {
        for (auto it = clients.begin(); it != clients.end();) it = drop(it);
        close(ep);
        return;
      }
      if (tag == &listen_fd_) {
        accept_clients(ep, clients, now, accept_resume);
        continue;
      }
      auto* c = static_cast<Client*>(tag);
      if (c->fd < 0) continue;  // evicted by an accept in this batch
      if (!step(ep, *c, now)) {
        for (auto it = clients.begin(); it != clients.end(); ++it) {
          if (&*it == c) {
            drop(it);
            break;
          }
        }
      }
    }
    for (auto it = clients.begin(); it != clients.end();) {
      it = it->deadline <= now ? drop(it) : std::next(it);
    }
    if (accept_resume && now >= accept_resume) {
      accept_resume = 0;
      watch(ep, listen_fd_, EPOLLIN, &listen_fd_, EPOLL_CTL_ADD);
    }
  }
  for (auto it = clients.begin(); it != clients.end();) it = drop(it);
  close(ep);
}

void AdminHttp::accept_clients(int ep, std::list<Client>& clients, int64_t now,
                               int64_t& accept_resume) {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop watching the listener for a moment.
        epoll_ctl(ep, EPOLL_CTL_DEL, listen_fd_, nullptr);
        accept_resume = now + kBackoffMs;
      }
      return;
    }
    const auto live =
        std::count_if(clients.begin(), clients.end(), [](const Client& c) { return c.fd >= 0; });
    if (static_cast<uint64_t>(live) >= limits_.max_connections) {
      // Full: the client that has been reading its request longest gives
      // way, so a prompt one (a health check, a scrape) is always served.
      auto oldest = std::find_if(clients.begin(), clients.end(), [](const Client& c) {
        return c.fd >= 0 && c.stage == Client::Stage::reading;
      });
      if (oldest == clients.end()) {
        close(fd);  // every slot is sending a reply: those finish first
        continue;
      }
      // Closed now; its record goes after this batch of events, which may
      // still name it.
      close(oldest->fd);
      oldest->fd = -1;
      oldest->deadline = 0;
    }
    Client& c = clients.emplace_back();
    c.fd = fd;
    c.deadline = now + limits_.request_timeout_ms;
    c.buf.reserve(1024);
    watch(ep, fd, EPOLLIN | EPOLLRDHUP, &c, EPOLL_CTL_ADD);
  }
}

// Moves one client on as far as its socket allows; false when it is done.
bool AdminHttp::step(int ep, Client& c, int64_t now) {
  if (c.stage == Client::Stage::reading) {
    char chunk[2048];
    bool eof = false;
    bool complete = false;
    while (!complete && !eof && c.buf.size() < kMaxRequest) {
      const size_t room = std::min(sizeof chunk, kMaxRequest - c.buf.size());
      const ssize_t n = recv(c.fd, chunk, room, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;  // more later
        return false;
      }
      if (n == 0) {
        eof = true;
        break;
      }
      const size_t scan_from = c.buf.size() < 2 ? 0 : c.buf.size() - 2;
      c.buf.append(chunk, static_cast<size_t>(n));
      complete = head_complete(std::string_view(c.buf).substr(scan_from));
    }
    Response response;
    bool head_only = false;
    if (complete) {
      response = route(c.buf, handlers_, head_only);
    } else if (eof) {
      // Half-closed after the request line: serve what was asked.
      if (c.buf.find('\n') == std::string::npos) return false;
      response = route(c.buf, handlers_, head_only);
    } else {
      response = plain(431, "request header fields too large\n");
    }
    try {
      c.buf = serialize(response, head_only);
    } catch (...) {
      return false;  // out of memory building the reply: drop this client
    }
    c.stage = Client::Stage::writing;
    c.sent = 0;
    c.deadline = now + kWriteTimeoutMs;
    watch(ep, c.fd, EPOLLOUT, &c, EPOLL_CTL_MOD);
  }
  if (c.stage == Client::Stage::writing) {
    while (c.sent < c.buf.size()) {
      const ssize_t n = send(c.fd, c.buf.data() + c.sent, c.buf.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        return false;
      }
      c.sent += static_cast<size_t>(n);
      c.deadline = now + kWriteTimeoutMs;  // progress
    }
    // Half-close, then discard what the client still sends (bounded), so
    // closing with unread input does not reset the connection before the
    // reply is read.
    std::string().swap(c.buf);
    shutdown(c.fd, SHUT_WR);
    c.stage = Client::Stage::lingering;
    c.deadline = now + kLingerMs;
    watch(ep, c.fd, EPOLLIN | EPOLLRDHUP, &c, EPOLL_CTL_MOD);
  }
  char sink[4096];
  while (c.drained < kLingerMaxBytes) {
    const ssize_t n = recv(c.fd, sink, sizeof sink, 0);
    if (n == 0) return false;
    if (n < 0) return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK;
    c.drained += static_cast<size_t>(n);
  }
  return false;
}

}  // namespace ringmx
