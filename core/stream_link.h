// Contract: the sans-I/O side of one outbound byte stream, as net/ClientStream
// drives it: the stream reports the transport (connected, bytes received, the
// link lost) and sends what output() holds, consuming it as the kernel takes
// it. An SMTP/LMTP client connection (tls/client_connection.h) is one; the
// milter client (core/milter_client.h) is another.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/smtp_client.h"  // ErrorKind

namespace ringmx {

class StreamLink {
 public:
  virtual ~StreamLink() = default;

  // The transport is up.
  virtual void connected(int64_t now_ns) = 0;
  // Bytes received from the peer.
  virtual void feed(std::string_view bytes, int64_t now_ns) = 0;
  // The transport failed, or the peer closed it.
  virtual void connection_lost(ErrorKind kind, int64_t now_ns) = 0;

  // What to send next; consume_output(n) once n octets of it are sent.
  virtual std::string_view output() = 0;
  virtual void consume_output(size_t n) = 0;
  virtual bool has_output() = 0;
  // The view output() gave stays valid (unmoved) until consumed, so the
  // stream may send it in place instead of copying it.
  virtual bool output_stable() const = 0;

  // Views at least this long are worth sending in place when stable.
  static constexpr size_t kSendInPlaceAbove = size_t{64} * 1024;

 protected:
  StreamLink() = default;
  StreamLink(const StreamLink&) = default;
  StreamLink& operator=(const StreamLink&) = default;
};

}  // namespace ringmx
