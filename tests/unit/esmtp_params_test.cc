// Table-driven tests of the MAIL FROM / RCPT TO parameter parser. Every input
// is copied to a heap block of exactly its size so ASan flags any overread.
#include "core/esmtp_params.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace ringmx {
namespace {

class ExactCopy {
 public:
  explicit ExactCopy(std::string_view s)
      : buf_(std::make_unique<char[]>(s.size())), size_(s.size()) {
    if (size_ != 0) std::memcpy(buf_.get(), s.data(), size_);
  }
  std::string_view view() const { return {buf_.get(), size_}; }

 private:
  std::unique_ptr<char[]> buf_;
  size_t size_;
};

Extensions all_on() {
  Extensions e;
  e.pipelining = e.size = e.eightbitmime = e.smtputf8 = e.enhanced_status_codes = e.chunking =
      e.dsn = e.vrfy = true;
  return e;
}

Extensions without(bool Extensions::*member) {
  Extensions e = all_on();
  e.*member = false;
  return e;
}

Extensions without(bool Extensions::*a, bool Extensions::*b) {
  Extensions e = without(a);
  e.*b = false;
  return e;
}

constexpr uint64_t kMax = 10000;

// Long values, built once; the tables below hold views into them.
const std::string kEnvid100 = " ENVID=" + std::string(100, 'e');
const std::string kEnvid101 = " ENVID=" + std::string(101, 'e');
const std::string kOrcpt500 = " ORCPT=rfc822;" + std::string(500 - 7, 'o');
const std::string kOrcpt501 = " ORCPT=rfc822;" + std::string(501 - 7, 'o');

struct MailCase {
  const char* name;
  std::string_view params;
  uint16_t code = 0;  // 0: accepted, the want_* fields checked
  std::string_view enhanced = {};
  uint64_t want_size = 0;
  bool want_has_size = false;
  BodyType want_body = BodyType::unspecified;
  bool want_smtputf8 = false;
  DsnRet want_ret = DsnRet::unspecified;
  std::string_view want_envid = {};
  Extensions ext = all_on();
  uint64_t max_size = kMax;
  std::string_view text = {};  // checked when not empty
};

void PrintTo(const MailCase& c, std::ostream* os) {
  *os << c.name;
}

const MailCase kMailCases[] = {
    // Accepted lists and their spacing.
    {.name = "empty", .params = ""},
    {.name = "only_spaces", .params = "   "},
    {.name = "no_leading_space", .params = "SIZE=1", .want_size = 1, .want_has_size = true},
    {.name = "size", .params = " SIZE=1000", .want_size = 1000, .want_has_size = true},
    {.name = "multiple_and_trailing_spaces",
     .params = "   SIZE=1000    BODY=8BITMIME   ",
     .want_size = 1000,
     .want_has_size = true,
     .want_body = BodyType::eight_bit_mime},
    {.name = "all_mail_params",
     .params = " SIZE=5 BODY=BINARYMIME SMTPUTF8 RET=FULL ENVID=QQ314159",
     .want_size = 5,
     .want_has_size = true,
     .want_body = BodyType::binary_mime,
     .want_smtputf8 = true,
     .want_ret = DsnRet::full,
     .want_envid = "QQ314159"},
    {.name = "case_insensitive",
     .params = " size=5 body=8bitMime smtpUtf8 ret=hdrs envid=abc",
     .want_size = 5,
     .want_has_size = true,
     .want_body = BodyType::eight_bit_mime,
     .want_smtputf8 = true,
     .want_ret = DsnRet::hdrs,
     .want_envid = "abc"},

    // SIZE (RFC 1870).
    {.name = "size_zero", .params = " SIZE=0", .want_size = 0, .want_has_size = true},
    {.name = "size_at_limit", .params = " SIZE=10000", .want_size = 10000, .want_has_size = true},
    {.name = "size_over_limit",
     .params = " SIZE=10001",
     .code = 552,
     .enhanced = "5.3.4",
     .text = "Message size exceeds fixed maximum message size"},
    {.name = "size_no_limit",
     .params = " SIZE=10001",
     .want_size = 10001,
     .want_has_size = true,
     .max_size = 0},
    {.name = "size_uint64_max",
     .params = " SIZE=18446744073709551615",
     .want_size = UINT64_MAX,
     .want_has_size = true,
     .max_size = 0},
    {.name = "size_20_digits_leading_zeros",
     .params = " SIZE=00000000000000000042",
     .want_size = 42,
     .want_has_size = true},
    {.name = "size_21_digits",
     .params = " SIZE=000000000000000000042",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "size_overflow_uint64",
     .params = " SIZE=18446744073709551616",
     .code = 501,
     .enhanced = "5.5.4",
     .max_size = 0},
    {.name = "size_overflow_long",
     .params = " SIZE=99999999999999999999999",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "SIZE parameter malformed"},
    {.name = "size_without_value", .params = " SIZE", .code = 501, .enhanced = "5.5.4"},
    {.name = "size_empty_value",
     .params = " SIZE=",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "Syntax error in MAIL FROM parameters"},
    {.name = "size_not_digits", .params = " SIZE=12a", .code = 501, .enhanced = "5.5.4"},
    {.name = "size_negative", .params = " SIZE=-1", .code = 501, .enhanced = "5.5.4"},
    {.name = "size_disabled",
     .params = " SIZE=1",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::size),
     .text = "MAIL FROM parameters not recognized or not implemented"},
    {.name = "size_twice",
     .params = " SIZE=1 SIZE=2",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "Duplicate SIZE parameter"},
    {.name = "size_twice_mixed_case", .params = " SIZE=1 size=1", .code = 501, .enhanced = "5.5.4"},
    // A malformed list gets its own error, never the size refusal.
    {.name = "size_over_limit_then_unknown",
     .params = " SIZE=20000 FOO",
     .code = 555,
     .enhanced = "5.5.4"},
    {.name = "size_over_limit_then_duplicate",
     .params = " SIZE=20000 SIZE=1",
     .code = 501,
     .enhanced = "5.5.4"},

