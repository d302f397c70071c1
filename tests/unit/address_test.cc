// Table-driven tests of core/address: parse_path, is_valid_domain, is_valid_utf8, describe.
#include "core/address.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

namespace ringmx {
namespace {

constexpr PathKind R = PathKind::reverse;
constexpr PathKind F = PathKind::forward;

enum Flag : unsigned {
  kNull = 1,
  kPostmaster = 2,
  kLiteral = 4,
  kUtf8 = 8,
};

std::string rep(char c, size_t n) {
  return std::string(n, c);
}

// A domain of exactly `len` octets made of 63-octet labels (and a shorter last one).
std::string domain_of(size_t len) {
  std::string d;
  while (d.size() < len) {
    if (!d.empty()) d += '.';
    size_t label = std::min<size_t>(63, len - d.size());
    if (len - d.size() - label == 1) --label;  // leave room for ".x", never a trailing dot
    d += rep('d', label);
  }
  return d;
}

struct PathCase {
  std::string name;
  std::string input;
  PathKind kind;
  bool utf8;
  AddrError error;
  size_t pos;  // consumed when ok, error_pos otherwise
  std::string local;
  std::string domain;
  unsigned flags;
};

PathCase ok(std::string name, std::string input, PathKind kind, bool utf8, size_t consumed,
            std::string local, std::string domain, unsigned flags = 0) {
  return {std::move(name),  std::move(input),  kind, utf8, AddrError::none, consumed,
          std::move(local), std::move(domain), flags};
}

PathCase err(std::string name, std::string input, PathKind kind, bool utf8, AddrError e,
             size_t error_pos) {
  return {std::move(name), std::move(input), kind, utf8, e, error_pos, "", "", 0};
}

void PrintTo(const PathCase& c, std::ostream* os) {
  *os << c.name;
}

std::vector<PathCase> path_cases() {
  using E = AddrError;
  const std::string local64 = rep('l', 64);
  const std::string label63 = rep('x', 63);
  // "<" + 64 + "@" + 189 + ">" is exactly 256 octets.
  const std::string domain189 = domain_of(189);
  const std::string domain190 = domain_of(190);
  const std::string domain256 = domain_of(256);
  const std::string quoted64 = "\"" + rep('q', 62) + "\"";
  const std::string literal256 = "[t:" + rep('v', 252) + "]";

  return {
      // Dot-strings and domains.
      ok("simple", "<a@b.c>", R, false, 7, "a", "b.c"),
      ok("simple_forward", "<a@b.c>", F, false, 7, "a", "b.c"),
      ok("dot_string", "<first.last@example.com>", R, false, 24, "first.last", "example.com"),
      ok("all_atext", "<!#$%&'*+-/=?^_`{|}~@x.y>", R, false, 25, "!#$%&'*+-/=?^_`{|}~", "x.y"),
      ok("digit_labels", "<a@123.example>", R, false, 15, "a", "123.example"),
      ok("hyphen_label", "<a@ex--ample.com>", R, false, 17, "a", "ex--ample.com"),
      ok("single_label", "<a@localhost>", R, false, 13, "a", "localhost"),
      ok("mixed_case", "<Ab.Cd@ExAmPle.COM>", F, false, 19, "Ab.Cd", "ExAmPle.COM"),
      // Quoted strings.
      ok("quoted_space", "<\"x y\"@b.c>", R, false, 11, "\"x y\"", "b.c"),
      ok("quoted_escapes", "<\"a\\\"b\\\\c\"@b.c>", R, false, 15, "\"a\\\"b\\\\c\"", "b.c"),
      ok("quoted_specials", "<\"a>@b,c:d\"@c.d>", R, false, 16, "\"a>@b,c:d\"", "c.d"),
      ok("quoted_empty", "<\"\"@b.c>", R, false, 8, "\"\"", "b.c"),
      ok("quoted_pair_space", "<\"\\ \"@b.c>", R, false, 10, "\"\\ \"", "b.c"),
      // Source routes are parsed and dropped.
      ok("route_two", "<@r1.example,@r2.example:a@b.c>", R, false, 31, "a", "b.c"),
      ok("route_one", "<@r.example:a@b.c>", F, false, 18, "a", "b.c"),
      // Address literals.
      ok("ipv4", "<a@[192.0.2.1]>", R, false, 15, "a", "[192.0.2.1]", kLiteral),
      ok("ipv4_zero", "<a@[0.0.0.0]>", R, false, 13, "a", "[0.0.0.0]", kLiteral),
      ok("ipv4_max", "<a@[255.255.255.255]>", R, false, 21, "a", "[255.255.255.255]", kLiteral),
      ok("ipv6_loopback", "<\"x y\"@[IPv6:::1]>", F, false, 18, "\"x y\"", "[IPv6:::1]", kLiteral),
      ok("ipv6_full", "<a@[IPv6:2001:db8:0:0:0:0:0:1]>", R, false, 31, "a",
         "[IPv6:2001:db8:0:0:0:0:0:1]", kLiteral),
      ok("ipv6_v4", "<a@[IPv6:::ffff:192.0.2.1]>", R, false, 27, "a", "[IPv6:::ffff:192.0.2.1]",
         kLiteral),
      ok("ipv6_tag_case", "<a@[ipv6:fe80::1]>", R, false, 18, "a", "[ipv6:fe80::1]", kLiteral),
      ok("general_literal", "<a@[x-tag:some.th!ng]>", R, false, 22, "a", "[x-tag:some.th!ng]",
         kLiteral),
      // Null path and postmaster.
      ok("null_reverse", "<>", R, false, 2, "", "", kNull),
      ok("null_with_params", "<> SIZE=10", R, true, 2, "", "", kNull),
      ok("postmaster", "<postmaster>", F, false, 12, "postmaster", "", kPostmaster),
      ok("postmaster_case", "<PostMaster> NOTIFY=NEVER", F, false, 12, "PostMaster", "",
         kPostmaster),
      ok("postmaster_domain_forward", "<postmaster@x.y>", F, false, 16, "postmaster", "x.y"),
      ok("postmaster_domain_reverse", "<Postmaster@x.y>", R, false, 16, "Postmaster", "x.y"),
      // Whatever follows '>' is not looked at.
      ok("trailing_params", "<a@b.c> SIZE=100 BODY=8BITMIME", R, false, 7, "a", "b.c"),
      ok("trailing_junk", std::string("<a@b.c>\xff\x00<>", 10), R, false, 7, "a", "b.c"),
      ok("trailing_gt", "<a@b.c>>", R, false, 7, "a", "b.c"),
      // UTF-8 (RFC 6531).
      ok("utf8_local", "<jos\xc3\xa9@b.c>", R, true, 11, "jos\xc3\xa9", "b.c", kUtf8),
      ok("utf8_ulabel", "<a@b\xc3\xbcro.example>", F, true, 17, "a", "b\xc3\xbcro.example", kUtf8),
      ok("utf8_ulabel_start", "<a@\xc3\xa9.fr>", R, true, 9, "a", "\xc3\xa9.fr", kUtf8),
      ok("utf8_quoted", "<\"\xe2\x82\xac x\"@b.c>", R, true, 13, "\"\xe2\x82\xac x\"", "b.c",
         kUtf8),
      ok("utf8_four_octets", "<\xf0\x9f\x98\x80@b.c>", R, true, 10, "\xf0\x9f\x98\x80", "b.c",
         kUtf8),
      ok("utf8_max_scalar", "<\xf4\x8f\xbf\xbf@b.c>", R, true, 10, "\xf4\x8f\xbf\xbf", "b.c",
         kUtf8),
      ok("utf8_allowed_ascii", "<a@b.c>", R, true, 7, "a", "b.c"),
      ok("utf8_in_route", "<@\xc3\xa9.x:a@b.c>", R, true, 13, "a", "b.c", kUtf8),
      // Bounds, exactly at the limit.
      ok("local_64", "<" + local64 + "@b.c>", R, false, 70, local64, "b.c"),
      ok("quoted_local_64", "<" + quoted64 + "@b.c>", R, false, 70, quoted64, "b.c"),
      ok("label_63", "<a@" + label63 + ".com>", R, false, 71, "a", label63 + ".com"),
      ok("path_256", "<" + local64 + "@" + domain189 + ">", R, false, 256, local64, domain189),

      // Errors, one section per AddrError.
      err("empty_input", "", R, false, E::missing_open_bracket, 0),
      err("no_brackets", "a@b.c", R, false, E::missing_open_bracket, 0),
      err("leading_space", " <a@b.c>", F, false, E::missing_open_bracket, 0),
      err("lone_open", "<", R, false, E::missing_close_bracket, 1),
      err("no_close", "<a@b.c", R, false, E::missing_close_bracket, 6),
      err("no_close_params", "<a@b.c SIZE=100", R, false, E::missing_close_bracket, 6),
      err("space_before_close", "<a@b.c >", R, false, E::missing_close_bracket, 6),
      err("cut_in_local", "<ab", R, false, E::missing_close_bracket, 3),
      err("cut_after_at", "<a@", R, false, E::missing_close_bracket, 3),
      err("cut_after_dot", "<a@b.", R, false, E::missing_close_bracket, 5),
      err("cut_in_route", "<@a", R, false, E::missing_close_bracket, 3),
      err("cut_after_comma", "<@a,", R, false, E::missing_close_bracket, 4),
      err("cut_after_route", "<@a:", R, false, E::missing_close_bracket, 4),
      err("route_bad_separator", "<@a;b:c@d>", R, false, E::bad_source_route, 3),
      err("route_missing_at", "<@a,b:c@d>", R, false, E::bad_source_route, 4),
      err("route_literal", "<@[1.2.3.4]:a@b>", R, false, E::bad_source_route, 2),
      err("route_empty_domain", "<@:a@b>", R, false, E::bad_source_route, 2),
      err("route_bad_label", "<@-a:x@y>", R, false, E::bad_source_route, 2),
      err("route_then_gt", "<@a,@b>", R, false, E::bad_source_route, 6),
      err("at_domain_only", "<@b.c>", F, false, E::empty_local_part, 1),
      err("route_empty_local", "<@r.x:@b.c>", R, false, E::empty_local_part, 6),
      err("route_no_mailbox", "<@r.x:>", R, false, E::empty_local_part, 6),
      err("local_space", "<a b@c>", R, false, E::bad_local_part, 2),
      err("local_leading_dot", "<.a@b>", R, false, E::bad_local_part, 1),
      err("local_double_dot", "<a..b@c>", R, false, E::bad_local_part, 3),
      err("local_trailing_dot", "<a.@b>", R, false, E::bad_local_part, 3),
      err("local_paren", "<a(b)@c>", R, false, E::bad_local_part, 2),
      err("local_quote_after_atom", "<a\"b@c>", R, false, E::bad_local_part, 2),
      err("local_atom_after_quote", "<\"a\"b@c>", R, false, E::bad_local_part, 4),
      err("local_control", "<a\x01@b>", R, false, E::bad_local_part, 2),
      err("local_nul", std::string("<a\0@b>", 6), R, false, E::bad_local_part, 2),
      err("quote_unterminated", "<\"abc", R, false, E::bad_quoted_string, 5),
      err("quote_unterminated_gt", "<\"abc>", R, false, E::bad_quoted_string, 6),
      err("quote_control", "<\"a\x01\"@b>", R, false, E::bad_quoted_string, 3),
      err("quote_tab", "<\"a\tb\"@c>", R, false, E::bad_quoted_string, 3),
      err("quote_pair_control", "<\"a\\\x01\"@b>", R, false, E::bad_quoted_string, 4),
      err("quote_pair_at_end", "<\"a\\", R, false, E::bad_quoted_string, 4),
      err("quote_pair_utf8", "<\"\\\xc3\xa9\"@b>", R, true, E::bad_quoted_string, 3),
      err("local_65", "<" + rep('l', 65) + "@b.c>", R, false, E::local_part_too_long, 65),
      err("quoted_local_65", "<\"" + rep('q', 63) + "\"@b.c>", R, false, E::local_part_too_long,
          65),
      err("no_domain", "<abc>", R, false, E::missing_at, 4),
      err("no_domain_params", "<abc> SIZE=1", F, false, E::missing_at, 4),
      err("postmaster_reverse", "<postmaster>", R, false, E::missing_at, 11),
      err("postmaster_quoted", "<\"postmaster\">", F, false, E::missing_at, 13),
      err("postmaster_routed", "<@r.x:postmaster>", F, false, E::missing_at, 16),
      err("postmaster_longer", "<postmasters>", F, false, E::missing_at, 12),
      err("empty_domain", "<a@>", R, false, E::empty_domain, 3),
      err("domain_trailing_dot", "<a@b.c.>", R, false, E::bad_domain, 7),
      err("domain_double_dot", "<a@b..c>", R, false, E::bad_domain, 5),
      err("domain_leading_dot", "<a@.b>", R, false, E::bad_domain, 3),
      err("label_leading_hyphen", "<a@-b.c>", R, false, E::bad_domain, 3),
      err("label_trailing_hyphen", "<a@b-.c>", R, false, E::bad_domain, 4),
      err("domain_underscore", "<a@b_c>", R, false, E::bad_domain, 4),
      err("domain_bang", "<a@b.c!>", R, false, E::bad_domain, 6),
      err("domain_second_at", "<a@b@c>", R, false, E::bad_domain, 4),
      err("label_64", "<a@" + rep('x', 64) + ".com>", R, false, E::label_too_long, 66),
      err("domain_256", "<a@" + domain256 + ">", R, false, E::domain_too_long, 258),
      err("literal_256", "<a@" + literal256 + ">", R, false, E::domain_too_long, 258),
      err("ipv4_three_parts", "<a@[1.2.3]>", R, false, E::bad_address_literal, 9),
      err("ipv4_256", "<a@[1.2.3.256]>", R, false, E::bad_address_literal, 10),
      err("ipv4_five_parts", "<a@[1.2.3.4.5]>", R, false, E::bad_address_literal, 11),
      err("ipv4_four_digits", "<a@[1234.1.1.1]>", R, false, E::bad_address_literal, 7),
      err("ipv4_empty_part", "<a@[1..3.4]>", R, false, E::bad_address_literal, 6),
      err("ipv6_bad", "<a@[IPv6:1:2]>", R, false, E::bad_address_literal, 9),
      err("ipv6_zone", "<a@[IPv6:fe80::1%eth0]>", R, false, E::bad_address_literal, 9),
      err("ipv6_untagged", "<a@[::1]>", R, false, E::bad_address_literal, 4),
      err("literal_empty", "<a@[]>", R, false, E::bad_address_literal, 4),
      err("literal_empty_value", "<a@[tag:]>", R, false, E::bad_address_literal, 8),
      err("literal_tag_hyphen_end", "<a@[t-:x]>", R, false, E::bad_address_literal, 5),
      err("literal_tag_dot", "<a@[1.2.3.4:25]>", R, false, E::bad_address_literal, 5),
      err("literal_space", "<a@[a b]>", R, false, E::bad_address_literal, 5),
      err("literal_trailing", "<a@[1.2.3.4]x>", R, false, E::bad_address_literal, 12),
      err("literal_unterminated", "<a@[1.2.3.4", R, false, E::bad_address_literal, 11),
      err("literal_unterminated_gt", "<a@[1.2.3.4>", R, false, E::bad_address_literal, 12),
      err("path_257", "<" + local64 + "@" + domain190 + ">", R, false, E::path_too_long, 256),
      err("null_forward", "<>", F, false, E::null_not_allowed, 1),
      err("null_forward_utf8", "<> NOTIFY=NEVER", F, true, E::null_not_allowed, 1),
      err("utf8_local_off", "<jos\xc3\xa9@b.c>", R, false, E::utf8_not_allowed, 4),
      err("utf8_domain_off", "<a@b\xc3\xbc.c>", F, false, E::utf8_not_allowed, 4),
      err("utf8_quoted_off", "<\"\xc3\xa9\"@b>", R, false, E::utf8_not_allowed, 2),
      err("utf8_quote_pair_off", "<\"\\\xc3\xa9\"@b>", R, false, E::utf8_not_allowed, 3),
      err("utf8_literal_off", "<a@[\xc3\xa9]>", R, false, E::utf8_not_allowed, 4),
      err("utf8_route_off", "<@\xc3\xa9:a@b>", R, false, E::utf8_not_allowed, 2),
      err("utf8_invalid_off", "<a\xff@b>", R, false, E::utf8_not_allowed, 2),
      err("utf8_literal_on", "<a@[\xc3\xa9]>", R, true, E::bad_address_literal, 4),
      err("overlong_c0", "<a\xc0\x80@b>", R, true, E::bad_utf8, 2),
      err("overlong_e0", "<a\xe0\x80\x80@b>", R, true, E::bad_utf8, 2),
      err("surrogate", "<a\xed\xa0\x80@b>", R, true, E::bad_utf8, 2),
      err("above_max", "<a\xf4\x90\x80\x80@b>", R, true, E::bad_utf8, 2),
      err("truncated_at_end", "<a\xc3", R, true, E::bad_utf8, 2),
      err("truncated_mid", "<a\xe2\x82@b>", R, true, E::bad_utf8, 2),
      err("lone_continuation", "<\x80@b>", R, true, E::bad_utf8, 1),
      err("bad_utf8_domain", "<a@b\xff>", R, true, E::bad_utf8, 4),
      err("bad_utf8_quoted", "<\"\xc3(\"@b>", R, true, E::bad_utf8, 2),
  };
}

class ParsePathTest : public testing::TestWithParam<PathCase> {};

TEST_P(ParsePathTest, Parses) {
  const PathCase& c = GetParam();
  // An exactly sized heap copy, so AddressSanitizer catches any read past the input.
  std::unique_ptr<char[]> buf(new char[c.input.size() + 1]);
  c.input.copy(buf.get(), c.input.size());
  const std::string_view in(buf.get(), c.input.size());
  const PathResult r = parse_path(in, c.kind, c.utf8);

  ASSERT_EQ(r.error, c.error) << describe(r.error) << " at " << r.error_pos;
  if (!r.ok()) {
    EXPECT_EQ(r.error_pos, c.pos);
    EXPECT_EQ(r.consumed, 0u);
    return;
  }
  EXPECT_EQ(r.consumed, c.pos);
  EXPECT_EQ(r.path.local, c.local);
  EXPECT_EQ(r.path.domain, c.domain);
  EXPECT_EQ(r.path.is_null, (c.flags & kNull) != 0);
  EXPECT_EQ(r.path.is_postmaster, (c.flags & kPostmaster) != 0);
  EXPECT_EQ(r.path.domain_is_literal, (c.flags & kLiteral) != 0);
  EXPECT_EQ(r.path.has_utf8, (c.flags & kUtf8) != 0);
  if (c.flags & kNull) {
    EXPECT_TRUE(r.path.mailbox.empty());
  } else if (c.flags & kPostmaster) {
    EXPECT_EQ(r.path.mailbox, c.local);
  } else {
    EXPECT_EQ(r.path.mailbox, c.local + "@" + c.domain);
    // Views point into the input, mailbox = local "@" domain.
    EXPECT_EQ(r.path.local.data(), r.path.mailbox.data());
    EXPECT_EQ(r.path.domain.data() + r.path.domain.size(),
              r.path.mailbox.data() + r.path.mailbox.size());
    EXPECT_GE(r.path.mailbox.data(), in.data());
    EXPECT_LE(r.path.mailbox.data() + r.path.mailbox.size(), in.data() + r.consumed);
  }
  // The parser sees nothing past '>': the cut input parses the same.
  const PathResult cut = parse_path(in.substr(0, r.consumed), c.kind, c.utf8);
  EXPECT_TRUE(cut.ok());
  EXPECT_EQ(cut.consumed, r.consumed);
  EXPECT_EQ(cut.path.mailbox, r.path.mailbox);
}

std::string case_name(const testing::TestParamInfo<PathCase>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Table, ParsePathTest, testing::ValuesIn(path_cases()), case_name);

TEST(ParsePath, TableCoversEveryError) {
  std::set<AddrError> seen;
  for (const PathCase& c : path_cases()) seen.insert(c.error);
  for (int e = 0; e <= static_cast<int>(AddrError::bad_utf8); ++e) {
    EXPECT_TRUE(seen.count(static_cast<AddrError>(e))) << describe(static_cast<AddrError>(e));
  }
}

TEST(ParsePath, ConsumedIgnoresWhatFollows) {
  const char* suffixes[] = {"", " SIZE=100", " BODY=8BITMIME SMTPUTF8", ">", "\xff\xfe", "\r\n"};
  for (const char* s : suffixes) {
    const std::string in = std::string("<\"a b\"@[IPv6:::1]>") + s;
    const PathResult r = parse_path(in, PathKind::forward, false);
    ASSERT_TRUE(r.ok()) << s;
    EXPECT_EQ(r.consumed, 18u);
    EXPECT_EQ(r.path.domain, "[IPv6:::1]");
  }
}

TEST(ParsePath, FailureLeavesPathEmpty) {
  const PathResult r = parse_path("<a@b..c>", PathKind::reverse, false);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.path.mailbox.empty());
  EXPECT_TRUE(r.path.local.empty());
  EXPECT_TRUE(r.path.domain.empty());
}

TEST(ParsePath, LongInputIsLinear) {
  // A huge source route and a huge label: each must fail (or finish) after one pass.
  std::string route = "<";
  for (int i = 0; i < 20000; ++i) route += "@a,";
  route += "@a:b@c>";
  EXPECT_EQ(parse_path(route, PathKind::reverse, false).error, AddrError::path_too_long);
  const std::string label = "<a@" + rep('x', 1 << 20) + ">";
  EXPECT_EQ(parse_path(label, PathKind::reverse, false).error, AddrError::label_too_long);
}

struct DomainCase {
  std::string name;
  std::string input;
  bool utf8;
  bool valid;
};

void PrintTo(const DomainCase& c, std::ostream* os) {
  *os << c.name;
}

std::vector<DomainCase> domain_cases() {
  return {
      {"simple", "example.com", false, true},
      {"single_label", "a", false, true},
      {"digits", "123", false, true},
      {"a_label", "xn--bcher-kva.example", false, true},
      {"hyphens", "a-b--c.d", false, true},
      {"label_63", rep('x', 63) + ".com", false, true},
      {"domain_255", domain_of(255), false, true},
      {"ipv4_literal", "[192.0.2.1]", false, true},
      {"ipv6_literal", "[IPv6:::1]", false, true},
      {"general_literal", "[tag:x]", false, true},
      {"u_label", std::string("b\xc3\xbc") + "cher.de", true, true},
      {"u_label_off", std::string("b\xc3\xbc") + "cher.de", false, false},
      {"empty", "", false, false},
      {"dot", ".", false, false},
      {"trailing_dot", "example.com.", false, false},
      {"leading_dot", ".example.com", false, false},
      {"double_dot", "a..b", false, false},
      {"leading_hyphen", "-a.b", false, false},
      {"trailing_hyphen", "a-.b", false, false},
      {"label_64", rep('x', 64) + ".com", false, false},
      {"domain_256", domain_of(256), false, false},
      {"space", "a b", false, false},
      {"underscore", "a_b.c", false, false},
      {"mailbox", "a@b.c", false, false},
      {"brackets_in_domain", "a[b]", false, false},
      {"literal_unterminated", "[1.2.3.4", false, false},
      {"literal_trailing", "[1.2.3.4]x", false, false},
      {"literal_bad_ipv4", "[300.1.1.1]", false, false},
      {"literal_bad_ipv6", "[IPv6:1::2::3]", false, false},
      {"overlong_utf8", "a\xc0\x80", true, false},
      {"surrogate_utf8", "a\xed\xa0\x80", true, false},
      {"nul", std::string("a\0b", 3), false, false},
  };
}

class DomainTest : public testing::TestWithParam<DomainCase> {};

TEST_P(DomainTest, Validates) {
  const DomainCase& c = GetParam();
  std::unique_ptr<char[]> buf(new char[c.input.size() + 1]);
  c.input.copy(buf.get(), c.input.size());
  EXPECT_EQ(is_valid_domain(std::string_view(buf.get(), c.input.size()), c.utf8), c.valid);
}

std::string domain_case_name(const testing::TestParamInfo<DomainCase>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Table, DomainTest, testing::ValuesIn(domain_cases()), domain_case_name);

struct Utf8Case {
  std::string name;
  std::string input;
  bool valid;
};

void PrintTo(const Utf8Case& c, std::ostream* os) {
  *os << c.name;
}

std::vector<Utf8Case> utf8_cases() {
  return {
      {"empty", "", true},
      {"ascii", "hello, world", true},
      {"ascii_controls", std::string("\0\x01\x7f", 3), true},
      {"two_octets", "\xc3\xa9", true},
      {"three_octets", "\xe2\x82\xac", true},
      {"four_octets", "\xf0\x9f\x98\x80", true},
      {"min_two", "\xc2\x80", true},
      {"min_three", "\xe0\xa0\x80", true},
      {"min_four", "\xf0\x90\x80\x80", true},
      {"before_surrogates", "\xed\x9f\xbf", true},
      {"after_surrogates", "\xee\x80\x80", true},
      {"max_scalar", "\xf4\x8f\xbf\xbf", true},
      {"mixed", "a\xc3\xa9z\xf0\x9f\x98\x80!", true},
      {"overlong_c0_80", "\xc0\x80", false},
      {"overlong_c1", "\xc1\xbf", false},
      {"overlong_e0_80_80", "\xe0\x80\x80", false},
      {"overlong_e0_9f", "\xe0\x9f\xbf", false},
      {"overlong_f0", "\xf0\x8f\xbf\xbf", false},
      {"surrogate_ed_a0_80", "\xed\xa0\x80", false},
      {"surrogate_high_end", "\xed\xbf\xbf", false},
      {"above_max_f4_90", "\xf4\x90\x80\x80", false},
      {"lead_f5", "\xf5\x80\x80\x80", false},
      {"lead_ff", "\xff", false},
      {"lone_continuation", "\x80", false},
      {"truncated_two", "\xc3", false},
      {"truncated_three", "\xe2\x82", false},
      {"truncated_four", "\xf0\x9f\x98", false},
      {"bad_continuation", std::string("\xe2\x82") + "A", false},
      {"valid_then_truncated", "ok\xc3\xa9\xc3", false},
  };
}

class Utf8Test : public testing::TestWithParam<Utf8Case> {};

TEST_P(Utf8Test, Validates) {
  const Utf8Case& c = GetParam();
  std::unique_ptr<char[]> buf(new char[c.input.size() + 1]);
  c.input.copy(buf.get(), c.input.size());
  EXPECT_EQ(is_valid_utf8(std::string_view(buf.get(), c.input.size())), c.valid);
}

std::string utf8_case_name(const testing::TestParamInfo<Utf8Case>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Table, Utf8Test, testing::ValuesIn(utf8_cases()), utf8_case_name);

TEST(Describe, EveryErrorHasDistinctLowercaseText) {
  std::set<std::string_view> texts;
  for (int e = 0; e <= static_cast<int>(AddrError::bad_utf8); ++e) {
    const std::string_view text = describe(static_cast<AddrError>(e));
    EXPECT_FALSE(text.empty());
    for (char ch : text) EXPECT_FALSE(std::isupper(static_cast<unsigned char>(ch))) << text;
    EXPECT_TRUE(texts.insert(text).second) << text;
  }
  EXPECT_EQ(describe(AddrError::local_part_too_long), "local part longer than 64 octets");
  EXPECT_EQ(describe(AddrError::missing_close_bracket), "no closing '>'");
}

}  // namespace
}  // namespace ringmx
