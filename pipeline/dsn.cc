// Contract: see dsn.h.
#include "pipeline/dsn.h"

#include "core/esmtp_params.h"
#include "core/received_header.h"

namespace ringmx {

namespace {

bool is_status(std::string_view s) {
  // class "." subject "." detail: 2|4|5 "." 1*3digit "." 1*3digit
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3) ++i;
    if (i == start) return false;
    if (part == 0) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return i == s.size();
}

// One header or field line: no CR or LF may end it early.
void append_clean(std::string& out, std::string_view v) {
  for (const char c : v) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
}

void field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  append_clean(out, value);
  out.append("\r\n");
}

std::string_view header_of(std::string_view msg) {
  const size_t end = msg.find("\r\n\r\n");
  return end == std::string_view::npos ? msg : msg.substr(0, end + 2);
}

std::string xtext_decoded_envid(std::string_view envid) {
  std::string out;
  if (!decode_orcpt("rfc822", envid, false, out)) return std::string(envid);
  return out;
}

}  // namespace

bool wants_failure_dsn(std::string_view sender, const RcptParams& p) {
  if (sender.empty() || (p.notify & notify_never) != 0) return false;
  return p.notify == notify_none || (p.notify & notify_failure) != 0;
}

bool wants_success_dsn(std::string_view sender, const RcptParams& p) {
  return !sender.empty() && (p.notify & notify_never) == 0 && (p.notify & notify_success) != 0;
}

std::string dsn_status(const ReplyText& reply) {
  const std::string_view text = reply.text;
  const std::string_view first = text.substr(0, text.find(' '));
  const char cls = reply.code ? static_cast<char>('0' + reply.code / 100) : '4';
  if (is_status(first) && (reply.code == 0 || first[0] == cls)) return std::string(first);
  if (reply.code == 0) return "4.4.1";
  return std::string(1, cls) + ".0.0";
}

std::string make_dsn(const DsnReport& r, uint64_t boundary_seed) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string boundary = r.queue_id + "/";
  for (int i = 0; i < 16; ++i) boundary.push_back(kHex[(boundary_seed >> (4 * i)) & 15]);
  boundary += "/" + r.reporting_mta;

  bool all_success = true;
  bool delay = false;
  for (const DsnRecipient& x : r.rcpts) {
    all_success = all_success && x.action != "failed" && x.action != "delayed";
    delay = delay || x.action == "delayed";
  }

  std::string out;
  out.reserve(4096 + r.original.size());
  field(out, "From", "Mail Delivery System <MAILER-DAEMON@" + r.reporting_mta + ">");
  field(out, "To", "<" + r.sender + ">");
  field(out, "Subject",
        all_success ? "Successful Mail Delivery Report"
        : delay     ? "Delayed Mail (still being retried)"
                    : "Undelivered Mail Returned to Sender");
  std::string date;
  append_rfc5322_date(date, r.now_unix);
  field(out, "Date", date);
  field(out, "Message-ID",
        "<" + r.queue_id + ".dsn." + std::to_string(r.now_unix) + "@" + r.reporting_mta + ">");
  field(out, "Auto-Submitted", "auto-replied");
  field(out, "MIME-Version", "1.0");
  field(out, "Content-Type",
        "multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"");
  out.append("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

  // The part for people.
  out.append("--" + boundary + "\r\n");
  field(out, "Content-Description", "Notification");
  field(out, "Content-Type", "text/plain; charset=utf-8");
  out.append("\r\nThis is the mail system at host ");
  append_clean(out, r.reporting_mta);
  out.append(".\r\n\r\n");
  if (delay) {
    out.append(
        "Your message could not be delivered yet to the recipients below.\r\n"
        "The mail system will keep trying; you do not need to send it again.\r\n\r\n");
  } else if (all_success) {
    out.append("Your message was delivered to the following recipients:\r\n\r\n");
  } else {
    out.append(
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. It's attached below.\r\n\r\n");
  }
  for (const DsnRecipient& x : r.rcpts) {
    out.append("<");
    append_clean(out, x.address);
    out.append(">: ");
    if (x.reply.code != 0) {
      out.append(std::to_string(x.reply.code));
      out.push_back(' ');
    }
    append_clean(out, x.reply.text);
    out.append("\r\n");
  }
  out.append("\r\n");

  // The part for programs (RFC 3464 2.2, 2.3).
  out.append("--" + boundary + "\r\n");
  field(out, "Content-Description", "Delivery report");
  field(out, "Content-Type", "message/delivery-status");
  out.append("\r\n");
  field(out, "Reporting-MTA", "dns; " + r.reporting_mta);
  field(out, "X-Ringmx-Queue-ID", r.queue_id);
  if (!r.mail.envid.empty()) field(out, "Original-Envelope-Id", xtext_decoded_envid(r.mail.envid));
  std::string arrival;
  append_rfc5322_date(arrival, r.arrival_unix);
  field(out, "Arrival-Date", arrival);
  for (const DsnRecipient& x : r.rcpts) {
    out.append("\r\n");
    field(out, "Final-Recipient", "rfc822; " + x.address);
    if (!x.params.orcpt_type.empty()) {
      std::string orcpt;
      if (!decode_orcpt(x.params.orcpt_type, x.params.orcpt, r.mail.smtputf8, orcpt)) {
        orcpt = x.params.orcpt;
      }
      field(out, "Original-Recipient", x.params.orcpt_type + "; " + orcpt);
    }
    field(out, "Action", x.action);
    field(out, "Status", dsn_status(x.reply));
    if (!r.remote_mta.empty()) field(out, "Remote-MTA", "dns; " + r.remote_mta);
    if (x.reply.code != 0) {
      field(out, "Diagnostic-Code", "smtp; " + std::to_string(x.reply.code) + " " + x.reply.text);
    } else {
      field(out, "Diagnostic-Code", "X-Ringmx; " + x.reply.text);
    }
    std::string last;
    append_rfc5322_date(last, r.now_unix);
    field(out, "Last-Attempt-Date", last);
  }
  out.append("\r\n");

  // The message itself, or its header.
  out.append("--" + boundary + "\r\n");
  if (r.mail.ret == DsnRet::hdrs || all_success || delay) {
    field(out, "Content-Description", "Undelivered Message Headers");
    field(out, "Content-Type", "text/rfc822-headers");
    out.append("\r\n");
    out.append(header_of(r.original));
  } else {
    field(out, "Content-Description", "Undelivered Message");
    field(out, "Content-Type", "message/rfc822");
    out.append("\r\n");
    out.append(r.original);
    if (!r.original.ends_with("\r\n")) out.append("\r\n");
  }
  out.append("\r\n--" + boundary + "--\r\n");
  return out;
}

}  // namespace ringmx
