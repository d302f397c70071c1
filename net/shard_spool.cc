// The shard's spool writer: complete messages are appended in batches to the
// shard's current segment file (one writev + one fdatasync through the ring,
// a directory fsync when a segment starts); 250 only after that. Each record
// ends in its CRC32C trailer (format version 2), so start-up can tell a
// record whose data never reached the disk.
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <type_traits>

#include "net/connection.h"
#include "net/shard.h"
#include "pipeline/crc32c.h"
#include "pipeline/spool_format.h"

namespace ringmx {

namespace {

// A spool batch: at most this many messages (4 iovecs each: at most IOV_MAX,
// 1024, for one writev) and, beyond its first message, this many bytes.
constexpr size_t kMaxBatchMessages = 256;
static_assert(kMaxBatchMessages * std::extent_v<decltype(SpoolJob::iov)> <= IOV_MAX);
constexpr size_t kMaxBatchBytes = size_t{64} << 20;

}  // namespace

// ---- spool --------------------------------------------------------------------------

bool Shard::spool_full() const {
  const uint64_t max = cfg_->server.spool.max_bytes;
  if (max && static_cast<uint64_t>(shared_.spool_bytes.load(std::memory_order_relaxed)) >= max) {
    return true;
  }
  return disk_low_;
}

BodyRoom Shard::hold_body(Connection& c, uint64_t bytes) {
  body_memory_ -= c.body_bytes;
  // The session's own snapshot of the limits: a reload does not move the
  // budget under a message in flight.
  if (bytes > c.body_bytes &&
      body_memory_ + bytes > c.session.config().limits.body_memory_per_shard) {
    c.body_bytes = 0;
    metrics_.body_memory_bytes.set(static_cast<int64_t>(body_memory_));
    // Past the budget the body goes to disk as it comes; refused only when
    // the spool is full too, or this connection's last spill is still being
    // thrown away, or milters are to see it (they are given bodies from
    // memory only, and would refuse it at the end: 452 4.3.1 now saves the
    // disk the write).
    const bool milters = c.policy && c.policy->checks().milters > 0;
    if (!spool_full() && !c.spill && !milters) return BodyRoom::spill;
    metrics_.body_memory_refusals.inc();
    if (log_enabled(LogLevel::info)) {
      LogLine l(LogLevel::info, "body_memory_full", unix_ms_);
      l.kv("sid", format_session_id(c.session.conn().session_id))
          .kv("client", c.session.conn().client_ip)
          .kv("shard_bytes", body_memory_)
          .kv("message_bytes", bytes);
      log(l);
    }
    return BodyRoom::refuse;
  }
  c.body_bytes = bytes;
  body_memory_ += bytes;
  metrics_.body_memory_bytes.set(static_cast<int64_t>(body_memory_));
  return BodyRoom::keep;
}

void Shard::check_disk() {
  next_disk_check_ms_ = now_.mono_ms + 1000;
  struct statvfs st {};
  if (spool_dir_fd_ >= 0 && fstatvfs(spool_dir_fd_, &st) == 0) {
    const uint64_t free_bytes = uint64_t{st.f_bavail} * st.f_frsize;
    metrics_.spool_free_bytes.set(static_cast<int64_t>(free_bytes));
    const bool low = free_bytes < cfg_->server.spool.min_free_bytes;
    if (low != disk_low_) {
      LogLine l(low ? LogLevel::warn : LogLevel::info, low ? "spool_disk_low" : "spool_disk_ok",
                unix_ms_);
      l.kv("shard", id_).kv("free_bytes", free_bytes);
      log(l);
    }
    disk_low_ = low;
  }
}

SpoolClient spool_client(const Session& s, const Message& msg) {
  SpoolClient client;
  client.ip = s.conn().client_ip;
  client.port = s.conn().client_port;
  client.helo = s.helo();
  client.ptr = s.conn().client_ptr;
  client.protocol =
      protocol_name(s.esmtp(), s.conn().tls_active, false, msg.envelope.mail.smtputf8);
  client.tls_version = s.conn().tls_version;
  client.tls_cipher = s.conn().tls_cipher;
  return client;
}

void Shard::spool_message(Connection& c, Message& msg) {
  auto* job = new SpoolJob;
  job->conn = &c;
  job->msg = &msg;
  c.job = job;
  const uint64_t msize = msg.received.size() + msg.body.size();
  append_spool_envelope(job->header, msg, spool_client(c.session, msg), msize);
  // The trailer's CRC32C covers the record up to it; computed here, on bytes
  // the shard just touched, rather than after the fact (docs/spool.md).
  uint32_t crc = crc32c_extend(0, job->header.data(), job->header.size());
  crc = crc32c_extend(crc, msg.received.data(), msg.received.size());
  crc = crc32c_extend(crc, msg.body.data(), msg.body.size());
  job->trailer = spool_trailer(crc);
  job->iov[0] = {job->header.data(), job->header.size()};
  job->iov[1] = {msg.received.data(), msg.received.size()};
  job->iov[2] = {msg.body.data(), msg.body.size()};
  job->iov[3] = {job->trailer.data(), job->trailer.size()};
  job->total = job->header.size() + msize + job->trailer.size();
  spool_queue_.push_back(job);
  if (!batch_) start_batch();
}

// Group commit: a batch takes everything queued; what arrives while it is on
// its way to disk waits for the next one, so under load batches grow by
// themselves. Batches are appended to the shard's current segment file: one
// writev and one fdatasync per batch, and no file to create except when a
// segment starts (then its directory entry is synced too).
void Shard::start_batch() {
  auto* b = new SpoolBatch;
  batch_ = b;
  size_t n = 0;
  while (n < spool_queue_.size() && n < kMaxBatchMessages &&
         (n == 0 || b->total + spool_queue_[n]->total <= kMaxBatchBytes)) {
    SpoolJob* j = spool_queue_[n++];
    b->jobs.push_back(j);
    b->iov.insert(b->iov.end(), std::begin(j->iov), std::end(j->iov));
    b->total += j->total;
  }
  spool_queue_.erase(spool_queue_.begin(), spool_queue_.begin() + static_cast<ptrdiff_t>(n));
  b->started_ns = mono_ns();
  if (seg_fd_ >= 0) return submit_write(*b);
  // A new segment, named after its first message's queue id (O_EXCL: a name
  // clash is an error, never an overwrite).
  b->segment_name = spool_final_name(b->jobs.front()->conn->session.current_queue_id());
  ring_.prep(1, [this, b](io_uring_sqe** s) {
    io_uring_prep_openat(s[0], spool_dir_fd_, b->segment_name.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    io_uring_sqe_set_data64(s[0], tag(b, kOpSpoolOpen));
  });
}

void Shard::submit_write(SpoolBatch& b) {
  // Write what is left of the batch at the segment's durable end, then
  // fdatasync, linked: the sync runs only after a complete write (a short
  // write fails the link and cancels it). The two go to the kernel in one
  // submission, or the link would not hold (net/ring.h).
  b.pending_cqes = 2;
  b.write_ok = b.sync_ok = false;
  ring_.prep(2, [this, &b](io_uring_sqe** s) {
    const iovec* iov = b.iov.data() + b.iov_done;
    const auto n = static_cast<unsigned>(std::min<size_t>(b.iov.size() - b.iov_done, IOV_MAX));
    io_uring_prep_writev(s[0], seg_fd_, iov, n, seg_size_ + b.written);
    s[0]->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(s[0], tag(&b, kOpSpoolWrite));
    io_uring_prep_fsync(s[1], seg_fd_, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(s[1], tag(&b, kOpSpoolSync));
  });
}

// A write moved `n` bytes: skip the iovecs (and the part of one) it covered.
void SpoolBatch::advance(size_t n) {
  written += n;
  while (n > 0 && iov_done < iov.size()) {
    iovec& v = iov[iov_done];
    if (n < v.iov_len) {
      v.iov_base = static_cast<char*>(v.iov_base) + n;
      v.iov_len -= n;
      return;
    }
    n -= v.iov_len;
    ++iov_done;
  }
}

void Shard::close_segment() {
  if (seg_fd_ < 0) return;
  ::close(seg_fd_);
  if (seg_size_ == 0) ::unlinkat(spool_dir_fd_, seg_name_.c_str(), 0);
  seg_fd_ = -1;
  seg_size_ = 0;
  segment_closed(seg_name_);
}

void Shard::on_spool_cqe(SpoolBatch& b, unsigned op, int res) {
  switch (op) {
    case kOpSpoolOpen:
      if (res < 0) return finish_batch(b, false, -res);
      seg_fd_ = res;
      seg_name_ = b.segment_name;
      seg_size_ = 0;
      seg_needs_dir_sync_ = true;
      return submit_write(b);
    case kOpSpoolWrite:
      // A short write also fails the link (the sync is cancelled). One write
      // moves at most about 2 GiB (and a file system may stop short for its
      // own reasons): the rest goes in another write, below.
      if (res > 0) b.advance(static_cast<size_t>(res));
      b.write_ok = res >= 0 && b.written == b.total;
      if (res < 0) b.error = -res;
      if (res == 0 && b.written < b.total) b.error = ENOSPC;  // no progress at all
      break;
    case kOpSpoolSync:
      b.sync_ok = res >= 0;
      // -ECANCELED: the write before it failed or stopped short (handled there).
      if (res < 0 && res != -ECANCELED && !b.error) b.error = -res;
      break;
    case kOpDirSync:
      if (res < 0) {
        // The segment's name may not survive a crash: nobody hears 250 for
        // it, and the next batch starts a new segment.
        close_segment();
        return finish_batch(b, false, -res);
      }
      return finish_batch(b, true, 0);
    default: return;
  }
  if (--b.pending_cqes > 0) return;
  if (!b.write_ok && !b.error && b.written < b.total) return submit_write(b);  // short: go on
  if (!(b.write_ok && b.sync_ok)) {
    // Error path only: cut the segment back to what is durable (blocking
    // calls are acceptable here) and leave it; the next batch starts anew.
    if (::ftruncate(seg_fd_, static_cast<off_t>(seg_size_)) != 0) {
      LogLine l(LogLevel::error, "spool_truncate_failed", unix_ms_);
      l.kv("file", seg_name_).kv("error", std::strerror(errno));
      log(l);
    }
    close_segment();
    if (b.error == ENOSPC || b.error == EDQUOT) disk_low_ = true;
    return finish_batch(b, false, b.error ? b.error : EIO);
  }
  seg_size_ += b.total;
  if (seg_needs_dir_sync_) {
    seg_needs_dir_sync_ = false;
    ring_.prep(1, [this, &b](io_uring_sqe** s) {
      io_uring_prep_fsync(s[0], spool_dir_fd_, 0);
      io_uring_sqe_set_data64(s[0], tag(&b, kOpDirSync));
    });
    return;
  }
  finish_batch(b, true, 0);
}

void Shard::finish_batch(SpoolBatch& b, bool ok, int err) {
  metrics_.fsync_seconds.observe_ns(static_cast<uint64_t>(mono_ns() - b.started_ns));
  if (ok && relays_ && relays_->active()) {
    // Where each record landed: the batch ends at the segment's durable end.
    uint64_t at = seg_size_ - b.total;
    for (const SpoolJob* job : b.jobs) {
      const uint64_t size = job->total - job->header.size() - job->trailer.size();
      hand_off(*job->conn, *job->msg, seg_name_, at + job->header.size(), size, true, job->total);
      at += job->total;
    }
  }
  if (ok && seg_size_ >= cfg_->server.spool.segment_bytes)
    close_segment();  // the next batch starts a new one
  if (ok) {
    metrics_.spool_writes.inc();
    shared_.spool_bytes.fetch_add(static_cast<int64_t>(b.total), std::memory_order_relaxed);
    shared_.spool_messages.fetch_add(static_cast<int64_t>(b.jobs.size()),
                                     std::memory_order_relaxed);
  } else {
    metrics_.spool_write_errors.inc();
    LogLine l(LogLevel::error, "spool_write_failed", unix_ms_);
    l.kv("file", b.segment_name.empty() ? seg_name_ : b.segment_name)
        .kv("messages", uint64_t{b.jobs.size()})
        .kv("error", std::strerror(err));
    log(l);
  }
  std::vector<SpoolJob*> jobs;
  jobs.swap(b.jobs);
  batch_ = nullptr;
  delete &b;
  // The next batch goes to disk while these sessions answer their clients.
  if (!spool_queue_.empty()) start_batch();
  for (SpoolJob* job : jobs) {
    Connection& c = *job->conn;
    c.job = nullptr;
    delete job;
    message_written(c, ok);
  }
}

void Shard::message_written(Connection& c, bool ok) {
  if (ok) {
    c.session.resume(Verdict::accept(), now_);
  } else {
    c.session.resume(
        Verdict::reject(451, "4.3.0", "Error: local error writing the message, try again later"),
        now_);
  }
  if (c.stage == Connection::Stage::closing) {
    // The client is gone; the message is on disk all the same.
    c.session.consume_output(c.session.output().size());
    c.send_queued.clear();
    if (!c.send_busy) begin_close(c);
    return;
  }
  feed_pending(c);
  flush(c);
}

}  // namespace ringmx
