// What a transaction carries to the layers above: the envelope (with every
// ESMTP parameter, so a relay can pass them on) and the message.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/byte_buffer.h"
#include "core/esmtp_params.h"

namespace ringmx {

struct Recipient {
  std::string address;  // mailbox as written, without brackets ("postmaster" allowed)
  RcptParams params;
};

struct Envelope {
  std::string queue_id;
  std::string sender;  // empty for the null sender <>
  MailParams mail;
  std::vector<Recipient> recipients;
  bool sender_utf8 = false;
};

struct Message {
  Envelope envelope;
  // The header fields this server prepends: trace fields from the checks
  // (Authentication-Results), then its Received header (folded, each ending
  // in CRLF). Kept apart from the body so the spool can write both with one
  // writev.
  std::string received;
  ByteBuffer body;               // message as received, dot-unstuffed
  uint64_t size = 0;             // body octets (kept when the handler moves the body out)
  uint32_t received_count = 0;   // Received headers already in the body
  int64_t received_at_unix = 0;  // wall-clock seconds at end of data
  bool via_bdat = false;
  // The body went to the handler piece by piece (SessionHandler::on_body_spill)
  // and `body` is empty; `received` was stamped when spilling began.
  bool spilled = false;
  // Spilled: the first octets of the body (its header section, up to 64 KiB),
  // kept by the session for the end-of-message checks; valid until the
  // transaction ends.
  std::string_view spilled_head;
};

}  // namespace ringmx
