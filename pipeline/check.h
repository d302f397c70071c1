// The policy check interface: how ringmx decides, stage by stage, whether
// to take a client's mail. A check looks at what the session knows so far
// (CheckContext) and concludes with a CheckResult: nothing to say, accept
// the stage, refuse (5xx), refuse for now (4xx), or add to the connection's
// score. It may look things up in DNS first: the session waits (its
// pipelined input with it) until every check of the stage has concluded.
//
// Checks are built once per configuration (a CheckSet), shared read-only by
// every connection of every shard, and hold no per-connection state: what a
// check learns about a client goes into the context.
//
// Writing one (see pipeline/checks/example_check.h for a complete one):
//
//   class NoBareRoot final : public Check {
//    public:
//     std::string_view name() const override { return "no_root"; }
//     uint32_t stages() const override { return stage_bit(CheckStage::rcpt); }
//     void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
//       if (ctx.rcpt->address.starts_with("root@"))
//         return done(CheckResult::reject(550, "5.7.1", "Error: no mail for root", "root"));
//       done(CheckResult::next());
//     }
//   };
//
// and add it to the set with CheckSet::add() (pipeline/check_set.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/client_memory.h"
#include "core/dns_lookup.h"
#include "core/envelope.h"
#include "core/ip_network.h"
#include "core/message_edits.h"
#include "core/session.h"

namespace ringmx {

class MilterChannel;
class MilterConnector;
namespace milter {
struct AddHeader;
}

enum class CheckStage : uint8_t {
  connect,  // the client connected (before the greeting)
  helo,     // HELO/EHLO: ctx.helo is the name it gave
  mail,     // MAIL FROM: ctx.envelope has the sender
  rcpt,     // RCPT TO: ctx.rcpt is the recipient asked for
  data,     // DATA or the first BDAT: the envelope is complete
  message,  // the end of the message: ctx.message is all of it
  count_,
};
inline constexpr size_t kCheckStages = static_cast<size_t>(CheckStage::count_);
std::string_view check_stage_name(CheckStage s);
constexpr uint32_t stage_bit(CheckStage s) {
  return uint32_t{1} << static_cast<unsigned>(s);
}

struct CheckResult {
  enum class Action : uint8_t {
    next,      // nothing to decide (the score still counts)
    accept,    // the stage passes: later checks' refusals at this stage are not applied
    reject,    // refused: `code` 5xx
    tempfail,  // refused for now: `code` 4xx
    // Taken, but held in the queue until an operator releases it
    // (ringmxctl queue release): the transaction's mail, or the
    // connection's when decided at connect or HELO.
    quarantine,
  };
  Action action = Action::next;
  int32_t score = 0;  // added to the connection's score (may be negative)
  uint16_t code = 0;
  std::string enhanced;
  std::string text;
  std::string reason;  // why, for the log line (never sent to the client)

  static CheckResult next() { return {}; }
  static CheckResult add(int32_t score, std::string reason) {
    CheckResult r;
    r.score = score;
    r.reason = std::move(reason);
    return r;
  }
  static CheckResult accept(std::string reason) {
    CheckResult r;
    r.action = Action::accept;
    r.reason = std::move(reason);
    return r;
  }
  static CheckResult quarantine(std::string reason) {
    CheckResult r;
    r.action = Action::quarantine;
    r.reason = std::move(reason);
    return r;
  }
  static CheckResult reject(uint16_t code, std::string enhanced, std::string text,
                            std::string reason) {
    CheckResult r;
    r.action = code < 500 ? Action::tempfail : Action::reject;
    r.code = code;
    r.enhanced = std::move(enhanced);
    r.text = std::move(text);
    r.reason = std::move(reason);
    return r;
  }
};

// The client's reverse DNS (RFC 8601 iprev), found once per connection by
// the PTR check and read by others (the trace header, the HELO check).
struct IprevFacts {
  enum class State : uint8_t { unknown, pass, fail, temperror, permerror };
  State state = State::unknown;
  bool has_ptr = false;       // the address has at least one PTR name
  std::string verified_name;  // a PTR name whose A/AAAA include the client (FCrDNS)
  std::string ptr_name;       // the first PTR name, verified or not
};

// What checks see and share for one connection. Lives as long as the
// connection; the pointers are set for the stage that uses them.
class CheckContext {
 public:
  CheckContext(const ConnInfo& conn, DnsLookup* dns);
  CheckContext(const CheckContext&) = delete;
  CheckContext& operator=(const CheckContext&) = delete;
  ~CheckContext();

