// The spool file format, versions 1 and 2 (docs/spool.md): writing and
// parsing one record. Start-up recovery is pipeline/spool_recovery.cc.
//
// Contract: append_spool_envelope, spool_trailer and the parsers are pure (no
// I/O; no exception but std::bad_alloc). Whatever the writer emits for a
// non-empty queue id parses back to the same values, except octets that would
// break the format, which become '?': CR, LF and NUL anywhere; also control
// octets and spaces inside space-separated tokens (queue id, TLS names,
// parameter values); also '"', '\\' and '>' of an address whose quoting is
// unbalanced. The parser is strict otherwise: an unknown or repeated key, a
// missing required key, a message that is not exactly message-size octets, or
// (version 2) a trailer whose CRC32C does not match the record is an error,
// so a format change or a torn write is noticed instead of guessed at. Every
// error says what kind it is (SpoolDefect), so recovery can tell an
// unfinished append from damage.
#include "pipeline/spool_format.h"

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/crc32c.h"
#include "pipeline/spool_internal.h"

namespace ringmx {

namespace {

// The first line of a record, with its LF: one per version read, the last
// one written. A version-1 record has no trailer and no checksum.
constexpr std::string_view kHeaderV1 = "ringmx-spool 1\n";
constexpr std::string_view kHeaderV2 = "ringmx-spool 2\n";
static_assert(kSpoolVersion == 2);
constexpr std::string_view kTrailerTag = "crc32c ";

using spool_internal::cat;
using spool_internal::kFinalSuffix;
using spool_internal::kTempSuffix;

// ---------------------------------------------------------------- writing

constexpr bool breaks_line(char c) {
  return c == '\r' || c == '\n' || c == '\0';
}

// Tokens are separated by single spaces, so a space inside one would split it.
constexpr bool breaks_token(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7F;
}

void append_clean(std::string& out, std::string_view value) {
  for (char c : value) out.push_back(breaks_line(c) ? '?' : c);
}

void append_token(std::string& out, std::string_view value) {
  for (char c : value) out.push_back(breaks_token(c) ? '?' : c);
}

template <typename Int>
void append_number(std::string& out, Int value) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, res.ptr);
}

// Writes "key: value\n", or "key:\n" for an empty value so no line ends in a
// space that an editor might strip.
void append_line(std::string& out, std::string_view key, std::string_view value) {
  out.append(key);
  out.push_back(':');
  if (!value.empty()) {
    out.push_back(' ');
    append_clean(out, value);
  }
  out.push_back('\n');
}

