// The shard's side of the policy checks (pipeline/policy.h): its resolver,
// each connection's Policy, and what a decision does to the session — the
// verdict, the reject metric and log line, the verified client name for the
// Received header, the trace header on accepted mail.
#include <sys/socket.h>

#include <algorithm>

#include "core/message_edits.h"
#include "net/connection.h"
#include "net/listener.h"
#include "pipeline/milter.h"

namespace ringmx {

namespace {

// Authentication-Results (RFC 8601) from what the checks found: one field,
// each result on a folded line of its own.
std::string trace_fields(const CheckSet& set, const CheckContext& ctx) {
  std::string out = "Authentication-Results: ";
  out += set.hostname;
  out += ';';
  if (ctx.trace.empty()) {
    out += " none\r\n";
    return out;
  }
  for (size_t i = 0; i < ctx.trace.size(); ++i) {
    out += "\r\n\t";
    out += ctx.trace[i];
    if (i + 1 < ctx.trace.size()) out += ';';
  }
  out += "\r\n";
  return out;
}

}  // namespace

void Shard::configure_clients() {
  const ChecksConfig& cc = cfg_->server.checks;
  clients_.configure(cc.rate, cc.karma, shard_count());
  auth_failures_.configure(cfg_->server.auth, shard_count());
}

// The end of a connection: one that was refused for what it did, or whose
// score (without karma's own part) reached karma.bad_score, leaves its
// client karma.penalty points.
void Shard::remember_client(Connection& c) {
  const KarmaConfig& k = cfg_->server.checks.karma;
  if (!k.enabled) return;
  int32_t score = 0;
  if (c.policy) score = c.policy->score() - c.policy->context().karma_score;
  const bool bad_score = k.bad_score > 0 && score >= static_cast<int64_t>(k.bad_score);
  if (!c.refused && !bad_score) return;
  const std::optional<IpBytes> ip = parse_ip(c.session.conn().client_ip);
  if (!ip || clients_.exempt(*ip)) return;
  clients_.punish(*ip, now_.mono_ms, k.penalty);
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "karma", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip);
    l.kv("why", c.refused ? "refused" : "score").kv("score", int64_t{score});
    l.kv("points", static_cast<int64_t>(clients_.karma(*ip, now_.mono_ms)));
    log(l);
  }
}

void Shard::start_resolver() {
  resolver_ = std::make_unique<Resolver>(ring_, wheel_, cfg_->server.dns, &metrics_.dns);
  std::string error;
  if (!resolver_->init(error)) {
    LogLine l(LogLevel::warn, "dns_unavailable", unix_ms_);
    l.kv("shard", id_).kv("error", error);
    log(l);
    resolver_.reset();
    return;
  }
  resolver_->set_now(now_.mono_ms, mono_ns());
}

DnsLookup* Shard::dns() {
  return resolver_.get();
}

void Shard::start_policy(Connection& c) {
  const std::shared_ptr<const CheckSet>& set = cfg_->checks;
  if (!set || set->size() == 0) return;
  const bool wants_server = cfg_->server.checks.helo.ours != CheckAction::off || set->milters > 0;
  if (wants_server && c.session.conn().server_ip.empty()) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(c.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      uint16_t port = 0;
      std::string ip = ip_text(ss, port);
      c.session.set_server(std::move(ip), port);
    }
  }
  Connection* conn = &c;
  c.policy = std::make_unique<Policy>(
      set, c.session.conn(), dns(),
      [conn](const PolicyDecision& d) { conn->shard.policy_decided(*conn, d); });
  c.policy->context().clients = &clients_;
  if (set->milters > 0) c.policy->context().milter_connector = &milters_;
  c.policy->prefetch_connect();
}

Verdict Shard::run_checks(Connection& c, CheckStage stage) {
  if (!c.policy) return Verdict::accept();
  PolicyDecision d;
  if (!c.policy->run(stage, d)) return Verdict::pending();
  return policy_verdict(c, d);
}

