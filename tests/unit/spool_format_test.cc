// Tests of the spool file format (round trip, strict parsing, escaping) and of
// start-up recovery in a scratch directory made with mkdtemp and removed after.
#include "pipeline/spool_format.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pipeline/crc32c.h"

#include "tests/unit/scratch_dir.h"
#include "tests/unit/spool_records.h"

namespace ringmx {
namespace {

namespace fs = std::filesystem;
using test_support::read_whole;
using test_support::ScratchDir;
using test_support::spool_bytes;
using test_support::write_file;

constexpr std::string_view kReceived =
    "Received: from client.example (host.example [192.0.2.1])\r\n"
    "\tby mx.example with ESMTPS id 000000000001A0001;\r\n"
    "\tSat, 14 Nov 2026 10:19:57 +0000\r\n";
constexpr std::string_view kBody = "Subject: hi\r\n\r\nline one\r\n\r\nline three\r\n";
constexpr size_t kMessageSize = kReceived.size() + kBody.size();
static_assert(kMessageSize == 181);

Message full_message() {
  Message msg;
  Envelope& env = msg.envelope;
  env.queue_id = "000000000001A0001";
  env.sender = "\"john q. public\"@example.com";
  env.mail.has_size = true;
  env.mail.size = 1234;
  env.mail.body = BodyType::eight_bit_mime;
  env.mail.smtputf8 = true;
  env.mail.ret = DsnRet::hdrs;
  env.mail.envid = "abc+2B";
  Recipient all;
  all.address = "rcpt@example.org";
  all.params.notify = notify_success | notify_failure | notify_delay;
  all.params.orcpt_type = "rfc822";
  all.params.orcpt = "rcpt@example.org";
  Recipient utf8;
  utf8.address = "J\xC3\xB6rg@b\xC3\xBC\x63her.example";  // Jörg@bücher.example
  utf8.params.notify = notify_never;
  utf8.params.orcpt_type = "utf-8";
  utf8.params.orcpt = "J\xC3\xB6rg@b\xC3\xBC\x63her.example";
  Recipient quoted;
  quoted.address = "\"odd > \\\" local\"@example.org";  // '>' and '\"' inside quotes
  quoted.params.notify = notify_failure | notify_delay;
  Recipient plain;
  plain.address = "postmaster";
  env.recipients = {all, utf8, quoted, plain};
  msg.received = std::string(kReceived);
  msg.body.append(kBody);
  msg.received_at_unix = 1795241997;
  return msg;
}

SpoolClient tls_client() {
  SpoolClient c;
  c.ip = "192.0.2.1";
  c.port = 40000;
  c.helo = "client.example";
  c.ptr = "host.example";
  c.protocol = "ESMTPS";
  c.tls_version = "TLS1_3";
  c.tls_cipher = "TLS_AES_256_GCM_SHA384";
  return c;
}

std::string good_file() {
  return spool_bytes(full_message(), tls_client());
}

// A hand-written minimal file; `envelope` must end with "\n\n".
std::string with_message(std::string_view envelope, std::string_view message) {
  return std::string(envelope) + std::string(message);
}

constexpr std::string_view kMinimal =
    "ringmx-spool 1\n"
    "queue-id: Q1\n"
    "received-at: 1\n"
    "client: ::1 port 25\n"
    "protocol: SMTP\n"
    "mail-from: <>\n"
    "rcpt-to: <a@b>\n"
    "message-size: 3\n"
    "\n";

std::string parse_error(std::string_view data) {
  SpoolEntry e;
  std::string error;
  EXPECT_FALSE(parse_spool_file(data, e, error)) << data;
  EXPECT_FALSE(error.empty());
  return error;
}

TEST(SpoolFormat, RoundTripGivesBackEveryField) {
  const Message msg = full_message();
  const std::string data = good_file();
  SpoolEntry e;
  std::string error;
  ASSERT_TRUE(parse_spool_file(data, e, error)) << error << "\n" << data;
  EXPECT_EQ(e.version, 2u);
  EXPECT_EQ(e.queue_id, "000000000001A0001");
  EXPECT_EQ(e.received_at, 1795241997);
  EXPECT_EQ(e.client_ip, "192.0.2.1");
  EXPECT_EQ(e.client_port, 40000);
  EXPECT_EQ(e.helo, "client.example");
  EXPECT_EQ(e.ptr, "host.example");
  EXPECT_EQ(e.protocol, "ESMTPS");
  EXPECT_EQ(e.tls_version, "TLS1_3");
  EXPECT_EQ(e.tls_cipher, "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(e.sender, msg.envelope.sender);
  EXPECT_TRUE(e.mail.has_size);
  EXPECT_EQ(e.mail.size, 1234u);
  EXPECT_EQ(e.mail.body, BodyType::eight_bit_mime);
  EXPECT_TRUE(e.mail.smtputf8);
  EXPECT_EQ(e.mail.ret, DsnRet::hdrs);
  EXPECT_EQ(e.mail.envid, "abc+2B");
  ASSERT_EQ(e.recipients.size(), msg.envelope.recipients.size());
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    const Recipient& want = msg.envelope.recipients[i];
    SCOPED_TRACE(want.address);
    EXPECT_EQ(e.recipients[i].address, want.address);
    EXPECT_EQ(e.recipients[i].params.notify, want.params.notify);
    EXPECT_EQ(e.recipients[i].params.orcpt_type, want.params.orcpt_type);
    EXPECT_EQ(e.recipients[i].params.orcpt, want.params.orcpt);
  }
  const std::string message = std::string(kReceived) + std::string(kBody);
  EXPECT_EQ(e.message_size, kMessageSize);
  EXPECT_EQ(e.message, message);
  // A view into the input, not a copy.
  EXPECT_EQ(e.message.data(), data.data() + (data.size() - kSpoolTrailerSize - message.size()));
}

TEST(SpoolFormat, WritesTheDocumentedLines) {
  const std::string data = good_file();
  const std::string envelope = data.substr(0, data.find("\n\n") + 2);
  EXPECT_EQ(envelope,
            "ringmx-spool 2\n"
            "queue-id: 000000000001A0001\n"
            "received-at: 1795241997\n"
            "client: 192.0.2.1 port 40000\n"
            "helo: client.example\n"
            "ptr: host.example\n"
            "protocol: ESMTPS\n"
            "tls: TLS1_3 TLS_AES_256_GCM_SHA384\n"
            "mail-from: <\"john q. public\"@example.com> SIZE=1234 BODY=8BITMIME SMTPUTF8 "
            "RET=HDRS ENVID=abc+2B\n"
            "rcpt-to: <rcpt@example.org> NOTIFY=SUCCESS,FAILURE,DELAY "
            "ORCPT=rfc822;rcpt@example.org\n"
            "rcpt-to: <J\xC3\xB6rg@b\xC3\xBC\x63her.example> NOTIFY=NEVER "
            "ORCPT=utf-8;J\xC3\xB6rg@b\xC3\xBC\x63her.example\n"
            "rcpt-to: <\"odd > \\\" local\"@example.org> NOTIFY=FAILURE,DELAY\n"
            "rcpt-to: <postmaster>\n"
            "message-size: 181\n"
            "\n");
}

TEST(SpoolFormat, NullSenderPlainSessionAndNoOptionalLines) {
  Message msg;
  msg.envelope.queue_id = "Q2";
  msg.envelope.recipients.push_back(Recipient{"a@example.org", {}});
  msg.received_at_unix = 7;
  msg.body.append("x\r\n");
  SpoolClient client;
  client.ip = "2001:db8::1";
  client.port = 25;
  client.helo = "[2001:db8::1]";
  client.protocol = "ESMTP";
  const std::string data = spool_bytes(msg, client);
  EXPECT_EQ(data.find("ptr:"), std::string::npos);
  EXPECT_EQ(data.find("tls:"), std::string::npos);
  EXPECT_NE(data.find("\nmail-from: <>\n"), std::string::npos) << data;

  SpoolEntry e;
  std::string error;
  ASSERT_TRUE(parse_spool_file(data, e, error)) << error;
  EXPECT_EQ(e.sender, "");
  EXPECT_FALSE(e.mail.has_size);
  EXPECT_EQ(e.mail.body, BodyType::unspecified);
  EXPECT_FALSE(e.mail.smtputf8);
  EXPECT_EQ(e.mail.ret, DsnRet::unspecified);
  EXPECT_EQ(e.mail.envid, "");
  EXPECT_EQ(e.client_ip, "2001:db8::1");
  EXPECT_EQ(e.client_port, 25);
  EXPECT_EQ(e.helo, "[2001:db8::1]");
  EXPECT_EQ(e.ptr, "");
  EXPECT_EQ(e.tls_version, "");
  EXPECT_EQ(e.tls_cipher, "");
  ASSERT_EQ(e.recipients.size(), 1u);
  EXPECT_EQ(e.recipients[0].params.notify, notify_none);
  EXPECT_EQ(e.message, "x\r\n");
}

TEST(SpoolFormat, EveryBodyTypeAndRetRoundTrips) {
  for (const BodyType body :
       {BodyType::seven_bit, BodyType::eight_bit_mime, BodyType::binary_mime}) {
    for (const DsnRet ret : {DsnRet::unspecified, DsnRet::full, DsnRet::hdrs}) {
      Message msg = full_message();
      msg.envelope.mail.body = body;
      msg.envelope.mail.ret = ret;
      msg.envelope.mail.size = 0;  // SIZE=0 is still a declared size
      SpoolEntry e;
      std::string error;
      const std::string data = spool_bytes(msg, tls_client());
      ASSERT_TRUE(parse_spool_file(data, e, error)) << error;
      EXPECT_EQ(e.mail.body, body);
      EXPECT_EQ(e.mail.ret, ret);
      EXPECT_TRUE(e.mail.has_size);
      EXPECT_EQ(e.mail.size, 0u);
    }
  }
}

TEST(SpoolFormat, MinimalHandWrittenFileParses) {
  SpoolEntry e;
  std::string error;
  const std::string data = with_message(kMinimal, "abc");
  ASSERT_TRUE(parse_spool_file(data, e, error)) << error;
  EXPECT_EQ(e.queue_id, "Q1");
  EXPECT_EQ(e.client_ip, "::1");
  EXPECT_EQ(e.message, "abc");
}

TEST(SpoolFormat, EmptyMessageIsAllowed) {
  std::string envelope(kMinimal);
  envelope.replace(envelope.find("message-size: 3"), 15, "message-size: 0");
  SpoolEntry e;
  std::string error;
  ASSERT_TRUE(parse_spool_file(envelope, e, error)) << error;
  EXPECT_EQ(e.message, "");
}

TEST(SpoolFormat, TruncatedMessageIsATornWrite) {
  const std::string data = good_file();
  const std::string error =
      parse_error(std::string_view(data).substr(0, data.size() - kSpoolTrailerSize - 10));
  EXPECT_EQ(error, "truncated: 171 of 181 octets");
}

TEST(SpoolFormat, TruncatedEnvelopeIsATornWrite) {
  const std::string data = good_file();
  EXPECT_NE(parse_error(data.substr(0, 40)).find("truncated"), std::string::npos);
  EXPECT_NE(parse_error("").find("truncated"), std::string::npos);
  // Cut right before the empty line that ends the envelope.
  const std::string cut = data.substr(0, data.find("\n\n") + 1);
  EXPECT_NE(parse_error(cut).find("truncated"), std::string::npos);
}

TEST(SpoolFormat, ExtraBytesAreAnError) {
  const std::string error = parse_error(good_file() + "X");
  EXPECT_EQ(error, "trailing data: 1 octets after the record");
}

TEST(SpoolFormat, UnknownKeyIsAnError) {
  std::string data = with_message(kMinimal, "abc");
  data.insert(data.find("protocol:"), "x-new: 1\n");
  const std::string error = parse_error(data);
  EXPECT_NE(error.find("unknown key \"x-new\""), std::string::npos) << error;
  EXPECT_NE(error.find("line 5"), std::string::npos) << error;
}

TEST(SpoolFormat, MissingRequiredKeyIsAnError) {
  for (const std::string_view key :
       {"queue-id", "received-at", "client", "protocol", "mail-from", "rcpt-to", "message-size"}) {
    SCOPED_TRACE(key);
    std::string data = with_message(kMinimal, "abc");
    const size_t at = data.find(std::string(key) + ":");
    ASSERT_NE(at, std::string::npos);
    data.erase(at, data.find('\n', at) + 1 - at);
    EXPECT_EQ(parse_error(data), "missing key " + std::string(key));
  }
}

TEST(SpoolFormat, StrictLines) {
  const auto bad = [](std::string_view from, std::string_view to) {
    std::string data = with_message(kMinimal, "abc");
    const size_t at = data.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    data.replace(at, from.size(), to);
    return parse_error(data);
  };
  EXPECT_EQ(bad("ringmx-spool 1", "ringmx-spool 3"),
            "unsupported format \"ringmx-spool 3\", want \"ringmx-spool 1\" or \"ringmx-spool 2\"");
  EXPECT_NE(bad("ringmx-spool 1", "From x").find("not a ringmx"), std::string::npos);
  EXPECT_NE(bad("queue-id: Q1\n", "queue-id: Q1\r\n").find("CR"), std::string::npos);
  EXPECT_NE(bad("queue-id: Q1\n", "queue-id: Q1\nqueue-id: Q2\n").find("duplicate"),
            std::string::npos);
  bad("received-at: 1", "received-at: soon");
  bad("received-at: 1", "received-at: 99999999999999999999");
  bad("client: ::1 port 25", "client: ::1");
  bad("client: ::1 port 25", "client: ::1 port 65536");
  bad("queue-id: Q1", "queue-id:Q1");
  bad("queue-id: Q1", "queue-id Q1");
  bad("mail-from: <>", "mail-from: sender@example.com");
  bad("mail-from: <>", "mail-from: <\"unclosed@example.com>");
  bad("mail-from: <>", "mail-from: <>SIZE=1");
  bad("mail-from: <>", "mail-from: <> SIZE=1  BODY=7BIT");
  bad("mail-from: <>", "mail-from: <> SIZE=1 ");
  bad("mail-from: <>", "mail-from: <> SIZE=x");
  bad("mail-from: <>", "mail-from: <> SIZE=1 SIZE=2");
  bad("mail-from: <>", "mail-from: <> BODY=8bitmime");
  bad("mail-from: <>", "mail-from: <> SMTPUTF8=yes");
  bad("mail-from: <>", "mail-from: <> RET=ALL");
  bad("mail-from: <>", "mail-from: <> ENVID=");
  bad("mail-from: <>", "mail-from: <> AUTH=<>");
  bad("rcpt-to: <a@b>", "rcpt-to: <a@b> NOTIFY=NEVER,DELAY");
  bad("rcpt-to: <a@b>", "rcpt-to: <a@b> NOTIFY=DELAY,DELAY");
  bad("rcpt-to: <a@b>", "rcpt-to: <a@b> NOTIFY=");
  bad("rcpt-to: <a@b>", "rcpt-to: <a@b> ORCPT=rfc822");
  bad("rcpt-to: <a@b>", "rcpt-to: <a@b> ORCPT=;a@b");
  bad("rcpt-to: <a@b>", "rcpt-to: <a@b> SIZE=1");
  bad("message-size: 3", "message-size: -3");
}

TEST(SpoolFormat, ControlOctetsInValuesAreReplaced) {
  Message msg = full_message();
  msg.envelope.sender = "a\rb@example.com";
  msg.envelope.recipients[0].address = "c\nd@example.org";
  msg.envelope.mail.envid = "e f\r\n";
  msg.envelope.recipients[0].params.orcpt = std::string("g\0h", 3);
  SpoolClient client = tls_client();
  client.helo = "evil\r\nrcpt-to: <x@y>";
  client.ptr = std::string_view("p\0q", 3);
  client.tls_cipher = "A B";
  const std::string data = spool_bytes(msg, client);

  SpoolEntry e;
  std::string error;
  ASSERT_TRUE(parse_spool_file(data, e, error)) << error << "\n" << data;
  EXPECT_EQ(e.sender, "a?b@example.com");
  EXPECT_EQ(e.recipients[0].address, "c?d@example.org");
  EXPECT_EQ(e.recipients.size(), msg.envelope.recipients.size());
  EXPECT_EQ(e.mail.envid, "e?f??");
  EXPECT_EQ(e.recipients[0].params.orcpt, "g?h");
  EXPECT_EQ(e.helo, "evil??rcpt-to: <x@y>");
  EXPECT_EQ(e.ptr, "p?q");
  EXPECT_EQ(e.tls_cipher, "A?B");
}

TEST(SpoolFormat, UnbalancedQuotesStillParseBack) {
  Message msg = full_message();
  msg.envelope.sender = "\"open@example.com";
  msg.envelope.recipients[0].address = "\"a\\\"@example.org";
  SpoolEntry e;
  std::string error;
  const std::string data = spool_bytes(msg, tls_client());
  ASSERT_TRUE(parse_spool_file(data, e, error)) << error << "\n" << data;
  EXPECT_EQ(e.sender, "?open@example.com");
  EXPECT_EQ(e.recipients[0].address, "?a??@example.org");
  EXPECT_EQ(e.recipients.size(), msg.envelope.recipients.size());
}

// ---------------------------------------------------------------- version 2

TEST(SpoolFormat, Version2RecordEndsInTheChecksumOfEverythingBeforeIt) {
  const std::string data = good_file();
  ASSERT_GT(data.size(), kSpoolTrailerSize);
  const std::string body = data.substr(0, data.size() - kSpoolTrailerSize);
  const std::string trailer = data.substr(body.size());
  EXPECT_TRUE(body.starts_with("ringmx-spool 2\n"));
  EXPECT_TRUE(body.ends_with(kBody));
  EXPECT_EQ(trailer.size(), 16u);
  EXPECT_EQ(trailer.substr(0, 7), "crc32c ");
  EXPECT_EQ(trailer.back(), '\n');
  EXPECT_EQ(std::stoul(trailer.substr(7, 8), nullptr, 16), crc32c(body));
  const SpoolTrailer t = spool_trailer(0x0A1B2C3D);
  EXPECT_EQ(std::string(t.data(), t.size()), "crc32c 0a1b2c3d\n");
}

SpoolDefect defect_of(std::string_view data, std::string& error) {
  SpoolEntry e;
  size_t consumed = 0;
  return parse_spool_record(data, e, error, consumed);
}

TEST(SpoolFormat, ChecksumMismatchIsAnError) {
  std::string data = good_file();
  data[data.size() - kSpoolTrailerSize - 3] ^= 0x20;  // one bit of the body
  std::string error;
  EXPECT_EQ(defect_of(data, error), SpoolDefect::checksum);
  EXPECT_TRUE(error.starts_with("checksum mismatch: trailer says ")) << error;
  EXPECT_EQ(parse_error(data), error);
  // The body replaced by zeros of the same length: what a power cut leaves
  // when the file's length reached the disk and its data did not.
  data = good_file();
  std::fill(data.end() - static_cast<ptrdiff_t>(kSpoolTrailerSize + kMessageSize),
            data.end() - static_cast<ptrdiff_t>(kSpoolTrailerSize), '\0');
  EXPECT_EQ(defect_of(data, error), SpoolDefect::checksum) << error;
}

TEST(SpoolFormat, BadTrailerIsAnError) {
  const std::string good = good_file();
  const std::string head = good.substr(0, good.size() - kSpoolTrailerSize);
  for (const std::string_view trailer :
       {std::string_view("CRC32C 00000000\n"), std::string_view("crc32c 0A1B2C3D\n"),
        std::string_view("crc32c 0a1b2c3d\r"), std::string_view("crc32c 0a1b2c3 \n"),
        std::string_view("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16),
        std::string_view("crc32c  0a1b2c3d")}) {
    SCOPED_TRACE(trailer);
    std::string error;
    EXPECT_EQ(defect_of(head + std::string(trailer), error), SpoolDefect::checksum);
    EXPECT_TRUE(error.starts_with("bad trailer")) << error;
  }
  // Zeros where the trailer's first octets should be: damage, even when short.
  std::string error;
  EXPECT_EQ(defect_of(head + std::string(5, '\0'), error), SpoolDefect::checksum);
}

TEST(SpoolFormat, TruncatedTrailerIsATornWrite) {
  const std::string good = good_file();
  for (size_t cut = 1; cut <= kSpoolTrailerSize; ++cut) {
    SCOPED_TRACE(cut);
    std::string error;
    EXPECT_EQ(defect_of(std::string_view(good).substr(0, good.size() - cut), error),
              SpoolDefect::truncated);
    EXPECT_EQ(error,
              "truncated: trailer: " + std::to_string(kSpoolTrailerSize - cut) + " of 16 octets");
  }
}

TEST(SpoolFormat, ReadsVersion1RecordsAndMixedFiles) {
  // What the previous writer produced: the same envelope under version 1,
  // no trailer.
  std::string v1 = good_file();
  v1.resize(v1.size() - kSpoolTrailerSize);
  v1.replace(0, 14, "ringmx-spool 1");
  SpoolEntry e;
  std::string error;
  ASSERT_TRUE(parse_spool_file(v1, e, error)) << error;
  EXPECT_EQ(e.version, 1u);
  EXPECT_EQ(e.message, std::string(kReceived) + std::string(kBody));
  // An old segment that a new writer appended to: v1 records, then v2.
  const std::string v2 = good_file();
  const std::string file = v1 + with_message(kMinimal, "abc") + v2 + v2;
  std::vector<SpoolEntry> recs;
  ASSERT_TRUE(parse_spool_records(file, recs, error)) << error;
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[0].version, 1u);
  EXPECT_EQ(recs[1].version, 1u);
  EXPECT_EQ(recs[2].version, 2u);
  EXPECT_EQ(recs[3].message, recs[0].message);
  // A v2 record's damage is found after v1 records too, and named.
  std::string damaged = v1 + v2;
  damaged[damaged.size() - 20] ^= 1;
  EXPECT_FALSE(parse_spool_records(damaged, recs, error));
  EXPECT_TRUE(error.starts_with("record 2: checksum mismatch")) << error;
}

TEST(SpoolFormat, FileNames) {
  EXPECT_EQ(spool_final_name("000000000001A0001"), "000000000001A0001.msg");
  EXPECT_EQ(spool_temp_name("000000000001A0001"), "000000000001A0001.tmp");
}

// ---------------------------------------------------------------- recovery

TEST(SpoolRecovery, KeepsRemovesAndQuarantines) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string good = good_file();
  const std::string torn = good.substr(0, good.size() - 1);
  write_file(dir / spool_final_name("GOOD1"), good);
  write_file(dir / spool_final_name("GOOD2"), with_message(kMinimal, "abc"));
  write_file(dir / spool_temp_name("PARTIAL"), good.substr(0, 20));
  write_file(dir / spool_final_name("TORN"), torn);
  write_file(dir / spool_final_name("EMPTY"), "");
  write_file(dir / "README", "not a spool file");
  write_file(dir / "notes.msg.bak", "neither");
  fs::create_directory(dir / "shard-0");
  write_file(dir / "shard-0" / spool_temp_name("DEEP"), "not recursed into");

  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 2u);
  EXPECT_EQ(r.removed_temp, 1u);
  EXPECT_EQ(r.truncated, 2u);
  EXPECT_EQ(r.bad, 0u);
  EXPECT_EQ(r.bytes, good.size() + kMinimal.size() + 3);
  ASSERT_EQ(r.problems.size(), 2u);
  EXPECT_EQ(r.problems[0], "EMPTY.msg: empty file: cut back to 0 octets removed");
  EXPECT_EQ(
      r.problems[1],
      "TORN.msg: record 1: truncated: trailer: 15 of 16 octets: cut back to 0 octets removed");

