#include "core/socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstddef>
#include <cstring>

namespace ringmx {
namespace {

bool parse_port(std::string_view s, uint16_t& port) {
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v == 0 || v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

bool literal(std::string_view host, bool v6_only, std::string& ip) {
  if (host == "localhost") host = v6_only ? "::1" : "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string h(host);
  unsigned char buf[16];
  if (!v6_only && inet_pton(AF_INET, h.c_str(), buf) == 1) {
    ip = h;
    return true;
  }
  if (inet_pton(AF_INET6, h.c_str(), buf) == 1) {
    ip = h;
    return true;
  }
  return false;
}

}  // namespace

bool parse_socket_address(std::string_view text, SocketAddress& out, std::string& error) {
  SocketAddress a;
  std::string_view rest = text;
  std::string_view scheme;
  if (const size_t colon = text.find(':'); !text.starts_with('/') && colon != text.npos) {
    scheme = text.substr(0, colon);
    rest = text.substr(colon + 1);
  }
  if (scheme.empty() || scheme == "unix" || scheme == "local") {
    if (!rest.starts_with('/')) {
      error = "must be unix:/absolute/path, inet:host:port or inet6:[addr]:port";
      return false;
    }
    if (rest.size() > 107) {  // sun_path holds 108 octets with the NUL
      error = "a socket path is at most 107 octets";
      return false;
    }
    a.kind = SocketAddress::Kind::unix_path;
    a.path = std::string(rest);
    out = std::move(a);
    return true;
  }
  if (scheme != "inet" && scheme != "inet6") {
    error = "unknown scheme \"" + std::string(scheme) + "\" (unix, inet or inet6)";
    return false;
  }
  std::string_view host, port;
  if (const size_t at = rest.find('@'); at != rest.npos) {  // port@host
    port = rest.substr(0, at);
    host = rest.substr(at + 1);
  } else if (const size_t colon = rest.rfind(':'); colon != rest.npos) {  // host:port
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  } else {
    error = "needs a port: inet:host:port";
    return false;
  }
  if (!parse_port(port, a.port)) {
    error = "port must be 1-65535";
    return false;
  }
  if (!literal(host, scheme == "inet6", a.ip)) {
    error = "host must be an address literal or localhost";
    return false;
  }
  a.kind = SocketAddress::Kind::inet;
  out = std::move(a);
  return true;
}

bool to_sockaddr(const SocketAddress& a, sockaddr_storage& out, socklen_t& len, int& family) {
  out = sockaddr_storage{};
  if (a.kind == SocketAddress::Kind::unix_path) {
    auto* sun = reinterpret_cast<sockaddr_un*>(&out);
    if (a.path.empty() || a.path.size() >= sizeof sun->sun_path) return false;
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, a.path.data(), a.path.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.path.size() + 1);
    family = AF_UNIX;
    return true;
  }
  if (a.ip.find(':') == std::string::npos) {
    auto* in = reinterpret_cast<sockaddr_in*>(&out);
    in->sin_family = AF_INET;
    in->sin_port = htons(a.port);
    if (::inet_pton(AF_INET, a.ip.c_str(), &in->sin_addr) != 1) return false;
    len = sizeof(sockaddr_in);
    family = AF_INET;
    return true;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(a.port);
  if (::inet_pton(AF_INET6, a.ip.c_str(), &in6->sin6_addr) != 1) return false;
  len = sizeof(sockaddr_in6);
  family = AF_INET6;
  return true;
}

}  // namespace ringmx
