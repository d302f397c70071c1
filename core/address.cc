// Contract: reads only in[0, consumed) (never past the closing '>'), O(n), no allocation, no throw.
#include "core/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>

namespace ringmx {
namespace {

constexpr size_t kMaxLocal = 64;    // RFC 5321 4.5.3.1.1
constexpr size_t kMaxDomain = 255;  // RFC 5321 4.5.3.1.2
constexpr size_t kMaxLabel = 63;    // RFC 1035 2.3.4
constexpr size_t kMaxPath = 256;    // RFC 5321 4.5.3.1.3

// Character classes of ASCII octets; octets >= 0x80 have no class and are handled as UTF-8.
enum : uint8_t {
  kAtext = 1 << 0,     // RFC 5322 atext
  kLetDig = 1 << 1,    // ALPHA / DIGIT
  kQtext = 1 << 2,     // qtextSMTP
  kDcontent = 1 << 3,  // dcontent of a General-address-literal
  kDigit = 1 << 4,     // DIGIT
};

constexpr std::array<uint8_t, 256> make_class_table() {
  std::array<uint8_t, 256> t{};
  auto add = [&t](int c, uint8_t bits) {
    t[static_cast<size_t>(c)] = static_cast<uint8_t>(t[static_cast<size_t>(c)] | bits);
  };
  for (int c = 'a'; c <= 'z'; ++c) add(c, kAtext | kLetDig);
  for (int c = 'A'; c <= 'Z'; ++c) add(c, kAtext | kLetDig);
  for (int c = '0'; c <= '9'; ++c) add(c, kAtext | kLetDig | kDigit);
  for (char c : std::string_view("!#$%&'*+-/=?^_`{|}~")) add(c, kAtext);
  for (int c = 32; c <= 126; ++c) {
    if (c != '"' && c != '\\') add(c, kQtext);
    if (c >= 33 && (c <= 90 || c >= 94)) add(c, kDcontent);
  }
  return t;
}

constexpr std::array<uint8_t, 256> kClass = make_class_table();

inline unsigned char octet(std::string_view s, size_t i) {
  return static_cast<unsigned char>(s[i]);
}
inline bool has(unsigned char c, uint8_t bits) {
  return (kClass[c] & bits) != 0;
}

// Length of the strictly valid UTF-8 sequence starting at s[i] (a non-ASCII lead octet), or 0 when
// it is overlong, a surrogate, above U+10FFFF, truncated or not a lead octet at all.
size_t utf8_sequence(std::string_view s, size_t i) {
  const unsigned char c = octet(s, i);
  size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;  // allowed range of the second octet
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;  // continuation octet, C0/C1 (always overlong) or F5..FF
  }
  if (s.size() - i < len) return 0;
  const unsigned char second = octet(s, i + 1);
  if (second < lo || second > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    const unsigned char cont = octet(s, i + k);
    if (cont < 0x80 || cont > 0xBF) return 0;
  }
  return len;
}

// Where a scan stopped: its end on success, else the offending offset.
struct Step {
  size_t pos;
  AddrError error = AddrError::none;
};

// Consumes one non-ASCII character at s[i] when UTF-8 is allowed and valid.
inline Step take_utf8(std::string_view s, size_t i, bool allow_utf8) {
  if (!allow_utf8) return {i, AddrError::utf8_not_allowed};
  const size_t len = utf8_sequence(s, i);
  if (len == 0) return {i, AddrError::bad_utf8};
  return {i + len};
}

// Domain = sub-domain *("." sub-domain), starting at s[start]. Stops at the first octet that
// cannot continue it and leaves judging that octet to the caller. A non-ASCII character (when
// allowed) counts as a letter, so U-labels pass.
Step scan_domain(std::string_view s, size_t start, bool allow_utf8) {
  const size_t n = s.size();
  size_t pos = start;
  for (;;) {
    const size_t label = pos;
    while (pos < n) {
      const unsigned char c = octet(s, pos);
      if (c >= 0x80) {
        const Step u = take_utf8(s, pos, allow_utf8);
        if (u.error != AddrError::none) return u;
        pos = u.pos;
      } else if (has(c, kLetDig) || (c == '-' && pos != label)) {
        ++pos;
      } else {
        break;
      }
    }
    if (pos == label) {
      const bool nothing = pos == start && (pos == n || s[pos] == '>');
      return {pos, nothing ? AddrError::empty_domain : AddrError::bad_domain};
    }
    if (s[pos - 1] == '-') return {pos - 1, AddrError::bad_domain};
    if (pos - label > kMaxLabel) return {label + kMaxLabel, AddrError::label_too_long};
    if (pos - start > kMaxDomain) return {start + kMaxDomain, AddrError::domain_too_long};
    if (pos < n && s[pos] == '.') {
      ++pos;
      continue;
    }
    return {pos};
  }
}

// IPv4-address-literal body: Snum 3("." Snum), Snum = 1*3DIGIT with a value of 0-255.
// Returns the offset in `body` of the first octet that breaks it, or npos when valid.
size_t check_ipv4(std::string_view body) {
  size_t i = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (i >= body.size() || body[i] != '.') return i;
      ++i;
    }
    const size_t first = i;
    unsigned value = 0;
    while (i < body.size() && has(octet(body, i), kDigit)) {
      if (i - first == 3) return i;
      value = value * 10 + static_cast<unsigned>(body[i] - '0');
      ++i;
    }
    if (i == first) return i;
    if (value > 255) return first;
  }
  return i == body.size() ? std::string_view::npos : i;
}

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = octet(a, i);
    unsigned char y = octet(b, i);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

