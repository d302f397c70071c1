#include "core/dns_message.h"

#include "core/dns_lookup.h"

#include <algorithm>
#include <cstring>

namespace ringmx {

namespace {

constexpr size_t kHeader = 12;
constexpr int kMaxHops = 32;         // compression pointers followed for one name
constexpr size_t kMaxName = 255;     // RFC 1035 2.3.4
constexpr size_t kMaxRecords = 256;  // records kept from one answer

uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// Reads the (possibly compressed) name at msg[pos], into `name` when given.
// `pos` moves past the name as it sits in the record. False when malformed.
bool read_name(const uint8_t* msg, size_t len, size_t& pos, std::string* name) {
  size_t at = pos;
  bool jumped = false;
  int hops = 0;
  size_t total = 0;
  if (name) name->clear();
  for (;;) {
    if (at >= len) return false;
    const uint8_t l = msg[at];
    if ((l & 0xc0) == 0xc0) {
      if (at + 1 >= len || ++hops > kMaxHops) return false;
      const size_t target = size_t{l & 0x3fu} << 8 | msg[at + 1];
      if (!jumped) pos = at + 2;
      jumped = true;
      at = target;
      continue;
    }
    if ((l & 0xc0) != 0) return false;  // the 01 and 10 label types are obsolete
    if (l == 0) {
      if (!jumped) pos = at + 1;
      return true;
    }
    if (at + 1 + l > len) return false;
    total += size_t{l} + 1;
    if (total + 1 > kMaxName) return false;  // with the root's zero octet
    if (name) {
      if (!name->empty()) name->push_back('.');
      for (size_t i = 0; i < l; ++i) {
        char c = static_cast<char>(msg[at + 1 + i]);
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
        name->push_back(c);
      }
    }
    at += 1 + size_t{l};
  }
}

}  // namespace

bool parse_dns_response(const uint8_t* msg, size_t len, uint16_t qtype, DnsResponse& out) {
  out = {};
  if (len < kHeader) return false;
  const uint16_t flags = be16(msg + 2);
  if ((flags & 0x8000) == 0) return false;  // not a response
  out.truncated = (flags & 0x0200) != 0;
  out.rcode = flags & 0x000f;
  const uint16_t qd = be16(msg + 4);
  const uint16_t an = be16(msg + 6);
  const uint16_t ns = be16(msg + 8);
  size_t pos = kHeader;
  for (uint16_t i = 0; i < qd; ++i) {
    if (!read_name(msg, len, pos, nullptr) || pos + 4 > len) return false;
    pos += 4;
  }
  std::string name;
  for (uint32_t i = 0; i < uint32_t{an} + ns; ++i) {
    if (!read_name(msg, len, pos, nullptr) || pos + 10 > len) return false;
    const uint16_t type = be16(msg + pos);
    const uint32_t ttl = be32(msg + pos + 4) & 0x7fffffffu;  // RFC 2181 8: top bit clear
    const uint16_t rdlen = be16(msg + pos + 8);
    pos += 10;
    if (pos + rdlen > len) return false;
    const size_t rdata = pos;
    pos += rdlen;
    if (i >= an) {  // authority section: only the SOA matters (RFC 2308)
      if (type != dns_type::kSoa) continue;
      size_t p = rdata;
      if (!read_name(msg, len, p, nullptr) || !read_name(msg, len, p, nullptr)) return false;
      if (p + 20 > rdata + rdlen) return false;
      const uint32_t minimum = be32(msg + p + 16);
      out.negative_ttl = std::min(ttl, minimum);
      continue;
    }
    if (type != qtype || out.records.size() >= kMaxRecords) continue;  // CNAMEs, extras
    DnsRecord r;
    r.ttl = ttl;
    switch (type) {
      case dns_type::kA:
      case dns_type::kAaaa: {
        const size_t want = type == dns_type::kA ? 4 : 16;
        if (rdlen != want) return false;
        r.data.assign(reinterpret_cast<const char*>(msg + rdata), want);
        break;
      }
      case dns_type::kPtr:
      case dns_type::kCname: {
        size_t p = rdata;
        if (!read_name(msg, len, p, &name) || p != rdata + rdlen) return false;
        r.data = name;
        break;
      }
      case dns_type::kMx: {
        if (rdlen < 3) return false;
        r.preference = be16(msg + rdata);
        size_t p = rdata + 2;
        if (!read_name(msg, len, p, &name) || p != rdata + rdlen) return false;
        r.data = name;
        break;
      }
      case dns_type::kTxt: {
        size_t p = rdata;
        while (p < rdata + rdlen) {
          const uint8_t l = msg[p];
          if (p + 1 + l > rdata + rdlen) return false;
          r.data.append(reinterpret_cast<const char*>(msg + p + 1), l);
          p += 1 + size_t{l};
        }
        break;
      }
      default: r.data.assign(reinterpret_cast<const char*>(msg + rdata), rdlen);
    }
    out.records.push_back(std::move(r));
  }
  return true;
}

std::string reverse_name(const IpBytes& ip, std::string_view zone) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  std::string out;
  if (std::memcmp(ip.data(), kMapped, sizeof kMapped) == 0) {
    for (int i = 15; i >= 12; --i) {
      out += std::to_string(ip[i]);
      out.push_back('.');
    }
    out += zone.empty() ? std::string_view("in-addr.arpa") : zone;
    return out;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out.push_back(kHex[ip[i] & 15]);
    out.push_back('.');
    out.push_back(kHex[ip[i] >> 4]);
    out.push_back('.');
  }
  out += zone.empty() ? std::string_view("ip6.arpa") : zone;
  return out;
}

std::string_view dns_result_name(DnsResult r) {
  switch (r) {
    case DnsResult::found: return "found";
    case DnsResult::not_found: return "not_found";
    case DnsResult::temp_fail: return "temp_fail";
  }
  return "temp_fail";
}

}  // namespace ringmx