    // BODY (RFC 6152, RFC 3030).
    {.name = "body_7bit", .params = " BODY=7BIT", .want_body = BodyType::seven_bit},
    {.name = "body_binarymime", .params = " BODY=BINARYMIME", .want_body = BodyType::binary_mime},
    {.name = "body_bad_value",
     .params = " BODY=9BIT",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "BODY parameter malformed"},
    {.name = "body_without_value", .params = " BODY", .code = 501, .enhanced = "5.5.4"},
    {.name = "body_twice", .params = " BODY=7BIT BODY=8BITMIME", .code = 501, .enhanced = "5.5.4"},
    {.name = "body_8bitmime_disabled",
     .params = " BODY=8BITMIME",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::eightbitmime)},
    {.name = "body_7bit_with_only_chunking",
     .params = " BODY=7BIT",
     .want_body = BodyType::seven_bit,
     .ext = without(&Extensions::eightbitmime)},
    {.name = "body_binarymime_chunking_disabled",
     .params = " BODY=BINARYMIME",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::chunking)},
    {.name = "body_both_disabled",
     .params = " BODY=7BIT",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::eightbitmime, &Extensions::chunking)},

    // SMTPUTF8 (RFC 6531).
    {.name = "smtputf8", .params = " SMTPUTF8", .want_smtputf8 = true},
    {.name = "smtputf8_with_value",
     .params = " SMTPUTF8=YES",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "SMTPUTF8 parameter takes no value"},
    {.name = "smtputf8_twice", .params = " SMTPUTF8 SMTPUTF8", .code = 501, .enhanced = "5.5.4"},
    {.name = "smtputf8_disabled",
     .params = " SMTPUTF8",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::smtputf8)},

    // RET and ENVID (RFC 3461).
    {.name = "ret_bad_value", .params = " RET=ALL", .code = 501, .enhanced = "5.5.4"},
    {.name = "ret_without_value", .params = " RET", .code = 501, .enhanced = "5.5.4"},
    {.name = "ret_dsn_disabled",
     .params = " RET=FULL",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::dsn)},
    {.name = "envid_100", .params = kEnvid100, .want_envid = std::string_view(kEnvid100).substr(7)},
    {.name = "envid_101",
     .params = kEnvid101,
     .code = 501,
     .enhanced = "5.5.4",
     .text = "ENVID parameter malformed"},
    {.name = "envid_hexchar", .params = " ENVID=a+2Bb+20c", .want_envid = "a+2Bb+20c"},
    {.name = "envid_lower_hexchar", .params = " ENVID=a+2bb", .code = 501, .enhanced = "5.5.4"},
    {.name = "envid_lone_plus", .params = " ENVID=ab+", .code = 501, .enhanced = "5.5.4"},
    {.name = "envid_short_hexchar", .params = " ENVID=ab+2", .code = 501, .enhanced = "5.5.4"},
    {.name = "envid_equals_sign", .params = " ENVID=a=b", .code = 501, .enhanced = "5.5.4"},
    {.name = "envid_encoded_crlf", .params = " ENVID=a+0D+0Ab", .code = 501, .enhanced = "5.5.4"},
    {.name = "envid_without_value", .params = " ENVID", .code = 501, .enhanced = "5.5.4"},
    {.name = "envid_dsn_disabled",
     .params = " ENVID=abc",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::dsn)},

    // Unknown parameters and RCPT parameters on MAIL.
    {.name = "unknown", .params = " FOO=bar", .code = 555, .enhanced = "5.5.4"},
    {.name = "unknown_no_value", .params = " SIZE=1 X-FOO", .code = 555, .enhanced = "5.5.4"},
    {.name = "notify_on_mail", .params = " NOTIFY=NEVER", .code = 555, .enhanced = "5.5.4"},
    {.name = "orcpt_on_mail", .params = " ORCPT=rfc822;a@b", .code = 555, .enhanced = "5.5.4"},

    // Syntax of the list.
    {.name = "tab_separator", .params = " SIZE=1\tBODY=7BIT", .code = 501, .enhanced = "5.5.4"},
    {.name = "leading_tab", .params = "\tSIZE=1", .code = 501, .enhanced = "5.5.4"},
    {.name = "crlf", .params = " SIZE=1\r\n", .code = 501, .enhanced = "5.5.4"},
    {.name = "nul", .params = std::string_view(" SIZE=1\0", 8), .code = 501, .enhanced = "5.5.4"},
    {.name = "del_in_value", .params = " ENVID=a\x7f", .code = 501, .enhanced = "5.5.4"},
    {.name = "keyword_starts_with_hyphen", .params = " -SIZE=1", .code = 501, .enhanced = "5.5.4"},
    {.name = "keyword_underscore", .params = " SI_ZE=1", .code = 501, .enhanced = "5.5.4"},
    {.name = "empty_keyword", .params = " =1", .code = 501, .enhanced = "5.5.4"},
    {.name = "eight_bit_keyword", .params = " SIZ\xc3\x89=1", .code = 501, .enhanced = "5.5.4"},
    {.name = "eight_bit_value", .params = " ENVID=\xc3\xa9", .code = 501, .enhanced = "5.5.4"},
    // The whole list is checked first: a later syntax error beats an earlier unknown.
    {.name = "syntax_beats_unknown", .params = " FOO=1 SIZE=", .code = 501, .enhanced = "5.5.4"},
};

