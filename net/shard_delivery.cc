// The hand-off from acceptance to delivery, and delivery's journal.
//
// Once a message is on disk (and before its client hears 250), the shard
// gives its envelope, its place in the spool and, while the delivery memory
// allows, its bytes to the shard's Relays (net/relay.h).
//
// What becomes of each message is appended to its segment's journal
// (ID.done beside ID.msg, format in pipeline/delivery_journal.h): one write
// and one fdatasync in flight per journal, lines arriving meanwhile waiting
// for the next (group commit); the journal's name is made durable (directory
// fsync) with its first write. A segment that takes no more appends and
// whose every message is done is removed: the segment first, then its
// journal (linked), so a crash between the two leaves a journal alone, which
// start-up removes. A journal line lost to a power cut can only cause a
// message to be delivered again, never lost.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "net/connection.h"
#include "net/shard.h"

namespace ringmx {
namespace {

// How long journal lines wait for others before they are written and synced.
constexpr int64_t kJournalDelayMs = 10;

}  // namespace
}  // namespace ringmx

namespace ringmx {

void Shard::hand_off(Connection& c, const Message& msg, std::string segment, uint64_t offset,
                     uint64_t size, bool held, uint64_t record_bytes) {
  auto m = std::make_shared<QueuedMessage>();
  const Envelope& env = msg.envelope;
  m->queue_id = env.queue_id;
  m->segment = std::move(segment);
  m->offset = offset;
  m->size = size;
  m->received_at_unix = msg.received_at_unix;
  m->accepted_mono_ns = mono_ns();
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
  // A spilled body's segment is its own file: it takes no more appends.
  segment_add(m->segment, 1, 1, !held, record_bytes);
  if (c.policy && !c.policy->quarantined().empty()) {
    // Quarantined: held like an operator's hold (ringmxctl queue release lets it go).
    m->held = true;
    journal_hold(*m, true);
    metrics_.quarantined.inc();
    if (log_enabled(LogLevel::info)) {
      LogLine l(LogLevel::info, "quarantine", unix_ms_);
      l.kv("sid", format_session_id(c.session.conn().session_id))
          .kv("qid", m->queue_id)
          .kv("client", c.session.conn().client_ip)
          .kv("reason", c.policy->quarantined());
      log(l);
    }
  }
  relays_->submit(m);
}

void Shard::segment_add(const std::string& segment, uint32_t pending, uint32_t records, bool closed,
                        uint64_t bytes) {
  auto& j = journals_[segment];
  if (!j) j = std::make_unique<SegmentJournal>(*this, segment);
  j->live += pending;
  j->messages += records;
  j->bytes += bytes;
  j->closed = j->closed || closed;
}

void Shard::segment_closed(const std::string& segment) {
  const auto it = journals_.find(segment);
  if (it == journals_.end()) return;
  it->second->closed = true;
  kick_journal(*it->second);
}

void Shard::journal_rcpt_done(const QueuedMessage& m, uint32_t index) {
  const auto it = journals_.find(m.segment);
  if (it == journals_.end()) return;
  append_journal_rcpt_done(it->second->buf, m.queue_id, index);
  kick_journal(*it->second);
}

void Shard::journal_retry(const QueuedMessage& m, uint32_t attempts, int64_t next_unix_ms) {
  const auto it = journals_.find(m.segment);
  if (it == journals_.end()) return;
  append_journal_retry(it->second->buf, m.queue_id, attempts, next_unix_ms);
  kick_journal(*it->second);
}

void Shard::journal_hold(const QueuedMessage& m, bool held) {
  const auto it = journals_.find(m.segment);
  if (it == journals_.end()) return;
  append_journal_hold(it->second->buf, m.queue_id, held);
  kick_journal(*it->second);
}

void Shard::journal_message_done(const QueuedMessage& m) {
  const auto it = journals_.find(m.segment);
  if (it == journals_.end()) return;
  SegmentJournal& j = *it->second;
  append_journal_message_done(j.buf, m.queue_id);
  if (j.live > 0) --j.live;
  kick_journal(j);
}

void Shard::kick_journal(SegmentJournal& j, bool now) {
  if (j.pending > 0 || j.reclaiming) return;
  if (j.closed && j.live == 0) {
    // Every message done: the segment goes, then its journal (linked: never
    // the journal alone first). What waits in buf is no longer needed.
    j.reclaiming = true;
    j.buf.clear();
    j.pending = 2;
    ring_.prep(2, [this, &j](io_uring_sqe** s) {
      io_uring_prep_unlinkat(s[0], spool_dir_fd_, j.segment.c_str(), 0);
      s[0]->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(s[0], completion_tag(&j.ops[SegmentJournal::kUnlinkSegment]));
      io_uring_prep_unlinkat(s[1], spool_dir_fd_, j.name.c_str(), 0);
      io_uring_sqe_set_data64(s[1], completion_tag(&j.ops[SegmentJournal::kUnlinkJournal]));
    });
    return;
  }
  if (j.buf.empty()) return;
  if (!now) {
    // Lines wait a little for more (one write and sync per journal per
    // kJournalDelayMs at most): a lost line costs a duplicate, never a loss,
    // so its sync need not be immediate, and batching keeps it cheap.
    if (!j.due) {
      j.due = true;
      journal_due_.push_back(j.segment);
    }
    if (!journal_timer_.linked()) wheel_.schedule(journal_timer_, now_.mono_ms + kJournalDelayMs);
    return;
  }
  if (j.fd < 0) {
    j.pending = 1;
    ring_.prep(1, [this, &j](io_uring_sqe** s) {
      // O_APPEND: a journal kept from before a restart is added to.
      io_uring_prep_openat(s[0], spool_dir_fd_, j.name.c_str(),
                           O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
      io_uring_sqe_set_data64(s[0], completion_tag(&j.ops[SegmentJournal::kOpen]));
    });
    return;
  }
  j.inflight.swap(j.buf);
  j.buf.clear();
  const bool name_too = !j.named;
  j.pending = name_too ? 3 : 2;
  ring_.prep(j.pending, [this, &j, name_too](io_uring_sqe** s) {
    io_uring_prep_write(s[0], j.fd, j.inflight.data(), static_cast<unsigned>(j.inflight.size()),
                        static_cast<uint64_t>(-1));  // at the end (O_APPEND)
    s[0]->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(s[0], completion_tag(&j.ops[SegmentJournal::kWrite]));
    io_uring_prep_fsync(s[1], j.fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(s[1], completion_tag(&j.ops[SegmentJournal::kSync]));
    if (name_too) {
      s[1]->flags |= IOSQE_IO_LINK;
      io_uring_prep_fsync(s[2], spool_dir_fd_, 0);
      io_uring_sqe_set_data64(s[2], completion_tag(&j.ops[SegmentJournal::kDirSync]));
    }
  });
}

void Shard::flush_journals() {
  std::vector<std::string> due;
  due.swap(journal_due_);
  for (const std::string& segment : due) {
    const auto it = journals_.find(segment);
    if (it == journals_.end() || !it->second->due) continue;
    it->second->due = false;  // a write in flight: its completion queues the rest again
    kick_journal(*it->second, true);
  }
}

void Shard::flush_journals_at_exit() {
  // The loop is over: blocking calls are fine. Lines not yet written would
  // only cost duplicates after the restart; a clean stop writes them.
  for (auto& [segment, j] : journals_) {
    if (j->buf.empty() || j->reclaiming) continue;
    const int fd =
        ::openat(spool_dir_fd_, j->name.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) continue;
    if (::write(fd, j->buf.data(), j->buf.size()) == static_cast<ssize_t>(j->buf.size())) {
      ::fdatasync(fd);
    }
    ::close(fd);
    j->buf.clear();
  }
  if (spool_dir_fd_ >= 0) ::fsync(spool_dir_fd_);
}

void Shard::journal_done(SegmentJournal& j, unsigned step, int res) {
  --j.pending;
  switch (step) {
    case SegmentJournal::kOpen:
      if (res < 0) {
        j.failed = true;
        LogLine l(LogLevel::error, "journal_open_failed", unix_ms_);
        l.kv("file", j.name).kv("error", std::strerror(-res));
        log(l);
        j.buf.clear();  // the lines are lost: at worst a duplicate after a restart
        break;
      }
      j.fd = res;
      break;
    case SegmentJournal::kWrite:
      if (res >= 0) j.off += static_cast<uint64_t>(res);
      if (res < 0 || static_cast<size_t>(res) != j.inflight.size()) j.failed = true;
      break;
    case SegmentJournal::kSync:
    case SegmentJournal::kDirSync:
      if (res < 0 && res != -ECANCELED) j.failed = true;
      if (step == SegmentJournal::kDirSync && res >= 0) j.named = true;
      break;
    case SegmentJournal::kUnlinkSegment:
      if (res < 0 && res != -ENOENT) {
        LogLine l(LogLevel::error, "segment_remove_failed", unix_ms_);
        l.kv("file", j.segment).kv("error", std::strerror(-res));
        log(l);
      }
      break;
    case SegmentJournal::kUnlinkJournal:
    default: break;
  }
  if (j.pending > 0) return;
  if (j.reclaiming) {
    metrics_.segments_reclaimed.inc();
    shared_.spool_bytes.fetch_sub(static_cast<int64_t>(j.bytes), std::memory_order_relaxed);
    shared_.spool_messages.fetch_sub(j.messages, std::memory_order_relaxed);
    if (log_enabled(LogLevel::debug)) {
      LogLine l(LogLevel::debug, "segment_removed", unix_ms_);
      l.kv("file", j.segment);
      log(l);
    }
    journals_.erase(j.segment);  // frees j
    return;
  }
  if (j.failed && step != SegmentJournal::kOpen) {
    LogLine l(LogLevel::warn, "journal_write_failed", unix_ms_);
    l.kv("file", j.name);
    log(l);
    j.failed = false;
  }
  j.inflight.clear();
  kick_journal(j);
}

}  // namespace ringmx
