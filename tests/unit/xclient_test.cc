// XCLIENT: the attribute parser, and a session driven through it (offered
// and honoured only when allowed, refused in a transaction, a new greeting,
// the new identity in the Received header).
#include "core/xclient.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/session.h"
#include "tests/unit/session_harness.h"

namespace ringmx {
namespace {

using test::codes;
using test::Harness;

TEST(XclientParse, EveryAttribute) {
  XclientUpdate u;
  ASSERT_EQ(parse_xclient("ADDR=192.0.2.7 PORT=40001 NAME=mail.example.net HELO=mail.example.net "
                          "PROTO=ESMTP LOGIN=alice DESTADDR=IPV6:2001:DB8::0:25 DESTPORT=25",
                          u),
            "");
  EXPECT_EQ(u.addr, "192.0.2.7");
  EXPECT_EQ(u.port, 40001);
  EXPECT_EQ(u.name, "mail.example.net");
  EXPECT_EQ(u.helo, "mail.example.net");
  EXPECT_EQ(u.esmtp, true);
  EXPECT_EQ(u.login, "alice");
  EXPECT_EQ(u.destaddr, "2001:db8::25");  // canonical form
  EXPECT_EQ(u.destport, 25);
}

TEST(XclientParse, NamesAreCaseInsensitiveValuesAreXtext) {
  XclientUpdate u;
  ASSERT_EQ(parse_xclient("addr=IPv6:::1 helo=a+2Bb proto=smtp", u), "");
  EXPECT_EQ(u.addr, "::1");
  EXPECT_EQ(u.helo, "a+b");
  EXPECT_EQ(u.esmtp, false);
  EXPECT_FALSE(u.port.has_value());
  EXPECT_FALSE(u.login.has_value());
}

TEST(XclientParse, UnavailableClearsTheValue) {
  XclientUpdate u;
  ASSERT_EQ(parse_xclient("NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL] PORT=[UNAVAILABLE]", u), "");
  EXPECT_EQ(u.name, "");
  EXPECT_EQ(u.addr, "");
  EXPECT_EQ(u.port, 0);
}

TEST(XclientParse, RefusesBadInput) {
  for (const char* bad :
       {"", "ADDR", "=x", "ADDR=", "ADDR=300.1.1.1", "ADDR=IPV6:nonsense", "PORT=65536", "PORT=-1",
        "PORT=8x", "NAME=bad/name", "PROTO=LMTP", "HELO=a+20b", "HELO=a+0Db", "HELO=a+4",
        "HELO=a+ZZ", "HELO=a=b", "LOGIN=+C3+A9", "COLOR=blue", "ADDR=192.0.2.1 X=1"}) {
    XclientUpdate u;
    const std::string why = parse_xclient(bad, u);
    EXPECT_FALSE(why.empty()) << bad;
    for (const char c : why) EXPECT_TRUE(c >= 32 && c < 127) << bad;
  }
  XclientUpdate u;
  EXPECT_EQ(parse_xclient("COLOR=blue", u), "Bad XCLIENT attribute name: COLOR");
  EXPECT_EQ(parse_xclient(std::string(300, 'A') + "=1", u), "Bad XCLIENT attribute name");
  EXPECT_NE(parse_xclient("HELO=" + std::string(256, 'h'), u), "");
}

Harness trusted() {
  ConnInfo info = Harness::default_info();
  info.xclient_allowed = true;
  return Harness({}, info);
}

TEST(XclientSession, OfferedOnlyToAllowedClients) {
  Harness plain;
  plain.take();
  EXPECT_EQ(plain.send("EHLO c\r\n").find("XCLIENT"), std::string::npos);
  EXPECT_EQ(plain.send("XCLIENT ADDR=192.0.2.9\r\n"),
            "550 5.7.0 Error: insufficient authorization\r\n");
  EXPECT_EQ(plain.send("HELP\r\n").find("XCLIENT"), std::string::npos);

  Harness h = trusted();
  h.take();
  EXPECT_NE(h.send("EHLO c\r\n")
                .find("250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT\r\n"),
            std::string::npos);
  EXPECT_NE(h.send("HELP\r\n").find(" XCLIENT"), std::string::npos);
}

TEST(XclientSession, ResetsToANewGreetingWithTheNewClient) {
  Harness h = trusted();
  h.take();
  h.send("EHLO proxy.example\r\n");
  EXPECT_EQ(h.send("XCLIENT ADDR=198.51.100.4 PORT=5555 NAME=mx.sender.example "
                   "HELO=mx.sender.example\r\n"),
            "220 localhost ESMTP ringmx\r\n");
  EXPECT_EQ(h.session.conn().client_ip, "198.51.100.4");
  EXPECT_EQ(h.session.conn().client_port, 5555);
  // Back at the greeting stage: EHLO first.
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.example>\r\n")), std::vector<std::string>{"503"});
  const std::string out = h.send(
      "EHLO proxy.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
      "Subject: x\r\n\r\nbody\r\n.\r\n");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"250", "250", "250", "354", "250"}));
  ASSERT_EQ(h.rec.received.size(), 1u);
  // The real client's HELO and verified name, not the front end's.
  EXPECT_EQ(h.rec.received[0].rfind(
                "Received: from mx.sender.example (mx.sender.example [198.51.100.4])\r\n"
                "\tby localhost (ringmx) with ESMTP id ",
                0),
            0u)
      << h.rec.received[0];
}