// Index just past the '>' that closes an address whose first octet is at
// `pos` (just after '<'), or npos. Quoted local parts may hold spaces and '>'
// (RFC 5321 qtextSMTP), so the scan honours quotes and backslash escapes.
size_t address_end(std::string_view s, size_t pos) {
  bool quoted = false;
  for (size_t i = pos; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;  // the escaped octet, whatever it is
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// True when address_end would stop exactly after "<address>": no '>' outside
// quotes, every quote closed. The same scan as above, without allocating on
// the per-message path. CR/LF/NUL replacement cannot change the outcome.
bool address_round_trips(std::string_view address) {
  bool quoted = false;
  for (size_t i = 0; i < address.size(); ++i) {
    const char c = address[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return false;
    }
  }
  return !quoted;
}

void append_address(std::string& out, std::string_view address) {
  out.push_back('<');
  if (address_round_trips(address)) {
    append_clean(out, address);
  } else {
    // Unbalanced quoting would make the parser run past the '>'; validated
    // input never gets here, but a spool file must always parse back.
    for (char c : address) {
      out.push_back(breaks_line(c) || c == '"' || c == '\\' || c == '>' ? '?' : c);
    }
  }
  out.push_back('>');
}

void append_param(std::string& out, std::string_view keyword, std::string_view value) {
  out.push_back(' ');
  out.append(keyword);
  out.push_back('=');
  append_token(out, value);
}

// ---------------------------------------------------------------- parsing

template <typename Int>
bool parse_int(std::string_view s, Int& out) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  const auto res = std::from_chars(s.data(), end, out);
  return res.ec == std::errc() && res.ptr == end;
}

enum class Key : uint8_t {
  queue_id,
  received_at,
  client,
  helo,
  ptr,
  protocol,
  tls,
  mail_from,
  rcpt_to,
  message_size,
  count
};

constexpr std::string_view kKeyNames[] = {
    "queue-id", "received-at", "client",    "helo",    "ptr",
    "protocol", "tls",         "mail-from", "rcpt-to", "message-size",
};
static_assert(std::size(kKeyNames) == static_cast<size_t>(Key::count));

constexpr uint32_t bit(Key k) {
  return 1u << static_cast<unsigned>(k);
}

constexpr uint32_t kRequired = bit(Key::queue_id) | bit(Key::received_at) | bit(Key::client) |
                               bit(Key::protocol) | bit(Key::mail_from) | bit(Key::rcpt_to) |
                               bit(Key::message_size);

Key find_key(std::string_view name) {
  for (size_t i = 0; i < std::size(kKeyNames); ++i) {
    if (kKeyNames[i] == name) return static_cast<Key>(i);
  }
  return Key::count;
}

// Splits "<address> P1 P2" into the address (without brackets) and the
// parameter list after the '>' (empty, or starting with one space).
bool split_path(std::string_view value, std::string& address, std::string_view& params,
                std::string& error) {
  if (value.empty() || value.front() != '<') {
    error = "address must start with '<'";
    return false;
  }
  const size_t end = address_end(value, 1);
  if (end == std::string_view::npos) {
    error = "address has no closing '>'";
    return false;
  }
  address.assign(value.substr(1, end - 2));
  params = value.substr(end);
  if (!params.empty() && params.front() != ' ') {
    error = "text after '>' is not a parameter";
    return false;
  }
  return true;
}

// Calls fn(keyword, value, has_value) for every parameter of " K=V K2 ...";
// stops at the first false it returns.
template <typename Fn>
bool for_each_param(std::string_view params, std::string& error, Fn fn) {
  while (!params.empty()) {
    params.remove_prefix(1);  // the separating space
    const size_t space = params.find(' ');
    const std::string_view token = params.substr(0, space);
    params = space == std::string_view::npos ? std::string_view{} : params.substr(space);
    if (token.empty()) {
      error = "empty parameter (two spaces or a trailing space)";
      return false;
    }
    const size_t eq = token.find('=');
    const std::string_view keyword = token.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value = has_value ? token.substr(eq + 1) : std::string_view{};
    if (!fn(keyword, value, has_value)) return false;
  }
  return true;
}

std::string param_error(std::string_view what, std::string_view keyword) {
  std::string e(what);
  e.append(" parameter ");
  e.append(keyword);
  return e;
}

bool parse_mail_from(std::string_view value, SpoolEntry& out, std::string& error) {
  std::string_view params;
  if (!split_path(value, out.sender, params, error)) return false;
  MailParams& mail = out.mail;
  bool have_body = false;
  bool have_ret = false;
  bool have_envid = false;
  const auto fail = [&error](std::string_view what, std::string_view key) {
    error = param_error(what, key);
    return false;
  };
  return for_each_param(params, error, [&](std::string_view key, std::string_view v, bool has_v) {
    if (key == "SIZE") {
      if (mail.has_size) return fail("duplicate", key);
      if (!has_v || !parse_int(v, mail.size)) return fail("bad", key);
      mail.has_size = true;
    } else if (key == "BODY") {
      if (have_body) return fail("duplicate", key);
      if (v == "7BIT") {
        mail.body = BodyType::seven_bit;
      } else if (v == "8BITMIME") {
        mail.body = BodyType::eight_bit_mime;
      } else if (v == "BINARYMIME") {
        mail.body = BodyType::binary_mime;
      } else {
        return fail("bad", key);
      }
      have_body = true;
    } else if (key == "SMTPUTF8") {
      if (mail.smtputf8) return fail("duplicate", key);
      if (has_v) return fail("bad", key);
      mail.smtputf8 = true;
    } else if (key == "RET") {
      if (have_ret) return fail("duplicate", key);
      if (v == "FULL") {
        mail.ret = DsnRet::full;
      } else if (v == "HDRS") {
        mail.ret = DsnRet::hdrs;
      } else {
        return fail("bad", key);
      }
      have_ret = true;
    } else if (key == "ENVID") {
      if (have_envid) return fail("duplicate", key);
      if (v.empty()) return fail("bad", key);
      mail.envid.assign(v);
      have_envid = true;
    } else {
      return fail("unknown", key);
    }
    return true;
  });
}

bool parse_notify(std::string_view v, uint8_t& notify) {
  if (v == "NEVER") {
    notify = notify_never;
    return true;
  }
  notify = notify_none;
  while (true) {
    const size_t comma = v.find(',');
    const std::string_view item = v.substr(0, comma);
    const uint8_t bit = item == "SUCCESS"   ? notify_success
                        : item == "FAILURE" ? notify_failure
                        : item == "DELAY"   ? notify_delay
                                            : 0;
    if (bit == 0 || (notify & bit) != 0) return false;
    notify = static_cast<uint8_t>(notify | bit);
    if (comma == std::string_view::npos) return true;
    v.remove_prefix(comma + 1);
  }
}

bool parse_rcpt_to(std::string_view value, SpoolEntry& out, std::string& error) {
  Recipient& rcpt = out.recipients.emplace_back();
  std::string_view params;
  if (!split_path(value, rcpt.address, params, error)) return false;
  RcptParams& p = rcpt.params;
  bool have_orcpt = false;
  const auto fail = [&error](std::string_view what, std::string_view key) {
    error = param_error(what, key);
    return false;
  };
  return for_each_param(params, error, [&](std::string_view key, std::string_view v, bool) {
    if (key == "NOTIFY") {
      if (p.notify != notify_none) return fail("duplicate", key);
      if (!parse_notify(v, p.notify)) return fail("bad", key);
    } else if (key == "ORCPT") {
      if (have_orcpt) return fail("duplicate", key);
      const size_t semi = v.find(';');
      if (semi == 0 || semi == std::string_view::npos) return fail("bad", key);
      p.orcpt_type.assign(v.substr(0, semi));
      p.orcpt.assign(v.substr(semi + 1));
      have_orcpt = true;
    } else {
      return fail("unknown", key);
    }
    return true;
  });
}

bool parse_client(std::string_view value, SpoolEntry& out) {
  constexpr std::string_view kSep = " port ";
  const size_t sep = value.rfind(kSep);
  if (sep == std::string_view::npos) return false;
  out.client_ip.assign(value.substr(0, sep));
  return parse_int(value.substr(sep + kSep.size()), out.client_port);
}

// Sets `error` to why the value is bad, or leaves it empty.
void parse_value(Key key, std::string_view value, SpoolEntry& out, std::string& error) {
  switch (key) {
    case Key::queue_id:
      if (value.empty()) error = "empty";
      out.queue_id.assign(value);
      break;
    case Key::received_at:
      if (!parse_int(value, out.received_at)) error = "not a number";
      break;
    case Key::client:
      if (!parse_client(value, out)) error = "expected \"ADDRESS port N\"";
      break;
    case Key::helo: out.helo.assign(value); break;
    case Key::ptr: out.ptr.assign(value); break;
    case Key::protocol: out.protocol.assign(value); break;
    case Key::tls: {
      const size_t space = value.find(' ');
      out.tls_version.assign(value.substr(0, space));
      if (space != std::string_view::npos) out.tls_cipher.assign(value.substr(space + 1));
      if (out.tls_version.empty()) error = "no TLS version";
      break;
    }
    case Key::mail_from: parse_mail_from(value, out, error); break;
    case Key::rcpt_to: parse_rcpt_to(value, out, error); break;
    case Key::message_size:
      if (!parse_int(value, out.message_size)) error = "not a number";
      break;
    case Key::count: error = "unknown key"; break;
  }
}

std::string line_error(size_t line_no, std::string_view what) {
  std::string e = "line ";
  append_number(e, line_no);
  e.append(": ");
  e.append(what);
  return e;
}

}  // namespace

