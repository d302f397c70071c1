// Contract: the sans-I/O SMTP client (load generator and relays), driven by scripted
// server replies: exact bytes on the wire for pipelined and lock-step
// transactions, DATA and BDAT, SMTP and LMTP; one outcome per message (the
// first non-2xx reply, the final 2xx, or an error kind) whatever the server
// does (4xx/5xx at RCPT and at the end of data, 421, garbage, closing mid-way);
// RSET after a failed transaction; QUIT pipelined behind the last message;
// HELO-only sessions (plain SMTP: lock-step, no extensions, refusals).
#include "core/smtp_client.h"

#include <gtest/gtest.h>

#include <string>

#include "bench/message_gen.h"

namespace ringmx::bench {
namespace {

constexpr const char* kEhloFull =
    "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n"
    "250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n";
constexpr const char* kEhloPlain = "250-mx.test Hello\r\n250 8BITMIME\r\n";

class Script {
 public:
  explicit Script(ClientSettings s) : settings_(std::move(s)), client_(settings_, 1000) {}

  // Everything the client has to send, consumed.
  std::string take() {
    std::string out;
    while (client_.has_output()) {
      const std::string_view v = client_.output();
      out.append(v);
      client_.consume_output(v.size());
    }
    return out;
  }
  void feed(const std::string& s) { client_.feed(s, ++now_); }
  // Feeds one byte at a time (replies split anywhere).
  void trickle(const std::string& s) {
    for (char c : s) client_.feed(std::string_view(&c, 1), ++now_);
  }
  void greet(const char* ehlo_reply) {
    feed("220 mx.test ESMTP\r\n");
    EXPECT_EQ(take(), "EHLO bench.example.net\r\n");
    feed(ehlo_reply);
    EXPECT_TRUE(client_.idle());
  }
  void start(uint64_t id, const MessageBody& body) { client_.start_message(id, body, 5, ++now_); }

