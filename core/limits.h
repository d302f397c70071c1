// Every protocol limit of an SMTP session, in one place. Each has a default,
// an allowed range and the reason for its number; the config loader checks
// the range, the session enforces the limit and answers with the listed reply.
#pragma once

#include <cstdint>
#include <string_view>

namespace ringmx {

struct LimitSpec {
  std::string_view name;
  uint64_t def;
  uint64_t min;
  uint64_t max;
  std::string_view reply;  // what the client sees when the limit is hit
  std::string_view why;
};

struct Limits {
  // RFC 5321 4.5.3.1.4: a command line is at most 512 octets with CRLF; some
  // clients send longer MAIL lines with many ESMTP parameters, so it may grow.
  uint32_t max_command_line = 512;
  // Largest message accepted, advertised in EHLO SIZE. The excess of a larger
  // message is read and dropped so the session stays usable.
  uint64_t max_message_size = 25ull << 20;
  // RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients.
  uint32_t max_recipients = 100;
  // Unknown or malformed commands before the session is closed (Postfix's
  // smtpd_hard_error_limit has the same default).
  uint32_t max_bad_commands = 20;
  // Transactions (MAIL commands accepted) on one connection; bounds what one
  // client can hold a shard for.
  uint32_t max_transactions = 1000;
  // RFC 1035: a domain name is at most 255 octets.
  uint32_t max_helo_length = 255;
  // Received headers already in a message before it is refused as a mail
  // loop (RFC 5321 6.3; Postfix's hopcount_limit is 50).
  uint32_t max_received_headers = 50;
  // RFC 5321 4.5.3.1.6, RFC 5322 2.1.1: a line of a message is at most 998
  // octets before its CRLF. A message with a longer one is refused at the end
  // of its data (550 5.6.0) rather than folded on its way out, which would
  // change it (and break its DKIM signatures) after we took it. 0: no check
  // (such lines then go on unchanged).
  uint32_t max_line_length = 998;
  // RFC 4954 4: an AUTH command line and each SASL response line may be up
  // to 12288 octets, beyond max_command_line (PLAIN and LOGIN need far less;
  // other mechanisms, not offered, carry tickets).
  uint32_t max_auth_line = 12288;
  // RFC 5321 4.5.3.2.7: the server should wait at least 5 minutes for a command.
  uint32_t command_timeout_ms = 300'000;
  // From the first octet of a command line to its CRLF (slowloris: a client
  // that trickles a byte at a time keeps the idle timeout from ever firing).
  // Real clients write a command in one go; a client idle between commands
  // (nothing of the next one sent yet) is governed by command_timeout_ms only.
  uint32_t command_line_timeout_ms = 10'000;
  // RFC 5321 4.5.3.2.5: at least 3 minutes between data blocks.
  uint32_t data_timeout_ms = 180'000;
  // Whole session, however busy: one connection cannot hold a slot forever.
  uint32_t session_timeout_ms = 1'800'000;
  // Replies (and TLS records) waiting for a client that does not read them.
  // Past this the client's input is not read any more until it catches up:
  // a pipelining client needs a few KiB (100 RCPT replies are about 4 KiB),
  // and one that never reads can make us hold no more than this.
  uint32_t max_output_buffer = 64 * 1024;
  // Output that has made no progress for this long (the client stopped
  // reading, or its window stays shut) ends the connection: no reply can be
  // sent to it. As long as a client may take to send a command.
  uint32_t send_timeout_ms = 300'000;
  // Message bodies one shard holds in memory while they are received and
  // written. A body that would cross it streams to the spool as it arrives
  // instead (a file of its own, docs/spool.md), so a few thousand slow 20 MB
  // uploads cannot exhaust the machine; under it, bodies stay in memory and
  // share one write and one sync with others (group commit). Only when the
  // spool cannot take it either is the body read to its end, not stored,
  // and answered 452 4.3.1.
  uint64_t body_memory_per_shard = uint64_t{256} << 20;
};

// Ranges and reasons, for the config checker and the docs.
inline constexpr LimitSpec kLimitSpecs[] = {
    {"max_command_line", 512, 512, 65536, "500 5.5.2",
     "RFC 5321 4.5.3.1.4 minimum; larger for clients with many parameters"},
    {"max_message_size", 25ull << 20, 1024, 1ull << 32, "552 5.3.4",
     "advertised in EHLO SIZE; excess is read and dropped"},
    {"max_recipients", 100, 1, 100000, "452 4.5.3", "RFC 5321 4.5.3.1.8 minimum is 100"},
    {"max_bad_commands", 20, 1, 1000, "421 4.7.0", "then the connection is closed"},
    {"max_transactions", 1000, 1, 1000000, "421 4.7.0", "per connection"},
    {"max_helo_length", 255, 16, 1024, "501 5.5.2", "RFC 1035 domain length"},
    {"max_received_headers", 50, 1, 1000, "554 5.4.6", "mail loop detection"},
    {"max_line_length", 998, 0, 1000000, "550 5.6.0",
     "RFC 5322 2.1.1 / RFC 5321 4.5.3.1.6, octets before CRLF; 0 = no check"},
    {"max_auth_line", 12288, 512, 65536, "500 5.5.6",
     "RFC 4954 4: AUTH command and SASL response lines, with CRLF"},
    {"command_timeout_ms", 300000, 1, 3600000, "421 4.4.2", "RFC 5321 4.5.3.2.7"},
    {"command_line_timeout_ms", 10000, 100, 300000, "421 4.4.2",
     "first octet to CRLF of one command line (slowloris)"},
    {"data_timeout_ms", 180000, 1, 3600000, "421 4.4.2", "RFC 5321 4.5.3.2.5"},
    {"session_timeout_ms", 1800000, 1, 86400000, "421 4.4.2", "whole session"},
    {"max_output_buffer", 65536, 4096, 16777216, "input paused",
     "replies owed to a client that does not read them"},
    {"send_timeout_ms", 300000, 1, 3600000, "connection closed",
     "output that makes no progress; no reply can reach such a client"},
    {"body_memory_per_shard", uint64_t{256} << 20, 1024, uint64_t{1} << 40,
     "none: streamed to the spool (452 4.3.1 if that is full, or with milters)",
     "bodies held in memory by one shard; past it they stream to disk"},
};

}  // namespace ringmx
