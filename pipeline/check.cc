#include "pipeline/check.h"

#include <utility>

#include "pipeline/milter.h"

namespace ringmx {

std::string_view check_stage_name(CheckStage s) {
  switch (s) {
    case CheckStage::connect: return "connect";
    case CheckStage::helo: return "helo";
    case CheckStage::mail: return "mail";
    case CheckStage::rcpt: return "rcpt";
    case CheckStage::data: return "data";
    case CheckStage::message: return "message";
    case CheckStage::count_: break;
  }
  return "unknown";
}

CheckContext::CheckContext(const ConnInfo& conn, DnsLookup* dns) : conn_(&conn), dns_(dns) {
  reset_client();
}

CheckContext::~CheckContext() {
  cancel_lookups();
  milter_channels.clear();  // each says QUIT and closes
}

void CheckContext::reset_client() {
  cancel_lookups();
  client_addr_ = parse_ip(conn_->client_ip);
  iprev = {};
  karma_score = 0;
  milter_channels.clear();  // a new client: each milter hears of it anew
  milter_edits.clear();
  discard.clear();
  notes.clear();
  trace.clear();
}

void CheckContext::lookup(uint16_t type, std::string_view name, DnsLookup::Done done) {
  if (dns_ == nullptr) {
    done(DnsAnswer{});
    return;
  }
  const uint64_t key = next_key_++;
  tickets_.emplace(key, 0);
  // The answer may come at once, inside this call: the key is gone then.
  const uint64_t ticket =
      dns_->lookup(type, name, [this, key, done = std::move(done)](const DnsAnswer& a) {
        tickets_.erase(key);
        done(a);  // may destroy this context: nothing after it
      });
  auto it = tickets_.find(key);
  if (it != tickets_.end()) it->second = ticket;
}

void CheckContext::cancel_lookups() {
  if (dns_ != nullptr) {
    for (const auto& [key, ticket] : tickets_) dns_->cancel(ticket);
  }
  tickets_.clear();
}

}  // namespace ringmx
