// SMTP command line recognition: the verb (matched case-insensitively without
// allocating) and a view of its argument. Lines arrive without CRLF.
#pragma once

#include <cstdint>
#include <string_view>

namespace ringmx {

enum class Verb : uint8_t {
  unknown,
  ehlo,
  helo,
  mail,
  rcpt,
  data,
  bdat,
  rset,
  noop,
  quit,
  vrfy,
  expn,
  help,
  starttls,
  auth,
  xclient,  // Postfix's XCLIENT (core/xclient.h)
};

struct Command {
  Verb verb = Verb::unknown;
  std::string_view arg;    // after the verb and one or more spaces; trailing spaces kept off
  bool had_space = false;  // the verb was followed by a space (or arguments)
};

// `line` excludes the line ending.
Command parse_command(std::string_view line);

// Case-insensitive ASCII prefix test ("FROM:" in "from:<a@b>").
bool starts_with_nocase(std::string_view s, std::string_view prefix);
bool equals_nocase(std::string_view a, std::string_view b);

std::string_view verb_name(Verb v);

}  // namespace ringmx
