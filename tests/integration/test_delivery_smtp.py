"""Delivery over SMTP to a real Postfix smtpd as the relay (a private
instance on 127.0.0.1 from bench/peers/private_postfix.py, which holds every
message it takes in its hold queue so the test can read it back with
postcat): what Postfix stored is, below its own Received header, exactly what
ringmx stored; the ESMTP parameters (SIZE, BODY, ENVID, RET, NOTIFY, ORCPT)
reach Postfix, which offers DSN; a recipient Postfix refuses fails alone while
the others are delivered. Exits 77 only when Postfix is missing or we are not
root."""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bench", "peers"))

import unittest  # noqa: E402

from harness import Client, http_get, main, metric, queue_id  # noqa: E402
from test_delivery_lmtp import dot_stuff_message, running, wait_for  # noqa: E402

DOMAIN = "relay.test"
# Everything Postfix takes waits in its hold queue; ghost@ is refused.
EXTRA_MAIN = """
smtpd_recipient_restrictions = check_recipient_access inline:{ghost@relay.test=REJECT}, check_recipient_access static:HOLD, permit
"""


class DeliveryToPostfix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0 or not os.path.exists("/usr/sbin/postfix"):
            print("SKIP: needs root and Debian's postfix package", file=sys.stderr)
            sys.exit(77)
        from private_postfix import PrivatePostfix
        cls.pf = PrivatePostfix({"relay": ""}, extra_main=EXTRA_MAIN).start()
        cls.port = cls.pf.ports["relay"]

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()

    def held(self, pf_qid):
        """Headers and body of a message in Postfix's hold queue (LF line ends)."""
        p = subprocess.run(["postcat", "-c", self.pf.conf, "-bh", "-q", pf_qid],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return p.stdout if p.returncode == 0 else None

    def envelope(self, pf_qid):
        p = subprocess.run(["postcat", "-c", self.pf.conf, "-e", "-q", pf_qid],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return p.stdout.decode(errors="replace")

    def test_relayed_byte_exact_with_parameters(self):
        toml = ('\n[delivery]\nretry_min_ms = 300\nretry_max_ms = 600\n'
                '[[route]]\nname = "relay"\ndomains = ["%s"]\ndestination = "smtp://127.0.0.1:%d"\n'
                % (DOMAIN, self.port))
        with running(toml) as srv:
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            body = (b"From: a@example.net\r\nTo: u1@relay.test\r\nDate: Sat, 5 Dec 2026 01:00:00 +0000\r\n"
                    b"Subject: relayed\r\nMessage-ID: <r1@test>\r\n\r\n"
                    b".starts with a dot\r\n" + b"x" * 70 + b"\r\nend\r\n")
            self.assertEqual(c.cmd("MAIL FROM:<a@example.net> BODY=8BITMIME RET=HDRS "
                                   "ENVID=env+2B1")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<u1@%s> NOTIFY=SUCCESS,FAILURE "
                                   "ORCPT=rfc822;u1@%s" % (DOMAIN, DOMAIN))[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<ghost@%s>" % DOMAIN)[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<u2@%s>" % DOMAIN)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(dot_stuff_message(body) + b".\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 250, lines)
            qid = queue_id(lines[-1])
            c.cmd("QUIT")
            wait_for(lambda: srv.log().count("event=delivery qid=%s" % qid) >= 3,
                     what="three recipients decided")
            log = srv.log()
            self.assertRegex(log, r"rcpt=ghost@relay.test route=relay relay=smtp://127.0.0.1:%d "
                                  r"result=failed code=5[0-9][0-9]" % self.port)
            m = re.search(r"rcpt=u1@relay.test .*result=delivered code=250 "
                          r"reply=\"[^\"]*queued as ([0-9A-Za-z]+)\"", log)
            self.assertIsNotNone(m, log)
            self.assertRegex(log, r"rcpt=u2@relay.test .*result=delivered")
            pf_qid = m.group(1)
            stored = srv.spool_records()[qid][1]
            got = wait_for(lambda: self.held(pf_qid), what="postcat")
            want = stored.replace(b"\r\n", b"\n")
            at = got.find(want[:40])
            self.assertGreaterEqual(at, 0, got[:400])
            self.assertEqual(got[at:], want)
            env = self.envelope(pf_qid)
            # The parameters passed on, as Postfix keeps them in its queue file:
            # ENVID decoded from xtext, RET=HDRS, NOTIFY=SUCCESS,FAILURE, ORCPT, BODY.
            self.assertIn("envelope_id=env+1\n", env)
            self.assertIn("ret_flags=2\n", env)
            self.assertIn("notify_flags=6\n", env)
            self.assertIn("dsn_orig_rcpt=rfc822;u1@relay.test\n", env)
            self.assertIn("encoding=8bit\n", env)
            self.assertIn("u1@relay.test", env)
            self.assertIn("u2@relay.test", env)
            self.assertNotIn("ghost@relay.test", env)
            status, text = http_get(srv.admin_port, "/metrics")
            self.assertEqual(metric(text, "ringmx_delivery_total", route="relay",
                                    result="delivered"), 2)
            self.assertEqual(metric(text, "ringmx_delivery_total", route="relay",
                                    result="failed"), 1)


    def relay_one(self, route_extra, tag):
        """Sends one message through a route to Postfix with `route_extra`
        keys; returns (server log, Postfix queue id or None)."""
        toml = ('\n[delivery]\nretry_min_ms = 300\nretry_max_ms = 600\n'
                '[[route]]\nname = "relay"\ndomains = ["%s"]\ndestination = "smtp://127.0.0.1:%d"\n'
                '%s\n' % (DOMAIN, self.port, route_extra))
        with running(toml) as srv:
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            body = (b"From: a@example.net\r\nTo: u1@relay.test\r\nDate: Sat, 5 Dec 2026 01:00:00 "
                    b"+0000\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\nhello\r\n" %
                    (tag.encode(), tag.encode()))
            self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<u1@%s>" % DOMAIN)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(body + b".\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.cmd("QUIT")
            log = wait_for(lambda: (lambda l: l if "event=delivery " in l else None)(srv.log()),
                           what="an attempt")
            m = re.search(r"result=delivered code=250 reply=\"[^\"]*queued as ([0-9A-Za-z]+)\"",
                          log)
            return log, (m.group(1) if m else None)

    def test_starttls_required_to_the_relay(self):
        log, pf_qid = self.relay_one('tls = "required"', "tls-required")
        self.assertIsNotNone(pf_qid, log)
        got = wait_for(lambda: self.held(pf_qid), what="postcat")
        # Postfix's own Received header says the message came over TLS.
        self.assertRegex(got.decode(errors="replace"), r"with ESMTPS id %s" % pf_qid)

    def test_certificate_verification_failure_defers(self):
        from private_postfix import make_cert
        import tempfile
        other = tempfile.mkdtemp(prefix="ringmx-ca-")
        try:
            ca, _key = make_cert(other, cn="someone-else")
            log, pf_qid = self.relay_one('tls = "required"\ntls_ca_file = "%s"' % ca, "tls-bad-ca")
            self.assertIsNone(pf_qid)
            self.assertIn("event=relay_tls_failed", log)
            self.assertRegex(log, r"event=delivery .*result=deferred .*TLS")
        finally:
            import shutil
            shutil.rmtree(other, ignore_errors=True)


if __name__ == "__main__":
    main()
