"""The real daemon on loopback: swaks and smtplib transactions land byte-exact
in the spool; raw transcripts for pipelining, bad input and oversized lines;
the server keeps serving after every abuse."""

import os
import re
import shutil
import smtplib
import socket
import subprocess
import unittest

from harness import Client, Server, dot_stuff, main, queue_id, transaction

MESSAGE = (b"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\n"
           b"line one\r\n.leading dot\r\n..two dots\r\n\r\n.\r\nnot the end\r\nlast\r\n")


class Smtp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server().start()

    @classmethod
    def tearDownClass(cls):
        cls.assertEqual = unittest.TestCase.assertEqual
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def greet(self):
        c = Client(self.srv.port)
        code, lines = c.reply()
        self.assertEqual(code, 220)
        self.assertIn("mx.test", lines[0])
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        return c

    def test_swaks_delivers_into_spool(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        out = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % self.srv.port, "--to", "user@example.org",
             "--from", "sender@example.net", "--header", "Subject: swaks test"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        qid = [l for l in out.stdout.splitlines() if "queued as" in l][0].split()[-1]
        fields, message = self.srv.spool_message(qid)
        self.assertEqual(fields["rcpt-to"], ["<user@example.org>"])
        self.assertEqual(fields["mail-from"], ["<sender@example.net>"])
        self.assertIn(b"Subject: swaks test", message)
        self.assertTrue(message.startswith(b"Received: from "))

    def test_smtplib_multiple_recipients(self):
        with smtplib.SMTP("127.0.0.1", self.srv.port, timeout=10) as s:
            refused = s.sendmail("a@example.net", ["x@example.org", "y@example.org"],
                                 MESSAGE.decode())
            self.assertEqual(refused, {})
            code, text = s.noop()
            self.assertEqual(code, 250)
        # smtplib does its own dot-stuffing; the spool must hold the original.
        found = False
        for fields, message in self.srv.spool_records().values():
            if "<y@example.org>" in fields["rcpt-to"]:
                self.assertTrue(message.endswith(MESSAGE), message[-200:])
                found = True
        self.assertTrue(found)

    def test_byte_exact_spool(self):
        c = self.greet()
        message = MESSAGE + b"".join(b"%06d .x..y\r\n" % i for i in range(5000))
        code, text = transaction(c, "s@example.net", ["r@example.org"], message)
        self.assertEqual(code, 250, text)
        qid = queue_id(text)
        fields, stored = self.srv.spool_message(qid)
        # The stored message is our Received header followed by exactly what was sent.
        self.assertTrue(stored.endswith(message))
        header = stored[:len(stored) - len(message)]
        self.assertTrue(header.startswith(b"Received: from client.test (unknown [127.0.0.1])\r\n"))
        self.assertIn(("id %s" % qid).encode(), header)
        self.assertTrue(header.endswith(b" +0000\r\n"))
        self.assertEqual(fields["queue-id"], [qid])
        c.cmd("QUIT")
        # The spool reader finds it among the records and prints it byte-exact.
        tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                            "ringmx-spool")
        out = subprocess.run([tool, self.srv.spool, "message", qid], capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, stored)
        listing = subprocess.run([tool, self.srv.spool, "list"], capture_output=True, text=True)
        self.assertIn(qid, listing.stdout)
        check = subprocess.run([tool, self.srv.spool, "check"], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_pipelined_batch(self):
        c = Client(self.srv.port)
        c.reply()
        # PIPELINING is known from the EHLO reply on (sent with it, MAIL would be
        # refused: test_discipline).
        self.assertEqual(c.cmd("EHLO p.test")[0], 250)
        c.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<bad\r\n"
               "RCPT TO:<e@f.test>\r\nDATA\r\n")
        self.assertEqual(c.replies(5), [250, 250, 501, 250, 354])
        c.send(b"body\r\n.\r\nMAIL FROM:<a@b.test>\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(c.replies(5), [250, 250, 250, 250, 221])
        self.assertTrue(c.closed())

    def test_binary_garbage_then_next_client(self):
        # After EHLO, so the burst below is pipelining, not a client writing ahead
        # of replies it was never told it need not wait for (test_discipline).
        c = self.greet()
        c.send(os.urandom(4096).replace(b"\n", b"") + b"\r\n")
        code, _ = c.reply()
        self.assertEqual(code, 500)
        for _ in range(25):
            try:
                c.send(b"\x00\xff\x01junk\r\n")
            except OSError:
                break
        # After too many errors: 421 and close.
        codes = []
        try:
            while True:
                codes.append(c.reply()[0])
        except (ConnectionError, OSError):
            pass
        self.assertIn(421, codes)
        c2 = self.greet()
        self.assertEqual(c2.cmd("NOOP")[0], 250)

    def test_ten_megabyte_line(self):
        c = self.greet()  # NOOP rides with the end of the line: pipelining
        chunk = b"A" * 65536
        for _ in range(160):
            c.send(chunk)
        c.send(b"\r\nNOOP\r\n")
        self.assertEqual(c.reply()[0], 500)
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")

    def test_client_vanishes_mid_data(self):
        c = self.greet()
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<c@d.test>")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: half\r\n\r\npartial body without end")
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        c2 = self.greet()
        code, text = transaction(c2, "a@b.test", ["c@d.test"], b"Subject: whole\r\n\r\nok\r\n")
        self.assertEqual(code, 250)
        # Nothing of the vanished message was stored.
        for path in self.srv.spool_files().values():
            with open(path, "rb") as f:
                self.assertNotIn(b"partial body", f.read())

    def test_smuggling_is_refused(self):
        c = self.greet()
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<c@d.test>")
        c.cmd("DATA")
        c.send(b"x\r\n\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@x.test>\r\n.\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 550)
        self.assertIn("5.5.2", lines[0])
        self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_oversize_message(self):
        c = self.greet()
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<c@d.test>")
        c.cmd("DATA")
        # Default limit is 25 MiB: send 26 MiB.
        line = b"x" * 998 + b"\r\n"
        for _ in range(26 * 1024 + 100):
            c.send(line)
        c.send(b".\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 552)
        self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_version_and_check_config(self):
        from harness import BINARY
        out = subprocess.run([BINARY, "--version"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        # "ringmx X.Y.Z (git DESCRIBE)", DESCRIBE from `git describe --always --dirty` when
        # the build ran in a git checkout: it must name a commit of this repository.
        m = re.match(r"^ringmx (\d+\.\d+\.\d+)(?: \(git ([0-9a-f]{7,40}|.*-g[0-9a-f]{7,40})"
                     r"(-dirty)?\))?\n$", out.stdout)
        self.assertIsNotNone(m, out.stdout)
        repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        if os.path.exists(os.path.join(repo, ".git")) and shutil.which("git"):
            self.assertIsNotNone(m.group(2), "built in a git checkout, but no git describe: " +
                                 out.stdout)
            commit = m.group(2).rsplit("-g", 1)[-1]
            known = subprocess.run(["git", "-C", repo, "cat-file", "-e", commit + "^{commit}"],
                                   capture_output=True)
            self.assertEqual(known.returncode, 0, "%s names no commit here" % commit)
        good = subprocess.run([BINARY, "--check-config", self.srv.config], capture_output=True,
                              text=True)
        self.assertEqual(good.returncode, 0, good.stderr)
        bad = os.path.join(self.srv.dir, "bad.toml")
        with open(bad, "w") as f:
            f.write("[server]\nhostname = \"mx.test\"\n\n[limits]\nmax_recipients = 0\nbogus = 1\n")
        out = subprocess.run([BINARY, "--check-config", bad], capture_output=True, text=True)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("bad.toml:5", out.stderr)
        self.assertIn("limits.max_recipients", out.stderr)
        self.assertIn("limits.bogus", out.stderr)
        unusable = os.path.join(self.srv.dir, "unusable.toml")
        with open(unusable, "w") as f:
            f.write("[spool]\ndir = \"%s/spool\"\n" % self.srv.config)
        out = subprocess.run([BINARY, "--check-config", unusable], capture_output=True, text=True)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("spool.dir", out.stderr)


if __name__ == "__main__":
    main()
