// Brute-force memory of failed AUTHs (core/auth_failures.h) and who may
// send as whom (core/sender_logins.h).
#include "core/auth_failures.h"

#include <gtest/gtest.h>

#include "core/sender_logins.h"

namespace ringmx {
namespace {

IpBytes ip(const char* text) {
  return *parse_ip(text);
}

AuthConfig config(uint32_t max_failures = 3) {
  AuthConfig c;
  c.failure_delay_ms = 100;
  c.max_failure_delay_ms = 350;
  c.max_failures = max_failures;
  c.failure_window_s = 60;
  c.block_s = 30;
  c.max_tracked = 1000;
  return c;
}

TEST(AuthFailures, DelayDoublesUpToItsCapThenTheAddressIsBlocked) {
  AuthFailures f;
  f.configure(config(5), 1);
  const IpBytes a = ip("192.0.2.1");
  EXPECT_EQ(f.failed(a, "alice", 0).delay_ms, 100u);
  EXPECT_EQ(f.failed(a, "bob", 1).delay_ms, 200u);
  EXPECT_EQ(f.failed(a, "carol", 2).delay_ms, 350u);  // capped
  EXPECT_FALSE(f.address_blocked(a, 3));
  EXPECT_EQ(f.failed(a, "dave", 3).delay_ms, 350u);
  const AuthFailures::Failure last = f.failed(a, "erin", 4);
  EXPECT_TRUE(last.address_blocked);
  EXPECT_FALSE(last.user_blocked);
  EXPECT_TRUE(f.address_blocked(a, 5));
  EXPECT_TRUE(f.address_blocked(a, 30'003));
  EXPECT_FALSE(f.address_blocked(a, 30'004));  // block_s later
  EXPECT_FALSE(f.address_blocked(ip("192.0.2.2"), 5));
}

TEST(AuthFailures, AUserGuessedFromManyAddressesIsBlocked) {
  AuthFailures f;
  f.configure(config(3), 1);
  EXPECT_FALSE(f.failed(ip("192.0.2.1"), "Alice", 0).user_blocked);
  EXPECT_FALSE(f.failed(ip("192.0.2.2"), "alice", 0).user_blocked);
  EXPECT_TRUE(f.failed(ip("192.0.2.3"), "ALICE", 0).user_blocked);  // case-insensitive
  EXPECT_TRUE(f.user_blocked("alice", 1));
  EXPECT_FALSE(f.user_blocked("bob", 1));
}

TEST(AuthFailures, TheWindowForgets) {
  AuthFailures f;
  f.configure(config(3), 1);
  const IpBytes a = ip("2001:db8::1");
  f.failed(a, "u", 0);
  f.failed(a, "u", 1000);
  // 60 s after the window opened, it starts over: the delay too.
  EXPECT_EQ(f.failed(a, "v", 61'000).delay_ms, 100u);
  EXPECT_FALSE(f.address_blocked(a, 61'001));
}

TEST(AuthFailures, EachShardTakesItsShareAndTheTablesAreBounded) {
  AuthFailures f;
  AuthConfig c = config(10);
  c.max_tracked = 2;
  f.configure(c, 4);
  EXPECT_EQ(f.share(), 3u);  // ceil(10 / 4)
  f.failed(ip("192.0.2.1"), "a", 0);
  f.failed(ip("192.0.2.2"), "b", 0);
  f.failed(ip("192.0.2.3"), "c", 0);
  EXPECT_EQ(f.tracked(), 4u);  // two addresses and two users
}

TEST(SenderLogins, WithoutATableALoginSendsAsItself) {
  EXPECT_TRUE(SenderLogins::allows(nullptr, "alice@example.org", "Alice@Example.org"));
  EXPECT_TRUE(SenderLogins::allows(nullptr, "alice@example.org", ""));  // the null sender
  EXPECT_FALSE(SenderLogins::allows(nullptr, "alice@example.org", "bob@example.org"));
  EXPECT_FALSE(SenderLogins::allows(nullptr, "alice", "alice@example.org"));
}

TEST(SenderLogins, TableEntries) {
  std::string error;
  auto t = SenderLogins::parse(
      "# who may send as whom\n"
      "alice@example.org: alice@example.org, Alice.Smith@example.org, @lists.example.org\n"
      "\n"
      "app :*   # any sender\r\n",
      "logins", error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->logins(), 2u);
  EXPECT_TRUE(SenderLogins::allows(t.get(), "alice@example.org", "alice.smith@example.org"));
  EXPECT_TRUE(SenderLogins::allows(t.get(), "ALICE@example.org", "x@lists.example.org"));
  EXPECT_FALSE(SenderLogins::allows(t.get(), "alice@example.org", "x@sub.lists.example.org"));
  EXPECT_FALSE(SenderLogins::allows(t.get(), "alice@example.org", "bob@example.org"));
  EXPECT_TRUE(SenderLogins::allows(t.get(), "app", "anyone@anywhere.example"));
  // A login the table does not name: its own address only.
  EXPECT_TRUE(SenderLogins::allows(t.get(), "bob@example.org", "bob@example.org"));
  EXPECT_FALSE(SenderLogins::allows(t.get(), "bob@example.org", "alice@example.org"));
}

TEST(SenderLogins, BadLinesNameTheirPlace) {
  const std::pair<const char*, const char*> bad[] = {
      {"alice alice@example.org\n", "logins:1: expected \"login: senders\""},
      {"ok: a@b\nalice:\n", "logins:2: no senders for the login"},
      {"alice: bob\n", "logins:1: \"bob\" is not an address, @domain or *"},
      {"alice: @\n", "logins:1: \"@\" needs a domain"},
      {": a@b\n", "logins:1: bad login"},
  };
  for (const auto& [text, want] : bad) {
    std::string error;
    EXPECT_FALSE(SenderLogins::parse(text, "logins", error)) << text;
    EXPECT_EQ(error, want);
  }
  std::string error;
  EXPECT_FALSE(SenderLogins::parse("a: " + std::string(9000, 'x') + "@b\n", "f", error));
  EXPECT_EQ(error, "f:1: line longer than 8192 octets");
}

}  // namespace
}  // namespace ringmx
