// IP networks in CIDR notation ("10.0.0.0/8", "2001:db8::/32", or a single
// address) and sets of them: which peers a listener believes PROXY headers
// and XCLIENT commands from. Pure: addresses are parsed with inet_pton.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringmx {

// An address as 16 octets: IPv4 as its IPv4-mapped IPv6 form
// (::ffff:a.b.c.d), so a v4 network matches a v4 client whether the socket
// reported it as AF_INET or as a mapped AF_INET6 address.
using IpBytes = std::array<uint8_t, 16>;

// Parses a numeric IPv4 or IPv6 address (no brackets, no zone).
std::optional<IpBytes> parse_ip(std::string_view text);

struct IpNetwork {
  IpBytes base{};      // host bits cleared
  uint8_t prefix = 0;  // over the 128-bit form (an IPv4 /8 is 96 + 8)
  // An IPv6 network wider than ::ffff:0:0/96 ("::/0", "::/8") covers IPv6
  // clients only: an IPv4 client is matched by IPv4 networks (or mapped ones).
  bool v6_only = false;
  bool contains(const IpBytes& ip) const;
};

// "a.b.c.d/n" (n 0-32), "x::y/n" (n 0-128), or a bare address (a host).
// Host bits set under the prefix are refused ("10.0.0.1/8" is a typo more
// often than a network). Returns the reason on failure in `error`.
std::optional<IpNetwork> parse_network(std::string_view text, std::string* error = nullptr);

// The reason `text` is not a network, or "" when it is one.
std::string check_network(std::string_view text);

class NetworkSet {
 public:
  NetworkSet() = default;
  // Every entry must parse (check them with check_network first); one that
  // does not is skipped.
  explicit NetworkSet(const std::vector<std::string>& networks);
  bool contains(const IpBytes& ip) const;
  bool contains(std::string_view ip) const;  // false when `ip` is not an address
  bool empty() const { return nets_.empty(); }

 private:
  std::vector<IpNetwork> nets_;
};

}  // namespace ringmx
