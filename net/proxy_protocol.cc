// Contract: see proxy_protocol.h.
#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "pipeline/crc32c.h"

namespace ringmx {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::string_view kV2Sig("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr size_t kV2Head = 16;

// PP2 TLV types (proxy-protocol.txt 2.2.x).
constexpr uint8_t kTlvCrc32c = 0x03;
constexpr uint8_t kTlvUniqueId = 0x05;
constexpr uint8_t kTlvSsl = 0x20;
constexpr uint8_t kSubSslVersion = 0x21;
constexpr uint8_t kSubSslCn = 0x22;
constexpr uint8_t kClientSsl = 0x01;

uint16_t be16(const char* p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

// A v1 port: decimal, 0-65535, no sign, no leading zero.
bool v1_port(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  uint32_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

bool v1_addr(std::string_view s, int family, uint16_t port, sockaddr_storage& out) {
  char text[INET6_ADDRSTRLEN + 1] = {};
  if (s.empty() || s.size() >= sizeof text) return false;
  std::memcpy(text, s.data(), s.size());
  out = {};
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&out);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    return inet_pton(AF_INET, text, &a->sin_addr) == 1;
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&out);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  return inet_pton(AF_INET6, text, &a->sin6_addr) == 1;
}

}  // namespace

bool ProxyParser::bad(std::string why) {
  fail(std::move(why));
  return false;
}

ProxyParser::Status ProxyParser::fail(std::string why) {
  status_ = Status::error;
  error_ = std::move(why);
  return status_;
}

ProxyParser::Status ProxyParser::feed(std::string_view bytes) {
  used_ = 0;
  if (status_ != Status::need_more) return status_;
  const bool v1_ok = accept_ != ProxyAccept::v2;
  const bool v2_ok = accept_ != ProxyAccept::v1;
  while (used_ < bytes.size()) {
    if (version_ == 0) {
      // Which version: the first octets must stay a prefix of one of them.
      buf_.push_back(bytes[used_++]);
      const bool may_v1 = v1_ok && kV1Prefix.starts_with(std::string_view(buf_).substr(
                                       0, std::min(buf_.size(), kV1Prefix.size())));
      const bool may_v2 = v2_ok && kV2Sig.starts_with(std::string_view(buf_).substr(
                                       0, std::min(buf_.size(), kV2Sig.size())));
      if (!may_v1 && !may_v2) return fail("not a PROXY protocol header");
      if (may_v1 && buf_.size() == kV1Prefix.size()) version_ = 1;
      if (may_v2 && buf_.size() == kV2Sig.size()) version_ = 2;
      continue;
    }
    if (version_ == 1) {
      // Up to the CRLF, 107 octets at most.
      const size_t room = kMaxV1 - buf_.size();
      const std::string_view rest = bytes.substr(used_);
      const size_t lf = rest.substr(0, room).find('\n');
      if (lf == std::string_view::npos) {
        if (rest.size() >= room) {
          used_ += room;  // the octets that made it too long
          return fail("PROXY v1 header longer than 107 octets");
        }
        buf_.append(rest);
        used_ = bytes.size();
        return status_;
      }
      buf_.append(rest.substr(0, lf + 1));
      used_ += lf + 1;
      return parse_v1();
    }
    // v2: the fixed head, then as many octets as its length says.
    if (need_ == 0) {
      const size_t take = std::min(kV2Head - buf_.size(), bytes.size() - used_);
      buf_.append(bytes.substr(used_, take));
      used_ += take;
      if (buf_.size() < kV2Head) return status_;
      need_ = kV2Head + be16(buf_.data() + 14);
      if (need_ > max_v2_) {
        return fail("PROXY v2 header of " + std::to_string(need_) + " octets (at most " +
                    std::to_string(max_v2_) + ")");
      }
    }
    const size_t take = std::min(need_ - buf_.size(), bytes.size() - used_);
    buf_.append(bytes.substr(used_, take));
    used_ += take;
    if (buf_.size() == need_) return parse_v2();
  }
  return status_;
}

ProxyParser::Status ProxyParser::parse_v1() {
  std::string_view line(buf_);
  if (!line.ends_with("\r\n")) return fail("PROXY v1 line does not end in CRLF");
  line.remove_prefix(kV1Prefix.size());
  line.remove_suffix(2);
  info_.version = 1;
  if (line == "UNKNOWN" || line.starts_with("UNKNOWN ")) {
    status_ = Status::done;  // the proxy does not know: the real peer is the client
    return status_;
  }
  std::string_view f[5];
  for (size_t i = 0; i < 5; ++i) {
    const size_t sp = line.find(' ');
    if (i < 4 && sp == std::string_view::npos) return fail("PROXY v1 line has too few fields");
    f[i] = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    if (i == 4 && sp != std::string_view::npos) return fail("PROXY v1 line has too many fields");
  }
  int family = 0;
  if (f[0] == "TCP4") {
    family = AF_INET;
  } else if (f[0] == "TCP6") {
    family = AF_INET6;
  } else {
    return fail("PROXY v1 protocol is neither TCP4, TCP6 nor UNKNOWN");
  }
  uint16_t sport = 0;
  uint16_t dport = 0;
  if (!v1_port(f[3], sport) || !v1_port(f[4], dport)) return fail("PROXY v1 port is not valid");
  if (!v1_addr(f[1], family, sport, info_.src) || !v1_addr(f[2], family, dport, info_.dst)) {
    return fail("PROXY v1 address is not valid for its protocol");
  }
  info_.proxied = true;
  status_ = Status::done;
  return status_;
}

ProxyParser::Status ProxyParser::parse_v2() {
  const auto* h = reinterpret_cast<const uint8_t*>(buf_.data());
  const uint8_t ver = h[12] >> 4;
  const uint8_t cmd = h[12] & 0x0F;
  const uint8_t fam = h[13] >> 4;
  const uint8_t proto = h[13] & 0x0F;
  if (ver != 2) return fail("PROXY v2 header with version " + std::to_string(ver));
  if (cmd > 1) return fail("PROXY v2 command is neither LOCAL nor PROXY");
  if (fam > 3) return fail("PROXY v2 address family is not known");
  if (proto > 1) return fail("PROXY v2 protocol is not a stream");
  info_.version = 2;
  std::string_view rest = std::string_view(buf_).substr(kV2Head);
  size_t addr_len = 0;
  switch (fam) {
    case 1: addr_len = 12; break;   // INET
    case 2: addr_len = 36; break;   // INET6
    case 3: addr_len = 216; break;  // UNIX
    default: break;                 // UNSPEC: no addresses
  }
  if (rest.size() < addr_len) return fail("PROXY v2 address block is too short");
  const std::string_view a = rest.substr(0, addr_len);
  // The addresses count only for PROXY with TCP over IPv4 or IPv6.
  if (cmd == 1 && proto == 1 && fam == 1) {
    auto* s = reinterpret_cast<sockaddr_in*>(&info_.src);
    auto* d = reinterpret_cast<sockaddr_in*>(&info_.dst);
    s->sin_family = d->sin_family = AF_INET;
    std::memcpy(&s->sin_addr, a.data(), 4);
    std::memcpy(&d->sin_addr, a.data() + 4, 4);
    std::memcpy(&s->sin_port, a.data() + 8, 2);
    std::memcpy(&d->sin_port, a.data() + 10, 2);
    info_.proxied = true;
  } else if (cmd == 1 && proto == 1 && fam == 2) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&info_.src);
    auto* d = reinterpret_cast<sockaddr_in6*>(&info_.dst);
    s->sin6_family = d->sin6_family = AF_INET6;
    std::memcpy(&s->sin6_addr, a.data(), 16);
    std::memcpy(&d->sin6_addr, a.data() + 16, 16);
    std::memcpy(&s->sin6_port, a.data() + 32, 2);
    std::memcpy(&d->sin6_port, a.data() + 34, 2);
    info_.proxied = true;
  } else if (cmd == 1 && fam != 0 && proto == 0) {
    return fail("PROXY v2 addresses without a protocol");
  }
  if (!parse_tlvs(rest.substr(addr_len), false)) {
    info_ = {};
    return status_;  // fail() said why
  }
  status_ = Status::done;
  return status_;
}

