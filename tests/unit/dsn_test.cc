// Contract: DSNs (pipeline/dsn.h): who gets one (NOTIFY, the null sender),
// the status code taken from a reply, and a report whose structure is RFC
// 3464 / 6522: multipart/report with the three parts, per-message and
// per-recipient fields, the original message or only its header (RET).
#include "pipeline/dsn.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmx {
namespace {

TEST(Dsn, WhoWantsOne) {
  RcptParams none;
  EXPECT_TRUE(wants_failure_dsn("s@example.net", none));
  EXPECT_FALSE(wants_success_dsn("s@example.net", none));
  EXPECT_FALSE(wants_failure_dsn("", none));  // never bounce a bounce
  RcptParams never{notify_never, "", ""};
  EXPECT_FALSE(wants_failure_dsn("s@example.net", never));
  RcptParams success{notify_success, "", ""};
  EXPECT_FALSE(wants_failure_dsn("s@example.net", success));
  EXPECT_TRUE(wants_success_dsn("s@example.net", success));
  EXPECT_FALSE(wants_success_dsn("", success));
  RcptParams both{notify_success | notify_failure | notify_delay, "", ""};
  EXPECT_TRUE(wants_failure_dsn("s@example.net", both));
}

TEST(Dsn, StatusFromTheReply) {
  EXPECT_EQ(dsn_status({550, "5.1.1 <x@example.org> unknown"}), "5.1.1");
  EXPECT_EQ(dsn_status({552, "5.2.2 over quota"}), "5.2.2");
  EXPECT_EQ(dsn_status({550, "no such user"}), "5.0.0");
  EXPECT_EQ(dsn_status({550, "4.1.1 class does not match"}), "5.0.0");
  EXPECT_EQ(dsn_status({451, "4.3.0 later"}), "4.3.0");
  EXPECT_EQ(dsn_status({0, "4.4.7 delivery time expired; last: 4.4.1 connection refused"}),
            "4.4.7");
  EXPECT_EQ(dsn_status({0, "connection refused"}), "4.4.1");
  EXPECT_EQ(dsn_status({250, "2.0.0 ok"}), "2.0.0");
  EXPECT_EQ(dsn_status({550, "5.1.1234 too long"}), "5.0.0");
}

DsnReport report() {
  DsnReport r;
  r.reporting_mta = "mx.example.org";
  r.queue_id = "000000000001A0001";
  r.remote_mta = "10.0.0.5";
  r.arrival_unix = 1795241997;
  r.now_unix = 1795242000;
  r.sender = "s@example.net";
  r.mail.envid = "abc+2Bdef";
  RcptParams p;
  p.orcpt_type = "rfc822";
  p.orcpt = "+C3+BCser@example.org";
  r.rcpts.push_back({"u@example.org", p, "failed", {550, "5.1.1 <u@example.org> unknown"}});
  r.rcpts.push_back({"v@example.org", {}, "failed", {0, "4.4.7 delivery time expired"}});
  r.original = "Received: from a\r\nSubject: hi\r\nFrom: s@example.net\r\n\r\nbody line\r\n";
  return r;
}

TEST(Dsn, FailureReportStructure) {
  const std::string d = make_dsn(report(), 42);
  EXPECT_NE(d.find("To: <s@example.net>\r\n"), std::string::npos);
  EXPECT_NE(d.find("From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"),
            std::string::npos);
  EXPECT_NE(d.find("Auto-Submitted: auto-replied\r\n"), std::string::npos);
  EXPECT_NE(d.find("Content-Type: multipart/report; report-type=delivery-status;"),
            std::string::npos);
  const size_t b = d.find("boundary=\"");
  ASSERT_NE(b, std::string::npos);
  const std::string boundary = d.substr(b + 10, d.find('"', b + 10) - b - 10);
  // Three parts and the closing delimiter, in order.
  const size_t p1 = d.find("--" + boundary + "\r\nContent-Description: Notification");
  const size_t p2 = d.find("--" + boundary + "\r\nContent-Description: Delivery report");
  const size_t p3 = d.find("--" + boundary + "\r\nContent-Description: Undelivered Message\r\n");
  const size_t end = d.find("--" + boundary + "--\r\n");
  ASSERT_NE(p1, std::string::npos);
  ASSERT_NE(p2, std::string::npos);
  ASSERT_NE(p3, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  EXPECT_LT(p1, p2);
  EXPECT_LT(p2, p3);
  EXPECT_LT(p3, end);
  const std::string status = d.substr(p2, p3 - p2);
  EXPECT_NE(status.find("Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; "
                        "mx.example.org\r\n"),
            std::string::npos);
  EXPECT_NE(status.find("Original-Envelope-Id: abc+def\r\n"), std::string::npos);
  EXPECT_NE(status.find("\r\n\r\nFinal-Recipient: rfc822; u@example.org\r\n"
                        "Original-Recipient: rfc822; \xC3\xBCser@example.org\r\n"
                        "Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; 10.0.0.5\r\n"
                        "Diagnostic-Code: smtp; 550 5.1.1 <u@example.org> unknown\r\n"),
            std::string::npos);
  EXPECT_NE(status.find("Final-Recipient: rfc822; v@example.org\r\nAction: failed\r\n"
                        "Status: 4.4.7\r\n"),
            std::string::npos);
  const std::string original = d.substr(p3, end - p3);
  EXPECT_NE(original.find("Content-Type: message/rfc822\r\n\r\nReceived: from a\r\n"),
            std::string::npos);
  EXPECT_NE(original.find("body line\r\n"), std::string::npos);
}

TEST(Dsn, RetHdrsReturnsOnlyTheHeader) {
  DsnReport r = report();
  r.mail.ret = DsnRet::hdrs;
  const std::string d = make_dsn(r, 1);
  EXPECT_NE(d.find("Content-Type: text/rfc822-headers\r\n\r\nReceived: from a\r\nSubject: hi\r\n"),
            std::string::npos);
  EXPECT_EQ(d.find("body line"), std::string::npos);
}

TEST(Dsn, SuccessReport) {
  DsnReport r = report();
  r.rcpts = {{"u@example.org", {notify_success, "", ""}, "delivered", {250, "2.0.0 Saved"}}};
  const std::string d = make_dsn(r, 1);
  EXPECT_NE(d.find("Subject: Successful Mail Delivery Report\r\n"), std::string::npos);
  EXPECT_NE(d.find("Action: delivered\r\nStatus: 2.0.0\r\n"), std::string::npos);
  EXPECT_EQ(d.find("body line"), std::string::npos);  // headers only
}

TEST(Dsn, NoLineEndsInsideFields) {
  DsnReport r = report();
  r.rcpts[0].reply.text = "5.1.1 evil\r\nInjected: yes";
  const std::string d = make_dsn(r, 1);
  EXPECT_EQ(d.find("\r\nInjected: yes"), std::string::npos);
}

TEST(Dsn, DelayReport) {
  DsnReport r = report();
  r.rcpts = {{"u@example.org", {notify_delay, "", ""}, "delayed", {0, "4.4.1 connection refused"}}};
  const std::string d = make_dsn(r, 1);
  EXPECT_NE(d.find("Subject: Delayed Mail (still being retried)\r\n"), std::string::npos);
  EXPECT_NE(d.find("Action: delayed\r\nStatus: 4.4.1\r\n"), std::string::npos);
  EXPECT_NE(d.find("Content-Type: text/rfc822-headers"), std::string::npos);
  EXPECT_EQ(d.find("body line"), std::string::npos);
}

}  // namespace
}  // namespace ringmx
