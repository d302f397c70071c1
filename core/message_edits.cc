// Contract: see message_edits.h.
#include "core/message_edits.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>
#include <variant>

#include "core/command.h"
#include "core/esmtp_params.h"

namespace ringmx {
namespace {

struct Field {
  std::string text;  // the whole field, CRLF-terminated
  size_t name_len = 0;
  std::string_view name() const { return std::string_view(text).substr(0, name_len); }
};

// Splits a header section into fields; `end` becomes the offset just past
// it (past its empty line, when there is one).
void split_fields(std::string_view s, std::vector<Field>& out, size_t& end,
                  bool stop_at_non_field) {
  size_t at = 0;
  while (at < s.size()) {
    size_t nl = s.find('\n', at);
    size_t line_end = nl == std::string_view::npos ? s.size() : nl + 1;
    std::string_view line = s.substr(at, line_end - at);
    if (line == "\r\n" || line == "\n") {
      end = line_end;
      return;
    }
    const size_t colon = line.find(':');
    std::string_view name =
        colon == std::string_view::npos ? std::string_view{} : line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    const bool field = !name.empty() && std::none_of(name.begin(), name.end(), [](char c) {
      return static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 127;
    });
    if (!field && stop_at_non_field) {
      end = at;
      return;
    }
    while (line_end < s.size() && (s[line_end] == ' ' || s[line_end] == '\t')) {
      nl = s.find('\n', line_end);
      line_end = nl == std::string_view::npos ? s.size() : nl + 1;
    }
    if (field) {
      Field f;
      f.text = std::string(s.substr(at, line_end - at));
      if (!f.text.ends_with('\n')) f.text += "\r\n";
      f.name_len = name.size();
      out.push_back(std::move(f));
    }
    at = line_end;
  }
  end = s.size();
}

// LF (or CRLF) line ends as CRLF.
std::string crlf(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out.push_back('\r');
    out.push_back(s[i]);
  }
  return out;
}

Field make_field(std::string_view name, std::string_view value, bool leading_space) {
  Field f;
  f.text = std::string(name);
  f.text += ':';
  if (!leading_space) f.text += ' ';
  f.text += crlf(value);
  if (!f.text.ends_with("\r\n")) f.text += "\r\n";
  f.name_len = name.size();
  return f;
}

std::string_view unbracket(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  return a;
}

bool bad_address(std::string_view a) {
  return std::any_of(a.begin(), a.end(), [](char c) {
    return static_cast<unsigned char>(c) < ' ' || c == '<' || c == '>' || c == 127;
  });
}

}  // namespace

