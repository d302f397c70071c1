"""SIGTERM under load: the drain.

Transactions in flight (after MAIL, after RCPT, inside DATA, between BDAT
chunks) are allowed to finish and their messages land in the spool; idle
sessions get `421 4.3.2` and are closed; new connections are refused; the
process exits 0 within [server] drain_timeout_ms. A client still inside DATA
when the drain deadline passes is cut off, and the server still exits 0 in time."""

import re
import signal
import socket
import threading
import time
import unittest

from harness import Client, Server, dot_stuff, main, parse_spool

DRAIN_MS = 3000
EXIT_SLACK = 1.0    # seconds allowed past the drain deadline for the process to exit
LOAD_THREADS = 8
LOAD_MAX_MESSAGES = 5000  # per thread
LOAD_MAX_SECONDS = 15.0

QID_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-V]{17})$")


def message(tag, lines=200):
    body = b"".join(b"%s line %04d .x\r\n" % (tag.encode(), i) for i in range(lines))
    return (b"Subject: drain %s\r\nMessage-ID: <%s@drain.test>\r\n\r\n" % (tag.encode(),
                                                                            tag.encode()) +
            b".starts with a dot\r\n" + body)


def greet(port):
    c = Client(port)
    code, lines = c.reply()
    assert code == 220, lines
    assert c.cmd("EHLO drain.test")[0] == 250
    return c


def last_line(c):
    code, lines = c.reply()
    return code, lines[-1]


def check_spool(test, srv, acked):
    """Every (qid, message) acknowledged is stored as sent."""
    records = srv.spool_records()
    for qid, msg in acked:
        test.assertIn(qid, records, "acknowledged message %s is not in the spool" % qid)
        fields, stored = records[qid]
        test.assertEqual(fields["queue-id"], [qid])
        test.assertTrue(stored.endswith(msg), "message %s not stored as sent" % qid)
        test.assertTrue(stored.startswith(b"Received: from "))


def refused_or_closed(port, within=1.0):
    """A new connection: (True, how) when it is refused or closed without a
    greeting within `within` seconds; (False, what happened) otherwise."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=within)
    except ConnectionRefusedError:
        return True, "refused"
    except socket.timeout:
        return False, "connect timed out"
    s.settimeout(within)
    try:
        data = s.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return True, "reset"
    except socket.timeout:
        return False, "connected, and nothing within %.1fs (left waiting in the backlog)" % within
    finally:
        s.close()
    if not data:
        return True, "closed"
    return False, "got %r" % data[:80]


class Loader:
    """Threads running whole transactions until they are told to stop or the
    server turns them away; every 250 is recorded with the message sent."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []
        self.unexpected = []
        self.turned_away = 0   # threads that met the drain (421, refused, closed)
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True)
                        for t in range(LOAD_THREADS)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        assert not any(t.is_alive() for t in self.threads), "load threads hung"

    def run(self, t):
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        n = 0
        while not self.stop.is_set() and n < LOAD_MAX_MESSAGES and time.monotonic() < deadline:
            try:
                c = Client(self.port, timeout=10)
            except OSError:
                return self.away()   # refused: the server is draining or gone
            try:
                code, _ = c.reply()
                if code != 220:
                    return self.note("greeting %d" % code)
                c.send("EHLO load%d.test\r\n" % t)
                code, _ = c.reply()
                if code == 421:
                    return self.away()
                if code != 250:
                    return self.note("EHLO %d" % code)
                for _ in range(3):
                    tag = "load-t%d-n%d" % (t, n)
                    n += 1
                    msg = message(tag, lines=20 + (n * 7) % 300)
                    c.send(b"MAIL FROM:<l@example.net>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n")
                    codes = [c.reply()[0] for _ in range(3)]
                    if codes[0] == 421:
                        return self.away()   # told the server is shutting down
                    if codes != [250, 250, 354]:
                        self.note("%s: envelope %s" % (tag, codes))
                        return
                    c.send(dot_stuff(msg) + b".\r\n")
                    code, text = last_line(c)
                    if code != 250:
                        self.note("%s: end of data %d %s" % (tag, code, text))
                        return
                    with self.lock:
                        self.acked.append((QID_RE.match(text).group(1), msg))
                c.send("QUIT\r\n")
                c.reply()
            except (OSError, ConnectionError):
                return self.away()
            finally:
                c.close()
        self.note("thread %d stopped by its bounds before the drain" % t)

    def away(self):
        with self.lock:
            self.turned_away += 1

    def note(self, what):
        with self.lock:
            self.unexpected.append(what)


