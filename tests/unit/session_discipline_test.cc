// Protocol discipline in the session: HTTP probes, pipelining that was not
// offered, and command lines that trickle in (slowloris). Each check fires on
// what it should, stays quiet when switched off, and leaves real clients alone.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/protocol_discipline.h"
#include "core/session.h"
#include "tests/unit/session_harness.h"

namespace ringmx {
namespace {

using test::codes;
using test::Harness;
using test::kStrict;

using Strings = std::vector<std::string>;

// A session with the given config as it is (no test relaxations), greeted.
struct Strict : Harness {
  explicit Strict(SessionConfig cfg = {}) : Harness(kStrict, std::move(cfg)) { take(); }
};

const std::string kHttpReply =
    "554 5.7.0 Error: HTTP (or proxy) requests are not SMTP, closing connection\r\n";
const std::string kPipeliningReply =
    "554 5.5.0 Error: command sent before the previous reply was read; PIPELINING was not "
    "offered, closing connection\r\n";
const std::string kSlowReply = "421 4.4.2 localhost Error: command line not completed in time\r\n";

// ---- HTTP probes --------------------------------------------------------------------

TEST(HttpLine, RequestLinesAndHeaders) {
  for (const char* line :
       {"GET / HTTP/1.1", "get /", "POST /cgi HTTP/1.0", "HEAD / HTTP/1.1", "PUT /x",
        "OPTIONS * HTTP/1.1", "CONNECT mx.example:25 HTTP/1.1", "Connect 1.2.3.4:25",
        "Host: example.com", "host:x", "User-Agent: curl/7.88", "USER-AGENT: x"}) {
    EXPECT_TRUE(is_http_line(line)) << line;
  }
  for (const char* line : {"", "GET", "GETX /", "HEAD", "POSTMASTER", "HELO get", "EHLO host",
                           "MAIL FROM:<get@example.com>", "RCPT TO:<host@example.com>", "Host",
                           "Hostname: x", "User-Agent x", " GET /"}) {
    EXPECT_FALSE(is_http_line(line)) << line;
  }
}

TEST(SessionDiscipline, HttpRequestIsDroppedAtOnce) {
  Strict h;
  const std::string probe = "GET / HTTP/1.1\r\nHost: mx.example\r\nUser-Agent: x\r\n\r\n";
  EXPECT_EQ(h.send(probe), kHttpReply);  // one reply; the headers are not answered
  EXPECT_TRUE(h.session.closed());
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"http_probe@connect"});
  EXPECT_EQ(h.session.current_arg(), "GET / HTTP/1.1");  // what the logs show
}

TEST(SessionDiscipline, ProxyProbeMidSessionEndsTheTransaction) {
  Strict h;
  h.send("EHLO c\r\n");
  h.send("MAIL FROM:<a@example.com>\r\n");
  // A header line on its own, any case, anywhere in the command phase.
  EXPECT_EQ(h.send("connect smtp.example:25 HTTP/1.0\r\nQUIT\r\n"), kHttpReply);
  EXPECT_TRUE(h.session.closed());
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"http_probe@mail"});
  EXPECT_TRUE(h.session.current_queue_id().empty());  // the transaction is gone
}

TEST(SessionDiscipline, HostHeaderAloneIsAProbe) {
  Strict h;
  h.send("HELO c\r\n");
  EXPECT_EQ(h.send("host: x\r\n"), kHttpReply);
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"http_probe@helo"});
}

TEST(SessionDiscipline, HttpCheckOff) {
  SessionConfig cfg;
  cfg.reject_http = false;
  Strict h(cfg);
  EXPECT_EQ(h.send("GET / HTTP/1.1\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_FALSE(h.session.closed());
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

// ---- pipelining that was not offered --------------------------------------------------

TEST(SessionDiscipline, MailInTheSameReadAsEhloIsRefused) {
  Strict h;
  const std::string out =
      h.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  // EHLO is answered; MAIL was written before its reply could be read.
  EXPECT_EQ(codes(out), (Strings{"250", "554"}));
  EXPECT_NE(out.find(kPipeliningReply), std::string::npos) << out;
  EXPECT_TRUE(h.session.closed());
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"unoffered_pipelining@helo"});
  EXPECT_TRUE(h.rec.envelopes.empty());
}

TEST(SessionDiscipline, HeloClientThatPipelinesIsRefused) {
  Strict h;
  EXPECT_EQ(codes(h.send("HELO c\r\n")), Strings{"250"});
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")),
            (Strings{"250", "554"}));
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"unoffered_pipelining@mail"});
}

