"""The valid-recipient table ([recipients]) on the real daemon: a listed
recipient is accepted, an unknown one gets 550 5.1.1 and a log line; the
unknown recipient past unknown_limit on one connection gets 421 4.7.0 and the
close (exactly at unknown_limit + 1, across transactions); postmaster is
always accepted; SIGHUP reads the file again (same path, new contents); a bad
file on reload keeps the old table; a bad file at start-up is a config error
naming file and line."""

import os
import signal
import subprocess
import time
import unittest

from harness import BINARY, Client, Server, main, wait_for

LIMIT = 3


def recipients_toml(path, limit=LIMIT, extra=""):
    return '\n[recipients]\nfile = "%s"\nunknown_limit = %d\n%s' % (path, limit, extra)


def write(path, text):
    # Written beside it and renamed, as an operator's deploy would (a reader never sees half).
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def session(port):
    c = Client(port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO rcpt.test")[0] == 250
    assert c.cmd("MAIL FROM:<s@sender.test>")[0] == 250
    return c


def rcpt(c, addr):
    code, lines = c.cmd("RCPT TO:<%s>" % addr)
    return code, lines[-1]


class Recipients(unittest.TestCase):
    def setUp(self):
        self.srv = None

    def tearDown(self):
        if self.srv is not None:
            self.srv.__exit__()

    def start(self, text, limit=LIMIT, extra="", shards=2):
        srv = Server(shards=shards)
        self.path = os.path.join(srv.dir, "recipients")
        write(self.path, text)
        with open(srv.config, "a") as f:
            f.write(recipients_toml(self.path, limit, extra))
        self.srv = srv.start()
        return srv

    def test_known_unknown_postmaster_and_the_probe_limit(self):
        srv = self.start("# mailboxes\nalice@example.org\n@catchall.test\n")
        c = session(srv.port)
        self.assertEqual(rcpt(c, "alice@example.org")[0], 250)
        self.assertEqual(rcpt(c, "Alice@EXAMPLE.org")[0], 250)        # case-insensitive
        self.assertEqual(rcpt(c, "alice+news@example.org")[0], 250)   # subaddress
        self.assertEqual(rcpt(c, "anyone@catchall.test")[0], 250)     # catch-all
        self.assertEqual(rcpt(c, "postmaster")[0], 250)
        self.assertEqual(rcpt(c, "postmaster@example.org")[0], 250)
        self.assertEqual(rcpt(c, "PostMaster@example.org")[0], 250)
        # Unknown ones: 550 5.1.1, the first LIMIT of them (one in a second transaction:
        # the count is the connection's).
        self.assertEqual(rcpt(c, "bob@example.org"),
                         (550, "550 5.1.1 <bob@example.org>: Recipient address rejected: "
                               "user unknown"))
        self.assertEqual(rcpt(c, "postmaster@other.test")[0], 550)  # not a domain of the file
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<s@sender.test>")[0], 250)
        self.assertEqual(rcpt(c, "carol@example.org")[0], 550)    # unknown number LIMIT
        self.assertEqual(rcpt(c, "alice@example.org")[0], 250)    # a known one is not counted
        # The one past the limit: 421 and the close.
        code, text = rcpt(c, "dave@example.org")
        self.assertEqual((code, text), (421, "421 4.7.0 Error: too many unknown recipients"))
        self.assertTrue(c.closed())
        # A new connection starts counting afresh.
        c2 = session(srv.port)
        self.assertEqual(rcpt(c2, "eve@example.org")[0], 550)
        self.assertEqual(rcpt(c2, "alice@example.org")[0], 250)
        c2.cmd("QUIT")
        # One line per refusal (shards log on their own: the two connections' lines may
        # interleave either way).
        def refusals():
            got = [l for l in srv.log().splitlines()
                   if "event=reject" in l and "check=recipients" in l]
            return got if len(got) >= LIMIT + 2 else None
        lines = wait_for(refusals, what="the refusal log lines")
        self.assertEqual(len(lines), LIMIT + 2, "\n".join(lines))
        by_rcpt = {l.split("rcpt=")[1].split()[0]: l for l in lines}
        self.assertEqual(sorted(by_rcpt), sorted(["bob@example.org", "postmaster@other.test",
                                                  "carol@example.org", "dave@example.org",
                                                  "eve@example.org"]))
        first = by_rcpt["bob@example.org"]
        for want in ("stage=rcpt", "unknown=1", "action=refuse", "client=127.0.0.1"):
            self.assertIn(want, first)
        self.assertIn("unknown=%d" % LIMIT, by_rcpt["carol@example.org"])
        last = by_rcpt["dave@example.org"]
        self.assertIn("unknown=%d" % (LIMIT + 1), last)
        self.assertIn("action=close", last)
        self.assertIn("unknown=1", by_rcpt["eve@example.org"])
        self.assertEqual(srv.stop(), 0)

    def test_limit_of_one(self):
        # At the lower bound: one unknown recipient is refused, the second closes.
        srv = self.start("alice@example.org\n", limit=1)
        c = session(srv.port)
        self.assertEqual(rcpt(c, "x@example.org")[0], 550)
        self.assertEqual(rcpt(c, "y@example.org")[0], 421)
        self.assertTrue(c.closed())
        self.assertEqual(srv.stop(), 0)

    def test_accepted_mail_goes_through(self):
        srv = self.start("alice@example.org\n")
        c = session(srv.port)
        self.assertEqual(rcpt(c, "nobody@example.org")[0], 550)
        self.assertEqual(rcpt(c, "alice@example.org")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: known\r\n\r\nhello\r\n.\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        c.cmd("QUIT")
        self.assertEqual(srv.stop(), 0)

    def test_sighup_reads_the_file_again_and_a_bad_one_keeps_the_old(self):
        srv = self.start("alice@example.org\n")
        c = session(srv.port)
        self.assertEqual(rcpt(c, "bob@example.org")[0], 550)
        c.cmd("QUIT")
        # Same path, new contents: the config text is unchanged, the file is read again.
        write(self.path, "alice@example.org\nbob@example.org\n")
        offset = os.path.getsize(srv.stderr_path)
        srv.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=reload_done" in srv.log(since=offset), what="reload_done")

        def bob_code():
            c = session(srv.port)
            code = rcpt(c, "bob@example.org")[0]
            c.cmd("QUIT")
            return code
        self.assertEqual(wait_for(lambda: bob_code() == 250, what="bob accepted"), True)

        # A bad line: the reload fails, naming file and line; the table in use stays.
        write(self.path, "alice@example.org\ncarol@example.org\nnot-an-address\n")
        offset = os.path.getsize(srv.stderr_path)
        srv.send_signal(signal.SIGHUP)
        failed = wait_for(lambda: [l for l in srv.log(since=offset).splitlines()
                                   if "event=reload_failed" in l], what="reload_failed")
        self.assertIn(self.path + ":3: not an address", failed[0])
        c = session(srv.port)
        self.assertEqual(rcpt(c, "bob@example.org")[0], 250)
        self.assertEqual(rcpt(c, "carol@example.org")[0], 550)
        c.cmd("QUIT")

        # A missing file likewise.
        os.unlink(self.path)
        offset = os.path.getsize(srv.stderr_path)
        srv.send_signal(signal.SIGHUP)
        failed = wait_for(lambda: [l for l in srv.log(since=offset).splitlines()
                                   if "event=reload_failed" in l], what="reload_failed")
        self.assertIn("No such file or directory", failed[0])
        c = session(srv.port)
        self.assertEqual(rcpt(c, "bob@example.org")[0], 250)
        c.cmd("QUIT")
        self.assertEqual(srv.stop(), 0)

    def test_bad_file_at_start_up_is_a_config_error(self):
        srv = Server(shards=1)
        path = os.path.join(srv.dir, "recipients")
        with open(srv.config, "a") as f:
            f.write(recipients_toml(path))
        # Missing.
        p = subprocess.run([BINARY, "--config", srv.config], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("event=start_failed", p.stderr)
        self.assertIn("recipients.file: %s: No such file or directory" % path, p.stderr)
        # A line too long, on line 2.
        write(path, "a@example.org\n%s@example.org\n" % ("x" * 320))
        p = subprocess.run([BINARY, "--config", srv.config], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("%s:2: line is longer than 320 octets" % path, p.stderr)
        # --check-config says the same, without the log format.
        p = subprocess.run([BINARY, "--check-config", srv.config], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("recipients.file: %s:2: line is longer than 320 octets" % path, p.stderr)
        self.assertNotIn("tls:", p.stderr)
        write(path, "a@example.org\n")
        p = subprocess.run([BINARY, "--check-config", srv.config], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_no_file_no_check(self):
        srv = Server(shards=1).start()
        self.srv = srv
        c = session(srv.port)
        for i in range(LIMIT + 5):
            self.assertEqual(rcpt(c, "anyone%d@anywhere.test" % i)[0], 250)
        c.cmd("QUIT")
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    main()
