#include "core/milter_codec.h"

#include <algorithm>

namespace ringmx::milter {
namespace {

void put32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

uint32_t get32(std::string_view s) {
  return (uint32_t{static_cast<uint8_t>(s[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[2])} << 8) | uint32_t{static_cast<uint8_t>(s[3])};
}

bool has_nul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

// Starts a packet: a length to be patched by end_packet(), the command.
size_t begin_packet(std::string& out, char command) {
  const size_t at = out.size();
  put32(out, 0);
  out.push_back(command);
  return at;
}

void end_packet(std::string& out, size_t at) {
  const auto len = static_cast<uint32_t>(out.size() - at - 4);
  std::string patch;
  put32(patch, len);
  out.replace(at, 4, patch);
}

void put_str(std::string& out, std::string_view s) {
  out.append(s);
  out.push_back('\0');
}

void empty_packet(std::string& out, Command c) {
  put32(out, 1);
  out.push_back(static_cast<char>(c));
}

// Address + NUL-terminated ESMTP args: MAIL and RCPT.
bool encode_envelope(std::string& out, Command c, std::string_view address,
                     std::span<const std::string_view> args) {
  if (has_nul(address) || std::any_of(args.begin(), args.end(), has_nul)) return false;
  const size_t at = begin_packet(out, static_cast<char>(c));
  put_str(out, address);
  for (const std::string_view a : args) put_str(out, a);
  end_packet(out, at);
  return true;
}

// Takes a NUL-terminated string off the front of `rest`.
bool take_str(std::string_view& rest, std::string_view& s) {
  const size_t nul = rest.find('\0');
  if (nul == std::string_view::npos) return false;
  s = rest.substr(0, nul);
  rest.remove_prefix(nul + 1);
  return true;
}

bool take32(std::string_view& rest, uint32_t& v) {
  if (rest.size() < 4) return false;
  v = get32(rest);
  rest.remove_prefix(4);
  return true;
}

MilterProtocolError bad_packet(std::string_view what, char cmd) {
  std::string m(what);
  m += " (response '";
  if (cmd >= 0x21 && cmd <= 0x7e) {
    m.push_back(cmd);
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    m += "\\x";
    m.push_back(kHex[(static_cast<uint8_t>(cmd) >> 4) & 0xf]);
    m.push_back(kHex[static_cast<uint8_t>(cmd) & 0xf]);
  }
  m += "')";
  return MilterProtocolError{std::move(m)};
}

// A header field name: printable ASCII without ':' (RFC 5322 ftext).
bool valid_header_name(std::string_view n) {
  return !n.empty() &&
         std::all_of(n.begin(), n.end(), [](char c) { return c >= 0x21 && c <= 0x7e && c != ':'; });
}

// A header value may fold (CRLF or LF followed by SP or TAB) but may not
// start a new line of its own: no bare CR, no line break before non-blank.
bool valid_header_value(std::string_view v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\r') {
      if (i + 1 >= v.size() || v[i + 1] != '\n') return false;
      continue;
    }
    if (v[i] == '\n' && (i + 1 >= v.size() || (v[i + 1] != ' ' && v[i + 1] != '\t'))) {
      return false;
    }
  }
  return true;
}

// Envelope strings (recipients, senders, ESMTP args): no control octets.
bool valid_envelope(std::string_view s) {
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return static_cast<uint8_t>(c) < 0x20 || c == 0x7f; });
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// "c.sss.ddd" (RFC 3463) at the front of `s`, followed by a space or the end.
size_t enhanced_length(std::string_view s) {
  size_t i = 0;
  for (int part = 0; part < 3; ++part) {
    const size_t start = i;
    while (i < s.size() && is_digit(s[i]) && i - start < 3) ++i;
    if (i == start || (part == 0 && i - start != 1)) return 0;
    if (part < 2) {
      if (i >= s.size() || s[i] != '.') return 0;
      ++i;
    }
  }
  return (i == s.size() || s[i] == ' ') ? i : 0;
}

