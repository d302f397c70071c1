"""Milters: ringmx's milter client against a real libmilter filter (Debian's
pymilter, python3-milter, running tests/integration/milters/test_filter.py):
a milter's answer at each stage is the answer to that stage, the macros
arrive, every end-of-message change lands in the spool (headers, sender,
recipients, body, quarantine), a slow milter is waited for while it sends
progress, and one that times out, hangs, or is not there gets its
default_action without stopping other sessions. Exits 77 only when pymilter
is missing."""

import re
import socket
import ssl
import sys
import threading
import time
import unittest

from harness import (Client, SKIP, Server, http_get, main, make_cert, metric, queue_list,
                     transaction, wait_for)
from milter_peers import PyFilter



def milter_toml(address, name="f", extra=""):
    return '\n[[milter]]\nname = "%s"\naddress = "%s"\n%s\n' % (name, address, extra)


MESSAGE = ("From: a@example.test\r\nTo: b@example.org\r\nSubject: milter test\r\n"
           "X-Change-Me: original\r\nX-Delete-Me: gone\r\n%s\r\nHello.\r\nSecond line.\r\n")


def message(directives=""):
    return (MESSAGE % ("X-Test-Eom: %s\r\n" % directives if directives else "")).encode()


def open_session(srv, helo="client.example.test"):
    c = Client(srv.port)
    code, lines = c.reply()
    assert code == 220, lines
    code, lines = c.cmd("EHLO " + helo)
    return c, code, lines


# A route to a port that refuses connections keeps delivered mail in the
# queue (its envelope is what the test reads back) without sending it anywhere.
ROUTE = """
[[route]]
domains = ["example.org", "example.test"]
destination = "smtp://127.0.0.1:%d"
"""


