// ESMTP parameters of MAIL FROM and RCPT TO (RFC 5321 4.1.2, RFC 1870, RFC 6152,
// RFC 3030, RFC 6531, RFC 3461, RFC 6533).
//
// Contract: pure functions over a string_view. No I/O, no exceptions, no
// allocation beyond assigning the strings kept in MailParams/RcptParams; every
// index is checked against the view's size. `out` is reset first and may be
// partially filled when an error is returned.
//
// Order of checks, first failure wins:
//   1. the whole list against the esmtp-param grammar (tab, control octets, bad
//      keyword, "=" with nothing after it, '=' or 8-bit octets in a value):
//      501 5.5.4. 8-bit octets pass here only in an ORCPT value, whose own
//      check then allows them for the utf-8 address type with SMTPUTF8 on;
//   2. each parameter left to right: unknown, disabled in Extensions or meant
//      for the other command: 555 5.5.4; given twice: 501 5.5.4; bad value:
//      501 5.5.4;
//   3. a SIZE above a non-zero max_size: 552 5.3.4, only when nothing else is
//      wrong, so a malformed command is never answered with a size refusal.
// Stricter than bare xtext, per RFC 3461 4.4 (the decoded ENVID must be
// printable US-ASCII): a "+XX" in ENVID must encode 0x20..0x7E. ORCPT is
// judged by what its address decodes to (UTF-8 without controls, see
// decode_orcpt_into), as deployed MTAs send it: so no encoded CR, LF or NUL
// reaches a relay or a DSN either way.
#include "core/esmtp_params.h"

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string_view>

