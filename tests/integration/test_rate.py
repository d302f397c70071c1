"""Per-client rate limits, the per-network connection limit and karma
([checks.rate], [checks.karma]) against the real binary, clients connecting
from distinct 127.0.x.y source addresses; no DNS server needed.

With shards = 1 every per-shard budget is the whole limit, so each limit is
checked at its bound exactly. With shards = 2 each shard enforces
ceil(limit / 2) on its own (docs/rate-limits.md): the test asserts the
documented bound, not an exact number, since the kernel spreads one client's
connections over the shards by the hash of each connection's addresses and
ports."""

import re
import time
import unittest

from harness import Client, Server, http_get, main, metric, transaction, wait_for

MESSAGE = b"From: a@rate.test\r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\nSubject: rate\r\n\r\nhi\r\n"

RATES = """
[checks.rate]
connections_per_minute = 5
messages_per_minute = 3
recipients_per_minute = 4
max_connections_per_network = 3
"""

KARMA = """
greeting_delay_ms = 400
[checks.karma]
enabled = true
penalty = 10
reject_penalty = 25
half_life_s = 600
"""


def client(srv, source):
    return Client(srv.port, source=(source, 0))


def rejects(srv, stage, check):
    return metric(http_get(srv.admin_port, "/metrics")[1], "ringmx_rejects_total",
                  stage=stage, check=check) or 0


