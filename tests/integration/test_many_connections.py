"""10,000 concurrent connections on loopback: every one is greeted with 220,
/metrics counts them in ringmx_sessions_active, every one gets 221 to QUIT,
and the gauge returns to 0. The server's RSS growth per connection is printed
(with a loose sanity bound only; the memory target is measured by
bench/peers/idle_memory.py).

The client side is this one process: non-blocking sockets under a selector,
source addresses spread over 127.0.0.2-127.0.0.9 (bound before connect) so
ephemeral ports never run short."""

import errno
import resource
import selectors
import socket
import time
import unittest

from harness import Server, http_get, main, metric, raise_nofile, vm_rss_kib

N = 10_000
SOURCES = ["127.0.0.%d" % i for i in range(2, 10)]
MAX_CONNECTING = 512        # connections opened but not yet greeted, at most
OPEN_SECONDS = 60           # bound of the open phase
QUIT_SECONDS = 30           # bound of the QUIT phase
METRIC_SECONDS = 10         # bound of each wait for the gauge
RSS_SANITY_KIB = 32         # per connection; loose, the real target is a benchmark's
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

CONFIG = """max_connections = 20000
max_connections_per_ip = 20000
[limits]
command_timeout_ms = 600000
session_timeout_ms = 3600000
"""


class Conn:
    __slots__ = ("sock", "buf", "greeted", "done", "eof")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.greeted = False
        self.done = False   # 221 seen
        self.eof = False


class ManyConnections(unittest.TestCase):
    def setUp(self):
        raise_nofile()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < N + 200:
            self.fail("RLIMIT_NOFILE hard limit %d is below %d connections" % (hard, N + 200))
        self.srv = Server(extra_toml=CONFIG, shards=2).start()
        self.conns = []
        self.sel = selectors.DefaultSelector()

    def tearDown(self):
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass
        self.sel.close()
        self.srv.__exit__()

    def sessions_active(self):
        status, body = http_get(self.srv.admin_port, "/metrics")
        self.assertEqual(status, 200)
        value = metric(body, "ringmx_sessions_active")
        return None if value is None else int(value)

    def wait_sessions(self, want):
        deadline = time.monotonic() + METRIC_SECONDS
        got = None
        while time.monotonic() < deadline:
            got = self.sessions_active()
            if got == want:
                return got
            time.sleep(0.1)
        return got

    def open_one(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((SOURCES[i % len(SOURCES)], 0))
        err = s.connect_ex(("127.0.0.1", self.srv.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            raise OSError(err, "connect #%d: %s" % (i, errno.errorcode.get(err, err)))
        c = Conn(s)
        self.conns.append(c)
        self.sel.register(s, selectors.EVENT_READ, c)

    def read_lines(self, c):
        """Reads what is there; returns the complete lines; marks EOF."""
        try:
            data = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return []
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            c.eof = True
            return []
        c.buf += data
        lines = []
        while b"\r\n" in c.buf:
            line, _, c.buf = c.buf.partition(b"\r\n")
            lines.append(line)
        return lines

    def test_ten_thousand_connections(self):
        pid = self.srv.proc.pid
        time.sleep(0.3)
        rss_before = vm_rss_kib(pid)
        self.assertEqual(self.sessions_active(), 0)

        # Open N connections, at most MAX_CONNECTING waiting for their greeting.
        t0 = time.monotonic()
        opened = greeted = 0
        bad = []
        while greeted + len(bad) < N:
            self.assertLess(time.monotonic() - t0, OPEN_SECONDS,
                            "only %d of %d greeted, %d opened" % (greeted, N, opened))
            while opened < N and opened - greeted - len(bad) < MAX_CONNECTING:
                self.open_one(opened)
                opened += 1
            for key, _ in self.sel.select(timeout=1.0):
                c = key.data
                lines = self.read_lines(c)
                if lines and not c.greeted:
                    self.sel.unregister(c.sock)
                    if lines[0].startswith(b"220 ") and len(lines) == 1:
                        c.greeted = True
                        greeted += 1
                    else:
                        bad.append(lines)
                elif c.eof and not c.greeted:
                    self.sel.unregister(c.sock)
                    bad.append(["closed before the greeting"])
        t_open = time.monotonic() - t0
        self.assertEqual(bad[:5], [], "%d connections not greeted with 220" % len(bad))
        self.assertEqual(greeted, N)

        active = self.wait_sessions(N)
        rss_during = vm_rss_kib(pid)
        per_conn = (rss_during - rss_before) / N
        print("\n%d connections greeted in %.1fs; server VmRSS %d KiB before, %d KiB with %d "
              "open: %.2f KiB per connection" % (N, t_open, rss_before, rss_during, N, per_conn),
              flush=True)
        self.assertEqual(active, N, "ringmx_sessions_active with %d connections open" % N)
        self.assertLess(per_conn, RSS_SANITY_KIB)

        # QUIT on all of them: 221, then the server closes.
        t1 = time.monotonic()
        for c in self.conns:
            c.sock.send(b"QUIT\r\n")   # 6 bytes into an empty send buffer: never short
            self.sel.register(c.sock, selectors.EVENT_READ, c)
        quit_ok = 0
        wrong = []
        pending = N
        while pending:
            self.assertLess(time.monotonic() - t1, QUIT_SECONDS,
                            "%d connections still waiting for 221" % pending)
            for key, _ in self.sel.select(timeout=1.0):
                c = key.data
                for line in self.read_lines(c):
                    if not c.done:
                        c.done = True
                        if line.startswith(b"221 "):
                            quit_ok += 1
                        else:
                            wrong.append(line)
                if c.eof:
                    self.sel.unregister(c.sock)
                    c.sock.close()
                    pending -= 1
                    if not c.done:
                        wrong.append(b"closed without a reply to QUIT")
                        c.done = True
        t_quit = time.monotonic() - t1
        self.assertEqual(wrong[:5], [], "%d connections got no 221" % len(wrong))
        self.assertEqual(quit_ok, N)

        after = self.wait_sessions(0)
        print("%d QUITs answered 221 and closed in %.1fs; ringmx_sessions_active %s afterwards" %
              (quit_ok, t_quit, after))
        self.assertEqual(after, 0)
        status, body = http_get(self.srv.admin_port, "/metrics")
        self.assertGreaterEqual(metric(body, "ringmx_connections_total", result="accepted"), N)
        self.assertEqual(self.srv.stop(), 0, self.srv.log()[-2000:])


if __name__ == "__main__":
    main()
