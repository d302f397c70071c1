// noop_milter: a milter that changes nothing and lets everything through
// (the Sendmail milter protocol, version 6, from the filter's side), the peer
// of bench/peers/milter_cost.py, which measures what ringmx's milter client
// costs per message.
//
//   noop_milter --listen HOST:PORT [--unix PATH] [--epoll] [--no-reply]
//               [--all-actions] [--eob continue|accept]
//
// A thread per connection with blocking reads (libmilter's classic model),
// or with --epoll one thread over every connection (an event-loop milter's,
// rspamd's for one): a busy event loop is often awake when the MTA writes to
// it, a blocked reader must be woken each time, and the waking is charged to
// the writer, so the MTA's CPU differs with the model. The OPTNEG reply: version
// min(6, the MTA's), actions 0 (--all-actions: every one offered), protocol
// flags 0, so every step is sent and answered, as a filter that wants to see
// everything does; --no-reply asks instead for every SMFIP_NR_* flag the MTA
// offers, and then only what has no such flag (EOB) is answered. Answers:
// CONTINUE to CONNECT, HELO, MAIL, RCPT, DATA, UNKNOWN, HEADER, EOH and BODY;
// CONTINUE (--eob accept: ACCEPT) to EOB; nothing to MACRO, ABORT and
// QUIT_NC; QUIT ends the connection, as does a packet it cannot read.
// Packet framing (both ways): a 4-octet big-endian length covering what
// follows, a command octet, its data. The constants are ringmx's own
// (core/milter_codec.h); the reading and the answering are this file's.
//
// stdout: "listening" once the sockets are bound; on SIGTERM or SIGINT one
// line of counters (key=value) before it exits. IPv4 only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/milter_codec.h"

namespace {

namespace mc = ringmx::milter;
using mc::Command;
using mc::Reply;

// The largest packet accepted: a BODY chunk of the largest size (1 MiB - 1)
// with its command octet, and some room.
constexpr uint32_t kMaxPacket = uint32_t{1024} * 1024 + 64;
constexpr size_t kReadSize = size_t{64} * 1024;

struct Options {
  std::string listen;
  std::string unix_path;
  bool no_reply = false;
  bool all_actions = false;
  bool eob_accept = false;
  bool epoll = false;
};

struct Counters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> replies{0};
  std::atomic<uint64_t> messages{0};  // EOBs
  std::atomic<uint64_t> errors{0};    // connections ended by a bad packet
};

Options g_options;
Counters g_counters;
volatile sig_atomic_t g_stop = 0;

extern "C" void on_signal(int /*sig*/) {
  g_stop = 1;
}

