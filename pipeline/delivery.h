// Delivery's pure rules: what a queued message is, how a reply decides a
// recipient, when a deferred recipient is tried again, and which ESMTP
// parameters go to a destination given what it offered. No I/O, no clock:
// times are passed in. The runtime that moves the bytes is net/relay.{h,cc}.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/envelope.h"
#include "core/metrics.h"
#include "core/smtp_client.h"

namespace ringmx {

enum class RcptState : uint8_t {
  pending,    // not yet tried, or deferred and waiting for its next attempt
  delivered,  // 2xx from the destination
  bouncing,   // failed; its DSN is on its way to the sender (not done until it is)
  failed,     // 5xx from the destination, or too old to try again: bounced
};

struct QueuedRecipient {
  std::string address;
  RcptParams params;
  int route = -1;  // index in the config's routes
  RcptState state = RcptState::pending;
  uint32_t attempts = 0;
  bool delay_notified = false;  // NOTIFY=DELAY: its delay DSN went out (this run)
  ReplyText last;               // what the destination said last (or why it could not be reached)
};

// An accepted message on its way out. `data` is the Received header and the
// message as stored; empty when it is not held in memory (then it is read
// back from the spool, at `offset` in `segment`, `size` octets).
struct QueuedMessage {
  std::string queue_id;
  std::string segment;  // file name in the shard's spool directory
  uint64_t offset = 0;
  uint64_t size = 0;
  int64_t received_at_unix = 0;
  int64_t next_attempt_unix_ms = 0;  // 0: now (a restart keeps the journal's schedule)
  int64_t accepted_mono_ns = 0;      // when it was handed over (0: found at start-up)
  std::string sender;                // "" for the null sender
  MailParams mail;
  std::vector<QueuedRecipient> rcpts;
  std::string data;
  // The runtime's: data was read back from the spool for the attempts now
  // running (and is let go when they end); transactions using data now.
  bool data_loaded = false;
  uint32_t in_flight = 0;
  bool held = false;      // an operator's hold: no attempt until released
  bool finished = false;  // done and accounted for (a message ends once)
  // A DSN: the message it reports on, and which of its recipients; when the
  // DSN is done (delivered, or failed: never bounced), so are they.
  std::shared_ptr<QueuedMessage> origin;
  std::vector<uint32_t> origin_rcpts;
  bool done() const;  // no recipient pending or bouncing
};

// How one recipient's attempt ended. `reply` is the reply that decided it
// (code 0: none came: the connection failed, timed out or broke the
// protocol, `error` says how); 2xx delivered, 5xx failed, anything else
// deferred.
DeliveryResult classify(const ReplyText& reply);

// The reply that decided recipient `i` of a finished transaction (the early
// reply when MAIL or DATA was refused, else its own), or, when none came,
// a made-up 4xx one naming the error ("4.4.2 connection lost", ...).
ReplyText decisive_reply(const MessageResult& r, size_t i);

// Back-off before attempt `attempts + 1` after `attempts` failed ones (>= 1):
// retry_min_ms doubled per attempt up to retry_max_ms, drawn from [1/2, 1] of
// that by `random` (any 64-bit value).
int64_t retry_delay_ms(uint32_t attempts, const DeliveryConfig& cfg, uint64_t random);

// True when a recipient of a message accepted at `received_at_unix` may not
// be tried again at `now_unix` (delivery.max_age_s).
bool too_old(int64_t received_at_unix, int64_t now_unix, const DeliveryConfig& cfg);

// What the destination offered (its EHLO/LHLO reply).
struct ServerOffer {
  bool size = false;
  uint64_t size_limit = 0;  // 0: no limit stated
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool dsn = false;
};
ServerOffer server_offer(const SmtpClient& c);

// The envelope for recipients `which` of `m` as it goes to a destination that
// offered `offer`: SIZE when offered, BODY as declared, SMTPUTF8 when the
// message asked for it, the DSN parameters (RET, ENVID, NOTIFY, ORCPT) only
// when DSN is offered. Returns "" or, when the destination cannot take the
// message at all, the permanent failure to record for every one of them:
// larger than its SIZE ("5.3.4 ..."), or non-ASCII addresses without SMTPUTF8
// ("5.6.7 ..."; a message that only declared SMTPUTF8 with ASCII addresses
// goes without it).
std::string render_envelope(const QueuedMessage& m, const std::vector<uint32_t>& which,
                            const ServerOffer& offer, ClientEnvelope& out);

}  // namespace ringmx
