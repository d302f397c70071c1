"""ringmx's milter client against the real milters operators run: Debian's
OpenDKIM signing (the stored message carries a DKIM-Signature that
python3-dkim verifies, and that OpenDKIM, as a verifying milter of a second
ringmx, passes), and Debian's Rspamd through its milter proxy (GTUBE refused
at the end of the message, headers added to a clean one, a subject
rewritten). Both run in one chain in one test as well. The peers are
started by tests/integration/milter_peers.py on 127.0.0.1 with their own
config. Exits 77 only when a peer's package is missing."""

import re
import sys
import unittest

from harness import Client, SKIP, Server, http_get, main, metric, transaction, wait_for
from milter_peers import (GTUBE, GTUBE_REWRITE_SUBJECT, Opendkim, Rspamd, verify_dkim)


def milter(name, address, extra=""):
    return '\n[[milter]]\nname = "%s"\naddress = "%s"\n%s\n' % (name, address, extra)


MESSAGE = ("From: Alice <alice@example.test>\r\nTo: bob@example.org\r\n"
           "Subject: %s\r\nDate: Sat, 05 Dec 2026 12:00:00 +0000\r\n"
           "Message-ID: <%s@example.test>\r\n\r\n%s\r\nSecond line.\r\n")


def message(subject="hello", body="Hello Bob.", mid="m1"):
    return (MESSAGE % (subject, mid, body)).encode()


def send(srv, msg, sender="alice@example.test", rcpt="bob@example.org"):
    c = Client(srv.port, timeout=30)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example.test")[0] == 250
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % rcpt)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(msg + b".\r\n")
    code, lines = c.reply()
    c.cmd("QUIT")
    c.close()
    return code, lines[-1]


def stored(srv, text):
    qid = text.split()[-1]
    fields, data = wait_for(lambda: srv.spool_records().get(qid), what="record " + qid)
    return data


def header_section(data):
    return data.split(b"\r\n\r\n", 1)[0].decode()


class Dkim(unittest.TestCase):
    def test_signed_by_opendkim_and_verified_twice(self):
        with Opendkim(mode="sign") as signer:
            srv = Server(milter("dkim", signer.address), shards=1).start()
            try:
                code, text = send(srv, message())
                self.assertEqual(code, 250, text)
                signed = stored(srv, text)
                # Mail from another domain is not signed.
                code, text = send(srv, message().replace(b"example.test>", b"example.net>"),
                                  sender="x@example.net")
                self.assertEqual(code, 250, text)
                unsigned = stored(srv, text)
                metrics = http_get(srv.admin_port, "/metrics")[1]
                self.assertEqual(metric(metrics, "ringmx_milter_calls_total", milter="dkim",
                                        stage="message", result="continue") +
                                 metric(metrics, "ringmx_milter_calls_total", milter="dkim",
                                        stage="message", result="accept"), 2)
            finally:
                self.assertEqual(srv.stop(), 0, srv.log())
        head = header_section(signed)
        # OpenDKIM inserts its fields at index 0: above our own.
        self.assertLess(head.index("DKIM-Signature:"), head.index("Received:"), head)
        self.assertIn("d=example.test", head)
        self.assertIn("s=ringmx", head)
        self.assertNotIn("\n\t", head.replace("\r\n\t", ""))  # every fold is CRLF
        ok, detail = verify_dkim(signed)
        self.assertTrue(ok, detail)
        # One octet of the body changed: the signature no longer verifies.
        ok, _ = verify_dkim(signed.replace(b"Hello Bob.", b"Hello Bot."))
        self.assertFalse(ok)
        self.assertNotIn("DKIM-Signature", header_section(unsigned))

        # OpenDKIM itself, as the verifying milter of another ringmx.
        with Opendkim(mode="verify", authserv_id="verifier.test") as verifier:
            srv = Server(milter("verify", verifier.address), shards=1).start()
            try:
                code, text = send(srv, signed)
                self.assertEqual(code, 250, text)
                passed = header_section(stored(srv, text))
                code, text = send(srv, signed.replace(b"Hello Bob.", b"Hello Bot."))
                self.assertEqual(code, 250, text)
                failed = header_section(stored(srv, text))
            finally:
                self.assertEqual(srv.stop(), 0, srv.log())
        self.assertRegex(passed, r"Authentication-Results: verifier\.test;\s+dkim=pass")
        self.assertRegex(failed, r"Authentication-Results: verifier\.test;\s+dkim=fail")


class RspamdMilter(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rspamd = Rspamd().start()
        cls.srv = Server(milter("rspamd", cls.rspamd.address), shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        cls.rspamd.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def test_gtube_is_refused_at_the_end_of_the_message(self):
        code, text = send(self.srv, message(body=GTUBE, mid="gtube"))
        self.assertEqual(code, 554, text)
        self.assertIn("5.7.1", text)
        self.assertIn("Gtube pattern", text)
        wait_for(lambda: re.search(r"event=reject .*stage=message check=milter_rspamd code=554",
                                   self.srv.log()), what="the reject log line")

    def test_clean_message_gets_rspamd_headers(self):
        code, text = send(self.srv, message(mid="clean"))
        self.assertEqual(code, 250, text)
        head = header_section(stored(self.srv, text))
        for name in ("X-Spamd-Result", "X-Rspamd-Action", "X-Spam-Status", "X-Rspamd-Queue-Id"):
            self.assertIn(name + ":", head)
        self.assertIn("X-Spam-Status: No", head)

    def test_subject_rewritten(self):
        code, text = send(self.srv, message(body=GTUBE_REWRITE_SUBJECT, mid="rw"))
        self.assertEqual(code, 250, text)
        head = header_section(stored(self.srv, text))
        self.assertIn("Subject: *** SPAM *** hello", head)
        self.assertEqual(head.count("\r\nSubject:"), 1, head)


class Chain(unittest.TestCase):
    def test_rspamd_then_opendkim_in_one_chain(self):
        with Rspamd() as rspamd, Opendkim(mode="sign") as signer:
            srv = Server(milter("rspamd", rspamd.address) + milter("dkim", signer.address),
                         shards=1).start()
            try:
                code, text = send(srv, message(mid="chain"))
                self.assertEqual(code, 250, text)
                data = stored(srv, text)
                code, text = send(srv, message(body=GTUBE, mid="chain-gtube"))
                self.assertEqual(code, 554, text)
            finally:
                self.assertEqual(srv.stop(), 0, srv.log())
        head = header_section(data)
        self.assertIn("X-Spamd-Result:", head)
        self.assertIn("DKIM-Signature:", head)
        ok, detail = verify_dkim(data)
        self.assertTrue(ok, detail)


if __name__ == "__main__":
    try:
        Opendkim(mode="sign")
        Rspamd()
    except unittest.SkipTest as e:
        print("SKIP: %s" % e, file=sys.stderr)
        sys.exit(SKIP)
    main()
