// Contract: the PROXY protocol header (haproxy's proxy-protocol.txt) a load
// generator sends as the very first bytes of a connection, so that a server
// behind a "proxy" sees the client address the header names. Only what a
// client needs: the PROXY command for TCP over IPv4 or IPv6, no TLVs.
//   v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (TCP6 for IPv6), text.
//   v2: the 12-byte signature, 0x21 (version 2, PROXY), 0x11 (TCP over IPv4)
//       or 0x21 (TCP over IPv6), the address block length (network order),
//       then source and destination addresses and ports in network order.
// Source and destination must be of the same family (AF_INET or AF_INET6);
// anything else yields an empty string.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ringmx::bench {

enum class ProxyVersion : uint8_t { none, v1, v2 };

// "v1" / "v2" (also "1" / "2"); false for anything else.
bool parse_proxy_version(std::string_view text, ProxyVersion& out);

std::string proxy_header_v1(const sockaddr_storage& src, const sockaddr_storage& dst);
std::string proxy_header_v2(const sockaddr_storage& src, const sockaddr_storage& dst);
// The header for `version`; empty for ProxyVersion::none.
std::string proxy_header(ProxyVersion version, const sockaddr_storage& src,
                         const sockaddr_storage& dst);

}  // namespace ringmx::bench
