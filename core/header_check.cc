// Contract: a message's octets + options -> the first RFC 5322 3.6 problem
// of its header section. Pure and bounded: reads at most max_header_bytes
// octets, allocates nothing while scanning.
#include "core/header_check.h"

#include <array>

namespace ringmx {

namespace {

// RFC 5322 3.6: the fields a message may carry at most once, as it spells them.
constexpr std::array<std::string_view, 11> kAtMostOnce = {
    "Date", "From",       "Sender",      "Reply-To",   "To",      "Cc",
    "Bcc",  "Message-ID", "In-Reply-To", "References", "Subject",
};
static_assert(kAtMostOnce.size() <= 16, "one bit each in a uint16_t");

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// The field name of a line that starts a field, or "" when the line is not
// one: RFC 5322 field-name = 1*(%d33-57 / %d59-126), then ":" (white space
// before the colon is the obsolete syntax of 4.5, still read).
std::string_view field_name(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return {};
  std::string_view name = line.substr(0, colon);
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
  if (name.empty()) return {};
  for (const char c : name) {
    if (c < 33 || c > 126) return {};
  }
  return name;
}

}  // namespace

HeaderCheckResult check_headers(std::string_view message, const HeaderCheckOptions& options) {
  HeaderCheckResult r;
  // Only the first max_header_bytes octets are read. A last line without its
  // LF is a whole line only when it is the end of the message itself.
  const bool whole = message.size() <= options.max_header_bytes;
  const std::string_view window = message.substr(0, options.max_header_bytes);
  bool have_from = false;
  bool have_date = false;
  uint32_t received = 0;
  uint16_t seen = 0;  // a bit per kAtMostOnce field
  uint32_t line_no = 0;
  bool ended = false;
  size_t pos = 0;
  while (pos < window.size()) {
    const size_t nl = window.find('\n', pos);
    if (nl == std::string_view::npos && !whole) break;  // cut by the bound
    const size_t next = nl == std::string_view::npos ? window.size() : nl + 1;
    std::string_view line = window.substr(pos, next - pos);
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    ++line_no;
    pos = next;
    if (line.empty()) {
      ended = true;
      break;
    }
    if (line.front() == ' ' || line.front() == '\t') continue;  // folded: the field before's
    const std::string_view name = field_name(line);
    if (name.empty()) continue;
    if (equals_nocase(name, "Received")) {
      if (++received > options.max_received) {
        r.problem = HeaderProblem::too_many_received;
        r.line = line_no;
        return r;
      }
      continue;
    }
    if (equals_nocase(name, "From")) have_from = true;
    if (equals_nocase(name, "Date")) have_date = true;
    if (!options.reject_duplicates) continue;
    for (size_t i = 0; i < kAtMostOnce.size(); ++i) {
      if (!equals_nocase(name, kAtMostOnce[i])) continue;
      const auto bit = static_cast<uint16_t>(1u << i);
      if ((seen & bit) != 0) {
        r.problem = HeaderProblem::duplicate_field;
        r.field = kAtMostOnce[i];
        r.line = line_no;
        return r;
      }
      seen = static_cast<uint16_t>(seen | bit);
      break;
    }
  }
  if (!ended && !whole) {
    r.truncated = true;  // what was not read may hold From and Date
    return r;
  }
  r.header_bytes = ended ? pos : message.size();  // not ended: the message is all header
  if (options.require_from && !have_from) {
    r.problem = HeaderProblem::missing_from;
  } else if (options.require_date && !have_date) {
    r.problem = HeaderProblem::missing_date;
  }
  return r;
}

HeaderReply header_check_reply(const HeaderCheckResult& result) {
  switch (result.problem) {
    case HeaderProblem::none: return {};
    case HeaderProblem::missing_from:
      return {550, "5.6.0", "Error: message has no From header field (RFC 5322 3.6)"};
    case HeaderProblem::missing_date:
      return {550, "5.6.0", "Error: message has no Date header field (RFC 5322 3.6)"};
    case HeaderProblem::duplicate_field:
      return {550, "5.6.0",
              "Error: message has more than one " + std::string(result.field) +
                  " header field (RFC 5322 3.6)"};
    case HeaderProblem::too_many_received:
      return {554, "5.4.6", "Error: too many hops (mail loop?)"};
  }
  return {};
}

}  // namespace ringmx
