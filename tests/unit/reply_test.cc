#include "core/reply.h"

#include <gtest/gtest.h>

#include "core/command.h"
#include "core/received_header.h"

namespace ringmx {
namespace {

TEST(Reply, SingleLine) {
  std::string out;
  append_reply(out, 250, "2.0.0", "Ok");
  EXPECT_EQ(out, "250 2.0.0 Ok\r\n");
}

TEST(Reply, MultiLineAndNoEnhanced) {
  std::string out;
  append_reply(out, 250, {}, "mx.example\nPIPELINING\nSIZE 10");
  EXPECT_EQ(out, "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
}

TEST(Reply, EnhancedOnEveryLine) {
  std::string out;
  append_reply(out, 214, "2.0.0", "a\nb\n");
  EXPECT_EQ(out, "214-2.0.0 a\r\n214 2.0.0 b\r\n");
}

TEST(Reply, ControlCharactersCannotBreakFraming) {
  std::string out;
  append_reply(out, 550, "5.7.1", std::string_view("bad\r\x01text\x7f", 10));
  EXPECT_EQ(out, "550 5.7.1 bad??text?\r\n");
}

TEST(Reply, Validation) {
  EXPECT_TRUE(is_valid_reply(250, "2.1.0"));
  EXPECT_TRUE(is_valid_reply(550, "5.7.1"));
  EXPECT_TRUE(is_valid_reply(451, "4.123.999"));
  EXPECT_TRUE(is_valid_reply(354, ""));
  EXPECT_FALSE(is_valid_reply(550, "4.7.1"));
  EXPECT_FALSE(is_valid_reply(199, ""));
  EXPECT_FALSE(is_valid_reply(600, ""));
  EXPECT_FALSE(is_valid_reply(550, "5.7"));
  EXPECT_FALSE(is_valid_reply(550, "5.7.1234"));
  EXPECT_FALSE(is_valid_reply(550, "5..1"));
  EXPECT_FALSE(is_valid_reply(550, "5.a.1"));
}

TEST(Command, Verbs) {
  struct Case {
    const char* line;
    Verb verb;
    const char* arg;
  } cases[] = {
      {"EHLO mx.example", Verb::ehlo, "mx.example"},
      {"ehlo   spaced  ", Verb::ehlo, "spaced"},
      {"HeLo x", Verb::helo, "x"},
      {"MAIL FROM:<a@b>", Verb::mail, "FROM:<a@b>"},
      {"rcpt to:<a@b>", Verb::rcpt, "to:<a@b>"},
      {"DATA", Verb::data, ""},
      {"BDAT 10 LAST", Verb::bdat, "10 LAST"},
      {"RSET", Verb::rset, ""},
      {"NOOP", Verb::noop, ""},
      {"QUIT", Verb::quit, ""},
      {"VRFY x", Verb::vrfy, "x"},
      {"EXPN x", Verb::expn, "x"},
      {"HELP", Verb::help, ""},
      {"StartTLS", Verb::starttls, ""},
      {"AUTH PLAIN", Verb::auth, "PLAIN"},
      {"DATAX", Verb::unknown, ""},
      {"DAT", Verb::unknown, ""},
      {"D@TA", Verb::unknown, ""},
      {"", Verb::unknown, ""},
      {"GET / HTTP/1.0", Verb::unknown, "/ HTTP/1.0"},
  };
  for (const auto& c : cases) {
    Command cmd = parse_command(c.line);
    EXPECT_EQ(cmd.verb, c.verb) << c.line;
    EXPECT_EQ(cmd.arg, c.arg) << c.line;
  }
}

TEST(ReceivedHeader, Dates) {
  struct Case {
    int64_t t;
    const char* want;
  } cases[] = {
      {0, "Thu, 1 Jan 1970 00:00:00 +0000"},
      {1795241997, "Sat, 21 Nov 2026 06:19:57 +0000"},
      {951868799, "Tue, 29 Feb 2000 23:59:59 +0000"},
      {946598400, "Fri, 31 Dec 1999 00:00:00 +0000"},
      {4107585600, "Mon, 1 Mar 2100 12:00:00 +0000"},
  };
  for (const auto& c : cases) {
    std::string out;
    append_rfc5322_date(out, c.t);
    EXPECT_EQ(out, c.want);
  }
}

TEST(ReceivedHeader, Format) {
  ReceivedFields f;
  f.helo = "client.example";
  f.client_ip = "192.0.2.7";
  f.by_host = "mx.example.org";
  f.software = "ringmx";
  f.protocol = protocol_name(true, true, false, false);
  f.queue_id = "ABC";
  f.tls_version = "TLS1_3";
  f.tls_cipher = "TLS_AES_256_GCM_SHA384";
  f.for_mailbox = "u@example.org";
  f.unix_time = 1795241997;
  std::string out;
  append_received(out, f);
  EXPECT_EQ(out,
            "Received: from client.example (unknown [192.0.2.7])\r\n"
            "\tby mx.example.org (ringmx) with ESMTPS id ABC\r\n"
            "\t(version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384)\r\n"
            "\tfor <u@example.org>;\r\n"
            "\tSat, 21 Nov 2026 06:19:57 +0000\r\n");
  ReceivedFields g;
  g.helo = "h";
  g.client_ip = "2001:db8::1";
  g.client_ptr = "host.example";
  g.by_host = "mx";
  g.protocol = protocol_name(false, false, false, false);
  g.queue_id = "Q";
  std::string out2;
  append_received(out2, g);
  EXPECT_EQ(out2,
            "Received: from h (host.example [IPv6:2001:db8::1])\r\n"
            "\tby mx with SMTP id Q;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n");
}

TEST(ReceivedHeader, ProtocolNames) {
  EXPECT_EQ(protocol_name(false, true, true, true), "SMTP");
  EXPECT_EQ(protocol_name(true, false, false, false), "ESMTP");
  EXPECT_EQ(protocol_name(true, true, false, false), "ESMTPS");
  EXPECT_EQ(protocol_name(true, false, true, false), "ESMTPA");
  EXPECT_EQ(protocol_name(true, true, true, false), "ESMTPSA");
  EXPECT_EQ(protocol_name(true, false, false, true), "UTF8SMTP");
  EXPECT_EQ(protocol_name(true, true, true, true), "UTF8SMTPSA");
}

TEST(ReceivedHeader, CountsOnlyHeaderSection) {
  EXPECT_EQ(count_received_headers("Received: a\r\nRECEIVED: b\r\n\tfolded\r\nX: y\r\n"
                                   "\r\nReceived: in body\r\n"),
            2u);
  EXPECT_EQ(count_received_headers(""), 0u);
  EXPECT_EQ(count_received_headers("X-Received: no\r\n"), 0u);
}

}  // namespace
}  // namespace ringmx
