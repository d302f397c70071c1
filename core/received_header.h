// The Received trace header (RFC 5321 4.4) with RFC 3848 / RFC 6531 protocol
// names, and the RFC 5322 date it ends with. Pure formatting: time is given.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringmx {

struct ReceivedFields {
  std::string_view helo;        // as the client gave it; empty if none
  std::string_view client_ip;   // textual address
  std::string_view client_ptr;  // verified reverse name; empty when unknown
  std::string_view by_host;
  std::string_view software;
  std::string_view protocol;  // from protocol_name()
  std::string_view queue_id;
  std::string_view tls_version;  // empty without TLS
  std::string_view tls_cipher;
  std::string_view for_mailbox;  // only when the message has one recipient
  // The authenticated user, when the header is to name it (empty: not named).
  std::string_view auth_user;
  int64_t unix_time = 0;
};

// SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA.
std::string_view protocol_name(bool esmtp, bool tls, bool auth, bool utf8);

void append_received(std::string& out, const ReceivedFields& f);

// "Sat, 21 Nov 2026 06:19:57 +0000" (RFC 5322 3.3), always UTC.
void append_rfc5322_date(std::string& out, int64_t unix_time);

// Counts header fields named "Received" in the header section of `message`
// (up to the first empty line, or the end).
uint32_t count_received_headers(std::string_view message);

}  // namespace ringmx
