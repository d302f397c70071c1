// The session test harness: a recording handler and a session driven by
// transcripts (client bytes in, replies out). Shared by the session tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/session.h"

namespace ringmx::test {

inline std::vector<std::string> reply_lines(std::string_view out) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t e = out.find("\r\n", pos);
    if (e == std::string_view::npos) {
      lines.emplace_back(out.substr(pos));
      break;
    }
    lines.emplace_back(out.substr(pos, e - pos));
    pos = e + 2;
  }
  return lines;
}

// Final reply codes ("250", "354", ...) of every reply in `out`, in order.
inline std::vector<std::string> codes(std::string_view out) {
  std::vector<std::string> c;
  for (const auto& l : reply_lines(out))
    if (l.size() >= 4 && l[3] == ' ') c.push_back(l.substr(0, 3));
  return c;
}

struct Recorder : SessionHandler {
  std::vector<std::string> bodies;
  std::vector<std::string> received;
  std::vector<Envelope> envelopes;
  std::vector<uint16_t> replies;
  int starttls_calls = 0;
  bool pend_connect = false, pend_helo = false, pend_mail = false, pend_rcpt = false,
       pend_data = false, pend_message = false;
  Verdict rcpt_verdict = Verdict::accept();
  // Unknown commands heard, and the verdict for them (pending: wait).
  std::vector<std::string> unknown;
  Verdict unknown_verdict = Verdict::accept();
  Verdict on_unknown(Session&, std::string_view line) override {
    unknown.emplace_back(line);
    return unknown_verdict;
  }

  Verdict on_connect(Session&) override {
    return pend_connect ? Verdict::pending() : Verdict::accept();
  }
  Verdict on_helo(Session&, std::string_view) override {
    return pend_helo ? Verdict::pending() : Verdict::accept();
  }
  Verdict on_mail(Session&, const Envelope&) override {
    return pend_mail ? Verdict::pending() : Verdict::accept();
  }
  Verdict on_rcpt(Session&, const Envelope&, const Recipient&) override {
    return pend_rcpt ? Verdict::pending() : rcpt_verdict;
  }
  Verdict on_data(Session&, const Envelope&) override {
    return pend_data ? Verdict::pending() : Verdict::accept();
  }
  std::vector<bool> spilled_flags;
  Verdict on_message(Session&, Message& m) override {
    spilled_flags.push_back(m.spilled);
    bodies.emplace_back(m.spilled ? std::string_view(spilled) : m.body.view());
    received.push_back(m.received);
    envelopes.push_back(m.envelope);
    return pend_message ? Verdict::pending() : Verdict::accept();
  }
  void on_starttls(Session&) override { ++starttls_calls; }
  // AUTH: "MECH user password [authzid]" of each attempt, and the verdict.
  std::vector<std::string> auths;
  Verdict auth_verdict = Verdict::accept();
  bool pend_auth = false;
  Verdict on_auth(Session&, sasl::Mechanism m, const sasl::Credentials& c) override {
    std::string a = std::string(sasl::mechanism_name(m)) + " " + c.user + " " + c.password;
    if (!c.authzid.empty()) a += " " + c.authzid;
    auths.push_back(a);
    return pend_auth ? Verdict::pending() : auth_verdict;
  }
  void on_reply(Session&, Verb, uint16_t code, std::string_view, std::string_view) override {
    replies.push_back(code);
  }
  // Discipline checks that fired: "check@stage".
  std::vector<std::string> protocol_rejects;
  void on_protocol_reject(Session& s, std::string_view check) override {
    protocol_rejects.push_back(std::string(check) + "@" + std::string(s.stage()));
  }
  // Body memory: every size reported, and a budget (0: none).
  std::vector<uint64_t> body_sizes;
  uint64_t body_budget = 0;
  BodyRoom over_budget = BodyRoom::refuse;
  BodyRoom on_body_bytes(Session&, uint64_t bytes) override {
    body_sizes.push_back(bytes);
    return body_budget == 0 || bytes <= body_budget ? BodyRoom::keep : over_budget;
  }
  // Spilling: what the handler was handed.
  std::string spill_received;
  std::string spilled;
  int spill_starts = 0, spill_ends = 0;
  void on_spill_start(Session&, Message& m) override {
    ++spill_starts;
    spill_received = m.received;
  }
  void on_body_spill(Session&, std::string_view piece) override { spilled.append(piece); }
  void on_spill_end(Session&) override { ++spill_ends; }
};

// Harness(kStrict, cfg): the config exactly as given.
struct Strict {};
inline constexpr Strict kStrict{};

struct Harness {
  // Transcripts feed many commands at once, EHLO and what follows it
  // included, which only a client that ignores PIPELINING would do: this
  // harness serves them (unoffered_pipelining = ignore). The discipline
  // tests use the strict form.
  explicit Harness(SessionConfig cfg = {}, ConnInfo info = default_info(), bool start = true)
      : Harness(kStrict, relaxed(std::move(cfg)), std::move(info), start) {}
  Harness(Strict, SessionConfig cfg, ConnInfo info = default_info(), bool start = true)
      : settings(std::make_shared<SessionSettings>(std::move(cfg))),
        session(settings, rec, std::move(info), now) {
    if (start) session.start(now);
  }
  static SessionConfig relaxed(SessionConfig cfg) {
    cfg.unoffered_pipelining = UnofferedPipelining::ignore;
    return cfg;
  }
  static ConnInfo default_info() {
    ConnInfo i;
    i.session_id = 42;
    i.client_ip = "192.0.2.1";
    return i;
  }
  // Feeds everything (all must be consumed) and returns the output produced.
  std::string send(std::string_view in) {
    size_t used = session.feed(in, now);
    EXPECT_EQ(used, in.size()) << "input not consumed";
    return take();
  }
  std::string take() {
    std::string out(session.output());
    session.consume_output(out.size());
    return out;
  }
  Now now{1000, 1795241997};
  Recorder rec;
  std::shared_ptr<SessionSettings> settings;
  Session session;
};

}  // namespace ringmx::test
