// Contract: ClientConnection, the load generator's connection without I/O,
// against a scripted SMTP server in memory that runs our own TlsSession server
// side: STARTTLS (EHLO, STARTTLS, handshake, EHLO again, mail inside TLS), a
// server without STARTTLS (the set-up fails as `unsupported`, no mail in
// plaintext), bytes injected behind the 220 (protocol error), implicit TLS
// with a PROXY header in front of the ClientHello, TLS 1.2 when asked, and a
// saved session offered on the next connection (resumed). The certificate is
// made at test time with openssl in a mkdtemp directory.
#include "tls/client_connection.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

#include "bench/message_gen.h"
#include "tls/tls_context.h"
#include "tls/tls_session.h"

namespace ringmx::bench {
namespace {

namespace fs = std::filesystem;

// An SMTP server in memory: plaintext until STARTTLS (or TLS from the first
// byte), then everything through a server TlsSession.
class FakeMx {
 public:
  struct Options {
    static Options no_starttls() {
      Options o;
      o.offer_starttls = false;
      return o;
    }
    static Options injecting() {
      Options o;
      o.inject_after_220 = true;
      return o;
    }
    static Options tls_first(std::string preamble = {}) {
      Options o;
      o.implicit = true;
      o.preamble = std::move(preamble);
      return o;
    }
    bool offer_starttls = true;
    bool implicit = false;
    std::string preamble;  // expected before anything else (PROXY header)
    bool inject_after_220 = false;
  };

  FakeMx(Options o, std::shared_ptr<const TlsServerContext> ctx)
      : o_(std::move(o)), ctx_(std::move(ctx)) {
    if (o_.implicit) {
      tls_.emplace(ctx_);
    } else {
      plain_out_ = "220 mx.test ESMTP\r\n";
    }
  }

  void receive(std::string_view raw) {
    if (preamble_seen_.size() < o_.preamble.size()) {
      const size_t n = std::min(raw.size(), o_.preamble.size() - preamble_seen_.size());
      preamble_seen_.append(raw.substr(0, n));
      raw.remove_prefix(n);
    }
    if (raw.empty()) return;
    if (!tls_) return lines(raw);
    if (first_tls_byte_ < 0) first_tls_byte_ = static_cast<unsigned char>(raw[0]);
    tls_->feed_ciphertext(raw);
    if (!tls_->handshake_done()) {
      const HandshakeResult hs = tls_->handshake();
      ASSERT_FALSE(hs.failed()) << hs.reason;
      if (!hs.done()) return;
      if (o_.implicit) reply("220 mx.test ESMTP\r\n");
    }
    std::string plain;
    const ReadResult r = tls_->read_plaintext(plain);
    ASSERT_NE(r.status, ReadResult::Status::failed) << r.reason;
    lines(plain);
  }

  std::string take_output() {
    std::string out;
    out.swap(plain_out_);
    if (tls_) {
      out.append(tls_->pending_ciphertext());
      tls_->consume_ciphertext(tls_->pending_ciphertext().size());
    }
    return out;
  }

  const std::string& before_tls() const { return before_tls_; }
  const std::string& inside_tls() const { return inside_tls_; }
  const std::string& preamble_seen() const { return preamble_seen_; }
  int first_tls_byte() const { return first_tls_byte_; }
  bool resumed() const { return tls_ && tls_->resumed(); }
  std::string version() const { return tls_ ? std::string(tls_->version()) : std::string(); }

 private:
  void reply(std::string_view text) {
    if (tls_ && tls_->handshake_done()) {
      ASSERT_TRUE(tls_->write_plaintext(text));
    } else {
      plain_out_.append(text);
    }
  }

  void lines(std::string_view bytes) {
    in_.append(bytes);
    size_t nl = 0;
    while ((nl = in_.find("\r\n")) != std::string::npos) {
      const std::string line = in_.substr(0, nl);
      in_.erase(0, nl + 2);
      (tls_ ? inside_tls_ : before_tls_) += line + "\n";
      command(line);
    }
  }

  void command(const std::string& line) {
    if (in_data_) {
      if (line == ".") {
        in_data_ = false;
        reply("250 2.0.0 queued\r\n");
      }
      return;
    }
    const std::string verb = line.substr(0, 4);
    if (verb == "EHLO") {
      reply(std::string("250-mx.test\r\n250-PIPELINING\r\n") +
            (o_.offer_starttls && !tls_ ? "250-STARTTLS\r\n" : "") + "250 8BITMIME\r\n");
    } else if (verb == "STAR") {
      reply(o_.inject_after_220 ? "220 go ahead\r\n250 injected\r\n" : "220 go ahead\r\n");
      tls_.emplace(ctx_);
    } else if (verb == "MAIL" || verb == "RCPT") {
      reply("250 ok\r\n");
    } else if (verb == "DATA") {
      in_data_ = true;
      reply("354 go on\r\n");
    } else if (verb == "QUIT") {
      reply("221 bye\r\n");
    } else {
      reply("500 what\r\n");
    }
  }

