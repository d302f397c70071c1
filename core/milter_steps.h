// Contract: what the MTA and one milter agreed in option negotiation, and the
// rules of the conversation that follows (protocol 6, MTA side, no I/O).
//
// negotiate(): the MTA offered (OPTNEG) a version, the actions it lets a
// milter take and the protocol flags it understands; the milter's OPTNEG
// reply is checked as Sendmail checks it: version 2..offered, its actions and
// its protocol flags (the MDS size bits and bit 30, Sendmail's SMFI_INTERNAL,
// aside) a subset of the offer. Version 2 implies NOUNKNOWN, versions 2 and 3
// NODATA (they do not know those steps).
// The body chunk size is the smaller of the MTA's offer and the milter's
// MDS bits (64 KiB - 1 without either).
//
// MilterReplyTracker: the owner tells it each command it sends (sent()) and
// hands it each decoded response (on_response()). It knows whether a reply is
// due (the NR_* flags make a step answerless; MACRO, ABORT, QUIT and QUIT_NC
// never get one), which responses a step may get (SKIP only to BODY and only
// when SKIP was agreed; modifications only after EOB, only those the agreed
// actions allow, at most max_modifications per message; PROGRESS whenever a
// reply is due), and refuses anything else as a protocol error: after one,
// the tracker stays failed and the owner drops the milter's connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "core/milter_codec.h"

namespace ringmx::milter {

// What the MTA offers in its OPTNEG.
struct Offer {
  uint32_t version = kProtocolVersion;
  uint32_t actions = action::kAll;
  uint32_t protocol = proto::kAll;  // with kMds256K / kMds1M: the largest chunk it accepts
};

struct Negotiated {
  uint32_t version = 0;
  uint32_t actions = 0;
  uint32_t protocol = 0;  // the milter's flags (MDS bits removed), plus NOUNKNOWN/NODATA for v2/v3
  size_t chunk = kChunk64K;  // largest BODY data (and the REPLBODY the milter will send)
  OptNegReply reply;         // as received, for its macro lists

  bool has(uint32_t flag) const { return (protocol & flag) != 0; }
  bool allows(uint32_t act) const { return (actions & act) == act; }
  // The milter does not want this step (SMFIP_NO*): the MTA does not send it.
  bool skips(Command c) const;
  // The milter does not answer this step (SMFIP_NR_*, or a command that never has a reply).
  bool no_reply(Command c) const;
  bool skip_allowed() const { return has(proto::kSkip); }
  bool wants_rejected_rcpts() const { return has(proto::kRcptRej); }
  bool header_leading_space() const { return has(proto::kHdrLeadSpace); }
  // The macros the milter asked for at `stage`; null when it sent no list for it.
  const std::optional<std::string>& macros(Stage stage) const {
    return reply.macros[static_cast<size_t>(stage)];
  }
};

// The agreed terms, or an error message saying why the milter cannot be used.
struct NegotiationResult {
  bool ok = false;
  Negotiated terms;
  std::string error;
};
NegotiationResult negotiate(const Offer& offer, const OptNegReply& reply);

struct TrackerLimits {
  size_t max_modifications = 1000;  // per message (between EOB and its final reply)
};

class MilterReplyTracker {
 public:
  enum class Send : uint8_t {
    reply_due,    // wait for the reply (on_response until `final`)
    no_reply,     // nothing comes back: send the next command when ready
    out_of_turn,  // a reply to the previous command is still due: not recorded
  };
  enum class Outcome : uint8_t {
    final,    // the reply to the command: the next one may go
    interim,  // PROGRESS or a modification: the reply is still due
    error,    // a protocol error: error() says which
  };

  explicit MilterReplyTracker(const Negotiated& terms, const TrackerLimits& limits = {});

  // The owner sends `c` (after its MACRO, if any), one command at a time:
  // the milter answers every command it was sent, so nothing but QUIT may
  // go while a reply is due (not even ABORT: the late reply would then look
  // unasked for). QUIT may go at any time; the owner then closes the
  // connection without reading further.
  Send sent(Command c);
  // The message's commands (HEADER, EOH, BODY, EOB) may go behind one
  // another without waiting: their replies are due in order. Anything else
  // is as sent().
  Send sent_pipelined(Command c);
  Outcome on_response(const Response& r);

  bool reply_due() const { return !due_.empty(); }
  size_t replies_due() const { return due_.size(); }
  // The command whose reply comes next (meaningful while reply_due()).
  Command pending() const { return static_cast<Command>(due_.front()); }
  size_t modifications() const { return modifications_; }
  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }

 private:
  Outcome fail(std::string message);
  Send record(Command c);

  Negotiated terms_;
  TrackerLimits limits_;
  std::deque<char> due_;  // commands whose replies are due, oldest first
  size_t modifications_ = 0;
  bool failed_ = false;
  std::string error_;
};

// The action flag a modification needs (0 for anything else).
uint32_t required_action(const Response& r);

}  // namespace ringmx::milter
