// Contract: see milter_client.h.
#include "core/milter_client.h"

#include <algorithm>
#include <type_traits>
#include <utility>
#include <variant>

namespace ringmx::milter {
namespace {

constexpr int64_t kNsPerMs = 1'000'000;

// "{daemon_name}" and "daemon_name" name the same macro.
std::string_view bare(std::string_view name) {
  if (name.size() >= 2 && name.front() == '{' && name.back() == '}') {
    return name.substr(1, name.size() - 2);
  }
  return name;
}

bool listed(std::string_view list, std::string_view name) {
  const std::string_view want = bare(name);
  size_t i = 0;
  while (i < list.size()) {
    while (i < list.size() && (list[i] == ' ' || list[i] == ',')) ++i;
    size_t j = i;
    while (j < list.size() && list[j] != ' ' && list[j] != ',') ++j;
    if (j > i && bare(list.substr(i, j - i)) == want) return true;
    i = j;
  }
  return false;
}

// One line of `s` from `at`: its length with the line end, and without.
void line_at(std::string_view s, size_t at, size_t& with_end, size_t& without_end) {
  const size_t nl = s.find('\n', at);
  if (nl == std::string_view::npos) {
    with_end = without_end = s.size() - at;
    return;
  }
  with_end = nl + 1 - at;
  without_end = nl - at;
  if (without_end > 0 && s[nl - 1] == '\r') --without_end;
}

// Octets a modification holds (what the bound on them counts).
size_t modification_size(const Response& r) {
  return std::visit(
      [](const auto& m) -> size_t {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, AddHeader> || std::is_same_v<T, InsertHeader> ||
                      std::is_same_v<T, ChangeHeader>) {
          return m.name.size() + m.value.size() + 4;
        } else if constexpr (std::is_same_v<T, AddRecipient> ||
                             std::is_same_v<T, DeleteRecipient>) {
          return m.rcpt.size();
        } else if constexpr (std::is_same_v<T, AddRecipientArgs>) {
          return m.rcpt.size() + m.args.size();
        } else if constexpr (std::is_same_v<T, ChangeFrom>) {
          return m.from.size() + m.args.size();
        } else if constexpr (std::is_same_v<T, ReplaceBody>) {
          return m.chunk.size();
        } else if constexpr (std::is_same_v<T, Quarantine>) {
          return m.reason.size();
        } else {
          return 0;
        }
      },
      r);
}

}  // namespace

const char* step_kind_name(StepResult::Kind k) {
  switch (k) {
    case StepResult::Kind::cont: return "continue";
    case StepResult::Kind::accept: return "accept";
    case StepResult::Kind::reject: return "reject";
    case StepResult::Kind::tempfail: return "tempfail";
    case StepResult::Kind::discard: return "discard";
    case StepResult::Kind::shutdown: return "shutdown";
    case StepResult::Kind::failed: return "failed";
  }
  return "failed";
}

MilterClient::MilterClient(const Offer& offer, const ClientTimeouts& timeouts,
                           size_t max_modification_bytes, const DecoderLimits& decoder,
                           const TrackerLimits& tracker)
    : offer_(offer),
      timeouts_(timeouts),
      decoder_(decoder),
      tracker_limits_(tracker),
      max_mod_bytes_(max_modification_bytes) {}

void MilterClient::connecting(int64_t now_ns) {
  now_ns_ = now_ns;
  deadline_ns_ = now_ns + int64_t{timeouts_.connect_ms} * kNsPerMs;
}

void MilterClient::connected(int64_t now_ns) {
  now_ns_ = now_ns;
  if (failed_ || optneg_sent_) return;
  encode_optneg(out_, offer_.version, offer_.actions, offer_.protocol);
  optneg_sent_ = true;
  deadline_ns_ = now_ns + int64_t{timeouts_.connect_ms} * kNsPerMs;  // negotiation too
}

void MilterClient::feed(std::string_view bytes, int64_t now_ns) {
  now_ns_ = now_ns;
  if (failed_ || quit_ || out_of_step_) return;
  decoder_.feed(bytes);
  while (!failed_ && decoder_.has_next()) {
    std::optional<Response> r = decoder_.next();
    if (!r) break;
    on_response(std::move(*r));
  }
}