  Options o_;
  std::shared_ptr<const TlsServerContext> ctx_;
  std::optional<TlsSession> tls_;
  std::string plain_out_;
  std::string in_;
  bool in_data_ = false;
  std::string before_tls_;
  std::string inside_tls_;
  std::string preamble_seen_;
  int first_tls_byte_ = -1;
};

// Moves bytes both ways until neither side has anything to say.
void pump(ClientConnection& c, FakeMx& mx, int64_t& now) {
  for (int round = 0; round < 100; ++round) {
    const std::string to_server(c.output());
    c.consume_output(to_server.size());
    if (!to_server.empty()) mx.receive(to_server);
    const std::string to_client = mx.take_output();
    if (!to_client.empty()) c.feed(to_client, ++now);
    if (to_server.empty() && to_client.empty()) return;
  }
  ADD_FAILURE() << "the conversation did not settle";
}

class BenchClientConnection : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = (fs::temp_directory_path() / "ringmx-bench-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    const std::string d = dir_.string();
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=test "
        "-days 2 -keyout " +
        d + "/key.pem -out " + d + "/cert.pem >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed");
    TlsServerConfig config;
    config.cert_chain_file = d + "/cert.pem";
    config.key_file = d + "/key.pem";
    server_ = TlsServerContext::create(config);
  }
  static void TearDownTestSuite() {
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static TlsClientOptions options(TlsMode mode, TlsVersion max = TlsVersion::tls1_3) {
    TlsClientConfig config;
    config.max_version = max;
    return {mode, TlsClientContext::create(config), "mx.test"};
  }

  // Sends one message on a ready connection and QUITs; true if it was accepted.
  static bool one_message(ClientConnection& c, FakeMx& mx, int64_t& now) {
    const std::string stuffed = dot_stuff(make_message(1, 1024)) + ".\r\n";
    c.smtp().start_message(7, {stuffed, {}}, SmtpClient::kIntendedAtStart, ++now);
    pump(c, mx, now);
    const auto r = c.smtp().take_result();
    c.smtp().quit(++now);
    pump(c, mx, now);
    EXPECT_TRUE(c.smtp().closed());
    return r && r->ok() && r->code == 250;
  }

  static inline fs::path dir_;
  static inline std::shared_ptr<const TlsServerContext> server_;
  ClientSettings settings_;
  int64_t now_ = 1;
};

TEST_F(BenchClientConnection, StartTlsHandshakesThenSaysEhloAgainInsideTls) {
  settings_.starttls = true;
  const TlsClientOptions tls = options(TlsMode::starttls);
  ClientConnection c(settings_, tls, now_);
  FakeMx mx({}, server_);
  c.connected(++now_);
  pump(c, mx, now_);
  ASSERT_TRUE(c.smtp().idle());
  EXPECT_EQ(c.handshake_state(), ClientConnection::Handshake::done);
  EXPECT_GT(c.handshake_done_ns(), c.handshake_started_ns());
  EXPECT_GT(c.handshake_started_ns(), c.smtp().banner_ns());
  EXPECT_EQ(c.tls_version(), "TLS1_3");
  EXPECT_FALSE(c.resumed());
  EXPECT_TRUE(c.smtp().tls_active());
  EXPECT_EQ(mx.before_tls(), "EHLO bench.example.net\nSTARTTLS\n");
  EXPECT_EQ(mx.inside_tls(), "EHLO bench.example.net\n");
  EXPECT_TRUE(one_message(c, mx, now_));
  EXPECT_EQ(mx.before_tls(), "EHLO bench.example.net\nSTARTTLS\n");  // no mail in plaintext
  EXPECT_NE(mx.inside_tls().find("MAIL FROM:<bench@example.net>\n"), std::string::npos);
  EXPECT_NE(mx.inside_tls().find("QUIT\n"), std::string::npos);
}

TEST_F(BenchClientConnection, ServerWithoutStartTlsFailsAsUnsupportedWithoutMail) {
  settings_.starttls = true;
  const TlsClientOptions tls = options(TlsMode::starttls);
  ClientConnection c(settings_, tls, now_);
  FakeMx mx(FakeMx::Options::no_starttls(), server_);
  c.connected(++now_);
  pump(c, mx, now_);
  EXPECT_TRUE(c.smtp().closed());
  EXPECT_FALSE(c.smtp().ready_seen());
  EXPECT_EQ(c.smtp().setup_error(), ErrorKind::unsupported);
  EXPECT_EQ(c.handshake_state(), ClientConnection::Handshake::none);
  EXPECT_EQ(mx.before_tls(), "EHLO bench.example.net\nQUIT\n");
}

TEST_F(BenchClientConnection, BytesBehindThe220AreAProtocolError) {
  settings_.starttls = true;
  const TlsClientOptions tls = options(TlsMode::starttls);
  ClientConnection c(settings_, tls, now_);
  FakeMx mx(FakeMx::Options::injecting(), server_);
  c.connected(++now_);
  pump(c, mx, now_);
  EXPECT_TRUE(c.smtp().closed());
  EXPECT_EQ(c.smtp().setup_error(), ErrorKind::protocol);
  EXPECT_EQ(c.handshake_state(), ClientConnection::Handshake::none);
}

TEST_F(BenchClientConnection, ImplicitTlsWithProxyHeaderFirst) {
  const TlsClientOptions tls = options(TlsMode::implicit);
  ClientConnection c(settings_, tls, now_);
  const std::string header = "PROXY TCP4 10.1.2.3 127.0.0.1 40000 465\r\n";
  FakeMx mx(FakeMx::Options::tls_first(header), server_);
  c.set_preamble(header);
  EXPECT_FALSE(c.output_stable());
  c.connected(++now_);
  EXPECT_EQ(c.handshake_state(), ClientConnection::Handshake::running);
  pump(c, mx, now_);
  EXPECT_EQ(mx.preamble_seen(), header);
  EXPECT_EQ(mx.first_tls_byte(), 0x16);  // a handshake record right behind the header
  ASSERT_TRUE(c.smtp().idle());
  EXPECT_EQ(c.handshake_state(), ClientConnection::Handshake::done);
  // The handshake was over before the banner came.
  EXPECT_LE(c.handshake_done_ns(), c.smtp().banner_ns());
  EXPECT_EQ(mx.before_tls(), "");
  EXPECT_TRUE(one_message(c, mx, now_));
}

TEST_F(BenchClientConnection, Tls12WhenAskedFor) {
  const TlsClientOptions tls = options(TlsMode::implicit, TlsVersion::tls1_2);
  ClientConnection c(settings_, tls, now_);
  FakeMx mx(FakeMx::Options::tls_first(), server_);
  c.connected(++now_);
  pump(c, mx, now_);
  ASSERT_TRUE(c.smtp().idle());
  EXPECT_EQ(c.tls_version(), "TLS1_2");
  EXPECT_EQ(mx.version(), "TLS1_2");
}

TEST_F(BenchClientConnection, SavedSessionIsResumedOnTheNextConnection) {
  settings_.starttls = true;
  const TlsClientOptions tls = options(TlsMode::starttls);
  std::shared_ptr<const TlsSavedSession> saved;
  {
    ClientConnection c(settings_, tls, now_);
    FakeMx mx({}, server_);
    EXPECT_EQ(c.saved_session(), nullptr);  // nothing before the handshake
    c.connected(++now_);
    pump(c, mx, now_);
    ASSERT_TRUE(c.smtp().idle());
    EXPECT_FALSE(c.resumed());
    saved = c.saved_session();
    ASSERT_NE(saved, nullptr);
    EXPECT_TRUE(one_message(c, mx, now_));
  }
  ClientConnection again(settings_, tls, now_, saved);
  FakeMx mx({}, server_);
  again.connected(++now_);
  pump(again, mx, now_);
  ASSERT_TRUE(again.smtp().idle());
  EXPECT_TRUE(again.resumed());
  EXPECT_TRUE(mx.resumed());
  const auto chained = again.saved_session();
  EXPECT_TRUE(one_message(again, mx, now_));
  // The session of a resumed connection resumes too (against this server).
  ClientConnection third(settings_, tls, now_, chained);
  FakeMx mx3({}, server_);
  third.connected(++now_);
  pump(third, mx3, now_);
  ASSERT_TRUE(third.smtp().idle());
  EXPECT_TRUE(third.resumed());
}

TEST_F(BenchClientConnection, NoTlsPassesBytesThrough) {
  const TlsClientOptions tls;
  ClientConnection c(settings_, tls, now_);
  FakeMx mx(FakeMx::Options::no_starttls(), server_);
  c.connected(++now_);
  pump(c, mx, now_);
  ASSERT_TRUE(c.smtp().idle());
  EXPECT_EQ(c.handshake_state(), ClientConnection::Handshake::none);
  EXPECT_EQ(c.saved_session(), nullptr);
  EXPECT_TRUE(one_message(c, mx, now_));
  EXPECT_NE(mx.before_tls().find("DATA\n"), std::string::npos);
}

// Only a big body the caller keeps is stable output (sent without a copy);
// the client's own commands are not.
TEST_F(BenchClientConnection, OnlyAReferencedBodyIsStableOutput) {
  const TlsClientOptions tls;
  ClientConnection c(settings_, tls, now_);
  FakeMx mx(FakeMx::Options::no_starttls(), server_);
  c.connected(++now_);
  pump(c, mx, now_);
  ASSERT_TRUE(c.smtp().idle());
  const std::string stuffed = dot_stuff(make_message(2, SmtpClient::kCopyBelow * 2)) + ".\r\n";
  c.smtp().start_message(9, {stuffed, {}}, SmtpClient::kIntendedAtStart, ++now_);
  const std::string commands(c.output());
  EXPECT_FALSE(c.output_stable());
  c.consume_output(commands.size());
  mx.receive(commands);
  c.feed(mx.take_output(), ++now_);  // 250, 250, 354
  EXPECT_TRUE(c.output_stable());
  EXPECT_EQ(c.output().data(), stuffed.data());
  pump(c, mx, now_);
  const auto r = c.smtp().take_result();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
}

}  // namespace
}  // namespace ringmx::bench
