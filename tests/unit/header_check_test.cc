#include "core/header_check.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>

namespace ringmx {
namespace {

// A well-formed header section (CRLF), then a body.
const std::string kGood =
    "Received: from a.test by mx.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "Subject: hello\r\n"
    "Message-ID: <1@example.org>\r\n"
    "\r\n"
    "From: not a header, the body\r\n"
    "From: again\r\n";

struct Case {
  const char* name;
  std::string message;
  HeaderProblem want;
  std::string_view field = {};  // duplicate_field
  uint32_t line = 0;            // duplicate_field, too_many_received
  bool truncated = false;
  HeaderCheckOptions options = {};
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.name;
}

HeaderCheckOptions with(void (*change)(HeaderCheckOptions&)) {
  HeaderCheckOptions o;
  change(o);
  return o;
}

const Case kCases[] = {
    // The rules, one by one.
    {"good", kGood, HeaderProblem::none},
    {"missing_from", "To: b@example.net\r\nDate: x\r\n\r\nbody\r\n", HeaderProblem::missing_from},
    {"missing_from_allowed",
     "To: b@example.net\r\n\r\nbody\r\n",
     HeaderProblem::none,
     {},
     0,
     false,
     with([](HeaderCheckOptions& o) { o.require_from = false; })},
    {"missing_date_off_by_default", "From: a@example.org\r\n\r\n", HeaderProblem::none},
    {"missing_date_required",
     "From: a@example.org\r\n\r\n",
     HeaderProblem::missing_date,
     {},
     0,
     false,
     with([](HeaderCheckOptions& o) { o.require_date = true; })},
    {"date_present_required",
     "From: a@example.org\r\nDate: x\r\n\r\n",
     HeaderProblem::none,
     {},
     0,
     false,
     with([](HeaderCheckOptions& o) { o.require_date = true; })},
    {"from_reported_before_date",
     "To: x\r\n\r\n",
     HeaderProblem::missing_from,
     {},
     0,
     false,
     with([](HeaderCheckOptions& o) { o.require_date = true; })},
    {"resent_from_is_not_from", "Resent-From: a@example.org\r\n\r\n", HeaderProblem::missing_from},
    {"from_in_body_does_not_count", "To: x\r\n\r\nFrom: a@example.org\r\n",
     HeaderProblem::missing_from},
    {"mbox_from_line_is_not_a_field",
     "From a@example.org Mon Jan  1 00:00:00 2024\r\nTo: x\r\n\r\n", HeaderProblem::missing_from},
    // Every at-most-once field, twice.
    {"dup_date", "From: a\r\nDate: 1\r\nDate: 2\r\n\r\n", HeaderProblem::duplicate_field, "Date",
     3},
    {"dup_from", "From: a\r\nFrom: b\r\n\r\n", HeaderProblem::duplicate_field, "From", 2},
    {"dup_sender", "From: a\r\nSender: a\r\nSender: b\r\n", HeaderProblem::duplicate_field,
     "Sender", 3},
    {"dup_reply_to", "From: a\r\nReply-To: a\r\nReply-To: b\r\n\r\n",
     HeaderProblem::duplicate_field, "Reply-To", 3},
    {"dup_to", "From: a\r\nTo: a\r\nCc: c\r\nTo: b\r\n\r\n", HeaderProblem::duplicate_field, "To",
     4},
    {"dup_cc", "From: a\r\nCc: a\r\nCc: b\r\n\r\n", HeaderProblem::duplicate_field, "Cc", 3},
    {"dup_bcc", "From: a\r\nBcc: a\r\nBcc: b\r\n\r\n", HeaderProblem::duplicate_field, "Bcc", 3},
    {"dup_message_id", "From: a\r\nMessage-ID: <1@x>\r\nMessage-Id: <2@x>\r\n\r\n",
     HeaderProblem::duplicate_field, "Message-ID", 3},
    {"dup_in_reply_to", "From: a\r\nIn-Reply-To: <1@x>\r\nIn-Reply-To: <2@x>\r\n\r\n",
     HeaderProblem::duplicate_field, "In-Reply-To", 3},
    {"dup_references", "From: a\r\nReferences: <1@x>\r\nReferences: <2@x>\r\n\r\n",
     HeaderProblem::duplicate_field, "References", 3},
    {"dup_subject", "From: a\r\nSubject: 1\r\nSubject: 2\r\n\r\n", HeaderProblem::duplicate_field,
     "Subject", 3},
    {"dup_allowed",
     "From: a\r\nFrom: b\r\nSubject: 1\r\nSubject: 2\r\n\r\n",
     HeaderProblem::none,
     {},
     0,
     false,
     with([](HeaderCheckOptions& o) { o.reject_duplicates = false; })},
    {"repeatable_fields",
     "From: a\r\nComments: 1\r\nComments: 2\r\nKeywords: a\r\nKeywords: b\r\n"
     "Resent-Date: 1\r\nResent-Date: 2\r\nX-Thing: 1\r\nX-Thing: 2\r\n\r\n",
     HeaderProblem::none},
    {"first_problem_in_order", "From: a\r\nTo: 1\r\nSubject: 1\r\nSubject: 2\r\nTo: 2\r\n\r\n",
     HeaderProblem::duplicate_field, "Subject", 4},
    {"dup_after_the_header_is_body", "From: a\r\nSubject: 1\r\n\r\nSubject: 2\r\n",
     HeaderProblem::none},
    // Received: at the limit and one past it (the line of the one too many).
    {"received_at_limit",
     "Received: 1\r\nReceived: 2\r\nReceived: 3\r\nFrom: a\r\n\r\n",
     HeaderProblem::none,
     {},
     0,
     false,
     with([](HeaderCheckOptions& o) { o.max_received = 3; })},
    {"received_over_limit",
     "Received: 1\r\nReceived: 2\r\n\tfolded\r\nReceived: 3\r\nReceived: 4\r\nFrom: a\r\n\r\n",
     HeaderProblem::too_many_received,
     {},
     5,
     false,
     with([](HeaderCheckOptions& o) { o.max_received = 3; })},
    {"received_before_missing_from",
     "Received: 1\r\nreceived: 2\r\n\r\n",
     HeaderProblem::too_many_received,
     {},
     2,
     false,
     with([](HeaderCheckOptions& o) { o.max_received = 1; })},
    {"received_zero_allowed",
     "Received: 1\r\nFrom: a\r\n\r\n",
     HeaderProblem::too_many_received,
     {},
     1,
     false,
     with([](HeaderCheckOptions& o) { o.max_received = 0; })},
    // Names are case-insensitive.
    {"case_from", "fROM: a\r\n\r\n", HeaderProblem::none},
    {"case_dup", "FROM: a\r\nfrom: b\r\n\r\n", HeaderProblem::duplicate_field, "From", 2},
    {"case_received",
     "RECEIVED: 1\r\nreceived: 2\r\nFrom: a\r\n\r\n",
     HeaderProblem::too_many_received,
     {},
     2,
     false,
     with([](HeaderCheckOptions& o) { o.max_received = 1; })},
    // Folding: a continuation line belongs to the field before it.
    {"folded_not_a_field", "From: a\r\nSubject: one\r\n Subject: two\r\n\tSubject: three\r\n\r\n",
     HeaderProblem::none},
    {"folded_from_is_not_from", "To: a,\r\n From: b\r\n\r\n", HeaderProblem::missing_from},
    {"folded_then_dup", "From: a\r\nTo: a,\r\n  b\r\nTo: c\r\n\r\n", HeaderProblem::duplicate_field,
     "To", 4},
    // Field-name syntax: obsolete white space before the colon counts, other lines do not.
    {"obs_space_before_colon", "From : a\r\nFrom\t: b\r\n\r\n", HeaderProblem::duplicate_field,
     "From", 2},
    {"space_in_name_not_a_field", "Fr om: a\r\n\r\n", HeaderProblem::missing_from},
    {"no_colon_not_a_field", "From\r\n\r\n", HeaderProblem::missing_from},
    {"empty_name_not_a_field", ": From\r\n\r\n", HeaderProblem::missing_from},
    {"eight_bit_name_not_a_field", "Fr\xc3\xb6m: a\r\n\r\n", HeaderProblem::missing_from},
    // Line endings: bare LF ends a line as CRLF does; a lone CR does not.
    {"bare_lf", "From: a\nSubject: 1\nSubject: 2\n\n", HeaderProblem::duplicate_field, "Subject",
     3},
    {"bare_lf_end_of_header", "To: x\n\nFrom: a\n", HeaderProblem::missing_from},
    {"mixed_endings", "From: a\r\nTo: x\n\r\nTo: y\r\n", HeaderProblem::none},
    {"lone_cr_does_not_end_a_line", "To: x\rFrom: a\r\n\r\n", HeaderProblem::missing_from},
    {"cr_only_line_ends_the_header", "To: x\r\n\r\nFrom: a\r\n", HeaderProblem::missing_from},
    // A message that is all header, with or without its last line ending.
    {"all_header", "From: a\r\nSubject: x\r\n", HeaderProblem::none},
    {"all_header_no_final_crlf", "Subject: x\r\nFrom: a", HeaderProblem::none},
    {"all_header_dup_last", "From: a\r\nFrom: b", HeaderProblem::duplicate_field, "From", 2},
    {"empty_message", "", HeaderProblem::missing_from},
    {"empty_header", "\r\nFrom: a\r\n", HeaderProblem::missing_from},
};

class HeaderCheckCase : public ::testing::TestWithParam<Case> {};

TEST_P(HeaderCheckCase, Decides) {
  const Case& c = GetParam();
  const HeaderCheckResult r = check_headers(c.message, c.options);
  EXPECT_EQ(r.problem, c.want);
  EXPECT_EQ(r.field, c.field);
  EXPECT_EQ(r.line, c.line);
  EXPECT_EQ(r.truncated, c.truncated);
  EXPECT_EQ(r.ok(), c.want == HeaderProblem::none);
}

INSTANTIATE_TEST_SUITE_P(Table, HeaderCheckCase, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(HeaderCheck, HeaderBytesCountsTheSectionAndItsEmptyLine) {
  const size_t head = kGood.find("\r\n\r\n") + 4;
  EXPECT_EQ(check_headers(kGood, {}).header_bytes, head);
  EXPECT_EQ(check_headers("From: a\n\nbody", {}).header_bytes, 9u);
  EXPECT_EQ(check_headers("From: a", {}).header_bytes, 7u);                     // all header
  EXPECT_EQ(check_headers("From: a\r\nFrom: b\r\n\r\n", {}).header_bytes, 0u);  // stopped early
}

// The bound: a header section of exactly max_header_bytes octets (its empty
// line included) is read whole; one octet less and it is cut.
TEST(HeaderCheck, SizeCapAtTheBound) {
  const std::string head = "To: x\r\nSubject: s\r\n\r\n";  // no From
  const std::string msg = head + "body\r\n";
  HeaderCheckOptions o;
  o.max_header_bytes = head.size();
  HeaderCheckResult r = check_headers(msg, o);
  EXPECT_EQ(r.problem, HeaderProblem::missing_from);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(r.header_bytes, head.size());

  // One less: the empty line is not seen, so From may still come: no verdict.
  o.max_header_bytes = head.size() - 1;
  r = check_headers(msg, o);
  EXPECT_EQ(r.problem, HeaderProblem::none);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.header_bytes, 0u);

  // A From just past the bound is never read; a duplicate within it is reported.
  const std::string late =
      "Subject: 1\r\nSubject: 2\r\nX: " + std::string(100, 'x') + "\r\nFrom: a\r\n\r\n";
  o.max_header_bytes = late.find("From:");
  r = check_headers(late, o);
  EXPECT_EQ(r.problem, HeaderProblem::duplicate_field);
  EXPECT_EQ(r.field, "Subject");

  const std::string late_only = "Subject: 1\r\nX: " + std::string(100, 'x') + "\r\nFrom: a\r\n\r\n";
  o.max_header_bytes = late_only.find("From:");
  r = check_headers(late_only, o);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.truncated);
  o.max_header_bytes = late_only.size();  // the whole of it: From is there
  r = check_headers(late_only, o);
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.truncated);

