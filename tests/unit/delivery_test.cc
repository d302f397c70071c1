// Contract: delivery's pure rules (pipeline/delivery.h): how a reply decides
// a recipient, which reply decides it, the back-off's bounds and growth, the
// maximum age, and the envelope a destination gets for what it offered.
#include "pipeline/delivery.h"

#include <gtest/gtest.h>

namespace ringmx {
namespace {

TEST(Delivery, RepliesDecideRecipients) {
  EXPECT_EQ(classify({250, "2.0.0 ok"}), DeliveryResult::delivered);
  EXPECT_EQ(classify({550, "5.1.1 unknown"}), DeliveryResult::failed);
  EXPECT_EQ(classify({552, "5.2.2 quota"}), DeliveryResult::failed);
  EXPECT_EQ(classify({451, "4.3.0 later"}), DeliveryResult::deferred);
  EXPECT_EQ(classify({0, "4.4.2 connection lost"}), DeliveryResult::deferred);
  EXPECT_EQ(classify({354, "go on"}), DeliveryResult::deferred);  // never a verdict
}

TEST(Delivery, TheEarlyReplyDecidesEveryRecipient) {
  MessageResult r;
  r.rcpt_replies = {{503, "5.5.1 need MAIL"}, {250, "ok"}};
  r.early = {451, "4.7.1 greylisted"};
  EXPECT_EQ(decisive_reply(r, 0).code, 451);
  EXPECT_EQ(decisive_reply(r, 1).code, 451);
  r.early = {};
  EXPECT_EQ(decisive_reply(r, 0).code, 503);
  EXPECT_EQ(decisive_reply(r, 1).text, "ok");
}

TEST(Delivery, NoReplyIsATemporaryFailureNamingTheError) {
  MessageResult r;
  r.error = ErrorKind::timeout;
  r.rcpt_replies = {{0, ""}};
  const ReplyText t = decisive_reply(r, 0);
  EXPECT_EQ(t.code, 0);
  EXPECT_EQ(t.text.rfind("4.4.2", 0), 0u);
  EXPECT_EQ(classify(t), DeliveryResult::deferred);
  r.error = ErrorKind::refused;
  EXPECT_EQ(decisive_reply(r, 5).text, "4.4.1 connection refused");  // beyond the replies too
}

TEST(Delivery, BackOffDoublesWithJitterUpToTheMaximum) {
  DeliveryConfig cfg;
  cfg.retry_min_ms = 1000;
  cfg.retry_max_ms = 10'000;
  for (uint64_t rnd : {uint64_t{0}, uint64_t{1}, uint64_t{12345}, ~uint64_t{0}}) {
    const int64_t d1 = retry_delay_ms(1, cfg, rnd);
    EXPECT_GE(d1, 500);
    EXPECT_LE(d1, 1000);
    const int64_t d3 = retry_delay_ms(3, cfg, rnd);
    EXPECT_GE(d3, 2000);
    EXPECT_LE(d3, 4000);
    const int64_t d40 = retry_delay_ms(40, cfg, rnd);
    EXPECT_GE(d40, 5000);
    EXPECT_LE(d40, 10'000);
  }
  // Jitter: different draws give different delays.
  EXPECT_NE(retry_delay_ms(2, cfg, 1), retry_delay_ms(2, cfg, 777));
}

TEST(Delivery, MaximumAge) {
  DeliveryConfig cfg;
  cfg.max_age_s = 100;
  EXPECT_FALSE(too_old(1000, 1099, cfg));
  EXPECT_TRUE(too_old(1000, 1100, cfg));
}

QueuedMessage sample() {
  QueuedMessage m;
  m.queue_id = "Q";
  m.size = 5000;
  m.sender = "s@example.net";
  m.mail.body = BodyType::eight_bit_mime;
  m.mail.ret = DsnRet::hdrs;
  m.mail.envid = "abc+2B";
  QueuedRecipient a;
  a.address = "a@example.org";
  a.params.notify = notify_success | notify_failure;
  a.params.orcpt_type = "rfc822";
  a.params.orcpt = "a@example.org";
  QueuedRecipient b;
  b.address = "b@example.org";
  m.rcpts = {a, b};
  return m;
}

TEST(Delivery, EnvelopeCarriesWhatTheDestinationOffered) {
  const QueuedMessage m = sample();
  ClientEnvelope env;
  ServerOffer all{true, 0, true, true, true};
  ASSERT_EQ(render_envelope(m, {0, 1}, all, env), "");
  EXPECT_EQ(env.mail_from, "s@example.net");
  EXPECT_EQ(env.mail_params, " SIZE=5000 BODY=8BITMIME RET=HDRS ENVID=abc+2B");
  ASSERT_EQ(env.recipients.size(), 2u);
  EXPECT_EQ(env.recipients[0].params, " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.org");
  EXPECT_EQ(env.recipients[1].params, "");
  // No DSN, no SIZE: those parameters stay home.
  ServerOffer plain{false, 0, true, false, false};
  ASSERT_EQ(render_envelope(m, {1}, plain, env), "");
  EXPECT_EQ(env.mail_params, " BODY=8BITMIME");
  ASSERT_EQ(env.recipients.size(), 1u);
  EXPECT_EQ(env.recipients[0].address, "b@example.org");
}

TEST(Delivery, TooBigForTheDestinationIsPermanent) {
  const QueuedMessage m = sample();
  ClientEnvelope env;
  ServerOffer small{true, 4000, true, true, true};
  EXPECT_EQ(render_envelope(m, {0}, small, env).rfind("5.3.4", 0), 0u);
  ServerOffer big{true, 5000, true, true, true};
  EXPECT_EQ(render_envelope(m, {0}, big, env), "");
}

TEST(Delivery, Utf8AddressesNeedSmtputf8) {
  QueuedMessage m = sample();
  m.mail.smtputf8 = true;
  ClientEnvelope env;
  ServerOffer no_utf8{false, 0, true, false, false};
  // ASCII addresses: goes without the keyword.
  ASSERT_EQ(render_envelope(m, {0}, no_utf8, env), "");
  EXPECT_EQ(env.mail_params.find("SMTPUTF8"), std::string::npos);
  m.rcpts[1].address = "\xC3\xBCser@example.org";
  EXPECT_EQ(render_envelope(m, {0}, no_utf8, env), "");  // only recipient 0 goes
  EXPECT_EQ(render_envelope(m, {1}, no_utf8, env).rfind("5.6.7", 0), 0u);
  ServerOffer utf8{false, 0, true, true, false};
  ASSERT_EQ(render_envelope(m, {1}, utf8, env), "");
  EXPECT_NE(env.mail_params.find(" SMTPUTF8"), std::string::npos);
}

TEST(Delivery, DoneWhenNoRecipientIsPending) {
  QueuedMessage m = sample();
  EXPECT_FALSE(m.done());
  m.rcpts[0].state = RcptState::delivered;
  EXPECT_FALSE(m.done());
  m.rcpts[1].state = RcptState::failed;
  EXPECT_TRUE(m.done());
}

}  // namespace
}  // namespace ringmx