class MailParamsTest : public ::testing::TestWithParam<MailCase> {};

TEST_P(MailParamsTest, Parses) {
  const MailCase& c = GetParam();
  const ExactCopy in(c.params);
  MailParams out;
  const ParamError err = parse_mail_params(in.view(), c.ext, c.max_size, out);
  EXPECT_EQ(err.code, c.code);
  EXPECT_EQ(err.enhanced, c.enhanced);
  if (c.code == 0) {
    EXPECT_TRUE(err.ok());
    EXPECT_EQ(out.size, c.want_size);
    EXPECT_EQ(out.has_size, c.want_has_size);
    EXPECT_EQ(out.body, c.want_body);
    EXPECT_EQ(out.smtputf8, c.want_smtputf8);
    EXPECT_EQ(out.ret, c.want_ret);
    EXPECT_EQ(out.envid, c.want_envid);
  } else {
    EXPECT_FALSE(err.ok());
    EXPECT_FALSE(err.text.empty());
    if (!c.text.empty()) {
      EXPECT_EQ(err.text, c.text);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EsmtpParams, MailParamsTest, ::testing::ValuesIn(kMailCases),
                         [](const ::testing::TestParamInfo<MailCase>& p) {
                           return std::string(p.param.name);
                         });

struct RcptCase {
  const char* name;
  std::string_view params;
  uint16_t code = 0;  // 0: accepted, the want_* fields checked
  std::string_view enhanced = {};
  uint8_t want_notify = notify_none;
  std::string_view want_type = {};
  std::string_view want_orcpt = {};
  Extensions ext = all_on();
  std::string_view text = {};  // checked when not empty
};

void PrintTo(const RcptCase& c, std::ostream* os) {
  *os << c.name;
}

const RcptCase kRcptCases[] = {
    {.name = "empty", .params = ""},
    {.name = "only_spaces", .params = "  "},

    // NOTIFY.
    {.name = "notify_never", .params = " NOTIFY=NEVER", .want_notify = notify_never},
    {.name = "notify_all_three",
     .params = " NOTIFY=SUCCESS,FAILURE,DELAY",
     .want_notify = notify_success | notify_failure | notify_delay},
    {.name = "notify_case_insensitive",
     .params = " notify=delay,Success",
     .want_notify = notify_success | notify_delay},
    {.name = "notify_never_combined",
     .params = " NOTIFY=NEVER,SUCCESS",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "NOTIFY parameter malformed"},
    {.name = "notify_combined_never",
     .params = " NOTIFY=FAILURE,NEVER",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "notify_repeated_value",
     .params = " NOTIFY=SUCCESS,success",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "notify_trailing_comma",
     .params = " NOTIFY=SUCCESS,",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "notify_leading_comma",
     .params = " NOTIFY=,SUCCESS",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "notify_double_comma",
     .params = " NOTIFY=SUCCESS,,DELAY",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "notify_unknown_value",
     .params = " NOTIFY=SOMETIMES",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "notify_without_value", .params = " NOTIFY", .code = 501, .enhanced = "5.5.4"},
    {.name = "notify_twice",
     .params = " NOTIFY=NEVER NOTIFY=NEVER",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "Duplicate NOTIFY parameter"},
    {.name = "notify_dsn_disabled",
     .params = " NOTIFY=NEVER",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::dsn),
     .text = "RCPT TO parameters not recognized or not implemented"},

    // ORCPT, rfc822 and other xtext address types.
    {.name = "orcpt_rfc822",
     .params = " ORCPT=rfc822;user@example.com",
     .want_type = "rfc822",
     .want_orcpt = "user@example.com"},
    {.name = "orcpt_type_kept_verbatim",
     .params = " ORCPT=RFC822;user+2Btag@example.com",
     .want_type = "RFC822",
     .want_orcpt = "user+2Btag@example.com"},
    {.name = "orcpt_other_type",
     .params = " ORCPT=x-local;abc",
     .want_type = "x-local",
     .want_orcpt = "abc"},
    {.name = "orcpt_rfc822_raw_plus",
     .params = " ORCPT=rfc822;user+tag@example.com",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "ORCPT parameter malformed"},
    {.name = "orcpt_rfc822_encoded_cr",
     .params = " ORCPT=rfc822;a+0Db@example.com",
     .code = 501,
     .enhanced = "5.5.4"},
    // Raw UTF-8 in an rfc822 ORCPT: RFC 6531 lets esmtp-values carry UTF-8,
    // and senders pass such a value on as they got it.
    {.name = "orcpt_rfc822_eight_bit",
     .params = " ORCPT=rfc822;\xc3\xa9@example.com",
     .want_type = "rfc822",
     .want_orcpt = "\xc3\xa9@example.com"},
    {.name = "orcpt_rfc822_eight_bit_smtputf8_disabled",
     .params = " ORCPT=rfc822;\xc3\xa9@example.com",
     .code = 501,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::smtputf8)},
    {.name = "orcpt_rfc822_eight_bit_invalid_utf8",
     .params = " ORCPT=rfc822;\xe9@example.com",
     .code = 501,
     .enhanced = "5.5.4"},
    // What Postfix sends for a non-ASCII recipient: xtext of its UTF-8
    // octets, in the rfc822 type (and so without needing SMTPUTF8).
    {.name = "orcpt_postfix_utf8_xtext",
     .params = " NOTIFY=FAILURE ORCPT=rfc822;+C3+BCser@ex+C3+A4mple.org",
     .want_notify = notify_failure,
     .want_type = "rfc822",
     .want_orcpt = "+C3+BCser@ex+C3+A4mple.org",
     .ext = without(&Extensions::smtputf8)},
    {.name = "orcpt_postfix_cjk_xtext",
     .params = " ORCPT=rfc822;+E7+94+A8+E6+88+B7@+E4+BE+8B+E5+AD+90.+E6+B5+8B+E8+AF+95",
     .want_type = "rfc822",
     .want_orcpt = "+E7+94+A8+E6+88+B7@+E4+BE+8B+E5+AD+90.+E6+B5+8B+E8+AF+95"},
    // Exim and Postfix both encode '+', '=' and octets outside 33..126.
    {.name = "orcpt_exim_plus_and_equals",
     .params = " ORCPT=rfc822;a+2Bb+3Dc@example.org",
     .want_type = "rfc822",
     .want_orcpt = "a+2Bb+3Dc@example.org"},
    {.name = "orcpt_quoted_local_part_space",
     .params = " ORCPT=rfc822;\"a+20b\"@example.org",
     .want_type = "rfc822",
     .want_orcpt = "\"a+20b\"@example.org"},
    {.name = "orcpt_lower_case_hex",
     .params = " ORCPT=rfc822;+c3+bcser@example.org",
     .want_type = "rfc822",
     .want_orcpt = "+c3+bcser@example.org"},
    {.name = "orcpt_xtext_invalid_utf8",
     .params = " ORCPT=rfc822;+C3+28@example.org",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_xtext_latin1",
     .params = " ORCPT=rfc822;+E9t+E9@example.org",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_xtext_encoded_lf",
     .params = " ORCPT=rfc822;a+0Ab@example.org",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_xtext_encoded_nul",
     .params = " ORCPT=rfc822;a+00b@example.org",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_xtext_encoded_c1_control",
     .params = " ORCPT=rfc822;a+C2+85b@example.org",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_xtext_truncated_hexchar",
     .params = " ORCPT=rfc822;ab+C",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_no_semicolon", .params = " ORCPT=rfc822", .code = 501, .enhanced = "5.5.4"},
    {.name = "orcpt_empty_type", .params = " ORCPT=;a@b", .code = 501, .enhanced = "5.5.4"},
    {.name = "orcpt_empty_address", .params = " ORCPT=rfc822;", .code = 501, .enhanced = "5.5.4"},
    {.name = "orcpt_bad_type", .params = " ORCPT=rfc_822;a@b", .code = 501, .enhanced = "5.5.4"},
    {.name = "orcpt_eight_bit_type",
     .params = " ORCPT=\xc3\xa9;a@b",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_500",
     .params = kOrcpt500,
     .want_type = "rfc822",
     .want_orcpt = std::string_view(kOrcpt500).substr(14)},
    {.name = "orcpt_501", .params = kOrcpt501, .code = 501, .enhanced = "5.5.4"},
    {.name = "orcpt_without_value", .params = " ORCPT", .code = 501, .enhanced = "5.5.4"},
    {.name = "orcpt_twice",
     .params = " ORCPT=rfc822;a@b ORCPT=rfc822;c@d",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_dsn_disabled",
     .params = " ORCPT=rfc822;a@b",
     .code = 555,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::dsn)},

    // ORCPT utf-8 (RFC 6533).
    {.name = "orcpt_utf8_raw",
     .params = " ORCPT=utf-8;\xe7\x94\xa8\xe6\x88\xb7@example.com",
     .want_type = "utf-8",
     .want_orcpt = "\xe7\x94\xa8\xe6\x88\xb7@example.com"},
    {.name = "orcpt_utf8_raw_smtputf8_disabled",
     .params = " ORCPT=utf-8;\xe7\x94\xa8@example.com",
     .code = 501,
     .enhanced = "5.5.4",
     .ext = without(&Extensions::smtputf8)},
    {.name = "orcpt_utf8_escaped_smtputf8_disabled",
     .params = " ORCPT=UTF-8;\\x{7528}\\x{1F600}\\x{20}\\x{5C}@example.com",
     .want_type = "UTF-8",
     .want_orcpt = "\\x{7528}\\x{1F600}\\x{20}\\x{5C}@example.com",
     .ext = without(&Extensions::smtputf8)},
    {.name = "orcpt_utf8_escaped_control",
     .params = " ORCPT=utf-8;a\\x{0}b",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_escaped_c1_control",
     .params = " ORCPT=utf-8;a\\x{85}b",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_escaped_surrogate",
     .params = " ORCPT=utf-8;a\\x{D800}",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_escaped_too_large",
     .params = " ORCPT=utf-8;a\\x{110000}",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_escaped_seven_digits",
     .params = " ORCPT=utf-8;a\\x{0000041}",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_escaped_lower_hex",
     .params = " ORCPT=utf-8;a\\x{e9}",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_escaped_empty",
     .params = " ORCPT=utf-8;a\\x{}",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_escaped_unterminated",
     .params = " ORCPT=utf-8;a\\x{41",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_lone_backslash",
     .params = " ORCPT=utf-8;a\\",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_plus",
     .params = " ORCPT=utf-8;a+b@example.com",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_invalid",
     .params = " ORCPT=utf-8;\xc3\x28@example.com",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_overlong",
     .params = " ORCPT=utf-8;\xc0\xaf@example.com",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_surrogate",
     .params = " ORCPT=utf-8;\xed\xa0\x80@example.com",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_truncated",
     .params = " ORCPT=utf-8;a\xe7\x94",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_raw_c1_control",
     .params = " ORCPT=utf-8;a\xc2\x85@example.com",
     .code = 501,
     .enhanced = "5.5.4"},
    {.name = "orcpt_utf8_above_max",
     .params = " ORCPT=utf-8;a\xf4\x90\x80\x80",
     .code = 501,
     .enhanced = "5.5.4"},

    // Both, unknown, MAIL parameters on RCPT, list syntax.
    {.name = "notify_and_orcpt",
     .params = "  NOTIFY=FAILURE   ORCPT=rfc822;a@b  ",
     .want_notify = notify_failure,
     .want_type = "rfc822",
     .want_orcpt = "a@b"},
    {.name = "size_on_rcpt", .params = " SIZE=1", .code = 555, .enhanced = "5.5.4"},
    {.name = "body_on_rcpt", .params = " BODY=8BITMIME", .code = 555, .enhanced = "5.5.4"},
    {.name = "unknown", .params = " FOO", .code = 555, .enhanced = "5.5.4"},
    {.name = "tab",
     .params = " NOTIFY=NEVER\t",
     .code = 501,
     .enhanced = "5.5.4",
     .text = "Syntax error in RCPT TO parameters"},
    {.name = "empty_value", .params = " NOTIFY=", .code = 501, .enhanced = "5.5.4"},
    {.name = "eight_bit_outside_orcpt",
     .params = " NOTIFY=\xc3\xa9",
     .code = 501,
     .enhanced = "5.5.4"},
};

