#include "core/routes.h"

#include <charconv>

namespace ringmx {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (!out.empty() && out.back() == '.') out.pop_back();  // a root dot names the same domain
  return out;
}

bool is_ldh(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

// A host name (LDH labels) or IPv4 literal; UTF-8 labels are let through for
// domains (SMTPUTF8), not for hosts.
std::string check_domain(std::string_view d, bool allow_utf8) {
  if (d.empty()) return "is empty";
  if (d.size() > 253) return "is longer than 253 octets";
  size_t label = 0;
  for (size_t i = 0; i <= d.size(); ++i) {
    if (i == d.size() || d[i] == '.') {
      if (label == 0) return "has an empty label";
      if (label > 63) return "has a label longer than 63 octets";
      label = 0;
      continue;
    }
    const auto c = static_cast<unsigned char>(d[i]);
    if (!is_ldh(d[i]) && !(allow_utf8 && c >= 0x80)) {
      return "may hold only letters, digits, '-' and '.'";
    }
    ++label;
  }
  return {};
}

}  // namespace

std::string check_domain_pattern(std::string_view p) {
  if (p.size() >= 2 && p.front() == '[' && p.back() == ']') {
    const std::string_view inner = p.substr(1, p.size() - 2);
    for (char c : inner) {
      if (!is_ldh(c) && c != '.' && c != ':') return "is not a domain literal";
    }
    return inner.empty() ? "is an empty domain literal" : "";
  }
  if (p == "*") return {};  // every other domain, for authenticated senders
  if (p.substr(0, 2) == "*.") {
    const std::string e = check_domain(p.substr(2), true);
    return e.empty() ? "" : "(after \"*.\") " + e;
  }
  if (p.find('*') != std::string_view::npos)
    return "may have '*' only as its first label (*.domain)";
  return check_domain(p, true);
}

std::string parse_destination(std::string_view t, Destination& out) {
  out = {};
  std::string_view rest;
  if (t.substr(0, 10) == "lmtp:unix:") {
    out.kind = DestinationKind::lmtp_unix;
    out.path.assign(t.substr(10));
    if (out.path.empty() || out.path.front() != '/') return "lmtp:unix: needs an absolute path";
    return {};
  }
  if (t.substr(0, 7) == "lmtp://") {
    out.kind = DestinationKind::lmtp_tcp;
    rest = t.substr(7);
  } else if (t.substr(0, 7) == "smtp://") {
    out.kind = DestinationKind::smtp;
    rest = t.substr(7);
  } else {
    return "must be lmtp://HOST:PORT, lmtp:unix:/PATH or smtp://HOST[:PORT]";
  }
  std::string_view host = rest;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return "has an unclosed '[' in its host";
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return "has something after its [IPv6] host";
      port = after.substr(1);
      if (port.empty()) return "has an empty port";
    }
    if (host.empty() ||
        host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
      return "has a bad [IPv6] host";
  } else {
    const size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      if (port.empty()) return "has an empty port";
    }
    const std::string e = check_domain(host, false);
    if (!e.empty()) return "host " + e;
  }
  out.host.assign(host);
  if (port.empty()) {
    if (out.kind == DestinationKind::lmtp_tcp) return "lmtp:// needs a port (LMTP has no default)";
    out.port = 25;
    return {};
  }
  unsigned value = 0;
  const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
    return "port must be 1-65535";
  }
  out.port = static_cast<uint16_t>(value);
  return {};
}

RouteTable::RouteTable(const std::vector<RouteConfig>& routes) {
  for (size_t i = 0; i < routes.size(); ++i) {
    for (const std::string& d : routes[i].domains) {
      if (d == "*") {
        catch_all_ = static_cast<int>(i);
      } else if (d.substr(0, 2) == "*.") {
        wildcard_.emplace(lower(std::string_view(d).substr(2)), static_cast<int>(i));
      } else {
        exact_.emplace(lower(d), static_cast<int>(i));
      }
    }
  }
}

int RouteTable::find(std::string_view domain) const {
  const std::string lowered = lower(domain);
  const std::string_view d = lowered;
  if (auto it = exact_.find(d); it != exact_.end()) return it->second;
  if (!d.empty() && d.front() == '[') return catch_all_;  // a literal matches exactly, or "*"
  // Parents from the longest: a.b.example.net tries b.example.net, example.net, net.
  for (size_t dot = d.find('.'); dot != std::string_view::npos; dot = d.find('.', dot + 1)) {
    if (auto it = wildcard_.find(d.substr(dot + 1)); it != wildcard_.end()) return it->second;
  }
  return catch_all_;
}

std::vector<std::string> check_routes(const std::vector<RouteConfig>& routes) {
  std::vector<std::string> out;
  std::unordered_map<std::string, size_t> owner;  // lower-cased pattern -> route index
  if (routes.size() > kMaxRouteCount) {
    out.push_back("at most " + std::to_string(kMaxRouteCount) +
                  " routes are allowed (a route takes any number of domains)");
  }
  for (size_t i = 0; i < routes.size(); ++i) {
    const RouteConfig& r = routes[i];
    const std::string label = "route \"" + r.name + "\"";
    if (r.domains.empty()) out.push_back(label + " has no domains");
    Destination d;
    const std::string bad = parse_destination(r.destination, d);
    if (!bad.empty()) out.push_back(label + " destination " += bad);
    const bool tls =
        r.tls == RouteTls::opportunistic || r.tls == RouteTls::required || !r.tls_ca_file.empty();
    if (bad.empty() && tls && d.kind == DestinationKind::lmtp_unix) {
      out.push_back(label + " tls needs a TCP destination (lmtp:// or smtp://)");
    }
    for (const std::string& pattern : r.domains) {
      const std::string problem = check_domain_pattern(pattern);
      if (!problem.empty()) {
        std::string m = label;
        m.append(" domain \"").append(pattern).append("\" ").append(problem);
        out.push_back(std::move(m));
      }
      const auto [it, fresh] = owner.emplace(lower(pattern), i);
      if (!fresh) {
        std::string m = "domain \"";
        m.append(pattern).append("\" is in route \"").append(routes[it->second].name);
        m.append("\" and route \"").append(r.name).append("\"");
        out.push_back(std::move(m));
      }
    }
    for (size_t j = 0; j < i; ++j) {
      if (routes[j].name == r.name) out.push_back("two routes are named \"" + r.name + "\"");
    }
  }
  return out;
}

std::string_view mailbox_domain(std::string_view mailbox) {
  const size_t at = mailbox.rfind('@');
  return at == std::string_view::npos ? std::string_view() : mailbox.substr(at + 1);
}

}  // namespace ringmx
