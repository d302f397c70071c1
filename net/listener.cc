// Listening socket set-up (start-up only; blocking calls are fine here), and
// the text form of socket addresses.
#include "net/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ringmx {

int open_listener(const std::string& host, uint16_t port, int backlog) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
      inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  } else if (auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
             inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    family = AF_INET6;
  } else {
    throw std::runtime_error("listen address " + host + ": not a numeric IPv4 or IPv6 address");
  }
  const std::string where =
      (family == AF_INET6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket for " + where + ": " + std::strerror(errno));
  const int one = 1;
  auto fail = [&](const char* what) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(std::string(what) + " " + where + ": " + std::strerror(e));
  };
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) fail("SO_REUSEADDR on");
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) fail("SO_REUSEPORT on");
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) fail("TCP_NODELAY on");
  if (family == AF_INET6 && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) {
    fail("IPV6_V6ONLY on");
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) fail("cannot bind");
  if (::listen(fd, backlog) < 0) fail("cannot listen on");
  return fd;
}

void ensure_port_free(const std::string& host, uint16_t port, int wait_ms) {
  if (port == 0) return;
  sockaddr_storage ss{};
  socklen_t len = sizeof(sockaddr_in);
  int family = AF_INET;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
  } else if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    family = AF_INET6;
  } else {
    return;  // open_listener reports the bad address
  }
  for (int waited = 0;; waited += 100) {
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // TIME_WAIT is no owner
    if (family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    const int r = ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
    const int e = errno;
    ::close(fd);
    if (r == 0) return;
    if (e != EADDRINUSE || waited >= wait_ms) {
      const std::string where =
          (family == AF_INET6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
      throw std::runtime_error("cannot listen on " + where + ": " + std::strerror(e) +
                               (e == EADDRINUSE ? " (is another ringmx or MTA running?)" : ""));
    }
    ::usleep(100 * 1000);
  }
}

uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return 0;
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

std::string ip_text(const sockaddr_storage& ss, uint16_t& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  port = 0;
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    port = ntohs(a->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    }
    return buf;
  }
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    port = ntohs(a->sin_port);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return buf;
  }
  return "unknown";
}

}  // namespace ringmx
