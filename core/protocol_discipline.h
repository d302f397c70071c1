// Protocol discipline: input no mail client sends, recognised early so the
// session can drop the peer at once instead of answering it line by line
// until the bad-command limit. The session runs these checks (core/session)
// and names the one that fired to its handler (on_protocol_reject):
//   http_probe            an HTTP request line or header: a web client, or a
//                         scanner looking for an open proxy
//   unoffered_pipelining  a command sent before the reply to the previous one
//                         could have been read, PIPELINING not offered
//   slow_command          a command line that took longer than
//                         limits.command_line_timeout_ms from its first octet
//                         to its CRLF (slowloris)
#pragma once

#include <string_view>

namespace ringmx {

inline constexpr std::string_view kCheckHttpProbe = "http_probe";
inline constexpr std::string_view kCheckUnofferedPipelining = "unoffered_pipelining";
inline constexpr std::string_view kCheckSlowCommand = "slow_command";

// True for a command line (without its CRLF) that is HTTP, not SMTP: a
// request line ("GET ", "POST ", "HEAD ", "PUT ", "OPTIONS ", "CONNECT ":
// the method in any case, then a space) or one of the headers every HTTP
// client sends ("Host:", "User-Agent:", in any case). No SMTP command starts
// like that, so a real client is never taken for one.
bool is_http_line(std::string_view line);

}  // namespace ringmx