  ClientSettings settings_;
  SmtpClient client_;
  int64_t now_ = 1000;
};

struct Body {
  explicit Body(size_t size = 1024, uint64_t seed = 1)
      : raw(make_message(seed, size)), stuffed(dot_stuff(raw) + ".\r\n") {}
  MessageBody view() const { return {stuffed, raw}; }
  std::string raw;
  std::string stuffed;
};

ClientSettings settings(size_t rcpts = 1) {
  ClientSettings s;
  s.recipients.clear();
  for (size_t i = 0; i < rcpts; ++i) s.recipients.push_back("r" + std::to_string(i) + "@x.test");
  return s;
}

TEST(SmtpClient, PipelinedTransaction) {
  Script t(settings(2));
  t.greet(kEhloFull);
  EXPECT_TRUE(t.client_.server_pipelining());
  EXPECT_TRUE(t.client_.server_chunking());
  Body b;
  t.start(7, b.view());
  EXPECT_EQ(t.take(),
            "MAIL FROM:<bench@example.net>\r\nRCPT TO:<r0@x.test>\r\n"
            "RCPT TO:<r1@x.test>\r\nDATA\r\n");
  EXPECT_TRUE(t.client_.waiting());
  t.trickle("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n");
  EXPECT_EQ(t.take(), b.stuffed);
  EXPECT_FALSE(t.client_.has_result());
  t.feed("250 2.0.0 Ok: queued as ABC\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->code, 250);
  EXPECT_EQ(r->id, 7u);
  EXPECT_EQ(r->intended_ns, 5);
  EXPECT_EQ(r->rcpt_accepted, 2u);
  EXPECT_EQ(r->data_bytes, b.stuffed.size());
  EXPECT_LT(r->started_ns, r->data_end_ns);
  EXPECT_LT(r->data_end_ns, r->final_ns);
  EXPECT_TRUE(t.client_.idle());
  EXPECT_FALSE(t.client_.take_result());
  EXPECT_EQ(t.take(), "");  // no RSET after a clean transaction
  EXPECT_EQ(t.client_.transactions(), 1u);
}

TEST(SmtpClient, LockStepWhenTheServerDoesNotPipeline) {
  Script t(settings(2));
  t.greet(kEhloPlain);
  EXPECT_FALSE(t.client_.server_pipelining());
  Body b;
  t.start(1, b.view());
  EXPECT_EQ(t.take(), "MAIL FROM:<bench@example.net>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r0@x.test>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r1@x.test>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "DATA\r\n");
  t.feed("354 go\r\n");
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 queued\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, NoPipeliningSettingForcesLockStep) {
  ClientSettings s = settings();
  s.use_pipelining = false;
  Script t(s);
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  EXPECT_EQ(t.take(), "MAIL FROM:<bench@example.net>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r0@x.test>\r\n");
}

TEST(SmtpClient, MultiLineEhloKeywordsAnyCase) {
  Script t(settings());
  t.feed("220-mx.test first\r\n220 second line\r\n");
  EXPECT_EQ(t.take(), "EHLO bench.example.net\r\n");
  t.trickle("250-mx.test\r\n250-size 100\r\n250-chunking\r\n250 pipelining\r\n");
  EXPECT_TRUE(t.client_.idle());
  EXPECT_TRUE(t.client_.server_pipelining());
  EXPECT_TRUE(t.client_.server_chunking());
  EXPECT_GT(t.client_.banner_ns(), t.client_.created_ns());
  EXPECT_GT(t.client_.ready_ns(), t.client_.banner_ns());
}

TEST(SmtpClient, EhloRefusedFallsBackToHelo) {
  Script t(settings());
  t.feed("220 old server\r\n");
  EXPECT_EQ(t.take(), "EHLO bench.example.net\r\n");
  t.feed("502 5.5.2 no EHLO here\r\n");
  EXPECT_EQ(t.take(), "HELO bench.example.net\r\n");
  t.feed("250 hi\r\n");
  EXPECT_TRUE(t.client_.idle());
  EXPECT_FALSE(t.client_.server_pipelining());
}

ClientSettings helo_only(size_t rcpts = 1) {
  ClientSettings s = settings(rcpts);
  s.helo_only = true;
  return s;
}

TEST(SmtpClient, HeloOnlyTranscript) {
  Script t(helo_only(2));
  t.feed("220 mx.test ESMTP\r\n");
  EXPECT_EQ(t.take(), "HELO bench.example.net\r\n");
  t.feed("250 mx.test\r\n");
  EXPECT_TRUE(t.client_.idle());
  EXPECT_TRUE(t.client_.ready_seen());
  Body b;
  t.start(3, b.view());
  // Plain SMTP: MAIL without SIZE or BODY, one command per reply.
  EXPECT_EQ(t.take(), "MAIL FROM:<bench@example.net>\r\n");
  t.feed("250 2.1.0 Ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r0@x.test>\r\n");
  t.feed("250 2.1.5 Ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r1@x.test>\r\n");
  t.feed("250 2.1.5 Ok\r\n");
  EXPECT_EQ(t.take(), "DATA\r\n");
  t.feed("354 go ahead\r\n");
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 2.0.0 Ok: queued as ABC\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->id, 3u);
  EXPECT_EQ(r->rcpt_accepted, 2u);
  EXPECT_TRUE(t.client_.idle());
  t.client_.quit(++t.now_);
  EXPECT_EQ(t.take(), "QUIT\r\n");
  t.feed("221 bye\r\n");
  EXPECT_TRUE(t.client_.server_closes());
}

TEST(SmtpClient, HeloOnlyKnowsNoExtensionsSoStaysLockStep) {
  Script t(helo_only());
  t.feed("220 mx.test ESMTP PIPELINING CHUNKING STARTTLS\r\n");
  EXPECT_EQ(t.take(), "HELO bench.example.net\r\n");
  // A server that lists keywords after HELO anyway: they mean nothing there.
  t.trickle("250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n");
  EXPECT_TRUE(t.client_.idle());
  EXPECT_FALSE(t.client_.server_pipelining());
  EXPECT_FALSE(t.client_.server_chunking());
  EXPECT_FALSE(t.client_.server_starttls());
  Body b;
  t.start(1, b.view());
  EXPECT_EQ(t.take(), "MAIL FROM:<bench@example.net>\r\n");
  EXPECT_FALSE(t.client_.can_queue_next());
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r0@x.test>\r\n");
}

TEST(SmtpClient, HeloRefusedEndsTheSetUpWithItsCode) {
  Script t(helo_only());
  t.feed("220 mx.test\r\n");
  EXPECT_EQ(t.take(), "HELO bench.example.net\r\n");
  t.feed("550 5.7.1 not you\r\n");
  EXPECT_EQ(t.take(), "QUIT\r\n");  // no EHLO retry, no MAIL
  EXPECT_EQ(t.client_.setup_code(), 550);
  EXPECT_FALSE(t.client_.ready_seen());
  t.feed("221 bye\r\n");
  EXPECT_TRUE(t.client_.closed());
  EXPECT_EQ(t.client_.setup_code(), 550);  // the owner fails the messages with it
  EXPECT_EQ(t.client_.setup_error(), ErrorKind::none);
  EXPECT_FALSE(t.client_.has_result());
}

TEST(SmtpClient, AuthPlainAfterStarttlsThenIdle) {
  ClientSettings s;
  s.starttls = true;
  s.auth_plain = "AGFsaWNlAHMzY3JldA==";
  Script t(s);
  t.feed("220 mx.test ESMTP\r\n");
  t.take();
  t.feed("250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
  EXPECT_EQ(t.take(), "STARTTLS\r\n");
  t.feed("220 go\r\n");
  t.client_.tls_started(5000);
  EXPECT_EQ(t.take(), "EHLO bench.example.net\r\n");
  t.feed("250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n");
  // Not before TLS, and not pipelined with anything.
  EXPECT_EQ(t.take(), "AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n");
  EXPECT_FALSE(t.client_.idle());
  EXPECT_TRUE(t.client_.waiting());
  t.feed("235 2.7.0 Authentication successful\r\n");
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, AuthRefusedEndsTheSetUpWithItsCode) {
  ClientSettings s;
  s.auth_plain = "AGFsaWNlAHdyb25n";
  Script t(s);
  t.feed("220 mx.test ESMTP\r\n");
  t.take();
  t.feed(kEhloPlain);
  EXPECT_EQ(t.take(), "AUTH PLAIN AGFsaWNlAHdyb25n\r\n");
  t.feed("535 5.7.8 Error: authentication failed\r\n");
  EXPECT_EQ(t.take(), "QUIT\r\n");
  EXPECT_EQ(t.client_.setup_code(), 535);
  EXPECT_FALSE(t.client_.ready_seen());
}

TEST(SmtpClient, HeloAnswered421ClosesAtOnce) {
  Script t(helo_only());
  t.feed("220 mx.test\r\n");
  t.take();
  t.feed("421 4.3.2 shutting down\r\n");
  EXPECT_TRUE(t.client_.server_closes());
  EXPECT_EQ(t.client_.setup_code(), 421);
  EXPECT_EQ(t.take(), "");
}

TEST(SmtpClient, HeloOnlyWithStarttlsOrBdatIsUnsupported) {
  ClientSettings s = helo_only();
  s.starttls = true;
  Script tls(s);
  tls.feed("220 mx.test\r\n");
  tls.take();
  tls.feed("250 mx.test\r\n");
  EXPECT_EQ(tls.take(), "QUIT\r\n");  // never STARTTLS, never plaintext mail
  EXPECT_EQ(tls.client_.setup_error(), ErrorKind::unsupported);

  ClientSettings b = helo_only();
  b.bdat = true;
  Script bdat(b);
  bdat.feed("220 mx.test\r\n");
  bdat.take();
  bdat.feed("250 mx.test\r\n");
  Body body;
  bdat.start(1, body.view());
  auto r = bdat.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, ErrorKind::unsupported);
  EXPECT_EQ(bdat.take(), "");
}

TEST(SmtpClient, LmtpIgnoresHeloOnly) {
  ClientSettings s = helo_only();
  s.lmtp = true;
  Script t(s);
  t.feed("220 lmtp\r\n");
  EXPECT_EQ(t.take(), "LHLO bench.example.net\r\n");
}

TEST(SmtpClient, RcptRejectedPipelinedThenRset) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(3, b.view());
  t.take();
  t.feed("250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->code, 550);
  EXPECT_EQ(r->rcpt_rejected, 1u);
  EXPECT_EQ(r->data_end_ns, 0);
  EXPECT_EQ(t.take(), "RSET\r\n");
  EXPECT_FALSE(t.client_.idle());
  t.feed("250 2.0.0 ok\r\n");
  EXPECT_TRUE(t.client_.idle());
  // The next message goes out normally.
  t.start(4, b.view());
  EXPECT_EQ(t.take().rfind("MAIL FROM:", 0), 0u);
}

TEST(SmtpClient, TempFailOneOfTwoRecipientsStillSendsTheData) {
  Script t(settings(2));
  t.greet(kEhloFull);
  Body b;
  t.start(3, b.view());
  t.take();
  t.feed("250 ok\r\n451 4.3.0 try later\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 queued\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 451);  // the first failure decides
  EXPECT_EQ(r->rcpt_accepted, 1u);
  EXPECT_EQ(r->rcpt_rejected, 1u);
  EXPECT_EQ(t.take(), "");  // the end of data reset the transaction: no RSET
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, LockStepAllRecipientsRejectedSkipsData) {
  Script t(settings());
  t.greet(kEhloPlain);
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r0@x.test>\r\n");
  t.feed("450 4.2.0 busy\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 450);
  EXPECT_EQ(t.take(), "RSET\r\n");
}

TEST(SmtpClient, MailRejectedLockStepNeedsNoRset) {
  Script t(settings());
  t.greet(kEhloPlain);
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("452 4.3.1 insufficient storage\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 452);
  EXPECT_EQ(t.take(), "");
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, RejectedAtTheEndOfData) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("554 5.7.1 spam\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 554);
  EXPECT_GT(r->data_end_ns, 0);
  EXPECT_EQ(t.take(), "");
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, DataCommandRefused) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n451 4.3.0 not now\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 451);
  EXPECT_EQ(r->data_bytes, 0u);
  EXPECT_EQ(t.take(), "RSET\r\n");
}

TEST(SmtpClient, LmtpRepliesPerRecipient) {
  ClientSettings s = settings(3);
  s.lmtp = true;
  Script t(s);
  t.feed("220 lmtp ready\r\n");
  EXPECT_EQ(t.take(), "LHLO bench.example.net\r\n");
  t.feed("250-lmtp\r\n250 PIPELINING\r\n");
  ASSERT_TRUE(t.client_.idle());
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 2.0.0 r0 delivered\r\n");
  EXPECT_FALSE(t.client_.has_result());
  t.feed("452 4.2.2 r2 over quota\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 550) << error_kind_name(r->error);  // the RCPT failure came first
  EXPECT_EQ(r->rcpt_accepted, 2u);

  // All recipients delivered: one result after the last per-recipient reply.
  EXPECT_EQ(t.take(), "");
  ASSERT_TRUE(t.client_.idle());
  t.start(2, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("250 ok\r\n250 ok\r\n");
  EXPECT_FALSE(t.client_.has_result());
  t.feed("250 ok\r\n");
  r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, LmtpDoesNotFallBackToHelo) {
  ClientSettings s = settings();
  s.lmtp = true;
  Script t(s);
  t.feed("220 lmtp\r\n");
  t.take();
  t.feed("500 5.5.1 what\r\n");
  EXPECT_EQ(t.take(), "QUIT\r\n");
  EXPECT_EQ(t.client_.setup_code(), 500);
  EXPECT_FALSE(t.client_.ready_seen());
}

TEST(SmtpClient, BdatPipelinedInOneGo) {
  ClientSettings s = settings();
  s.bdat = true;
  Script t(s);
  t.greet(kEhloFull);
  Body b(2000);
  t.start(1, b.view());
  EXPECT_EQ(t.take(),
            "MAIL FROM:<bench@example.net>\r\nRCPT TO:<r0@x.test>\r\nBDAT 2000 LAST\r\n" + b.raw);
  t.feed("250 ok\r\n250 ok\r\n");
  EXPECT_FALSE(t.client_.has_result());
  t.feed("250 2.0.0 queued\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->data_bytes, 2000u);
}

TEST(SmtpClient, BdatLockStep) {
  ClientSettings s = settings();
  s.bdat = true;
  s.use_pipelining = false;
  Script t(s);
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  EXPECT_EQ(t.take(), "MAIL FROM:<bench@example.net>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<r0@x.test>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "BDAT 1024 LAST\r\n" + b.raw);
  t.feed("250 ok\r\n");
  ASSERT_TRUE(t.client_.take_result()->ok());
}

TEST(SmtpClient, BdatWithoutChunkingIsUnsupported) {
  ClientSettings s = settings();
  s.bdat = true;
  Script t(s);
  t.greet(kEhloPlain);
  Body b;
  t.start(1, b.view());
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, ErrorKind::unsupported);
  EXPECT_EQ(t.take(), "");
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, ServerClosesMidTransaction) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(9, b.view());
  t.take();
  t.feed("250 ok\r\n");
  t.client_.connection_lost(ErrorKind::closed, 5000);
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 9u);
  EXPECT_EQ(r->error, ErrorKind::closed);
  EXPECT_EQ(r->code, 0);
  EXPECT_FALSE(r->ok());
  EXPECT_TRUE(t.client_.closed());
  // Exactly one outcome: losing the connection again adds nothing.
  t.client_.connection_lost(ErrorKind::reset, 6000);
  EXPECT_FALSE(t.client_.take_result());
}

TEST(SmtpClient, ServerClosesAfterTheFinalReplyAddsNothing) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
  ASSERT_TRUE(t.client_.take_result()->ok());
  t.client_.connection_lost(ErrorKind::closed, 9000);
  EXPECT_FALSE(t.client_.take_result());
  EXPECT_TRUE(t.client_.closed());
}

TEST(SmtpClient, ServiceClosing421EndsTheSession) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("421 4.7.0 too many transactions\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 421);
  EXPECT_TRUE(t.client_.closed());
  EXPECT_EQ(t.take(), "");
}

TEST(SmtpClient, BannerRefused) {
  Script t(settings());
  t.feed("554 5.7.1 go away\r\n");
  EXPECT_TRUE(t.client_.closed());
  EXPECT_EQ(t.client_.setup_code(), 554);
  EXPECT_FALSE(t.client_.ready_seen());
  EXPECT_EQ(t.take(), "");
}

TEST(SmtpClient, ConnectionLostBeforeReadyIsASetupError) {
  Script t(settings());
  t.client_.connection_lost(ErrorKind::refused, 2000);
  EXPECT_EQ(t.client_.setup_error(), ErrorKind::refused);
  EXPECT_FALSE(t.client_.take_result());
}

TEST(SmtpClient, GarbageIsAProtocolError) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("HTTP/1.1 400 Bad Request\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, ErrorKind::protocol);
  EXPECT_TRUE(t.client_.closed());
}

TEST(SmtpClient, UnsolicitedReplyWhileIdle) {
  Script t(settings());
  t.greet(kEhloFull);
  t.feed("421 4.4.2 idle timeout\r\n");
  EXPECT_TRUE(t.client_.closed());
  EXPECT_FALSE(t.client_.take_result());
}

TEST(SmtpClient, QuitPipelinedBehindTheLastMessage) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.client_.quit(t.now_);
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(t.take(), b.stuffed + "QUIT\r\n");
  t.feed("250 queued\r\n221 bye\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  EXPECT_TRUE(t.client_.closed());
  EXPECT_FALSE(t.client_.waiting());
}

TEST(SmtpClient, QuitWhenIdleAndBeforeReady) {
  Script t(settings());
  t.greet(kEhloFull);
  t.client_.quit(t.now_);
  EXPECT_EQ(t.take(), "QUIT\r\n");
  EXPECT_TRUE(t.client_.waiting());
  t.feed("221 bye\r\n");
  EXPECT_TRUE(t.client_.closed());

  Script u(settings());
  u.client_.quit(u.now_);  // before the banner: QUIT once the session is ready
  u.feed("220 hi\r\n");
  EXPECT_EQ(u.take(), "EHLO bench.example.net\r\n");
  u.feed("250 hi\r\n");
  EXPECT_EQ(u.take(), "QUIT\r\n");
}

TEST(SmtpClient, QuitAfterAFailedLockStepTransaction) {
  ClientSettings s = settings();
  Script t(s);
  t.greet(kEhloPlain);
  Body b;
  t.start(1, b.view());
  t.client_.quit(t.now_);
  t.take();
  t.feed("250 ok\r\n");
  t.take();
  t.feed("550 no\r\n");
  EXPECT_EQ(t.client_.take_result()->code, 550);
  EXPECT_EQ(t.take(), "RSET\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "QUIT\r\n");
}

TEST(SmtpClient, LargeBodiesAreReferencedNotCopied) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b(SmtpClient::kCopyBelow * 2);
  t.start(1, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  ASSERT_TRUE(t.client_.has_output());
  EXPECT_TRUE(t.client_.output_is_reference());
  EXPECT_EQ(t.client_.output().data(), b.stuffed.data());
  // Partial sends.
  t.client_.consume_output(1000);
  EXPECT_EQ(t.client_.output().data(), b.stuffed.data() + 1000);
  EXPECT_EQ(t.take(), b.stuffed.substr(1000));
}

TEST(SmtpClient, StartWhileBusyStillGivesOneOutcome) {
  Script t(settings());
  t.greet(kEhloPlain);  // lock-step: nothing can be queued
  Body b;
  t.start(1, b.view());
  t.take();
  t.feed("250 ok\r\n");
  t.take();
  t.feed("250 ok\r\n");  // MAIL, RCPT done; DATA reply due
  EXPECT_EQ(t.take(), "DATA\r\n");
  EXPECT_FALSE(t.client_.can_queue_next());
  t.start(2, b.view());  // a caller's mistake
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 2u);
  EXPECT_EQ(r->error, ErrorKind::protocol);
  t.feed("354 go\r\n");  // message 1 carries on
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 ok\r\n");
  r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 1u);
  EXPECT_TRUE(r->ok());
}

TEST(SmtpClient, OverlongReplyLineIsAProtocolError) {
  Script t(settings());
  t.feed(std::string(SmtpClient::kMaxReplyLine + 10, 'x'));
  EXPECT_TRUE(t.client_.closed());
  EXPECT_EQ(t.client_.setup_error(), ErrorKind::protocol);
}

TEST(SmtpClient, NextMessagePipelinedBehindTheEndOfData) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b1(1024, 1);
  Body b2(1024, 2);
  EXPECT_FALSE(t.client_.can_queue_next());  // idle: start_message, not queue
  t.start(1, b1.view());
  EXPECT_TRUE(t.client_.can_queue_next());
  t.start(2, b2.view());
  EXPECT_FALSE(t.client_.can_queue_next());  // one queued at most
  EXPECT_EQ(t.client_.in_flight(), 2u);
  const std::string envelope = "MAIL FROM:<bench@example.net>\r\nRCPT TO:<r0@x.test>\r\nDATA\r\n";
  EXPECT_EQ(t.take(), envelope);  // message 2 waits for message 1's data
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(t.take(), b1.stuffed + envelope);  // one group: data 1 + envelope 2
  t.feed("250 queued 1\r\n250 ok\r\n250 ok\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 1u);
  EXPECT_TRUE(r->ok());
  EXPECT_FALSE(t.client_.has_result());
  EXPECT_EQ(t.client_.in_flight(), 1u);
  EXPECT_TRUE(t.client_.can_queue_next());  // message 2 is current now
  t.feed("354 go\r\n");
  EXPECT_EQ(t.take(), b2.stuffed);
  t.feed("250 queued 2\r\n");
  r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 2u);
  EXPECT_TRUE(r->ok());
  EXPECT_GT(r->started_ns, 0);
  EXPECT_TRUE(t.client_.idle());
}

TEST(SmtpClient, IntendedAtStartIsWhenMailIsQueued) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.client_.start_message(2, b.view(), SmtpClient::kIntendedAtStart, ++t.now_);
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");  // message 2's MAIL is queued now
  const int64_t queued_at = t.now_;
  t.take();
  t.feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("250 ok\r\n");
  t.client_.take_result();
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->intended_ns, queued_at);
  EXPECT_EQ(r->started_ns, queued_at);
}

