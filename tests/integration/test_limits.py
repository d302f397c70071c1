"""Timeouts, connection limits, greeting delay and reload, configured short
so each shows within a second or two."""

import signal
import threading
import time
import unittest

from harness import Client, Server, main, transaction

LIMITS = """
max_connections = 6
max_connections_per_ip = 3
[limits]
command_timeout_ms = 700
data_timeout_ms = 400
session_timeout_ms = 3000
max_bad_commands = 3
"""


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(extra_toml=LIMITS, shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def test_command_timeout(self):
        c = Client(self.srv.port)
        self.assertEqual(c.reply()[0], 220)
        t0 = time.monotonic()
        code, lines = c.reply()
        waited = time.monotonic() - t0
        self.assertEqual(code, 421)
        self.assertIn("4.4.2", lines[0])
        self.assertGreaterEqual(waited, 0.6)
        self.assertLess(waited, 3)
        self.assertTrue(c.closed())

    def test_data_timeout_is_shorter(self):
        c = Client(self.srv.port)
        c.reply()
        c.cmd("EHLO t")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<c@d.test>")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"started but never finished\r\n")
        t0 = time.monotonic()
        code, _ = c.reply()
        self.assertEqual(code, 421)
        self.assertLess(time.monotonic() - t0, 0.65)

    def test_session_timeout_bounds_a_busy_client(self):
        c = Client(self.srv.port)
        c.reply()
        t0 = time.monotonic()
        code = 250
        while code == 250 and time.monotonic() - t0 < 6:
            time.sleep(0.3)
            code, _ = c.cmd("NOOP")
        self.assertEqual(code, 421)
        self.assertLess(time.monotonic() - t0, 4.5)

    def test_per_ip_limit(self):
        held = [Client(self.srv.port) for _ in range(3)]
        for c in held:
            self.assertEqual(c.reply()[0], 220)
        extra = Client(self.srv.port)
        code, lines = extra.reply()
        self.assertEqual(code, 421)
        self.assertIn("4.7.0", lines[0])
        self.assertTrue(extra.closed())
        for c in held:
            c.cmd("QUIT")
            c.close()
        time.sleep(0.2)
        again = Client(self.srv.port)
        self.assertEqual(again.reply()[0], 220)
        again.cmd("QUIT")

    def test_per_ip_slot_is_free_once_the_session_ends(self):
        # As many clients as the per-IP limit, each reconnecting the moment it
        # has its 221: the slot must be free by then (it was only freed once
        # the server's close completed, so a quick reconnect met 421).
        with Server(extra_toml="max_connections_per_ip = 8\n", shards=2) as srv:
            codes = []
            lock = threading.Lock()

            def client():
                deadline = time.monotonic() + 20
                for _ in range(40):
                    if time.monotonic() > deadline:
                        return
                    c = Client(srv.port)
                    code, _ = c.reply()
                    if code == 220:
                        c.send(b"QUIT\r\n")
                        c.reply()
                    c.close()
                    with lock:
                        codes.append(code)

            threads = [threading.Thread(target=client) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            self.assertEqual(len(codes), 8 * 40)
            self.assertEqual(codes.count(421), 0, "421s among %d connections" % len(codes))
            # The boundary itself still holds: 8 open, the 9th is refused.
            held = [Client(srv.port) for _ in range(8)]
            for c in held:
                self.assertEqual(c.reply()[0], 220)
            extra = Client(srv.port)
            self.assertEqual(extra.reply()[0], 421)
            # A session that ended (221) frees its slot even before the client closes.
            self.assertEqual(held[0].cmd("QUIT")[0], 221)
            again = Client(srv.port)
            self.assertEqual(again.reply()[0], 220)
            for c in held[1:] + [again]:
                c.cmd("QUIT")
            srv.stop()

    def test_total_limit(self):
        # Different source addresses, so the per-IP limit is not what bites.
        held = []
        for i in range(6):
            c = Client(self.srv.port, source=("127.0.0.%d" % (10 + i), 0))
            self.assertEqual(c.reply()[0], 220)
            held.append(c)
        extra = Client(self.srv.port, source=("127.0.0.40", 0))
        code, lines = extra.reply()
        self.assertEqual(code, 421)
        self.assertIn("4.3.2", lines[0])
        for c in held:
            c.cmd("QUIT")

    def test_bad_commands_close(self):
        c = Client(self.srv.port)
        c.reply()
        self.assertEqual(c.cmd("EHLO t")[0], 250)  # may pipeline from here on
        c.send("XX\r\nYY\r\nZZ\r\n")
        self.assertEqual(c.replies(3), [500, 500, 421])
        self.assertTrue(c.closed())


class GreetingDelay(unittest.TestCase):
    def test_talking_first_is_refused_waiting_is_served(self):
        with Server(extra_toml="greeting_delay_ms = 300\n", shards=1) as srv:
            early = Client(srv.port)
            early.send("EHLO impatient\r\n")
            code, lines = early.reply()
            self.assertEqual(code, 554)
            self.assertTrue(early.closed())
            patient = Client(srv.port)
            t0 = time.monotonic()
            self.assertEqual(patient.reply()[0], 220)
            self.assertGreaterEqual(time.monotonic() - t0, 0.25)
            patient.cmd("QUIT")
            self.assertEqual(srv.stop(), 0)


class Reload(unittest.TestCase):
    def test_sighup_changes_banner_and_keeps_sessions(self):
        with Server(shards=2) as srv:
            old = Client(srv.port)
            self.assertIn("mx.test", old.reply()[1][0])
            old.cmd("EHLO before")
            with open(srv.config) as f:
                text = f.read()
            with open(srv.config, "w") as f:
                f.write(text.replace('hostname = "mx.test"', 'hostname = "mx2.test"'))
            srv.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                c = Client(srv.port)
                greeting = c.reply()[1][0]
                c.cmd("QUIT")
                if "mx2.test" in greeting:
                    break
                time.sleep(0.1)
            self.assertIn("mx2.test", greeting)
            # The session from before the reload is still served.
            code, text = transaction(old, "a@b.test", ["c@d.test"], b"Subject: x\r\n\r\nkept\r\n")
            self.assertEqual(code, 250)
            # A broken config on reload is refused and the server keeps running.
            with open(srv.config, "w") as f:
                f.write("[limits]\nmax_recipients = -5\n")
            srv.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            c = Client(srv.port)
            self.assertIn("mx2.test", c.reply()[1][0])
            c.cmd("QUIT")
            self.assertEqual(srv.stop(), 0)
            self.assertIn("reload_failed", srv.log())


if __name__ == "__main__":
    main()
