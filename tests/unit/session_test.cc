// The SMTP session, driven as transcripts: client bytes in, replies out.
#include "core/session.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "tests/unit/session_harness.h"

namespace ringmx {
namespace {

using test::codes;
using test::Harness;
using test::Recorder;
using test::reply_lines;

const std::string kTxn =
    "EHLO client.example\r\n"
    "MAIL FROM:<sender@example.com>\r\n"
    "RCPT TO:<rcpt@example.org>\r\n"
    "DATA\r\n"
    "Subject: hi\r\n\r\nbody\r\n..dot\r\n.\r\n"
    "QUIT\r\n";

TEST(Session, GreetingHasNoEnhancedCode) {
  Harness h;
  EXPECT_EQ(h.take(), "220 localhost ESMTP ringmx\r\n");
}

TEST(Session, EhloAdvertisesExtensions) {
  Harness h;
  h.take();
  std::string out = h.send("EHLO c\r\n");
  EXPECT_EQ(out,
            "250-localhost\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n"
            "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-BINARYMIME\r\n"
            "250 DSN\r\n");
}

TEST(Session, EhloOffersStarttlsOnlyWhenAvailableAndInactive) {
  ConnInfo info = Harness::default_info();
  info.tls_available = true;
  Harness h({}, info);
  h.take();
  EXPECT_NE(h.send("EHLO c\r\n").find("250 STARTTLS\r\n"), std::string::npos);
  EXPECT_EQ(h.send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(h.rec.starttls_calls, 1);
  h.session.tls_started("TLS1_3", "TLS_AES_128_GCM_SHA256", h.now);
  // RFC 3207 4.2: HELO state is forgotten.
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c>\r\n")), std::vector<std::string>{"503"});
  std::string ehlo = h.send("EHLO c\r\n");
  EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(h.send("STARTTLS\r\n"), "503 5.5.1 Error: TLS already active\r\n");
}

TEST(Session, StarttlsDiscardsPipelinedPlaintext) {
  ConnInfo info = Harness::default_info();
  info.tls_available = true;
  Harness h({}, info);
  h.take();
  h.send("EHLO c\r\n");
  // CVE-2011-0411: RSET injected behind STARTTLS in the same packet.
  EXPECT_EQ(h.send("STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x.y>\r\n"),
            "220 2.0.0 Ready to start TLS\r\n");
  // More plaintext before the handshake is dropped too.
  EXPECT_EQ(h.send("NOOP\r\n"), "");
  h.session.tls_started("TLS1_2", "ECDHE-ECDSA-AES128-GCM-SHA256", h.now);
  EXPECT_EQ(h.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

TEST(Session, RequireTlsRefusesMailUntilStarttls) {
  ConnInfo info = Harness::default_info();
  info.tls_available = true;
  info.tls_required = true;
  Harness h({}, info);
  h.take();
  h.send("EHLO c\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<a@b.c>\r\n"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
  // The session goes on: STARTTLS, then mail as usual.
  EXPECT_EQ(h.send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  h.session.tls_started("TLS1_3", "TLS_AES_128_GCM_SHA256", h.now);
  h.send("EHLO c\r\n");
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c>\r\n")), std::vector<std::string>{"250"});
}

TEST(Session, ImplicitTlsSessionIsEsmtpsFromTheStart) {
  ConnInfo info = Harness::default_info();
  info.tls_required = true;  // satisfied by the implicit handshake
  Harness h({}, info, /*start=*/false);
  h.session.set_tls("TLS1_3", "TLS_AES_256_GCM_SHA384");
  h.session.start(h.now);
  h.take();
  EXPECT_EQ(h.send("EHLO c\r\n").find("STARTTLS"), std::string::npos);
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c>\r\n")), std::vector<std::string>{"250"});
  EXPECT_EQ(h.send("STARTTLS\r\n"), "503 5.5.1 Error: TLS already active\r\n");
}

TEST(Session, StarttlsNotAvailable) {
  Harness h;
  h.take();
  EXPECT_EQ(codes(h.send("EHLO c\r\nSTARTTLS\r\nSTARTTLS now\r\n")),
            (std::vector<std::string>{"250", "502", "501"}));
}

TEST(Session, FullTransaction) {
  Harness h;
  std::string out = h.take();
  out += h.send(kTxn);
  EXPECT_EQ(codes(out),
            (std::vector<std::string>{"220", "250", "250", "250", "354", "250", "221"}));
  EXPECT_NE(out.find("250 2.0.0 Ok: queued as 000000000001A0001\r\n"), std::string::npos) << out;
  EXPECT_TRUE(h.session.closed());
  ASSERT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_EQ(h.rec.bodies[0], "Subject: hi\r\n\r\nbody\r\n.dot\r\n");
  EXPECT_EQ(h.rec.envelopes[0].sender, "sender@example.com");
  ASSERT_EQ(h.rec.envelopes[0].recipients.size(), 1u);
  EXPECT_EQ(h.rec.envelopes[0].recipients[0].address, "rcpt@example.org");
  EXPECT_EQ(h.rec.received[0],
            "Received: from client.example (unknown [192.0.2.1])\r\n"
            "\tby localhost (ringmx) with ESMTP id 000000000001A0001\r\n"
            "\tfor <rcpt@example.org>;\r\n"
            "\tSat, 21 Nov 2026 06:19:57 +0000\r\n");
}

TEST(Session, PipelinedRepliesLeaveTogether) {
  Harness h;
  h.take();
  // One feed, one output holding every reply in order (RFC 2920).
  std::string out = h.send(
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nRCPT TO:<bad@>\r\nRCPT TO:<w@y.z>\r\n"
      "DATA\r\nx\r\n.\r\nNOOP\r\n");
  EXPECT_EQ(codes(out),
            (std::vector<std::string>{"250", "250", "250", "501", "250", "354", "250", "250"}));
  ASSERT_EQ(h.rec.envelopes.size(), 1u);
  EXPECT_EQ(h.rec.envelopes[0].recipients.size(), 2u);
}

TEST(Session, EverySplitPointGivesTheSameResult) {
  Harness whole;
  std::string want = whole.take();
  want += whole.send(kTxn);
  for (size_t chunk = 1; chunk <= kTxn.size(); ++chunk) {
    Harness h;
    std::string out = h.take();
    for (size_t pos = 0; pos < kTxn.size(); pos += chunk) out += h.send(kTxn.substr(pos, chunk));
    EXPECT_EQ(out, want) << "chunk " << chunk;
    ASSERT_EQ(h.rec.bodies.size(), 1u) << "chunk " << chunk;
    EXPECT_EQ(h.rec.bodies[0], whole.rec.bodies[0]);
    EXPECT_EQ(h.rec.received[0], whole.rec.received[0]);
  }
  // And two pieces cut at every offset.
  for (size_t cut = 0; cut <= kTxn.size(); ++cut) {
    Harness h;
    std::string out = h.take();
    out += h.send(kTxn.substr(0, cut));
    out += h.send(kTxn.substr(cut));
    EXPECT_EQ(out, want) << "cut " << cut;
  }
}

TEST(Session, OutOfSequence) {
  Harness h;
  h.take();
  EXPECT_EQ(h.send("MAIL FROM:<a@b.c>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  h.send("HELO c\r\n");
  EXPECT_EQ(h.send("RCPT TO:<a@b.c>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(h.send("DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  h.send("MAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<a@b.c>\r\n"), "503 5.5.1 Error: nested MAIL command\r\n");
  EXPECT_EQ(h.send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
}

// HELP names only what the session can use: STARTTLS where TLS is offered
// and not yet on, BDAT and VRFY when enabled.
TEST(Session, HelpListsOnlyAvailableCommands) {
  auto help_of = [](SessionConfig cfg, bool tls_available, bool tls_active) {
    ConnInfo info = Harness::default_info();
    info.tls_available = tls_available;
    info.tls_active = tls_active;
    Harness h(std::move(cfg), info);
    h.take();
    return h.send("HELP\r\n");
  };
  const std::string plain = help_of({}, false, false);
  EXPECT_EQ(plain,
            "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\r\n"
            "214 2.0.0 See RFC 5321\r\n");
  EXPECT_NE(help_of({}, true, false).find(" HELP STARTTLS\r\n"), std::string::npos);
  EXPECT_EQ(help_of({}, true, true).find("STARTTLS"), std::string::npos);
  SessionConfig off;
  off.ext.chunking = false;
  off.ext.vrfy = false;
  const std::string lean = help_of(off, false, false);
  EXPECT_EQ(lean.find("BDAT"), std::string::npos);
  EXPECT_EQ(lean.find("VRFY"), std::string::npos);
}

TEST(Session, SimpleCommands) {
  Harness h;
  h.take();
  EXPECT_EQ(h.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(h.send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(h.send("VRFY someone\r\n"),
            "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n");
  std::string help = h.send("HELP\r\n");
  EXPECT_EQ(codes(help), std::vector<std::string>{"214"});
  EXPECT_EQ(help.substr(0, 10), "214-2.0.0 ");
  EXPECT_EQ(h.send("EXPN list\r\n"), "502 5.5.1 Error: EXPN not supported\r\n");
  EXPECT_EQ(h.send("FOO bar\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(h.send("\r\n"), "500 5.5.2 Error: bad syntax\r\n");
  EXPECT_EQ(h.send("HELO c\r\n"), "250 localhost\r\n");
  EXPECT_EQ(h.send("quit\r\n"), "221 2.0.0 Bye\r\n");
  EXPECT_TRUE(h.session.closed());
  // Nothing more is read once closed.
  EXPECT_EQ(h.send("NOOP\r\n"), "");
}

TEST(Session, VrfyDisabled) {
  SessionConfig cfg;
  cfg.ext.vrfy = false;
  Harness h(cfg);
  h.take();
  EXPECT_EQ(h.send("VRFY x\r\n"), "502 5.5.1 Error: VRFY command is disabled\r\n");
}

TEST(Session, BadCommandLimitCloses) {
  SessionConfig cfg;
  cfg.limits.max_bad_commands = 3;
  Harness h(cfg);
  h.take();
  std::string out = h.send("X\r\nY\r\nZ\r\n");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"500", "500", "421"}));
  EXPECT_NE(out.find("421 4.7.0 "), std::string::npos);
  EXPECT_TRUE(h.session.closed());
}

TEST(Session, CommandLineLengthLimit) {
  Harness h;
  h.take();
  // 512 octets with CRLF is fine, 513 is not (RFC 5321 4.5.3.1.4).
  std::string ok = "NOOP " + std::string(505, 'a');
  ASSERT_EQ(ok.size() + 2, 512u);
  EXPECT_EQ(h.send(ok + "\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(h.send(ok + "a\r\n"), "500 5.5.2 Error: line too long\r\n");
  // A 10 MB line fed in pieces: one error, memory stays capped, next command works.
  std::string piece(64 * 1024, 'x');
  std::string out;
  for (int i = 0; i < 160; ++i) out += h.send(piece);
  out += h.send("\r\nNOOP\r\n");
  EXPECT_EQ(out, "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n");
}

TEST(Session, LongerLinesWhenConfigured) {
  SessionConfig cfg;
  cfg.limits.max_command_line = 2048;
  Harness h(cfg);
  h.take();
  EXPECT_EQ(h.send("NOOP " + std::string(1500, 'a') + "\r\n"), "250 2.0.0 Ok\r\n");
}

TEST(Session, MessageSizeLimit) {
  SessionConfig cfg;
  cfg.limits.max_message_size = 100;
  Harness h(cfg);
  h.take();
  h.send("EHLO c\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<a@b.c> SIZE=101\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c> SIZE=100\r\nRCPT TO:<x@y.z>\r\nDATA\r\n")),
            (std::vector<std::string>{"250", "250", "354"}));
  // Streaming: the excess is read and dropped, then 552; the session stays usable.
  std::string out = h.send(std::string(300, 'x') + "\r\n.\r\nNOOP\r\n");
  EXPECT_EQ(out, "552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n");
  EXPECT_TRUE(h.rec.bodies.empty());
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nsmall\r\n.\r\n")),
            (std::vector<std::string>{"250", "250", "354", "250"}));
}

TEST(Session, RecipientLimit) {
  Harness h;
  h.take();
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.c>\r\n";
  for (int i = 0; i < 101; ++i) in += "RCPT TO:<r" + std::to_string(i) + "@y.z>\r\n";
  auto c = codes(h.send(in));
  ASSERT_EQ(c.size(), 103u);
  EXPECT_EQ(c[101], "250");  // the 100th recipient
  EXPECT_EQ(c[102], "452");
  EXPECT_EQ(h.send("DATA\r\nx\r\n.\r\n"),
            "354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as 000000000001A0001\r\n");
  EXPECT_EQ(h.rec.envelopes[0].recipients.size(), 100u);
}

TEST(Session, TransactionLimit) {
  SessionConfig cfg;
  cfg.limits.max_transactions = 2;
  Harness h(cfg);
  h.take();
  std::string txn = "MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nx\r\n.\r\n";
  std::string out = h.send("EHLO c\r\n" + txn + txn + "MAIL FROM:<a@b.c>\r\n");
  auto c = codes(out);
  EXPECT_EQ(c.back(), "421");
  EXPECT_NE(out.find("421 4.7.0 Error: too many transactions"), std::string::npos);
  EXPECT_EQ(h.rec.bodies.size(), 2u);
  EXPECT_TRUE(h.session.closed());
}

TEST(Session, HeloChecks) {
  SessionConfig cfg;
  cfg.limits.max_helo_length = 20;
  Harness h(cfg);
  h.take();
  EXPECT_EQ(h.send("EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
  EXPECT_EQ(h.send("HELO\r\n"), "501 5.5.4 Syntax: HELO hostname\r\n");
  EXPECT_EQ(h.send("EHLO " + std::string(21, 'a') + "\r\n"),
            "501 5.5.2 Error: HELO/EHLO name too long\r\n");
  EXPECT_EQ(codes(h.send("EHLO " + std::string(20, 'a') + "\r\n")).back(), "250");
  EXPECT_EQ(h.send("EHLO two words\r\n"), "501 5.5.2 Error: invalid HELO/EHLO name\r\n");
  EXPECT_EQ(codes(h.send("EHLO [192.0.2.1]\r\n")).back(), "250");
}

TEST(Session, ReceivedLoopLimit) {
  SessionConfig cfg;
  cfg.limits.max_received_headers = 3;
  Harness h(cfg);
  h.take();
  h.send("EHLO c\r\n");
  std::string start = "MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n";
  EXPECT_EQ(
      codes(h.send(start + "Received: 1\r\nReceived: 2\r\nReceived: 3\r\n\r\nb\r\n.\r\n")).back(),
      "250");
  EXPECT_EQ(codes(h.send(start + "Received: 1\r\nReceived: 2\r\nReceived: 3\r\nReceived: 4\r\n"
                                 "\r\nb\r\n.\r\n"))
                .back(),
            "554");
}

TEST(Session, SmugglingNeverEndsDataAndIsRefused) {
  for (const char* seq : {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n"}) {
    Harness h;
    h.take();
    h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
    // The smuggled MAIL must be body text, not a command.
    std::string out =
        h.send(std::string("x") + seq + "MAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\n");
    EXPECT_EQ(out, "") << testing::PrintToString(seq);
    out = h.send(".\r\n");
    EXPECT_EQ(codes(out), std::vector<std::string>{"550"}) << testing::PrintToString(seq);
    EXPECT_NE(out.find("550 5.5.2"), std::string::npos);
    EXPECT_TRUE(h.rec.bodies.empty());
  }
}

TEST(Session, BareLineEndingsNormalisedWhenConfigured) {
  SessionConfig cfg;
  cfg.bare_line = BareLinePolicy::normalise;
  Harness h(cfg);
  h.take();
  std::string out =
      h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\na\nb\r\n.\r\n");
  EXPECT_EQ(codes(out).back(), "250");
  ASSERT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_EQ(h.rec.bodies[0], "a\r\nb\r\n");
}

TEST(Session, AddressErrors) {
  Harness h;
  h.take();
  h.send("EHLO c\r\n");
  EXPECT_EQ(h.send("MAIL FROM:a@b.c\r\n"), "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  EXPECT_EQ(h.send("MAIL TO:<a@b.c>\r\n"), "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<a..b@c.d>\r\n").substr(0, 10), "501 5.1.7 ");
  EXPECT_EQ(codes(h.send("MAIL FROM: <a@b.c>\r\n")).back(), "250");  // lenient space
  EXPECT_EQ(h.send("RCPT TO:<@x>\r\n").substr(0, 10), "501 5.1.3 ");
  EXPECT_EQ(h.send("RCPT TO:<>\r\n").substr(0, 10), "501 5.1.3 ");
  EXPECT_EQ(h.send("RCPT TO:x@y.z\r\n"), "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
  EXPECT_EQ(codes(h.send("RCPT TO:<Postmaster>\r\n")).back(), "250");
  EXPECT_EQ(codes(h.send("RCPT TO:<@relay.example:u@y.z>\r\n")).back(), "250");
}

TEST(Session, NullSenderAndParameters) {
  Harness h;
  h.take();
  std::string out = h.send(
      "EHLO c\r\nMAIL FROM:<> RET=HDRS ENVID=abc+2B BODY=8BITMIME SIZE=10\r\n"
      "RCPT TO:<x@y.z> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.z\r\n"
      "RCPT TO:<w@y.z> FOO=1\r\nDATA\r\nhi\r\n.\r\n");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"250", "250", "250", "555", "354", "250"}));
  ASSERT_EQ(h.rec.envelopes.size(), 1u);
  const Envelope& e = h.rec.envelopes[0];
  EXPECT_EQ(e.sender, "");
  EXPECT_EQ(e.mail.ret, DsnRet::hdrs);
  EXPECT_EQ(e.mail.envid, "abc+2B");
  EXPECT_EQ(e.mail.body, BodyType::eight_bit_mime);
  EXPECT_EQ(e.mail.size, 10u);
  EXPECT_EQ(e.recipients[0].params.notify, notify_success | notify_failure);
  EXPECT_EQ(e.recipients[0].params.orcpt_type, "rfc822");
  EXPECT_EQ(e.recipients[0].params.orcpt, "x@y.z");
}

TEST(Session, ParametersNeedEhlo) {
  Harness h;
  h.take();
  h.send("HELO c\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<a@b.c> SIZE=10\r\n"),
            "555 5.5.4 Error: MAIL parameters need EHLO\r\n");
}

TEST(Session, Smtputf8) {
  Harness h;
  h.take();
  h.send("EHLO c\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<j\xc3\xb6rg@example.de>\r\n").substr(0, 10), "553 5.6.7 ");
  std::string out = h.send(
      "MAIL FROM:<j\xc3\xb6rg@example.de> SMTPUTF8\r\nRCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@"
      "\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95>\r\nDATA\r\nhi\r\n.\r\n");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"250", "250", "354", "250"}));
  ASSERT_EQ(h.rec.received.size(), 1u);
  EXPECT_NE(h.rec.received[0].find("with UTF8SMTP id"), std::string::npos);
  // Without SMTPUTF8 a UTF-8 recipient, or a UTF-8 ORCPT, is refused.
  h.send("MAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(h.send("RCPT TO:<a@b.c> ORCPT=utf-8;\xc3\xbc@b.c\r\n"),
            "501 5.5.4 Error: non-ASCII ORCPT needs SMTPUTF8\r\n");
  EXPECT_EQ(h.send("RCPT TO:<\xc3\xbc@b.c>\r\n").substr(0, 10), "553 5.6.7 ");
}

TEST(Session, BdatTransaction) {
  Harness h;
  h.take();
  std::string out = h.send(
      "EHLO c\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRCPT TO:<x@y.z>\r\n"
      "BDAT 5\r\nab\r\n.BDAT 3 LAST\r\nxyz");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"250", "250", "250", "250", "250"}));
  EXPECT_NE(out.find("250 2.0.0 5 octets received\r\n"), std::string::npos);
  ASSERT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_EQ(h.rec.bodies[0], "ab\r\n.xyz");  // no unstuffing in BDAT
  EXPECT_NE(h.rec.received[0].find("ESMTP id"), std::string::npos);
}

TEST(Session, BdatEmptyLastAndSplits) {
  const std::string in =
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nBDAT 7\r\nHELLO\r\nBDAT 0 "
      "LAST\r\nNOOP\r\n";
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    Harness h;
    h.take();
    std::string out = h.send(in.substr(0, cut));
    out += h.send(in.substr(cut));
    EXPECT_EQ(codes(out), (std::vector<std::string>{"250", "250", "250", "250", "250", "250"}))
        << cut;
    ASSERT_EQ(h.rec.bodies.size(), 1u);
    EXPECT_EQ(h.rec.bodies[0], "HELLO\r\n");
  }
}

TEST(Session, BdatErrorsConsumeTheChunk) {
  Harness h;
  h.take();
  h.send("EHLO c\r\n");
  // Without MAIL: the 9 octets are skipped, not run as commands.
  EXPECT_EQ(h.send("BDAT 9\r\nQUIT\r\nXXX"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_FALSE(h.session.closed());
  h.send("MAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(h.send("BDAT 4 LAST\r\nQUIT"), "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_FALSE(h.session.closed());
  EXPECT_EQ(h.send("BDAT x\r\n"), "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n");
  EXPECT_EQ(h.send("BDAT 5 FIRST\r\n"), "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n");
  // DATA after BDAT, and BINARYMIME with DATA.
  h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nBDAT 1\r\nx");
  EXPECT_EQ(h.send("DATA\r\n"), "503 5.5.1 Error: DATA after BDAT\r\n");
  h.send("RSET\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRCPT TO:<x@y.z>\r\n");
  EXPECT_EQ(h.send("DATA\r\n"), "503 5.5.1 Error: BODY=BINARYMIME needs BDAT\r\n");
}

TEST(Session, BdatOversizeIsStickyUntilLast) {
  SessionConfig cfg;
  cfg.limits.max_message_size = 10;
  Harness h(cfg);
  h.take();
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\n");
  std::string out = h.send("BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 1 LAST\r\nzNOOP\r\n");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"250", "552", "552", "250"}));
  EXPECT_TRUE(h.rec.bodies.empty());
  EXPECT_EQ(h.send("RCPT TO:<x@y.z>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
}

TEST(Session, PendingVerdictHoldsPipelinedInput) {
  Harness h;
  h.take();
  h.rec.pend_rcpt = true;
  const std::string in = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nRCPT TO:<w@y.z>\r\n";
  size_t used = h.session.feed(in, h.now);
  EXPECT_TRUE(h.session.waiting());
  // Stopped right after the first RCPT; replies so far are ready to send.
  EXPECT_EQ(in.substr(used), "RCPT TO:<w@y.z>\r\n");
  EXPECT_EQ(codes(h.take()), (std::vector<std::string>{"250", "250"}));
  // Feeding more while waiting uses nothing.
  EXPECT_EQ(h.session.feed("NOOP\r\n", h.now), 0u);
  h.session.resume(Verdict::reject(450, "4.2.0", "Try later"), h.now);
  EXPECT_EQ(h.take(), "450 4.2.0 Try later\r\n");
  h.rec.pend_rcpt = false;
  EXPECT_EQ(codes(h.send(in.substr(used))), std::vector<std::string>{"250"});
}

TEST(Session, PendingAtEveryStage) {
  Harness h({}, Harness::default_info(), false);
  h.rec.pend_connect = h.rec.pend_helo = h.rec.pend_mail = h.rec.pend_data = h.rec.pend_message =
      true;
  h.session.start(h.now);
  EXPECT_EQ(h.take(), "");
  const std::string in = kTxn;
  size_t pos = 0;
  std::string out;
  for (int round = 0; round < 20 && pos < in.size(); ++round) {
    pos += h.session.feed(std::string_view(in).substr(pos), h.now);
    out += h.take();
    if (h.session.waiting()) h.session.resume(Verdict::accept(), h.now);
    out += h.take();
  }
  EXPECT_EQ(pos, in.size());
  EXPECT_EQ(codes(out),
            (std::vector<std::string>{"220", "250", "250", "250", "354", "250", "221"}));
  EXPECT_EQ(h.rec.bodies.size(), 1u);
}

TEST(Session, UnknownCommandsGoToTheHandlerWhichMayWaitOrReplyInstead) {
  Harness h;
  h.take();
  EXPECT_EQ(codes(h.send("EHLO c.example\r\nXYZZY plugh\r\n")),
            (std::vector<std::string>{"250", "500"}));
  ASSERT_EQ(h.rec.unknown.size(), 1u);
  EXPECT_EQ(h.rec.unknown[0], "XYZZY plugh");
  // The handler waits (a milter thinks): the pipelined NOOP waits too.
  h.rec.unknown_verdict = Verdict::pending();
  const std::string in = "FROB\r\nNOOP\r\n";
  const size_t used = h.session.feed(in, h.now);
  EXPECT_EQ(used, 6u);  // NOOP is left to the caller until the verdict
  EXPECT_EQ(h.take(), "");
  EXPECT_TRUE(h.session.waiting());
  h.session.resume(Verdict::reject(550, "5.7.9", "not here"), h.now);
  EXPECT_EQ(h.take(), "550 5.7.9 not here\r\n");
  h.rec.unknown_verdict = Verdict::accept();
  EXPECT_EQ(codes(h.send(std::string_view(in).substr(used))), (std::vector<std::string>{"250"}));
  // A 421 closes.
  h.rec.unknown_verdict = Verdict::reject(421, "4.7.0", "closing");
  EXPECT_EQ(codes(h.send("FROB\r\n")), (std::vector<std::string>{"421"}));
  EXPECT_TRUE(h.session.closed());
}

TEST(Session, MessageRejectedByHandler) {
  struct Refuser : Recorder {
    Verdict on_message(Session&, Message&) override {
      return Verdict::reject(451, "4.3.0", "Error: queue file write error");
    }
  };
  Refuser r;
  auto settings = std::make_shared<SessionSettings>(Harness::relaxed(SessionConfig{}));
  Session s(settings, r, Harness::default_info(), {});
  s.start({});
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nx\r\n.\r\n";
  EXPECT_EQ(s.feed(in, {}), in.size());
  EXPECT_NE(std::string(s.output()).find("451 4.3.0 Error: queue file write error\r\n"),
            std::string::npos);
}

TEST(Session, InvalidVerdictBecomesTemporaryFailure) {
  Harness h;
  h.take();
  h.rec.rcpt_verdict = Verdict::reject(250, "2.0.0", "not a rejection");
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(h.send("RCPT TO:<x@y.z>\r\n"), "451 4.3.0 Error: temporary local problem\r\n");
}

TEST(Session, Timeouts) {
  SessionConfig cfg;
  cfg.limits.command_timeout_ms = 1000;
  cfg.limits.data_timeout_ms = 500;
  Harness h(cfg);
  h.take();
  EXPECT_EQ(h.session.deadline_ms(), 2000);
  EXPECT_FALSE(h.session.on_timer({1999, 0}));
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  EXPECT_EQ(h.session.deadline_ms(), 1500);
  EXPECT_TRUE(h.session.on_timer({1500, 0}));
  EXPECT_EQ(h.take(), "421 4.4.2 localhost Error: timeout exceeded\r\n");
  EXPECT_TRUE(h.session.closed());
}

TEST(Session, SessionTimeoutBoundsEverything) {
  SessionConfig cfg;
  cfg.limits.session_timeout_ms = 5000;
  Harness h(cfg);
  h.take();
  for (int64_t t = 1000; t < 6000; t += 900) {
    h.now.mono_ms = t;
    h.send("NOOP\r\n");
  }
  EXPECT_EQ(h.session.deadline_ms(), 6000);
}

TEST(Session, DrainIdleAndBusy) {
  Harness idle;
  idle.take();
  idle.session.drain(idle.now);
  EXPECT_EQ(idle.take(), "421 4.3.2 localhost Service shutting down, closing connection\r\n");
  EXPECT_TRUE(idle.session.closed());

  Harness busy;
  busy.take();
  busy.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
  busy.session.drain(busy.now);
  EXPECT_EQ(busy.take(), "");
  std::string out = busy.send("RCPT TO:<x@y.z>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"250", "354", "250", "421"}));
  EXPECT_EQ(busy.rec.bodies.size(), 1u);
  EXPECT_TRUE(busy.session.closed());
}

TEST(Session, ConnectRejected) {
  struct Deny : Recorder {
    uint16_t code;
    explicit Deny(uint16_t c) : code(c) {}
    Verdict on_connect(Session&) override {
      return Verdict::reject(code, code == 421 ? "4.7.0" : "5.7.1", "go away");
    }
  };
  auto settings = std::make_shared<SessionSettings>(Harness::relaxed(SessionConfig{}));
  Deny d554(554);
  Session s(settings, d554, Harness::default_info(), {});
  s.start({});
  EXPECT_EQ(s.output(), "554 5.7.1 go away\r\n");
  s.consume_output(100);
  s.feed("EHLO x\r\n", {});
  EXPECT_EQ(s.output(), "503 5.7.0 Error: connection rejected, send QUIT\r\n");
  s.consume_output(100);
  s.feed("QUIT\r\n", {});
  EXPECT_EQ(s.output(), "221 2.0.0 Bye\r\n");
  Deny d421(421);
  Session t(settings, d421, Harness::default_info(), {});
  t.start({});
  EXPECT_TRUE(t.closed());
}

TEST(Session, EnhancedCodesCanBeTurnedOff) {
  SessionConfig cfg;
  cfg.ext.enhanced_status_codes = false;
  Harness h(cfg);
  h.take();
  EXPECT_EQ(h.send("NOOP\r\n"), "250 Ok\r\n");
  EXPECT_EQ(h.send("EHLO c\r\n").find("ENHANCEDSTATUSCODES"), std::string::npos);
}

TEST(Session, ReplyHookSeesEveryReply) {
  Harness h;
  h.send(kTxn);
  EXPECT_EQ(h.rec.replies, (std::vector<uint16_t>{220, 250, 250, 250, 354, 250, 221}));
}

TEST(Session, BodyMemoryIsReleasedAfterLargeMessage) {
  Harness h;
  h.take();
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  std::string body;
  for (int i = 0; i < 2048; ++i) body += std::string(98, 'a') + "\r\n";  // 200 KiB
  h.send(body + ".\r\n");
  ASSERT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_EQ(h.rec.bodies[0].size(), 200u * 1024);
}

}  // namespace
}  // namespace ringmx

namespace ringmx {
namespace {

TEST(Session, TransactionEndReportsEveryFinalReply) {
  struct Ends : Recorder {
    std::vector<std::pair<uint16_t, uint64_t>> ends;
    void on_transaction_end(Session&, const Envelope&, uint16_t code, uint64_t size) override {
      ends.emplace_back(code, size);
    }
  };
  SessionConfig cfg;
  cfg.limits.max_message_size = 50;
  auto settings = std::make_shared<SessionSettings>(Harness::relaxed(cfg));
  Ends e;
  Session s(settings, e, Harness::default_info(), {});
  s.start({});
  std::string start = "MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\n";
  std::string in = "EHLO c\r\n" + start + "DATA\r\nok\r\n.\r\n" + start + "DATA\r\n" +
                   std::string(60, 'x') + "\r\n.\r\n" + start + "DATA\r\na\nb\r\n.\r\n" + start +
                   "BDAT 3 LAST\r\nabc" + start + "BDAT 60 LAST\r\n" + std::string(60, 'y') +
                   "RSET\r\n";
  EXPECT_EQ(s.feed(in, {}), in.size());
  EXPECT_EQ(e.ends, (std::vector<std::pair<uint16_t, uint64_t>>{
                        {250, 4}, {552, 62}, {550, 5}, {250, 3}, {552, 60}}));
}

// Every transaction ends exactly once: with a final reply to its message
// (on_transaction_end, a refusal at DATA included) or abandoned
// (on_transaction_abort: RSET, EHLO, QUIT, too many errors, end of input).
TEST(Session, AbandonedTransactionsAreReportedOnce) {
  struct Outcomes : Recorder {
    int ends = 0, aborts = 0;
    bool refuse_data = false;
    Verdict on_data(Session&, const Envelope&) override {
      return refuse_data ? Verdict::reject(452, "4.3.1", "no room") : Verdict::accept();
    }
    void on_transaction_end(Session&, const Envelope&, uint16_t, uint64_t) override { ++ends; }
    void on_transaction_abort(Session&, const Envelope& env) override {
      ++aborts;
      EXPECT_FALSE(env.queue_id.empty());  // the envelope is still there to log
    }
  };
  auto settings = std::make_shared<SessionSettings>(Harness::relaxed(SessionConfig{}));
  const std::string start = "MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\n";
  struct Case {
    std::string input;
    int ends, aborts;
    bool end_input = false, refuse_data = false;
  };
  const std::vector<Case> cases = {
      {start + "RSET\r\n", 0, 1},
      {start + "EHLO again\r\n", 0, 1},
      {start + "QUIT\r\n", 0, 1},
      {start + "DATA\r\nx\r\n.\r\nRSET\r\n", 1, 0},
      {start + "DATA\r\n", 1, 0, false, true},  // 452 at DATA ends it
      {start + "DATA\r\nhalf a bo", 0, 1, true},
      {start, 0, 1, true},
      {"RSET\r\nMAIL FROM:<a@b.c>\r\nRSET\r\nRSET\r\n", 0, 1},
      {"MAIL FROM:<a@b.c>\r\n" + std::string(30, 'X') + "\r\n", 0, 1, true},
  };
  for (const Case& c : cases) {
    Outcomes o;
    o.refuse_data = c.refuse_data;
    Session s(settings, o, Harness::default_info(), {});
    s.start({});
    const std::string in = "EHLO c\r\n" + c.input;
    EXPECT_EQ(s.feed(in, {}), in.size());
    if (c.end_input) {
      EXPECT_FALSE(s.closed());
      s.end_of_input();
      EXPECT_TRUE(s.closed());
    }
    s.end_of_input();  // again, as the connection's teardown does: nothing more
    EXPECT_EQ(o.ends, c.ends) << c.input;
    EXPECT_EQ(o.aborts, c.aborts) << c.input;
  }
}

// Input ends while a message's verdict is on its way: nothing is abandoned,
// the reply is still made, and the session closes only when told again.
TEST(Session, EndOfInputWaitsForAPendingVerdict) {
  Harness h;
  h.take();
  h.rec.pend_message = true;
  const std::string in = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nx\r\n.\r\n";
  EXPECT_EQ(h.session.feed(in, h.now), in.size());
  h.take();
  h.session.end_of_input();
  EXPECT_FALSE(h.session.closed());
  h.session.resume(Verdict::accept(), h.now);
  EXPECT_EQ(codes(h.take()), std::vector<std::string>{"250"});
  h.session.end_of_input();
  EXPECT_TRUE(h.session.closed());
  EXPECT_EQ(h.take(), "");  // no reply of its own
}

}  // namespace
// Past the size limit an oversize message is no longer held: its body is
// freed at once, not kept until the 552 at the end.
TEST(SessionBodyMemory, OversizeBodyIsFreedAtTheLimit) {
  SessionConfig cfg;
  cfg.limits.max_message_size = 4096;
  Harness h(cfg);
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  const std::string line(998, 'x');
  for (int i = 0; i < 8; ++i) h.send(line + "\r\n");
  ASSERT_FALSE(h.rec.body_sizes.empty());
  EXPECT_EQ(h.rec.body_sizes.back(), 0u) << "the body is still held after the limit";
  for (uint64_t b : h.rec.body_sizes) EXPECT_LE(b, 4096u);
  EXPECT_EQ(codes(h.send(".\r\n")), std::vector<std::string>{"552"});
}

// The handler has no room for a body: the rest of the data is read and
// dropped, the answer is 452 4.3.1, and the session goes on.
TEST(SessionBodyMemory, RefusedDataBodyIsDroppedWith452) {
  Harness h;
  h.rec.body_budget = 3000;
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  const std::string line(998, 'y');
  for (int i = 0; i < 6; ++i) h.send(line + "\r\n");
  EXPECT_EQ(h.rec.body_sizes.back(), 0u);
  const std::string out = h.send(".\r\n");
  EXPECT_EQ(out.substr(0, 10), "452 4.3.1 ") << out;
  EXPECT_TRUE(h.rec.bodies.empty());
  // A small message afterwards fits and is accepted whole.
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nsmall\r\n.\r\n")),
            (std::vector<std::string>{"250", "250", "354", "250"}));
  ASSERT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_EQ(h.rec.bodies[0], "small\r\n");
  EXPECT_EQ(h.rec.body_sizes.back(), 0u) << "released after the transaction";
}

TEST(SessionBodyMemory, RefusedBdatBodyIsDroppedWith452) {
  Harness h;
  h.rec.body_budget = 10;
  const std::string out = h.send(
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nBDAT 8\r\n12345678BDAT 8 LAST\r\n"
      "abcdefgh");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"220", "250", "250", "250", "250", "452"}))
      << out;
  EXPECT_TRUE(h.rec.bodies.empty());
  EXPECT_EQ(h.rec.body_sizes.back(), 0u);
}

// Over the budget the handler takes the body piece by piece instead: every
// octet reaches it in order, nothing more is held, the message is accepted.
TEST(SessionBodyMemory, SpilledDataBodyReachesTheHandlerWhole) {
  Harness h;
  h.rec.body_budget = 3000;
  h.rec.over_budget = BodyRoom::spill;
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  std::string body = "Received: from earlier\r\nSubject: big\r\n\r\n";
  for (int i = 0; i < 40; ++i) body += std::string(98, static_cast<char>('a' + i % 26)) + "\r\n";
  body += "..starts with a dot\r\n";
  std::string wire = body;
  wire.replace(wire.find("..starts"), 1, "..");  // dot-stuffed on the wire
  for (size_t off = 0; off < wire.size(); off += 333) h.send(wire.substr(off, 333));
  EXPECT_EQ(h.rec.spill_starts, 1);
  EXPECT_NE(h.rec.spill_received.find("Received: from c"), std::string::npos);
  const std::string out = h.send(".\r\n");
  EXPECT_EQ(codes(out), std::vector<std::string>{"250"}) << out;
  ASSERT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_TRUE(h.rec.spilled_flags[0]);
  EXPECT_EQ(h.rec.bodies[0], body);
  EXPECT_EQ(h.rec.spill_ends, 1);  // the transaction is over
  for (uint64_t b : h.rec.body_sizes) EXPECT_LE(b, 3000u + 333u);
  EXPECT_EQ(h.rec.body_sizes.back(), 0u);
}

TEST(SessionBodyMemory, SpilledBdatBodyReachesTheHandlerWhole) {
  Harness h;
  h.rec.body_budget = 10;
  h.rec.over_budget = BodyRoom::spill;
  const std::string out = h.send(
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nBDAT 8\r\n12345678BDAT 8\r\n"
      "abcdefghBDAT 3 LAST\r\nxyz");
  EXPECT_EQ(codes(out), (std::vector<std::string>{"220", "250", "250", "250", "250", "250", "250"}))
      << out;
  ASSERT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_TRUE(h.rec.spilled_flags[0]);
  EXPECT_EQ(h.rec.bodies[0], "12345678abcdefghxyz");
}

// A spilled message that ends badly is thrown away: the handler hears of it.
TEST(SessionBodyMemory, OversizeSpilledBodyEndsTheSpill) {
  SessionConfig cfg;
  cfg.limits.max_message_size = 4096;
  Harness h(cfg);
  h.rec.body_budget = 1000;
  h.rec.over_budget = BodyRoom::spill;
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  const std::string line(998, 'x');
  for (int i = 0; i < 8; ++i) h.send(line + "\r\n");
  EXPECT_LE(h.rec.spilled.size(), 4096u);
  EXPECT_EQ(codes(h.send(".\r\n")), std::vector<std::string>{"552"});
  EXPECT_EQ(h.rec.spill_starts, 1);
  EXPECT_EQ(h.rec.spill_ends, 1);
  EXPECT_TRUE(h.rec.bodies.empty());
}

// Every shard a server can run mints its own ids: with the shard in 5 bits,
// shards 0 and 32 made the same id (and the same spool segment name).
TEST(SessionId, DistinctForEveryShard) {
  std::set<uint64_t> ids;
  for (uint32_t shard = 0; shard < kMaxShards; ++shard) {
    ids.insert(compose_session_id(1795241997123, shard, 77));
  }
  EXPECT_EQ(ids.size(), size_t{kMaxShards});
  EXPECT_NE(compose_session_id(1795241997123, 0, 5), compose_session_id(1795241997123, 32, 5));
}

TEST(SessionId, CounterAndTimeBothCount) {
  const int64_t ms = 1795241997123;
  EXPECT_NE(compose_session_id(ms, 3, 1), compose_session_id(ms, 3, 2));
  EXPECT_NE(compose_session_id(ms, 3, 1), compose_session_id(ms + 1, 3, 1));
  // Ids sort by time first: a later millisecond is a larger id whatever the rest.
  EXPECT_LT(compose_session_id(ms, 255, 8191), compose_session_id(ms + 1, 0, 0));
  EXPECT_EQ(format_session_id(compose_session_id(ms, 3, 1)).size(), 13u);
}

}  // namespace ringmx

// ---- line length (RFC 5322 2.1.1): refused at the end of data --------------------

namespace ringmx {
namespace {

std::string line_of(size_t n, char c = 'l') {
  return std::string(n, c) + "\r\n";
}

TEST(LineMeter, LongestLineWithoutItsLineEnd) {
  LineMeter m;
  m.feed("ab\r\nabcd\r\n");
  EXPECT_EQ(m.longest, 4u);
  m.feed("123");  // unfinished
  EXPECT_EQ(m.max(), 4u);
  m.feed("4567\r");  // the CR at the end of a piece ...
  m.feed("\nx");     // ... and its LF in the next
  EXPECT_EQ(m.longest, 7u);
  EXPECT_EQ(m.current, 1u);
  LineMeter bare;
  bare.feed("abcdef\nab");
  EXPECT_EQ(bare.longest, 6u);
  EXPECT_EQ(bare.max(), 6u);
  LineMeter tail;
  tail.feed("ab\r\n" + std::string(20, 'z'));  // a last line without CRLF counts too
  EXPECT_EQ(tail.max(), 20u);
}

TEST(SessionLineLength, A998OctetLinePassesA999OctetLineIsRefused) {
  Harness h;
  const std::string start = "MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n";
  h.send("EHLO c\r\n");
  EXPECT_EQ(codes(h.send(start + "Subject: ok\r\n\r\n" + line_of(998) + ".\r\n")).back(), "250");
  const std::string out = h.send(start + "Subject: long\r\n\r\n" + line_of(999) + ".\r\n");
  EXPECT_EQ(codes(out).back(), "550");
  EXPECT_NE(out.find("550 5.6.0 Error: message has a line longer than 998 octets"),
            std::string::npos)
      << out;
  EXPECT_EQ(h.rec.bodies.size(), 1u);  // only the first reached the handler
  // The session goes on.
  EXPECT_EQ(codes(h.send("NOOP\r\n")).back(), "250");
}

TEST(SessionLineLength, BdatLastLineWithoutCrlfCountsAndZeroTurnsTheCheckOff) {
  Harness h;
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\n");
  const std::string body = "Subject: b\r\n\r\n" + std::string(1200, 'b');
  const std::string out = h.send("BDAT " + std::to_string(body.size()) + " LAST\r\n" + body);
  EXPECT_EQ(codes(out).back(), "550") << out;
  SessionConfig cfg;
  cfg.limits.max_line_length = 0;
  Harness off(cfg);
  off.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  EXPECT_EQ(codes(off.send(line_of(5000) + ".\r\n")).back(), "250");
}

TEST(SessionLineLength, SpilledBodyIsMeasuredAsItPasses) {
  Harness h;
  h.rec.body_budget = 3000;
  h.rec.over_budget = BodyRoom::spill;
  h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  std::string body;
  for (int i = 0; i < 40; ++i) body += line_of(98);
  body += line_of(1500);  // long, after spilling began
  for (size_t off = 0; off < body.size(); off += 333) h.send(body.substr(off, 333));
  EXPECT_EQ(h.rec.spill_starts, 1);
  EXPECT_EQ(codes(h.send(".\r\n")).back(), "550");
  EXPECT_TRUE(h.rec.bodies.empty());
}

}  // namespace
}  // namespace ringmx
