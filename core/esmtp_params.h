// MAIL FROM and RCPT TO parameters (RFC 5321 4.1.2 esmtp-param): SIZE (RFC 1870),
// BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531), RET, ENVID, NOTIFY, ORCPT
// (RFC 3461), AUTH (RFC 4954). Parsed and validated here, kept so a relay can pass them on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/session_config.h"

namespace ringmx {

enum class BodyType : uint8_t { unspecified, seven_bit, eight_bit_mime, binary_mime };
enum class DsnRet : uint8_t { unspecified, full, hdrs };

// NOTIFY bits; `never` excludes the others.
enum NotifyFlags : uint8_t {
  notify_none = 0,  // parameter absent
  notify_never = 1,
  notify_success = 2,
  notify_failure = 4,
  notify_delay = 8,
};

struct MailParams {
  uint64_t size = 0;  // declared SIZE, 0 when absent
  bool has_size = false;
  BodyType body = BodyType::unspecified;
  bool smtputf8 = false;
  DsnRet ret = DsnRet::unspecified;
  std::string envid;  // xtext as received (still encoded), empty when absent
};

struct RcptParams {
  uint8_t notify = notify_none;
  std::string orcpt_type;  // e.g. "rfc822" or "utf-8", empty when absent
  std::string orcpt;       // xtext (or utf-8-addr-xtext) as received
};

// A rejected parameter: the reply to send.
struct ParamError {
  uint16_t code = 0;  // 0 when there is no error
  std::string_view enhanced;
  std::string_view text;
  bool ok() const { return code == 0; }
};

// `params` is everything after the closing '>' of the path (may start with
// spaces, may be empty). `max_size` is the configured message size limit.
// `auth_param`: the AUTH extension is on, so AUTH=<mailbox or "<>"> (RFC
// 4954 5) is taken (checked, not kept).
ParamError parse_mail_params(std::string_view params, const Extensions& ext, uint64_t max_size,
                             MailParams& out, bool auth_param = false);
ParamError parse_rcpt_params(std::string_view params, const Extensions& ext, RcptParams& out);

// The address an ORCPT value names, decoded to UTF-8: xtext ("+XX", the
// form Postfix sends a non-ASCII address in, "rfc822;+C3+BCser@...") for any
// address type but utf-8, RFC 6533 ("\x{FC}") for utf-8, raw UTF-8 in either
// when the transaction has SMTPUTF8. False when malformed, or when the
// address holds a control character or is not UTF-8.
bool decode_orcpt(std::string_view type, std::string_view value, bool smtputf8, std::string& out);

// RFC 3461 4: xtext = *( xchar / hexchar ), xchar is 33..126 but '+' and '=',
// hexchar is '+' followed by two upper-case hex digits.
bool is_valid_xtext(std::string_view s);

// Parameter values as written on the wire: "8BITMIME", "FULL"; "" for unspecified.
std::string_view body_type_name(BodyType body);
std::string_view dsn_ret_name(DsnRet ret);
// Appends " NOTIFY=NEVER" or " NOTIFY=SUCCESS,FAILURE,DELAY" (the bits set, in
// that order); nothing when no known bit is set.
void append_notify_param(std::string& out, uint8_t notify);

}  // namespace ringmx
