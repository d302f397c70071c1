// The typed, read-only snapshot a session runs from: names, banner, limits and
// extension toggles. A reload builds a new snapshot; sessions keep the one they
// started with (shared_ptr held by the owner).
#pragma once

#include <string>

#include "core/limits.h"

namespace ringmx {

// What to do with a bare CR or bare LF inside DATA. Neither ever ends the
// message (SMTP smuggling); this only decides the fate of the message.
enum class BareLinePolicy : uint8_t {
  reject,     // refuse the message at its real end with 550 5.5.2 (default)
  normalise,  // store the bare CR or LF as CRLF
};

// [headers]: the header section of each message (core/header_check.h),
// checked at the end of its data; a message that breaks a rule gets 550
// 5.6.0. The Received count is always checked (limits.max_received_headers).
struct HeaderRules {
  bool require_from = false;       // RFC 5322 3.6: From is required
  bool require_date = false;       // ... and so is Date
  bool reject_duplicates = false;  // a field allowed once appears twice (RFC 5322 3.6)
  bool any() const { return require_from || require_date || reject_duplicates; }
};

// A client that sends a command before it could have read the reply to the
// previous one, when PIPELINING (RFC 2920) was not offered to it: postscreen's
// "pipelining" test. Spam engines blast the whole dialogue at once; a real MTA
// waits for each reply until the EHLO reply says it need not.
enum class UnofferedPipelining : uint8_t {
  reject,  // 554 5.5.0 to the command sent ahead of time, then close (default)
  ignore,  // serve it as if PIPELINING had been offered
};

// SMTP AUTH (RFC 4954) on a listener: not offered; offered once the
// session is protected by TLS (after STARTTLS, or on an implicit-TLS
// listener); or, besides, required before MAIL (530 5.7.0).
enum class AuthMode : uint8_t { none, optional, required };

struct Extensions {
  bool pipelining = true;
  bool size = true;
  bool eightbitmime = true;
  bool smtputf8 = true;
  bool enhanced_status_codes = true;
  bool chunking = true;
  bool dsn = true;
  bool vrfy = true;  // VRFY answers 252 when on, 502 when off
};

struct SessionConfig {
  std::string hostname = "localhost";
  // Text after "220 <hostname> " in the greeting.
  std::string banner = "ESMTP ringmx";
  // The product name in Received headers ("by host (ringmx) with ...").
  std::string software = "ringmx";
  Limits limits;
  Extensions ext;
  BareLinePolicy bare_line = BareLinePolicy::reject;
  // A command line that is an HTTP request ("GET / HTTP/1.1") or header
  // ("Host:", "User-Agent:"): a web client or an open-proxy probe, never a
  // mail client. 554 5.7.0 and close at once.
  bool reject_http = true;
  UnofferedPipelining unoffered_pipelining = UnofferedPipelining::reject;
  HeaderRules headers;
  // The Received header of a message sent by an authenticated client names
  // the user ("(Authenticated sender: user)"). Off by default: the user name
  // is the client's private business, the ESMTPA protocol name says enough.
  bool received_names_auth_user = false;
};

}  // namespace ringmx