TEST(SessionDiscipline, BeforeAnyHelo) {
  Strict h;
  EXPECT_EQ(codes(h.send("NOOP\r\nNOOP\r\n")), (Strings{"250", "554"}));
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"unoffered_pipelining@connect"});
}

TEST(SessionDiscipline, PipeliningSwitchedOffIsNotOffered) {
  SessionConfig cfg;
  cfg.ext.pipelining = false;
  Strict h(cfg);
  EXPECT_EQ(h.send("EHLO c\r\n").find("PIPELINING"), std::string::npos);
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")),
            (Strings{"250", "554"}));
}

TEST(SessionDiscipline, LineStartedInTheSameReadCountsWhenItEndsLater) {
  Strict h;
  EXPECT_EQ(codes(h.send("EHLO c\r\nMAIL FR")), Strings{"250"});
  EXPECT_EQ(h.send("OM:<a@example.com>\r\n"), kPipeliningReply);
}

TEST(SessionDiscipline, CommandsHeldForAVerdictAreStillJudged) {
  Strict h;
  h.rec.pend_helo = true;
  const std::string in = "HELO c\r\nMAIL FROM:<a@example.com>\r\n";
  EXPECT_EQ(h.session.feed(in, h.now), 8u);  // stops at the pending HELO check
  h.session.resume(Verdict::accept(), h.now);
  EXPECT_EQ(codes(h.take()), Strings{"250"});
  EXPECT_EQ(h.send(std::string_view(in).substr(8)), kPipeliningReply);
}

TEST(SessionDiscipline, PipeliningAfterTheEhloReplyIsFine) {
  Strict h;
  h.send("EHLO c\r\n");
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
                         "RCPT TO:<c@example.org>\r\nDATA\r\n")),
            (Strings{"250", "250", "250", "354"}));
  // The next transaction behind the end of data, and QUIT behind that.
  EXPECT_EQ(codes(h.send("hi\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
                         "DATA\r\nbody\r\n.\r\nQUIT\r\n")),
            (Strings{"250", "250", "250", "354", "250", "221"}));
  EXPECT_EQ(h.rec.bodies.size(), 2u);
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

