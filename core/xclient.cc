#include "core/xclient.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include "core/ip_network.h"

namespace ringmx {

namespace {

constexpr size_t kMaxValue = 255;

bool equals_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// xtext: printable ASCII but '=', with "+XX" for any octet. The decoded
// value may not hold control characters (it ends up in logs and headers).
bool decode_xtext(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 33 || c > 126 || c == '=') return false;
    if (c != '+') {
      out.push_back(static_cast<char>(c));
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    const auto v = static_cast<unsigned char>(hi * 16 + lo);
    if (v < 33 || v > 126) return false;  // ASCII only: no space, no control
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out.size() <= kMaxValue;
}

bool unavailable(std::string_view v) {
  return v == "[UNAVAILABLE]" || v == "[TEMPUNAVAIL]";
}

// ADDR / DESTADDR: IPv4, or IPv6 after "IPV6:" (bare IPv6 is taken too).
bool parse_addr(std::string_view v, std::string& out) {
  if (v.size() > 5 && equals_nocase(v.substr(0, 5), "IPV6:")) v.remove_prefix(5);
  const auto ip = parse_ip(v);
  if (!ip) return false;
  char buf[INET6_ADDRSTRLEN] = {};
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip->data(), kMapped, sizeof kMapped) == 0) {
    inet_ntop(AF_INET, ip->data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, ip->data(), buf, sizeof buf);
  }
  out = buf;
  return true;
}

bool parse_port(std::string_view v, uint16_t& out) {
  unsigned p = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), p);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || p > 65535) return false;
  out = static_cast<uint16_t>(p);
  return true;
}

// A host name as NAME carries it: letters, digits, '-', '_', '.'.
bool is_host_name(std::string_view v) {
  if (v.empty()) return false;
  for (const char c : v) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool has_space(std::string_view v) {
  return v.find(' ') != std::string_view::npos;
}

}  // namespace

std::string parse_xclient(std::string_view args, XclientUpdate& out) {
  out = {};
  if (args.empty()) return "Syntax: XCLIENT attribute=value ...";
  std::string value;
  size_t pos = 0;
  while (pos < args.size()) {
    size_t end = args.find(' ', pos);
    if (end == std::string_view::npos) end = args.size();
    const std::string_view item = args.substr(pos, end - pos);
    pos = end;
    while (pos < args.size() && args[pos] == ' ') ++pos;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return "Syntax: XCLIENT attribute=value ...";
    }
    const std::string_view name = item.substr(0, eq);
    if (name.size() > 16 || !is_host_name(name)) return "Bad XCLIENT attribute name";
    const std::string_view raw = item.substr(eq + 1);
    if (!decode_xtext(raw, value)) {
      return "Bad XCLIENT " + std::string(name) + " value encoding";
    }
    const bool none = unavailable(value);
    auto bad = [&name](std::string_view what) {
      return "Bad XCLIENT " + std::string(name) + " syntax: " + std::string(what);
    };
    if (equals_nocase(name, "ADDR") || equals_nocase(name, "DESTADDR")) {
      std::string a;
      if (!none && !parse_addr(value, a)) return bad(value);
      (equals_nocase(name, "ADDR") ? out.addr : out.destaddr) = a;
    } else if (equals_nocase(name, "PORT") || equals_nocase(name, "DESTPORT")) {
      uint16_t p = 0;
      if (!none && !parse_port(value, p)) return bad(value);
      (equals_nocase(name, "PORT") ? out.port : out.destport) = p;
    } else if (equals_nocase(name, "NAME")) {
      if (!none && !is_host_name(value)) return bad(value);
      out.name = none ? std::string() : value;
    } else if (equals_nocase(name, "HELO")) {
      if (has_space(value)) return bad(value);
      out.helo = none ? std::string() : value;
    } else if (equals_nocase(name, "LOGIN")) {
      if (has_space(value)) return bad(value);
      out.login = none ? std::string() : value;
    } else if (equals_nocase(name, "PROTO")) {
      if (equals_nocase(value, "ESMTP")) {
        out.esmtp = true;
      } else if (equals_nocase(value, "SMTP")) {
        out.esmtp = false;
      } else if (!none) {
        return bad(value);
      }
    } else {
      return "Bad XCLIENT attribute name: " + std::string(name);
    }
  }
  return {};
}

}  // namespace ringmx
