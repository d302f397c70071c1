// A body past the shard's body budget streams to disk as it arrives instead
// of being held (Session spills it piece by piece). Each such message is one
// version-2 record in a file of its own, DIR/shard-N/ID.tmp while it is being
// written: the envelope block goes first with its message-size as zero
// digits, then the Received header and the body, one write in flight at a
// time. At the end of data the digits are written in place, the trailer
// after the body, fdatasync (one linked chain), then the file is renamed to
// ID.msg and the directory synced (another chain) — only then 250. The CRC
// is summed as the pieces pass and joined to the header's at the end
// (crc32c_combine): nothing is read back. Start-up removes any ID.tmp (it was
// never acknowledged); a discarded one is unlinked through the ring.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/connection.h"
#include "net/shard.h"
#include "pipeline/crc32c.h"
#include "pipeline/spool_format.h"

namespace ringmx {

void Shard::spill_start(Connection& c, Message& msg) {
  auto sp = std::make_unique<Spill>();
  std::string head;
  sp->size_at = append_spool_envelope_unsized(head, msg, spool_client(c.session, msg));
  sp->crc_head = crc32c_extend(0, head.data(), sp->size_at);
  const size_t tail_at = sp->size_at + kSpoolSizeDigits;
  sp->crc_tail = crc32c_extend(0, head.data() + tail_at, head.size() - tail_at);
  sp->crc_tail = crc32c_extend(sp->crc_tail, msg.received.data(), msg.received.size());
  sp->tail_len = head.size() - tail_at + msg.received.size();
  sp->message_size = msg.received.size() + msg.body.size();
  sp->crc_tail = crc32c_extend(sp->crc_tail, msg.body.data(), msg.body.size());
  sp->tail_len += msg.body.size();
  sp->lead = std::move(head);
  sp->lead.append(msg.received);
  sp->held = std::move(msg.body);  // written from where it is, not copied
  sp->tmp_name = spool_temp_name(msg.envelope.queue_id);
  sp->final_name = spool_final_name(msg.envelope.queue_id);
  sp->opening = true;
  c.spill = std::move(sp);
  account_spill(c);
  metrics_.body_spills.inc();
  ++c.ops;
  const char* name = c.spill->tmp_name.c_str();
  ring_.prep(1, [this, &c, name](io_uring_sqe** s) {
    io_uring_prep_openat(s[0], spool_dir_fd_, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    io_uring_sqe_set_data64(s[0], tag(&c, kOpSpillOpen));
  });
}

void Shard::spill_append(Connection& c, std::string_view piece) {
  Spill& sp = *c.spill;
  sp.crc_tail = crc32c_extend(sp.crc_tail, piece.data(), piece.size());
  sp.tail_len += piece.size();
  sp.message_size += piece.size();
  if (sp.error != 0) return;  // the reply will be 451; the rest is not kept
  // One allocation a chunk (pieces are at most a TLS record), not a doubling
  // series that ends at twice the chunk.
  if (sp.pending.empty()) sp.pending.reserve(kSpillChunk + size_t{16} * 1024);
  sp.pending.append(piece);
  account_spill(c);
  spill_write(c);
}

void Shard::account_spill(Connection& c) {
  const uint64_t now_held = c.spill_memory();
  Spill* sp = c.spill.get();
  const uint64_t before = sp ? sp->accounted : 0;
  body_memory_ = body_memory_ - before + now_held;
  if (sp) sp->accounted = now_held;
  metrics_.body_memory_bytes.set(static_cast<int64_t>(body_memory_));
}

// Writes what is pending once there is a chunk of it (or the data ended).
void Shard::spill_write(Connection& c) {
  Spill& sp = *c.spill;
  if (sp.fd < 0 || sp.writing || sp.error != 0 || sp.discarded) return;
  if (!sp.lead_written) {
    // The envelope block, the Received header and the body held so far.
    sp.writing = true;
    ++c.ops;
    if (sp.off == 0) {
      sp.lead_iov[0] = {sp.lead.data(), sp.lead.size()};
      sp.lead_iov[1] = {sp.held.data(), sp.held.size()};
    }
    ring_.prep(1, [&c](io_uring_sqe** s) {
      Spill& p = *c.spill;
      io_uring_prep_writev(s[0], p.fd, p.lead_iov, 2, p.off);
      io_uring_sqe_set_data64(s[0], tag(&c, kOpSpillWrite));
    });
    return;
  }
  if (sp.pending.empty()) return;
  if (sp.pending.size() < kSpillChunk && !sp.committing) return;
  sp.inflight.swap(sp.pending);
  sp.pending.clear();
  sp.writing = true;
  ++c.ops;
  ring_.prep(1, [&c](io_uring_sqe** s) {
    Spill& p = *c.spill;
    io_uring_prep_write(s[0], p.fd, p.inflight.data(), static_cast<unsigned>(p.inflight.size()),
                        p.off);
    io_uring_sqe_set_data64(s[0], tag(&c, kOpSpillWrite));
  });
}

void Shard::spill_commit(Connection& c, Message& msg) {
  Spill& sp = *c.spill;
  sp.msg = &msg;
  sp.committing = true;
  sp.started_ns = mono_ns();
  if (sp.error != 0) {
    // The handler may not answer from inside on_message: a no-op through the
    // ring brings the 451 back on the next turn of the loop.
    sp.seal_cqes = 1;
    ++c.ops;
    ring_.prep(1, [&c](io_uring_sqe** s) {
      io_uring_prep_nop(s[0]);
      io_uring_sqe_set_data64(s[0], tag(&c, kOpSpillSeal));
    });
    return;
  }
  if (!sp.busy() && sp.lead_written && sp.pending.empty()) return spill_seal(c);
  spill_write(c);  // the rest, whatever its size; the seal follows its completion
}

// Size digits in place, trailer at the end, fdatasync: one linked chain.
void Shard::spill_seal(Connection& c) {
  Spill& sp = *c.spill;
  sp.digits = spool_size_digits(sp.message_size);
  const uint32_t crc = crc32c_combine(
      crc32c_extend(sp.crc_head, sp.digits.data(), sp.digits.size()), sp.crc_tail, sp.tail_len);
  sp.trailer = spool_trailer(crc);
  sp.seal_cqes = 3;
  c.ops += 3;
  ring_.prep(3, [&c](io_uring_sqe** s) {
    Spill& p = *c.spill;
    io_uring_prep_write(s[0], p.fd, p.digits.data(), static_cast<unsigned>(p.digits.size()),
                        p.size_at);
    io_uring_prep_write(s[1], p.fd, p.trailer.data(), static_cast<unsigned>(p.trailer.size()),
                        p.off);
    io_uring_prep_fsync(s[2], p.fd, IORING_FSYNC_DATASYNC);
    for (int i = 0; i < 3; ++i) {
      if (i < 2) s[i]->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(s[i], tag(&c, kOpSpillSeal));
    }
  });
}

void Shard::on_spill_cqe(Connection& c, unsigned op, int res) {
  --c.ops;
  Spill& sp = *c.spill;
  switch (op) {
    case kOpSpillOpen:
      sp.opening = false;
      if (res < 0) {
        sp.error = -res;
      } else {
        sp.fd = res;
        sp.created = true;
      }
      break;
    case kOpSpillWrite: {
      sp.writing = false;
      const size_t want =
          sp.lead_written ? sp.inflight.size() : sp.lead_iov[0].iov_len + sp.lead_iov[1].iov_len;
      if (res <= 0) {
        if (sp.error == 0) sp.error = res < 0 ? -res : ENOSPC;
      } else {
        sp.off += static_cast<uint64_t>(res);
        if (static_cast<size_t>(res) < want) {
          // Short (one write moves at most about 2 GiB): the rest goes next.
          size_t n = static_cast<size_t>(res);
          if (sp.lead_written) {
            sp.inflight.erase(0, n);
            sp.pending.insert(0, sp.inflight);
            sp.inflight.clear();
          } else {
            for (iovec& v : sp.lead_iov) {
              const size_t k = std::min(n, v.iov_len);
              v.iov_base = static_cast<char*>(v.iov_base) + k;
              v.iov_len -= k;
              n -= k;
            }
          }
          break;
        }
      }
      if (!sp.lead_written) {
        sp.lead_written = true;
        sp.lead.clear();
        sp.lead.shrink_to_fit();
        sp.held.release();
      }
      // Freed, not kept: a slow sender's spill holds only what waits for the
      // next write, not a chunk-sized buffer it may not need for a while.
      std::string().swap(sp.inflight);
      account_spill(c);
      break;
    }
    case kOpSpillSeal:
    case kOpSpillName:
      // Any failure in a chain (a short write cancels the rest) fails it.
      if (res < 0 && sp.error == 0) sp.error = -res;
      if (op == kOpSpillName && res >= 0) sp.named = true;  // a cancelled sync means no rename
      if (--sp.seal_cqes > 0) return;
      if (sp.discarded) break;
      if (sp.error != 0 || op == kOpSpillName) return spill_done(c, sp.error == 0);
      // Sealed: give it its final name (never over another file), then make
      // the name durable.
      sp.seal_cqes = 2;
      c.ops += 2;
      ring_.prep(2, [this, &c](io_uring_sqe** s) {
        Spill& p = *c.spill;
        io_uring_prep_renameat(s[0], spool_dir_fd_, p.tmp_name.c_str(), spool_dir_fd_,
                               p.final_name.c_str(), RENAME_NOREPLACE);
        s[0]->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(s[0], tag(&c, kOpSpillName));
        io_uring_prep_fsync(s[1], spool_dir_fd_, 0);
        io_uring_sqe_set_data64(s[1], tag(&c, kOpSpillName));
      });
      return;
    default: return;
  }
  if (sp.discarded) {
    if (!sp.busy()) spill_remove(c);
    if (c.stage == Connection::Stage::open) return maybe_resume_recv(c);
    return maybe_free(c);
  }
  spill_write(c);
  if (sp.committing && !sp.busy()) {
    if (sp.error != 0) return spill_done(c, false);
    if (sp.lead_written && sp.pending.empty()) return spill_seal(c);
  }
  if (c.stage == Connection::Stage::open) {
    maybe_resume_recv(c);
  } else if (c.stage == Connection::Stage::closing) {
    maybe_free(c);  // the client left in the middle of the body
  }
}

void Shard::spill_done(Connection& c, bool ok) {
  Spill& sp = *c.spill;
  metrics_.fsync_seconds.observe_ns(static_cast<uint64_t>(mono_ns() - sp.started_ns));
  if (ok) {
    metrics_.spool_writes.inc();
    shared_.spool_bytes.fetch_add(static_cast<int64_t>(sp.off + sp.trailer.size()),
                                  std::memory_order_relaxed);
    shared_.spool_messages.fetch_add(1, std::memory_order_relaxed);
    ::close(sp.fd);
    if (relays_ && relays_->active() && sp.msg) {
      // Its own one-record segment; the message starts after the envelope
      // block, whose size digits end it ("\n\n").
      hand_off(c, *sp.msg, sp.final_name, sp.size_at + kSpoolSizeDigits + 2, sp.message_size, false,
               sp.off + sp.trailer.size());
    }
    drop_spill(c);
  } else {
    metrics_.spool_write_errors.inc();
    LogLine l(LogLevel::error, "spool_write_failed", unix_ms_);
    l.kv("file", sp.tmp_name).kv("messages", uint64_t{1}).kv("error", std::strerror(sp.error));
    log(l);
    if (sp.error == ENOSPC || sp.error == EDQUOT) disk_low_ = true;
    if (sp.named) {
      // Renamed, but the directory sync failed: the name may not last. The
      // client hears 451 and sends it again (a duplicate, never a loss).
      ::close(sp.fd);
      drop_spill(c);
    } else {
      spill_remove(c);
    }
  }
  message_written(c, ok);
}

// The transaction ended without taking the spilled message.
void Shard::spill_discard(Connection& c) {
  if (!c.spill || c.spill->committing) return;
  c.spill->discarded = true;
  if (c.spill->busy()) return;  // removed when its last operation completes
  spill_remove(c);
  if (c.stage == Connection::Stage::open) maybe_resume_recv(c);
}

// Closes and unlinks an unfinished spill file; the record lives on (for the
// path) until the ring has unlinked it.
// Forgets a finished spill (its fd closed), and what its buffers counted.
void Shard::drop_spill(Connection& c) {
  body_memory_ -= c.spill->accounted;
  metrics_.body_memory_bytes.set(static_cast<int64_t>(body_memory_));
  c.spill.reset();
}

void Shard::spill_remove(Connection& c) {
  body_memory_ -= c.spill->accounted;
  c.spill->accounted = 0;
  metrics_.body_memory_bytes.set(static_cast<int64_t>(body_memory_));
  std::unique_ptr<Spill> sp = std::move(c.spill);
  if (sp->fd >= 0) ::close(sp->fd);
  sp->fd = -1;
  if (!sp->created) return;  // no file of ours to remove
  Spill* raw = sp.get();
  dead_spills_.push_back(std::move(sp));
  ring_.prep(1, [this, raw](io_uring_sqe** s) {
    io_uring_prep_unlinkat(s[0], spool_dir_fd_, raw->tmp_name.c_str(), 0);
    io_uring_sqe_set_data64(s[0], tag(raw, kOpSpillUnlink));
  });
}

void Shard::on_spill_unlinked(Spill* sp) {
  auto it = std::find_if(dead_spills_.begin(), dead_spills_.end(),
                         [sp](const std::unique_ptr<Spill>& d) { return d.get() == sp; });
  if (it != dead_spills_.end()) dead_spills_.erase(it);
}

}  // namespace ringmx
