// Header sanity: the RFC 5322 3.6 rules an edge MX can check cheaply on a
// message's header section before it takes the message. A pure function of
// the octets and the options: the caller decides when to run it (at end of
// headers, or end of data) and what to answer; header_check_reply() is the
// answer this project gives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ringmx {

struct HeaderCheckOptions {
  bool require_from = true;  // RFC 5322 3.6: From is required
  // Date is required too (RFC 5322 3.6), but a message submitted without it
  // gets one from its MSA, and some older robots and gateways still send
  // without; off unless asked for.
  bool require_date = false;
  // At most one each of Date, From, Sender, Reply-To, To, Cc, Bcc,
  // Message-ID, In-Reply-To, References, Subject (RFC 5322 3.6 table).
  bool reject_duplicates = true;
  // More Received fields than this is a loop (limits.max_received_headers:
  // the same number the session's loop check uses).
  uint32_t max_received = 50;
  // Work bound: only this many octets of the message are looked at.
  size_t max_header_bytes = size_t{256} * 1024;
};

enum class HeaderProblem : uint8_t {
  none,
  missing_from,
  missing_date,
  duplicate_field,    // `field` says which
  too_many_received,  // more than max_received
};

struct HeaderCheckResult {
  HeaderProblem problem = HeaderProblem::none;
  // duplicate_field: the field as RFC 5322 spells it ("Message-ID").
  std::string_view field;
  // duplicate_field, too_many_received: the 1-based line of the field that
  // broke the rule (its first line, when folded). 0 otherwise.
  uint32_t line = 0;
  // The scan reached max_header_bytes before the end of the header section:
  // what it saw was checked, but a missing From or Date is not reported
  // (they may come later), only a duplicate or a Received count over the
  // limit. A line is looked at only when its LF is within the bound (or it
  // ends the message).
  bool truncated = false;
  // Octets of the header section, its closing empty line included (the whole
  // message when it is all header). Set when the scan reached the end of the
  // section; 0 when it stopped at a problem or at the bound.
  size_t header_bytes = 0;

  bool ok() const { return problem == HeaderProblem::none; }
};

// Checks the header section at the start of `message` (CRLF lines; a bare LF
// ends a line too, and a CR before it is not part of the line). The section
// ends at the first empty line, or with the message. Field names compare
// case-insensitively; a line starting with a space or tab continues the
// field before it. A line that is not a field ("name:" with a name of
// printable ASCII, no spaces before the colon except RFC 5322 obsolete-
// syntax white space) is ignored. The first problem in header order wins:
// a duplicate or the Received field past the limit, as the scan meets it;
// then a missing From, then a missing Date.
HeaderCheckResult check_headers(std::string_view message, const HeaderCheckOptions& options);

// The reply for a problem: 550 5.6.0 for the field rules (RFC 3463: a
// content problem), 554 5.4.6 for too many Received fields (a loop, as the
// session's own check answers). `code` 0 for none.
struct HeaderReply {
  uint16_t code = 0;
  std::string_view enhanced;
  std::string text;
};
HeaderReply header_check_reply(const HeaderCheckResult& result);

}  // namespace ringmx
