"""Delivery to a real Dovecot LMTP (a private instance on 127.0.0.1, the one
test_bench_lmtp runs): mail accepted by ringmx for a routed domain arrives in
the users' Maildirs byte for byte (the stored Received header and message);
one LMTP reply per recipient decides each one (an unknown user among valid
ones fails alone, a mailbox over quota fails after the data while the others
are delivered); a foreign domain is refused at RCPT; a destination that is
down holds the mail, which arrives once it is up; a message whose body went
to disk as it arrived (past the body memory) is read back from the spool and
delivered; the delivery metrics and log lines say what happened. Exits 77
only when Dovecot cannot be installed."""

import contextlib
import os
import re
import sys
import time
import unittest

from harness import wait_for as _wait_for, Client, Server, dot_stuff, http_get, main, metric, queue_id, transaction
from test_bench_lmtp import DOMAIN, FULL, Dovecot, install_dovecot

WAIT = 20  # seconds for a delivery to show up


def message(tag, body_lines=3, line=b"line"):
    head = ("From: sender@example.net\r\nTo: pipe1@%s\r\nSubject: delivery %s\r\n"
            "Message-ID: <%s@delivery.test>\r\n\r\n" % (DOMAIN, tag, tag)).encode()
    body = b"".join(b"%s %d\r\n" % (line, i) for i in range(body_lines))
    return head + b".leading dot\r\n" + body


@contextlib.contextmanager
def running(*args, **kwargs):
    """A started Server that must stop cleanly (SIGTERM, exit 0, no sanitizer
    report) when the block ends without an error."""
    srv = Server(*args, **kwargs).start()
    try:
        yield srv
    except BaseException:
        srv.kill9()
        raise
    code = srv.stop()
    assert code == 0, "ringmx exited %s\n%s" % (code, srv.log()[-4000:])



def dot_stuff_message(data):
    return dot_stuff(data)


def crlf(data):
    return re.sub(rb"\r?\n", b"\r\n", data)


def stored_message(srv, qid):
    """The Received header and message ringmx stored for `qid`."""
    records = srv.spool_records()
    assert qid in records, (qid, list(records))
    return records[qid][1]


def metrics(srv):
    status, body = http_get(srv.admin_port, "/metrics")
    assert status == 200
    return body.decode()