  EXPECT_EQ(read_whole(dir / "GOOD1.msg"), good);
  EXPECT_TRUE(fs::exists(dir / "GOOD2.msg"));
  EXPECT_FALSE(fs::exists(dir / "PARTIAL.tmp"));
  EXPECT_FALSE(fs::exists(dir / "TORN.msg"));
  EXPECT_FALSE(fs::exists(dir / "EMPTY.msg"));
  EXPECT_EQ(read_whole(dir / "README"), "not a spool file");
  EXPECT_EQ(read_whole(dir / "notes.msg.bak"), "neither");
  EXPECT_TRUE(fs::exists(dir / "shard-0" / "DEEP.tmp"));

  // A second run finds a clean directory and leaves corrupt/ alone.
  const RecoveryReport again = recover_spool_dir(dir.string());
  EXPECT_EQ(again.kept, 2u);
  EXPECT_EQ(again.removed_temp, 0u);
  EXPECT_EQ(again.bad, 0u);
  EXPECT_TRUE(again.problems.empty());
}

TEST(SpoolRecovery, CutsTheUnfinishedTailOfASegment) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string one = good_file();
  const std::string two = with_message(kMinimal, "abc");
  // A crash during the third append: a clean prefix of a record.
  write_file(dir / spool_final_name("SEG1"), one + two + one.substr(0, 40));
  // Garbage after two good records (e.g. zeros from an OS crash): kept aside.
  write_file(dir / spool_final_name("SEG2"), one + two + std::string(30, '\0'));
  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 4u);
  EXPECT_EQ(r.truncated, 2u);
  EXPECT_EQ(r.bad, 1u);
  EXPECT_EQ(read_whole(dir / "SEG1.msg"), one + two);
  EXPECT_EQ(read_whole(dir / "SEG2.msg"), one + two);
  EXPECT_EQ(read_whole(dir / "corrupt" / "SEG2.msg.tail"), std::string(30, '\0'));
  const RecoveryReport again = recover_spool_dir(dir.string());
  EXPECT_EQ(again.kept, 4u);
  EXPECT_EQ(again.truncated, 0u);
}

