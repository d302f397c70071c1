// net/client_stream.h against real loopback sockets on a real ring: what the
// link hears (banner, refusal, FIN), what reaches the server, and that a
// stream is released exactly once, only when no operation points at it, with
// its socket closed.
#include "net/client_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>

#include "tests/unit/ring_loop.h"
#include "tls/client_connection.h"

namespace ringmx {
namespace {

struct Owner final : ClientStream::Owner {
  std::function<void()> on_event;
  int events = 0;
  int connected = 0;
  int released = 0;
  void stream_connected() override { ++connected; }
  void stream_event() override {
    ++events;
    if (on_event) on_event();
  }
  void stream_released() override { ++released; }
};

class ClientStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ring_.init(64, 256, 0);
    bufs_.setup(ring_.raw(), 8, 4096, 0);
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener_, 0);
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_), 0);
    socklen_t len = sizeof addr_;
    ASSERT_EQ(::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr_), &len), 0);
    ASSERT_EQ(::listen(listener_, 8), 0);
  }
  void TearDown() override {
    if (server_ >= 0) ::close(server_);
    if (listener_ >= 0) ::close(listener_);
  }

  // Submits, waits up to 10 ms for a completion, and hands every completion
  // that is there to its Completion.
  void pass() { test::pass_completions(ring_, 10'000'000); }
  // Runs the ring until `done`, at most 5 s.
  bool run_until(const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      pass();
    }
    return true;
  }

  int new_socket() { return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  void accept_client() {
    server_ = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(server_, 0);
  }
  void server_says(std::string_view s) const {
    ASSERT_EQ(::send(server_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // What the client sent, once `want` octets are there (or 2 s passed).
  std::string server_reads(size_t want) {
    std::string got;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (got.size() < want && std::chrono::steady_clock::now() < end) {
      pass();  // what the stream has to send goes out
      pollfd p{server_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      char buf[512];
      const ssize_t n = ::recv(server_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  static bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

  Ring ring_;
  ProvidedBufferRing bufs_;
  int listener_ = -1;
  int server_ = -1;
  sockaddr_in addr_{};
  ClientSettings settings_;
  TlsClientOptions tls_;  // plaintext (the link keeps a reference)
};

TEST_F(ClientStreamTest, CarriesTheDialogueBothWaysAndIsReleasedOnceAfterItsRecv) {
  ClientConnection link(settings_, tls_, 1);
  Owner owner;
  ClientStream stream(ring_, bufs_, link, owner);
  owner.on_event = [&] { stream.flush(); };
  const int fd = new_socket();
  stream.connect(fd, addr(), sizeof addr_);
  ASSERT_TRUE(run_until([&] { return owner.connected == 1; }));
  accept_client();
  server_says("220 mx.example.org ESMTP\r\n");
  EXPECT_EQ(server_reads(24), "EHLO bench.example.net\r\n");
  server_says("250 mx.example.org\r\n");
  ASSERT_TRUE(run_until([&] { return link.smtp().idle(); }));
  EXPECT_EQ(stream.bytes_in(), 46U);
  EXPECT_EQ(stream.bytes_out(), 24U);
  EXPECT_TRUE(stream.recv_armed());

  stream.close();
  EXPECT_TRUE(stream.closed());
  EXPECT_EQ(owner.released, 0);  // the recv still points at it
  EXPECT_TRUE(fd_open(fd));
  const int events = owner.events;
  ASSERT_TRUE(run_until([&] { return owner.released == 1; }));
  EXPECT_FALSE(fd_open(fd));
  EXPECT_EQ(owner.events, events);  // nothing reported after the close
  char c = 0;
  EXPECT_EQ(::recv(server_, &c, 1, 0), 0);  // the server sees the FIN
  stream.close();                           // again: nothing
  EXPECT_EQ(owner.released, 1);
}

TEST_F(ClientStreamTest, ARefusedConnectReachesTheLinkAsRefused) {
  ::close(listener_);  // nobody listens on that port any more
  listener_ = -1;
  ClientConnection link(settings_, tls_, 1);
  Owner owner;
  ClientStream stream(ring_, bufs_, link, owner);
  stream.connect(new_socket(), addr(), sizeof addr_);
  ASSERT_TRUE(run_until([&] { return link.smtp().closed(); }));
  EXPECT_EQ(link.smtp().setup_error(), ErrorKind::refused);
  EXPECT_EQ(owner.connected, 0);
  EXPECT_EQ(owner.events, 1);
  stream.close();
  EXPECT_EQ(owner.released, 1);  // nothing in flight: at once
}

TEST_F(ClientStreamTest, TheServersFinIsTheEndOfInput) {
  ClientConnection link(settings_, tls_, 1);
  Owner owner;
  ClientStream stream(ring_, bufs_, link, owner);
  stream.connect(new_socket(), addr(), sizeof addr_);
  ASSERT_TRUE(run_until([&] { return owner.connected == 1; }));
  accept_client();
  ::close(server_);
  server_ = -1;
  ASSERT_TRUE(run_until([&] { return stream.eof(); }));
  EXPECT_FALSE(stream.recv_armed());
  EXPECT_TRUE(link.smtp().closed());
  EXPECT_EQ(link.smtp().setup_error(), ErrorKind::closed);
  stream.close();
  EXPECT_EQ(owner.released, 1);
}

TEST_F(ClientStreamTest, ClosedWhileConnectingIsReleasedOnceTheConnectEnds) {
  ClientConnection link(settings_, tls_, 1);
  Owner owner;
  ClientStream stream(ring_, bufs_, link, owner);
  const int fd = new_socket();
  stream.connect(fd, addr(), sizeof addr_);
  stream.close();  // the connect is not even submitted yet: it is cancelled after it
  EXPECT_EQ(owner.released, 0);
  ASSERT_TRUE(run_until([&] { return owner.released == 1; }));
  EXPECT_FALSE(fd_open(fd));
  EXPECT_EQ(owner.events, 0);  // a closed stream reports nothing
  EXPECT_EQ(owner.connected, 0);
}

TEST_F(ClientStreamTest, AHeldStreamIsReleasedByTheLastRelease) {
  ClientConnection link(settings_, tls_, 1);
  Owner owner;
  ClientStream stream(ring_, bufs_, link, owner);
  stream.hold();
  stream.close();
  EXPECT_EQ(owner.released, 0);
  stream.release();
  EXPECT_EQ(owner.released, 1);
}

}  // namespace
}  // namespace ringmx
