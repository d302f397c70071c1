// XCLIENT, Postfix's SMTP extension (XCLIENT_README): a trusted front end
// (a proxy, a content filter re-injecting mail) names the client it serves,
// and the server carries on as if that client had connected. The parser
// here is pure; the session applies the result and greets again
// (core/session.cc), and only for clients the listener trusts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringmx {

// What the EHLO reply lists after "XCLIENT": the attributes understood.
inline constexpr std::string_view kXclientAttributes =
    "NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT";

// The attributes one XCLIENT command set. Absent ones keep their value; one
// sent as [UNAVAILABLE] or [TEMPUNAVAIL] is set to "unknown" (empty / 0).
struct XclientUpdate {
  std::optional<std::string> addr;  // canonical text: "192.0.2.1", "2001:db8::1"
  std::optional<uint16_t> port;
  std::optional<std::string> name;      // the client's host name (verified reverse name)
  std::optional<std::string> helo;      // what the client said in HELO/EHLO
  std::optional<bool> esmtp;            // PROTO: ESMTP (true) or SMTP
  std::optional<std::string> login;     // the SASL login name the front end checked
  std::optional<std::string> destaddr;  // the server address the client reached
  std::optional<uint16_t> destport;
};

// Parses the arguments of an XCLIENT command: one or more attribute=value,
// space-separated, names case-insensitive, values xtext (RFC 3461 4).
// Returns "" on success, else the text of a 501 5.5.4 reply.
std::string parse_xclient(std::string_view args, XclientUpdate& out);

}  // namespace ringmx