TEST(SmtpClient, QuitBehindTheLastOfTwoMessages) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());
  t.client_.quit(t.now_);
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  const std::string out = t.take();
  EXPECT_EQ(out.find("QUIT"), std::string::npos);
  t.feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(t.take(), b.stuffed + "QUIT\r\n");
  t.feed("250 ok\r\n221 bye\r\n");
  EXPECT_TRUE(t.client_.take_result()->ok());
  EXPECT_TRUE(t.client_.take_result()->ok());
  EXPECT_TRUE(t.client_.closed());
  EXPECT_TRUE(t.client_.server_closes());
}

TEST(SmtpClient, QueuedMessageWaitsForRsetWhenTheFirstFailsEarly) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());
  t.take();
  t.feed("250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 550);
  EXPECT_EQ(t.take(), "RSET\r\n");  // message 2 has not been sent
  EXPECT_FALSE(t.client_.can_queue_next());
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "MAIL FROM:<bench@example.net>\r\nRCPT TO:<r0@x.test>\r\nDATA\r\n");
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("250 ok\r\n");
  r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 2u);
  EXPECT_TRUE(r->ok());
}

TEST(SmtpClient, RejectedAtTheEndOfDataNeedsNoRsetBeforeTheNext) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("554 5.7.1 no thanks\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(t.client_.take_result()->code, 554);
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 ok\r\n");
  EXPECT_TRUE(t.client_.take_result()->ok());
  EXPECT_EQ(t.take(), "");
}

