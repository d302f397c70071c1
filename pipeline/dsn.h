// Delivery status notifications (RFC 3464) as ringmx writes them: a
// multipart/report (RFC 6522) with a human-readable part, a
// message/delivery-status part (per-message fields, then one block per
// recipient) and the original message (RET=FULL or none given) or its header
// (RET=HDRS) as text/rfc822-headers. Pure: time and names are passed in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/envelope.h"
#include "core/smtp_client.h"

namespace ringmx {

// Whether a recipient wants a DSN for this outcome (RFC 3461 4.1): NOTIFY=NEVER
// never; NOTIFY given: only the listed outcomes; not given: failures only.
// A null sender never gets one (no bounce of a bounce).
bool wants_failure_dsn(std::string_view sender, const RcptParams& p);
bool wants_success_dsn(std::string_view sender, const RcptParams& p);

struct DsnRecipient {
  std::string address;
  RcptParams params;
  std::string action;  // "failed", "delivered", "relayed"
  ReplyText reply;     // the destination's words (code 0: no reply, text says why)
};

struct DsnReport {
  std::string reporting_mta;  // our host name
  std::string queue_id;
  std::string remote_mta;  // the destination's host (or socket path)
  int64_t arrival_unix = 0;
  int64_t now_unix = 0;
  std::string sender;  // the original sender: the DSN's recipient
  MailParams mail;     // RET, ENVID, SMTPUTF8
  std::vector<DsnRecipient> rcpts;
  std::string_view original;  // the stored message (Received header and all)
};

// The enhanced status code a report gives for `reply`: its own "x.y.z" when
// the text starts with one whose class matches the code, else x.0.0 from
// the code (5.0.0, 4.0.0, 2.0.0), else 4.4.1 for "no reply at all".
std::string dsn_status(const ReplyText& reply);

// The whole DSN message (CRLF line ends), ready to deliver from <> to
// <sender>. `boundary_seed` makes the MIME boundary (any value).
std::string make_dsn(const DsnReport& r, uint64_t boundary_seed);

}  // namespace ringmx