void MilterClient::connection_lost(ErrorKind kind, int64_t now_ns) {
  now_ns_ = now_ns;
  if (failed_ || quit_) return;
  fail(std::string("connection ") + (optneg_sent_ ? "lost: " : "failed: ") + error_kind_name(kind));
}

void MilterClient::consume_output(size_t n) {
  out_off_ += n;
  if (out_off_ >= out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ >= kOutputHigh) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  if (step_ == StepKind::none || (waiting_ && !may_pipeline())) return;
  pump();  // a body held back for room
}

void MilterClient::timeout(int64_t now_ns) {
  now_ns_ = now_ns;
  if (failed_ || deadline_ns_ == 0 || now_ns < deadline_ns_) return;
  std::string what = !optneg_sent_ ? "connect"
                     : !tracker_   ? "option negotiation"
                     : waiting_    ? "the answer to a command"
                                   : "the conversation";
  fail("timed out waiting for " + what, true);
}

std::optional<StepResult> MilterClient::take_result() {
  std::optional<StepResult> r = std::move(result_);
  result_.reset();
  return r;
}

void MilterClient::begin(StepKind kind, int64_t now_ns) {
  now_ns_ = now_ns;
  step_ = kind;
  result_.reset();
  started_ = false;
  pending_.reset();
  if (out_of_step_ && !failed_) {
    fail("out of step: a verdict came before the answers to the commands sent behind it");
  }
  if (failed_) {
    StepResult r;
    r.kind = StepResult::Kind::failed;
    r.error = error_;
    finish(std::move(r));
    return;
  }
  if (kind == StepKind::mail) msg_accepted_ = false;
  const bool in_scope_of_message =
      kind == StepKind::rcpt || kind == StepKind::data || kind == StepKind::message;
  if (conn_accepted_ || (msg_accepted_ && in_scope_of_message) || quit_) finish(StepResult{});
}

void MilterClient::simple(int64_t now_ns, StepKind kind, Command c, Stage stage,
                          const Macros& macros, std::string packet) {
  begin(kind, now_ns);
  if (step_ == StepKind::none) return;
  if (packet.empty()) {  // a NUL in a field: the milter cannot be told
    StepResult r;
    r.kind = StepResult::Kind::failed;
    r.error = "a field holds a NUL octet";
    finish(std::move(r));
    return;
  }
  Pending p;
  p.command = c;
  p.packet = std::move(packet);
  pending_ = std::move(p);
  pending_stage_ = stage;
  pending_macros_ = macros;
  if (tracker_) pump();
}

void MilterClient::connect(int64_t now_ns, const Macros& macros, std::string_view hostname,
                           Family family, uint16_t port, std::string_view address) {
  std::string p;
  if (!encode_connect(p, hostname, family, port, address)) p.clear();
  simple(now_ns, StepKind::connect, Command::connect, Stage::connect, macros, std::move(p));
}

void MilterClient::helo(int64_t now_ns, const Macros& macros, std::string_view name) {
  std::string p;
  if (!encode_helo(p, name)) p.clear();
  simple(now_ns, StepKind::helo, Command::helo, Stage::helo, macros, std::move(p));
}

void MilterClient::mail(int64_t now_ns, const Macros& macros, std::string_view sender,
                        std::span<const std::string> args) {
  std::vector<std::string_view> a(args.begin(), args.end());
  std::string p;
  if (!encode_mail(p, sender, a)) p.clear();
  simple(now_ns, StepKind::mail, Command::mail, Stage::mail, macros, std::move(p));
}

void MilterClient::rcpt(int64_t now_ns, const Macros& macros, std::string_view rcpt,
                        std::span<const std::string> args) {
  std::vector<std::string_view> a(args.begin(), args.end());
  std::string p;
  if (!encode_rcpt(p, rcpt, a)) p.clear();
  simple(now_ns, StepKind::rcpt, Command::rcpt, Stage::rcpt, macros, std::move(p));
}

void MilterClient::data(int64_t now_ns, const Macros& macros) {
  std::string p;
  encode_data(p);
  simple(now_ns, StepKind::data, Command::data, Stage::data, macros, std::move(p));
}

void MilterClient::unknown(int64_t now_ns, const Macros& macros, std::string_view line) {
  std::string p;
  if (!encode_unknown(p, line)) p.clear();
  // No macro stage of its own in protocol 6: the milter's lists cannot name
  // any, so none are sent.
  (void)macros;
  simple(now_ns, StepKind::unknown, Command::unknown, Stage::eom, {}, std::move(p));
}