std::string spool_size_digits(uint64_t size) {
  std::string digits(kSpoolSizeDigits, '0');
  for (size_t i = kSpoolSizeDigits; size != 0 && i > 0; size /= 10) {
    digits[--i] = static_cast<char>('0' + size % 10);
  }
  return digits;
}

size_t append_spool_envelope_unsized(std::string& out, const Message& msg,
                                     const SpoolClient& client) {
  append_spool_envelope(out, msg, client, 0);
  // The block ends "message-size: 0\n\n": widen the value to its fixed width.
  const size_t at = out.size() - 3;
  out.replace(at, 1, spool_size_digits(0));
  return at;
}

void append_spool_envelope(std::string& out, const Message& msg, const SpoolClient& client,
                           uint64_t message_size) {
  const Envelope& env = msg.envelope;
  out.append(kHeaderV2);
  out.append("queue-id: ");
  append_token(out, env.queue_id);
  out.append("\nreceived-at: ");
  append_number(out, msg.received_at_unix);
  out.append("\nclient: ");
  append_clean(out, client.ip);
  out.append(" port ");
  append_number(out, client.port);
  out.push_back('\n');
  append_line(out, "helo", client.helo);
  if (!client.ptr.empty()) append_line(out, "ptr", client.ptr);
  append_line(out, "protocol", client.protocol);
  if (!client.tls_version.empty()) {
    out.append("tls: ");
    append_token(out, client.tls_version);
    if (!client.tls_cipher.empty()) {
      out.push_back(' ');
      append_token(out, client.tls_cipher);
    }
    out.push_back('\n');
  }

  const MailParams& mail = env.mail;
  out.append("mail-from: ");
  append_address(out, env.sender);
  if (mail.has_size) {
    out.append(" SIZE=");
    append_number(out, mail.size);
  }
  if (mail.body != BodyType::unspecified) append_param(out, "BODY", body_type_name(mail.body));
  if (mail.smtputf8) out.append(" SMTPUTF8");
  if (mail.ret != DsnRet::unspecified) append_param(out, "RET", dsn_ret_name(mail.ret));
  if (!mail.envid.empty()) append_param(out, "ENVID", mail.envid);
  out.push_back('\n');

  for (const Recipient& r : env.recipients) {
    out.append("rcpt-to: ");
    append_address(out, r.address);
    append_notify_param(out, r.params.notify);
    if (!r.params.orcpt_type.empty()) {
      out.append(" ORCPT=");
      append_token(out, r.params.orcpt_type);
      out.push_back(';');
      append_token(out, r.params.orcpt);
    }
    out.push_back('\n');
  }

  out.append("message-size: ");
  append_number(out, message_size);
  out.append("\n\n");
}