  // A line cut by the bound is not read: half a "From" is no From, and half of
  // a second "Subject" no duplicate.
  const std::string cut = "Subject: 1\r\nSubject: 2\r\n\r\n";
  o.max_header_bytes = cut.find("Subject: 2") + 8;
  r = check_headers(cut, o);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.truncated);

  // A message that is all header, exactly at the bound and without a final
  // line ending, is whole; one octet over, its last line is cut.
  const std::string all = "To: x\r\nFrom: a";
  o.max_header_bytes = all.size();
  r = check_headers(all, o);
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.truncated);
  o.max_header_bytes = all.size() - 1;
  r = check_headers(all, o);
  EXPECT_TRUE(r.truncated);

  o.max_header_bytes = 0;
  r = check_headers(msg, o);
  EXPECT_TRUE(r.truncated);
  EXPECT_TRUE(r.ok());
}

// Bounded work: a huge header is read only up to the bound (the check finds
// the duplicate inside it and would not see one beyond).
TEST(HeaderCheck, HugeHeaderStopsAtTheBound) {
  std::string big;
  for (int i = 0; i < 200'000; ++i) big += "X-Filler: " + std::to_string(i) + "\r\n";
  big += "From: a\r\nFrom: b\r\n\r\n";
  HeaderCheckOptions o;
  o.max_header_bytes = 64 * 1024;
  const HeaderCheckResult r = check_headers(big, o);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.truncated);
  o.max_header_bytes = big.size();
  EXPECT_EQ(check_headers(big, o).problem, HeaderProblem::duplicate_field);
}

TEST(HeaderCheck, Replies) {
  EXPECT_EQ(header_check_reply(HeaderCheckResult{}).code, 0);
  HeaderCheckResult r;
  r.problem = HeaderProblem::missing_from;
  HeaderReply rep = header_check_reply(r);
  EXPECT_EQ(rep.code, 550);
  EXPECT_EQ(rep.enhanced, "5.6.0");
  EXPECT_EQ(rep.text, "Error: message has no From header field (RFC 5322 3.6)");
  r.problem = HeaderProblem::missing_date;
  EXPECT_EQ(header_check_reply(r).text, "Error: message has no Date header field (RFC 5322 3.6)");
  r = check_headers("From: a\r\nMessage-Id: 1\r\nmessage-id: 2\r\n\r\n", {});
  rep = header_check_reply(r);
  EXPECT_EQ(rep.code, 550);
  EXPECT_EQ(rep.text, "Error: message has more than one Message-ID header field (RFC 5322 3.6)");
  r.problem = HeaderProblem::too_many_received;
  rep = header_check_reply(r);
  EXPECT_EQ(rep.code, 554);
  EXPECT_EQ(rep.enhanced, "5.4.6");
}

}  // namespace
}  // namespace ringmx
