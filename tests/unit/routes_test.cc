#include "core/routes.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringmx {
namespace {

TEST(RouteTable, ExactWildcardAndLiteral) {
  const RouteTable t(
      {{"store", {"Example.org", "*.example.net"}, "lmtp://127.0.0.1:24", RouteTls::unset, ""},
       {"deep", {"*.a.example.net", "[192.0.2.1]"}, "smtp://mx.test", RouteTls::unset, ""},
       {"apex", {"example.net"}, "smtp://mx.test", RouteTls::unset, ""}});
  EXPECT_FALSE(t.empty());
  EXPECT_EQ(t.find("example.org"), 0);
  EXPECT_EQ(t.find("EXAMPLE.ORG"), 0);
  EXPECT_EQ(t.find("example.org."), 0);      // the root dot names the same domain
  EXPECT_EQ(t.find("sub.example.org"), -1);  // exact means exact
  EXPECT_EQ(t.find("mx.example.net"), 0);
  EXPECT_EQ(t.find("x.y.example.net"), 0);
  EXPECT_EQ(t.find("example.net"), 2);      // "*." is not the domain itself
  EXPECT_EQ(t.find("b.a.example.net"), 1);  // the longest parent wins
  EXPECT_EQ(t.find("a.example.net"), 0);    // a.example.net is a subdomain of example.net
  EXPECT_EQ(t.find("[192.0.2.1]"), 1);
  EXPECT_EQ(t.find("[192.0.2.2]"), -1);
  EXPECT_EQ(t.find("example.com"), -1);
  EXPECT_EQ(t.find("notexample.org"), -1);
  EXPECT_EQ(t.find("example.org.evil.test"), -1);
  EXPECT_EQ(t.find(""), -1);
  EXPECT_TRUE(RouteTable(std::vector<RouteConfig>{}).empty());
}

TEST(RouteTable, CatchAllTakesWhatNoOtherRouteDoes) {
  const RouteTable t(
      {{"store", {"example.org", "*.example.net"}, "lmtp://127.0.0.1:24", RouteTls::unset, ""},
       {"smarthost", {"*"}, "smtp://127.0.0.1:2526", RouteTls::unset, ""}});
  EXPECT_EQ(t.catch_all(), 1);
  EXPECT_EQ(t.find("example.org"), 0);
  EXPECT_EQ(t.find("a.example.net"), 0);
  EXPECT_EQ(t.find("elsewhere.example"), 1);
  EXPECT_EQ(t.find("[192.0.2.9]"), 1);
  EXPECT_FALSE(t.empty());
  const RouteTable only({{"smarthost", {"*"}, "smtp://127.0.0.1:2526", RouteTls::unset, ""}});
  EXPECT_FALSE(only.empty());  // not the "any domain, local spool" default
  EXPECT_EQ(
      RouteTable({{"s", {"example.org"}, "lmtp://127.0.0.1:24", RouteTls::unset, ""}}).catch_all(),
      -1);
}

TEST(RouteTable, Utf8DomainsCompareOctetForOctet) {
  const RouteTable t({{"u",
                       {"\xc3\xa9xample.org", "*.\xe4\xbe\x8b\xe5\xad\x90.test"},
                       "smtp://h",
                       RouteTls::unset,
                       ""}});
  EXPECT_EQ(t.find("\xc3\xa9xample.org"), 0);
  EXPECT_EQ(t.find("mx.\xe4\xbe\x8b\xe5\xad\x90.test"), 0);
  EXPECT_EQ(t.find("example.org"), -1);
}

TEST(Routes, MailboxDomain) {
  EXPECT_EQ(mailbox_domain("user@example.org"), "example.org");
  EXPECT_EQ(mailbox_domain("\"a@b\"@example.org"), "example.org");
  EXPECT_EQ(mailbox_domain("postmaster"), "");
}

TEST(Routes, Destinations) {
  Destination d;
  EXPECT_EQ(parse_destination("lmtp://127.0.0.1:24", d), "");
  EXPECT_EQ(d.kind, DestinationKind::lmtp_tcp);
  EXPECT_EQ(d.host, "127.0.0.1");
  EXPECT_EQ(d.port, 24);
  EXPECT_EQ(parse_destination("lmtp:unix:/run/dovecot/lmtp", d), "");
  EXPECT_EQ(d.kind, DestinationKind::lmtp_unix);
  EXPECT_EQ(d.path, "/run/dovecot/lmtp");
  EXPECT_EQ(parse_destination("smtp://relay.example.org", d), "");
  EXPECT_EQ(d.kind, DestinationKind::smtp);
  EXPECT_EQ(d.port, 25);
  EXPECT_EQ(parse_destination("smtp://[::1]:2525", d), "");
  EXPECT_EQ(d.host, "::1");
  EXPECT_EQ(d.port, 2525);
  for (const char* bad : {"", "lmtp://h", "lmtp://:24", "smtp://h:0", "smtp://h:65536", "smtp://h:",
                          "smtp://h:2x", "lmtp:unix:relative", "lmtp:unix:", "ftp://h:21",
                          "smtp://[::1", "smtp://[::1]x", "smtp://h_1:25", "smtp://a..b"}) {
    EXPECT_NE(parse_destination(bad, d), "") << bad;
  }
}

TEST(Routes, DomainPatterns) {
  for (const char* good : {"example.org", "*", "*.example.net", "[192.0.2.1]", "[IPv6:2001:db8::1]",
                           "xn--bcher-kva.example", "\xc3\xa9xample.org"}) {
    EXPECT_EQ(check_domain_pattern(good), "") << good;
  }
  for (const char* bad :
       {"", "**", "*.", "a.*.b", "*example.org", "a..b", ".a", "a b", "[]", "a@b"}) {
    EXPECT_NE(check_domain_pattern(bad), "") << bad;
  }
  EXPECT_NE(check_domain_pattern(std::string(64, 'x') + ".org"), "");  // a label over 63
}

}  // namespace
}  // namespace ringmx