class RcptParamsTest : public ::testing::TestWithParam<RcptCase> {};

TEST_P(RcptParamsTest, Parses) {
  const RcptCase& c = GetParam();
  const ExactCopy in(c.params);
  RcptParams out;
  const ParamError err = parse_rcpt_params(in.view(), c.ext, out);
  EXPECT_EQ(err.code, c.code);
  EXPECT_EQ(err.enhanced, c.enhanced);
  if (c.code == 0) {
    EXPECT_TRUE(err.ok());
    EXPECT_EQ(out.notify, c.want_notify);
    EXPECT_EQ(out.orcpt_type, c.want_type);
    EXPECT_EQ(out.orcpt, c.want_orcpt);
  } else {
    EXPECT_FALSE(err.ok());
    EXPECT_FALSE(err.text.empty());
    if (!c.text.empty()) {
      EXPECT_EQ(err.text, c.text);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EsmtpParams, RcptParamsTest, ::testing::ValuesIn(kRcptCases),
                         [](const ::testing::TestParamInfo<RcptCase>& p) {
                           return std::string(p.param.name);
                         });

struct XtextCase {
  const char* name;
  std::string_view in;
  bool valid;
};

void PrintTo(const XtextCase& c, std::ostream* os) {
  *os << c.name;
}

const XtextCase kXtextCases[] = {
    {"empty", "", true},
    {"plain", "abc@example.com", true},
    {"all_xchars", "!\"#$%&'()*,-./09:;<>?@AZ[\\]^_`az{|}~", true},
    {"hexchar", "+2B", true},
    {"hexchar_nonprintable", "+00+0D", true},  // valid xtext; ENVID/ORCPT refuse it
    {"hexchar_lower", "+2b", false},
    {"hexchar_not_hex", "+GG", false},
    {"lone_plus", "+", false},
    {"short_hexchar", "a+2", false},
    {"equals", "a=b", false},
    {"space", "a b", false},
    {"del", "a\x7f", false},
    {"control", "a\x01", false},
    {"eight_bit", "\xc3\xa9", false},
    {"nul", std::string_view("a\0b", 3), false},
};

class XtextTest : public ::testing::TestWithParam<XtextCase> {};

TEST_P(XtextTest, Validates) {
  const XtextCase& c = GetParam();
  const ExactCopy in(c.in);
  EXPECT_EQ(is_valid_xtext(in.view()), c.valid);
}

INSTANTIATE_TEST_SUITE_P(EsmtpParams, XtextTest, ::testing::ValuesIn(kXtextCases),
                         [](const ::testing::TestParamInfo<XtextCase>& p) {
                           return std::string(p.param.name);
                         });

// A control octet anywhere in an otherwise valid list is a syntax error.
TEST(EsmtpParams, EveryControlOctetIsSyntaxError) {
  for (int b = 0; b < 0x20; ++b) {
    if (b == ' ') continue;
    for (size_t pos : {size_t{0}, size_t{5}, size_t{10}}) {
      std::string s = " SIZE=10 BODY=7BIT";
      s.insert(pos, 1, static_cast<char>(b));
      MailParams out;
      const ExactCopy in(s);
      EXPECT_EQ(parse_mail_params(in.view(), all_on(), kMax, out).code, 501)
          << "octet " << b << " at " << pos;
    }
  }
}

// Every prefix of valid lists parses without reading past its end (ASan) and
// gives one of the documented replies.
TEST(EsmtpParams, EveryPrefixIsSafe) {
  const std::string mail = " SIZE=123 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb";
  const std::string rcpt = " NOTIFY=SUCCESS,DELAY ORCPT=utf-8;\\x{7528}\xe6\x88\xb7@example.com";
  for (size_t n = 0; n <= mail.size(); ++n) {
    const ExactCopy in(std::string_view(mail).substr(0, n));
    MailParams out;
    const uint16_t code = parse_mail_params(in.view(), all_on(), kMax, out).code;
    EXPECT_TRUE(code == 0 || code == 501 || code == 555) << n << ": " << code;
  }
  for (size_t n = 0; n <= rcpt.size(); ++n) {
    const ExactCopy in(std::string_view(rcpt).substr(0, n));
    RcptParams out;
    const uint16_t code = parse_rcpt_params(in.view(), all_on(), out).code;
    EXPECT_TRUE(code == 0 || code == 501 || code == 555) << n << ": " << code;
  }
}

// A reused output is reset, not merged.
TEST(EsmtpParams, OutputIsReset) {
  MailParams mail;
  ASSERT_TRUE(parse_mail_params(" SIZE=5 SMTPUTF8 ENVID=x", all_on(), kMax, mail).ok());
  ASSERT_TRUE(parse_mail_params("", all_on(), kMax, mail).ok());
  EXPECT_FALSE(mail.has_size);
  EXPECT_FALSE(mail.smtputf8);
  EXPECT_TRUE(mail.envid.empty());
  RcptParams rcpt;
  ASSERT_TRUE(parse_rcpt_params(" NOTIFY=NEVER ORCPT=rfc822;a@b", all_on(), rcpt).ok());
  ASSERT_TRUE(parse_rcpt_params(" ", all_on(), rcpt).ok());
  EXPECT_EQ(rcpt.notify, notify_none);
  EXPECT_TRUE(rcpt.orcpt_type.empty());
  EXPECT_TRUE(rcpt.orcpt.empty());
}

}  // namespace

// decode_orcpt: the address each deployed form names.
TEST(EsmtpParams, DecodeOrcptForms) {
  struct Case {
    std::string_view type, value;
    bool smtputf8;
    const char* want;  // nullptr: refused
  };
  const Case cases[] = {
      {"rfc822", "+C3+BCser@ex+C3+A4mple.org", false, "\xc3\xbcser@ex\xc3\xa4mple.org"},
      {"RFC822", "user+2Btag@example.com", false, "user+tag@example.com"},
      {"rfc822", "+c3+bc@x", false, "\xc3\xbc@x"},
      {"rfc822", "\xc3\xbc@x", true, "\xc3\xbc@x"},
      {"rfc822", "\xc3\xbc@x", false, nullptr},
      {"utf-8", "\\x{FC}ser@x", false, "\xc3\xbcser@x"},
      {"utf-8", "\\x{1F600}@x", false, "\xf0\x9f\x98\x80@x"},
      {"utf-8", "\xc3\xbc\\x{7528}@x", true, "\xc3\xbc\xe7\x94\xa8@x"},
      {"utf-8", "+C3+BC@x", false, nullptr},  // no xtext in the utf-8 type
      {"rfc822", "a+0Db", false, nullptr},
      {"rfc822", "a+7Fb", false, nullptr},
      {"rfc822", "+F0+9F+98", false, nullptr},  // truncated sequence
      {"rfc822", "+ED+A0+80", false, nullptr},  // a surrogate
      {"rfc822", "", false, nullptr},
  };
  for (const Case& c : cases) {
    std::string out = "junk";
    const bool ok = decode_orcpt(c.type, c.value, c.smtputf8, out);
    EXPECT_EQ(ok, c.want != nullptr) << c.type << ";" << c.value;
    if (ok && c.want) {
      EXPECT_EQ(out, c.want) << c.value;
    }
  }
}

// Whatever the value, an ORCPT that parses decodes to an address with no
// control octet in it (so none can reach a relay's command or a DSN).
TEST(EsmtpParams, AcceptedOrcptNeverDecodesToAControl) {
  const std::string alphabet = "ab@.+0DAC3BC9F8E\\x{}\xc3\xbc\x85\x0d";
  uint32_t seed = 12345;
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string value;
    const int len = 1 + static_cast<int>((seed >> 8) % 12);
    for (int k = 0; k < len; ++k) {
      seed = seed * 1103515245u + 12345u;
      value += alphabet[(seed >> 16) % alphabet.size()];
    }
    for (const char* type : {"rfc822", "utf-8"}) {
      RcptParams out;
      const std::string params = std::string(" ORCPT=") + type + ";" + value;
      if (!parse_rcpt_params(params, all_on(), out).ok()) continue;
      ++accepted;
      std::string addr;
      ASSERT_TRUE(decode_orcpt(out.orcpt_type, out.orcpt, true, addr)) << params;
      for (char ch : addr) {
        const auto c = static_cast<unsigned char>(ch);
        ASSERT_TRUE(c >= 0x20 && c != 0x7F) << params;
      }
      ASSERT_EQ(addr.find("\xc2\x85"), std::string::npos) << params;
    }
  }
  EXPECT_GT(accepted, 100);
}

}  // namespace ringmx
