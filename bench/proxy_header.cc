// Contract: see proxy_header.h. Addresses are printed with inet_ntop (v1) and
// copied as the kernel keeps them, already in network order (v2).
#include "bench/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace ringmx::bench {

namespace {

constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                   '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr char kV2ProxyCommand = 0x21;  // version 2 (high nibble), PROXY (low nibble)
constexpr char kV2TcpIpv4 = 0x11;       // AF_INET (high nibble), STREAM (low nibble)
constexpr char kV2TcpIpv6 = 0x21;       // AF_INET6, STREAM

const sockaddr_in& as_v4(const sockaddr_storage& ss) {
  return *reinterpret_cast<const sockaddr_in*>(&ss);
}

const sockaddr_in6& as_v6(const sockaddr_storage& ss) {
  return *reinterpret_cast<const sockaddr_in6*>(&ss);
}

bool same_family(const sockaddr_storage& src, const sockaddr_storage& dst) {
  return src.ss_family == dst.ss_family && (src.ss_family == AF_INET || src.ss_family == AF_INET6);
}

std::string address_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  const void* addr = ss.ss_family == AF_INET ? static_cast<const void*>(&as_v4(ss).sin_addr)
                                             : static_cast<const void*>(&as_v6(ss).sin6_addr);
  if (inet_ntop(ss.ss_family, addr, buf, sizeof buf) == nullptr) return {};
  return buf;
}

uint16_t port_of(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET ? as_v4(ss).sin_port : as_v6(ss).sin6_port);
}

void append_raw(std::string& out, const void* p, size_t n) {
  out.append(static_cast<const char*>(p), n);
}

}  // namespace

bool parse_proxy_version(std::string_view text, ProxyVersion& out) {
  if (text == "v1" || text == "1") {
    out = ProxyVersion::v1;
    return true;
  }
  if (text == "v2" || text == "2") {
    out = ProxyVersion::v2;
    return true;
  }
  return false;
}

std::string proxy_header_v1(const sockaddr_storage& src, const sockaddr_storage& dst) {
  if (!same_family(src, dst)) return {};
  std::string out = src.ss_family == AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ";
  out += address_text(src);
  out += ' ';
  out += address_text(dst);
  out += ' ';
  out += std::to_string(port_of(src));
  out += ' ';
  out += std::to_string(port_of(dst));
  out += "\r\n";
  return out;
}

std::string proxy_header_v2(const sockaddr_storage& src, const sockaddr_storage& dst) {
  if (!same_family(src, dst)) return {};
  const bool v4 = src.ss_family == AF_INET;
  std::string out(kV2Signature, sizeof kV2Signature);
  out += kV2ProxyCommand;
  out += v4 ? kV2TcpIpv4 : kV2TcpIpv6;
  const uint16_t length = v4 ? 4 + 4 + 2 + 2 : 16 + 16 + 2 + 2;
  out += static_cast<char>(length >> 8);
  out += static_cast<char>(length & 0xff);
  if (v4) {
    append_raw(out, &as_v4(src).sin_addr, 4);
    append_raw(out, &as_v4(dst).sin_addr, 4);
    append_raw(out, &as_v4(src).sin_port, 2);
    append_raw(out, &as_v4(dst).sin_port, 2);
  } else {
    append_raw(out, &as_v6(src).sin6_addr, 16);
    append_raw(out, &as_v6(dst).sin6_addr, 16);
    append_raw(out, &as_v6(src).sin6_port, 2);
    append_raw(out, &as_v6(dst).sin6_port, 2);
  }
  return out;
}

std::string proxy_header(ProxyVersion version, const sockaddr_storage& src,
                         const sockaddr_storage& dst) {
  switch (version) {
    case ProxyVersion::v1: return proxy_header_v1(src, dst);
    case ProxyVersion::v2: return proxy_header_v2(src, dst);
    case ProxyVersion::none: break;
  }
  return {};
}

}  // namespace ringmx::bench
