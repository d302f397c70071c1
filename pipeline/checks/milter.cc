// A [[milter]] as a check (pipeline/milter.h): each stage of the SMTP
// session becomes a step of the milter conversation, with the macros of that
// stage, and the step's result becomes the stage's CheckResult.
#include <string>
#include <utility>
#include <vector>

#include "core/esmtp_params.h"
#include "pipeline/milter.h"

namespace ringmx {
namespace {

using milter::Macros;
using milter::StepResult;

// Bits of a cipher suite's bulk key, from its name (the {cipher_bits} macro).
std::string cipher_bits(std::string_view cipher) {
  if (cipher.find("256") != std::string_view::npos || cipher.find("CHACHA20") != cipher.npos) {
    return "256";
  }
  if (cipher.find("128") != std::string_view::npos) return "128";
  return {};
}

// {tls_version} as Sendmail and Postfix give it (OpenSSL's names): "TLSv1.3".
std::string tls_version_macro(std::string_view v) {
  if (v.starts_with("TLS") && v.size() == 6 && v[4] == '_') {
    return "TLSv" + std::string(1, v[3]) + "." + std::string(1, v[5]);
  }
  return std::string(v);
}

// The text of a milter's own reply, without codes: lines joined by a space.
std::string reply_text(const milter::ReplyCode& rc) {
  std::string out;
  std::string_view all = rc.text;
  while (!all.empty()) {
    const size_t crlf = all.find("\r\n");
    std::string_view line = all.substr(0, crlf);
    all = crlf == std::string_view::npos ? std::string_view{} : all.substr(crlf + 2);
    if (line.size() >= 4) line.remove_prefix(4);  // "550 " or "550-"
    if (!rc.enhanced.empty() && line.starts_with(rc.enhanced)) {
      line.remove_prefix(rc.enhanced.size());
      while (line.starts_with(' ')) line.remove_prefix(1);
    }
    if (line.empty()) continue;
    if (!out.empty()) out += ' ';
    out += line;
  }
  return out.empty() ? std::string("Error: command rejected") : out;
}

CheckResult refusal(const MilterConfig& cfg, bool temporary, std::string why) {
  if (temporary) {
    return CheckResult::reject(451, "4.7.1",
                               "Error: service temporarily unavailable, try again later",
                               cfg.name + ": " + std::move(why));
  }
  return CheckResult::reject(550, "5.7.1", "Error: command rejected",
                             cfg.name + ": " + std::move(why));
}

class MilterCheck final : public Check {
 public:
  MilterCheck(const MilterConfig& cfg, size_t index, std::string hostname)
      : cfg_(cfg), index_(index), hostname_(std::move(hostname)), name_("milter_" + cfg.name) {}

  std::string_view name() const override { return name_; }
  uint32_t stages() const override {
    return stage_bit(CheckStage::connect) | stage_bit(CheckStage::helo) |
           stage_bit(CheckStage::mail) | stage_bit(CheckStage::rcpt) | stage_bit(CheckStage::data) |
           stage_bit(CheckStage::message);
  }
  bool late() const override { return true; }
  bool spares_authenticated() const override { return false; }