uint32_t get32(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

void put32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

void reply(std::string& out, Reply r) {
  put32(out, 1);
  out.push_back(static_cast<char>(r));
  g_counters.replies.fetch_add(1, std::memory_order_relaxed);
}

// The SMFIP_NR_* flag that makes a command answerless (0: none).
uint32_t no_reply_flag(Command c) {
  switch (c) {
    case Command::connect: return mc::proto::kNrConnect;
    case Command::helo: return mc::proto::kNrHelo;
    case Command::mail: return mc::proto::kNrMail;
    case Command::rcpt: return mc::proto::kNrRcpt;
    case Command::data: return mc::proto::kNrData;
    case Command::unknown: return mc::proto::kNrUnknown;
    case Command::header: return mc::proto::kNrHeader;
    case Command::eoh: return mc::proto::kNrEoh;
    case Command::body: return mc::proto::kNrBody;
    default: return 0;
  }
}

// One connection's state: the protocol flags agreed.
struct Session {
  uint32_t protocol = 0;
  bool negotiated = false;
};

// One packet (command octet + data): its answer appended to `out`. False
// ends the connection (QUIT, or a packet that makes no sense).
bool handle(std::string_view packet, Session& s, std::string& out) {
  const auto c = static_cast<Command>(packet[0]);
  const std::string_view data = packet.substr(1);
  switch (c) {
    case Command::optneg: {
      if (data.size() < 12) return false;
      const uint32_t version = std::min(get32(data.data()), mc::kProtocolVersion);
      const uint32_t actions = g_options.all_actions ? get32(data.data() + 4) : 0;
      const uint32_t offered = get32(data.data() + 8);
      s.protocol = g_options.no_reply ? (offered & mc::proto::kNoReplies) : 0;
      s.negotiated = true;
      put32(out, 13);
      out.push_back(static_cast<char>(Reply::optneg));
      put32(out, version);
      put32(out, actions);
      put32(out, s.protocol);
      return true;
    }
    case Command::macro:
    case Command::abort:
    case Command::quit_nc: return s.negotiated;
    case Command::quit: return false;
    case Command::eob:
      if (!s.negotiated) return false;
      g_counters.messages.fetch_add(1, std::memory_order_relaxed);
      reply(out, g_options.eob_accept ? Reply::accept : Reply::cont);
      return true;
    case Command::connect:
    case Command::helo:
    case Command::mail:
    case Command::rcpt:
    case Command::data:
    case Command::unknown:
    case Command::header:
    case Command::eoh:
    case Command::body:
      if (!s.negotiated) return false;
      if ((s.protocol & no_reply_flag(c)) == 0) reply(out, Reply::cont);
      return true;
  }
  return false;  // not a command of protocol 6
}

// One connection's bytes both ways.
struct Conn {
  int fd = -1;
  Session session;
  std::vector<char> in = std::vector<char>(kReadSize);
  size_t have = 0;
  std::string out;        // answers not yet written
  bool want_out = false;  // --epoll: EPOLLOUT asked for (out was not all written)
};

// Room for the next read at the end of c.in.
std::span<char> read_room(Conn& c) {
  if (c.in.size() - c.have < kReadSize) c.in.resize(c.have + kReadSize);
  return {c.in.data() + c.have, c.in.size() - c.have};
}

// After a read of n octets: the complete packets answered (into c.out),
// the rest kept. False: the connection ends (QUIT, or a bad packet).
bool take(Conn& c, size_t n) {
  c.have += n;
  size_t at = 0;
  bool open = true;
  while (open && c.have - at >= 4) {
    const uint32_t len = get32(c.in.data() + at);
    if (len == 0 || len > kMaxPacket) {
      g_counters.errors.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (c.have - at - 4 < len) break;
    g_counters.packets.fetch_add(1, std::memory_order_relaxed);
    const std::string_view packet(c.in.data() + at + 4, len);
    at += 4 + size_t{len};
    if (!handle(packet, c.session, c.out)) {
      if (static_cast<Command>(packet[0]) != Command::quit) {
        g_counters.errors.fetch_add(1, std::memory_order_relaxed);
      }
      open = false;
    }
  }
  std::memmove(c.in.data(), c.in.data() + at, c.have - at);
  c.have -= at;
  if (c.in.size() > 2 * kReadSize && c.have < kReadSize) c.in.resize(2 * kReadSize);
  return open;
}

// Writes what it can of c.out: false on an error (EAGAIN is not one).
bool flush(Conn& c) {
  size_t done = 0;
  while (done < c.out.size()) {
    const ssize_t n = ::write(c.fd, c.out.data() + done, c.out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  c.out.erase(0, done);
  return true;
}

// Thread per connection: blocking reads, until QUIT, EOF or an error. The
// complete packets of each read are answered together, in one write.
void serve(int fd) {
  Conn c;
  c.fd = fd;
  for (;;) {
    const std::span<char> room = read_room(c);
    const ssize_t n = ::read(fd, room.data(), room.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const bool open = take(c, static_cast<size_t>(n));
    if (!flush(c) || !open) break;
  }
  ::close(fd);
}

void accepted(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails on unix: harmless
  g_counters.connections.fetch_add(1, std::memory_order_relaxed);
}

// --epoll: one thread, level-triggered epoll over the listeners and every
// connection (non-blocking), until SIGTERM or SIGINT.
void run_epoll(const std::vector<int>& listeners) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  for (const int fd : listeners) {
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  std::unordered_map<int, std::unique_ptr<Conn>> conns;
  std::array<epoll_event, 64> events{};
  while (g_stop == 0) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 200);
    for (int i = 0; i < n; ++i) {
      const epoll_event& e = events[static_cast<size_t>(i)];
      const int fd = e.data.fd;
      if (std::find(listeners.begin(), listeners.end(), fd) != listeners.end()) {
        for (;;) {
          const int cfd = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (cfd < 0) break;
          accepted(cfd);
          auto c = std::make_unique<Conn>();
          c->fd = cfd;
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = cfd;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
          conns[cfd] = std::move(c);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      bool open = true;
      if ((e.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
        const std::span<char> room = read_room(c);
        const ssize_t r = ::read(fd, room.data(), room.size());
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
          open = false;
        } else if (r > 0) {
          open = take(c, static_cast<size_t>(r));
        }
      }
      if (!flush(c)) open = false;
      if (!open) {
        ::close(fd);  // also leaves the epoll set
        conns.erase(it);
        continue;
      }
      if (c.want_out != !c.out.empty()) {
        c.want_out = !c.out.empty();
        epoll_event cev{};
        cev.events = c.want_out ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
        cev.data.fd = fd;
        ::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
      }
    }
  }
  for (auto& [fd, c] : conns) ::close(fd);
  ::close(ep);
}

int listen_tcp(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  const std::string host = text.substr(0, colon);
  const int port = std::atoi(text.c_str() + colon + 1);
  if (port <= 0 || port > 65535 || ::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    return -1;
  }
  a.sin_port = htons(static_cast<uint16_t>(port));
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int listen_unix(const std::string& path) {
  sockaddr_un a{};
  if (path.empty() || path.size() >= sizeof a.sun_path) return -1;
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int usage() {
  std::fputs(
      "usage: noop_milter --listen HOST:PORT [--unix PATH] [--epoll] [--no-reply]\n"
      "                   [--all-actions] [--eob continue|accept]\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--listen" && has_value) {
      g_options.listen = args[++i];
    } else if (a == "--unix" && has_value) {
      g_options.unix_path = args[++i];
    } else if (a == "--no-reply") {
      g_options.no_reply = true;
    } else if (a == "--epoll") {
      g_options.epoll = true;
    } else if (a == "--all-actions") {
      g_options.all_actions = true;
    } else if (a == "--eob" && has_value &&
               (args[i + 1] == "continue" || args[i + 1] == "accept")) {
      g_options.eob_accept = args[++i] == "accept";
    } else {
      return usage();
    }
  }
  if (g_options.listen.empty() && g_options.unix_path.empty()) return usage();

  std::vector<int> listeners;
  if (!g_options.listen.empty()) {
    const int fd = listen_tcp(g_options.listen);
    if (fd < 0) {
      std::fprintf(stderr, "noop_milter: cannot listen on %s: %s\n", g_options.listen.c_str(),
                   std::strerror(errno));
      return 1;
    }
    listeners.push_back(fd);
  }
  if (!g_options.unix_path.empty()) {
    const int fd = listen_unix(g_options.unix_path);
    if (fd < 0) {
      std::fprintf(stderr, "noop_milter: cannot listen on %s: %s\n", g_options.unix_path.c_str(),
                   std::strerror(errno));
      return 1;
    }
    listeners.push_back(fd);
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::puts("listening");
  std::fflush(stdout);

  if (g_options.epoll) {
    for (const int fd : listeners) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    run_epoll(listeners);
  } else {
    std::vector<pollfd> polled;
    polled.reserve(listeners.size());
    for (const int fd : listeners) polled.push_back({fd, POLLIN, 0});
    while (g_stop == 0) {
      const int n = ::poll(polled.data(), polled.size(), 200);
      if (n <= 0) continue;  // timeout, or EINTR from the signal
      for (const pollfd& p : polled) {
        if ((p.revents & POLLIN) == 0) continue;
        const int fd = ::accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        accepted(fd);
        try {
          std::thread(serve, fd).detach();
        } catch (const std::system_error&) {  // no thread to be had: this connection goes
          ::close(fd);
        }
      }
    }
  }

  if (!g_options.unix_path.empty()) ::unlink(g_options.unix_path.c_str());
  std::printf("connections=%llu packets=%llu replies=%llu messages=%llu errors=%llu\n",
              static_cast<unsigned long long>(g_counters.connections.load()),
              static_cast<unsigned long long>(g_counters.packets.load()),
              static_cast<unsigned long long>(g_counters.replies.load()),
              static_cast<unsigned long long>(g_counters.messages.load()),
              static_cast<unsigned long long>(g_counters.errors.load()));
  std::fflush(stdout);
  // Threads still serving connections end with the process.
  std::_Exit(0);
}