  const ConnInfo& conn() const { return *conn_; }
  // The client's address, parsed (none for "unknown").
  const std::optional<IpBytes>& client_addr() const { return client_addr_; }
  // XCLIENT (or a test) changed the client: forget every fact about the old one.
  void reset_client();

  std::string_view helo;               // from the helo stage on
  const Envelope* envelope = nullptr;  // mail, rcpt, data, message
  const Recipient* rcpt = nullptr;     // rcpt
  const Message* message = nullptr;    // message
  // The server's own host name and addresses (the HELO check's "ours").
  std::string_view our_hostname;

  IprevFacts iprev;
  // The shard's memory of recent clients (rate limits, karma); null when
  // the shard keeps none (the rate and karma checks then pass everyone).
  ClientMemory* clients = nullptr;
  // What the karma check added to the score at connect: the connection's
  // end holds only the rest against the client (its own points must not
  // feed themselves).
  int32_t karma_score = 0;
  // Per-connection notes of checks, by key (e.g. a DNS list's verdict for the
  // trace header). Bounded by the checks configured.
  std::unordered_map<std::string, std::string> notes;
  // Results for the trace header (Authentication-Results), in order.
  std::vector<std::string> trace;

  // Milters (pipeline/milter.h): the shard's way to reach them (null: no
  // milter can be reached), each milter's channel for this connection
  // (opened at its first stage, by position in the chain), and what the
  // end of the message made of them, applied by the shard in chain order.
  MilterConnector* milter_connector = nullptr;
  std::vector<std::unique_ptr<MilterChannel>> milter_channels;
  std::vector<MessageEdits> milter_edits;
  // A milter said to discard the transaction's message (its name and why);
  // empty when none did. Cleared at each MAIL.
  std::string discard;

  // DNS through the context: every lookup still waiting is cancelled when
  // the connection goes (its `done` then never runs). Without a resolver,
  // every lookup is a temporary failure, answered at once.
  void lookup(uint16_t type, std::string_view name, DnsLookup::Done done);
  void cancel_lookups();
  bool has_dns() const { return dns_ != nullptr; }
  size_t lookups_waiting() const { return tickets_.size(); }

 private:
  const ConnInfo* conn_;
  DnsLookup* dns_;
  std::optional<IpBytes> client_addr_;
  uint64_t next_key_ = 1;
  std::unordered_map<uint64_t, uint64_t> tickets_;  // our key -> the resolver's ticket
};

// Called exactly once per start(): at once, or later from a DNS answer.
using CheckDone = std::function<void(CheckResult)>;

class Check {
 public:
  virtual ~Check() = default;
  // Names the check in logs, metrics (ringmx_rejects_total{check}) and the
  // config: lower case, [a-z0-9_].
  virtual std::string_view name() const = 0;
  // The stages it runs at (stage_bit()s).
  virtual uint32_t stages() const = 0;
  // Runs after the stage's other checks, and only when none of them refused
  // (the milters: a filter is not asked about a client already refused).
  virtual bool late() const { return false; }
  // Skipped for a client that authenticated (SMTP AUTH, or a front end's
  // XCLIENT LOGIN): the front-door checks are for strangers. The rate
  // limits and the milters (one's own mail gets signed) say false.
  virtual bool spares_authenticated() const { return true; }
  virtual void start(CheckStage stage, CheckContext& ctx, CheckDone done) const = 0;

 protected:
  Check() = default;
  Check(const Check&) = default;
  Check& operator=(const Check&) = default;
};

}  // namespace ringmx
