"""Postfix as the sending MTA: a private Postfix instance (its own config and
queue, smtpd on a loopback port) takes mail from smtplib and relays it to
ringmx (relayhost), as an internet sender would. Postfix adds ORCPT to every
recipient, and for a non-ASCII one encodes it as xtext of its UTF-8 octets
(ORCPT=rfc822;+C3+BCser@...): ringmx must take it, or Postfix bounces the
message. Also several messages over one cached connection, and a message
with a DSN envelope id.

Needs root and Debian's postfix; exits 77 without them."""

import os
import re
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                                "peers"))
from harness import SKIP, Server, main  # noqa: E402
from private_postfix import POSTFIX, PrivatePostfix  # noqa: E402

RCPT_UTF8 = "üser@exämple.org"
RCPT_CJK = "用户@例子.测试"


def relay_main_cf(port):
    """Everything Postfix takes goes to ringmx; SMTPUTF8 on; connections are reused."""
    return ("\n# relay to ringmx\n"
            "default_transport = smtp\nrelay_transport = smtp\n"
            "relayhost = [127.0.0.1]:%d\n"
            "smtputf8_enable = yes\n"
            "smtp_connection_cache_on_demand = yes\n"
            "smtp_tls_security_level = none\n"
            "bounce_queue_lifetime = 0\nmaximal_queue_lifetime = 0\n" % port)


class PostfixSender(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(shards=2).start()
        cls.pf = PrivatePostfix({"in": ""}, extra_main=relay_main_cf(cls.srv.port)).start()

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def submit(self, sender, rcpts, subject, utf8=False, dsn=False):
        body = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nvia Postfix\r\n" %
                (sender, ", ".join(rcpts), subject)).encode()
        with smtplib.SMTP("127.0.0.1", self.pf.ports["in"], timeout=20) as s:
            s.ehlo("client.test")
            mail_opts = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
            rcpt_opts = []
            if dsn:
                mail_opts += ["RET=HDRS", "ENVID=env+2Bid"]
                rcpt_opts = ["NOTIFY=FAILURE,DELAY"]
            s.sendmail(sender, rcpts, body, mail_options=mail_opts, rcpt_options=rcpt_opts)

    def wait_stored(self, subject, timeout=60):
        """The spool records whose message has `subject`, once there."""
        deadline = time.monotonic() + timeout
        needle = ("Subject: " + subject).encode()
        while time.monotonic() < deadline:
            found = [r for r in self.srv.spool_records().values() if needle in r[1]]
            if found:
                return found
            time.sleep(0.2)
        self.fail("%r never reached ringmx; Postfix log:\n%s\nringmx log:\n%s" %
                  (subject, self.pf_log(), self.srv.log()[-3000:]))

    def pf_log(self):
        try:
            with open(self.pf.maillog, "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def test_non_ascii_recipient_orcpt_is_accepted(self):
        self.submit("sender@example.net", [RCPT_UTF8, RCPT_CJK], "utf8 orcpt", utf8=True)
        records = self.wait_stored("utf8 orcpt")
        self.assertEqual(len(records), 1)
        fields, message = records[0]
        rcpts = sorted(fields["rcpt-to"])
        self.assertEqual(len(rcpts), 2, rcpts)
        # Postfix's form, kept verbatim to be passed on.
        self.assertIn("<%s> ORCPT=rfc822;+C3+BCser@ex+C3+A4mple.org" % RCPT_UTF8, rcpts)
        self.assertTrue(any(r.startswith("<%s> ORCPT=rfc822;+E7+94+A8+E6+88+B7@" % RCPT_CJK)
                            for r in rcpts), rcpts)
        self.assertIn("SMTPUTF8", fields["mail-from"][0])
        self.assertNotIn("status=bounced", self.pf_log())

    def test_ascii_recipients_with_dsn(self):
        self.submit("sender@example.net", ["a@example.org", "b+tag@example.org"], "dsn ascii",
                    dsn=True)
        fields, _ = self.wait_stored("dsn ascii")[0]
        rcpts = sorted(fields["rcpt-to"])
        self.assertEqual(rcpts, ["<a@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;a@example.org",
                                 "<b+tag@example.org> NOTIFY=FAILURE,DELAY "
                                 "ORCPT=rfc822;b+2Btag@example.org"])
        self.assertIn("ENVID=env+2Bid", fields["mail-from"][0])

    def test_several_messages_over_one_connection(self):
        # Queued together, delivered over one cached connection: every one arrives once.
        subjects = ["batch %d" % i for i in range(5)]
        for s in subjects:
            self.submit("sender@example.net", ["r@example.org"], s)
        for s in subjects:
            self.assertEqual(len(self.wait_stored(s)), 1, s)
        self.assertNotIn("status=deferred", self.pf_log())
        self.assertNotIn("status=bounced", self.pf_log())


if __name__ == "__main__":
    if os.geteuid() != 0 or not os.path.exists(POSTFIX):
        print("SKIP: needs root and Debian's postfix package", file=sys.stderr)
        sys.exit(SKIP)
    main()
