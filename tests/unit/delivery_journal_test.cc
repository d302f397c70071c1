// Contract: the delivery journal (pipeline/delivery_journal.h): its lines
// parse back, a line whose checksum fails or that was cut short is skipped
// (never trusted); scan_for_delivery returns what is still to deliver, with
// the journal's per-recipient progress and retry schedule, removes segments
// whose every message is done (and their journals) and journals left alone,
// and hands a directory no shard owns to one that does.
#include "pipeline/delivery_journal.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "pipeline/crc32c.h"
#include "pipeline/spool_format.h"
#include "scratch_dir.h"
#include "spool_records.h"

namespace ringmx {
namespace {

namespace fs = std::filesystem;
using test_support::ScratchDir;
using test_support::write_file;

std::string record(std::string_view queue_id, size_t rcpts, std::string_view body = "hi\r\n") {
  Message msg;
  msg.envelope.queue_id = std::string(queue_id);
  msg.envelope.sender = "s@example.net";
  msg.envelope.mail.envid = "e1";
  for (size_t i = 0; i < rcpts; ++i) {
    msg.envelope.recipients.push_back(
        Recipient{"r" + std::to_string(i) + "@example.org", {notify_failure, "", ""}});
  }
  msg.body.append(body.data(), body.size());
  return test_support::spool_record(msg);
}

TEST(DeliveryJournal, LinesParseBack) {
  std::string j;
  append_journal_rcpt_done(j, "Q1", 2);
  append_journal_retry(j, "Q1", 3, 1795241997123);
  append_journal_message_done(j, "Q2");
  EXPECT_EQ(j.substr(0, 7), "D Q1 2 ");
  const JournalState st = parse_journal(j);
  EXPECT_EQ(st.lines, 3u);
  EXPECT_EQ(st.bad_lines, 0u);
  ASSERT_EQ(st.entries.count("Q1"), 1u);
  EXPECT_EQ(st.entries.at("Q1").rcpts_done, std::vector<uint32_t>{2});
  EXPECT_EQ(st.entries.at("Q1").attempts, 3u);
  EXPECT_EQ(st.entries.at("Q1").next_unix_ms, 1795241997123);
  EXPECT_FALSE(st.entries.at("Q1").message_done);
  EXPECT_TRUE(st.entries.at("Q2").message_done);
}

TEST(DeliveryJournal, DamagedAndCutLinesAreSkipped) {
  std::string good;
  append_journal_message_done(good, "Q1");
  std::string flipped;
  append_journal_message_done(flipped, "Q2");
  flipped[2] = 'X';  // "M X2 crc": the checksum no longer matches
  std::string cut;
  append_journal_message_done(cut, "Q3");
  cut.pop_back();  // no LF: the write never finished
  std::string zeros(24, '\0');
  zeros.back() = '\n';
  std::string unknown = "Z Q4";
  const uint32_t crc = crc32c(unknown);
  char hex[10];
  std::snprintf(hex, sizeof hex, " %08x", crc);
  unknown += hex;
  unknown += "\n";
  const JournalState st = parse_journal(good + flipped + zeros + unknown + cut);
  EXPECT_EQ(st.entries.size(), 1u);
  EXPECT_TRUE(st.entries.at("Q1").message_done);
  EXPECT_EQ(st.bad_lines, 4u);
}

TEST(DeliveryJournal, ScanQueuesWhatIsLeftAndRemovesWhatIsDone) {
  ScratchDir d;
  // Segment A: Q1 done, Q2 has recipient 0 of 2 done and a retry schedule.
  write_file(d.path() / "A.msg", record("Q1", 1) + record("Q2", 2));
  std::string ja;
  append_journal_message_done(ja, "Q1");
  append_journal_rcpt_done(ja, "Q2", 0);
  append_journal_retry(ja, "Q2", 4, 1795242000000);
  write_file(d.path() / "A.done", ja);
  // Segment B: everything done: removed with its journal.
  write_file(d.path() / "B.msg", record("Q3", 1));
  std::string jb;
  append_journal_message_done(jb, "Q3");
  write_file(d.path() / "B.done", jb);
  // Segment C: no journal yet: everything pending.
  write_file(d.path() / "C.msg", record("Q4", 3, "body\r\n"));
  // A journal whose segment is gone.
  write_file(d.path() / "D.done", jb);

  const DeliveryScan scan = scan_for_delivery(d.str());
  EXPECT_EQ(scan.segments_removed, 1u);
  EXPECT_EQ(scan.journals_removed, 1u);
  EXPECT_EQ(scan.messages_done, 1u);  // Q1, in a segment that stays
  EXPECT_FALSE(fs::exists(d.path() / "B.msg"));
  EXPECT_FALSE(fs::exists(d.path() / "B.done"));
  EXPECT_FALSE(fs::exists(d.path() / "D.done"));
  EXPECT_TRUE(fs::exists(d.path() / "A.msg"));
  EXPECT_TRUE(fs::exists(d.path() / "A.done"));
  ASSERT_EQ(scan.pending.size(), 2u);
  const QueuedMessage& q2 = *scan.pending[0];
  EXPECT_EQ(q2.queue_id, "Q2");
  EXPECT_EQ(q2.segment, "A.msg");
  EXPECT_EQ(q2.rcpts[0].state, RcptState::delivered);
  EXPECT_EQ(q2.rcpts[1].state, RcptState::pending);
  EXPECT_EQ(q2.rcpts[1].attempts, 4u);
  EXPECT_EQ(q2.next_attempt_unix_ms, 1795242000000);
  EXPECT_EQ(q2.mail.envid, "e1");
  EXPECT_EQ(q2.rcpts[1].params.notify, notify_failure);
  const QueuedMessage& q4 = *scan.pending[1];
  EXPECT_EQ(q4.rcpts.size(), 3u);
  // The message's place in its segment: read back, it is the Received
  // header and the body.
  const std::string c = test_support::read_whole(d.path() / "C.msg");
  EXPECT_EQ(c.substr(q4.offset, q4.size).rfind("Received: ", 0), 0u);
  EXPECT_TRUE(c.substr(q4.offset, q4.size).ends_with("body\r\n"));
  ASSERT_EQ(scan.live.count("A.msg"), 1u);
  EXPECT_EQ(scan.live.at("A.msg").pending, 1u);
  EXPECT_EQ(scan.live.at("A.msg").messages, 2u);
  EXPECT_EQ(scan.live.at("C.msg").bytes, c.size());
}

TEST(DeliveryJournal, AdoptionMovesSegmentsAndJournals) {
  ScratchDir d;
  fs::create_directories(d.path() / "shard-3");
  fs::create_directories(d.path() / "shard-1");
  write_file(d.path() / "shard-3" / "A.msg", record("Q1", 1));
  std::string j;
  append_journal_rcpt_done(j, "Q1", 0);
  write_file(d.path() / "shard-3" / "A.done", j);
  write_file(d.path() / "shard-3" / "B.msg", record("Q2", 1));
  write_file(d.path() / "shard-1" / "C.msg", record("Q3", 1));
  adopt_spool_dir((d.path() / "shard-3").string(), (d.path() / "shard-1").string());
  EXPECT_TRUE(fs::exists(d.path() / "shard-1" / "A.msg"));
  EXPECT_TRUE(fs::exists(d.path() / "shard-1" / "A.done"));
  EXPECT_TRUE(fs::exists(d.path() / "shard-1" / "B.msg"));
  EXPECT_FALSE(fs::exists(d.path() / "shard-3" / "A.msg"));
  const DeliveryScan scan = scan_for_delivery((d.path() / "shard-1").string());
  EXPECT_EQ(scan.pending.size(), 2u);  // Q2, Q3 (Q1's only recipient is done)
  EXPECT_EQ(scan.segments_removed, 1u);
}

}  // namespace
}  // namespace ringmx
