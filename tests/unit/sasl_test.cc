// SASL PLAIN and LOGIN decoding (core/sasl.h) and base64.
#include "core/sasl.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmx::sasl {
namespace {

using Kind = ServerExchange::Step::Kind;

std::string b64(std::string_view s) {
  std::string out;
  base64_encode(s, out);
  return out;
}

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> v[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, coded] : v) {
    EXPECT_EQ(b64(plain), coded);
    std::string back;
    ASSERT_TRUE(base64_decode(coded, back)) << coded;
    EXPECT_EQ(back, plain);
  }
}

TEST(Base64, EveryOctetRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 7) {
    std::string back;
    ASSERT_TRUE(base64_decode(b64(all.substr(0, n)), back));
    EXPECT_EQ(back, all.substr(0, n));
  }
}

TEST(Base64, RefusesWhatIsNotStrictBase64) {
  std::string out;
  for (std::string_view bad : {"Zg", "Zg=", "Zm9", "Z===", "Zg==Zg==", "Zm9v\r", " Zm9v", "Zm 9v",
                               "Zm9v-A==", "Zh==", "Zm9=", "=Zm9", "Zm=v", "Zm9v_", "Zm9v\n"}) {
    EXPECT_FALSE(base64_decode(bad, out)) << bad;
  }
}

TEST(SaslMechanism, NamesAnyCase) {
  EXPECT_EQ(parse_mechanism("plain"), Mechanism::plain);
  EXPECT_EQ(parse_mechanism("LOGIN"), Mechanism::login);
  EXPECT_EQ(parse_mechanism("Login"), Mechanism::login);
  EXPECT_FALSE(parse_mechanism("CRAM-MD5"));
  EXPECT_FALSE(parse_mechanism("PLAINX"));
  EXPECT_FALSE(parse_mechanism(""));
  EXPECT_EQ(mechanism_name(Mechanism::plain), "PLAIN");
}

TEST(SaslPlain, InitialResponse) {
  ServerExchange x;
  const std::string ir = b64(std::string_view("\0alice\0s3cret", 13));
  auto s = x.start(Mechanism::plain, ir);
  ASSERT_EQ(s.kind, Kind::done);
  EXPECT_EQ(x.credentials().user, "alice");
  EXPECT_EQ(x.credentials().password, "s3cret");
  EXPECT_EQ(x.credentials().authzid, "");
  x.wipe();
  EXPECT_EQ(x.credentials().password, "");
}

TEST(SaslPlain, ContinuationAndAuthzid) {
  ServerExchange x;
  auto s = x.start(Mechanism::plain, std::nullopt);
  ASSERT_EQ(s.kind, Kind::challenge);
  EXPECT_EQ(s.challenge, "");  // RFC 4616: an empty challenge
  s = x.respond(b64(std::string_view("bob\0alice\0pw", 12)));
  ASSERT_EQ(s.kind, Kind::done);
  EXPECT_EQ(x.credentials().authzid, "bob");
  EXPECT_EQ(x.credentials().user, "alice");
}

TEST(SaslPlain, EmptyInitialResponseAsksForTheCredentials) {
  ServerExchange x;
  // "=" is a zero-length initial response: PLAIN cannot use it.
  auto s = x.start(Mechanism::plain, "=");
  EXPECT_EQ(s.kind, Kind::error);
  EXPECT_EQ(s.code, 501);
}

TEST(SaslPlain, MalformedResponses) {
  const std::string_view bad[] = {
      std::string_view("alice\0pw", 8),        // one NUL
      std::string_view("\0\0pw", 4),           // no user
      std::string_view("\0alice\0", 7),        // no password
      std::string_view("\0alice\0pw\0x", 11),  // a third NUL
      "nothing",
  };
  for (std::string_view d : bad) {
    ServerExchange x;
    auto s = x.start(Mechanism::plain, b64(d));
    EXPECT_EQ(s.kind, Kind::error);
    EXPECT_EQ(s.code, 501);
    EXPECT_EQ(s.enhanced, "5.5.2");
    EXPECT_TRUE(x.credentials().user.empty());
  }
}

TEST(SaslPlain, BadBase64AndCancel) {
  ServerExchange x;
  auto s = x.start(Mechanism::plain, "not*base64");
  EXPECT_EQ(s.kind, Kind::error);
  EXPECT_EQ(s.code, 501);
  s = x.start(Mechanism::plain, std::nullopt);
  s = x.respond("*");
  EXPECT_EQ(s.kind, Kind::error);
  EXPECT_EQ(s.code, 501);
  EXPECT_EQ(s.enhanced, "5.0.0");
}

TEST(SaslPlain, CredentialsAtTheBound) {
  const std::string at(kMaxCredential, 'u');
  const std::string over(kMaxCredential + 1, 'u');
  ServerExchange x;
  EXPECT_EQ(x.start(Mechanism::plain, b64(std::string(1, '\0') + at + '\0' + at)).kind, Kind::done);
  EXPECT_EQ(x.credentials().user.size(), kMaxCredential);
  EXPECT_EQ(x.start(Mechanism::plain, b64(std::string(1, '\0') + over + '\0' + "pw")).kind,
            Kind::error);
  EXPECT_EQ(x.start(Mechanism::plain, b64(std::string(1, '\0') + "u" + '\0' + over)).kind,
            Kind::error);
}

TEST(SaslLogin, TwoPrompts) {
  ServerExchange x;
  auto s = x.start(Mechanism::login, std::nullopt);
  ASSERT_EQ(s.kind, Kind::challenge);
  std::string prompt;
  ASSERT_TRUE(base64_decode(s.challenge, prompt));
  EXPECT_EQ(prompt, "Username:");
  s = x.respond(b64("alice"));
  ASSERT_EQ(s.kind, Kind::challenge);
  ASSERT_TRUE(base64_decode(s.challenge, prompt));
  EXPECT_EQ(prompt, "Password:");
  s = x.respond(b64("pw"));
  ASSERT_EQ(s.kind, Kind::done);
  EXPECT_EQ(x.credentials().user, "alice");
  EXPECT_EQ(x.credentials().password, "pw");
  EXPECT_EQ(x.mechanism(), Mechanism::login);
}

TEST(SaslLogin, InitialResponseIsTheUser) {
  ServerExchange x;
  auto s = x.start(Mechanism::login, b64("alice"));
  ASSERT_EQ(s.kind, Kind::challenge);
  s = x.respond(b64("pw"));
  ASSERT_EQ(s.kind, Kind::done);
  EXPECT_EQ(x.credentials().user, "alice");
}

TEST(SaslLogin, EmptyOrNulFieldsAndCancelAtThePassword) {
  ServerExchange x;
  EXPECT_EQ(x.start(Mechanism::login, "=").kind, Kind::error);
  x.start(Mechanism::login, std::nullopt);
  EXPECT_EQ(x.respond(b64(std::string_view("a\0b", 3))).kind, Kind::error);
  x.start(Mechanism::login, std::nullopt);
  x.respond(b64("alice"));
  EXPECT_EQ(x.respond("").kind, Kind::error);  // an empty password
  x.start(Mechanism::login, std::nullopt);
  x.respond(b64("alice"));
  auto s = x.respond("*");
  EXPECT_EQ(s.code, 501);
  EXPECT_TRUE(x.credentials().user.empty());  // the cancel wiped what was given
}

}  // namespace
}  // namespace ringmx::sasl
