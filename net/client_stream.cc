// Contract: see client_stream.h. Every completion handler holds the stream
// while it runs, so an owner that closes it from stream_event() never frees
// it under the handler's feet.
#include "net/client_stream.h"

#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace ringmx {

int64_t ClientStream::Owner::stream_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

ErrorKind error_kind(int res, bool connecting) {
  switch (-res) {
    case ECONNREFUSED: return ErrorKind::refused;
    case ETIMEDOUT:
    case ECANCELED: return ErrorKind::timeout;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED: return ErrorKind::reset;
    default: return connecting ? ErrorKind::connect : ErrorKind::reset;
  }
}

ClientStream::ClientStream(Ring& ring, ProvidedBufferRing& bufs, StreamLink& link, Owner& owner)
    : ring_(ring), bufs_(bufs), link_(link), owner_(owner) {
  connect_op_.s = recv_op_.s = send_op_.s = this;
  connect_op_.fn = &ClientStream::on_connect;
  recv_op_.fn = &ClientStream::on_recv;
  send_op_.fn = &ClientStream::on_send;
}

ClientStream::~ClientStream() {
  if (fd_ >= 0) ::close(fd_);
}

void ClientStream::connect(int fd, const sockaddr* addr, socklen_t len) {
  fd_ = fd;
  connecting_ = true;
  ++ops_;
  ring_.prep(1, [this, addr, len](io_uring_sqe** s) {
    io_uring_prep_connect(s[0], fd_, addr, len);
    io_uring_sqe_set_data64(s[0], completion_tag(&connect_op_));
  });
}

void ClientStream::on_connect(int res, uint32_t /*flags*/) {
  connecting_ = false;  // the op's count is the handler's hold until release()
  if (closed_) return release();
  if (res < 0) {
    link_.connection_lost(error_kind(res, true), owner_.stream_now());
  } else {
    owner_.stream_connected();
    link_.connected(owner_.stream_now());
    arm_recv();
  }
  owner_.stream_event();
  release();
}

void ClientStream::arm_recv() {
  if (recv_armed_ || closed_) return;
  recv_armed_ = true;
  ++ops_;
  ring_.prep(1, [this](io_uring_sqe** s) {
    bufs_.prep_recv_multishot(s[0], fd_);
    io_uring_sqe_set_data64(s[0], completion_tag(&recv_op_));
  });
}

void ClientStream::on_recv(int res, uint32_t flags) {
  const bool more = flags & IORING_CQE_F_MORE;
  if (more) hold();  // else the op's own count is the hold
  if (!more) recv_armed_ = false;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    const uint16_t bid = ProvidedBufferRing::buffer_id(flags);
    bytes_in_ += static_cast<uint64_t>(res);
    if (!closed_) link_.feed(bufs_.data(bid, static_cast<size_t>(res)), owner_.stream_now());
    bufs_.recycle(bid);  // the link copied what it keeps
    if (!closed_) owner_.stream_event();
  }
  if (!more && !closed_) {
    if (res == 0) {
      eof_ = true;
      link_.connection_lost(ErrorKind::closed,
                            owner_.stream_now());  // nothing after a clean end (221)
      owner_.stream_event();
    } else if (res < 0 && res != -ENOBUFS) {
      link_.connection_lost(error_kind(res, false), owner_.stream_now());
      owner_.stream_event();
    } else {
      arm_recv();  // the buffer ring ran dry, or the multishot run ended
    }
  }
  release();
}

void ClientStream::flush() {
  if (send_busy_ || closed_ || connecting_ || fd_ < 0) return;
  const char* p = nullptr;
  size_t n = 0;
  if (inflight_off_ < inflight_.size()) {
    p = inflight_.data() + inflight_off_;
    n = inflight_.size() - inflight_off_;
  } else {
    inflight_.clear();
    inflight_off_ = 0;
    while (link_.has_output()) {
      const std::string_view v = link_.output();
      // A big body goes from where it lives; small pieces and TLS records
      // are gathered (the session's buffer moves as it grows).
      if (v.size() >= StreamLink::kSendInPlaceAbove && link_.output_stable()) {
        if (inflight_.empty()) {
          direct_ = true;
          p = v.data();
          n = v.size();
        }
        break;
      }
      inflight_.append(v);
      link_.consume_output(v.size());
    }
    if (!direct_) {
      if (inflight_.empty()) return;
      p = inflight_.data();
      n = inflight_.size();
    }
  }
  send_busy_ = true;
  ++ops_;
  ring_.prep(1, [this, p, n](io_uring_sqe** s) {
    io_uring_prep_send(s[0], fd_, p, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s[0], completion_tag(&send_op_));
  });
}

void ClientStream::on_send(int res, uint32_t /*flags*/) {
  send_busy_ = false;
  const bool direct = direct_;
  direct_ = false;
  if (closed_) return release();
  if (res < 0) {
    link_.connection_lost(error_kind(res, false), owner_.stream_now());
    owner_.stream_event();
    return release();
  }
  bytes_out_ += static_cast<uint64_t>(res);
  if (direct) {
    link_.consume_output(static_cast<size_t>(res));
  } else {
    inflight_off_ += static_cast<size_t>(res);
  }
  owner_.stream_sent();
  if (!closed_) flush();
  release();
}

void ClientStream::close() {
  if (closed_) return;
  closed_ = true;
  if (connecting_) {
    // A connect in flight would wait out the kernel's SYN retries (minutes):
    // cancel it (the cancel's own completion is ignored).
    ring_.prep(1, [this](io_uring_sqe** s) {
      io_uring_prep_cancel64(s[0], completion_tag(&connect_op_), 0);
      io_uring_sqe_set_data64(s[0], 0);
    });
  } else if (fd_ >= 0 && (recv_armed_ || !eof_)) {
    // Ends the armed multishot recv and sends the FIN (a close alone would not).
    ::shutdown(fd_, SHUT_RDWR);
  }
  hold();
  release();
}

void ClientStream::release() {
  --ops_;
  if (!closed_ || ops_ > 0 || released_) return;
  released_ = true;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  owner_.stream_released();  // may free this stream: nothing after it
}

}  // namespace ringmx