void MilterClient::message(int64_t now_ns, const Macros& eoh_macros, const Macros& eom_macros,
                           std::string_view prepended, std::string_view message) {
  begin(StepKind::message, now_ns);
  if (step_ == StepKind::none) return;
  prepended_ = prepended;
  message_ = message;
  header_at_ = 0;
  body_at_ = message.size();
  eoh_macros_ = eoh_macros;
  eom_macros_ = eom_macros;
  mods_.clear();
  mod_bytes_ = 0;
  chunks_sent_ = 0;
  part_ = Part::headers;
  if (tracker_) pump();
}

void MilterClient::quit() {
  if (quit_) return;
  quit_ = true;
  deadline_ns_ = 0;
  if (tracker_ && !failed_) {
    tracker_->sent(Command::quit);
    encode_quit(out_);
  }
  step_ = StepKind::none;
  waiting_ = false;
}

bool MilterClient::reusable() const {
  return tracker_ && terms_.version >= 6 && !failed_ && !quit_ && !out_of_step_ &&
         step_ == StepKind::none && !tracker_->reply_due();
}

void MilterClient::end_session() {
  if (!reusable()) return;
  if (in_message_) {
    tracker_->sent(Command::abort);
    encode_abort(out_);
  }
  tracker_->sent(Command::quit_nc);
  encode_quit_nc(out_);
  conn_accepted_ = msg_accepted_ = in_message_ = false;
  mods_.clear();
  mod_bytes_ = 0;
  result_.reset();
  deadline_ns_ = 0;
}

void MilterClient::append_macros(Command c, Stage stage, const Macros& macros) {
  if (macros.empty()) return;
  const std::optional<std::string>& list = terms_.macros(stage);
  std::vector<std::pair<std::string_view, std::string_view>> send;
  send.reserve(macros.size());
  for (const auto& [name, value] : macros) {
    if (list && !listed(*list, name)) continue;
    send.emplace_back(name, value);
  }
  if (send.empty()) return;
  if (!encode_macros(out_, c, send)) {
    // A value with a NUL: send the others.
    std::erase_if(send, [](const auto& m) {
      return m.first.find('\0') != std::string_view::npos ||
             m.second.find('\0') != std::string_view::npos;
    });
    if (!send.empty()) encode_macros(out_, c, send);
  }
}

bool MilterClient::send_command(Command c) {
  const MilterReplyTracker::Send sent =
      step_ == StepKind::message ? tracker_->sent_pipelined(c) : tracker_->sent(c);
  if (sent == MilterReplyTracker::Send::reply_due) {
    waiting_ = true;
    const uint32_t ms = c == Command::eob ? timeouts_.eom_ms : timeouts_.command_ms;
    deadline_ns_ = now_ns_ + int64_t{ms} * kNsPerMs;
  }
  return true;
}

void MilterClient::pump() {
  if (!tracker_) return;  // the step goes once negotiation is done
  // The message's commands go without waiting for each answer (pipelined;
  // their answers come in order); any other command waits for its answer.
  while (!failed_ && step_ != StepKind::none && (!waiting_ || may_pipeline())) {
    if (out_.size() - out_off_ >= kOutputHigh) return;
    if (!started_) {
      started_ = true;
      const bool opens_transaction = step_ == StepKind::mail || step_ == StepKind::helo;
      if (opens_transaction && in_message_) {
        tracker_->sent(Command::abort);
        encode_abort(out_);
        in_message_ = false;
      }
    }
    if (!send_next()) {
      if (!waiting_) finish(StepResult{});
      return;
    }
  }
}

// While answers are due, the message's next command may still go: every
// one of them, but a body chunk after the first when the milter may SKIP
// (its SKIP is to spare it the rest: each chunk then waits for the answer
// to the one before).
bool MilterClient::may_pipeline() const {
  if (step_ != StepKind::message || part_ == Part::done) return false;
  return !(part_ == Part::body && chunks_sent_ > 0 && terms_.skip_allowed());
}

