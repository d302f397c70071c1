// RFC 5321 4.1.2 path and mailbox parser, with RFC 6531 UTF-8 when allowed.
// Pure: it reads a string_view and returns views into it; nothing allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringmx {

enum class PathKind : uint8_t {
  reverse,  // MAIL FROM: "<>" (null sender) is allowed
  forward,  // RCPT TO: "<postmaster>" without a domain is allowed
};

enum class AddrError : uint8_t {
  none,
  missing_open_bracket,   // path does not start with '<'
  missing_close_bracket,  // no '>' where the path should end
  bad_source_route,       // malformed "@a,@b:" prefix
  empty_local_part,
  bad_local_part,       // character not allowed in a dot-string
  bad_quoted_string,    // unterminated quote or bad character inside quotes
  local_part_too_long,  // > 64 octets
  missing_at,           // no '@domain'
  empty_domain,
  bad_domain,       // character or label shape not allowed
  label_too_long,   // a label > 63 octets
  domain_too_long,  // > 255 octets
  bad_address_literal,
  path_too_long,     // > 256 octets including the brackets
  null_not_allowed,  // "<>" as a recipient
  utf8_not_allowed,  // non-ASCII without SMTPUTF8
  bad_utf8,          // invalid UTF-8 sequence
};

struct Path {
  std::string_view mailbox;  // "local@domain" as written, route and brackets removed; empty for <>
  std::string_view local;    // as written (quotes kept)
  std::string_view domain;   // as written; for literals includes the brackets
  bool is_null = false;      // "<>"
  bool is_postmaster = false;  // "<postmaster>" without a domain (RCPT only)
  bool domain_is_literal = false;
  bool has_utf8 = false;  // any octet >= 0x80
};

struct PathResult {
  Path path;
  AddrError error = AddrError::none;
  size_t consumed = 0;   // octets of input up to and including the closing '>'
  size_t error_pos = 0;  // offset of the offending octet when error != none
  bool ok() const { return error == AddrError::none; }
};

// Parses a path at the start of `in` (which begins with '<'). Whatever follows
// the closing '>' (ESMTP parameters) is left to the caller via `consumed`.
PathResult parse_path(std::string_view in, PathKind kind, bool allow_utf8);

// True when `s` is a syntactically valid domain (RFC 5321 Domain, or with
// allow_utf8 a domain of U-labels), or an address literal in brackets.
bool is_valid_domain(std::string_view s, bool allow_utf8);

// Validates UTF-8 strictly: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::string_view s);

// Short human text for an error, for the reply ("local part too long").
std::string_view describe(AddrError e);

}  // namespace ringmx