namespace {

constexpr bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// True when `t` (at most kSpoolTrailerSize octets) could be the start of a
// trailer: "crc32c ", 8 lowercase hex digits, LF.
bool trailer_prefix_ok(std::string_view t) {
  for (size_t i = 0; i < t.size(); ++i) {
    const bool ok = i < kTrailerTag.size()      ? t[i] == kTrailerTag[i]
                    : i < kSpoolTrailerSize - 1 ? is_lower_hex(t[i])
                                                : t[i] == '\n';
    if (!ok) return false;
  }
  return true;
}

uint32_t hex_value(std::string_view digits) {
  uint32_t v = 0;
  for (char c : digits) v = (v << 4) | static_cast<uint32_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  return v;
}

std::string hex8(uint32_t v) {
  const SpoolTrailer t = spool_trailer(v);
  return {t.data() + kTrailerTag.size(), 8};
}

// The header line's version (1 or 2), or 0 with `defect` set when the data
// does not start with a line we read: `truncated` when it could still be
// the start of one (a torn append), `malformed` otherwise.
uint32_t header_version(std::string_view data, SpoolDefect& defect, std::string& error) {
  for (const auto& [header, version] : {std::pair{kHeaderV1, 1u}, std::pair{kHeaderV2, 2u}}) {
    if (data.starts_with(header)) return version;
    if (data.size() < header.size() && header.starts_with(data)) {
      defect = SpoolDefect::truncated;
      error = data.empty() ? "truncated: empty file" : "truncated: envelope block has no end";
      return 0;
    }
  }
  defect = SpoolDefect::malformed;
  const std::string_view line = data.substr(0, data.find('\n'));
  const bool printable = std::all_of(line.begin(), line.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7F;
  });
  error =
      line.starts_with("ringmx-spool ") && printable && line.size() <= 40
          ? cat({"unsupported format \"", line,
                 "\", want \"ringmx-spool 1\" or \"ringmx-spool 2\""})
          : "not a ringmx spool file (first line is not \"ringmx-spool 1\" or \"ringmx-spool 2\")";
  return 0;
}

}  // namespace

SpoolTrailer spool_trailer(uint32_t crc) {
  constexpr char kDigits[] = "0123456789abcdef";
  SpoolTrailer t{};
  std::copy(kTrailerTag.begin(), kTrailerTag.end(), t.begin());
  for (size_t i = 0; i < 8; ++i) t[kTrailerTag.size() + i] = kDigits[(crc >> (28 - 4 * i)) & 0xF];
  t[kSpoolTrailerSize - 1] = '\n';
  return t;
}

