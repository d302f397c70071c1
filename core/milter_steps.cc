#include "core/milter_steps.h"

#include <algorithm>
#include <utility>
#include <variant>

namespace ringmx::milter {
namespace {

// Sendmail's SMFI_INTERNAL: bits between the MTA and libmilter, not features.
constexpr uint32_t kInternalBits = 0x70000000;

size_t chunk_of(uint32_t protocol) {
  if ((protocol & proto::kMds1M) != 0) return kChunk1M;
  if ((protocol & proto::kMds256K) != 0) return kChunk256K;
  return kChunk64K;
}

std::string hex(uint32_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s.push_back(kDigits[(v >> shift) & 0xf]);
  return s;
}

}  // namespace

bool Negotiated::skips(Command c) const {
  switch (c) {
    case Command::connect: return has(proto::kNoConnect);
    case Command::helo: return has(proto::kNoHelo);
    case Command::mail: return has(proto::kNoMail);
    case Command::rcpt: return has(proto::kNoRcpt);
    case Command::data: return has(proto::kNoData);
    case Command::header: return has(proto::kNoHeaders);
    case Command::eoh: return has(proto::kNoEoh);
    case Command::body: return has(proto::kNoBody);
    case Command::unknown: return has(proto::kNoUnknown);
    default: return false;
  }
}

bool Negotiated::no_reply(Command c) const {
  switch (c) {
    case Command::connect: return has(proto::kNrConnect);
    case Command::helo: return has(proto::kNrHelo);
    case Command::mail: return has(proto::kNrMail);
    case Command::rcpt: return has(proto::kNrRcpt);
    case Command::data: return has(proto::kNrData);
    case Command::header: return has(proto::kNrHeader);
    case Command::eoh: return has(proto::kNrEoh);
    case Command::body: return has(proto::kNrBody);
    case Command::unknown: return has(proto::kNrUnknown);
    case Command::macro:
    case Command::abort:
    case Command::quit:
    case Command::quit_nc: return true;
    case Command::eob:
    case Command::optneg: return false;
  }
  return false;
}

NegotiationResult negotiate(const Offer& offer, const OptNegReply& reply) {
  NegotiationResult r;
  if (reply.version < 2 || reply.version > offer.version) {
    r.error = "milter protocol version " + std::to_string(reply.version) + " (the MTA speaks 2.." +
              std::to_string(offer.version) + ")";
    return r;
  }
  if ((reply.actions & ~offer.actions) != 0) {
    r.error = "milter wants actions " + hex(reply.actions & ~offer.actions) + " not offered";
    return r;
  }
  const uint32_t features = reply.protocol & ~kInternalBits;
  if ((features & ~offer.protocol) != 0) {
    r.error = "milter wants protocol flags " + hex(features & ~offer.protocol) + " not offered";
    return r;
  }
  Negotiated& t = r.terms;
  t.version = reply.version;
  t.actions = reply.actions;
  t.protocol = features;
  if (t.version <= 2) t.protocol |= proto::kNoUnknown;
  if (t.version <= 3) t.protocol |= proto::kNoData;
  t.chunk = std::min(chunk_of(offer.protocol), chunk_of(reply.protocol));
  t.reply = reply;
  r.ok = true;
  return r;
}

uint32_t required_action(const Response& r) {
  if (std::holds_alternative<AddHeader>(r) || std::holds_alternative<InsertHeader>(r)) {
    return action::kAddHeaders;
  }
  if (std::holds_alternative<ChangeHeader>(r)) return action::kChangeHeaders;
  if (std::holds_alternative<AddRecipient>(r)) return action::kAddRcpt;
  if (std::holds_alternative<AddRecipientArgs>(r)) return action::kAddRcptPar;
  if (std::holds_alternative<DeleteRecipient>(r)) return action::kDelRcpt;
  if (std::holds_alternative<ChangeFrom>(r)) return action::kChangeFrom;
  if (std::holds_alternative<ReplaceBody>(r)) return action::kChangeBody;
  if (std::holds_alternative<Quarantine>(r)) return action::kQuarantine;
  return 0;
}

MilterReplyTracker::MilterReplyTracker(const Negotiated& terms, const TrackerLimits& limits)
    : terms_(terms), limits_(limits) {}

MilterReplyTracker::Send MilterReplyTracker::sent(Command c) {
  if (c == Command::quit) {
    due_.clear();
    modifications_ = 0;
    return Send::no_reply;
  }
  if (!due_.empty()) return Send::out_of_turn;
  return record(c);
}

MilterReplyTracker::Send MilterReplyTracker::sent_pipelined(Command c) {
  const auto in_message = [](char x) {
    const auto cmd = static_cast<Command>(x);
    return cmd == Command::header || cmd == Command::eoh || cmd == Command::body;
  };
  const bool message_part =
      c == Command::header || c == Command::eoh || c == Command::body || c == Command::eob;
  if (!message_part || !std::all_of(due_.begin(), due_.end(), in_message)) return sent(c);
  return record(c);
}

MilterReplyTracker::Send MilterReplyTracker::record(Command c) {
  if (c == Command::abort || c == Command::quit_nc) modifications_ = 0;
  if (c == Command::eob) modifications_ = 0;
  if (terms_.no_reply(c)) return Send::no_reply;
  due_.push_back(static_cast<char>(c));
  return Send::reply_due;
}

MilterReplyTracker::Outcome MilterReplyTracker::fail(std::string message) {
  failed_ = true;
  error_ = std::move(message);
  due_.clear();
  return Outcome::error;
}

MilterReplyTracker::Outcome MilterReplyTracker::on_response(const Response& r) {
  if (failed_) return Outcome::error;
  if (const auto* e = std::get_if<MilterProtocolError>(&r)) return fail(e->message);
  const Reply code = reply_of(r);
  const std::string what = std::string("response '") + static_cast<char>(code) + "'";
  if (due_.empty()) return fail(what + " when no reply is due");
  const auto step = static_cast<Command>(due_.front());
  const std::string to = std::string(" to command '") + due_.front() + "'";
  if (code == Reply::progress) return Outcome::interim;
  if (step == Command::optneg || code == Reply::optneg) {
    if (step != Command::optneg || code != Reply::optneg) return fail(what + to);
    due_.pop_front();
    return Outcome::final;
  }
  if (is_modification(r)) {
    if (step != Command::eob) return fail("modification " + what + to + " (only after EOB)");
    if (!terms_.allows(required_action(r))) {
      return fail("modification " + what + " not among the agreed actions");
    }
    if (modifications_ >= limits_.max_modifications) {
      return fail("more than " + std::to_string(limits_.max_modifications) +
                  " modifications for one message");
    }
    ++modifications_;
    return Outcome::interim;
  }
  if (code == Reply::skip && (step != Command::body || !terms_.skip_allowed())) {
    return fail(what + to + " (SKIP answers BODY only, when agreed)");
  }
  due_.pop_front();
  return Outcome::final;
}

}  // namespace ringmx::milter
