// Verb lookup by a case-folded 4-octet compare; STARTTLS is the one long verb.
#include "core/command.h"

namespace ringmx {

namespace {

constexpr uint32_t word(const char (&s)[5]) {
  return static_cast<uint32_t>(static_cast<unsigned char>(s[0])) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[3])) << 24;
}

struct VerbEntry {
  uint32_t key;
  Verb verb;
};

// Keys are lower case; input is folded with |0x20, which maps letters only
// when all four octets are letters (checked before the compare).
constexpr VerbEntry kVerbs[] = {
    {word("ehlo"), Verb::ehlo}, {word("helo"), Verb::helo}, {word("mail"), Verb::mail},
    {word("rcpt"), Verb::rcpt}, {word("data"), Verb::data}, {word("bdat"), Verb::bdat},
    {word("rset"), Verb::rset}, {word("noop"), Verb::noop}, {word("quit"), Verb::quit},
    {word("vrfy"), Verb::vrfy}, {word("expn"), Verb::expn}, {word("help"), Verb::help},
    {word("auth"), Verb::auth},
};

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}

}  // namespace

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != lower(prefix[i])) return false;
  return true;
}

bool equals_nocase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && starts_with_nocase(a, b);
}

Command parse_command(std::string_view line) {
  Command cmd;
  size_t vlen = 0;
  while (vlen < line.size() && line[vlen] != ' ') ++vlen;
  std::string_view verb = line.substr(0, vlen);
  if (vlen == 4 && is_alpha(verb[0]) && is_alpha(verb[1]) && is_alpha(verb[2]) &&
      is_alpha(verb[3])) {
    const auto* b = reinterpret_cast<const unsigned char*>(verb.data());
    const uint32_t key = (static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
                          static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24) |
                         0x20202020u;
    for (const auto& e : kVerbs) {
      if (e.key == key) {
        cmd.verb = e.verb;
        break;
      }
    }
  } else if (equals_nocase(verb, "starttls")) {
    cmd.verb = Verb::starttls;
  } else if (equals_nocase(verb, "xclient")) {
    cmd.verb = Verb::xclient;
  }
  if (vlen < line.size()) {
    cmd.had_space = true;
    size_t a = vlen;
    while (a < line.size() && line[a] == ' ') ++a;
    size_t b = line.size();
    while (b > a && line[b - 1] == ' ') --b;
    cmd.arg = line.substr(a, b - a);
  }
  return cmd;
}

std::string_view verb_name(Verb v) {
  switch (v) {
    case Verb::ehlo: return "EHLO";
    case Verb::helo: return "HELO";
    case Verb::mail: return "MAIL";
    case Verb::rcpt: return "RCPT";
    case Verb::data: return "DATA";
    case Verb::bdat: return "BDAT";
    case Verb::rset: return "RSET";
    case Verb::noop: return "NOOP";
    case Verb::quit: return "QUIT";
    case Verb::vrfy: return "VRFY";
    case Verb::expn: return "EXPN";
    case Verb::help: return "HELP";
    case Verb::starttls: return "STARTTLS";
    case Verb::auth: return "AUTH";
    case Verb::xclient: return "XCLIENT";
    case Verb::unknown: break;
  }
  return "unknown";
}

}  // namespace ringmx
