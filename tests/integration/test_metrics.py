"""The admin endpoint after real traffic: /metrics counts what the test did
(an accepted message, a 501 to a malformed RCPT, the connections) and passes
`promtool check metrics` without a single complaint; /healthz and /readyz
answer, and /readyz turns 503 once a drain has begun; 200 clients that
send half a request line and stop do not keep a health check or a scrape
waiting.

Needs promtool (Debian package `prometheus`); exits 77 without it."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

from harness import Client, Server, http_get, main, metric, transaction, queue_id

PROMTOOL = shutil.which("promtool")
MESSAGE = b"Subject: metrics\r\n\r\ncounted\r\n.dot line\r\n"


def scrape(srv):
    status, body = http_get(srv.admin_port, "/metrics")
    assert status == 200, status
    return body.decode()


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(shards=2).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def traffic(self):
        c = Client(self.srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO metrics.test")[0], 250)
        code, text = transaction(c, "a@example.net", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
        code, lines = c.cmd("RCPT TO:<no-closing-bracket@example.org")
        self.assertEqual(code, 501, lines)
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertTrue(c.closed())
        return queue_id(text)

    def settled(self):
        """A scrape taken once the sessions are gone (bounded wait)."""
        deadline = time.monotonic() + 5
        while True:
            text = scrape(self.srv)
            if metric(text, "ringmx_sessions_active") == 0 or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def test_counters_follow_traffic_and_promtool_accepts(self):
        self.traffic()
        text = self.settled()
        self.assertEqual(metric(text, "ringmx_sessions_active"), 0)
        self.assertGreaterEqual(metric(text, "ringmx_messages_accepted_total"), 1)
        self.assertGreaterEqual(metric(text, "ringmx_replies_total", code="501"), 1)
        self.assertGreaterEqual(metric(text, "ringmx_replies_total", code="250"), 4)
        self.assertGreaterEqual(metric(text, "ringmx_replies_total", code="354"), 1)
        self.assertGreaterEqual(metric(text, "ringmx_replies_total", code="221"), 1)
        self.assertGreaterEqual(
            metric(text, "ringmx_connections_total", listener="smtp", result="accepted"), 1)
        self.assertGreaterEqual(metric(text, "ringmx_transactions_total", result="accepted"), 1)
        self.assertGreaterEqual(metric(text, "ringmx_message_bytes_total"), len(MESSAGE))
        self.assertGreaterEqual(metric(text, "ringmx_received_bytes_total"), len(MESSAGE))
        self.assertGreaterEqual(metric(text, "ringmx_spool_messages"), 1)
        self.assertGreaterEqual(metric(text, "ringmx_spool_fsync_duration_seconds_count"), 1)
        self.assertEqual(metric(text, "ringmx_build_info"), 1)
        # The version a scrape names is the binary's own (git describe at build time).
        from harness import BINARY
        version = subprocess.run([BINARY, "--version"], capture_output=True,
                                 text=True).stdout.strip()[len("ringmx "):]
        self.assertEqual(metric(text, "ringmx_build_info", version=version), 1)
        # Operator series: the process as /proc sees it, the spool's free space.
        pid = self.srv.proc.pid
        open_fds = len(os.listdir("/proc/%d/fd" % pid))
        self.assertLessEqual(abs(metric(text, "process_open_fds") - open_fds), 8)
        self.assertGreater(metric(text, "process_max_fds"), metric(text, "process_open_fds"))
        rss = metric(text, "process_resident_memory_bytes")
        self.assertGreater(rss, 1 << 20)
        self.assertGreaterEqual(metric(text, "process_virtual_memory_bytes"), rss)
        self.assertGreater(metric(text, "process_cpu_seconds_total"), 0)
        self.assertLess(abs(metric(text, "process_start_time_seconds") - time.time()), 600)
        st = os.statvfs(self.srv.spool)
        self.assertLess(abs(metric(text, "ringmx_spool_free_bytes") - st.f_bavail * st.f_frsize),
                        256 << 20)
        self.assertEqual(metric(text, "ringmx_log_lines_dropped_total"), 0)

        # One more round of the same traffic moves each counter by exactly its share.
        self.traffic()
        again = self.settled()
        for name, labels, step in (
                ("ringmx_messages_accepted_total", {}, 1),
                ("ringmx_replies_total", {"code": "501"}, 1),
                ("ringmx_replies_total", {"code": "354"}, 1),
                ("ringmx_replies_total", {"code": "221"}, 1),
                ("ringmx_connections_total", {"listener": "smtp", "result": "accepted"}, 1),
                ("ringmx_transactions_total", {"result": "accepted"}, 1),
                ("ringmx_message_bytes_total", {}, None),
                ("ringmx_spool_messages", {}, 1)):
            before, after = metric(text, name, **labels), metric(again, name, **labels)
            if step is None:
                self.assertGreater(after, before, name)
            else:
                self.assertEqual(after - before, step, "%s%s" % (name, labels))

        out = subprocess.run([PROMTOOL, "check", "metrics"], input=again.encode(),
                             capture_output=True, timeout=30)
        self.assertEqual((out.returncode, out.stdout + out.stderr), (0, b""),
                         "promtool check metrics complained")

    def test_content_type_and_probes(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.admin_port, timeout=5)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/plain; version=0.0.4"),
                        resp.getheader("Content-Type"))
        self.assertEqual(http_get(self.srv.admin_port, "/healthz"), (200, b"ok\n"))
        self.assertEqual(http_get(self.srv.admin_port, "/readyz"), (200, b"ready\n"))
        self.assertEqual(http_get(self.srv.admin_port, "/nope")[0], 404)


class SlowAdminClients(unittest.TestCase):
    def test_health_checks_and_scrapes_are_answered_past_200_slow_clients(self):
        with Server(shards=1) as srv:
            slow = []
            try:
                for _ in range(200):
                    s = socket.create_connection(("127.0.0.1", srv.admin_port), timeout=5)
                    s.sendall(b"GET /heal")
                    slow.append(s)
                worst = 0.0
                for i in range(20):
                    t0 = time.monotonic()
                    path = "/healthz" if i % 2 == 0 else "/metrics"
                    status, body = http_get(srv.admin_port, path, timeout=5)
                    worst = max(worst, time.monotonic() - t0)
                    self.assertEqual(status, 200, path)
                print("slowest of 20 /healthz and /metrics past 200 slow clients: %.1f ms" %
                      (worst * 1000), file=sys.stderr)
                # The old one-at-a-time server made each wait out 2 s per slow client ahead.
                self.assertLess(worst, 1.0)
            finally:
                for s in slow:
                    s.close()


class Readiness(unittest.TestCase):
    def test_readyz_is_503_while_draining(self):
        with Server(shards=1, extra_toml="drain_timeout_ms = 5000\n") as srv:
            self.assertEqual(http_get(srv.admin_port, "/readyz")[0], 200)
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO r.test")
            self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
            srv.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 3
            ready = None
            while time.monotonic() < deadline:
                ready = http_get(srv.admin_port, "/readyz")
                if ready[0] == 503:
                    break
                time.sleep(0.05)
            self.assertEqual(ready, (503, b"not ready\n"))
            self.assertEqual(http_get(srv.admin_port, "/healthz"), (200, b"ok\n"))
            # The transaction in flight still finishes; then the server exits 0.
            self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: late\r\n\r\nlate\r\n.\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"QUIT\r\n")
            self.assertEqual(srv.stop(timeout=10), 0)


if __name__ == "__main__":
    if not PROMTOOL:
        print("promtool not installed (apt-get install prometheus)", file=sys.stderr)
        sys.exit(77)
    main()