TEST(SpoolFormat, BatchFileHoldsSeveralRecords) {
  const std::string one = good_file();
  const std::string two = with_message(kMinimal, "abc");
  std::vector<SpoolEntry> recs;
  std::string error;
  const std::string file = one + two + one;  // the records' views point into it
  ASSERT_TRUE(parse_spool_records(file, recs, error)) << error;
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[1].queue_id, "Q1");
  EXPECT_EQ(recs[1].message, "abc");
  EXPECT_EQ(recs[0].queue_id, recs[2].queue_id);
  // A torn last record makes the whole file incomplete.
  EXPECT_FALSE(parse_spool_records(one + two.substr(0, two.size() - 1), recs, error));
  EXPECT_EQ(error, "record 2: truncated: 2 of 3 octets");
  // parse_spool_file still wants exactly one record.
  SpoolEntry e;
  EXPECT_FALSE(parse_spool_file(one + two, e, error));
}

TEST(SpoolRecovery, CountsEveryRecordOfABatchFile) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  const std::string batch = good_file() + with_message(kMinimal, "abc");
  write_file(dir / spool_final_name("BATCH"), batch);
  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.kept, 2u);
  EXPECT_EQ(r.bytes, batch.size());
  EXPECT_EQ(r.bad, 0u);
}

