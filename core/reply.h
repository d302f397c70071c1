// SMTP reply formatting (RFC 5321 4.2) with RFC 3463 enhanced status codes
// (RFC 2034). Replies are appended to the caller's output buffer: once that
// buffer has grown to its working size, writing a reply allocates nothing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringmx {

// A reply as data: code, enhanced code ("5.5.2", empty for none) and text.
// The text may hold several lines separated by '\n'; each becomes one line of
// a multi-line reply.
struct Reply {
  uint16_t code = 0;
  std::string_view enhanced;
  std::string_view text;
};

// Appends `code[-| ]enhanced text\r\n` for each line of `text`. CR, LF and
// other control characters inside a line are replaced by '?', so text taken
// from a client or a policy can never break the framing.
void append_reply(std::string& out, uint16_t code, std::string_view enhanced,
                  std::string_view text);
inline void append_reply(std::string& out, const Reply& r) {
  append_reply(out, r.code, r.enhanced, r.text);
}

// Checks what a policy layer hands back: a 2xx-5xx code and, when present, an
// enhanced code whose class digit matches (RFC 3463 2: class.subject.detail).
bool is_valid_reply(uint16_t code, std::string_view enhanced);

}  // namespace ringmx