// address-literal starting at s[start] == '['; on success returns the offset past ']'.
Step scan_literal(std::string_view s, size_t start, bool allow_utf8) {
  const size_t n = s.size();
  const size_t content = start + 1;
  size_t pos = content;
  while (pos < n && has(octet(s, pos), kDcontent)) ++pos;
  if (pos == n) return {pos, AddrError::bad_address_literal};  // no ']'
  if (s[pos] != ']') {
    const bool high = octet(s, pos) >= 0x80 && !allow_utf8;
    return {pos, high ? AddrError::utf8_not_allowed : AddrError::bad_address_literal};
  }
  const size_t close = pos;
  if (close + 1 - start > kMaxDomain) return {start + kMaxDomain, AddrError::domain_too_long};
  const std::string_view body = s.substr(content, close - content);
  if (body.empty()) return {close, AddrError::bad_address_literal};

  const size_t colon = body.find(':');
  if (colon == std::string_view::npos) {
    const size_t bad = check_ipv4(body);
    if (bad != std::string_view::npos) return {content + bad, AddrError::bad_address_literal};
    return {close + 1};
  }
  // General-address-literal: Standardized-tag ":" 1*dcontent, tag = Ldh-str.
  const std::string_view tag = body.substr(0, colon);
  for (size_t i = 0; i < tag.size(); ++i) {
    const unsigned char c = octet(tag, i);
    if (!has(c, kLetDig) && c != '-') return {content + i, AddrError::bad_address_literal};
  }
  if (tag.empty() || tag.back() == '-') {
    return {content + (tag.empty() ? 0 : tag.size() - 1), AddrError::bad_address_literal};
  }
  const std::string_view rest = body.substr(colon + 1);
  const size_t rest_pos = content + colon + 1;
  if (rest.empty()) return {rest_pos, AddrError::bad_address_literal};
  if (iequals_ascii(tag, "IPv6")) {
    // inet_pton needs a NUL-terminated string; the longest textual IPv6 address is 45 octets.
    char buf[64];
    if (rest.size() >= sizeof buf) return {rest_pos, AddrError::bad_address_literal};
    rest.copy(buf, rest.size());
    buf[rest.size()] = '\0';
    in6_addr addr;
    if (inet_pton(AF_INET6, buf, &addr) != 1) return {rest_pos, AddrError::bad_address_literal};
  }
  return {close + 1};
}

