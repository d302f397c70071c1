// The hand-off from acceptance to delivery: once a message is on disk (and
// before its client hears 250), the shard gives its envelope, its place in
// the spool and, while the delivery memory allows, its bytes to the shard's
// Relays (net/relay.h).
#include <memory>

#include "net/connection.h"
#include "net/shard.h"

namespace ringmx {

void Shard::hand_off(Connection& /*c*/, const Message& msg, std::string segment, uint64_t offset,
                     uint64_t size, bool held) {
  auto m = std::make_shared<QueuedMessage>();
  const Envelope& env = msg.envelope;
  m->queue_id = env.queue_id;
  m->segment = std::move(segment);
  m->offset = offset;
  m->size = size;
  m->received_at_unix = msg.received_at_unix;
  m->sender = env.sender;
  m->mail = env.mail;
  m->rcpts.reserve(env.recipients.size());
  for (const Recipient& r : env.recipients) {
    QueuedRecipient& q = m->rcpts.emplace_back();
    q.address = r.address;
    q.params = r.params;
  }
  if (held && relays_->held_bytes() + size <= cfg_->server.delivery.memory_per_shard) {
    m->data.reserve(size);
    m->data.append(msg.received);
    m->data.append(msg.body.view());
  }
  relays_->submit(m);
}

}  // namespace ringmx