Response parse_reply_code(std::string_view data, char cmd) {
  std::string_view text;
  if (!take_str(data, text) || !data.empty()) {
    return bad_packet("REPLYCODE text not NUL-terminated", cmd);
  }
  ReplyCode rc;
  size_t pos = 0;
  bool first = true;
  while (true) {
    const size_t eol = text.find("\r\n", pos);
    const std::string_view line =
        text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    const bool last = eol == std::string_view::npos;
    if (line.size() < 3 || (line[0] != '4' && line[0] != '5') || !is_digit(line[1]) ||
        !is_digit(line[2])) {
      return bad_packet("REPLYCODE line without a 4xx or 5xx code", cmd);
    }
    const auto code =
        static_cast<uint16_t>((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
    if (!first && code != rc.code) return bad_packet("REPLYCODE lines with different codes", cmd);
    const char sep = line.size() > 3 ? line[3] : ' ';
    if (sep != (last ? ' ' : '-')) {
      return bad_packet(last ? "REPLYCODE last line continued with '-'"
                             : "REPLYCODE line before the last without '-'",
                        cmd);
    }
    for (const char c : line) {
      if ((static_cast<uint8_t>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return bad_packet("REPLYCODE with a control character (bare CR or LF?)", cmd);
      }
    }
    if (first) {
      rc.code = code;
      if (line.size() > 4) {
        const std::string_view rest = line.substr(4);
        const size_t n = enhanced_length(rest);
        if (n > 0 && rest[0] == line[0]) rc.enhanced = std::string(rest.substr(0, n));
      }
    }
    first = false;
    if (last) break;
    pos = eol + 2;
  }
  rc.text = std::string(text);
  return rc;
}

Response parse_optneg(std::string_view data, char cmd) {
  OptNegReply r;
  if (!take32(data, r.version) || !take32(data, r.actions) || !take32(data, r.protocol)) {
    return bad_packet("OPTNEG shorter than version, actions and protocol", cmd);
  }
  while (!data.empty()) {
    uint32_t stage = 0;
    std::string_view names;
    if (!take32(data, stage) || !take_str(data, names)) {
      return bad_packet("OPTNEG macro list cut short (stage, names, NUL)", cmd);
    }
    if (stage >= kStageCount) return bad_packet("OPTNEG macro list names an unknown stage", cmd);
    if (r.macros[stage]) return bad_packet("OPTNEG macro list names a stage twice", cmd);
    r.macros[stage] = std::string(names);
  }
  return r;
}

// name NUL value NUL, after an optional index.
Response parse_header(std::string_view data, char cmd, const DecoderLimits& limits, bool indexed) {
  uint32_t index = 0;
  if (indexed && !take32(data, index)) return bad_packet("header change without its index", cmd);
  std::string_view name, value;
  if (!take_str(data, name) || !take_str(data, value)) {
    return bad_packet("header name or value not NUL-terminated", cmd);
  }
  if (!data.empty()) return bad_packet("octets after the header value", cmd);
  if (name.size() > limits.max_header_name) return bad_packet("header name over the limit", cmd);
  if (value.size() > limits.max_header_value) return bad_packet("header value over the limit", cmd);
  if (!valid_header_name(name)) return bad_packet("header name empty or not printable ASCII", cmd);
  if (!valid_header_value(value))
    return bad_packet("header value with a line break not folded", cmd);
  switch (static_cast<Reply>(cmd)) {
    case Reply::ins_header: return InsertHeader{index, std::string(name), std::string(value)};
    case Reply::chg_header: return ChangeHeader{index, std::string(name), std::string(value)};
    default: return AddHeader{std::string(name), std::string(value)};
  }
}

// One or two NUL-terminated envelope strings, the first not empty.
bool parse_envelope(std::string_view data, bool two_allowed, bool two_required,
                    std::string_view& first, std::string_view& second) {
  if (!take_str(data, first) || first.empty() || !valid_envelope(first)) return false;
  second = {};
  if (data.empty()) return !two_required;
  if (!two_allowed || !take_str(data, second) || !data.empty()) return false;
  return valid_envelope(second);
}

}  // namespace

void encode_optneg(std::string& out, uint32_t version, uint32_t actions, uint32_t protocol) {
  put32(out, 13);
  out.push_back(static_cast<char>(Command::optneg));
  put32(out, version);
  put32(out, actions);
  put32(out, protocol);
}

bool encode_macros(std::string& out, Command command,
                   std::span<const std::pair<std::string_view, std::string_view>> macros) {
  for (const auto& [name, value] : macros) {
    if (has_nul(name) || has_nul(value)) return false;
  }
  const size_t at = begin_packet(out, static_cast<char>(Command::macro));
  out.push_back(static_cast<char>(command));
  for (const auto& [name, value] : macros) {
    put_str(out, name);
    put_str(out, value);
  }
  end_packet(out, at);
  return true;
}

bool encode_connect(std::string& out, std::string_view hostname, Family family, uint16_t port,
                    std::string_view address) {
  if (has_nul(hostname) || has_nul(address)) return false;
  const size_t at = begin_packet(out, static_cast<char>(Command::connect));
  put_str(out, hostname);
  out.push_back(static_cast<char>(family));
  if (family != Family::unknown) {
    out.push_back(static_cast<char>(port >> 8));
    out.push_back(static_cast<char>(port & 0xff));
    put_str(out, address);
  }
  end_packet(out, at);
  return true;
}

bool encode_helo(std::string& out, std::string_view name) {
  if (has_nul(name)) return false;
  const size_t at = begin_packet(out, static_cast<char>(Command::helo));
  put_str(out, name);
  end_packet(out, at);
  return true;
}

bool encode_mail(std::string& out, std::string_view address,
                 std::span<const std::string_view> args) {
  return encode_envelope(out, Command::mail, address, args);
}

bool encode_rcpt(std::string& out, std::string_view address,
                 std::span<const std::string_view> args) {
  return encode_envelope(out, Command::rcpt, address, args);
}

void encode_data(std::string& out) {
  empty_packet(out, Command::data);
}

bool encode_header(std::string& out, std::string_view name, std::string_view value) {
  if (has_nul(name) || has_nul(value)) return false;
  const size_t at = begin_packet(out, static_cast<char>(Command::header));
  put_str(out, name);
  put_str(out, value);
  end_packet(out, at);
  return true;
}

void encode_eoh(std::string& out) {
  empty_packet(out, Command::eoh);
}

bool encode_body(std::string& out, std::string_view chunk, size_t max_chunk) {
  if (chunk.size() > max_chunk) return false;
  put32(out, static_cast<uint32_t>(chunk.size() + 1));
  out.push_back(static_cast<char>(Command::body));
  out.append(chunk);
  return true;
}

void encode_eob(std::string& out) {
  empty_packet(out, Command::eob);
}
void encode_abort(std::string& out) {
  empty_packet(out, Command::abort);
}
void encode_quit(std::string& out) {
  empty_packet(out, Command::quit);
}
void encode_quit_nc(std::string& out) {
  empty_packet(out, Command::quit_nc);
}

bool encode_unknown(std::string& out, std::string_view line) {
  if (has_nul(line)) return false;
  const size_t at = begin_packet(out, static_cast<char>(Command::unknown));
  put_str(out, line);
  end_packet(out, at);
  return true;
}

Reply reply_of(const Response& r) {
  struct Visitor {
    Reply operator()(const OptNegReply&) const { return Reply::optneg; }
    Reply operator()(const Verdict& v) const { return v.reply; }
    Reply operator()(const ReplyCode&) const { return Reply::reply_code; }
    Reply operator()(const AddHeader&) const { return Reply::add_header; }
    Reply operator()(const InsertHeader&) const { return Reply::ins_header; }
    Reply operator()(const ChangeHeader&) const { return Reply::chg_header; }
    Reply operator()(const AddRecipient&) const { return Reply::add_rcpt; }
    Reply operator()(const AddRecipientArgs&) const { return Reply::add_rcpt_par; }
    Reply operator()(const DeleteRecipient&) const { return Reply::del_rcpt; }
    Reply operator()(const ChangeFrom&) const { return Reply::chg_from; }
    Reply operator()(const ReplaceBody&) const { return Reply::repl_body; }
    Reply operator()(const Quarantine&) const { return Reply::quarantine; }
    Reply operator()(const MilterProtocolError&) const { return Reply::set_symlist; }
  };
  return std::visit(Visitor{}, r);
}

bool is_modification(const Response& r) {
  return std::holds_alternative<AddHeader>(r) || std::holds_alternative<InsertHeader>(r) ||
         std::holds_alternative<ChangeHeader>(r) || std::holds_alternative<AddRecipient>(r) ||
         std::holds_alternative<AddRecipientArgs>(r) ||
         std::holds_alternative<DeleteRecipient>(r) || std::holds_alternative<ChangeFrom>(r) ||
         std::holds_alternative<ReplaceBody>(r) || std::holds_alternative<Quarantine>(r);
}

Response parse_response(std::string_view packet, const DecoderLimits& limits) {
  if (packet.empty()) return MilterProtocolError{"empty packet (length 0)"};
  const char cmd = packet[0];
  std::string_view data = packet.substr(1);
  std::string_view a, b;
  switch (static_cast<Reply>(cmd)) {
    case Reply::accept:
    case Reply::cont:
    case Reply::discard:
    case Reply::reject:
    case Reply::tempfail:
    case Reply::skip:
    case Reply::progress:
    case Reply::shutdown:
    case Reply::conn_fail:
      if (!data.empty()) return bad_packet("data after a response that has none", cmd);
      return Verdict{static_cast<Reply>(cmd)};
    case Reply::reply_code: return parse_reply_code(data, cmd);
    case Reply::optneg: return parse_optneg(data, cmd);
    case Reply::add_header: return parse_header(data, cmd, limits, false);
    case Reply::ins_header:
    case Reply::chg_header: return parse_header(data, cmd, limits, true);
    case Reply::add_rcpt:
      if (!parse_envelope(data, false, false, a, b)) return bad_packet("malformed recipient", cmd);
      return AddRecipient{std::string(a)};
    case Reply::add_rcpt_par:
      if (!parse_envelope(data, true, true, a, b)) {
        return bad_packet("malformed recipient or its arguments", cmd);
      }
      return AddRecipientArgs{std::string(a), std::string(b)};
    case Reply::del_rcpt:
      if (!parse_envelope(data, false, false, a, b)) return bad_packet("malformed recipient", cmd);
      return DeleteRecipient{std::string(a)};
    case Reply::chg_from:
      if (!parse_envelope(data, true, false, a, b)) {
        return bad_packet("malformed sender or its arguments", cmd);
      }
      return ChangeFrom{std::string(a), std::string(b)};
    case Reply::repl_body: return ReplaceBody{std::string(data)};
    case Reply::quarantine:
      if (!take_str(data, a) || !data.empty() || a.empty()) {
        return bad_packet("quarantine reason empty or not NUL-terminated", cmd);
      }
      return Quarantine{std::string(a)};
    case Reply::set_symlist:
      return bad_packet("SETSYMLIST is not a response in protocol 6 (macros ride in OPTNEG)", cmd);
  }
  return bad_packet("unknown response", cmd);
}

MilterDecoder::MilterDecoder(const DecoderLimits& limits) : limits_(limits) {}

void MilterDecoder::fail(std::string message) {
  failed_ = true;
  len_have_ = 0;
  body_.clear();
  body_.shrink_to_fit();
  out_.emplace_back(MilterProtocolError{std::move(message)});
}

void MilterDecoder::packet(std::string_view p) {
  Response r = parse_response(p, limits_);
  const bool bad = is_error(r);
  out_.push_back(std::move(r));
  if (bad) {
    failed_ = true;
    body_.clear();
    body_.shrink_to_fit();
  }
}

void MilterDecoder::feed(std::string_view bytes) {
  if (head_ > 0 && head_ == out_.size()) {
    out_.clear();
    head_ = 0;
  }
  while (!failed_ && !bytes.empty()) {
    if (len_have_ < 4) {
      const size_t n = std::min(4 - len_have_, bytes.size());
      std::copy_n(bytes.begin(), n, len_buf_.begin() + static_cast<std::ptrdiff_t>(len_have_));
      len_have_ += n;
      bytes.remove_prefix(n);
      if (len_have_ < 4) break;
      need_ = get32(std::string_view(len_buf_.data(), 4));
      if (need_ == 0) return fail("packet of length 0");
      if (need_ > limits_.max_packet) {
        return fail("packet length " + std::to_string(need_) + " over the limit of " +
                    std::to_string(limits_.max_packet));
      }
    }
    if (body_.empty() && bytes.size() >= need_) {
      // The whole packet is in this piece: parse it in place.
      packet(bytes.substr(0, need_));
      bytes.remove_prefix(need_);
      len_have_ = 0;
      continue;
    }
    const size_t n = std::min<size_t>(need_ - body_.size(), bytes.size());
    body_.append(bytes.substr(0, n));
    bytes.remove_prefix(n);
    if (body_.size() == need_) {
      const std::string whole = std::move(body_);
      body_.clear();
      len_have_ = 0;
      packet(whole);
    }
  }
}

std::optional<Response> MilterDecoder::next() {
  if (head_ >= out_.size()) return std::nullopt;
  Response r = std::move(out_[head_++]);
  if (head_ == out_.size()) {
    out_.clear();
    head_ = 0;
  }
  return r;
}

}  // namespace ringmx::milter
