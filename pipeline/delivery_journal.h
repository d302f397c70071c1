// The delivery journal: what became of accepted messages, kept beside each
// segment (DIR/shard-N/ID.done for ID.msg) so that a restart neither loses
// the retry state nor delivers again what was done, and so that a segment
// whose every message is done can be removed — with its journal: a journal
// never outgrows its segment's messages, so nothing needs compacting.
//
// Format: text lines, each ending in a space, its CRC32C (8 lowercase hex
// digits, of everything before that space) and LF:
//   M QUEUEID                      every recipient of the message is done
//   D QUEUEID INDEX                recipient INDEX (0-based, RCPT order) is done
//   R QUEUEID ATTEMPTS NEXT_MS     retry state: attempts so far, next attempt (unix ms)
//   H QUEUEID                      held by an operator (no attempt until released)
//   U QUEUEID                      released
// "Done" is delivered or failed for good (bounced). A line whose checksum
// does not match, or that is cut short, is skipped: the worst it can cause
// is one more delivery (a duplicate, never a loss), or an attempt sooner.
//
// scan_for_delivery (start-up, blocking I/O) reads every segment of a
// directory and its journal and returns the messages still to deliver; it
// removes the segments whose every message is done (the segment first, then
// its journal) and journals left without a segment.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pipeline/delivery.h"

namespace ringmx {

inline constexpr std::string_view kJournalSuffix = ".done";
// "ID.done" for the segment "ID.msg".
std::string journal_name(std::string_view segment);

void append_journal_message_done(std::string& out, std::string_view queue_id);
void append_journal_rcpt_done(std::string& out, std::string_view queue_id, uint32_t index);
void append_journal_hold(std::string& out, std::string_view queue_id, bool held);
void append_journal_retry(std::string& out, std::string_view queue_id, uint32_t attempts,
                          int64_t next_unix_ms);

struct JournalEntry {
  bool message_done = false;
  std::vector<uint32_t> rcpts_done;
  uint32_t attempts = 0;
  int64_t next_unix_ms = 0;
  bool held = false;  // the last H or U line
};

struct JournalState {
  std::unordered_map<std::string, JournalEntry> entries;  // by queue id
  uint64_t lines = 0;
  uint64_t bad_lines = 0;  // checksum mismatch, cut short or malformed: skipped
};

JournalState parse_journal(std::string_view data);

struct DeliveryScan {
  std::vector<std::shared_ptr<QueuedMessage>> pending;  // envelope only: data is read back
  struct Segment {
    uint32_t pending = 0;   // messages still to deliver
    uint32_t messages = 0;  // records
    uint64_t bytes = 0;     // file size
  };
  std::unordered_map<std::string, Segment> live;  // the segments kept
  uint64_t messages_done = 0;                     // in the remaining segments
  uint64_t segments_removed = 0;                  // every message done
  uint64_t journals_removed = 0;                  // left without their segment
  uint64_t journal_bad_lines = 0;
  std::vector<std::string> problems;
};

// Start-up only, after recover_spool_dir(dir) (every record complete and
// checked). Throws std::runtime_error naming the path when the directory, a
// segment or a journal cannot be read or removed.
DeliveryScan scan_for_delivery(const std::string& dir);

// Start-up only, after recovery: moves every segment of `from` (a directory
// no shard owns any more) and its journal into `to` (renamed without
// replacing; queue ids never repeat across shards), the segment before its
// journal, then syncs both directories. A crash in between can only cause a
// duplicate delivery. Throws std::runtime_error naming the path on failure.
void adopt_spool_dir(const std::string& from, const std::string& to);

}  // namespace ringmx
