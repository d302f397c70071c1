// Dovecot's authentication protocol, client side (core/dovecot_auth.h),
// against scripted server lines.
#include "core/dovecot_auth.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmx::dovecot {
namespace {

constexpr std::string_view kHandshake =
    "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t4242\nCUID\t7\n"
    "COOKIE\t0123456789abcdef0123456789abcdef\nDONE\n";

std::string b64(std::string_view s) {
  std::string out;
  sasl::base64_encode(s, out);
  return out;
}

Request request(sasl::Mechanism m = sasl::Mechanism::plain, std::string user = "alice",
                std::string password = "s3cret") {
  Request r;
  r.mechanism = m;
  r.credentials.user = std::move(user);
  r.credentials.password = std::move(password);
  r.local_ip = "127.0.0.1";
  r.local_port = 587;
  r.remote_ip = "192.0.2.7";
  r.remote_port = 40000;
  return r;
}

std::string drain(AuthClient& c) {
  std::string out(c.output());
  c.consume_output(out.size());
  return out;
}

TEST(DovecotAuth, HandshakeThenPlain) {
  AuthClient c("smtp", 99, 10);
  c.connected(0);
  EXPECT_EQ(drain(c), "VERSION\t1\t2\nCPID\t99\n");
  // Asked before the handshake ends: held until DONE.
  const uint32_t id = c.begin(request());
  ASSERT_NE(id, 0u);
  EXPECT_EQ(drain(c), "");
  c.feed(kHandshake, 0);
  EXPECT_EQ(c.state(), AuthClient::State::ready);
  EXPECT_TRUE(c.offers(sasl::Mechanism::login));
  EXPECT_EQ(
      drain(c),
      "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tno-penalty\tsecured\tlip=127.0.0.1\trip=192.0.2.7"
      "\tlport=587\trport=40000\tresp=" +
          b64(std::string_view("\0alice\0s3cret", 13)) + "\n");
  c.feed("OK\t1\tuser=alice@example.com\n", 0);
  ASSERT_EQ(c.results().size(), 1u);
  EXPECT_EQ(c.results()[0].id, id);
  EXPECT_EQ(c.results()[0].outcome, Outcome::ok);
  EXPECT_EQ(c.results()[0].user, "alice@example.com");
  EXPECT_EQ(c.pending(), 0u);
}

TEST(DovecotAuth, FailAndTemporaryFail) {
  AuthClient c("submission", 1, 10);
  c.connected(0);
  c.feed(kHandshake, 0);
  drain(c);
  const uint32_t a = c.begin(request());
  const uint32_t b = c.begin(request(sasl::Mechanism::plain, "bob", "pw"));
  const uint32_t d = c.begin(request(sasl::Mechanism::plain, "carol", "pw"));
  EXPECT_NE(drain(c).find("service=submission"), std::string::npos);
  // Answers may come in any order.
  c.feed("FAIL\t" + std::to_string(b) + "\tuser=bob\treason=Password\001tmismatch\n", 0);
  c.feed("FAIL\t" + std::to_string(a) + "\ttemp\n", 0);
  c.feed("FAIL\t" + std::to_string(d) + "\tcode=temp_fail\n", 0);
  ASSERT_EQ(c.results().size(), 3u);
  EXPECT_EQ(c.results()[0].id, b);
  EXPECT_EQ(c.results()[0].outcome, Outcome::fail);
  EXPECT_EQ(c.results()[0].reason, "Password\tmismatch");
  EXPECT_EQ(c.results()[1].outcome, Outcome::temp_fail);
  EXPECT_EQ(c.results()[2].outcome, Outcome::temp_fail);
}

TEST(DovecotAuth, LoginThroughContinuations) {
  AuthClient c("smtp", 1, 10);
  c.connected(0);
  c.feed(kHandshake, 0);
  drain(c);
  const uint32_t id = c.begin(request(sasl::Mechanism::login));
  const std::string sent = drain(c);
  EXPECT_NE(sent.find("\tLOGIN\t"), std::string::npos);
  EXPECT_EQ(sent.find("resp="), std::string::npos);
  const std::string n = std::to_string(id);
  c.feed("CONT\t" + n + "\tVXNlcm5hbWU6\n", 0);
  EXPECT_EQ(drain(c), "CONT\t" + n + "\t" + b64("alice") + "\n");
  c.feed("CONT\t" + n + "\tUGFzc3dvcmQ6\n", 0);
  EXPECT_EQ(drain(c), "CONT\t" + n + "\t" + b64("s3cret") + "\n");
  // A third round is not LOGIN: the request fails, the link goes on.
  c.feed("CONT\t" + n + "\tPz8=\n", 0);
  ASSERT_EQ(c.results().size(), 1u);
  EXPECT_EQ(c.results()[0].outcome, Outcome::temp_fail);
  EXPECT_EQ(c.state(), AuthClient::State::ready);
}

TEST(DovecotAuth, LoginGoesAsPlainWhereLoginIsNotOffered) {
  AuthClient c("smtp", 1, 10);
  c.connected(0);
  c.feed("VERSION\t1\t2\nMECH\tPLAIN\nDONE\n", 0);
  drain(c);
  c.begin(request(sasl::Mechanism::login));
  EXPECT_NE(drain(c).find("\tPLAIN\t"), std::string::npos);
}

TEST(DovecotAuth, CancelledAnswersAreDropped) {
  AuthClient c("smtp", 1, 10);
  c.connected(0);
  c.feed(kHandshake, 0);
  const uint32_t id = c.begin(request());
  c.cancel(id);
  EXPECT_EQ(c.pending(), 0u);
  c.feed("OK\t" + std::to_string(id) + "\tuser=alice\n", 0);
  c.feed("OK\t999\n", 0);  // never ours
  EXPECT_TRUE(c.results().empty());
  EXPECT_EQ(c.state(), AuthClient::State::ready);
}

TEST(DovecotAuth, MaxPendingBound) {
  AuthClient c("smtp", 1, 2);
  EXPECT_NE(c.begin(request()), 0u);
  EXPECT_NE(c.begin(request()), 0u);
  EXPECT_EQ(c.begin(request()), 0u);
  EXPECT_EQ(c.pending(), 2u);
}

TEST(DovecotAuth, ProtocolErrorsFailEverythingWaiting) {
  const std::string_view bad[] = {
      "VERSION\t2\t0\n",                        // another major version
      "MECH\tPLAIN\nDONE\n",                    // no VERSION
      "VERSION\t1\t2\nMECH\tCRAM-MD5\nDONE\n",  // nothing we can use
  };
  for (std::string_view b : bad) {
    AuthClient c("smtp", 1, 10);
    c.connected(0);
    c.begin(request());
    c.feed(b, 0);
    EXPECT_TRUE(c.failed()) << b;
    ASSERT_EQ(c.results().size(), 1u) << b;
    EXPECT_EQ(c.results()[0].outcome, Outcome::temp_fail);
    EXPECT_EQ(c.begin(request()), 0u);  // a failed link takes nothing more
  }
  AuthClient c("smtp", 1, 10);
  c.connected(0);
  c.feed(kHandshake, 0);
  c.begin(request());
  c.feed("OK\tnot-a-number\n", 0);
  EXPECT_TRUE(c.failed());
}

TEST(DovecotAuth, LineLengthBound) {
  AuthClient c("smtp", 1, 10);
  c.connected(0);
  c.feed(kHandshake, 0);
  c.begin(request());
  c.feed("FAIL\t1\treason=" + std::string(kMaxLine - 20, 'x'), 0);
  EXPECT_FALSE(c.failed());  // at the bound, not past it
  c.feed(std::string(100, 'x'), 0);
  EXPECT_TRUE(c.failed());
  ASSERT_EQ(c.results().size(), 1u);
  EXPECT_EQ(c.results()[0].outcome, Outcome::temp_fail);
}

TEST(DovecotAuth, ServerLinesSplitAtEveryOctet) {
  const std::string script = std::string(kHandshake) + "OK\t1\tuser=al\001tice\nFAIL\t2\n";
  for (size_t cut = 1; cut < script.size(); ++cut) {
    AuthClient c("smtp", 1, 10);
    c.connected(0);
    c.begin(request());
    c.begin(request());
    c.feed(std::string_view(script).substr(0, cut), 0);
    c.feed(std::string_view(script).substr(cut), 0);
    ASSERT_EQ(c.results().size(), 2u) << cut;
    EXPECT_EQ(c.results()[0].user, "al\tice");
    EXPECT_EQ(c.results()[1].outcome, Outcome::fail);
  }
}

TEST(DovecotAuth, LinkLostAnswersTemporaryFailure) {
  AuthClient c("smtp", 1, 10);
  c.begin(request());
  c.connection_lost(ErrorKind::connect, 0);
  ASSERT_EQ(c.results().size(), 1u);
  EXPECT_EQ(c.results()[0].outcome, Outcome::temp_fail);
  EXPECT_EQ(c.results()[0].reason, "cannot connect");
}

TEST(DovecotAuth, TabUnescape) {
  EXPECT_EQ(tab_unescape("a\001tb\001nc\001rd\0011e\001lf"), "a\tb\nc\rd\001e\nf");
  EXPECT_EQ(tab_unescape(std::string_view("x\0010", 3)), std::string("x\0", 2));
  EXPECT_EQ(tab_unescape("end\001"), "end\001");
}

}  // namespace
}  // namespace ringmx::dovecot