namespace ringmx {

namespace {

enum class Keyword : uint8_t { size, body, smtputf8, ret, envid, notify, orcpt, auth, unknown };

struct KeywordInfo {
  std::string_view name;       // upper case, as compared
  std::string_view malformed;  // 501 text for a bad or missing value
  std::string_view duplicate;  // 501 text when given twice
};

// Indexed by Keyword (all but unknown).
constexpr KeywordInfo kKeywords[] = {
    {"SIZE", "SIZE parameter malformed", "Duplicate SIZE parameter"},
    {"BODY", "BODY parameter malformed", "Duplicate BODY parameter"},
    {"SMTPUTF8", "SMTPUTF8 parameter takes no value", "Duplicate SMTPUTF8 parameter"},
    {"RET", "RET parameter malformed", "Duplicate RET parameter"},
    {"ENVID", "ENVID parameter malformed", "Duplicate ENVID parameter"},
    {"NOTIFY", "NOTIFY parameter malformed", "Duplicate NOTIFY parameter"},
    {"ORCPT", "ORCPT parameter malformed", "Duplicate ORCPT parameter"},
    {"AUTH", "AUTH parameter malformed", "Duplicate AUTH parameter"},
};
static_assert(std::size(kKeywords) == static_cast<size_t>(Keyword::unknown));

constexpr ParamError kMailSyntax{501, "5.5.4", "Syntax error in MAIL FROM parameters"};
constexpr ParamError kRcptSyntax{501, "5.5.4", "Syntax error in RCPT TO parameters"};
constexpr ParamError kMailUnknown{555, "5.5.4",
                                  "MAIL FROM parameters not recognized or not implemented"};
constexpr ParamError kRcptUnknown{555, "5.5.4",
                                  "RCPT TO parameters not recognized or not implemented"};
constexpr ParamError kTooBig{552, "5.3.4", "Message size exceeds fixed maximum message size"};

constexpr size_t kMaxSizeDigits = 20;     // RFC 1870: size-value = 1*20DIGIT
constexpr size_t kMaxEnvid = 100;         // RFC 3461 4.4
constexpr size_t kMaxOrcpt = 500;         // RFC 3461 4.2
constexpr size_t kMaxAuthParam = 500;     // an xtext mailbox, as ORCPT
constexpr size_t kMaxHexPointDigits = 6;  // RFC 6533 HEXPOINT, up to U+10FFFF

constexpr unsigned char octet(char c) {
  return static_cast<unsigned char>(c);
}
constexpr bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_alnum(unsigned char c) {
  return is_digit(c) || is_alpha(c);
}
constexpr bool is_upper_hex(unsigned char c) {
  return is_digit(c) || (c >= 'A' && c <= 'F');
}
constexpr uint32_t hex_value(unsigned char c) {
  return is_digit(c) ? static_cast<uint32_t>(c - '0') : static_cast<uint32_t>(c - 'A' + 10);
}
constexpr unsigned char to_upper(unsigned char c) {
  return c >= 'a' && c <= 'z' ? static_cast<unsigned char>(c - ('a' - 'A')) : c;
}
// C0, DEL and C1 controls.
constexpr bool is_control(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

// ASCII case-insensitive compare against an upper-case literal.
bool iequals(std::string_view s, std::string_view upper) {
  if (s.size() != upper.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (to_upper(octet(s[i])) != octet(upper[i])) return false;
  }
  return true;
}

// Takes the next SP-separated token off the front of `rest`; false when only
// spaces (or nothing) are left.
bool next_token(std::string_view& rest, std::string_view& token) {
  size_t start = 0;
  while (start < rest.size() && rest[start] == ' ') ++start;
  if (start == rest.size()) {
    rest = {};
    return false;
  }
  size_t end = rest.find(' ', start);
  if (end == std::string_view::npos) end = rest.size();
  token = rest.substr(start, end - start);
  rest = rest.substr(end);
  return true;
}

struct Param {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;  // an '=' was present
};

Param split_param(std::string_view token) {
  Param p;
  const size_t eq = token.find('=');
  if (eq == std::string_view::npos) {
    p.keyword = token;
  } else {
    p.keyword = token.substr(0, eq);
    p.value = token.substr(eq + 1);
    p.has_value = true;
  }
  return p;
}

Keyword classify(std::string_view keyword) {
  for (size_t i = 0; i < std::size(kKeywords); ++i) {
    if (iequals(keyword, kKeywords[i].name)) return static_cast<Keyword>(i);
  }
  return Keyword::unknown;
}

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool is_esmtp_keyword(std::string_view k) {
  if (k.empty() || !is_alnum(octet(k[0]))) return false;
  for (size_t i = 1; i < k.size(); ++i) {
    if (!is_alnum(octet(k[i])) && k[i] != '-') return false;
  }
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126); octets >= 0x80 pass when `allow_8bit`,
// left for the parameter's own check to judge.
bool is_esmtp_value(std::string_view v, bool allow_8bit) {
  if (v.empty()) return false;
  for (char ch : v) {
    const unsigned char c = octet(ch);
    if (c >= 0x80) {
      if (!allow_8bit) return false;
    } else if (c < 33 || c == '=' || c > 126) {
      return false;
    }
  }
  return true;
}

bool list_syntax_ok(std::string_view params) {
  std::string_view rest = params;
  std::string_view token;
  while (next_token(rest, token)) {
    const Param p = split_param(token);
    if (!is_esmtp_keyword(p.keyword)) return false;
    if (p.has_value && !is_esmtp_value(p.value, classify(p.keyword) == Keyword::orcpt)) {
      return false;
    }
  }
  return true;
}

// xtext (RFC 3461 4). With `printable`, a hexchar must encode 0x20..0x7E.
bool check_xtext(std::string_view s, bool printable) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = octet(s[i]);
    if (c == '+') {
      if (s.size() - i < 3) return false;
      const unsigned char hi = octet(s[i + 1]);
      const unsigned char lo = octet(s[i + 2]);
      if (!is_upper_hex(hi) || !is_upper_hex(lo)) return false;
      const uint32_t decoded = hex_value(hi) * 16 + hex_value(lo);
      if (printable && (decoded < 0x20 || decoded > 0x7E)) return false;
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return false;
    }
  }
  return true;
}

// Decodes the UTF-8 sequence starting at s[i] (s[i] >= 0x80) strictly, as
// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. Returns
// its length, 0 when it is invalid or truncated.
size_t decode_utf8(std::string_view s, size_t i, uint32_t& cp) {
  const unsigned char b0 = octet(s[i]);
  size_t len = 0;
  unsigned char lo = 0x80;  // range of the second octet; later ones are 80..BF
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1Fu;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0Fu;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07u;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    const unsigned char b = octet(s[i + k]);
    if (b < lo || b > hi) return 0;
    lo = 0x80;
    hi = 0xBF;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  return len;
}

// RFC 6533 utf-8-addr-xtext / utf-8-addr-unitext, kept simple but safe: ASCII
// 33..126 except '+', '=' and '\'; "\x{HEX}" with 1 to 6 upper-case hex digits
// naming a Unicode scalar value that is not a control; raw UTF-8 (only when
// `allow_raw_utf8`) naming a character that is not a control. Not empty.
bool is_valid_utf8_addr(std::string_view s, bool allow_raw_utf8) {
  if (s.empty()) return false;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = octet(s[i]);
    if (c >= 0x80) {
      if (!allow_raw_utf8) return false;
      uint32_t cp = 0;
      const size_t n = decode_utf8(s, i, cp);
      if (n == 0 || is_control(cp)) return false;
      i += n;
    } else if (c == '\\') {
      if (s.size() - i < 5 || s[i + 1] != 'x' || s[i + 2] != '{') return false;
      size_t j = i + 3;
      uint32_t cp = 0;
      size_t digits = 0;
      while (j < s.size() && digits < kMaxHexPointDigits && is_upper_hex(octet(s[j]))) {
        cp = cp * 16 + hex_value(octet(s[j]));
        ++j;
        ++digits;
      }
      if (digits == 0 || j >= s.size() || s[j] != '}') return false;
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || is_control(cp)) return false;
      i = j + 1;
    } else {
      if (c < 33 || c > 126 || c == '+' || c == '=') return false;
      ++i;
    }
  }
  return true;
}