TEST(SpoolRecovery, NeverOverwritesAnEarlierCorruptCopy) {
  ScratchDir scratch;
  const fs::path& dir = scratch.path();
  fs::create_directory(dir / "corrupt");
  write_file(dir / "corrupt" / "X.msg", "first");
  write_file(dir / "X.msg", "second");
  const RecoveryReport r = recover_spool_dir(dir.string());
  EXPECT_EQ(r.bad, 1u);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].rfind("X.msg: ", 0), 0u) << r.problems[0];
  EXPECT_EQ(read_whole(dir / "corrupt" / "X.msg"), "first");
  EXPECT_EQ(read_whole(dir / "corrupt" / "X.msg.1"), "second");
}

TEST(SpoolRecovery, CreatesAMissingDirectory) {
  ScratchDir scratch;
  const fs::path dir = scratch.path() / "a" / "b" / "shard-0";
  const RecoveryReport r = recover_spool_dir(dir.string() + "/");
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(r.kept, 0u);
  EXPECT_EQ(r.bytes, 0u);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0027, 0u);  // 0750 less the umask: never group-writable or public
}

TEST(SpoolRecovery, ThrowsWhenTheDirectoryCannotBeCreated) {
  ScratchDir scratch;
  write_file(scratch.path() / "file", "x");
  const std::string dir = (scratch.path() / "file" / "spool").string();
  try {
    recover_spool_dir(dir);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(dir), std::string::npos) << what;
    EXPECT_NE(what.find("Not a directory"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace ringmx