TEST(SessionDiscipline, LockStepHeloClientIsServed) {
  Strict h;
  for (const char* cmd :
       {"HELO c\r\n", "MAIL FROM:<a@example.com>\r\n", "RCPT TO:<b@example.org>\r\n", "DATA\r\n",
        "Subject: x\r\n\r\nbody\r\n.\r\n", "NOOP\r\n", "QUIT\r\n"}) {
    EXPECT_EQ(codes(h.send(cmd)).size(), 1u) << cmd;
  }
  EXPECT_EQ(h.rec.bodies.size(), 1u);
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

TEST(SessionDiscipline, BodyAndWhatFollowsItAreNotCommandsSentAhead) {
  Strict h;
  h.send("HELO c\r\n");
  h.send("MAIL FROM:<a@example.com>\r\n");
  h.send("RCPT TO:<b@example.org>\r\n");
  // Data in the read after DATA's, and a command right behind the end of data:
  // what follows a body is judged by the body, not by DATA.
  EXPECT_EQ(codes(h.send("DATA\r\nbody\r\n.\r\nNOOP\r\n")), (Strings{"354", "250", "250"}));
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

TEST(SessionDiscipline, QuitSentAheadIsServed) {
  Strict h;
  h.send("HELO c\r\n");
  EXPECT_EQ(codes(h.send("RSET\r\nQUIT\r\n")), (Strings{"250", "221"}));
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

TEST(SessionDiscipline, TlsForgetsTheOffer) {
  ConnInfo info = Harness::default_info();
  info.tls_available = true;
  Harness h(kStrict, {}, info);
  h.take();
  h.send("EHLO c\r\n");
  h.send("STARTTLS\r\n");
  h.session.tls_started("TLS1_3", "TLS_AES_128_GCM_SHA256", h.now);
  EXPECT_EQ(codes(h.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n")), (Strings{"250", "554"}));
}

TEST(SessionDiscipline, UnofferedPipeliningIgnored) {
  SessionConfig cfg;
  cfg.unoffered_pipelining = UnofferedPipelining::ignore;
  Strict h(cfg);
  EXPECT_EQ(codes(h.send("HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")),
            (Strings{"250", "250", "250"}));
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

// ---- command lines that trickle in (slowloris) -------------------------------------------

TEST(SessionDiscipline, LineCompletedOneMillisecondBeforeTheDeadline) {
  Strict h;
  h.send("EHLO c\r\n");
  const int64_t t0 = h.now.mono_ms;
  h.send("MAIL FR");
  EXPECT_EQ(h.session.deadline_ms(), t0 + 10'000);
  h.now.mono_ms = t0 + 9'999;
  EXPECT_FALSE(h.session.on_timer(h.now));
  EXPECT_EQ(codes(h.send("OM:<a@example.com>\r\n")), Strings{"250"});
  // Nothing partial: the idle timeout again.
  EXPECT_EQ(h.session.deadline_ms(), h.now.mono_ms + 300'000);
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

TEST(SessionDiscipline, LineNotCompletedByTheDeadline) {
  Strict h;
  h.send("EHLO c\r\n");
  h.send("MAIL FROM:<a@example.com>\r\n");
  const int64_t t0 = h.now.mono_ms;
  h.send("R");
  h.now.mono_ms = t0 + 5'000;
  h.send("CPT TO:<b@exa");  // more octets do not move the line's deadline
  EXPECT_EQ(h.session.deadline_ms(), t0 + 10'000);
  h.now.mono_ms = t0 + 10'000;
  EXPECT_TRUE(h.session.on_timer(h.now));
  EXPECT_EQ(h.take(), kSlowReply);
  EXPECT_TRUE(h.session.closed());
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"slow_command@mail"});
}

TEST(SessionDiscipline, LineEndingAtTheDeadlineIsTooLate) {
  // The rest arrives before the owner's timer has run: the same outcome.
  Strict h;
  h.send("EHLO c\r\n");
  const int64_t t0 = h.now.mono_ms;
  h.send("NO");
  h.now.mono_ms = t0 + 10'000;
  EXPECT_EQ(h.send("OP\r\n"), kSlowReply);
  EXPECT_TRUE(h.session.closed());
  EXPECT_EQ(h.rec.protocol_rejects, Strings{"slow_command@helo"});
}

TEST(SessionDiscipline, LineSplitAcrossManyReadsWithinTheDeadline) {
  Strict h;
  h.send("EHLO c\r\n");
  const std::string line = "MAIL FROM:<a@example.com>\r\n";
  std::string out;
  for (char c : line) {
    out += h.send(std::string_view(&c, 1));
    h.now.mono_ms += 300;  // 27 octets, 8.1 s in all
  }
  EXPECT_EQ(codes(out), Strings{"250"});
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

TEST(SessionDiscipline, PauseBetweenCommandsIsOnlyTheIdleTimeout) {
  Strict h;
  h.send("EHLO c\r\n");
  EXPECT_EQ(h.session.deadline_ms(), h.now.mono_ms + 300'000);
  h.now.mono_ms += 40'000;
  EXPECT_FALSE(h.session.on_timer(h.now));
  EXPECT_EQ(codes(h.send("MAIL FROM:<a@example.com>\r\n")), Strings{"250"});
  h.now.mono_ms += 40'000;
  EXPECT_EQ(codes(h.send("RCPT TO:<b@example.org>\r\n")), Strings{"250"});
  EXPECT_FALSE(h.session.closed());
}

TEST(SessionDiscipline, MessageDataIsNotACommandLine) {
  SessionConfig cfg;
  cfg.limits.command_line_timeout_ms = 100;
  Strict h(cfg);
  h.send("EHLO c\r\n");
  h.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  h.send("Subject: slow");
  h.now.mono_ms += 1'000;
  EXPECT_EQ(h.session.deadline_ms(), h.now.mono_ms - 1'000 + 180'000);  // data_timeout_ms
  EXPECT_FALSE(h.session.on_timer(h.now));
  EXPECT_EQ(codes(h.send(" body\r\n.\r\n")), Strings{"250"});
}

TEST(SessionDiscipline, OverlongLineIsTimedToo) {
  SessionConfig cfg;
  cfg.limits.command_line_timeout_ms = 100;
  Strict h(cfg);
  h.send("EHLO c\r\n");
  const int64_t t0 = h.now.mono_ms;
  h.send(std::string(600, 'x'));  // past max_command_line: not kept, still timed
  EXPECT_EQ(h.session.deadline_ms(), t0 + 100);
  h.now.mono_ms = t0 + 100;
  EXPECT_TRUE(h.session.on_timer(h.now));
  EXPECT_EQ(h.take(), kSlowReply);
}

TEST(SessionDiscipline, IdleTimeoutIsNotASlowCommand) {
  Strict h;
  h.send("EHLO c\r\n");
  h.now.mono_ms += 300'000;
  EXPECT_TRUE(h.session.on_timer(h.now));
  EXPECT_EQ(h.take(), "421 4.4.2 localhost Error: timeout exceeded\r\n");
  EXPECT_TRUE(h.rec.protocol_rejects.empty());
}

TEST(SessionDiscipline, StageNamesWhereTheClientIs) {
  Strict h;
  EXPECT_EQ(h.session.stage(), "connect");
  h.send("EHLO c\r\n");
  EXPECT_EQ(h.session.stage(), "helo");
  h.send("MAIL FROM:<a@example.com>\r\n");
  EXPECT_EQ(h.session.stage(), "mail");
  h.send("RCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(h.session.stage(), "rcpt");
  h.send("DATA\r\n");
  EXPECT_EQ(h.session.stage(), "data");
  h.send(".\r\n");
  EXPECT_EQ(h.session.stage(), "helo");
}

}  // namespace
}  // namespace ringmx

namespace ringmx {
namespace {

// ---- the greeting teaser ("220-" sent by the owner before the delay) --------------

TEST(SessionTeaser, AcceptedConnectionCompletesTheReply) {
  test::Harness h(test::kStrict, SessionConfig{}, test::Harness::default_info(), false);
  h.session.set_teaser_sent();
  h.session.start(h.now);
  EXPECT_EQ(h.take().substr(0, 4), "220 ");  // the last line of the teaser's reply
}

TEST(SessionTeaser, RefusedConnectionAnswersEachCommandButQuit) {
  test::Harness h(test::kStrict, SessionConfig{}, test::Harness::default_info(), false);
  h.rec.pend_connect = true;
  h.session.set_teaser_sent();
  h.session.start(h.now);
  h.session.resume(Verdict::reject(554, "5.7.25", "Error: no PTR"), h.now);
  EXPECT_EQ(h.take(), "220 localhost ESMTP\r\n");  // one code per reply
  EXPECT_EQ(h.send("EHLO c\r\n"), "554 5.7.25 Error: no PTR\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<a@example.com>\r\n"), "554 5.7.25 Error: no PTR\r\n");
  EXPECT_EQ(h.send("QUIT\r\n").substr(0, 3), "221");
}

TEST(SessionTeaser, TemporaryRefusalClosesAtTheFirstCommand) {
  test::Harness h(test::kStrict, SessionConfig{}, test::Harness::default_info(), false);
  h.rec.pend_connect = true;
  h.session.set_teaser_sent();
  h.session.start(h.now);
  h.session.resume(Verdict::reject(421, "4.7.25", "Error: try later"), h.now);
  h.take();
  EXPECT_FALSE(h.session.closed());
  EXPECT_EQ(h.send("EHLO c\r\n"), "421 4.7.25 Error: try later\r\n");
  EXPECT_TRUE(h.session.closed());
}

}  // namespace
}  // namespace ringmx
