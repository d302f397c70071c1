// Start-up recovery of version-2 spool files: a record whose checksum fails
// (its length reached the disk, its data did not) is cut off with everything
// after it, saved in corrupt/ first; version-1 and mixed files are kept.
// Scratch directories are made with mkdtemp and removed after.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "pipeline/crc32c.h"
#include "pipeline/spool_format.h"

#include "tests/unit/scratch_dir.h"
#include "tests/unit/spool_records.h"

namespace ringmx {
namespace {

namespace fs = std::filesystem;
using test_support::read_whole;
using test_support::ScratchDir;
using test_support::write_file;

// One record as the writer makes it (current version), message `body`.
std::string record(std::string_view queue_id, std::string_view body) {
  Message msg;
  msg.envelope.queue_id = std::string(queue_id);
  msg.envelope.sender = "s@example.net";
  msg.envelope.recipients.push_back(Recipient{"r@example.org", {}});
  msg.body.append(body);
  return test_support::spool_record(msg);
}

// The same record after a power cut that kept its length and lost its data:
// everything after the envelope block (message and trailer) reads as zeros.
std::string zeroed_after_envelope(std::string rec) {
  std::fill(rec.begin() + static_cast<ptrdiff_t>(rec.find("\n\n") + 2), rec.end(), '\0');
  return rec;
}

// Only the message zeroed; the trailer made it (it sits in another block).
std::string zeroed_message(std::string rec) {
  std::fill(rec.begin() + static_cast<ptrdiff_t>(rec.find("\n\n") + 2),
            rec.end() - static_cast<ptrdiff_t>(kSpoolTrailerSize), '\0');
  return rec;
}

// The record as the previous version wrote it: header line 1, no trailer.
std::string version1(std::string rec) {
  rec.resize(rec.size() - kSpoolTrailerSize);
  rec.replace(0, 14, "ringmx-spool 1");
  return rec;
}

TEST(SpoolRecovery, CutsARecordWhoseDataNeverReachedTheDisk) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string one = record("Q1", "Subject: one\r\n\r\nfirst\r\n");
  const std::string two = zeroed_message(record("Q2", "Subject: two\r\n\r\nsecond\r\n"));
  const std::string three = zeroed_after_envelope(record("Q3", std::string(5000, 'x')));
  write_file(dir / "SEG1.msg", one + two);
  write_file(dir / "SEG2.msg", one + three);

  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 2u);
  EXPECT_EQ(r.bytes, 2 * one.size());
  EXPECT_EQ(r.truncated, 2u);
  EXPECT_EQ(r.checksum_failures, 2u);
  EXPECT_EQ(r.bad, 2u);
  EXPECT_EQ(read_whole(dir / "SEG1.msg"), one);
  EXPECT_EQ(read_whole(dir / "SEG2.msg"), one);
  EXPECT_EQ(read_whole(dir / "corrupt" / "SEG1.msg.tail"), two);
  EXPECT_EQ(read_whole(dir / "corrupt" / "SEG2.msg.tail"), three);
  ASSERT_EQ(r.problems.size(), 2u);
  EXPECT_TRUE(r.problems[0].starts_with("SEG1.msg: record 2: checksum mismatch: trailer says "))
      << r.problems[0];
  EXPECT_TRUE(r.problems[0].ends_with(": cut back to " + std::to_string(one.size()) +
                                      " octets (tail saved as corrupt/SEG1.msg.tail)"))
      << r.problems[0];
  EXPECT_TRUE(r.problems[1].starts_with("SEG2.msg: record 2: bad trailer")) << r.problems[1];

  // Done once: the next start finds whole files.
  const RecoveryReport again = recover_spool_dir(dir.string());
  EXPECT_EQ(again.kept, 2u);
  EXPECT_EQ(again.truncated, 0u);
  EXPECT_EQ(again.checksum_failures, 0u);
  EXPECT_TRUE(again.problems.empty());
}

