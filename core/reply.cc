// Reply line formatting: append-only into the session's output buffer.
#include "core/reply.h"

namespace ringmx {

namespace {

void append_code(std::string& out, uint16_t code, char sep) {
  char buf[4] = {static_cast<char>('0' + code / 100 % 10), static_cast<char>('0' + code / 10 % 10),
                 static_cast<char>('0' + code % 10), sep};
  out.append(buf, 4);
}

void append_clean(std::string& out, std::string_view line) {
  size_t start = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    auto c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c == 0x7f) {
      out.append(line.data() + start, i - start);
      out.push_back(c == '\t' ? '\t' : '?');
      start = i + 1;
    }
  }
  out.append(line.data() + start, line.size() - start);
}

}  // namespace

void append_reply(std::string& out, uint16_t code, std::string_view enhanced,
                  std::string_view text) {
  // Drop one trailing newline so "text\n" does not produce an empty last line.
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  for (;;) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    bool last = nl == std::string_view::npos;
    append_code(out, code, last ? ' ' : '-');
    if (!enhanced.empty()) {
      out.append(enhanced);
      if (!line.empty()) out.push_back(' ');
    }
    append_clean(out, line);
    out.append("\r\n", 2);
    if (last) break;
    text.remove_prefix(nl + 1);
  }
}

bool is_valid_reply(uint16_t code, std::string_view enhanced) {
  if (code < 200 || code > 599) return false;
  if (enhanced.empty()) return true;
  // class "." subject "." detail; class is 2, 4 or 5; subject and detail 1-3 digits.
  if (enhanced.size() < 5 || enhanced.size() > 9) return false;
  char cls = enhanced[0];
  if (cls != '2' && cls != '4' && cls != '5') return false;
  if (cls - '0' != code / 100) return false;
  if (enhanced[1] != '.') return false;
  int parts = 0, digits = 0;
  for (size_t i = 2; i <= enhanced.size(); ++i) {
    if (i == enhanced.size() || enhanced[i] == '.') {
      if (digits < 1 || digits > 3) return false;
      ++parts;
      digits = 0;
    } else if (enhanced[i] >= '0' && enhanced[i] <= '9') {
      ++digits;
    } else {
      return false;
    }
  }
  return parts == 2;
}

}  // namespace ringmx