Verdict Shard::policy_verdict(Connection& c, const PolicyDecision& d, bool may_hold) {
  CheckContext& ctx = c.policy->context();
  if (d.stage == CheckStage::connect && !ctx.iprev.verified_name.empty()) {
    c.session.set_client_ptr(ctx.iprev.verified_name);
  }
  if (d.verdict.kind == Verdict::Kind::accept) {
    if (d.stage == CheckStage::data && c.policy->checks().trace_header) {
      c.session.set_trace_headers(trace_fields(c.policy->checks(), ctx));
    }
    return d.verdict;
  }
  if (may_hold && (d.stage == CheckStage::connect || d.stage == CheckStage::helo) &&
      d.check != "rate" && c.session.conn().auth != AuthMode::none) {
    // A submission listener: the client may still authenticate, and its
    // own users are spared these checks. The refusal waits for MAIL (the
    // latest one, when EHLO comes again after STARTTLS).
    c.deferred_refusal = std::make_unique<PolicyDecision>(d);
    return Verdict::accept();
  }
  const auto stage = static_cast<size_t>(d.stage);
  if (d.check != "rate" && d.check != "karma") c.refused = true;
  metrics_.rejects[stage][static_cast<size_t>(reject_check_of(d.check))].inc();
  if (log_enabled(LogLevel::info)) {
    const ConnInfo& ci = c.session.conn();
    LogLine l(LogLevel::info, "reject", unix_ms_);
    l.kv("sid", format_session_id(ci.session_id)).kv("client", ci.client_ip);
    l.kv("stage", check_stage_name(d.stage)).kv("check", d.check);
    l.kv("code", uint64_t{d.verdict.code}).kv("reason", d.reason);
    l.kv("score", int64_t{d.score});
    log(l);
  }
  return d.verdict;
}

Verdict Shard::message_checks(Connection& c, Message& msg) {
  if (c.policy && !c.policy->checks().at(CheckStage::message).empty()) {
    c.policy->context().message = &msg;
    PolicyDecision d;
    if (!c.policy->run(CheckStage::message, d)) {
      c.checked_message = &msg;  // policy_decided() stores it or refuses
      return Verdict::pending();
    }
    c.policy->context().message = nullptr;
    Verdict v = policy_verdict(c, d);
    if (v.kind != Verdict::Kind::accept) return v;  // a spilled body is discarded by the session
  }
  return take_message(c, msg);
}

// The message passed its checks: the milters' changes are made to it
// (core/message_edits.h), then it is stored (pending until it is on disk),
// dropped (a milter said discard, or removed every recipient: the client is
// told it was queued, as it would be), or refused when a change cannot be
// made.
Verdict Shard::take_message(Connection& c, Message& msg) {
  if (c.policy) {
    CheckContext& ctx = c.policy->context();
    const bool edits = std::any_of(ctx.milter_edits.begin(), ctx.milter_edits.end(),
                                   [](const MessageEdits& e) { return !e.empty(); });
    if (edits) {
      const SessionConfig& sc = cfg_->server.smtp;
      const EditOutcome o = apply_edits(msg, ctx.milter_edits, sc.ext, sc.limits.max_message_size,
                                        sc.limits.max_recipients);
      for (MessageEdits& e : ctx.milter_edits) e.changes.clear();
      if (log_enabled(LogLevel::info)) {
        LogLine l(LogLevel::info, o.error.empty() ? "milter_changed" : "milter_change_failed",
                  unix_ms_);
        l.kv("sid", format_session_id(c.session.conn().session_id))
            .kv("qid", msg.envelope.queue_id);
        l.kv("content", o.headers_or_body).kv("envelope", o.envelope);
        if (!o.error.empty()) l.kv("error", o.error);
        log(l);
      }
      if (!o.error.empty()) {
        return Verdict::reject(451, "4.3.0",
                               "Error: a filter's change could not be made, try again later");
      }
      if (msg.envelope.recipients.empty() && ctx.discard.empty()) {
        ctx.discard = "every recipient removed";
      }
    }
    if (!ctx.discard.empty()) {
      metrics_.discarded.inc();
      if (log_enabled(LogLevel::info)) {
        LogLine l(LogLevel::info, "discard", unix_ms_);
        l.kv("sid", format_session_id(c.session.conn().session_id))
            .kv("qid", msg.envelope.queue_id)
            .kv("client", c.session.conn().client_ip)
            .kv("by", ctx.discard);
        log(l);
      }
      ctx.discard.clear();
      return Verdict::accept();
    }
  }
  store_message(c, msg);
  return Verdict::pending();
}