def send(port, rcpts, data, sender="sender@example.net"):
    c = Client(port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    code, text = transaction(c, sender, rcpts, data)
    c.cmd("QUIT")
    c.close()
    assert code == 250, text
    return queue_id(text)


def route_toml(port, extra=""):
    return ('\n[delivery]\nretry_min_ms = 300\nretry_max_ms = 600\nidle_timeout_ms = 2000\n%s\n'
            '[[route]]\nname = "store"\ndomains = ["%s"]\ndestination = "lmtp://127.0.0.1:%d"\n'
            % (extra, DOMAIN, port))


def wait_for(pred, timeout=WAIT, what="condition"):
    return _wait_for(pred, timeout, what)


class DeliveryToDovecot(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        problem = install_dovecot()
        if problem:
            print("SKIP: %s" % problem, file=sys.stderr)
            sys.exit(77)
        cls.dovecot = Dovecot().start()

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()
        cls.dovecot.cleanup()

    def mailbox(self, local):
        return self.dovecot.mailbox(local)

    def arrived(self, local, tag):
        """The delivered file of `local` holding Message-ID <tag@...>, or None."""
        for data in self.mailbox(local).values():
            if b"<%s@delivery.test>" % tag.encode() in data:
                return data
        return None

    def test_byte_exact_and_per_recipient_replies(self):
        with running(route_toml(self.dovecot.port)) as srv:
            data = message("exact", 300)  # over full2's 1 KiB quota
            qid = send(srv.port, ["pipe1@%s" % DOMAIN, "pipe2@%s" % DOMAIN,
                                  "ghost@%s" % DOMAIN, "%s@%s" % (FULL, DOMAIN)], data)
            got1 = wait_for(lambda: self.arrived("pipe1", "exact"), what="pipe1's copy")
            got2 = wait_for(lambda: self.arrived("pipe2", "exact"), what="pipe2's copy")
            stored = stored_message(srv, qid)
            # Dovecot puts its own Return-Path and Delivered-To (and maybe a
            # Received) on top: what follows them is what ringmx stored.
            for got in (got1, got2):
                at = crlf(got).find(stored[:40])
                self.assertGreaterEqual(at, 0, got[:300])
                self.assertEqual(crlf(got)[at:], stored)
            self.assertIn(b"Return-Path: <sender@example.net>", got1)
            # ghost: unknown at RCPT (5xx); full2: over quota after the data.
            wait_for(lambda: "rcpt=ghost@" in srv.log() and "rcpt=%s@" % FULL in srv.log(),
                     what="the failures logged")
            log = srv.log()
            self.assertRegex(log, r"event=delivery qid=%s rcpt=ghost@\S+ route=store "
                                  r"relay=lmtp://127.0.0.1:%d result=failed code=550"
                             % (qid, self.dovecot.port))
            self.assertRegex(log, r"event=delivery qid=%s rcpt=%s@\S+ .*result=(failed|deferred)"
                             % (qid, FULL))
            self.assertEqual(self.arrived("ghost", "exact"), None)
            m = metrics(srv)
            self.assertEqual(metric(m, "ringmx_delivery_total", route="store",
                                    result="delivered"), 2)
            self.assertGreaterEqual(metric(m, "ringmx_delivery_total", route="store",
                                           result="failed"), 1)

    def test_permanent_failure_bounces_to_the_sender(self):
        import email
        import email.policy
        with running(route_toml(self.dovecot.port)) as srv:
            sender = "pipe3@%s" % DOMAIN
            qid = send(srv.port, ["ghost@%s" % DOMAIN, "same2@%s" % DOMAIN],
                       message("bounce"), sender=sender)
            wait_for(lambda: self.arrived("same2", "bounce"), what="the good copy")
            dsn = wait_for(lambda: [v for v in self.mailbox("pipe3").values()
                                    if b"multipart/report" in v], what="the DSN")
            self.assertEqual(len(dsn), 1)
            msg = email.message_from_bytes(dsn[0], policy=email.policy.compat32)
            self.assertEqual(msg["Return-Path"], "<>")
            self.assertEqual(msg.get_content_type(), "multipart/report")
            self.assertEqual(msg.get_param("report-type"), "delivery-status")
            self.assertEqual(msg["Auto-Submitted"], "auto-replied")
            parts = msg.get_payload()
            self.assertEqual([p.get_content_type() for p in parts],
                             ["text/plain", "message/delivery-status", "message/rfc822"])
            blocks = parts[1].get_payload()
            self.assertEqual(blocks[0]["Reporting-MTA"], "dns; mx.test")
            self.assertEqual(blocks[0]["X-Ringmx-Queue-ID"], qid)
            self.assertEqual(len(blocks), 2)  # one recipient failed, not the delivered one
            self.assertEqual(blocks[1]["Final-Recipient"], "rfc822; ghost@%s" % DOMAIN)
            self.assertEqual(blocks[1]["Action"], "failed")
            self.assertEqual(blocks[1]["Status"], "5.1.1")
            self.assertTrue(blocks[1]["Diagnostic-Code"].startswith("smtp; 550 5.1.1"))
            original = parts[2].get_payload()[0]
            self.assertEqual(original["Subject"], "delivery bounce")
            self.assertEqual(metric(metrics(srv), "ringmx_dsn_total", result="queued"), 1)
            # NOTIFY=NEVER, and the null sender: no report.
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender)[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<ghost@%s> NOTIFY=NEVER" % DOMAIN)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(dot_stuff(message("never")) + b".\r\n")
            self.assertEqual(c.reply()[0], 250)
            code, text = transaction(c, "", ["ghost@%s" % DOMAIN], message("nullsender"))
            self.assertEqual(code, 250)
            c.cmd("QUIT")
            wait_for(lambda: srv.log().count("rcpt=ghost@") >= 3, what="both failures")
            time.sleep(0.5)
            self.assertEqual(len([v for v in self.mailbox("pipe3").values()
                                  if b"multipart/report" in v]), 1)
            self.assertEqual(metric(metrics(srv), "ringmx_dsn_total", result="queued"), 1)
            # Every message done: nothing left queued.
            wait_for(lambda: metric(metrics(srv), "ringmx_queue_depth") == 0, what="empty")

    def test_notify_delay_sends_one_delay_report(self):
        import email
        import email.policy
        from harness import free_port
        dead = free_port()  # nobody listens: the recipient's route is down
        toml = ('\n[delivery]\nretry_min_ms = 300\nretry_max_ms = 600\ndelay_notice_s = 1\n'
                '[[route]]\nname = "store"\ndomains = ["%s"]\ndestination = "lmtp://127.0.0.1:%d"\n'
                '[[route]]\nname = "down"\ndomains = ["down.example"]\n'
                'destination = "smtp://127.0.0.1:%d"\n' % (DOMAIN, self.dovecot.port, dead))
        with running(toml) as srv:
            sender = "lock3@%s" % DOMAIN
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender)[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<late@down.example> NOTIFY=DELAY,FAILURE")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<quiet@down.example>")[0], 250)  # no DELAY asked
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(dot_stuff(message("delay")) + b".\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.cmd("QUIT")
            dsn = wait_for(lambda: [v for v in self.mailbox("lock3").values()
                                    if b"multipart/report" in v], what="the delay report")
            time.sleep(1.5)  # more attempts, no second report
            self.assertEqual(len([v for v in self.mailbox("lock3").values()
                                  if b"multipart/report" in v]), 1)
            msg = email.message_from_bytes(dsn[0], policy=email.policy.compat32)
            self.assertEqual(msg["Subject"], "Delayed Mail (still being retried)")
            blocks = msg.get_payload()[1].get_payload()
            self.assertEqual(len(blocks), 2)  # only the recipient that asked
            self.assertEqual(blocks[1]["Final-Recipient"], "rfc822; late@down.example")
            self.assertEqual(blocks[1]["Action"], "delayed")
            self.assertTrue(blocks[1]["Status"].startswith("4."))
            self.assertEqual(msg.get_payload()[2].get_content_type(), "text/rfc822-headers")
            self.assertEqual(metric(metrics(srv), "ringmx_queue_depth"), 1)  # still trying

    def test_two_routes_read_back_once_each_whole(self):
        # No memory for bodies: a message for two routes is read back from
        # the spool, and both destinations get all of it, whichever finishes
        # first (a route that ends its attempt lets the bytes go; the other
        # reads them again).
        import os as _os
        from test_delivery_recovery import Sink
        sink = Sink().start()
        try:
            toml = route_toml(self.dovecot.port, "memory_per_shard = 0") + (
                '[[route]]\nname = "sink"\ndomains = ["example.org"]\n'
                'destination = "smtp://127.0.0.1:%d"\n' % sink.port)
            with running(toml, shards=1) as srv:
                data = message("tworoutes", 400)
                send(srv.port, ["part3@%s" % DOMAIN, "x@example.org"], data)
                got = wait_for(lambda: self.arrived("part3", "tworoutes"), what="Dovecot's copy")
                self.assertTrue(crlf(got).endswith(data))
                wait_for(lambda: sink.message_ids()["tworoutes@delivery.test"], what="the sink's")
                dumped = b""
                for name in _os.listdir(sink.dir):
                    with open(_os.path.join(sink.dir, name), "rb") as f:
                        dumped += f.read()
                self.assertIn(b"line 399\r\n", crlf(dumped))
        finally:
            sink.cleanup()

    def test_foreign_domain_refused_at_rcpt(self):
        with running(route_toml(self.dovecot.port)) as srv:
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<s@example.net>")[0], 250)
            code, lines = c.cmd("RCPT TO:<someone@elsewhere.example>")
            self.assertEqual(code, 550)
            self.assertIn("5.7.1", lines[-1])
            c.cmd("QUIT")

    def test_many_messages_reuse_connections(self):
        with running(route_toml(self.dovecot.port), shards=1) as srv:
            tags = ["many%d" % i for i in range(30)]
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            for t in tags:
                code, text = transaction(c, "sender@example.net", ["lock1@%s" % DOMAIN],
                                         message(t))
                self.assertEqual(code, 250, text)
            c.cmd("QUIT")
            wait_for(lambda: all(self.arrived("lock1", t) for t in tags), what="30 messages")
            # A message is in the mailbox a moment before Dovecot's reply reaches us.
            wait_for(lambda: metric(metrics(srv), "ringmx_delivery_total", route="store",
                                    result="delivered") == 30, what="30 deliveries counted")
            m = metrics(srv)
            # One shard, messages in a row: far fewer connections than messages.
            self.assertLess(metric(m, "ringmx_relay_connections_total"), 30)
            wait_for(lambda: metric(metrics(srv), "ringmx_queue_depth") == 0,
                     what="an empty queue")

    def test_destination_down_then_up(self):
        # A destination nobody listens on yet: mail waits, deferred, then arrives.
        down = Dovecot()
        try:
            with running(route_toml(down.port)) as srv:
                tag = "later"
                send(srv.port, ["same1@%s" % DOMAIN], message(tag))
                wait_for(lambda: "result=deferred" in srv.log(), what="a deferral")
                m = metrics(srv)
                self.assertEqual(metric(m, "ringmx_queue_depth"), 1)
                self.assertGreaterEqual(metric(m, "ringmx_relay_connect_failures_total"), 1)
                self.assertIsNone(down.mailbox("same1") or None)
                down.start()
                data = wait_for(lambda: [v for v in down.mailbox("same1").values()
                                         if b"<later@delivery.test>" in v],
                                what="the held message")
                self.assertEqual(len(data), 1)
                wait_for(lambda: metric(metrics(srv), "ringmx_queue_depth") == 0,
                         what="an empty queue")
        finally:
            down.stop()
            down.cleanup()

    def test_spilled_body_is_read_back_from_the_spool(self):
        # A 64 KiB body budget: a 300 KiB message streams to its own file.
        extra = "[limits]\nbody_memory_per_shard = 65536\n"
        with running(route_toml(self.dovecot.port) + extra, shards=1) as srv:
            data = message("spilled", 20000, b"0123456789")
            qid = send(srv.port, ["part1@%s" % DOMAIN], data)
            got = wait_for(lambda: self.arrived("part1", "spilled"), what="the spilled message")
            # ringmx's Received header, then the message as sent.
            self.assertTrue(crlf(got).endswith(data))
            self.assertRegex(crlf(got), rb"Received: from client.test \(.*\r\n\s+by mx.test "
                                        rb"\(ringmx\) with ESMTP id %s" % qid.encode())
            self.assertGreaterEqual(metric(metrics(srv), "ringmx_body_spills_total"), 1)
            # Its own segment, closed from the start: removed once delivered.
            wait_for(lambda: not any(f.endswith(".msg") for _r, _d, fs in os.walk(srv.spool)
                                     for f in fs), what="the segment removed")

    def test_delivery_memory_exhausted_reads_back(self):
        # No memory for bodies waiting for delivery: every one is read back.
        with running(route_toml(self.dovecot.port, "memory_per_shard = 0"), shards=1) as srv:
            qid = send(srv.port, ["part2@%s" % DOMAIN], message("readback", 100))
            data = message("readback", 100)
            got = wait_for(lambda: self.arrived("part2", "readback"), what="the message")
            self.assertTrue(crlf(got).endswith(data))
            self.assertIn(b"with ESMTP id %s" % qid.encode(), got)


if __name__ == "__main__":
    main()