// Errors that, when they happen at the end of the input, mean the path was cut short.
bool means_truncated(AddrError e) {
  switch (e) {
    case AddrError::bad_source_route:
    case AddrError::empty_local_part:
    case AddrError::bad_local_part:
    case AddrError::missing_at:
    case AddrError::empty_domain:
    case AddrError::bad_domain: return true;
    default: return false;
  }
}

PathResult fail(std::string_view in, AddrError e, size_t pos) {
  PathResult r;
  r.error = (pos >= in.size() && means_truncated(e)) ? AddrError::missing_close_bracket : e;
  r.error_pos = pos;
  return r;
}

bool any_high(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

}  // namespace

PathResult parse_path(std::string_view in, PathKind kind, bool allow_utf8) {
  const size_t n = in.size();
  if (n == 0 || in[0] != '<') return fail(in, AddrError::missing_open_bracket, 0);
  if (n == 1) return fail(in, AddrError::missing_close_bracket, 1);
  size_t pos = 1;

  if (in[pos] == '>') {
    if (kind == PathKind::forward) return fail(in, AddrError::null_not_allowed, pos);
    PathResult r;
    r.path.is_null = true;
    r.consumed = 2;
    return r;
  }

  // A-d-l ":" (source route): parsed and dropped.
  const bool routed = in[pos] == '@';
  if (routed) {
    for (bool first = true;; first = false) {
      ++pos;  // '@'
      if (pos < n && in[pos] == '[') return fail(in, AddrError::bad_source_route, pos);
      const Step d = scan_domain(in, pos, allow_utf8);
      if (d.error != AddrError::none) {
        const bool shape = d.error == AddrError::bad_domain || d.error == AddrError::empty_domain;
        return fail(in, shape ? AddrError::bad_source_route : d.error, d.pos);
      }
      pos = d.pos;
      if (pos < n && in[pos] == ',') {
        ++pos;
        if (pos < n && in[pos] == '@') continue;
        return fail(in, AddrError::bad_source_route, pos);
      }
      if (pos < n && in[pos] == ':') {
        ++pos;
        break;
      }
      // "<@example.com>" is a mailbox without its local part rather than a route.
      if (first && pos < n && in[pos] == '>') return fail(in, AddrError::empty_local_part, 1);
      return fail(in, AddrError::bad_source_route, pos);
    }
  }

  // Local-part = Dot-string / Quoted-string.
  const size_t local_start = pos;
  bool quoted = false;
  if (pos < n && in[pos] == '"') {
    quoted = true;
    ++pos;
    for (;;) {
      if (pos == n) return fail(in, AddrError::bad_quoted_string, pos);  // unterminated
      unsigned char c = octet(in, pos);
      if (c == '"') {
        ++pos;
        break;
      }
      if (c == '\\') {  // quoted-pairSMTP: ASCII only, RFC 6531 does not extend it
        ++pos;
        if (pos == n) return fail(in, AddrError::bad_quoted_string, pos);
        c = octet(in, pos);
        if (c >= 0x80 && !allow_utf8) return fail(in, AddrError::utf8_not_allowed, pos);
        if (c < 32 || c > 126) return fail(in, AddrError::bad_quoted_string, pos);
        ++pos;
      } else if (c >= 0x80) {
        const Step u = take_utf8(in, pos, allow_utf8);
        if (u.error != AddrError::none) return fail(in, u.error, u.pos);
        pos = u.pos;
      } else if (has(c, kQtext)) {
        ++pos;
      } else {
        return fail(in, AddrError::bad_quoted_string, pos);
      }
    }
  } else {
    for (;;) {
      const size_t atom = pos;
      while (pos < n) {
        const unsigned char c = octet(in, pos);
        if (c >= 0x80) {
          const Step u = take_utf8(in, pos, allow_utf8);
          if (u.error != AddrError::none) return fail(in, u.error, u.pos);
          pos = u.pos;
        } else if (has(c, kAtext)) {
          ++pos;
        } else {
          break;
        }
      }
      if (pos == atom) {
        const bool empty = pos == local_start && pos < n && (in[pos] == '@' || in[pos] == '>');
        return fail(in, empty ? AddrError::empty_local_part : AddrError::bad_local_part, pos);
      }
      if (pos < n && in[pos] == '.') {
        ++pos;
        continue;
      }
      break;
    }
  }
  const size_t local_end = pos;
  if (local_end - local_start > kMaxLocal) {
    return fail(in, AddrError::local_part_too_long, local_start + kMaxLocal);
  }
  const std::string_view local = in.substr(local_start, local_end - local_start);

  if (pos < n && in[pos] == '>') {
    // RFC 5321 4.1.1.3: "<Postmaster>" without a domain, RCPT only, no source route.
    if (kind == PathKind::forward && !routed && !quoted && iequals_ascii(local, "postmaster")) {
      PathResult r;
      r.path.mailbox = local;
      r.path.local = local;
      r.path.is_postmaster = true;
      r.consumed = pos + 1;
      return r;
    }
    return fail(in, AddrError::missing_at, pos);
  }
  if (pos == n) return fail(in, AddrError::missing_close_bracket, pos);
  if (in[pos] != '@') return fail(in, AddrError::bad_local_part, pos);
  ++pos;

  // Domain / address-literal.
  const size_t domain_start = pos;
  const bool literal = pos < n && in[pos] == '[';
  const Step d = literal ? scan_literal(in, pos, allow_utf8) : scan_domain(in, pos, allow_utf8);
  if (d.error != AddrError::none) return fail(in, d.error, d.pos);
  pos = d.pos;
  if (pos == n || in[pos] == ' ') return fail(in, AddrError::missing_close_bracket, pos);
  if (in[pos] != '>') {
    if (octet(in, pos) >= 0x80 && !allow_utf8) return fail(in, AddrError::utf8_not_allowed, pos);
    return fail(in, literal ? AddrError::bad_address_literal : AddrError::bad_domain, pos);
  }
  const size_t consumed = pos + 1;
  if (consumed > kMaxPath) return fail(in, AddrError::path_too_long, kMaxPath);

  PathResult r;
  r.path.mailbox = in.substr(local_start, pos - local_start);
  r.path.local = local;
  r.path.domain = in.substr(domain_start, pos - domain_start);
  r.path.domain_is_literal = literal;
  r.path.has_utf8 = allow_utf8 && any_high(in.substr(0, consumed));
  r.consumed = consumed;
  return r;
}