TEST(XclientSession, LoginAndProtoShowInReceived) {
  const std::string txn =
      "EHLO proxy.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
      "\r\nbody\r\n.\r\n";
  Harness h = trusted();
  h.take();
  h.send("EHLO proxy.example\r\nXCLIENT LOGIN=alice PROTO=ESMTP\r\n" + txn);
  // PROTO=SMTP survives the client's own EHLO (XCLIENT_README): plain SMTP,
  // which has no authenticated form (RFC 3848).
  h.send("XCLIENT PROTO=SMTP\r\n" + txn);
  ASSERT_EQ(h.rec.received.size(), 2u);
  EXPECT_NE(h.rec.received[0].find(" with ESMTPA id "), std::string::npos) << h.rec.received[0];
  EXPECT_EQ(h.rec.received[0].find("alice"), std::string::npos);  // never names the user
  EXPECT_NE(h.rec.received[1].find(" with SMTP id "), std::string::npos) << h.rec.received[1];
  EXPECT_EQ(h.session.conn().client_ip, "192.0.2.1");  // ADDR not sent: kept
  EXPECT_EQ(h.session.conn().login, "alice");          // not sent again: kept
}

TEST(XclientSession, RefusedInATransactionAndOnBadSyntax) {
  Harness h = trusted();
  h.take();
  h.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
  EXPECT_EQ(h.send("XCLIENT ADDR=192.0.2.9\r\n"),
            "503 5.5.1 Error: MAIL transaction in progress\r\n");
  h.send("RSET\r\n");
  EXPECT_EQ(h.send("XCLIENT ADDR=bogus\r\n"), "501 5.5.4 Bad XCLIENT ADDR syntax: bogus\r\n");
  EXPECT_EQ(h.send("XCLIENT\r\n"), "501 5.5.4 Syntax: XCLIENT attribute=value ...\r\n");
  EXPECT_EQ(h.session.conn().client_ip, "192.0.2.1");  // nothing applied
}

struct XclientRecorder : test::Recorder {
  std::vector<std::string> changes;
  int connects = 0;
  void on_xclient(Session& s, std::string_view previous) override {
    changes.push_back(std::string(previous) + ">" + s.conn().client_ip);
  }
  Verdict on_connect(Session& s) override {
    ++connects;
    if (s.conn().client_ip == "203.0.113.66") {
      return Verdict::reject(554, "5.7.1", "Error: listed client");
    }
    return Verdict::accept();
  }
};

TEST(XclientSession, TheConnectCheckRunsAgain) {
  XclientRecorder rec;
  ConnInfo info = Harness::default_info();
  info.xclient_allowed = true;
  // A transcript in one read, as Harness sends them (see Harness::relaxed).
  auto settings = std::make_shared<SessionSettings>(Harness::relaxed(SessionConfig{}));
  const Now now{1000, 1795241997};
  Session s(settings, rec, info, now);
  s.start(now);
  s.feed("XCLIENT ADDR=203.0.113.66\r\nEHLO x\r\n", now);
  EXPECT_EQ(rec.connects, 2);
  ASSERT_EQ(rec.changes.size(), 1u);
  EXPECT_EQ(rec.changes[0], "192.0.2.1>203.0.113.66");
  EXPECT_EQ(codes(s.output()), (std::vector<std::string>{"220", "554", "503"}));
}

}  // namespace
}  // namespace ringmx
