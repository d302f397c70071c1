// Unit-test helper: a whole spool record as the writer makes it (current
// format, checksummed), for tests that build spool files by hand.
#pragma once

#include <string>
#include <string_view>

#include "core/envelope.h"
#include "pipeline/crc32c.h"
#include "pipeline/spool_format.h"

namespace ringmx::test_support {

// The bytes the runtime writes: envelope, our Received header and body, then
// the trailer with the CRC32C of all of it.
inline std::string spool_bytes(const Message& msg, const SpoolClient& client) {
  std::string out;
  append_spool_envelope(out, msg, client, msg.received.size() + msg.body.size());
  out += msg.received;
  out.append(msg.body.view());
  const SpoolTrailer trailer = spool_trailer(crc32c(out));
  out.append(trailer.data(), trailer.size());
  return out;
}

// `msg`'s record; queue id, sender and recipients as the caller set them,
// the received time and client fixed.
inline std::string spool_record(Message& msg) {
  if (msg.received.empty()) {
    msg.received = "Received: from c.example by mx.example; Sat, 14 Nov 2026 10:19:57 +0000\r\n";
  }
  msg.received_at_unix = 1795241997;
  SpoolClient client;
  client.ip = "192.0.2.1";
  client.port = 40000;
  client.helo = "c.example";
  client.protocol = "ESMTP";
  return spool_bytes(msg, client);
}

}  // namespace ringmx::test_support