TEST(SpoolRecovery, ABadRecordInTheMiddleCutsEverythingAfterIt) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string one = record("Q1", "one\r\n");
  std::string two = record("Q2", "two\r\n");
  two[two.size() - kSpoolTrailerSize - 2] = 'X';  // one octet of old data
  const std::string three = record("Q3", "three\r\n");
  write_file(dir / "SEG.msg", one + two + three + one);
  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.checksum_failures, 1u);
  EXPECT_EQ(read_whole(dir / "SEG.msg"), one);
  // What followed may have been acknowledged: kept aside, not dropped.
  EXPECT_EQ(read_whole(dir / "corrupt" / "SEG.msg.tail"), two + three + one);
}

TEST(SpoolRecovery, AFileWhoseFirstRecordIsBadIsSetAsideWhole) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string file = zeroed_message(record("Q1", "one\r\n")) + record("Q2", "two\r\n");
  write_file(dir / "SEG.msg", file);
  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 0u);
  EXPECT_EQ(r.checksum_failures, 1u);
  EXPECT_EQ(r.bad, 1u);
  EXPECT_EQ(r.truncated, 0u);
  EXPECT_FALSE(fs::exists(dir / "SEG.msg"));
  EXPECT_EQ(read_whole(dir / "corrupt" / "SEG.msg"), file);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_TRUE(r.problems[0].starts_with("SEG.msg: record 1: checksum mismatch")) << r.problems[0];
  EXPECT_TRUE(r.problems[0].ends_with("(moved to corrupt/SEG.msg)")) << r.problems[0];
}

TEST(SpoolRecovery, AnUnfinishedTrailerIsCutWithoutSavingIt) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string one = record("Q1", "one\r\n");
  const std::string two = record("Q2", "two\r\n");
  write_file(dir / "SEG.msg", one + two.substr(0, two.size() - 3));
  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.truncated, 1u);
  EXPECT_EQ(r.checksum_failures, 0u);
  EXPECT_EQ(r.bad, 0u);
  EXPECT_EQ(read_whole(dir / "SEG.msg"), one);
  EXPECT_FALSE(fs::exists(dir / "corrupt"));
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0], "SEG.msg: record 2: truncated: trailer: 13 of 16 octets: cut back to " +
                               std::to_string(one.size()) + " octets");
}

TEST(SpoolRecovery, KeepsVersion1AndMixedFiles) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string old1 = version1(record("Q1", "one\r\n"));
  const std::string old2 = version1(record("Q2", "two\r\n"));
  const std::string new3 = record("Q3", "three\r\n");
  write_file(dir / "OLD.msg", old1 + old2);
  write_file(dir / "MIXED.msg", old1 + new3 + old2 + new3);
  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 6u);
  EXPECT_EQ(r.bytes, 2 * (old1.size() + old2.size() + new3.size()));
  EXPECT_TRUE(r.problems.empty()) << r.problems.front();
  EXPECT_EQ(read_whole(dir / "MIXED.msg"), old1 + new3 + old2 + new3);
  // A damaged v2 record after v1 ones is still found (v1 has nothing to check).
  std::string bad = new3;
  bad[bad.size() - kSpoolTrailerSize - 1] ^= 1;
  write_file(dir / "MIXED2.msg", old1 + bad);
  const RecoveryReport r2 = recover_spool_dir(dir.string());
  EXPECT_EQ(r2.checksum_failures, 1u);
  EXPECT_EQ(read_whole(dir / "MIXED2.msg"), old1);
}

TEST(SpoolRecovery, SavedTailsNeverOverwriteEarlierOnes) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string one = record("Q1", "one\r\n");
  const std::string bad1 = zeroed_message(record("Q2", "two\r\n"));
  const std::string bad2 = zeroed_message(record("Q3", "three\r\n"));
  write_file(dir / "SEG.msg", one + bad1);
  recover_spool_dir(dir.string());
  write_file(dir / "SEG.msg", one + bad2);
  recover_spool_dir(dir.string());
  EXPECT_EQ(read_whole(dir / "corrupt" / "SEG.msg.tail"), bad1);
  EXPECT_EQ(read_whole(dir / "corrupt" / "SEG.msg.tail.1"), bad2);
}

}  // namespace
}  // namespace ringmx
