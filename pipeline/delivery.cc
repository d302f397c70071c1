// Contract: see delivery.h.
#include "pipeline/delivery.h"

#include <algorithm>

namespace ringmx {

namespace {

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

bool QueuedMessage::done() const {
  return std::none_of(rcpts.begin(), rcpts.end(), [](const QueuedRecipient& r) {
    return r.state == RcptState::pending || r.state == RcptState::bouncing;
  });
}

DeliveryResult classify(const ReplyText& reply) {
  if (reply.code >= 200 && reply.code < 300) return DeliveryResult::delivered;
  if (reply.code >= 500 && reply.code < 600) return DeliveryResult::failed;
  return DeliveryResult::deferred;
}

ReplyText decisive_reply(const MessageResult& r, size_t i) {
  if (r.early.code != 0) return r.early;
  if (i < r.rcpt_replies.size() && r.rcpt_replies[i].code != 0) return r.rcpt_replies[i];
  ReplyText t;
  t.code = 0;
  switch (r.error) {
    case ErrorKind::timeout: t.text = "4.4.2 timed out waiting for the destination"; break;
    case ErrorKind::refused: t.text = "4.4.1 connection refused"; break;
    case ErrorKind::connect: t.text = "4.4.1 cannot connect"; break;
    case ErrorKind::closed: t.text = "4.4.2 the destination closed the connection"; break;
    case ErrorKind::reset: t.text = "4.4.2 connection lost"; break;
    case ErrorKind::protocol: t.text = "4.5.0 the destination broke the protocol"; break;
    case ErrorKind::tls: t.text = "4.7.5 TLS with the destination failed"; break;
    case ErrorKind::unsupported: t.text = "4.5.0 the destination lacks a needed extension"; break;
    default: t.text = "4.4.0 no reply from the destination"; break;
  }
  return t;
}

int64_t retry_delay_ms(uint32_t attempts, const DeliveryConfig& cfg, uint64_t random) {
  int64_t base = cfg.retry_min_ms;
  for (uint32_t i = 1; i < attempts && base < cfg.retry_max_ms; ++i) base *= 2;
  base = std::min<int64_t>(base, cfg.retry_max_ms);
  const int64_t half = base / 2;
  return half + static_cast<int64_t>(random % static_cast<uint64_t>(base - half + 1));
}

bool too_old(int64_t received_at_unix, int64_t now_unix, const DeliveryConfig& cfg) {
  return now_unix - received_at_unix >= int64_t{cfg.max_age_s};
}

ServerOffer server_offer(const SmtpClient& c) {
  ServerOffer o;
  o.size = c.server_size_offered();
  o.size_limit = c.server_size();
  o.eightbitmime = c.server_8bitmime();
  o.smtputf8 = c.server_smtputf8();
  o.dsn = c.server_dsn();
  return o;
}

std::string render_envelope(const QueuedMessage& m, const std::vector<uint32_t>& which,
                            const ServerOffer& offer, ClientEnvelope& out) {
  if (offer.size && offer.size_limit != 0 && m.size > offer.size_limit) {
    return "5.3.4 message too big for the destination (" + std::to_string(m.size) + " > " +
           std::to_string(offer.size_limit) + " octets)";
  }
  bool utf8_addresses = !is_ascii(m.sender);
  for (const uint32_t i : which) utf8_addresses = utf8_addresses || !is_ascii(m.rcpts[i].address);
  if (utf8_addresses && !offer.smtputf8) {
    return "5.6.7 the destination does not support SMTPUTF8 and the addresses need it";
  }
  out.mail_from = m.sender;
  out.mail_params.clear();
  if (offer.size) {
    out.mail_params += " SIZE=";
    out.mail_params += std::to_string(m.size);
  }
  const std::string_view body = body_type_name(m.mail.body);
  if (!body.empty() && m.mail.body != BodyType::binary_mime) {
    out.mail_params += " BODY=";
    out.mail_params += body;
  }
  if (m.mail.smtputf8 && offer.smtputf8) out.mail_params += " SMTPUTF8";
  if (offer.dsn) {
    const std::string_view ret = dsn_ret_name(m.mail.ret);
    if (!ret.empty()) {
      out.mail_params += " RET=";
      out.mail_params += ret;
    }
    if (!m.mail.envid.empty()) {
      out.mail_params += " ENVID=";
      out.mail_params += m.mail.envid;
    }
  }
  out.recipients.clear();
  for (const uint32_t i : which) {
    const QueuedRecipient& r = m.rcpts[i];
    ClientRecipient& c = out.recipients.emplace_back();
    c.address = r.address;
    if (offer.dsn) {
      append_notify_param(c.params, r.params.notify);
      if (!r.params.orcpt_type.empty()) {
        c.params += " ORCPT=";
        c.params += r.params.orcpt_type;
        c.params += ';';
        c.params += r.params.orcpt;
      }
    }
  }
  return {};
}

}  // namespace ringmx
