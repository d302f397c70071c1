// Routes: which recipient domains ringmx takes mail for, and where that mail
// goes. With no route configured, ringmx keeps mail for any domain in its
// local spool (the embedded default); with routes, a recipient whose domain
// matches none is refused at RCPT (550 5.7.1: no open relay).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringmx {

// A [[route]] table: domains ("example.org" exactly, "*.example.net" any
// subdomain of example.net but not example.net itself, "[192.0.2.1]" a
// domain literal, "*" every domain no other pattern takes: the smarthost of
// authenticated submission, never open to anyone else) and the destination
// their mail goes to.
// TLS to a destination (STARTTLS, RFC 3207): none; opportunistic (when
// offered; a handshake that fails sends the next attempts in plaintext for a
// while); required (never in plaintext: no STARTTLS offered, or a failed
// handshake, defers the mail). `unset` resolves to opportunistic for smtp://,
// none for lmtp.
enum class RouteTls : uint8_t { unset, none, opportunistic, required };

struct RouteConfig {
  std::string name;  // label in logs and metrics; defaults to the first domain
  std::vector<std::string> domains;
  std::string destination;  // lmtp://host:port, lmtp:unix:/path, smtp://host[:port]
  RouteTls tls = RouteTls::unset;
  // PEM bundle of trusted CAs: the destination's certificate must chain to
  // one and name the destination's host. Empty: not verified.
  std::string tls_ca_file;
};

// Routes a configuration may have (each has its own metric series).
inline constexpr size_t kMaxRouteCount = 64;

enum class DestinationKind : uint8_t { lmtp_tcp, lmtp_unix, smtp };

struct Destination {
  DestinationKind kind = DestinationKind::smtp;
  std::string host;  // a name, an IPv4 literal or an IPv6 literal (without brackets)
  uint16_t port = 0;
  std::string path;  // lmtp_unix
};

// Parses a destination; returns "" when it is valid, else what is wrong.
// lmtp:// needs a port (LMTP has no well-known one); smtp:// defaults to 25.
std::string parse_destination(std::string_view text, Destination& out);

// "" when `pattern` is a domain, "*." and a domain, or a domain literal;
// else what is wrong.
std::string check_domain_pattern(std::string_view pattern);

// What is wrong across a set of routes: a domain, destination or pattern
// that does not parse, a pattern in two routes (which would win?), a route
// without domains, a name used twice. Empty when they are fine.
std::vector<std::string> check_routes(const std::vector<RouteConfig>& routes);

// The routes, ready for lookups: exact domains and wildcard parents in hash
// maps, all lower-cased (ASCII; UTF-8 labels compare octet for octet).
class RouteTable {
 public:
  RouteTable() = default;
  explicit RouteTable(const std::vector<RouteConfig>& routes);

  bool empty() const { return exact_.empty() && wildcard_.empty() && catch_all_ < 0; }
  // Index of the route whose pattern matches `domain` (an exact pattern over a
  // wildcard, the longest wildcard parent over shorter ones, "*" last), or -1.
  int find(std::string_view domain) const;
  // The route of "*" (-1: none). RCPT takes it for authenticated clients only.
  int catch_all() const { return catch_all_; }

 private:
  // Lookups by string_view, without a copy of each parent domain.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, int, Hash, std::equal_to<>>;
  Map exact_;
  Map wildcard_;  // keyed by the parent: "example.net"
  int catch_all_ = -1;
};

// The domain part of a mailbox ("" for a bare "postmaster").
std::string_view mailbox_domain(std::string_view mailbox);

}  // namespace ringmx
