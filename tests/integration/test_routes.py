"""Which mail is accepted: [[route]] tables (and --relay / --relay-domain) on
the real daemon. With routes, a recipient whose domain no route takes gets
550 5.7.1 (no open relay), logged and counted; exact domains, "*." subdomains
(not the domain itself), domain literals and the bare <postmaster> behave as
documented; with none, any domain is kept in the local spool, and the
start-up output says which of the two it is."""

import time
import unittest

from harness import Client, Server, http_get, main, metric, queue_id, transaction

ROUTES = '''
[[route]]
name = "store"
domains = ["Example.org", "*.example.net", "[192.0.2.1]"]
destination = "lmtp://127.0.0.1:24"
'''


def rcpt_codes(port, rcpts, smtputf8=False):
    c = Client(port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO routes.test")[0] == 250
    assert c.cmd("MAIL FROM:<s@sender.test>%s" % (" SMTPUTF8" if smtputf8 else ""))[0] == 250
    out = {}
    for r in rcpts:
        code, lines = c.cmd("RCPT TO:<%s>" % r)
        out[r] = (code, lines[-1])
    c.cmd("QUIT")
    return out


def denied(srv):
    status, body = http_get(srv.admin_port, "/metrics")
    assert status == 200
    return metric(body.decode(), "ringmx_relay_denied_total") or 0


class Routes(unittest.TestCase):
    def test_routes_from_the_config(self):
        srv = Server(extra_toml=ROUTES).start()
        try:
            second = srv.banner_line
            self.assertIn("routes: store (Example.org *.example.net [192.0.2.1] -> "
                          "lmtp://127.0.0.1:24)", second)
            self.assertIn("other recipient domains are refused (550 5.7.1)", second)
            before = denied(srv)
            got = rcpt_codes(srv.port, [
                "a@example.org", "b@EXAMPLE.ORG", "c@mx.example.net", "d@x.y.example.net",
                "e@[192.0.2.1]", "postmaster", "Postmaster",
                "f@example.net", "g@example.com", "h@notexample.org", "i@example.org.evil.test",
                "j@[192.0.2.2]"])
            accepted = [r for r, (code, _) in got.items() if code == 250]
            refused = {r: text for r, (code, text) in got.items() if code != 250}
            self.assertEqual(accepted, ["a@example.org", "b@EXAMPLE.ORG", "c@mx.example.net",
                                        "d@x.y.example.net", "e@[192.0.2.1]", "postmaster",
                                        "Postmaster"])
            self.assertEqual(sorted(refused), sorted(["f@example.net", "g@example.com",
                                                      "h@notexample.org",
                                                      "i@example.org.evil.test",
                                                      "j@[192.0.2.2]"]))
            for r, text in refused.items():
                self.assertEqual(text, "550 5.7.1 Error: relay access denied", r)
            self.assertEqual(denied(srv) - before, 5)
            deadline = time.monotonic() + 5
            while "event=relay_denied" not in srv.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertIn("rcpt=g@example.com", srv.log())

            # A transaction with a refused recipient goes on with the accepted ones.
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO routes.test")
            self.assertEqual(c.cmd("MAIL FROM:<s@sender.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<x@outside.test>")[0], 550)
            self.assertEqual(c.cmd("RCPT TO:<y@example.org>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: routed\r\n\r\nhello\r\n.\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 250, lines)
            fields, _ = srv.spool_message(queue_id(lines[-1]))
            self.assertEqual(fields["rcpt-to"], ["<y@example.org>"])
            c.cmd("QUIT")
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_relay_flags(self):
        srv = Server(args=["--relay", "smtp://127.0.0.1:2525", "--relay-domain", "flag.test",
                           "--relay-domain", "*.flag.test"]).start()
        try:
            self.assertIn("routes: relay (flag.test *.flag.test -> smtp://127.0.0.1:2525)",
                          srv.banner_line)
            got = rcpt_codes(srv.port, ["a@flag.test", "b@mx.flag.test", "c@other.test"])
            self.assertEqual({r: code for r, (code, _) in got.items()},
                             {"a@flag.test": 250, "b@mx.flag.test": 250, "c@other.test": 550})
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_relay_flags_go_together(self):
        import subprocess
        from harness import BINARY
        for args in (["--relay", "smtp://h"], ["--relay-domain", "a.test"]):
            out = subprocess.run([BINARY, "--check-config", "/dev/null"] + args,
                                 capture_output=True, text=True, timeout=30)
            self.assertNotEqual(out.returncode, 0, args)
            self.assertIn("--relay DEST and --relay-domain DOMAIN go together", out.stderr)
        out = subprocess.run([BINARY, "--check-config", "/dev/null", "--relay", "ftp://h",
                              "--relay-domain", "a.test"], capture_output=True, text=True,
                             timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("must be lmtp://", out.stderr)

    def test_no_routes_keeps_any_domain_in_the_local_spool(self):
        srv = Server().start()
        try:
            self.assertIn("no [[route]] configured: mail for any recipient domain is kept in "
                          "the local spool", srv.banner_line)
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO routes.test")
            code, text = transaction(c, "s@sender.test", ["a@anything.test", "b@example.com"],
                                     b"Subject: anywhere\r\n\r\nx\r\n")
            self.assertEqual(code, 250, text)
            self.assertEqual(denied(srv), 0)
            c.cmd("QUIT")
        finally:
            self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    main()