// RFC 1870 size-value = 1*20DIGIT, also within uint64_t.
bool parse_size(std::string_view v, uint64_t& out) {
  if (v.empty() || v.size() > kMaxSizeDigits) return false;
  uint64_t n = 0;
  for (char ch : v) {
    const unsigned char c = octet(ch);
    if (!is_digit(c)) return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    n = n * 10 + d;
  }
  out = n;
  return true;
}

// NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE and DELAY without repeats.
bool parse_notify(std::string_view v, uint8_t& out) {
  unsigned flags = notify_none;
  size_t start = 0;
  while (true) {
    size_t end = v.find(',', start);
    if (end == std::string_view::npos) end = v.size();
    const std::string_view item = v.substr(start, end - start);
    unsigned bit = 0;
    if (iequals(item, "NEVER")) {
      bit = notify_never;
    } else if (iequals(item, "SUCCESS")) {
      bit = notify_success;
    } else if (iequals(item, "FAILURE")) {
      bit = notify_failure;
    } else if (iequals(item, "DELAY")) {
      bit = notify_delay;
    } else {
      return false;  // also an empty item: ",", "A,,B", trailing comma
    }
    if ((flags & bit) != 0) return false;
    flags |= bit;
    if (end == v.size()) break;
    start = end + 1;
  }
  if ((flags & notify_never) != 0 && flags != notify_never) return false;
  out = static_cast<uint8_t>(flags);
  return true;
}

constexpr bool is_hex(unsigned char c) {
  return is_upper_hex(c) || (c >= 'a' && c <= 'f');
}
constexpr uint32_t any_hex_value(unsigned char c) {
  return c >= 'a' ? static_cast<uint32_t>(c - 'a' + 10) : hex_value(c);
}

// Appends the UTF-8 form of a scalar value; false when it does not fit.
bool put_utf8(uint32_t cp, char* buf, size_t cap, size_t& n) {
  char tmp[4];
  size_t len = 0;
  if (cp < 0x80) {
    tmp[len++] = static_cast<char>(cp);
  } else if (cp < 0x800) {
    tmp[len++] = static_cast<char>(0xC0 | (cp >> 6));
    tmp[len++] = static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    tmp[len++] = static_cast<char>(0xE0 | (cp >> 12));
    tmp[len++] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    tmp[len++] = static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    tmp[len++] = static_cast<char>(0xF0 | (cp >> 18));
    tmp[len++] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    tmp[len++] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    tmp[len++] = static_cast<char>(0x80 | (cp & 0x3F));
  }
  if (cap - n < len) return false;
  for (size_t k = 0; k < len; ++k) buf[n++] = tmp[k];
  return true;
}

// What an address in ORCPT may decode to, whatever its encoding: UTF-8 (or
// plain ASCII) without a control character. CR, LF and NUL never reach a
// relay or a DSN.
bool is_carriable_address(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = octet(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7F) return false;
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t n = decode_utf8(s, i, cp);
    if (n == 0 || is_control(cp)) return false;
    i += n;
  }
  return true;
}