SpoolDefect parse_spool_record(std::string_view data, SpoolEntry& out, std::string& error,
                               size_t& consumed) {
  out = SpoolEntry{};
  error.clear();
  SpoolDefect defect = SpoolDefect::none;
  out.version = header_version(data, defect, error);
  if (out.version == 0) return defect;
  size_t pos = (out.version == 1 ? kHeaderV1 : kHeaderV2).size();
  size_t line_no = 1;
  uint32_t seen = 0;
  while (true) {
    const size_t nl = data.find('\n', pos);
    if (nl == std::string_view::npos) {
      error = "truncated: envelope block has no end";
      return SpoolDefect::truncated;
    }
    const std::string_view line = data.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.find_first_of(std::string_view("\r\0", 2)) != std::string_view::npos) {
      error = line_error(line_no, "CR or NUL in the envelope block");
      return SpoolDefect::malformed;
    }
    if (line.empty()) break;

    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      error = line_error(line_no, "expected \"key: value\"");
      return SpoolDefect::malformed;
    }
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    if (!value.empty()) {
      if (value.front() != ' ') {
        error = line_error(line_no, "expected a space after ':'");
        return SpoolDefect::malformed;
      }
      value.remove_prefix(1);
    }
    const Key key = find_key(name);
    if (key == Key::count) {
      error = line_error(line_no, cat({"unknown key \"", name, "\""}));
      return SpoolDefect::malformed;
    }
    if ((seen & bit(key)) != 0 && key != Key::rcpt_to) {
      error = line_error(line_no, cat({"duplicate key ", name}));
      return SpoolDefect::malformed;
    }
    seen |= bit(key);
    std::string why;
    parse_value(key, value, out, why);
    if (!why.empty()) {
      error = line_error(line_no, cat({name, ": ", why}));
      return SpoolDefect::malformed;
    }
  }

  if ((seen & kRequired) != kRequired) {
    error = "missing key";
    for (size_t i = 0; i < std::size(kKeyNames); ++i) {
      if ((kRequired & ~seen & bit(static_cast<Key>(i))) == 0) continue;
      error.push_back(' ');
      error.append(kKeyNames[i]);
    }
    return SpoolDefect::malformed;
  }

  const uint64_t have = data.size() - pos;
  if (have < out.message_size) {
    error = "truncated: ";
    append_number(error, have);
    error.append(" of ");
    append_number(error, out.message_size);
    error.append(" octets");
    return SpoolDefect::truncated;
  }
  out.message = data.substr(pos, static_cast<size_t>(out.message_size));
  const size_t end = pos + static_cast<size_t>(out.message_size);
  if (out.version == 1) {
    consumed = end;
    return SpoolDefect::none;
  }

  // Version 2: the trailer, then the checksum of everything before it. This
  // is what catches a record whose length reached the disk and whose data
  // did not (zeros, or old blocks, after a power cut).
  const std::string_view trailer = data.substr(end, kSpoolTrailerSize);
  if (!trailer_prefix_ok(trailer)) {
    error = "bad trailer (not \"crc32c XXXXXXXX\" after the message)";
    return SpoolDefect::checksum;
  }
  if (trailer.size() < kSpoolTrailerSize) {
    error = "truncated: trailer: ";
    append_number(error, trailer.size());
    error.append(" of ");
    append_number(error, kSpoolTrailerSize);
    error.append(" octets");
    return SpoolDefect::truncated;
  }
  const uint32_t stored = hex_value(trailer.substr(kTrailerTag.size(), 8));
  const uint32_t actual = crc32c(data.substr(0, end));
  if (stored != actual) {
    error =
        cat({"checksum mismatch: trailer says ", hex8(stored), ", record sums to ", hex8(actual)});
    return SpoolDefect::checksum;
  }
  consumed = end + kSpoolTrailerSize;
  return SpoolDefect::none;
}

bool parse_spool_file(std::string_view data, SpoolEntry& out, std::string& error) {
  size_t consumed = 0;
  if (parse_spool_record(data, out, error, consumed) != SpoolDefect::none) return false;
  if (consumed != data.size()) {
    error = "trailing data: ";
    append_number(error, data.size() - consumed);
    error.append(" octets after the record");
    return false;
  }
  return true;
}

bool parse_spool_records(std::string_view data, std::vector<SpoolEntry>& out, std::string& error) {
  out.clear();
  size_t pos = 0;
  do {
    SpoolEntry e;
    size_t consumed = 0;
    if (parse_spool_record(data.substr(pos), e, error, consumed) != SpoolDefect::none) {
      error = cat({"record ", std::to_string(out.size() + 1), ": ", error});
      return false;
    }
    out.push_back(std::move(e));
    pos += consumed;
  } while (pos < data.size());
  return true;
}

std::string spool_final_name(std::string_view queue_id) {
  std::string name(queue_id);
  name.append(kFinalSuffix);
  return name;
}

std::string spool_temp_name(std::string_view queue_id) {
  std::string name(queue_id);
  name.append(kTempSuffix);
  return name;
}

}  // namespace ringmx
