#include "core/ip_network.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace ringmx {

namespace {

constexpr uint8_t kV4Prefix = 96;  // where an IPv4 address starts in its mapped form

bool is_v4_text(std::string_view t) {
  return t.find(':') == std::string_view::npos;
}

bool is_mapped_v4(const IpBytes& ip) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(ip.data(), kMapped, sizeof kMapped) == 0;
}

}  // namespace

std::optional<IpBytes> parse_ip(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  IpBytes out{};
  if (is_v4_text(text)) {
    in_addr a{};
    if (inet_pton(AF_INET, buf, &a) != 1) return std::nullopt;
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(&out[12], &a, 4);
    return out;
  }
  in6_addr a{};
  if (inet_pton(AF_INET6, buf, &a) != 1) return std::nullopt;
  std::memcpy(out.data(), &a, 16);
  return out;
}

bool IpNetwork::contains(const IpBytes& ip) const {
  if (v6_only && is_mapped_v4(ip)) return false;
  const size_t whole = prefix / 8;
  if (std::memcmp(ip.data(), base.data(), whole) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip[whole] & mask) == base[whole];
}

std::optional<IpNetwork> parse_network(std::string_view text, std::string* error) {
  auto fail = [error](std::string why) -> std::optional<IpNetwork> {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
  };
  const size_t slash = text.find('/');
  const std::string_view addr = text.substr(0, slash);
  const auto ip = parse_ip(addr);
  if (!ip) return fail("\"" + std::string(addr) + "\" is not an IPv4 or IPv6 address");
  const bool v4 = is_v4_text(addr);
  const unsigned max = v4 ? 32 : 128;
  unsigned bits = max;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), bits);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || bits > max ||
        (p.size() > 1 && p[0] == '0')) {
      return fail("prefix length must be 0-" + std::to_string(max));
    }
  }
  IpNetwork n;
  n.prefix = static_cast<uint8_t>(v4 ? kV4Prefix + bits : bits);
  n.base = *ip;
  n.v6_only = !v4 && n.prefix < kV4Prefix;
  // Clear the host bits, then refuse an address that had any.
  for (unsigned i = n.prefix; i < 128; ++i) {
    n.base[i / 8] = static_cast<uint8_t>(n.base[i / 8] & ~(0x80u >> (i % 8)));
  }
  if (n.base != *ip) {
    return fail("host bits are set under the prefix (did you mean the network's first address?)");
  }
  return n;
}

std::string check_network(std::string_view text) {
  std::string why;
  return parse_network(text, &why) ? std::string{} : why;
}

NetworkSet::NetworkSet(const std::vector<std::string>& networks) {
  for (const std::string& s : networks) {
    if (auto n = parse_network(s)) nets_.push_back(*n);
  }
}

bool NetworkSet::contains(const IpBytes& ip) const {
  for (const IpNetwork& n : nets_) {
    if (n.contains(ip)) return true;
  }
  return false;
}

bool NetworkSet::contains(std::string_view ip) const {
  if (nets_.empty()) return false;  // most listeners trust no one: no parse per connection
  const auto b = parse_ip(ip);
  return b && contains(*b);
}

}  // namespace ringmx