bool MilterClient::send_next() {
  if (step_ != StepKind::message) {
    if (!pending_) return false;
    Pending p = std::move(*pending_);
    pending_.reset();
    if (p.command == Command::mail) in_message_ = true;
    if (terms_.skips(p.command)) return true;  // not wanted: on to the end of the step
    append_macros(p.command, pending_stage_, pending_macros_);
    out_ += p.packet;
    return send_command(p.command);
  }
  switch (part_) {
    case Part::headers: {
      std::string_view name, value;
      if (!next_header(name, value)) {
        part_ = Part::eoh;
        return true;
      }
      if (terms_.skips(Command::header)) return true;
      std::string v;
      v.reserve(value.size());
      // Folded lines reach the milter as LF-separated lines, as the MTAs
      // that defined the protocol keep them.
      for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '\r' && i + 1 < value.size() && value[i + 1] == '\n') continue;
        v.push_back(value[i]);
      }
      if (!encode_header(out_, name, v)) return true;  // a NUL: not sendable, skipped
      return send_command(Command::header);
    }
    case Part::eoh:
      part_ = Part::body;
      if (terms_.skips(Command::eoh)) return true;
      append_macros(Command::eoh, Stage::eoh, eoh_macros_);
      encode_eoh(out_);
      return send_command(Command::eoh);
    case Part::body: {
      if (terms_.skips(Command::body) || body_at_ >= message_.size()) {
        part_ = Part::eob;
        return true;
      }
      const size_t n = std::min(terms_.chunk, message_.size() - body_at_);
      encode_body(out_, message_.substr(body_at_, n), terms_.chunk);
      body_at_ += n;
      ++chunks_sent_;
      return send_command(Command::body);
    }
    case Part::eob:
      part_ = Part::done;
      append_macros(Command::eob, Stage::eom, eom_macros_);
      encode_eob(out_);
      return send_command(Command::eob);
    case Part::done: return false;
  }
  return false;
}

// The header fields of prepended_ and then message_, one per call. Sets
// body_at_ when the message's header section ends (at its empty line, or at
// a line that is not a header field: the rest is body).
bool MilterClient::next_header(std::string_view& name, std::string_view& value) {
  const bool in_prepended = header_at_ < prepended_.size();
  const std::string_view s = in_prepended ? prepended_ : message_;
  const size_t base = in_prepended ? 0 : prepended_.size();
  size_t at = header_at_ - base;
  if (at >= s.size()) {
    if (in_prepended) return false;  // unreachable: header_at_ < size
    body_at_ = message_.size();
    return false;
  }
  size_t with_end = 0, line_len = 0;
  line_at(s, at, with_end, line_len);
  const std::string_view first = s.substr(at, line_len);
  const size_t colon = first.find(':');
  std::string_view n =
      colon == std::string_view::npos ? std::string_view{} : first.substr(0, colon);
  while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
  const bool field = !n.empty() && std::none_of(n.begin(), n.end(), [](char ch) {
    return static_cast<unsigned char>(ch) <= ' ' || static_cast<unsigned char>(ch) >= 127;
  });
  if (!field) {
    if (in_prepended) {  // our own fields are well formed; skip a stray line
      header_at_ += with_end;
      return next_header(name, value);
    }
    body_at_ = line_len == 0 ? at + with_end : at;  // the empty line is not body
    header_at_ = base + s.size();
    return false;
  }
  size_t end = at + with_end;
  while (end < s.size() && (s[end] == ' ' || s[end] == '\t')) {
    size_t w = 0, l = 0;
    line_at(s, end, w, l);
    end += w;
  }
  name = n;
  size_t v = at + colon + 1;
  if (!terms_.header_leading_space()) {
    while (v < end && (s[v] == ' ' || s[v] == '\t')) ++v;
  }
  size_t vend = end;
  if (vend > v && s[vend - 1] == '\n') --vend;
  if (vend > v && s[vend - 1] == '\r') --vend;
  value = s.substr(v, vend - v);
  header_at_ = base + end;
  if (in_prepended && header_at_ >= prepended_.size()) header_at_ = prepended_.size();
  return true;
}

void MilterClient::finish(StepResult r) {
  step_ = StepKind::none;
  pending_.reset();
  waiting_ = false;
  if (!failed_) deadline_ns_ = 0;
  result_ = std::move(r);
}

void MilterClient::fail(std::string why, bool timed_out) {
  failed_ = true;
  error_ = std::move(why);
  deadline_ns_ = 0;
  waiting_ = false;
  if (step_ != StepKind::none) {
    StepResult r;
    r.kind = StepResult::Kind::failed;
    r.error = error_;
    r.timed_out = timed_out;
    finish(std::move(r));
  }
}