class MilterChain(unittest.TestCase):
    """One filter that does whatever each message asks (see test_filter.py)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Server("", shards=1).dir  # a temp dir removed at exit
        cls.filter = PyFilter().start()
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        cls.dead = dead
        crt, key = make_cert(cls.tmp)
        cls.srv = Server(ROUTE % dead.getsockname()[1] +
                         '\n[tls]\ncert = "%s"\nkey = "%s"\n' % (crt, key) +
                         milter_toml(cls.filter.address,
                                     extra="command_timeout_ms = 3000\neom_timeout_ms = 4000"),
                         shards=1, listener_toml='xclient_hosts = ["127.0.0.1"]\n').start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        cls.filter.stop()
        cls.dead.close()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def send(self, sender, rcpts, msg, helo="client.example.test"):
        c, code, lines = open_session(self.srv, helo)
        self.assertEqual(code, 250, lines)
        code, text = transaction(c, sender, rcpts, msg)
        c.cmd("QUIT")
        c.close()
        return code, text

    def stored(self, text):
        qid = text.split()[-1]
        fields, data = wait_for(lambda: self.srv.spool_records().get(qid), what="record " + qid)
        return qid, fields, data.decode()

    def test_headers_changed_as_asked_and_macros_sent(self):
        code, text = self.send("a@example.test", ["b@example.org"],
                               message("addheader, insheader, chgheader, delheader"))
        self.assertEqual(code, 250, text)
        qid, fields, data = self.stored(text)
        head = data.split("\r\n\r\n", 1)[0]
        names = [line.split(":")[0] for line in head.split("\r\n") if line[:1] not in " \t"]
        # Index 0: above our own fields (the trace header, then Received).
        self.assertEqual(names[:3], ["X-Test-Inserted", "Authentication-Results", "Received"],
                         head)
        self.assertEqual(names[-1], "X-Test-Added", head)
        self.assertIn("X-Change-Me: changed by test_filter\r\n", head)
        self.assertNotIn("X-Delete-Me", head)
        self.assertTrue(data.endswith("\r\n\r\nHello.\r\nSecond line.\r\n"), data)
        events = [e for e in self.filter.events() if e.get("macros", {}).get("i") == qid]
        mail = [e for e in events if e["event"] == "envfrom"][0]
        self.assertEqual(mail["macros"]["{mail_addr}"], "a@example.test")
        self.assertEqual(mail["macros"]["j"], "mx.test")
        self.assertEqual(mail["macros"]["{client_addr}"], "127.0.0.1")
        self.assertEqual(mail["macros"]["{daemon_name}"], "ringmx")
        rcpt = [e for e in events if e["event"] == "envrcpt"][0]
        self.assertEqual(rcpt["macros"]["{rcpt_addr}"], "b@example.org")
        # The milter saw our own fields first, then the message's.
        headers = [e["args"]["name"] for e in events if e["event"] == "header"]
        self.assertEqual(headers[:3], ["Authentication-Results", "Received", "From"])

    def test_envelope_and_body_changes(self):
        code, text = self.send("a@example.test", ["b@example.org", "delete-me@example.org"],
                               message("chgfrom, addrcpt, addrcpt_par, delrcpt, replacebody"))
        self.assertEqual(code, 250, text)
        qid, fields, data = self.stored(text)
        self.assertEqual(fields["mail-from"][0].split()[0], "<new-sender@example.test>", fields)
        rcpts = " ".join(fields["rcpt-to"])
        self.assertIn("<b@example.org>", rcpts)
        self.assertIn("<added@example.test>", rcpts)
        self.assertIn("<added-par@example.test>", rcpts)
        self.assertIn("NOTIFY=NEVER", rcpts)
        self.assertNotIn("delete-me", rcpts)
        self.assertTrue(data.endswith("\r\n\r\nBody replaced by test_filter.\r\nSecond line.\r\n"),
                        data)

    def test_answers_at_each_stage(self):
        c, code, lines = open_session(self.srv, "reject.helo.test")
        self.assertEqual(code, 550, lines)
        c.close()
        c, code, lines = open_session(self.srv)
        self.assertEqual(c.cmd("MAIL FROM:<reject-mail@example.test>")[0], 550)
        self.assertEqual(c.cmd("MAIL FROM:<tempfail-mail@example.test>")[0], 451)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<reject-rcpt@example.org>")[0], 550)
        self.assertEqual(c.cmd("RCPT TO:<tempfail-rcpt@example.org>")[0], 451)
        code, lines = c.cmd("RCPT TO:<reply-rcpt@example.org>")
        self.assertEqual(code, 550)
        self.assertIn("5.7.9", lines[-1])
        self.assertIn("custom text", lines[-1])
        self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<reject-data@example.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 550)
        c.cmd("QUIT")
        c.close()
        for directive, want in (("reject", 550), ("tempfail", 451), ("reply", 550)):
            code, text = self.send("a@example.test", ["b@example.org"], message(directive))
            self.assertEqual(code, want, text)
        # Discard: the client is told it was queued; nothing is stored.
        before = metric(http_get(self.srv.admin_port, "/metrics")[1], "ringmx_discarded_total")
        code, text = self.send("a@example.test", ["b@example.org"], message("discard"))
        self.assertEqual(code, 250, text)
        qid = text.split()[-1]
        after = metric(http_get(self.srv.admin_port, "/metrics")[1], "ringmx_discarded_total")
        self.assertEqual(after, before + 1)
        wait_for(lambda: re.search(r"event=discard .*qid=%s" % qid, self.srv.log()),
                 what="the discard log line")
        self.assertNotIn(qid, self.srv.spool_records())
        metrics = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertGreaterEqual(metric(metrics, "ringmx_milter_calls_total", milter="f",
                                       stage="rcpt", result="reject"), 2)
        self.assertGreaterEqual(metric(metrics, "ringmx_rejects_total", stage="rcpt",
                                       check="milter"), 2)

    def test_unknown_commands_reach_the_milter(self):
        c, code, lines = open_session(self.srv)
        self.assertEqual(c.cmd("XYZZY plugh")[0], 500)  # the milter continues: our refusal
        code, lines = c.cmd("REPLY now")  # the milter's own refusal replaces ours
        self.assertEqual(code, 550, lines)
        self.assertIn("5.7.9 custom text", lines[-1])
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.close()
        seen = wait_for(lambda: [e["args"]["command"] for e in self.filter.events()
                                 if e["event"] == "unknown"][-2:] or None, what="UNKNOWN events")
        self.assertEqual(seen, ["XYZZY plugh", "REPLY now"])

    def test_tls_and_login_macros(self):
        c = Client(self.srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO tls.client.test")[0], 250)
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.sock = ctx.wrap_socket(c.sock)
        self.assertEqual(c.cmd("EHLO tls.client.test")[0], 250)
        # XCLIENT LOGIN: the front end authenticated the user ({auth_authen}).
        self.assertEqual(c.cmd("XCLIENT LOGIN=carol")[0], 220)
        self.assertEqual(c.cmd("EHLO tls.client.test")[0], 250)
        code, text = transaction(c, "tls-sender@example.test", ["b@example.org"],
                                 message())
        self.assertEqual(code, 250, text)
        c.close()
        qid = text.split()[-1]
        events = wait_for(lambda: [e for e in self.filter.events()
                                   if e.get("macros", {}).get("i") == qid and
                                   e["event"] == "envfrom"] or None, what="MAIL event")
        macros = events[0]["macros"]
        self.assertEqual(macros["{tls_version}"], "TLSv1.3")
        self.assertIn("{cipher}", macros)
        self.assertIn(macros["{cipher_bits}"], ("128", "256"))
        self.assertEqual(macros["{auth_authen}"], "carol")
        # No {auth_authen} without a login (an empty one reads as authenticated to rspamd).
        code, text = self.send("a@example.test", ["b@example.org"], message())
        qid = text.split()[-1]
        mail = [e for e in self.filter.events()
                if e.get("macros", {}).get("i") == qid and e["event"] == "envfrom"][0]
        self.assertNotIn("{auth_authen}", mail["macros"])
        self.assertNotIn("{tls_version}", mail["macros"])

    def test_skip_ends_the_body_and_rset_aborts(self):
        big = message().replace(b"Hello.", (b"y" * 70 + b"\r\n") * 3000)  # 216 KB
        code, text = self.send("skip-body@example.test", ["b@example.org"], big)
        self.assertEqual(code, 250, text)
        qid, fields, data = self.stored(text)
        self.assertIn("y" * 70, data)  # all of it stored, though the milter skipped
        events = [e for e in self.filter.events() if e.get("macros", {}).get("i") == qid]
        self.assertEqual(len([e for e in events if e["event"] == "body"]), 1)
        self.assertEqual(len([e for e in events if e["event"] == "eom"]), 1)
        c, code, lines = open_session(self.srv)
        self.assertEqual(c.cmd("MAIL FROM:<rset-me@example.test>")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.test>")[0], 250)
        c.cmd("QUIT")
        c.close()
        wait_for(lambda: any(e["event"] == "abort" and
                             e.get("macros", {}).get("{mail_addr}") == "rset-me@example.test"
                             for e in self.filter.events()), what="ABORT after RSET")

    def test_replies_to_pipelined_commands_leave_together(self):
        # MAIL waits 1 s at the milter, RCPT 1 s more: the 250 for MAIL is held
        # until the RCPT's is ready (the client has both commands in flight).
        c, code, lines = open_session(self.srv)
        t0 = time.monotonic()
        c.send("MAIL FROM:<slow1-mail@example.test>\r\nRCPT TO:<slow1-rcpt@example.org>\r\n")
        c.sock.settimeout(10)
        first = c.sock.recv(65536)
        arrived = time.monotonic() - t0
        self.assertGreater(arrived, 1.8, first)
        self.assertEqual(first.count(b"\r\n"), 2, first)  # both replies in the first read
        self.assertTrue(first.startswith(b"250 ") and b"\r\n250 " in first, first)
        c.close()

    def test_end_of_message_timeout(self):
        t0 = time.monotonic()
        code, text = self.send("a@example.test", ["b@example.org"], message("slow:8"))
        self.assertEqual(code, 451, text)  # eom_timeout_ms (4 s), then the default
        self.assertLess(time.monotonic() - t0, 7)

    def test_refusal_in_the_middle_of_the_message(self):
        # The milter refuses at the end of the headers, before the body and
        # EOB it was already sent (pipelined) are answered: the refusal
        # stands; the conversation cannot go on, so the rest of this SMTP
        # session gets the default action, and the next session is served.
        c, code, lines = open_session(self.srv)
        self.assertEqual(c.cmd("MAIL FROM:<reject-eoh@example.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(message() + b".\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 550, lines)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.test>")[0], 451)
        c.close()
        code, text = self.send("a@example.test", ["b@example.org"], message())
        self.assertEqual(code, 250, text)

    def test_quarantine_holds_the_message(self):
        code, text = self.send("a@example.test", ["b@example.org"], message("quarantine"))
        self.assertEqual(code, 250, text)
        qid = text.split()[-1]
        q = wait_for(lambda: queue_list(self.srv).get(qid), what="the message queued")
        self.assertTrue(q["held"], q)
        wait_for(lambda: re.search(r"event=quarantine .*qid=%s .*held by test_filter" % qid,
                                   self.srv.log()), what="the quarantine log line")

    def test_progress_keeps_a_slow_milter_in_time(self):
        # 6 s of work, progress every second: longer than command_timeout_ms
        # (3 s) in total, never silent for as long.
        code, text = self.send("a@example.test", ["b@example.org"], message("progress:6:1"))
        self.assertEqual(code, 250, text)

    def test_slow_milter_times_out_to_the_default_action(self):
        c, code, lines = open_session(self.srv)
        t0 = time.monotonic()
        # Meanwhile another session on the same shard is served at once.
        other = {}

        def other_session():
            time.sleep(0.5)
            t = time.monotonic()
            other["reply"] = self.send("a@example.test", ["b@example.org"], message())
            other["took"] = time.monotonic() - t

        th = threading.Thread(target=other_session)
        th.start()
        # MAIL waits command_timeout_ms (3 s), then gets the default (tempfail).
        code, lines = c.cmd("MAIL FROM:<slow5-mail@example.test>")
        waited = time.monotonic() - t0
        th.join(20)
        self.assertEqual(other["reply"][0], 250, other)
        self.assertLess(other["took"], 2.0)
        self.assertEqual(code, 451, lines)
        self.assertGreater(waited, 2.5)
        self.assertLess(waited, 4.5)
        # The milter is gone for this session: each stage gets the default.
        self.assertEqual(c.cmd("MAIL FROM:<a@example.test>")[0], 451)
        c.cmd("QUIT")
        c.close()
        metrics = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertGreaterEqual(metric(metrics, "ringmx_milter_timeouts_total", milter="f"), 1)
        # The next session gets a new connection to the milter and is served.
        code, text = self.send("a@example.test", ["b@example.org"], message())
        self.assertEqual(code, 250, text)


class Reuse(unittest.TestCase):
    """reuse_connections: a healthy milter connection outlives its SMTP
    session (SMFIC_QUIT_NC) and serves the next one, within
    max_idle_connections and idle_timeout_ms."""

    def test_sessions_share_one_connection_within_the_bounds(self):
        with PyFilter() as f:
            srv = Server(milter_toml(f.address, extra="reuse_connections = true\n"
                                     "max_idle_connections = 1\nidle_timeout_ms = 1500"),
                         shards=1).start()
            try:
                def gauge():
                    return metric(http_get(srv.admin_port, "/metrics")[1],
                                  "ringmx_milter_connections", milter="f")
                for _ in range(3):
                    c, code, lines = open_session(srv)
                    code, text = transaction(c, "a@example.test", ["b@example.org"], message())
                    self.assertEqual(code, 250, text)
                    c.cmd("QUIT")
                    c.close()
                    wait_for(lambda: gauge() == 1, what="one connection kept")
                self.assertEqual(len(f.events(event="negotiate")), 1)  # one connection
                self.assertEqual(len(f.events(event="connect")), 3)  # three SMTP sessions
                metrics = http_get(srv.admin_port, "/metrics")[1]
                self.assertEqual(metric(metrics, "ringmx_milter_connections_reused_total",
                                        milter="f"), 2)
                # Two sessions at once: two connections; only one is kept after.
                a, b = open_session(srv)[0], open_session(srv)[0]
                wait_for(lambda: gauge() == 2, what="two connections")
                a.cmd("QUIT")
                b.cmd("QUIT")
                a.close()
                b.close()
                wait_for(lambda: gauge() == 1, what="max_idle_connections = 1")
                # Idle past idle_timeout_ms: closed.
                wait_for(lambda: gauge() == 0, timeout=10, what="idle_timeout_ms")
                # A session after that opens a new connection and is served.
                c, code, lines = open_session(srv)
                code, text = transaction(c, "a@example.test", ["b@example.org"], message())
                self.assertEqual(code, 250, text)
                c.close()
                self.assertEqual(len(f.events(event="negotiate")), 3)
            finally:
                self.assertEqual(srv.stop(), 0, srv.log())


class BodyMemory(unittest.TestCase):
    def test_body_past_the_memory_budget_is_refused_not_spilled(self):
        with_filter = PyFilter().start()
        srv = Server("\n[limits]\nbody_memory_per_shard = 4096\n" +
                     milter_toml(with_filter.address), shards=1).start()
        try:
            c, code, lines = open_session(srv)
            big = message().replace(b"Hello.", (b"x" * 70 + b"\r\n") * 300)
            code, text = transaction(c, "a@example.test", ["b@example.org"], big)
            self.assertEqual(code, 452, text)
            self.assertIn("4.3.1", text)
            code, text = transaction(c, "a@example.test", ["b@example.org"], message())
            self.assertEqual(code, 250, text)
            c.close()
            metrics = http_get(srv.admin_port, "/metrics")[1]
            self.assertEqual(metric(metrics, "ringmx_body_spills_total"), 0)
            self.assertEqual(metric(metrics, "ringmx_body_memory_refusals_total"), 1)
        finally:
            self.assertEqual(srv.stop(), 0, srv.log())
            with_filter.stop()


class MilterDownOrHanging(unittest.TestCase):
    """default_action for a milter that is not there or never answers; other
    sessions keep flowing meanwhile."""

    def test_unreachable_milter_tempfails_or_accepts(self):
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, never listening: refused
        addr = "inet:127.0.0.1:%d" % dead.getsockname()[1]
        gone = milter_toml("unix:/nonexistent/ringmx-test.sock", name="gone",
                           extra='default_action = "accept"')
        srv = Server(milter_toml(addr) + gone, shards=1).start()
        try:
            c = Client(srv.port)
            code, lines = c.reply()
            # connect stage: the refused milter's default is tempfail: 421 and the close
            self.assertEqual(code, 421, lines)
            c.close()
            wait_for(lambda: "event=milter_failed" in srv.log(), what="the failure logged")
            metrics = http_get(srv.admin_port, "/metrics")[1]
            self.assertGreaterEqual(metric(metrics, "ringmx_milter_failures_total", milter="f"), 1)
            self.assertGreaterEqual(metric(metrics, "ringmx_milter_failures_total",
                                           milter="gone"), 1)
        finally:
            rc = srv.stop()
            dead.close()
        self.assertEqual(rc, 0, srv.log())
        srv = Server(milter_toml(addr, extra='default_action = "accept"'), shards=1).start()
        try:
            c, code, lines = open_session(srv)
            self.assertEqual(code, 250, lines)
            code, text = transaction(c, "a@example.test", ["b@example.org"], message())
            self.assertEqual(code, 250, text)
            c.close()
        finally:
            self.assertEqual(srv.stop(), 0, srv.log())

    def test_hanging_milter_times_out_and_others_flow(self):
        f = PyFilter(args=("--hang-connect", "30")).start()
        srv = Server(milter_toml(f.address, extra="connect_timeout_ms = 1000\n"
                                 "command_timeout_ms = 2000"), shards=1).start()
        try:
            # Three clients at once on one shard: each waits for the hanging
            # milter on its own; none waits for another.
            t0 = time.monotonic()
            clients = [Client(srv.port, timeout=20) for _ in range(3)]
            codes = [c.reply()[0] for c in clients]
            self.assertEqual(codes, [421, 421, 421])
            self.assertLess(time.monotonic() - t0, 8)
            for c in clients:
                self.assertTrue(c.closed())
                c.close()
            metrics = http_get(srv.admin_port, "/metrics")[1]
            self.assertGreaterEqual(metric(metrics, "ringmx_milter_timeouts_total", milter="f"), 3)
        finally:
            self.assertEqual(srv.stop(), 0, srv.log())
            f.stop(timeout=2)  # libmilter waits for the hanging callback: killed


if __name__ == "__main__":
    try:
        PyFilter()
    except unittest.SkipTest as e:
        print("SKIP: %s" % e, file=sys.stderr)
        sys.exit(SKIP)
    main()
