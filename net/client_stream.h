// One outbound connection on a ring, for every client ringmx runs: the
// daemon's relays (net/relay.cc), its milter links (net/milter_link.cc) and
// the load generator (bench/load_runner.cc). It owns the socket and the three operations that point
// at it — connect, a multishot recv taking its buffers from a provided-buffer
// ring (an idle connection holds none), and one send at a time of what its
// link (core/stream_link.h: an SMTP/LMTP client connection with PROXY and
// TLS, or a milter client) has to say — all tagged as open Completions
// (net/ring.h).
//
// The stream moves bytes and reports what happened to the link (connected,
// input fed, output consumed, connection lost with its kind); what follows
// (results, the next message, closing, timers) is the owner's, told through
// Owner::stream_event(). close() ends it: a connect in flight is cancelled,
// a recv ended by shutdown(2); the descriptor is closed and the owner told
// stream_released() once no operation points at the stream.
//
// Ring thread only.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "core/smtp_client.h"
#include "core/stream_link.h"
#include "net/buffer_ring.h"
#include "net/ring.h"

namespace ringmx {

// The kind of a failed connect, recv or send, from its -errno.
ErrorKind error_kind(int res, bool connecting);

class ClientStream {
 public:
  class Owner {
   public:
    // Connected, before the link hears of it (the load generator puts its
    // PROXY header in front here).
    virtual void stream_connected() {}
    // The link changed (connected, fed, or lost): look at it. The stream
    // may be closed from here.
    virtual void stream_event() = 0;
    // A send completed and the link consumed it (the stream sends what
    // follows by itself): by default, the same as stream_event().
    virtual void stream_sent() { stream_event(); }
    // The monotonic clock in ns, for the link's stamps (an owner with its
    // own reading of the clock passes that).
    virtual int64_t stream_now();
    // Closed, and no operation points at the stream any more: free it.
    virtual void stream_released() = 0;

   protected:
    Owner() = default;
    Owner(const Owner&) = default;
    Owner& operator=(const Owner&) = default;
    ~Owner() = default;
  };

  ClientStream(Ring& ring, ProvidedBufferRing& bufs, StreamLink& link, Owner& owner);
  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;
  ~ClientStream();

  // Takes `fd` (a stream socket) and connects it to `addr`, which must stay
  // valid until the connect completes.
  void connect(int fd, const sockaddr* addr, socklen_t len);
  // Sends what the link has to send, unless a send is in flight (the next
  // one starts when it completes).
  void flush();
  // Ends the connection (idempotent). stream_released() follows once no
  // operation is in flight: from here, or from the last completion.
  void close();

  // Keeps the stream (and so its owner) through a call that may close it.
  void hold() { ++ops_; }
  void release();

  int fd() const { return fd_; }
  bool connecting() const { return connecting_; }
  bool recv_armed() const { return recv_armed_; }
  bool eof() const { return eof_; }  // the peer's FIN arrived
  bool closed() const { return closed_; }
  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }

 private:
  struct Op final : Completion {
    ClientStream* s = nullptr;
    void (ClientStream::*fn)(int, uint32_t) = nullptr;
    void complete(int res, uint32_t flags) override { (s->*fn)(res, flags); }
  };
  void on_connect(int res, uint32_t flags);
  void on_recv(int res, uint32_t flags);
  void on_send(int res, uint32_t flags);
  void arm_recv();

  Ring& ring_;
  ProvidedBufferRing& bufs_;
  StreamLink& link_;
  Owner& owner_;
  Op connect_op_, recv_op_, send_op_;
  int fd_ = -1;
  uint32_t ops_ = 0;  // operations in flight, and holds
  bool connecting_ = false;
  bool recv_armed_ = false;
  bool send_busy_ = false;
  bool direct_ = false;  // the send in flight points into the link's output (a big body)
  bool eof_ = false;
  bool closed_ = false;
  bool released_ = false;
  // Small pieces of output gathered into one send (the link's own buffer
  // may move while a send is in flight; a big stable body is sent in place).
  std::string inflight_;
  size_t inflight_off_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

}  // namespace ringmx
