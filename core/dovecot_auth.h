// The client side of Dovecot's authentication protocol (version 1, the
// auth-client socket), as a sans-I/O StreamLink: net/auth_backend.cc runs it
// over a unix or TCP socket on the shard's ring, and this side only turns
// requests into lines and lines into results.
//
// One connection carries many verifications at once, each under its own id:
//   C: VERSION 1 2, CPID <pid>            S: VERSION 1 x, MECH..., SPID, CUID, COOKIE, DONE
//   C: AUTH <id> PLAIN service=smtp nologin no-penalty secured lip= rip= ... resp=<base64>
//   S: OK <id> user=<name> | FAIL <id> [temp] [reason=...] | CONT <id> <base64>
// A LOGIN verification is sent as LOGIN when Dovecot offers it and answered
// through its CONT rounds (user, then password); else as PLAIN. Requests
// made before the handshake ends wait for it. Lines are tab-separated with
// Dovecot's \001 escapes; every value sent here is checked or base64.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/sasl.h"
#include "core/stream_link.h"

namespace ringmx::dovecot {

// The longest line taken from the server (its own bound, 16 KiB).
inline constexpr size_t kMaxLine = 16384;

struct Request {
  sasl::Mechanism mechanism = sasl::Mechanism::plain;
  sasl::Credentials credentials;
  std::string local_ip;  // the address the client reached
  uint16_t local_port = 0;
  std::string remote_ip;  // the client
  uint16_t remote_port = 0;
  bool secured = true;  // TLS (AUTH is offered on nothing else)
};

enum class Outcome : uint8_t {
  ok,         // user is the account Dovecot names
  fail,       // wrong credentials, or an account that may not log in
  temp_fail,  // Dovecot could not say (its own backends, or this link failed)
};

struct Result {
  uint32_t id = 0;
  Outcome outcome = Outcome::temp_fail;
  std::string user;    // OK: Dovecot's user= (empty: the one given); FAIL: user= if sent
  std::string reason;  // FAIL: reason=, or why the link failed
};

class AuthClient final : public StreamLink {
 public:
  enum class State : uint8_t { connecting, handshake, ready, failed };

  // `service` goes into every AUTH (checked by the config loader); `pid` is
  // this process's (CPID); at most `max_pending` verifications at once.
  AuthClient(std::string service, uint32_t pid, size_t max_pending);

  // StreamLink.
  void connected(int64_t now_ns) override;
  void feed(std::string_view bytes, int64_t now_ns) override;
  void connection_lost(ErrorKind kind, int64_t now_ns) override;
  std::string_view output() override { return out_; }
  void consume_output(size_t n) override;
  bool has_output() override { return !out_.empty(); }
  bool output_stable() const override { return false; }

  // Starts a verification (the credentials are moved out and wiped once it
  // is answered). Returns its id, or 0 when max_pending are already
  // waiting or the link has failed.
  uint32_t begin(Request r);
  // The owner gave up on `id` (a timeout): its answer will be dropped.
  void cancel(uint32_t id);

  // Answers not yet taken (the owner clears the vector), in order of
  // arrival. A failed link answers everything still waiting with temp_fail.
  std::vector<Result>& results() { return results_; }

  State state() const { return state_; }
  bool failed() const { return state_ == State::failed; }
  const std::string& error() const { return error_; }
  size_t pending() const { return waiting_.size(); }
  // The server offered `m` in its handshake.
  bool offers(sasl::Mechanism m) const;

 private:
  struct Waiting {
    uint32_t id = 0;
    Request req;
    bool sent = false;      // on the wire (else waiting for the handshake)
    bool as_login = false;  // sent as LOGIN: CONT rounds expected
    uint8_t cont_rounds = 0;
  };

  void line(std::string_view l);
  void handshake_line(std::string_view cmd, std::string_view rest);
  void answer_line(std::string_view cmd, std::string_view rest);
  void send_request(Waiting& w);
  void finish(size_t index, Outcome outcome, std::string user, std::string reason);
  void fail(std::string why);
  Waiting* find(uint32_t id, size_t& index);

  std::string service_;
  uint32_t pid_;
  size_t max_pending_;
  State state_ = State::connecting;
  bool version_ok_ = false;
  bool offers_plain_ = false;
  bool offers_login_ = false;
  uint32_t next_id_ = 1;
  std::string in_;  // a line not yet complete
  std::string out_;
  std::vector<Waiting> waiting_;
  std::vector<Result> results_;
  std::string error_;
};

// Dovecot's tab escaping (\001 then 0/1/t/r/n) undone; a malformed escape
// is kept as it is.
std::string tab_unescape(std::string_view s);

}  // namespace ringmx::dovecot
