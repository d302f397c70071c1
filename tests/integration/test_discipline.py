"""Protocol discipline against the real daemon on loopback: an HTTP probe, a
client that pipelines without PIPELINING offered, and a command line that
trickles in (slowloris) are each dropped with their reply and logged
(event=reject check=...); a client that pauses between commands, a client that
pipelines after the EHLO reply, and swaks (lock-step, --pipeline, HELO) are
served. With both switches off the same input is served as before."""

import re
import shutil
import subprocess
import threading
import time
import unittest

from harness import Client, Server, main, transaction, wait_for

DISCIPLINE = """
[limits]
command_line_timeout_ms = 1000
"""

MESSAGE = b"Subject: discipline\r\n\r\nhello\r\n"


def reject_logged(srv, check, stage):
    pattern = re.compile(r"event=reject stage=%s check=%s client=127\.0\.0\.1 sid=\S+" %
                         (stage, check))
    return bool(pattern.search(srv.log()))


class Discipline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(extra_toml=DISCIPLINE, shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def greet(self, ehlo=True):
        c = Client(self.srv.port)
        self.assertEqual(c.reply()[0], 220)
        if ehlo:
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        return c

    def test_http_probe_is_dropped_at_once(self):
        c = self.greet(ehlo=False)
        c.send(b"GET / HTTP/1.1\r\nHost: mx.test\r\nUser-Agent: probe/1.0\r\nAccept: */*\r\n\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 554)
        self.assertIn("5.7.0", lines[0])
        self.assertIn("HTTP", lines[0])
        self.assertTrue(c.closed())
        self.assertEqual(c.buf, b"", "nothing after the 554: the headers are not answered")
        wait_for(lambda: reject_logged(self.srv, "http_probe", "connect"), 10, "reject log line")

    def test_helo_and_mail_in_one_write(self):
        c = self.greet(ehlo=False)
        c.send(b"HELO client.test\r\nMAIL FROM:<a@example.net>\r\n")
        code, _ = c.reply()
        self.assertEqual(code, 250)  # HELO is answered
        code, lines = c.reply()
        self.assertEqual(code, 554)
        self.assertIn("5.5.0", lines[0])
        self.assertIn("PIPELINING", lines[0])
        self.assertTrue(c.closed())
        wait_for(lambda: reject_logged(self.srv, "unoffered_pipelining", "helo"), 10,
                 "reject log line")

    def test_pipelining_after_the_ehlo_reply_is_served(self):
        c = self.greet()
        c.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        self.assertEqual(c.replies(3), [250, 250, 354])
        c.send(MESSAGE + b".\r\nQUIT\r\n")
        self.assertEqual(c.replies(2), [250, 221])

    def test_trickled_command_line_times_out(self):
        c = self.greet()
        stop = threading.Event()

        def trickle():
            for b in b"MAIL FROM:<slow@example.net>\r\n":
                if stop.is_set():
                    return
                try:
                    c.sock.send(bytes([b]))
                except OSError:
                    return  # closed by the server
                time.sleep(0.3)

        t0 = time.monotonic()
        writer = threading.Thread(target=trickle)
        writer.start()
        try:
            code, lines = c.reply()
            waited = time.monotonic() - t0
        finally:
            stop.set()
            writer.join()
        self.assertEqual(code, 421, lines)
        self.assertIn("4.4.2", lines[0])
        # 1 s from the first octet (the 31-octet line would take 9 s), give or take
        # the timer wheel's tick and a loaded machine.
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, 4)
        self.assertTrue(c.closed())
        wait_for(lambda: reject_logged(self.srv, "slow_command", "helo"), 10, "reject log line")

    def test_pauses_between_commands_are_fine(self):
        c = self.greet(ehlo=False)
        time.sleep(3)  # three times command_line_timeout_ms, nothing of a command sent
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        time.sleep(3)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(MESSAGE + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_swaks_still_delivers(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        for extra in ([], ["--pipeline"], ["--protocol", "SMTP"]):
            with self.subTest(args=extra):
                out = subprocess.run(
                    ["swaks", "--server", "127.0.0.1:%d" % self.srv.port, "--to",
                     "user@example.org", "--from", "sender@example.net", "--header",
                     "Subject: swaks discipline"] + extra,
                    capture_output=True, text=True, timeout=30)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                qid = [l for l in out.stdout.splitlines() if "queued as" in l][0].split()[-1]
                fields, message = self.srv.spool_message(qid)
                self.assertEqual(fields["rcpt-to"], ["<user@example.org>"])
                self.assertIn(b"Subject: swaks discipline", message)


class DisciplineOff(unittest.TestCase):
    def test_switched_off(self):
        toml = '[smtp]\nreject_http = false\nunoffered_pipelining = "ignore"\n'
        with Server(extra_toml=toml, shards=1) as srv:
            c = Client(srv.port)
            self.assertEqual(c.reply()[0], 220)
            c.send(b"GET / HTTP/1.1\r\n")
            self.assertEqual(c.reply()[0], 500)  # just an unknown command
            c.send(b"HELO client.test\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n")
            self.assertEqual(c.replies(3), [250, 250, 250])
            self.assertEqual(c.cmd("QUIT")[0], 221)
            c2 = Client(srv.port)
            c2.reply()
            self.assertEqual(c2.cmd("HELO client.test")[0], 250)
            self.assertEqual(transaction(c2, "a@example.net", ["b@example.org"], MESSAGE)[0], 250)
            srv.stop()
            self.assertNotIn("event=reject", srv.log())


if __name__ == "__main__":
    main()
