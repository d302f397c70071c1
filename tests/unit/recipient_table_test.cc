#include "core/recipient_table.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "net/list_files.h"
#include "tests/unit/scratch_dir.h"

namespace ringmx {
namespace {

using test_support::ScratchDir;

std::shared_ptr<const RecipientTable> parse_ok(std::string_view text, RecipientOptions opts = {}) {
  RecipientFileError err;
  auto t = RecipientTable::parse(text, "rcpts", opts, err);
  EXPECT_NE(t, nullptr) << err.to_string();
  return t;
}

// The error a bad text gives, "file:line: message".
std::string parse_error(std::string_view text, RecipientOptions opts = {}) {
  RecipientFileError err;
  auto t = RecipientTable::parse(text, "rcpts", opts, err);
  EXPECT_EQ(t, nullptr);
  return err.to_string();
}

TEST(RecipientTable, ParseRulesCommentsAndBlankLines) {
  const auto t = parse_ok(
      "# the mailboxes\n"
      "\n"
      "alice@example.org\n"
      "   bob@example.org   # indented, with a comment\n"
      "\tcarol@Example.ORG\t\r\n"
      "a#b@example.org\n"  // '#' inside an address is part of it
      "@catchall.test\n"
      "alice@example.org\n"  // a duplicate is one entry
      "   # an indented comment\n"
      "dave@example.net");  // no final newline
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->addresses(), 5u);
  EXPECT_EQ(t->catch_alls(), 1u);
  EXPECT_EQ(t->domains(), 3u);
  EXPECT_EQ(t->find("alice@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("bob@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("carol@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("a#b@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("a@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("dave@example.net"), RecipientMatch::address);
  EXPECT_EQ(t->find("eve@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("alice@example.net"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("alice@sub.example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find(""), RecipientMatch::unknown);
  EXPECT_EQ(t->find("@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("alice@"), RecipientMatch::unknown);
  EXPECT_GT(t->memory_bytes(), 0u);
}

TEST(RecipientTable, CatchAllTakesAnyLocalPartOfItsDomainOnly) {
  const auto t = parse_ok("@example.org\nbob@example.net\n@[192.0.2.1]\n");
  EXPECT_EQ(t->find("anyone@example.org"), RecipientMatch::catch_all);
  EXPECT_EQ(t->find("Some.One@EXAMPLE.org"), RecipientMatch::catch_all);
  EXPECT_EQ(t->find("x@[192.0.2.1]"), RecipientMatch::catch_all);
  EXPECT_EQ(t->find("x@sub.example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("x@example.org.evil.test"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("alice@example.net"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("bob@example.net"), RecipientMatch::address);
}

TEST(RecipientTable, CaseInsensitiveByDefault) {
  const auto t = parse_ok("John.Smith@Example.Org\n");
  EXPECT_EQ(t->find("john.smith@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("JOHN.SMITH@EXAMPLE.ORG"), RecipientMatch::address);
  EXPECT_EQ(t->find("John.Smith@Example.Org"), RecipientMatch::address);
}

TEST(RecipientTable, CaseSensitiveLocalPartsKeepDomainsInsensitive) {
  RecipientOptions opts;
  opts.case_sensitive = true;
  const auto t = parse_ok("John@Example.Org\n", opts);
  EXPECT_EQ(t->find("John@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("John@EXAMPLE.ORG"), RecipientMatch::address);
  EXPECT_EQ(t->find("john@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("JOHN@example.org"), RecipientMatch::unknown);
  // postmaster is case-insensitive whatever the option (RFC 5321 4.5.1).
  EXPECT_EQ(t->find("PostMaster@example.org"), RecipientMatch::postmaster);
}

TEST(RecipientTable, Utf8OctetsCompareAsTheyAre) {
  const auto t = parse_ok("J\xc3\xb6rg@\xc3\xa9xample.org\n");
  EXPECT_EQ(t->find("j\xc3\xb6rg@\xc3\xa9xample.org"), RecipientMatch::address);  // J folds
  EXPECT_EQ(t->find("J\xc3\x96rg@\xc3\xa9xample.org"), RecipientMatch::unknown);  // not O-umlaut
}

// Folding works eight octets at a time: only A-Z fold, at any position of
// a long key, and the neighbours of the letters ('@' '[' '`' '{') and
// non-ASCII octets whose low seven bits spell a letter stay as they are.
TEST(RecipientTable, FoldingTouchesOnlyAsciiLetters) {
  const auto t = parse_ok(
      "abcdefghijklmnopqrstuvwxyz0123456789@example.org\n"
      "zzzzzzzz{@example.org\n"
      "aaaaaaaa`@example.org\n"
      "aaaaaaa\xc3\xa1@example.org\n");
  EXPECT_EQ(t->find("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@EXAMPLE.ORG"), RecipientMatch::address);
  EXPECT_EQ(t->find("aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@ExAmPlE.oRg"), RecipientMatch::address);
  EXPECT_EQ(t->find("ZZZZZZZZ{@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("ZZZZZZZZ[@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("AAAAAAAA`@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("AAAAAAAA@@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("AAAAAAA\xc3\xa1@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("AAAAAAA\xc3\x81@example.org"), RecipientMatch::unknown);  // not a-acute
}

TEST(RecipientTable, SubaddressesMatchTheirBaseAddress) {
  const auto t = parse_ok("user@example.org\nlist+owner@example.org\n");
  EXPECT_EQ(t->find("user+tag@example.org"), RecipientMatch::subaddress);
  EXPECT_EQ(t->find("User+Tag@Example.org"), RecipientMatch::subaddress);
  EXPECT_EQ(t->find("user+a+b@example.org"), RecipientMatch::subaddress);  // the first cuts
  EXPECT_EQ(t->find("user+@example.org"), RecipientMatch::subaddress);
  EXPECT_EQ(t->find("user-tag@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("+user@example.org"), RecipientMatch::unknown);  // no base before it
  EXPECT_EQ(t->find("other+user@example.org"), RecipientMatch::unknown);
  // An entry with a tag is an address of its own; its base is not listed.
  EXPECT_EQ(t->find("list+owner@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("list@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("list+other@example.org"), RecipientMatch::unknown);
}

TEST(RecipientTable, SubaddressSeparatorsAreASetOrOff) {
  RecipientOptions several;
  several.subaddress_separator = "+-";
  const auto t = parse_ok("user@example.org\n", several);
  EXPECT_EQ(t->find("user+x@example.org"), RecipientMatch::subaddress);
  EXPECT_EQ(t->find("user-x@example.org"), RecipientMatch::subaddress);
  EXPECT_EQ(t->find("user=x@example.org"), RecipientMatch::unknown);

  RecipientOptions off;
  off.subaddress_separator = "";
  const auto u = parse_ok("user@example.org\n", off);
  EXPECT_EQ(u->find("user+x@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(u->find("user@example.org"), RecipientMatch::address);
}

TEST(RecipientTable, CheckSubaddressSeparator) {
  EXPECT_EQ(check_subaddress_separator(""), "");
  EXPECT_EQ(check_subaddress_separator("+"), "");
  EXPECT_EQ(check_subaddress_separator("+-=_"), "");
  EXPECT_EQ(check_subaddress_separator("+-=_~#%&"), "");   // 8: the bound
  EXPECT_NE(check_subaddress_separator("+-=_~#%&!"), "");  // 9
  EXPECT_NE(check_subaddress_separator("a"), "");
  EXPECT_NE(check_subaddress_separator("1"), "");
  EXPECT_NE(check_subaddress_separator("@"), "");
  EXPECT_NE(check_subaddress_separator("."), "");
  EXPECT_NE(check_subaddress_separator(" "), "");
  EXPECT_NE(check_subaddress_separator("++"), "");
  RecipientOptions bad;
  bad.subaddress_separator = "x";
  EXPECT_EQ(parse_error("a@b.test\n", bad).rfind("rcpts: subaddress separator", 0), 0u);
}

TEST(RecipientTable, PostmasterIsAlwaysAccepted) {
  const auto t = parse_ok("alice@example.org\n@catchall.test\n");
  EXPECT_EQ(t->find("postmaster"), RecipientMatch::postmaster);
  EXPECT_EQ(t->find("Postmaster"), RecipientMatch::postmaster);
  EXPECT_EQ(t->find("POSTMASTER"), RecipientMatch::postmaster);
  EXPECT_EQ(t->find("postmaster@example.org"), RecipientMatch::postmaster);
  EXPECT_EQ(t->find("postmaster@EXAMPLE.ORG"), RecipientMatch::postmaster);
  EXPECT_EQ(t->find("postmaster@catchall.test"), RecipientMatch::catch_all);
  EXPECT_EQ(t->find("postmaster@example.net"), RecipientMatch::unknown);  // not our domain
  EXPECT_EQ(t->find("postmasterx@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("webmaster"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("alice"), RecipientMatch::unknown);
}

TEST(RecipientTable, ErrorsNameFileAndLine) {
  EXPECT_EQ(parse_error("a@b.test\nnot-an-address\n"),
            "rcpts:2: not an address: expected user@domain or @domain");
  EXPECT_EQ(parse_error("a@b.test\n\n# c\nuser@\n"), "rcpts:4: not an address: empty domain");
  EXPECT_EQ(parse_error("@\n"), "rcpts:1: not a domain after '@' (a catch-all is @domain)");
  EXPECT_EQ(parse_error("@bad..domain\n"),
            "rcpts:1: not a domain after '@' (a catch-all is @domain)");
  EXPECT_EQ(parse_error("a@b.test c@d.test\n"),
            "rcpts:1: unexpected text after the entry (a comment starts with '#')");
  EXPECT_EQ(parse_error("postmaster\n"),
            "rcpts:1: not an address: expected user@domain or @domain");
  EXPECT_EQ(parse_error("x\n").rfind("rcpts:1: ", 0), 0u);
  EXPECT_EQ(parse_error("a..b@example.org\n").rfind("rcpts:1: not an address: ", 0), 0u);
  EXPECT_EQ(parse_error("a@b@example.org\n").rfind("rcpts:1: not an address", 0), 0u);
  EXPECT_EQ(parse_error("a@exa_mple.org\n").rfind("rcpts:1: not an address", 0), 0u);
  EXPECT_EQ(parse_error(std::string("a\0b@example.org\n", 16)).rfind("rcpts:1: not an address", 0),
            0u);
  EXPECT_EQ(parse_error(std::string(65, 'l') + "@example.org\n"),
            "rcpts:1: not an address: local part longer than 64 octets");
  // Nothing listed would refuse every recipient: an error, not an empty table.
  EXPECT_EQ(parse_error("").rfind("rcpts: has no entries", 0), 0u);
  EXPECT_EQ(parse_error("# only comments\n\n").rfind("rcpts: has no entries", 0), 0u);
}

TEST(RecipientTable, LineLengthBound) {
  // 320 octets is the longest line; its CRLF or LF does not count.
  const std::string comment = "# " + std::string(kMaxRecipientLine - 2, 'c');
  ASSERT_EQ(comment.size(), kMaxRecipientLine);
  EXPECT_NE(parse_ok("a@b.test\n" + comment + "\n"), nullptr);
  EXPECT_NE(parse_ok("a@b.test\r\n" + comment + "\r\n"), nullptr);
  EXPECT_EQ(parse_error("a@b.test\n" + comment + "c\n"), "rcpts:2: line is longer than 320 octets");
  // The longest address a client can name (a path is at most 256 octets with
  // its brackets: 254) fits, and one octet more is refused as a client's would be.
  const std::string domain =
      std::string(62, 'd') + "." + std::string(62, 'd') + "." + std::string(63, 'e');
  const std::string longest = std::string(64, 'l') + "@" + domain;
  ASSERT_EQ(longest.size(), 254u);
  EXPECT_EQ(parse_error("l" + longest + "\n").rfind("rcpts:1: not an address", 0), 0u);
  const auto t = parse_ok(longest + "\n");
  EXPECT_EQ(t->find(longest), RecipientMatch::address);
  // A lookup longer than any entry can be is a miss, not an overflow.
  EXPECT_EQ(t->find(std::string(400, 'x') + "@" + domain), RecipientMatch::unknown);
}

std::string random_local(std::mt19937_64& rng) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789._-";
  std::uniform_int_distribution<int> len(3, 20);
  std::uniform_int_distribution<int> pick(0, 25 + 10);  // no '.', '_' or '-' first
  std::string s;
  const int n = len(rng);
  for (int i = 0; i < n; ++i) s.push_back(kChars[pick(rng)]);
  return s;
}

TEST(RecipientTable, HundredThousandRandomEntriesAllFoundOthersNot) {
  std::mt19937_64 rng(20240611);
  const std::vector<std::string> domains = {"example.org", "example.net", "mail.example.com",
                                            "xn--bcher-kva.test"};
  std::unordered_set<std::string> in;
  std::vector<std::string> listed;
  std::string text;
  while (listed.size() < 100'000) {
    std::string a = random_local(rng) + "@" + domains[rng() % domains.size()];
    if (!in.insert(a).second) continue;
    text += a + "\n";
    listed.push_back(std::move(a));
  }
  RecipientOptions opts;
  opts.subaddress_separator = "";  // a random miss must not be a subaddress of a hit
  const auto t = parse_ok(text, opts);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->addresses(), 100'000u);
  EXPECT_EQ(t->domains(), domains.size());
  for (const std::string& a : listed) {
    ASSERT_EQ(t->find(a), RecipientMatch::address) << a;
  }
  size_t misses = 0;
  while (misses < 100'000) {
    std::string a = random_local(rng) + "@" + domains[rng() % domains.size()];
    if (in.count(a) != 0) continue;
    ASSERT_EQ(t->find(a), RecipientMatch::unknown) << a;
    ++misses;
  }
  // Compact: well under 100 octets an entry (a node-based set costs more than that).
  EXPECT_LT(t->memory_bytes(), size_t{100} * 100'000);
}

TEST(RecipientTable, ManyDomainsGrowTheTable) {
  // Each line a domain of its own: twice as many keys as lines, past the first sizing.
  std::string text;
  for (int i = 0; i < 5000; ++i)
    text += "u" + std::to_string(i) + "@d" + std::to_string(i) + ".test\n";
  const auto t = parse_ok(text);
  EXPECT_EQ(t->domains(), 5000u);
  for (int i = 0; i < 5000; ++i) {
    const std::string d = "d" + std::to_string(i) + ".test";
    ASSERT_EQ(t->find("u" + std::to_string(i) + "@" + d), RecipientMatch::address);
    ASSERT_EQ(t->find("postmaster@" + d), RecipientMatch::postmaster);
    ASSERT_EQ(t->find("v@" + d), RecipientMatch::unknown);
  }
}

// ---- the file, as net/ reads it ----

TEST(RecipientFile, LoadsAndReportsFileProblems) {
  ScratchDir dir;
  const std::string path = dir.str() + "/recipients";
  RecipientsConfig cfg;
  EXPECT_EQ(load_recipient_file(cfg), nullptr);  // no file: no check

  cfg.file = path;
  try {
    load_recipient_file(cfg);
    FAIL() << "a missing file loaded";
  } catch (const ListFileLoadError& e) {
    EXPECT_EQ(std::string(e.what()), "recipients.file: " + path + ": No such file or directory");
  }
  { std::ofstream(path) << "Alice@Example.org\nbob+x@example.org\n"; }
  cfg.subaddress_separator = "";
  cfg.case_sensitive = true;
  auto t = load_recipient_file(cfg);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->find("Alice@example.org"), RecipientMatch::address);
  EXPECT_EQ(t->find("alice@example.org"), RecipientMatch::unknown);
  EXPECT_EQ(t->find("bob+x@example.org"), RecipientMatch::address);

  { std::ofstream(path) << "ok@example.org\n\nbroken\n"; }
  try {
    load_recipient_file(cfg);
    FAIL() << "a bad line loaded";
  } catch (const ListFileLoadError& e) {
    EXPECT_EQ(std::string(e.what()),
              "recipients.file: " + path + ":3: not an address: expected user@domain or @domain");
  }

  cfg.file = dir.str();
  try {
    load_recipient_file(cfg);
    FAIL() << "a directory loaded";
  } catch (const ListFileLoadError& e) {
    EXPECT_EQ(std::string(e.what()), "recipients.file: " + dir.str() + ": not a regular file");
  }

  if (::geteuid() != 0) {  // root reads it anyway
    { std::ofstream(path) << "ok@example.org\n"; }
    ::chmod(path.c_str(), 0);
    cfg.file = path;
    EXPECT_THROW(load_recipient_file(cfg), ListFileLoadError);
  }
}

}  // namespace
}  // namespace ringmx