// Decodes an ORCPT address into buf[0..cap): RFC 6533 utf-8-addr-xtext or
// -unitext for the utf-8 type, xtext for every other type. Deployed MTAs are
// met where they are: Postfix sends a non-ASCII address as rfc822 xtext of
// its UTF-8 octets ("+C3+BC"), some senders use lower-case hex, and with
// SMTPUTF8 (`raw_utf8`) the address may come as raw UTF-8 in either type.
// Returns the decoded length, or cap + 1 when the value is malformed.
size_t decode_orcpt_into(std::string_view type, std::string_view addr, bool raw_utf8, char* buf,
                         size_t cap) {
  const size_t bad = cap + 1;
  if (addr.empty()) return bad;
  const bool utf8_type = iequals(type, "UTF-8");
  if (utf8_type && !is_valid_utf8_addr(addr, raw_utf8)) return bad;
  size_t n = 0;
  size_t i = 0;
  while (i < addr.size()) {
    const unsigned char c = octet(addr[i]);
    if (c >= 0x80) {
      if (!raw_utf8) return bad;
      if (n == cap) return bad;
      buf[n++] = addr[i++];  // checked as UTF-8 below
    } else if (utf8_type && c == '\\') {
      // \x{HEX}: is_valid_utf8_addr checked its shape and value.
      size_t j = i + 3;
      uint32_t cp = 0;
      while (addr[j] != '}') cp = cp * 16 + hex_value(octet(addr[j++]));
      if (!put_utf8(cp, buf, cap, n)) return bad;
      i = j + 1;
    } else if (!utf8_type && c == '+') {
      if (addr.size() - i < 3) return bad;
      const unsigned char hi = octet(addr[i + 1]);
      const unsigned char lo = octet(addr[i + 2]);
      if (!is_hex(hi) || !is_hex(lo) || n == cap) return bad;
      buf[n++] = static_cast<char>(any_hex_value(hi) * 16 + any_hex_value(lo));
      i += 3;
    } else {
      if (c < 33 || c > 126 || c == '=') return bad;
      if (n == cap) return bad;
      buf[n++] = addr[i++];
    }
  }
  return is_carriable_address(std::string_view(buf, n)) ? n : bad;
}

// ORCPT=addr-type;address (RFC 3461 4.2, RFC 6533 3). The value is kept as
// received, to be passed on; it is accepted when its address decodes to
// something a relay and a DSN can carry.
bool parse_orcpt(std::string_view v, bool smtputf8, RcptParams& out) {
  if (v.size() > kMaxOrcpt) return false;
  const size_t semi = v.find(';');
  if (semi == std::string_view::npos || semi == 0) return false;
  const std::string_view type = v.substr(0, semi);
  const std::string_view addr = v.substr(semi + 1);
  for (char ch : type) {
    if (!is_alnum(octet(ch)) && ch != '-') return false;
  }
  char decoded[kMaxOrcpt];
  if (decode_orcpt_into(type, addr, smtputf8, decoded, sizeof decoded) > sizeof decoded) {
    return false;
  }
  out.orcpt_type.assign(type.data(), type.size());
  out.orcpt.assign(addr.data(), addr.size());
  return true;
}

}  // namespace

bool decode_orcpt(std::string_view type, std::string_view value, bool smtputf8, std::string& out) {
  char decoded[kMaxOrcpt];
  if (value.size() > kMaxOrcpt) return false;
  const size_t n = decode_orcpt_into(type, value, smtputf8, decoded, sizeof decoded);
  if (n > sizeof decoded) return false;
  out.assign(decoded, n);
  return true;
}

namespace {

ParamError malformed(Keyword k) {
  return ParamError{501, "5.5.4", kKeywords[static_cast<size_t>(k)].malformed};
}

ParamError duplicate(Keyword k) {
  return ParamError{501, "5.5.4", kKeywords[static_cast<size_t>(k)].duplicate};
}

// Marks `k` seen; false when it already was.
bool first_time(unsigned& seen, Keyword k) {
  const unsigned bit = 1u << static_cast<unsigned>(k);
  if ((seen & bit) != 0) return false;
  seen |= bit;
  return true;
}

}  // namespace

bool is_valid_xtext(std::string_view s) {
  return check_xtext(s, /*printable=*/false);
}

