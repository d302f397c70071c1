// Filters' end-of-message changes applied to a message (core/message_edits.h).
#include "core/message_edits.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringmx {
namespace {

Message make(std::string received, std::string body) {
  Message m;
  m.received = std::move(received);
  m.body.append(body);
  m.size = m.body.size();
  m.envelope.sender = "a@example.org";
  m.envelope.recipients = {{"b@example.org", {}}, {"c@example.org", {}}};
  return m;
}

MessageEdits edits(std::vector<milter::Response> changes, bool leading_space = false) {
  MessageEdits e;
  e.filter = "f";
  e.header_leading_space = leading_space;
  e.changes = std::move(changes);
  return e;
}

const std::string kOurs = "Received: from x\r\n\tby mx.test\r\n";
const std::string kBody = "Subject: hi\r\nX-A: 1\r\nX-A: 2\r\n\r\nline one\r\nline two\r\n";

TEST(MessageEdits, HeaderIndexesCountOurOwnFieldsFirst) {
  Message m = make(kOurs, kBody);
  const EditOutcome o = apply_edits(
      m,
      {edits({milter::InsertHeader{0, "X-Top", "first"}, milter::AddHeader{"X-End", "v\n\tfolded"},
              milter::InsertHeader{2, "X-Mid", "after subject"}})},
      {}, 1 << 20);
  EXPECT_TRUE(o.error.empty()) << o.error;
  EXPECT_TRUE(o.headers_or_body);
  EXPECT_FALSE(o.envelope);
  EXPECT_EQ(m.received, "");
  EXPECT_EQ(
      std::string(m.body.view()),
      "X-Top: first\r\n" + kOurs +
          "X-Mid: after subject\r\nSubject: hi\r\nX-A: 1\r\nX-A: 2\r\nX-End: v\r\n\tfolded\r\n"
          "\r\nline one\r\nline two\r\n");
  EXPECT_EQ(m.size, m.body.size());
}

TEST(MessageEdits, ChangeDeleteAndAddMissing) {
  Message m = make(kOurs, kBody);
  apply_edits(m,
              {edits({milter::ChangeHeader{2, "x-a", "two"}, milter::ChangeHeader{1, "X-A", ""},
                      milter::ChangeHeader{0, "Subject", "new"},
                      milter::ChangeHeader{3, "X-Missing", "added"},
                      milter::ChangeHeader{1, "X-Gone", ""}})},
              {}, 1 << 20);
  EXPECT_EQ(std::string(m.body.view()), kOurs +
                                            "Subject: new\r\nX-A: two\r\nX-Missing: added\r\n"
                                            "\r\nline one\r\nline two\r\n");
}

TEST(MessageEdits, LeadingSpaceKeptWhenNegotiated) {
  Message m = make("", "A: b\r\n\r\nx\r\n");
  apply_edits(m, {edits({milter::AddHeader{"X-L", " spaced"}}, true)}, {}, 1 << 20);
  EXPECT_EQ(std::string(m.body.view()), "A: b\r\nX-L: spaced\r\n\r\nx\r\n");
}

TEST(MessageEdits, BodyReplacedByPiecesAndLaterFilterWins) {
  Message m = make(kOurs, kBody);
  apply_edits(m,
              {edits({milter::ReplaceBody{"new\n"}, milter::ReplaceBody{"body\r\n"}}),
               edits({milter::AddHeader{"X-B", "1"}})},
              {}, 1 << 20);
  EXPECT_EQ(std::string(m.body.view()),
            kOurs + "Subject: hi\r\nX-A: 1\r\nX-A: 2\r\nX-B: 1\r\n\r\nnew\r\nbody\r\n");
  Message n = make("", kBody);
  apply_edits(
      n, {edits({milter::ReplaceBody{"first\r\n"}}), edits({milter::ReplaceBody{"second\r\n"}})},
      {}, 1 << 20);
  EXPECT_TRUE(std::string(n.body.view()).ends_with("\r\n\r\nsecond\r\n"));
}

TEST(MessageEdits, Envelope) {
  Message m = make(kOurs, kBody);
  Extensions ext;
  const EditOutcome o = apply_edits(
      m,
      {edits({milter::ChangeFrom{"<new@example.org>", "RET=HDRS"},
              milter::AddRecipient{"<d@example.org>"}, milter::AddRecipient{"B@example.org"},
              milter::AddRecipientArgs{"<e@example.org>", "NOTIFY=NEVER"},
              milter::DeleteRecipient{"<c@example.org>"}, milter::DeleteRecipient{"<z@x>"}})},
      ext, 1 << 20);
  EXPECT_TRUE(o.error.empty()) << o.error;
  EXPECT_TRUE(o.envelope);
  EXPECT_FALSE(o.headers_or_body);
  EXPECT_EQ(std::string(m.body.view()), kBody);  // untouched
  EXPECT_EQ(m.received, kOurs);
  EXPECT_EQ(m.envelope.sender, "new@example.org");
  EXPECT_EQ(m.envelope.mail.ret, DsnRet::hdrs);
  ASSERT_EQ(m.envelope.recipients.size(), 3U);
  EXPECT_EQ(m.envelope.recipients[0].address, "b@example.org");
  EXPECT_EQ(m.envelope.recipients[1].address, "d@example.org");
  EXPECT_EQ(m.envelope.recipients[2].address, "e@example.org");
  EXPECT_EQ(m.envelope.recipients[2].params.notify, notify_never);
}

TEST(MessageEdits, BadChangesAreErrors) {
  Message m = make(kOurs, kBody);
  EXPECT_FALSE(
      apply_edits(m, {edits({milter::ChangeFrom{"<a@b>", "BOGUS=1"}})}, {}, 1 << 20).error.empty());
  EXPECT_FALSE(
      apply_edits(m, {edits({milter::AddRecipient{"<a\r\nb@c>"}})}, {}, 1 << 20).error.empty());
  EXPECT_FALSE(apply_edits(m, {edits({milter::AddRecipient{"<>"}})}, {}, 1 << 20).error.empty());
  Message spilled = make(kOurs, "");
  spilled.spilled = true;
  EXPECT_FALSE(
      apply_edits(spilled, {edits({milter::AddHeader{"X", "y"}})}, {}, 1 << 20).error.empty());
  // Envelope changes to a spilled message are fine.
  EXPECT_TRUE(apply_edits(spilled, {edits({milter::AddRecipient{"<x@y.org>"}})}, {}, 1 << 20)
                  .error.empty());
}

TEST(MessageEdits, RecipientsBoundedByTheLimit) {
  Message m = make(kOurs, kBody);  // two recipients
  EXPECT_TRUE(
      apply_edits(m, {edits({milter::AddRecipient{"<x@y.org>"}})}, {}, 1 << 20, 3).error.empty());
  EXPECT_EQ(m.envelope.recipients.size(), 3U);
  // At the limit: adding one already there is fine, a new one is not.
  EXPECT_TRUE(
      apply_edits(m, {edits({milter::AddRecipient{"<x@y.org>"}})}, {}, 1 << 20, 3).error.empty());
  const EditOutcome o =
      apply_edits(m, {edits({milter::AddRecipient{"<z@y.org>"}})}, {}, 1 << 20, 3);
  EXPECT_NE(o.error.find("more than 3 recipients"), std::string::npos) << o.error;
}

TEST(MessageEdits, QuarantineReasonOfTheFirstFilter) {
  Message m = make(kOurs, kBody);
  MessageEdits a = edits({milter::Quarantine{"spammy"}});
  a.filter = "rspamd";
  MessageEdits b = edits({milter::Quarantine{"virus"}});
  const EditOutcome o = apply_edits(m, {a, b}, {}, 1 << 20);
  EXPECT_EQ(o.quarantine, "rspamd: spammy");
  EXPECT_FALSE(o.headers_or_body);
}

TEST(MessageEdits, MessageWithoutHeaderSeparator) {
  Message m = make("", "not a header line\r\nmore\r\n");
  apply_edits(m, {edits({milter::AddHeader{"X-New", "1"}})}, {}, 1 << 20);
  EXPECT_EQ(std::string(m.body.view()), "X-New: 1\r\n\r\nnot a header line\r\nmore\r\n");
}

}  // namespace
}  // namespace ringmx