void MilterClient::on_response(Response r) {
  if (is_error(r)) {
    fail("protocol error: " + std::get<MilterProtocolError>(r).message);
    return;
  }
  if (!tracker_) {
    const auto* reply = std::get_if<OptNegReply>(&r);
    if (reply == nullptr || !optneg_sent_) {
      fail("protocol error: an answer before option negotiation");
      return;
    }
    NegotiationResult n = negotiate(offer_, *reply);
    if (!n.ok) {
      fail("negotiation: " + n.error);
      return;
    }
    terms_ = std::move(n.terms);
    tracker_.emplace(terms_, tracker_limits_);
    deadline_ns_ = 0;
    if (step_ != StepKind::none) pump();
    return;
  }
  const Command answered = tracker_->reply_due() ? tracker_->pending() : Command::optneg;
  switch (tracker_->on_response(r)) {
    case MilterReplyTracker::Outcome::error: fail("protocol error: " + tracker_->error()); return;
    case MilterReplyTracker::Outcome::interim:
      if (reply_of(r) == Reply::progress) {
        const bool eob = tracker_->pending() == Command::eob;
        deadline_ns_ = now_ns_ + int64_t{eob ? timeouts_.eom_ms : timeouts_.command_ms} * kNsPerMs;
      } else {
        mod_bytes_ += modification_size(r);
        if (mod_bytes_ > max_mod_bytes_) {
          fail("protocol error: the changes to one message exceed " +
               std::to_string(max_mod_bytes_) + " octets");
          return;
        }
        mods_.push_back(std::move(r));
      }
      return;
    case MilterReplyTracker::Outcome::final: {
      waiting_ = tracker_->reply_due();
      deadline_ns_ = 0;
      if (waiting_) {  // the replies to the commands pipelined behind it
        const bool eob = tracker_->pending() == Command::eob;
        deadline_ns_ = now_ns_ + int64_t{eob ? timeouts_.eom_ms : timeouts_.command_ms} * kNsPerMs;
      }
      on_final(r, answered);
      return;
    }
  }
}

void MilterClient::on_final(const Response& r, Command answered) {
  if (step_ == StepKind::none) return;  // after quit(): nothing is asked any more
  const bool at_eob = answered == Command::eob;
  if (at_eob) in_message_ = false;
  StepResult out;
  if (const auto* rc = std::get_if<ReplyCode>(&r)) {
    out.kind = rc->code >= 500 ? StepResult::Kind::reject : StepResult::Kind::tempfail;
    out.reply = *rc;
    verdict(std::move(out));
    return;
  }
  switch (reply_of(r)) {
    case Reply::cont: pump(); return;
    case Reply::skip:
      if (part_ == Part::body) part_ = Part::eob;  // no more chunks (some may be out already)
      pump();
      return;
    case Reply::accept:
      if (step_ == StepKind::connect || step_ == StepKind::helo) {
        conn_accepted_ = true;
      } else if (!at_eob) {
        msg_accepted_ = true;
      }
      out.kind = StepResult::Kind::accept;
      break;
    case Reply::reject: out.kind = StepResult::Kind::reject; break;
    case Reply::tempfail: out.kind = StepResult::Kind::tempfail; break;
    case Reply::discard:
      out.kind = StepResult::Kind::discard;
      if (!at_eob) msg_accepted_ = true;  // nothing more of this message is wanted
      break;
    case Reply::shutdown:
    case Reply::conn_fail: out.kind = StepResult::Kind::shutdown; break;
    default: fail("protocol error: an unexpected answer"); return;
  }
  verdict(std::move(out));
}

// A step's verdict. In the middle of a pipelined message, with commands sent
// behind the one answered, the conversation is out of step: libmilter
// ignores those commands without a word, other implementations answer them,
// so no later reply can be trusted. The verdict stands; the connection is
// not used again (out_of_step(): the owner closes it, later steps fail).
void MilterClient::verdict(StepResult out) {
  if (tracker_->reply_due()) {
    out_of_step_ = true;
    waiting_ = false;
    deadline_ns_ = 0;
  }
  finish(std::move(out));
}

}  // namespace ringmx::milter
