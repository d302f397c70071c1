// SMTP AUTH in the session (RFC 4954): offered only under TLS, PLAIN and
// LOGIN exchanges, the handler's verdict, AUTH required before MAIL.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/session.h"
#include "tests/unit/session_harness.h"

namespace ringmx {
namespace {

using test::codes;
using test::Harness;

std::string b64(std::string_view s) {
  std::string out;
  sasl::base64_encode(s, out);
  return out;
}

const std::string kPlainAlice = b64(std::string_view("\0alice\0s3cret", 13));

ConnInfo auth_info(AuthMode mode) {
  ConnInfo info = Harness::default_info();
  info.auth = mode;
  info.tls_available = true;
  return info;
}

// A session on a listener with `mode`, past EHLO; under TLS when `tls`.
struct AuthHarness : Harness {
  explicit AuthHarness(AuthMode mode = AuthMode::optional, bool tls = true, SessionConfig cfg = {})
      : Harness(std::move(cfg), auth_info(mode), /*start=*/false) {
    if (tls) session.set_tls("TLS1_3", "TLS_AES_128_GCM_SHA256");
    session.start(now);
    take();
    ehlo = send("EHLO client.example\r\n");
  }
  std::string ehlo;
};

TEST(SessionAuth, NeverOfferedOrTakenInPlaintext) {
  AuthHarness h(AuthMode::optional, /*tls=*/false);
  EXPECT_EQ(h.ehlo.find("AUTH"), std::string::npos);
  EXPECT_EQ(h.send("AUTH PLAIN " + kPlainAlice + "\r\n"),
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
  EXPECT_TRUE(h.rec.auths.empty());
  // After STARTTLS it is offered.
  h.send("STARTTLS\r\n");
  h.session.tls_started("TLS1_3", "TLS_AES_128_GCM_SHA256", h.now);
  EXPECT_NE(h.send("EHLO c\r\n").find(" AUTH PLAIN LOGIN\r\n"), std::string::npos);
}

TEST(SessionAuth, NotEnabledOnTheListener) {
  AuthHarness h(AuthMode::none);
  EXPECT_EQ(h.ehlo.find("AUTH"), std::string::npos);
  EXPECT_EQ(h.send("AUTH PLAIN " + kPlainAlice + "\r\n"),
            "502 5.5.1 Error: authentication not enabled\r\n");
  // Nor is the MAIL parameter known there.
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c> AUTH=<>\r\n")), std::vector<std::string>{"555"});
}

TEST(SessionAuth, PlainWithInitialResponse) {
  AuthHarness h;
  EXPECT_NE(h.ehlo.find(" AUTH PLAIN LOGIN\r\n"), std::string::npos) << h.ehlo;
  EXPECT_EQ(h.send("AUTH PLAIN " + kPlainAlice + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
  ASSERT_EQ(h.rec.auths, std::vector<std::string>{"PLAIN alice s3cret"});
  EXPECT_EQ(h.session.conn().login, "alice");
  // The logged argument is the mechanism alone, never the credentials.
  EXPECT_EQ(h.session.current_arg(), "PLAIN");
  // Once authenticated: not offered again, and refused.
  EXPECT_EQ(h.send("EHLO c\r\n").find("AUTH"), std::string::npos);
  EXPECT_EQ(codes(h.send("AUTH PLAIN " + kPlainAlice + "\r\n")), std::vector<std::string>{"503"});
  // Received says ESMTPSA (RFC 3848) and, by default, not who.
  h.send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n");
  h.send("Subject: x\r\n\r\nhi\r\n.\r\n");
  ASSERT_EQ(h.rec.received.size(), 1u);
  EXPECT_NE(h.rec.received[0].find(" with ESMTPSA id "), std::string::npos) << h.rec.received[0];
  EXPECT_EQ(h.rec.received[0].find("alice"), std::string::npos);
}

TEST(SessionAuth, ReceivedNamesTheUserWhenConfigured) {
  SessionConfig cfg;
  cfg.received_names_auth_user = true;
  AuthHarness h(AuthMode::optional, true, cfg);
  h.send("AUTH PLAIN " + b64(std::string_view("\0a(b)\\c\0pw", 10)) + "\r\n");
  h.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n");
  h.send("\r\nhi\r\n.\r\n");
  ASSERT_EQ(h.rec.received.size(), 1u);
  EXPECT_NE(h.rec.received[0].find("])\r\n\t(Authenticated sender: a?b??c)\r\n\tby "),
            std::string::npos)
      << h.rec.received[0];
}

TEST(SessionAuth, PlainWithContinuation) {
  AuthHarness h;
  EXPECT_EQ(h.send("AUTH PLAIN\r\n"), "334 \r\n");
  EXPECT_EQ(h.send(kPlainAlice + "\r\n"), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(h.rec.auths.size(), 1u);
}

TEST(SessionAuth, LoginExchangeSplitAtEveryOctet) {
  const std::string transcript =
      "AUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64("s3cret") + "\r\nNOOP\r\n";
  for (size_t cut = 1; cut < transcript.size(); ++cut) {
    AuthHarness h;
    std::string out = h.send(transcript.substr(0, cut));
    out += h.send(transcript.substr(cut));
    EXPECT_EQ(out,
              "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
              "235 2.7.0 Authentication successful\r\n250 2.0.0 Ok\r\n")
        << "cut at " << cut;
    EXPECT_EQ(h.rec.auths, std::vector<std::string>{"LOGIN alice s3cret"});
  }
}

TEST(SessionAuth, CancelAndBadBase64) {
  AuthHarness h;
  EXPECT_EQ(h.send("AUTH LOGIN\r\n*\r\n"),
            "334 VXNlcm5hbWU6\r\n501 5.0.0 Authentication aborted\r\n");
  EXPECT_EQ(codes(h.send("AUTH PLAIN\r\n%%%%\r\n")), (std::vector<std::string>{"334", "501"}));
  EXPECT_EQ(codes(h.send("AUTH PLAIN !!!!\r\n")), std::vector<std::string>{"501"});
  EXPECT_TRUE(h.rec.auths.empty());
  // The session is back to commands, not stuck in the exchange.
  EXPECT_EQ(h.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

TEST(SessionAuth, SyntaxAndOrder) {
  AuthHarness h;
  EXPECT_EQ(codes(h.send("AUTH\r\n")), std::vector<std::string>{"501"});
  EXPECT_EQ(h.send("AUTH CRAM-MD5\r\n"), "504 5.5.4 Unrecognized authentication type\r\n");
  EXPECT_EQ(codes(h.send("AUTH PLAIN a b\r\n")), std::vector<std::string>{"501"});
  h.send("MAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(h.send("AUTH PLAIN " + kPlainAlice + "\r\n"),
            "503 5.5.1 Error: MAIL transaction in progress\r\n");
  // Before EHLO (a handshake forgets the one given).
  AuthHarness fresh;
  fresh.session.tls_started("TLS1_3", "x", fresh.now);
  EXPECT_EQ(fresh.send("AUTH PLAIN " + kPlainAlice + "\r\n"),
            "503 5.5.1 Error: send EHLO first\r\n");
}

TEST(SessionAuth, RefusedCountsAgainstTheErrorLimit) {
  SessionConfig cfg;
  cfg.limits.max_bad_commands = 3;
  AuthHarness h(AuthMode::optional, true, cfg);
  h.rec.auth_verdict = Verdict::reject(535, "5.7.8", "Error: authentication failed");
  EXPECT_EQ(h.send("AUTH PLAIN " + kPlainAlice + "\r\n"),
            "535 5.7.8 Error: authentication failed\r\n");
  EXPECT_TRUE(h.session.conn().login.empty());
  // A temporary failure is not the client's error.
  h.rec.auth_verdict = Verdict::reject(454, "4.7.0", "Temporary authentication failure");
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(codes(h.send("AUTH PLAIN " + kPlainAlice + "\r\n")), std::vector<std::string>{"454"});
  }
  h.rec.auth_verdict = Verdict::reject(535, "5.7.8", "Error: authentication failed");
  EXPECT_EQ(codes(h.send("AUTH PLAIN " + kPlainAlice + "\r\n")), std::vector<std::string>{"535"});
  EXPECT_EQ(codes(h.send("AUTH PLAIN " + kPlainAlice + "\r\n")), std::vector<std::string>{"421"});
  EXPECT_TRUE(h.session.closed());
}

TEST(SessionAuth, AHandlerBugIsNotASuccess) {
  AuthHarness h;
  h.rec.auth_verdict = Verdict::reject(250, "2.0.0", "oops");
  EXPECT_EQ(h.send("AUTH PLAIN " + kPlainAlice + "\r\n"),
            "535 5.7.8 Error: authentication failed\r\n");
  EXPECT_TRUE(h.session.conn().login.empty());
}

TEST(SessionAuth, PendingVerdictHoldsPipelinedCommands) {
  AuthHarness h(AuthMode::required);
  h.rec.pend_auth = true;
  const std::string in = "AUTH PLAIN " + kPlainAlice + "\r\nMAIL FROM:<alice@example.com>\r\n";
  const size_t used = h.session.feed(in, h.now);
  EXPECT_TRUE(h.session.waiting());
  EXPECT_EQ(h.take(), "");
  h.session.set_login("alice@example.com");  // the backend's name for the account
  h.session.resume(Verdict::accept(), h.now);
  EXPECT_EQ(h.session.feed(std::string_view(in).substr(used), h.now), in.size() - used);
  EXPECT_EQ(codes(h.take()), (std::vector<std::string>{"235", "250"}));
  EXPECT_EQ(h.session.conn().login, "alice@example.com");
}

TEST(SessionAuth, RequiredBeforeMail) {
  AuthHarness h(AuthMode::required);
  EXPECT_EQ(h.send("MAIL FROM:<a@b.c>\r\n"), "530 5.7.0 Authentication required\r\n");
  h.send("AUTH PLAIN " + kPlainAlice + "\r\n");
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c> AUTH=<>\r\n")), std::vector<std::string>{"250"});
}

TEST(SessionAuth, MailAuthParameter) {
  AuthHarness h;
  h.send("AUTH PLAIN " + kPlainAlice + "\r\n");
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c> AUTH=alice+2Bx@example.com\r\nRSET\r\n")),
            (std::vector<std::string>{"250", "250"}));
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c> AUTH=\r\n")), std::vector<std::string>{"501"});
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c> AUTH=a+zz\r\n")), std::vector<std::string>{"501"});
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c> AUTH=<> AUTH=<>\r\n")),
            std::vector<std::string>{"501"});
}

TEST(SessionAuth, LineLimits) {
  SessionConfig cfg;
  cfg.limits.max_auth_line = 2048;
  AuthHarness h(AuthMode::optional, true, cfg);
  // An AUTH command longer than max_command_line (512) but within max_auth_line.
  const std::string long_pw(900, 'p');
  const std::string ir = b64(std::string(1, '\0') + "alice" + '\0' + long_pw);
  ASSERT_GT(ir.size(), 600u);
  EXPECT_EQ(codes(h.send("AUTH PLAIN " + ir + "\r\n")), std::vector<std::string>{"235"});
  // Other commands keep max_command_line.
  EXPECT_EQ(codes(h.send("NOOP " + std::string(600, 'x') + "\r\n")),
            std::vector<std::string>{"500"});
  // A response line past max_auth_line ends the exchange with 500 5.5.6.
  AuthHarness g(AuthMode::optional, true, cfg);
  EXPECT_EQ(g.send("AUTH PLAIN\r\n"), "334 \r\n");
  EXPECT_EQ(g.send(std::string(3000, 'A') + "\r\n"),
            "500 5.5.6 Authentication exchange line is too long\r\n");
  EXPECT_TRUE(g.rec.auths.empty());
  EXPECT_EQ(g.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

TEST(SessionAuth, HelpListsAuthOnlyWhereOffered) {
  AuthHarness h;
  EXPECT_NE(h.send("HELP\r\n").find(" AUTH"), std::string::npos);
  AuthHarness plain(AuthMode::optional, false);
  EXPECT_EQ(plain.send("HELP\r\n").find(" AUTH"), std::string::npos);
}

}  // namespace
}  // namespace ringmx