TEST(SmtpClient, BdatPipelinesTheNextMessageAtOnce) {
  ClientSettings s = settings();
  s.bdat = true;
  Script t(s);
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());
  const std::string one =
      "MAIL FROM:<bench@example.net>\r\nRCPT TO:<r0@x.test>\r\nBDAT 1024 LAST\r\n" + b.raw;
  // Behind a BDAT whose outcome is not known yet: RSET first (RFC 3030).
  EXPECT_EQ(t.take(), one + "RSET\r\n" + one);
  t.feed("250 ok\r\n250 ok\r\n250 ok\r\n");
  EXPECT_TRUE(t.client_.take_result()->ok());
  EXPECT_TRUE(t.client_.can_queue_next());
  t.start(3, b.view());
  EXPECT_EQ(t.take(), "RSET\r\n" + one);
  t.feed("250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n");
  EXPECT_EQ(t.client_.take_result()->id, 2u);
  EXPECT_FALSE(t.client_.has_result());
  t.feed("250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n");
  EXPECT_EQ(t.client_.take_result()->id, 3u);
  EXPECT_TRUE(t.client_.idle());
}

// RFC 3030: after a refused BDAT the server's state is indeterminate and RSET
// must clear it. Dovecot's LMTP, for one, keeps the transaction after "503 No
// valid recipients" to BDAT and answers the next MAIL "503 MAIL already given"
// (and takes that message's recipients into the old transaction). So a
// message pipelined behind a BDAT starts with RSET, and a refused BDAT with
// nothing behind it is followed by RSET before the session goes on.
TEST(SmtpClient, BdatRefusedIsFollowedByRset) {
  ClientSettings s = settings();
  s.bdat = true;
  s.lmtp = true;
  Script t(s);
  t.feed("220 lmtp\r\n");
  EXPECT_EQ(t.take(), "LHLO bench.example.net\r\n");
  t.feed("250-lmtp\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());
  const std::string one =
      "MAIL FROM:<bench@example.net>\r\nRCPT TO:<r0@x.test>\r\nBDAT 1024 LAST\r\n" + b.raw;
  EXPECT_EQ(t.take(), one + "RSET\r\n" + one);
  t.feed("250 ok\r\n550 5.1.1 no such user\r\n503 5.5.0 No valid recipients\r\n");
  EXPECT_EQ(t.client_.take_result()->code, 550);
  t.feed("250 2.0.0 OK\r\n250 ok\r\n250 ok\r\n");
  EXPECT_FALSE(t.client_.has_result());
  t.feed("250 2.0.0 <r0@x.test> Saved\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok()) << r->code;
  EXPECT_TRUE(t.client_.idle());
  EXPECT_EQ(t.take(), "");
  // Lock-step: a recipient accepted, the BDAT refused, then RSET.
  t.client_.quit(++t.now_);
  EXPECT_EQ(t.take(), "QUIT\r\n");

  s.use_pipelining = false;
  Script u(s);
  u.feed("220 lmtp\r\n");
  u.take();
  u.feed("250-lmtp\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
  u.start(1, b.view());
  EXPECT_EQ(u.take(), "MAIL FROM:<bench@example.net>\r\n");
  u.feed("250 ok\r\n");
  EXPECT_EQ(u.take(), "RCPT TO:<r0@x.test>\r\n");
  u.feed("250 ok\r\n");
  EXPECT_EQ(u.take(), "BDAT 1024 LAST\r\n" + b.raw);
  u.feed("552 5.2.2 <r0@x.test> Mailbox is full\r\n");
  EXPECT_EQ(u.client_.take_result()->code, 552);
  EXPECT_EQ(u.take(), "RSET\r\n");
  EXPECT_FALSE(u.client_.idle());
  u.feed("250 2.0.0 OK\r\n");
  EXPECT_TRUE(u.client_.idle());
  // A BDAT accepted needs no RSET, even when a recipient was refused.
  ClientSettings s2 = settings(2);
  s2.bdat = true;
  s2.lmtp = true;
  s2.use_pipelining = false;
  Script v(s2);
  v.feed("220 lmtp\r\n");
  v.take();
  v.feed("250-lmtp\r\n250 CHUNKING\r\n");
  v.start(1, b.view());
  v.take();
  v.feed("250 ok\r\n");
  v.take();
  v.feed("550 no\r\n");
  v.take();
  v.feed("250 ok\r\n");
  EXPECT_EQ(v.take(), "BDAT 1024 LAST\r\n" + b.raw);
  v.feed("250 r1 saved\r\n");
  EXPECT_EQ(v.client_.take_result()->code, 550);
  EXPECT_TRUE(v.client_.idle());
  EXPECT_EQ(v.take(), "");
}

// Bodies under kCopyBelow are copied into the client's own text, and two of
// them pipelined can add up to more than kCopyBelow: that text is not a
// reference (it grows when the next command is queued), so the owner must
// copy it before sending.
TEST(SmtpClient, CopiedBodiesAddingUpAreNotAReference) {
  ClientSettings s = settings();
  s.bdat = true;
  Script t(s);
  t.greet(kEhloFull);
  Body b(SmtpClient::kCopyBelow * 3 / 4);
  t.start(1, b.view());
  t.start(2, b.view());
  ASSERT_GE(t.client_.output().size(), SmtpClient::kCopyBelow);
  EXPECT_FALSE(t.client_.output_is_reference());
}

TEST(SmtpClient, ServiceClosingEndsBothMessages) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("421 4.3.2 shutting down\r\n");
  EXPECT_EQ(t.client_.take_result()->code, 421);
  EXPECT_EQ(t.client_.take_result()->code, 421);
  EXPECT_FALSE(t.client_.has_result());
  EXPECT_TRUE(t.client_.server_closes());
}

TEST(SmtpClient, ConnectionLostEndsBothMessagesOnce) {
  Script t(settings());
  t.greet(kEhloFull);
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());  // not sent yet
  t.client_.connection_lost(ErrorKind::reset, 7000);
  auto r1 = t.client_.take_result();
  auto r2 = t.client_.take_result();
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->error, ErrorKind::reset);
  EXPECT_EQ(r2->error, ErrorKind::reset);
  EXPECT_EQ(r2->started_ns, 0);
  EXPECT_FALSE(t.client_.take_result());
  t.client_.connection_lost(ErrorKind::closed, 8000);
  EXPECT_FALSE(t.client_.take_result());
}