void Shard::store_message(Connection& c, Message& msg) {
  if (msg.spilled) {
    spill_commit(c, msg);
  } else {
    spool_message(c, msg);
  }
}

namespace {

// The milters asked about one unknown command.
struct UnknownAsk {
  std::vector<std::optional<milter::StepResult>> results;
  size_t outstanding = 0;
  bool starting = true;  // inside unknown_command(): answers only record
};

Verdict unknown_verdict(const UnknownAsk& a) {
  for (const std::optional<milter::StepResult>& r : a.results) {
    if (!r) continue;
    using K = milter::StepResult::Kind;
    if (r->kind == K::shutdown)
      return Verdict::reject(421, "4.7.0", "Error: closing the connection");
    if ((r->kind == K::reject || r->kind == K::tempfail) && r->reply.code != 0) {
      const CheckResult c = milter_result(MilterConfig{}, CheckStage::connect, *r);
      return Verdict::reject(c.code, c.enhanced, c.text);
    }
  }
  return Verdict::accept();  // the session's own 500 5.5.2
}

}  // namespace

Verdict Shard::unknown_command(Connection& c, std::string_view line) {
  if (!c.policy) return Verdict::accept();
  CheckContext& ctx = c.policy->context();
  auto ask = std::make_shared<UnknownAsk>();
  ask->results.resize(ctx.milter_channels.size());
  Connection* conn = &c;
  for (size_t i = 0; i < ctx.milter_channels.size(); ++i) {
    MilterChannel* ch = ctx.milter_channels[i].get();
    if (ch == nullptr || ch->client().busy() || ch->client().failed()) continue;
    ch->client().unknown(mono_ns(), {}, line);
    ++ask->outstanding;
    ch->run([this, conn, ask, i](const milter::StepResult& r) {
      ask->results[i] = r;
      if (--ask->outstanding != 0 || ask->starting) return;
      resume_session(*conn, unknown_verdict(*ask));
    });
  }
  ask->starting = false;
  if (ask->outstanding != 0) return Verdict::pending();
  return unknown_verdict(*ask);
}

// A stage that waited for DNS is decided: the session takes the verdict and
// the input held meanwhile.
void Shard::policy_decided(Connection& c, const PolicyDecision& d) {
  Verdict v = policy_verdict(c, d);  // counted and logged once
  if (d.stage == CheckStage::message && c.checked_message != nullptr) {
    Message& msg = *c.checked_message;
    c.checked_message = nullptr;
    c.policy->context().message = nullptr;
    if (v.kind == Verdict::Kind::accept) {
      v = take_message(c, msg);
      if (v.kind == Verdict::Kind::pending) return;  // the session hears when it is on disk
    }
  }
  resume_session(c, v);
}

// A verdict the session waited for: it takes it and the input held meanwhile.
void Shard::resume_session(Connection& c, const Verdict& v) {
  c.session.resume(v, now_);
  if (c.stage == Connection::Stage::closing) {
    // The client is gone; nobody is left to answer.
    c.session.consume_output(c.session.output().size());
    c.send_queued.clear();
    if (!c.send_busy) begin_close(c);
    return;
  }
  if (c.stage != Connection::Stage::open) return;  // the greeting waits for its delay
  feed_pending(c);
  flush(c);
}

}  // namespace ringmx