bool ProxyParser::parse_tlvs(std::string_view tlvs, bool nested) {
  while (!tlvs.empty()) {
    if (tlvs.size() < 3) return bad("PROXY v2 TLV is cut short");
    const auto type = static_cast<uint8_t>(tlvs[0]);
    const size_t len = be16(tlvs.data() + 1);
    if (tlvs.size() - 3 < len) return bad("PROXY v2 TLV is longer than the header");
    const std::string_view value = tlvs.substr(3, len);
    if (nested) {
      if (type == kSubSslVersion) info_.ssl_version.assign(value);
      if (type == kSubSslCn) info_.ssl_cn.assign(value);
    } else if (type == kTlvCrc32c) {
      if (len != 4) return bad("PROXY v2 CRC32C TLV is not 4 octets");
      // The checksum of the whole header with this field zeroed.
      std::string copy = buf_;
      const size_t at = static_cast<size_t>(value.data() - buf_.data());
      const uint32_t want = (static_cast<uint32_t>(static_cast<uint8_t>(value[0])) << 24) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(value[1])) << 16) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(value[2])) << 8) |
                            static_cast<uint32_t>(static_cast<uint8_t>(value[3]));
      std::fill_n(copy.begin() + static_cast<std::ptrdiff_t>(at), 4, '\0');
      if (crc32c(copy) != want) return bad("PROXY v2 CRC32C does not match");
    } else if (type == kTlvUniqueId) {
      if (len > kMaxUniqueId) return bad("PROXY v2 unique id over 128 octets");
      info_.unique_id.assign(value);
    } else if (type == kTlvSsl) {
      if (len < 5) return bad("PROXY v2 SSL TLV is cut short");
      info_.ssl = (static_cast<uint8_t>(value[0]) & kClientSsl) != 0;
      if (!parse_tlvs(value.substr(5), true)) return false;
    }
    tlvs.remove_prefix(3 + len);
  }
  return true;
}

}  // namespace ringmx