  void start(CheckStage stage, CheckContext& ctx, CheckDone done) const override {
    MilterConnector* connector = ctx.milter_connector;
    if (connector == nullptr) {
      StepResult r;
      r.kind = StepResult::Kind::failed;
      r.error = "no way to reach milters here";
      return done(milter_result(cfg_, stage, r));
    }
    if (ctx.milter_channels.size() <= index_) ctx.milter_channels.resize(index_ + 1);
    if (ctx.milter_edits.size() <= index_) ctx.milter_edits.resize(index_ + 1);
    std::unique_ptr<MilterChannel>& ch = ctx.milter_channels[index_];
    if (!ch) ch = connector->open(cfg_, index_);
    milter::MilterClient& c = ch->client();
    if (c.busy()) {  // a step abandoned (never happens in order): the conversation is lost
      ch.reset();
      StepResult r;
      r.kind = StepResult::Kind::failed;
      r.error = "a step still in progress";
      return done(milter_result(cfg_, stage, r));
    }
    const int64_t now = connector->now_ns();
    const ConnInfo& ci = ctx.conn();
    const std::string queue_id = ctx.envelope ? ctx.envelope->queue_id : std::string();
    switch (stage) {
      case CheckStage::connect: {
        Macros m = {{"j", hostname_},
                    {"{daemon_name}", "ringmx"},
                    {"{client_addr}", ci.client_ip},
                    {"{client_port}", std::to_string(ci.client_port)},
                    {"{client_name}", client_name(ctx)},
                    {"{client_ptr}", ctx.iprev.ptr_name.empty() ? "unknown" : ctx.iprev.ptr_name}};
        if (!ci.server_ip.empty()) m.emplace_back("{if_addr}", ci.server_ip);
        milter::Family family = milter::Family::unknown;
        if (ctx.client_addr()) {
          const bool v4 = ci.client_ip.find(':') == std::string::npos;
          family = v4 ? milter::Family::inet4 : milter::Family::inet6;
        }
        c.connect(now, m, client_name(ctx), family, ci.client_port, ci.client_ip);
        break;
      }
      case CheckStage::helo: {
        Macros m;
        if (ci.tls_active) {
          m = {{"{tls_version}", tls_version_macro(ci.tls_version)}, {"{cipher}", ci.tls_cipher}};
          if (std::string bits = cipher_bits(ci.tls_cipher); !bits.empty()) {
            m.emplace_back("{cipher_bits}", std::move(bits));
          }
        }
        c.helo(now, m, ctx.helo);
        break;
      }
      case CheckStage::mail: {
        ctx.discard.clear();
        ctx.milter_edits[index_] = {};
        const Envelope& env = *ctx.envelope;
        Macros m = {{"i", queue_id}, {"{mail_addr}", env.sender}};
        if (!ci.login.empty()) m.emplace_back("{auth_authen}", ci.login);
        c.mail(now, m, "<" + env.sender + ">", mail_args(env.mail));
        break;
      }
      case CheckStage::rcpt: {
        const Recipient& r = *ctx.rcpt;
        c.rcpt(now, {{"i", queue_id}, {"{rcpt_addr}", r.address}}, "<" + r.address + ">",
               rcpt_args(r.params));
        break;
      }
      case CheckStage::data: c.data(now, {{"i", queue_id}}); break;
      case CheckStage::message: {
        const Message& msg = *ctx.message;
        if (msg.spilled) {
          // The body is on disk (the shard's memory budget was reached):
          // the milters cannot be given it from here yet.
          return done(CheckResult::reject(451, "4.3.1",
                                          "Error: insufficient system resources, try again later",
                                          cfg_.name + ": the message was spilled to disk"));
        }
        const Macros m = {{"i", queue_id}};
        c.message(now, m, m, msg.received, msg.body.view());
        break;
      }
      case CheckStage::count_: return done(CheckResult::next());
    }
    ch->run([this, &ctx, stage, now, connector, done = std::move(done)](const StepResult& r) {
      connector->count(index_, stage, r, connector->now_ns() - now);
      if (r.kind == StepResult::Kind::discard && ctx.discard.empty()) {
        ctx.discard = cfg_.name;
      }
      if (stage == CheckStage::message && index_ < ctx.milter_channels.size() &&
          ctx.milter_channels[index_]) {
        milter::MilterClient& client = ctx.milter_channels[index_]->client();
        MessageEdits& e = ctx.milter_edits[index_];
        e.filter = cfg_.name;
        e.header_leading_space = client.terms().header_leading_space();
        e.changes = std::move(client.modifications());
        client.modifications().clear();
        // A refused or failed message keeps nothing of what was asked.
        if (r.kind != StepResult::Kind::cont && r.kind != StepResult::Kind::accept &&
            r.kind != StepResult::Kind::discard) {
          e.changes.clear();
        }
      }
      CheckResult out = milter_result(cfg_, stage, r);
      if (stage == CheckStage::message && out.action == CheckResult::Action::next &&
          index_ < ctx.milter_edits.size()) {
        for (const milter::Response& m : ctx.milter_edits[index_].changes) {
          if (const auto* q = std::get_if<milter::Quarantine>(&m)) {
            CheckResult held = CheckResult::quarantine(q->reason);
            held.score = out.score;
            out = std::move(held);
            break;
          }
        }
      }
      done(std::move(out));
    });
  }

 private:
  static std::string client_name(const CheckContext& ctx) {
    if (!ctx.iprev.verified_name.empty()) return ctx.iprev.verified_name;
    return "[" + ctx.conn().client_ip + "]";
  }
  static std::vector<std::string> mail_args(const MailParams& p) {
    std::vector<std::string> a;
    if (p.has_size) a.push_back("SIZE=" + std::to_string(p.size));
    if (const std::string_view b = body_type_name(p.body); !b.empty()) {
      a.push_back("BODY=" + std::string(b));
    }
    if (p.smtputf8) a.emplace_back("SMTPUTF8");
    if (const std::string_view r = dsn_ret_name(p.ret); !r.empty()) {
      a.push_back("RET=" + std::string(r));
    }
    if (!p.envid.empty()) a.push_back("ENVID=" + p.envid);
    return a;
  }
  static std::vector<std::string> rcpt_args(const RcptParams& p) {
    std::vector<std::string> a;
    std::string notify;
    append_notify_param(notify, p.notify);
    if (!notify.empty()) a.push_back(notify.substr(notify.starts_with(' ') ? 1 : 0));
    if (!p.orcpt_type.empty()) a.push_back("ORCPT=" + p.orcpt_type + ";" + p.orcpt);
    return a;
  }

  MilterConfig cfg_;
  size_t index_;
  std::string hostname_;
  std::string name_;
};

}  // namespace

CheckResult milter_result(const MilterConfig& cfg, CheckStage stage, const StepResult& r) {
  (void)stage;
  switch (r.kind) {
    case StepResult::Kind::cont:
    case StepResult::Kind::accept:
    case StepResult::Kind::discard: return CheckResult::next();
    case StepResult::Kind::reject:
    case StepResult::Kind::tempfail: {
      const bool temporary = r.kind == StepResult::Kind::tempfail;
      if (r.reply.code == 0) return refusal(cfg, temporary, temporary ? "tempfail" : "reject");
      return CheckResult::reject(r.reply.code, r.reply.enhanced, reply_text(r.reply),
                                 cfg.name + ": reply " + std::to_string(r.reply.code));
    }
    case StepResult::Kind::shutdown:
      return CheckResult::reject(421, "4.7.0", "Error: closing the connection",
                                 cfg.name + ": shutdown");
    case StepResult::Kind::failed:
      switch (cfg.default_action) {
        case MilterDefault::accept: {
          CheckResult n = CheckResult::next();
          n.reason = cfg.name + ": " + r.error + " (accepted)";
          return n;
        }
        case MilterDefault::reject: return refusal(cfg, false, r.error);
        case MilterDefault::tempfail: return refusal(cfg, true, r.error);
      }
  }
  return CheckResult::next();
}

std::unique_ptr<Check> make_milter_check(const MilterConfig& cfg, size_t index,
                                         std::string hostname) {
  return std::make_unique<MilterCheck>(cfg, index, std::move(hostname));
}

}  // namespace ringmx
