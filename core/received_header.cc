// Received header and RFC 5322 date formatting (civil-from-days, no libc time zone).
#include "core/received_header.h"

#include "core/civil_date.h"
#include "core/command.h"

namespace ringmx {

namespace {

void append_2(std::string& out, unsigned v) {
  out.push_back(static_cast<char>('0' + v / 10 % 10));
  out.push_back(static_cast<char>('0' + v % 10));
}

void append_uint(std::string& out, uint64_t v) {
  char buf[20];
  size_t n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) out.push_back(buf[--n]);
}

bool is_ipv6(std::string_view ip) {
  return ip.find(':') != std::string_view::npos;
}

}  // namespace

std::string_view protocol_name(bool esmtp, bool tls, bool auth, bool utf8) {
  if (!esmtp) return "SMTP";
  static constexpr std::string_view kNames[2][4] = {
      {"ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA"},
      {"UTF8SMTP", "UTF8SMTPS", "UTF8SMTPA", "UTF8SMTPSA"},
  };
  return kNames[utf8 ? 1 : 0][(tls ? 1 : 0) + (auth ? 2 : 0)];
}

void append_rfc5322_date(std::string& out, int64_t unix_time) {
  static constexpr std::string_view kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t days = unix_time / 86400;
  int64_t secs = unix_time % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  const auto [year, month, day] = civil_from_days(days);
  int64_t wd = days % 7;
  if (wd < 0) wd += 7;
  out.append(kDays[wd]);
  out.append(", ");
  append_uint(out, day);
  out.push_back(' ');
  out.append(kMonths[month - 1]);
  out.push_back(' ');
  append_uint(out, static_cast<uint64_t>(year < 0 ? 0 : year));
  out.push_back(' ');
  append_2(out, static_cast<unsigned>(secs / 3600));
  out.push_back(':');
  append_2(out, static_cast<unsigned>(secs / 60 % 60));
  out.push_back(':');
  append_2(out, static_cast<unsigned>(secs % 60));
  out.append(" +0000");
}

void append_received(std::string& out, const ReceivedFields& f) {
  out.append("Received: from ");
  out.append(f.helo.empty() ? std::string_view("unknown") : f.helo);
  out.append(" (");
  out.append(f.client_ptr.empty() ? std::string_view("unknown") : f.client_ptr);
  out.append(is_ipv6(f.client_ip) ? " [IPv6:" : " [");
  out.append(f.client_ip);
  out.append("])");
  if (!f.auth_user.empty()) {
    // A comment: parentheses, backslashes and controls (a backend's user
    // name is not ours to trust with CR LF) become '?'.
    out.append("\r\n\t(Authenticated sender: ");
    for (char ch : f.auth_user) {
      const auto c = static_cast<unsigned char>(ch);
      const bool bad = c < 0x21 || c == 0x7f || ch == '(' || ch == ')' || ch == '\\';
      out.push_back(bad ? '?' : ch);
    }
    out.push_back(')');
  }
  out.append("\r\n\tby ");
  out.append(f.by_host);
  if (!f.software.empty()) {
    out.append(" (");
    out.append(f.software);
    out.push_back(')');
  }
  out.append(" with ");
  out.append(f.protocol);
  out.append(" id ");
  out.append(f.queue_id);
  if (!f.tls_version.empty()) {
    out.append("\r\n\t(version=");
    out.append(f.tls_version);
    if (!f.tls_cipher.empty()) {
      out.append(" cipher=");
      out.append(f.tls_cipher);
    }
    out.push_back(')');
  }
  if (!f.for_mailbox.empty()) {
    out.append("\r\n\tfor <");
    out.append(f.for_mailbox);
    out.append(">");
  }
  out.append(";\r\n\t");
  append_rfc5322_date(out, f.unix_time);
  out.append("\r\n");
}

uint32_t count_received_headers(std::string_view m) {
  uint32_t count = 0;
  size_t pos = 0;
  while (pos < m.size()) {
    size_t nl = m.find('\n', pos);
    std::string_view line = m.substr(pos, nl == std::string_view::npos ? m.npos : nl - pos);
    if (line.empty() || line == "\r") break;  // end of the header section
    if (starts_with_nocase(line, "received:")) ++count;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return count;
}

}  // namespace ringmx