bool is_valid_domain(std::string_view s, bool allow_utf8) {
  if (s.empty()) return false;
  const Step d = s[0] == '[' ? scan_literal(s, 0, allow_utf8) : scan_domain(s, 0, allow_utf8);
  return d.error == AddrError::none && d.pos == s.size();
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (octet(s, i) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = utf8_sequence(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string_view describe(AddrError e) {
  switch (e) {
    case AddrError::none: return "no error";
    case AddrError::missing_open_bracket: return "path does not start with '<'";
    case AddrError::missing_close_bracket: return "no closing '>'";
    case AddrError::bad_source_route: return "malformed source route";
    case AddrError::empty_local_part: return "empty local part";
    case AddrError::bad_local_part: return "invalid character in local part";
    case AddrError::bad_quoted_string: return "malformed quoted local part";
    case AddrError::local_part_too_long: return "local part longer than 64 octets";
    case AddrError::missing_at: return "no '@domain' in address";
    case AddrError::empty_domain: return "empty domain";
    case AddrError::bad_domain: return "invalid domain";
    case AddrError::label_too_long: return "domain label longer than 63 octets";
    case AddrError::domain_too_long: return "domain longer than 255 octets";
    case AddrError::bad_address_literal: return "invalid address literal";
    case AddrError::path_too_long: return "path longer than 256 octets";
    case AddrError::null_not_allowed: return "null path not allowed here";
    case AddrError::utf8_not_allowed: return "non-ascii address without smtputf8";
    case AddrError::bad_utf8: return "invalid utf-8 in address";
  }
  return "unknown address error";
}

}  // namespace ringmx