class Rates(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(extra_toml=RATES, shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def test_connections_per_minute_at_the_bound(self):
        for i in range(5):
            c = client(self.srv, "127.0.0.40")
            self.assertEqual(c.reply()[0], 220, "connection %d" % (i + 1))
            self.assertEqual(c.cmd("QUIT")[0], 221)
            c.close()
        c = client(self.srv, "127.0.0.40")
        code, lines = c.reply()
        self.assertEqual(code, 421, lines)
        self.assertIn("4.7.0", lines[0])
        self.assertIn("too many connections from your address", lines[0])
        self.assertTrue(c.closed())
        # Another address is served meanwhile.
        other = client(self.srv, "127.0.0.41")
        self.assertEqual(other.reply()[0], 220)
        other.cmd("QUIT")
        self.assertGreaterEqual(rejects(self.srv, "connect", "rate"), 1)
        wait_for(lambda: re.search(r"event=reject sid=\S+ client=127\.0\.0\.40 stage=connect "
                                   r"check=rate code=421", self.srv.log()),
                 what="the reject log line")

    def test_connections_per_network_at_the_bound(self):
        held = []
        for i in range(1, 4):
            c = client(self.srv, "127.0.5.%d" % i)
            self.assertEqual(c.reply()[0], 220)
            held.append(c)
        over = client(self.srv, "127.0.5.4")
        code, lines = over.reply()
        self.assertEqual(code, 421, lines)
        self.assertIn("4.7.0", lines[0])
        self.assertIn("too many connections from your network", lines[0])
        self.assertTrue(over.closed())
        # Another /24 is not affected.
        elsewhere = client(self.srv, "127.0.6.1")
        self.assertEqual(elsewhere.reply()[0], 220)
        elsewhere.cmd("QUIT")
        # A slot freed is a slot taken again.
        held.pop().cmd("QUIT")
        wait_for(lambda: self._served("127.0.5.4"), what="a freed network slot")
        for c in held:
            c.cmd("QUIT")
        text = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertGreaterEqual(metric(text, "ringmx_connections_total",
                                       result="limit_per_network"), 1)

    def _served(self, source):
        c = client(self.srv, source)
        code, _ = c.reply()
        if code == 220:
            c.cmd("QUIT")
        c.close()
        return code == 220

    def test_messages_per_minute_refused_at_mail(self):
        c = client(self.srv, "127.0.0.42")
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.rate.test")[0], 250)
        for i in range(3):
            code, text = transaction(c, "a@rate.test", ["b@example.org"], MESSAGE)
            self.assertEqual(code, 250, "message %d: %s" % (i + 1, text))
        code, lines = c.cmd("MAIL FROM:<a@rate.test>")
        self.assertEqual(code, 452, lines)
        self.assertEqual(lines[0], "452 4.7.0 Error: too many messages from your address, "
                                   "try again later")
        # The connection stays open: a 452 is for this message, not the session.
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.cmd("QUIT")
        self.assertGreaterEqual(rejects(self.srv, "mail", "rate"), 1)

    def test_recipients_per_minute_refused_at_rcpt(self):
        c = client(self.srv, "127.0.0.43")
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.rate.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@rate.test>")[0], 250)
        for i in range(4):
            self.assertEqual(c.cmd("RCPT TO:<r%d@example.org>" % i)[0], 250)
        code, lines = c.cmd("RCPT TO:<r5@example.org>")
        self.assertEqual(code, 452, lines)
        self.assertIn("4.7.0 Error: too many recipients from your address", lines[0])
        # The four taken still make a message.
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(MESSAGE + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        self.assertGreaterEqual(rejects(self.srv, "rcpt", "rate"), 1)


class Karma(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(extra_toml=KARMA, shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def karma_lines(self, source):
        return len(re.findall(r"event=karma sid=\S+ client=%s " % re.escape(source),
                              self.srv.log()))

    def refused_three_times_then_refused_at_connect(self, source, misbehave):
        for i in range(3):
            c = client(self.srv, source)
            misbehave(c)
            self.assertTrue(c.closed())
            c.close()
            # The connection's end leaves the points (when the shard frees it).
            wait_for(lambda: self.karma_lines(source) == i + 1, what="karma line %d" % (i + 1))
        c = client(self.srv, source)
        t0 = time.monotonic()
        code, lines = c.reply()
        self.assertEqual(code, 421, lines)
        self.assertEqual(lines[0], "421 4.7.0 Error: too many recent refusals from your "
                                   "address, try again later")
        self.assertLess(time.monotonic() - t0, 0.35)  # no greeting delay for it
        self.assertTrue(c.closed())
        # Karma's own refusal leaves no points (it would never decay).
        time.sleep(0.2)
        self.assertEqual(self.karma_lines(source), 3)

    def test_pregreet_talker(self):
        def pregreet(c):
            c.send(b"EHLO too.early\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 554, lines)
        self.refused_three_times_then_refused_at_connect("127.0.0.50", pregreet)
        # Another address is served (after the greeting delay).
        c = client(self.srv, "127.0.0.51")
        self.assertEqual(c.reply()[0], 220)
        c.cmd("QUIT")
        self.assertGreaterEqual(rejects(self.srv, "connect", "karma"), 1)
        wait_for(lambda: re.search(r"event=reject sid=\S+ client=127\.0\.0\.50 stage=connect "
                                   r"check=karma code=421 reason=\"?karma 2\d", self.srv.log()),
                 what="the karma reject log line")

    def test_http_probe(self):
        def probe(c):
            self.assertEqual(c.reply()[0], 220)
            c.send(b"GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n")
        self.refused_three_times_then_refused_at_connect("127.0.0.52", probe)

    def test_a_served_client_leaves_no_points(self):
        for _ in range(4):
            c = client(self.srv, "127.0.0.53")
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO fine.rate.test")[0], 250)
            c.cmd("QUIT")
            self.assertTrue(c.closed())
        time.sleep(0.2)
        self.assertEqual(self.karma_lines("127.0.0.53"), 0)


class TableBound(unittest.TestCase):
    """max_clients = 2: a third client makes the shard forget the least recently seen one
    (so a flood of addresses costs a forgotten count, never memory)."""

    def test_the_least_recent_client_is_forgotten(self):
        srv = Server(extra_toml="[checks.rate]\nconnections_per_minute = 1\nmax_clients = 2\n",
                     shards=1).start()
        try:
            def greeting(source):
                c = client(srv, source)
                code, _ = c.reply()
                if code == 220:
                    c.cmd("QUIT")
                c.close()
                return code
            self.assertEqual(greeting("127.0.0.70"), 220)
            self.assertEqual(greeting("127.0.0.71"), 220)
            self.assertEqual(greeting("127.0.0.70"), 421)   # remembered: over its one a minute
            self.assertEqual(greeting("127.0.0.72"), 220)   # the table is full: .71 goes
            self.assertEqual(greeting("127.0.0.70"), 421)   # .70 was seen more recently: kept
            self.assertEqual(greeting("127.0.0.71"), 220)   # forgotten, so counted afresh
        finally:
            rc = srv.stop()
        self.assertEqual(rc, 0)


class TwoShards(unittest.TestCase):
    """connections_per_minute = 4 over 2 shards: each shard admits ceil(4/2) = 2.
    One client is admitted at most 2 * 2 = 4 times in the minute (exactly the
    limit here; limit + shards - 1 at worst when it does not divide), and at
    least 2 times before its first refusal (all its connections on one shard)."""

    def test_the_documented_bound(self):
        srv = Server(extra_toml="[checks.rate]\nconnections_per_minute = 4\n", shards=2).start()
        try:
            results = []
            for _ in range(12):
                c = client(srv, "127.0.0.60")
                code, _ = c.reply()
                results.append(code)
                if code == 220:
                    c.cmd("QUIT")
                c.close()
            served = results.count(220)
            self.assertEqual(served + results.count(421), 12, results)
            self.assertLessEqual(served, 4, results)
            self.assertGreaterEqual(served, 2, results)
            self.assertEqual(results[:2], [220, 220], results)
        finally:
            rc = srv.stop()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    main()