ParamError parse_mail_params(std::string_view params, const Extensions& ext, uint64_t max_size,
                             MailParams& out, bool auth_param) {
  out = MailParams{};
  if (!list_syntax_ok(params)) return kMailSyntax;
  unsigned seen = 0;
  bool too_big = false;
  std::string_view rest = params;
  std::string_view token;
  while (next_token(rest, token)) {
    const Param p = split_param(token);
    const Keyword k = classify(p.keyword);
    bool enabled = false;
    switch (k) {
      case Keyword::size: enabled = ext.size; break;
      case Keyword::body:  // BODY comes with 8BITMIME and with BINARYMIME (CHUNKING)
        enabled = ext.eightbitmime || ext.chunking;
        break;
      case Keyword::smtputf8: enabled = ext.smtputf8; break;
      case Keyword::ret:
      case Keyword::envid: enabled = ext.dsn; break;
      case Keyword::auth: enabled = auth_param; break;
      case Keyword::notify:
      case Keyword::orcpt:
      case Keyword::unknown: break;
    }
    if (!enabled) return kMailUnknown;
    if (!first_time(seen, k)) return duplicate(k);
    switch (k) {
      case Keyword::size:
        if (!p.has_value || !parse_size(p.value, out.size)) return malformed(k);
        out.has_size = true;
        if (max_size != 0 && out.size > max_size) too_big = true;
        break;
      case Keyword::body:
        if (iequals(p.value, "7BIT")) {
          out.body = BodyType::seven_bit;
        } else if (iequals(p.value, "8BITMIME")) {
          if (!ext.eightbitmime) return kMailUnknown;
          out.body = BodyType::eight_bit_mime;
        } else if (iequals(p.value, "BINARYMIME")) {
          if (!ext.chunking) return kMailUnknown;
          out.body = BodyType::binary_mime;
        } else {
          return malformed(k);  // also BODY without a value
        }
        break;
      case Keyword::smtputf8:
        if (p.has_value) return malformed(k);
        out.smtputf8 = true;
        break;
      case Keyword::ret:
        if (iequals(p.value, "FULL")) {
          out.ret = DsnRet::full;
        } else if (iequals(p.value, "HDRS")) {
          out.ret = DsnRet::hdrs;
        } else {
          return malformed(k);
        }
        break;
      case Keyword::envid:
        if (!p.has_value || p.value.size() > kMaxEnvid || !check_xtext(p.value, true)) {
          return malformed(k);
        }
        out.envid.assign(p.value.data(), p.value.size());
        break;
      case Keyword::auth:
        // RFC 4954 5: the original submitter, xtext, or "<>". Checked and
        // not kept: ringmx vouches for no sender it did not authenticate.
        if (!p.has_value || p.value.empty() || p.value.size() > kMaxAuthParam ||
            !check_xtext(p.value, false)) {
          return malformed(k);
        }
        break;
      case Keyword::notify:
      case Keyword::orcpt:
      case Keyword::unknown: return kMailUnknown;  // not reached: refused above
    }
  }
  if (too_big) return kTooBig;
  return ParamError{};
}

ParamError parse_rcpt_params(std::string_view params, const Extensions& ext, RcptParams& out) {
  out = RcptParams{};
  if (!list_syntax_ok(params)) return kRcptSyntax;
  unsigned seen = 0;
  std::string_view rest = params;
  std::string_view token;
  while (next_token(rest, token)) {
    const Param p = split_param(token);
    const Keyword k = classify(p.keyword);
    if ((k != Keyword::notify && k != Keyword::orcpt) || !ext.dsn) return kRcptUnknown;
    if (!first_time(seen, k)) return duplicate(k);
    if (k == Keyword::notify) {
      if (!p.has_value || !parse_notify(p.value, out.notify)) return malformed(k);
    } else {
      if (!p.has_value || !parse_orcpt(p.value, ext.smtputf8, out)) return malformed(k);
    }
  }
  return ParamError{};
}

// ---- rendering (spool records, relays) ----

namespace {
struct NotifyName {
  std::string_view name;
  uint8_t bit;
};
constexpr NotifyName kNotifyNames[] = {
    {"SUCCESS", notify_success},
    {"FAILURE", notify_failure},
    {"DELAY", notify_delay},
};

}  // namespace

std::string_view body_type_name(BodyType body) {
  switch (body) {
    case BodyType::seven_bit: return "7BIT";
    case BodyType::eight_bit_mime: return "8BITMIME";
    case BodyType::binary_mime: return "BINARYMIME";
    case BodyType::unspecified: break;
  }
  return {};
}

std::string_view dsn_ret_name(DsnRet ret) {
  switch (ret) {
    case DsnRet::full: return "FULL";
    case DsnRet::hdrs: return "HDRS";
    case DsnRet::unspecified: break;
  }
  return {};
}

void append_notify_param(std::string& out, uint8_t notify) {
  // Unknown bits alone would write an empty NOTIFY= that does not parse back.
  constexpr uint8_t kKnown = notify_never | notify_success | notify_failure | notify_delay;
  if ((notify & kKnown) == 0) return;
  out.append(" NOTIFY=");
  if ((notify & notify_never) != 0) {
    out.append("NEVER");
    return;
  }
  bool first = true;
  for (const auto& n : kNotifyNames) {
    if ((notify & n.bit) == 0) continue;
    if (!first) out.push_back(',');
    out.append(n.name);
    first = false;
  }
}

}  // namespace ringmx