class Drain(unittest.TestCase):
    def test_sigterm_under_load(self):
        srv = Server(extra_toml="drain_timeout_ms = %d\n" % DRAIN_MS, shards=2).start()
        try:
            self.run_drain(srv)
        finally:
            srv.__exit__()

    def run_drain(self, srv):
        port = srv.port
        idle = [greet(port) for _ in range(6)]
        acked = []

        # Transactions caught at every stage.
        at_mail = greet(port)
        self.assertEqual(at_mail.cmd("MAIL FROM:<m@example.net>")[0], 250)
        at_rcpt = greet(port)
        at_rcpt.send("MAIL FROM:<r@example.net>\r\nRCPT TO:<x@example.org>\r\n")
        self.assertEqual(at_rcpt.replies(2), [250, 250])
        in_data = greet(port)
        in_data.send("MAIL FROM:<d@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n")
        self.assertEqual(in_data.replies(3), [250, 250, 354])
        data_msg = message("in-data", lines=2000)
        stuffed = dot_stuff(data_msg) + b".\r\n"
        half = len(stuffed) // 2
        in_data.send(stuffed[:half])
        in_bdat = greet(port)
        in_bdat.send("MAIL FROM:<b@example.net>\r\nRCPT TO:<x@example.org>\r\n")
        self.assertEqual(in_bdat.replies(2), [250, 250])
        bdat_msg = message("in-bdat", lines=500)
        first, rest = bdat_msg[:3000], bdat_msg[3000:]
        in_bdat.send(b"BDAT %d\r\n" % len(first) + first)
        self.assertEqual(in_bdat.reply()[0], 250)

        loader = Loader(port)
        loader.start()
        time.sleep(0.7)
        self.assertIsNone(srv.proc.poll(), srv.log())
        t_term = time.monotonic()
        srv.send_signal(signal.SIGTERM)

        # Idle sessions: 421 4.3.2, then closed.
        for c in idle:
            code, lines = c.reply()
            self.assertEqual(code, 421, lines)
            self.assertIn("4.3.2", lines[-1])
            self.assertTrue(c.closed(timeout=2), "idle session not closed after its 421")
        t_idle = time.monotonic() - t_term

        # New connections are refused (or closed unanswered) while the drain
        # is still under way: the transactions above are all still open.
        new_conn = [refused_or_closed(port, within=0.5) for _ in range(2)]
        self.assertIsNone(srv.proc.poll(), "exited with transactions still open")

        # The transactions in flight go on to the end and are accepted.
        self.assertEqual(at_mail.cmd("RCPT TO:<y@example.org>")[0], 250)
        self.assertEqual(at_mail.cmd("DATA")[0], 354)
        mail_msg = message("at-mail")
        at_mail.send(dot_stuff(mail_msg) + b".\r\n")
        for c, msg in ((at_mail, mail_msg),):
            code, text = last_line(c)
            self.assertEqual(code, 250, text)
            acked.append((QID_RE.match(text).group(1), msg))
        self.assertEqual(at_rcpt.cmd("DATA")[0], 354)
        rcpt_msg = message("at-rcpt")
        at_rcpt.send(dot_stuff(rcpt_msg) + b".\r\n")
        code, text = last_line(at_rcpt)
        self.assertEqual(code, 250, text)
        acked.append((QID_RE.match(text).group(1), rcpt_msg))
        in_data.send(stuffed[half:])
        code, text = last_line(in_data)
        self.assertEqual(code, 250, text)
        acked.append((QID_RE.match(text).group(1), data_msg))
        in_bdat.send(b"BDAT %d LAST\r\n" % len(rest) + rest)
        code, text = last_line(in_bdat)
        self.assertEqual(code, 250, text)
        acked.append((QID_RE.match(text).group(1), bdat_msg))

        # After its transaction a session gets no new one.
        code, lines = at_mail.cmd("MAIL FROM:<again@example.net>")
        self.assertEqual(code, 421, lines)
        self.assertIn("4.3.2", lines[-1])
        self.assertTrue(at_mail.closed(timeout=2))
        for c in (at_rcpt, in_data, in_bdat):
            code, _ = c.cmd("QUIT")
            self.assertIn(code, (221, 421))
            self.assertTrue(c.closed(timeout=2))

        loader.join()
        try:
            rc = srv.proc.wait(DRAIN_MS / 1000 + EXIT_SLACK + 2)
        except Exception:
            rc = None
        took = time.monotonic() - t_term
        print("\ndrain: idle sessions told 421 in %.2fs; new connections %s; exit %s after %.2fs; "
              "%d load + %d in-flight messages acknowledged; %d load threads turned away" %
              (t_idle, [how for _, how in new_conn], rc, took, len(loader.acked), len(acked),
               loader.turned_away))
        self.assertEqual(rc, 0, "exit status\n%s" % srv.log())
        self.assertLess(took, DRAIN_MS / 1000 + EXIT_SLACK, "the drain overran its timeout")
        self.assertEqual(loader.unexpected, [])
        self.assertGreater(len(loader.acked), 0)
        self.assertGreater(loader.turned_away, 0, "the load did not run into the drain")
        check_spool(self, srv, acked + loader.acked)
        self.assertEqual(list(srv.spool_files()), [n for n in srv.spool_files()
                                                   if n.endswith(".msg")], "stray files")
        for ok, how in new_conn:
            self.assertTrue(ok, "a new connection after SIGTERM was not refused: " + how)

    def test_listeners_refuse_at_once_on_every_shard(self):
        # One session holds its transaction open through the drain; the other
        # shard has nothing to do and finishes early. Every listening socket
        # must be closed within moments of SIGTERM, so the kernel refuses new
        # clients instead of completing their handshakes into a backlog nobody
        # reads (a shard that stopped with its accept still in the ring left
        # its socket listening).
        srv = Server(extra_toml="drain_timeout_ms = 10000\n", shards=4).start()
        try:
            held = greet(srv.port)
            self.assertEqual(held.cmd("MAIL FROM:<h@example.net>")[0], 250)
            srv.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            results = []
            for _ in range(20):
                try:
                    socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
                    results.append("connected")
                except ConnectionRefusedError:
                    results.append("refused")
                except OSError as e:
                    results.append(repr(e))
            self.assertEqual(results, ["refused"] * 20)
            self.assertIsNone(srv.proc.poll(), "exited with a transaction still open")
            self.assertEqual(held.cmd("RSET")[0], 250)
            self.assertEqual(held.reply()[0], 421)  # idle now: told at once
            self.assertEqual(srv.stop(timeout=5), 0)
        finally:
            srv.__exit__()

    def test_session_idle_after_its_transaction_is_closed(self):
        # A transaction finished during the drain leaves the session idle: it
        # is told 421 4.3.2 at once, as idle sessions are, and not held until
        # the deadline (a caching MTA would sit there silently).
        srv = Server(extra_toml="drain_timeout_ms = %d\n" % DRAIN_MS, shards=1).start()
        try:
            c = greet(srv.port)
            c.send("MAIL FROM:<m@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n")
            self.assertEqual(c.replies(3), [250, 250, 354])
            t_term = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            msg = message("then-idle")
            c.send(dot_stuff(msg) + b".\r\n")
            code, text = last_line(c)
            self.assertEqual(code, 250, text)
            c.sock.settimeout(DRAIN_MS / 1000 + EXIT_SLACK + 1)
            try:
                code, lines = c.reply()
                got = "%d %s" % (code, lines[-1])
            except (OSError, ConnectionError) as e:
                code, got = None, "no reply (%s)" % type(e).__name__
            told = time.monotonic() - t_term
            rc = srv.stop(timeout=DRAIN_MS / 1000 + EXIT_SLACK + 2)
            took = time.monotonic() - t_term
            print("\nidle after its transaction: %r after %.2fs; exit %s after %.2fs" %
                  (got, told, rc, took))
            self.assertEqual(rc, 0)
            check_spool(self, srv, [(QID_RE.match(text).group(1), msg)])
            self.assertEqual(code, 421, got)
            self.assertIn("4.3.2", got)
            self.assertLess(told, 1.5, "the idle session was held until the drain deadline")
            self.assertLess(took, 2.0, "the server waited for the deadline with nothing in flight")
        finally:
            srv.__exit__()

    def test_client_stuck_in_data_is_cut_at_the_deadline(self):
        srv = Server(extra_toml="drain_timeout_ms = %d\n" % DRAIN_MS, shards=2).start()
        stop = threading.Event()
        try:
            silent = greet(srv.port)
            silent.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n")
            self.assertEqual(silent.replies(3), [250, 250, 354])
            silent.send(b"Subject: stuck\r\n\r\nsilent-partial-body\r\n")
            trickle = greet(srv.port)
            trickle.send("MAIL FROM:<t@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n")
            self.assertEqual(trickle.replies(3), [250, 250, 354])
            trickle.send(b"Subject: trickle\r\n\r\n")
            cut = {}

            def trickler():
                # Keeps the DATA phase busy (one line every 100 ms) so no
                # data timeout ends it; bounded in count and time.
                t0 = time.monotonic()
                for i in range(200):
                    if stop.is_set() or time.monotonic() - t0 > 15:
                        return
                    try:
                        trickle.send(b"trickle-partial-body %d\r\n" % i)
                    except OSError:
                        cut["trickle"] = time.monotonic()
                        return
                    time.sleep(0.1)

            th = threading.Thread(target=trickler, daemon=True)
            th.start()
            time.sleep(0.3)
            t_term = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            closed = silent.closed(timeout=DRAIN_MS / 1000 + EXIT_SLACK + 1)
            silent_cut = time.monotonic() - t_term
            try:
                rc = srv.proc.wait(DRAIN_MS / 1000 + EXIT_SLACK + 2)
            except Exception:
                rc = None
            took = time.monotonic() - t_term
            stop.set()
            th.join(5)
            trickle_closed = trickle.closed(timeout=1)
            print("\nstuck in DATA: silent client cut after %.2fs, exit %s after %.2fs" %
                  (silent_cut, rc, took))
            self.assertTrue(closed, "the silent DATA client was not cut off")
            self.assertTrue(trickle_closed, "the trickling DATA client was not cut off")
            self.assertEqual(rc, 0, srv.log())
            self.assertGreaterEqual(silent_cut, DRAIN_MS / 1000 - 0.3,
                                    "cut before the drain deadline")
            self.assertLess(took, DRAIN_MS / 1000 + EXIT_SLACK, "the drain overran its timeout")
            for path in srv.spool_files().values():
                with open(path, "rb") as f:
                    self.assertNotIn(b"partial-body", f.read())
        finally:
            stop.set()
            srv.__exit__()


if __name__ == "__main__":
    main()