EditOutcome apply_edits(Message& msg, const std::vector<MessageEdits>& edits, const Extensions& ext,
                        uint64_t max_size, size_t max_recipients) {
  EditOutcome out;
  bool any_content = false;
  for (const MessageEdits& e : edits) {
    for (const milter::Response& r : e.changes) {
      if (std::holds_alternative<milter::AddHeader>(r) ||
          std::holds_alternative<milter::InsertHeader>(r) ||
          std::holds_alternative<milter::ChangeHeader>(r) ||
          std::holds_alternative<milter::ReplaceBody>(r)) {
        any_content = true;
      }
    }
  }
  if (any_content && msg.spilled) {
    out.error = "header or body changes to a message held on disk";
    return out;
  }

  std::vector<Field> fields;
  size_t body_at = 0;
  if (any_content) {
    size_t unused = 0;
    split_fields(msg.received, fields, unused, false);
    split_fields(msg.body.view(), fields, body_at, true);
  }
  std::optional<std::string> new_body;

  for (const MessageEdits& e : edits) {
    bool replacing = false;  // this filter's REPLBODY pieces add up
    for (const milter::Response& r : e.changes) {
      if (const auto* a = std::get_if<milter::AddHeader>(&r)) {
        fields.push_back(make_field(a->name, a->value, e.header_leading_space));
      } else if (const auto* ins = std::get_if<milter::InsertHeader>(&r)) {
        const size_t at = std::min<size_t>(ins->index, fields.size());
        fields.insert(fields.begin() + static_cast<std::ptrdiff_t>(at),
                      make_field(ins->name, ins->value, e.header_leading_space));
      } else if (const auto* chg = std::get_if<milter::ChangeHeader>(&r)) {
        const uint32_t want = std::max<uint32_t>(chg->index, 1);
        uint32_t seen = 0;
        auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) {
          return equals_nocase(f.name(), chg->name) && ++seen == want;
        });
        if (it == fields.end()) {
          if (!chg->value.empty()) {
            fields.push_back(make_field(chg->name, chg->value, e.header_leading_space));
          }
        } else if (chg->value.empty()) {
          fields.erase(it);
        } else {  // the field keeps its own spelling of the name
          const std::string name(it->name());
          *it = make_field(name, chg->value, e.header_leading_space);
        }
      } else if (const auto* body = std::get_if<milter::ReplaceBody>(&r)) {
        if (!replacing) new_body.emplace();
        replacing = true;
        *new_body += body->chunk;
      } else if (const auto* from = std::get_if<milter::ChangeFrom>(&r)) {
        const std::string_view addr = unbracket(from->from);
        if (bad_address(addr)) {
          out.error = e.filter + ": a sender that is not an address";
          return out;
        }
        MailParams params;
        if (!from->args.empty()) {
          const ParamError pe = parse_mail_params(from->args, ext, max_size, params);
          if (!pe.ok()) {
            out.error = e.filter + ": sender parameters: " + std::string(pe.text);
            return out;
          }
        }
        msg.envelope.sender = std::string(addr);
        msg.envelope.mail = params;
        out.envelope = true;
      } else if (std::holds_alternative<milter::AddRecipient>(r) ||
                 std::holds_alternative<milter::AddRecipientArgs>(r)) {
        const auto* plain = std::get_if<milter::AddRecipient>(&r);
        const auto* with = std::get_if<milter::AddRecipientArgs>(&r);
        const std::string_view addr = unbracket(plain ? plain->rcpt : with->rcpt);
        if (addr.empty() || bad_address(addr)) {
          out.error = e.filter + ": an added recipient that is not an address";
          return out;
        }
        Recipient rc;
        rc.address = std::string(addr);
        if (with != nullptr && !with->args.empty()) {
          const ParamError pe = parse_rcpt_params(with->args, ext, rc.params);
          if (!pe.ok()) {
            out.error = e.filter + ": recipient parameters: " + std::string(pe.text);
            return out;
          }
        }
        auto& rcpts = msg.envelope.recipients;
        const bool have = std::any_of(rcpts.begin(), rcpts.end(), [&](const Recipient& x) {
          return equals_nocase(x.address, rc.address);
        });
        if (!have) {
          if (rcpts.size() >= max_recipients) {
            out.error = e.filter + ": more than " + std::to_string(max_recipients) + " recipients";
            return out;
          }
          rcpts.push_back(std::move(rc));
          out.envelope = true;
        }
      } else if (const auto* del = std::get_if<milter::DeleteRecipient>(&r)) {
        const std::string_view addr = unbracket(del->rcpt);
        const size_t before = msg.envelope.recipients.size();
        std::erase_if(msg.envelope.recipients,
                      [&](const Recipient& x) { return equals_nocase(x.address, addr); });
        if (msg.envelope.recipients.size() != before) out.envelope = true;
      } else if (const auto* q = std::get_if<milter::Quarantine>(&r)) {
        if (out.quarantine.empty()) out.quarantine = e.filter + ": " + q->reason;
      }
    }
  }
  if (!any_content) return out;

  std::string rebuilt;
  size_t want = 2 + (new_body ? new_body->size() : msg.body.size() - body_at);
  for (const Field& f : fields) want += f.text.size();
  rebuilt.reserve(want + (new_body ? new_body->size() / 64 : 0));
  for (const Field& f : fields) rebuilt += f.text;
  rebuilt += "\r\n";
  if (new_body) {
    rebuilt += crlf(*new_body);
  } else {
    rebuilt.append(msg.body.view().substr(body_at));
  }
  ByteBuffer b;
  b.append(rebuilt);
  msg.body = std::move(b);
  msg.received.clear();  // now the first fields of the body
  msg.size = msg.body.size();
  out.headers_or_body = true;
  return out;
}

}  // namespace ringmx