TEST(SmtpClient, LmtpNextMessageAfterEveryRecipientReply) {
  ClientSettings s = settings(2);
  s.lmtp = true;
  Script t(s);
  t.feed("220 lmtp\r\n");
  t.take();
  t.feed("250-lmtp\r\n250 PIPELINING\r\n");
  Body b;
  t.start(1, b.view());
  t.start(2, b.view());
  t.take();
  t.feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("250 r0\r\n");
  EXPECT_FALSE(t.client_.has_result());
  t.feed("250 r1\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_TRUE(t.client_.take_result()->ok());
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 r0\r\n450 r1 busy\r\n");
  EXPECT_EQ(t.client_.take_result()->code, 450);
}

TEST(SmtpClient, NoQueueingInLockStep) {
  Script t(settings());
  t.greet(kEhloPlain);
  Body b;
  t.start(1, b.view());
  EXPECT_FALSE(t.client_.can_queue_next());
}

}  // namespace
}  // namespace ringmx::bench

// ---- the relays' use: envelopes of their own, replies kept ----------------------

namespace ringmx::bench {
namespace {

ClientSettings relay_settings(bool lmtp) {
  ClientSettings s;
  s.helo_name = "mx.ringmx.test";
  s.lmtp = lmtp;
  s.keep_replies = true;
  return s;
}

TEST(SmtpClientRelay, EnvelopeOfItsOwnWithParameters) {
  Script t(relay_settings(false));
  t.feed("220 mx.test ESMTP\r\n");
  EXPECT_EQ(t.take(), "EHLO mx.ringmx.test\r\n");
  t.feed(kEhloFull);
  ClientEnvelope env{"s@example.net",
                     " SIZE=120 BODY=8BITMIME",
                     {{"a@example.org", " NOTIFY=FAILURE"}, {"b@example.org", ""}}};
  Body b;
  MessageBody body = b.view();
  body.envelope = &env;
  t.start(1, body);
  EXPECT_EQ(t.take(),
            "MAIL FROM:<s@example.net> SIZE=120 BODY=8BITMIME\r\n"
            "RCPT TO:<a@example.org> NOTIFY=FAILURE\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  t.feed("250 2.1.0 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user here\r\n250 2.1.5 ok\r\n354 go\r\n");
  EXPECT_EQ(t.take(), b.stuffed);
  t.feed("250 2.0.0 queued as X\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 550);
  ASSERT_EQ(r->rcpt_replies.size(), 2u);
  EXPECT_EQ(r->rcpt_replies[0].code, 550);
  EXPECT_EQ(r->rcpt_replies[0].text, "5.1.1 no such 5.1.1 user here");
  EXPECT_EQ(r->rcpt_replies[1].code, 250);
  EXPECT_EQ(r->rcpt_replies[1].text, "2.0.0 queued as X");  // the data's reply decides
  EXPECT_EQ(r->early.code, 0);
}

TEST(SmtpClientRelay, LockStepUsesTheEnvelopesRecipientCount) {
  Script t(relay_settings(false));
  t.feed("220 mx.test ESMTP\r\n");
  t.take();
  t.feed("250 mx.test\r\n");  // no PIPELINING
  ClientEnvelope env{"s@example.net", "", {{"a@x.org", ""}, {"b@x.org", ""}, {"c@x.org", ""}}};
  Body b;
  MessageBody body = b.view();
  body.envelope = &env;
  t.start(1, body);
  EXPECT_EQ(t.take(), "MAIL FROM:<s@example.net>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<a@x.org>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<b@x.org>\r\n");
  t.feed("451 4.3.0 later\r\n");
  EXPECT_EQ(t.take(), "RCPT TO:<c@x.org>\r\n");
  t.feed("250 ok\r\n");
  EXPECT_EQ(t.take(), "DATA\r\n");
  t.feed("354 go\r\n");
  t.take();
  t.feed("250 done\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->rcpt_replies.size(), 3u);
  EXPECT_EQ(r->rcpt_replies[0].code, 250);
  EXPECT_EQ(r->rcpt_replies[1].code, 451);
  EXPECT_EQ(r->rcpt_replies[2].code, 250);
  EXPECT_EQ(r->rcpt_replies[2].text, "done");
}

TEST(SmtpClientRelay, LmtpEachAcceptedRecipientGetsItsOwnReply) {
  Script t(relay_settings(true));
  t.feed("220 lmtp\r\n");
  EXPECT_EQ(t.take(), "LHLO mx.ringmx.test\r\n");
  t.feed("250-lmtp\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n");
  EXPECT_TRUE(t.client_.server_8bitmime());
  EXPECT_TRUE(t.client_.server_smtputf8());
  EXPECT_FALSE(t.client_.server_dsn());
  ClientEnvelope env{
      "s@x.net", "", {{"u1@x.org", ""}, {"nobody@x.org", ""}, {"u2@x.org", ""}, {"u3@x.org", ""}}};
  Body b;
  MessageBody body = b.view();
  body.envelope = &env;
  t.start(1, body);
  t.take();
  t.feed(
      "250 ok\r\n250 ok\r\n550 5.1.1 <nobody@x.org> User doesn't exist\r\n250 ok\r\n250 ok\r\n"
      "354 go\r\n");
  t.take();
  t.feed("250 2.0.0 <u1@x.org> Saved\r\n452 4.2.2 <u2@x.org> Quota exceeded\r\n");
  EXPECT_FALSE(t.client_.has_result());
  t.feed("250 2.0.0 <u3@x.org> Saved\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->rcpt_replies.size(), 4u);
  EXPECT_EQ(r->rcpt_replies[0].text, "2.0.0 <u1@x.org> Saved");
  EXPECT_EQ(r->rcpt_replies[1].code, 550);
  EXPECT_EQ(r->rcpt_replies[2].code, 452);
  EXPECT_EQ(r->rcpt_replies[2].text, "4.2.2 <u2@x.org> Quota exceeded");
  EXPECT_EQ(r->rcpt_replies[3].text, "2.0.0 <u3@x.org> Saved");
}

TEST(SmtpClientRelay, LostAfterTheDataLeavesAcceptedRecipientsUndecided) {
  Script t(relay_settings(true));
  t.feed("220 lmtp\r\n");
  t.take();
  t.feed("250-lmtp\r\n250 PIPELINING\r\n");
  ClientEnvelope env{"s@x.net", "", {{"u1@x.org", ""}, {"u2@x.org", ""}, {"u3@x.org", ""}}};
  Body b;
  MessageBody body = b.view();
  body.envelope = &env;
  t.start(1, body);
  t.take();
  t.feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n");
  t.take();
  t.feed("250 2.0.0 saved\r\n");  // u1 only; then the line drops
  t.client_.connection_lost(ErrorKind::reset, 99);
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, ErrorKind::reset);
  ASSERT_EQ(r->rcpt_replies.size(), 3u);
  EXPECT_EQ(r->rcpt_replies[0].code, 250);
  EXPECT_EQ(r->rcpt_replies[1].code, 550);
  EXPECT_EQ(r->rcpt_replies[2].code, 0);  // its 250 to RCPT does not make it delivered
}

TEST(SmtpClientRelay, MailRefusedIsTheEarlyReply) {
  Script t(relay_settings(false));
  t.feed("220 mx.test ESMTP\r\n");
  t.take();
  t.feed(kEhloFull);
  ClientEnvelope env{"s@x.net", "", {{"a@x.org", ""}}};
  Body b;
  MessageBody body = b.view();
  body.envelope = &env;
  t.start(1, body);
  t.take();
  t.feed("451 4.7.1 greylisted\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->early.code, 451);
  EXPECT_EQ(r->early.text, "4.7.1 greylisted");
  ASSERT_EQ(r->rcpt_replies.size(), 1u);
  EXPECT_EQ(r->rcpt_replies[0].code, 503);  // the early reply decides, not this one
}

TEST(SmtpClientRelay, ExtensionsAndSizeAndTheCappedText) {
  Script t(relay_settings(false));
  t.feed("220 mx.test ESMTP\r\n");
  t.take();
  t.feed("250-mx\r\n250-SIZE 10240000\r\n250-DSN\r\n250 8bitmime\r\n");
  EXPECT_TRUE(t.client_.server_size_offered());
  EXPECT_EQ(t.client_.server_size(), 10240000u);
  EXPECT_TRUE(t.client_.server_dsn());
  EXPECT_TRUE(t.client_.server_8bitmime());
  EXPECT_EQ(t.client_.last_reply().code, 250);
  ClientEnvelope env{"s@x.net", "", {{"a@x.org", ""}}};
  Body b;
  MessageBody body = b.view();
  body.envelope = &env;
  t.start(1, body);
  t.take();
  std::string many;
  for (int i = 0; i < 100; ++i) many += "550-5.7.1 a long explanation line\r\n";
  many += "550 5.7.1 end\r\n";
  t.feed("250 ok\r\n" + many + "554 5.5.1 no valid recipients\r\n");
  auto r = t.client_.take_result();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->rcpt_replies.size(), 1u);
  EXPECT_EQ(r->rcpt_replies[0].code, 550);
  EXPECT_LE(r->rcpt_replies[0].text.size(), ReplyText::kMaxReplyText);
  EXPECT_EQ(r->rcpt_replies[0].text.rfind("5.7.1 a long explanation line 5.7.1", 0), 0u);
}

TEST(SmtpClientRelay, OptionalStarttlsGoesOnInPlaintextWhenNotOffered) {
  ClientSettings s = relay_settings(false);
  s.starttls = true;
  s.starttls_optional = true;
  Script t(s);
  t.feed("220 mx.test ESMTP\r\n");
  t.take();
  t.feed("250-mx\r\n250 PIPELINING\r\n");
  EXPECT_TRUE(t.client_.idle());
  EXPECT_FALSE(t.client_.tls_active());
  EXPECT_EQ(t.take(), "");
  // Offered: it is used.
  Script u(s);
  u.feed("220 mx.test ESMTP\r\n");
  u.take();
  u.feed("250-mx\r\n250 STARTTLS\r\n");
  EXPECT_EQ(u.take(), "STARTTLS\r\n");
}

TEST(SmtpClientRelay, ExtensionsAreForgottenAfterStarttls) {
  ClientSettings s = relay_settings(false);
  s.starttls = true;
  Script t(s);
  t.feed("220 mx.test ESMTP\r\n");
  t.take();
  t.feed("250-mx\r\n250-DSN\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n");
  EXPECT_EQ(t.take(), "STARTTLS\r\n");
  t.feed("220 go\r\n");
  ASSERT_TRUE(t.client_.wants_tls());
  t.client_.tls_started(5000);
  EXPECT_FALSE(t.client_.server_dsn());
  EXPECT_FALSE(t.client_.server_smtputf8());
}

}  // namespace
}  // namespace ringmx::bench
