"""The front-door checks against a real DNS server: dnsmasq on a loopback port
with a generated zone (PTR and A records for chosen 127.0.0.x clients, DNS list
zones, MX / null MX / missing sender domains), ringmx pointed at it, and
clients connecting from distinct 127.0.0.x source addresses. Each check
refuses what it should with its own reply and lets legitimate senders
through; a DNS server that never answers gives a temporary refusal, never a
permanent one, and the shard keeps serving other clients meanwhile.

Needs dnsmasq (Debian dnsmasq-base); exits 77 without it."""

import os
import re
import socket
import sys
import time
import unittest

from harness import (DNSMASQ, Client, Dnsmasq, SKIP, Server, http_get, main, metric,
                     queue_list, transaction, wait_for)

MESSAGE = b"From: a@good.test\r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\nSubject: checks\r\n\r\nhi\r\n"


def records(silent_port):
    return [
        # A good client: PTR and A agree (forward-confirmed).
        "--host-record=good.test,127.0.0.30",
        # 127.0.0.31 has no PTR at all.
        # A PTR whose name points elsewhere: not confirmed.
        "--ptr-record=32.0.0.127.in-addr.arpa,forged.test",
        "--host-record=forged.test,10.9.9.9",
        # A dynamic-looking, unconfirmed name.
        "--ptr-record=33.0.0.127.in-addr.arpa,pool-127-0-0-33.dyn.test",
        # Listed by the block list (a counted code), with a good PTR.
        "--host-record=listed.test,127.0.0.34",
        "--address=/34.0.0.127.bl.test/127.0.0.2",
        # Listed with a code the config does not count.
        "--host-record=othercode.test,127.0.0.35",
        "--address=/35.0.0.127.bl.test/127.0.0.10",
        # On both lists: the allow list outweighs the block list and an odd HELO.
        "--host-record=allowed.test,127.0.0.36",
        "--address=/36.0.0.127.bl.test/127.0.0.2",
        "--address=/36.0.0.127.wl.test/127.0.0.2",
        # Sender domains.
        "--mx-host=mx.test,mail.mx.test,10",
        "--host-record=mail.mx.test,192.0.2.25",
        "--host-record=aonly.test,192.0.2.26",
        "--dns-rr=nullmx.test,15,000000",  # RFC 7505: preference 0, the root
        # Names under slow.test go to a server that never answers.
        "--server=/slow.test/127.0.0.1#%d" % silent_port,
    ]


CONFIG = """
[dns]
servers = ["127.0.0.1:%(port)d"]
timeout_ms = %(timeout)d
tries = 1

[checks]
reject_score = 10

[checks.ptr]
missing = "reject"
unconfirmed = "score"
dynamic = "score"
dynamic_patterns = ['(^|[.-])(dyn|dynamic|dhcp|pool|dsl|cable)[.-]']
score = 4

[checks.helo]
bare_ip = "reject"
not_fqdn = "score"
ours = "reject"
literal_mismatch = "score"
score = 4

[checks.sender]
unresolvable = "reject"
null_mx = "reject"

[headers]
require_from = true
reject_duplicates = true

[[dnsbl]]
zone = "bl.test"
weight = 10
codes = ["127.0.0.2-127.0.0.3"]

[[dnswl]]
zone = "wl.test"
weight = 20
"""


def connect(srv, last_octet):
    return Client(srv.port, source=("127.0.0.%d" % last_octet, 0))


class Checks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cls.silent.bind(("127.0.0.1", 0))  # takes queries, never answers
        cls.dns = Dnsmasq(records(cls.silent.getsockname()[1]))
        # Two seconds per query: the slow lookup below is still waiting while
        # another client's whole transaction goes through.
        cls.srv = Server(CONFIG % {"port": cls.dns.port, "timeout": 2000}, shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        cls.dns.stop()
        cls.silent.close()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def greet(self, octet, helo="client.good.test"):
        c = connect(self.srv, octet)
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        self.assertEqual(c.cmd("EHLO " + helo)[0], 250)
        return c

    def test_good_client_passes_with_trace_header(self):
        c = self.greet(30)
        code, text = transaction(c, "alice@mx.test", ["bob@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        c.cmd("QUIT")
        qid = text.split()[-1]
        wait_for(lambda: any(qid.encode() in m for _, m in self.srv.spool_records().values()),
                 what="the message in the spool")
        msg = next(m for _, m in self.srv.spool_records().values() if qid.encode() in m)
        head = msg.split(b"\r\n\r\n")[0]
        self.assertIn(b"Authentication-Results: mx.test;\r\n\tx-dnswl=none;\r\n\tx-dnsbl=none;"
                      b"\r\n\tiprev=pass policy.iprev=127.0.0.30 (good.test)\r\n", head)
        # The Received header names the verified client name.
        self.assertIn(b"Received: from client.good.test (good.test [127.0.0.30])", head)

    def test_no_ptr_is_refused_at_connect(self):
        c = connect(self.srv, 31)
        code, lines = c.reply()
        self.assertEqual(code, 554, lines)
        self.assertIn("5.7.25", lines[0])
        self.assertIn("no reverse DNS", lines[0])
        # A refused greeting serves only QUIT (RFC 5321 3.1).
        self.assertEqual(c.cmd("EHLO client.test")[0], 503)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_unconfirmed_and_dynamic_ptr_add_up_with_helo(self):
        # A forged PTR alone scores 4: still served.
        c = self.greet(32)
        self.assertEqual(c.cmd("MAIL FROM:<a@mx.test>")[0], 250)
        c.cmd("QUIT")
        # Unconfirmed + dynamic (8) and a HELO that is no FQDN (4): refused at HELO.
        c = connect(self.srv, 33)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.cmd("EHLO bot")
        self.assertEqual(code, 550, lines)
        self.assertIn("5.7.1", lines[0])
        self.assertIn("refused by policy", lines[0])
        self.assertIn("dynamic PTR", lines[0])
        wait_for(lambda: "event=reject" in self.srv.log() and "check=score" in self.srv.log(),
                 what="the score refusal's log line")

    def test_dnsbl_listed_client_refused(self):
        c = connect(self.srv, 34)
        code, lines = c.reply()
        self.assertEqual(code, 554, lines)
        self.assertIn("listed by bl.test", lines[0])
        c.close()

    def test_dnsbl_answer_outside_codes_ignored(self):
        c = self.greet(35)
        self.assertEqual(c.cmd("MAIL FROM:<a@mx.test>")[0], 250)
        c.cmd("QUIT")

    def test_dnswl_outweighs_dnsbl_and_odd_helo(self):
        c = self.greet(36, helo="odd")
        code, text = transaction(c, "a@aonly.test", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        c.cmd("QUIT")

    def test_helo_rules(self):
        c = connect(self.srv, 30)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.cmd("EHLO 192.0.2.1")
        self.assertEqual(code, 550, lines)
        self.assertIn("must be written as a literal", lines[0])
        code, lines = c.cmd("EHLO mx.test")
        self.assertEqual(code, 550, lines)
        self.assertIn("is my name", lines[0])
        # A literal that is not the client's address only scores (4 < 10).
        self.assertEqual(c.cmd("EHLO [127.0.0.99]")[0], 250)
        self.assertEqual(c.cmd("EHLO [127.0.0.30]")[0], 250)
        c.cmd("QUIT")

    def test_sender_domains(self):
        c = self.greet(30)
        code, lines = c.cmd("MAIL FROM:<a@nx.test>")
        self.assertEqual(code, 550, lines)
        self.assertIn("5.1.8", lines[0])
        code, lines = c.cmd("MAIL FROM:<a@nullmx.test>")
        self.assertEqual(code, 550, lines)
        self.assertIn("5.7.27", lines[0])
        self.assertEqual(c.cmd("MAIL FROM:<a@aonly.test>")[0], 250)  # implicit MX
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@mx.test>")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<>")[0], 250)  # bounces are never checked
        c.cmd("QUIT")

    def test_dns_timeout_is_temporary_and_shard_keeps_serving(self):
        slow = self.greet(30)
        slow.send("MAIL FROM:<a@x.slow.test>\r\n")
        started = time.monotonic()
        # Meanwhile another client on the same (only) shard: a whole transaction.
        other = self.greet(30)
        code, text = transaction(other, "b@mx.test", ["c@example.org"], MESSAGE)
        other_done = time.monotonic() - started
        self.assertEqual(code, 250, text)
        other.cmd("QUIT")
        slow.sock.setblocking(False)
        try:
            early = slow.sock.recv(100)
        except BlockingIOError:
            early = b""
        slow.sock.setblocking(True)
        self.assertEqual(early, b"", "the slow lookup answered before the other transaction "
                         "finished (%.3f s)" % other_done)
        code, lines = slow.reply()
        waited = time.monotonic() - started
        self.assertEqual(code, 451, lines)
        self.assertIn("4.4.3", lines[0])
        print("other transaction: %.1f ms; the slow lookup's tempfail after %.1f ms"
              % (other_done * 1000, waited * 1000), file=sys.stderr)
        slow.cmd("QUIT")

    def test_header_rules(self):
        c = self.greet(30)
        for message, want in ((b"Subject: none from\r\n\r\nhi\r\n", "no From header"),
                              (MESSAGE.replace(b"Subject: checks", b"Subject: a\r\nSubject: b"),
                               "more than one Subject")):
            self.assertEqual(c.cmd("MAIL FROM:<a@mx.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(message + b".\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 550, lines)
            self.assertIn("5.6.0", lines[0])
            self.assertIn(want, lines[0])
        c.cmd("QUIT")
        wait_for(lambda: metric(http_get(self.srv.admin_port, "/metrics")[1],
                                "ringmx_rejects_total", stage="message", check="headers") >= 2,
                 what="the header refusals counted")
        wait_for(lambda: re.search(r"event=reject .*stage=message check=headers", self.srv.log()),
                 what="the header refusal's log line")

    def test_slow_network_and_a_long_pause_are_served(self):
        # Every command in pieces 200 ms apart (well inside
        # limits.command_line_timeout_ms), and 40 s of silence between two
        # commands (only limits.command_timeout_ms, 300 s, applies there).
        c = connect(self.srv, 30)
        self.assertEqual(c.reply()[0], 220)

        def slowly(line):
            data = (line + "\r\n").encode()
            for i in range(0, len(data), 4):
                c.send(data[i:i + 4])
                time.sleep(0.2)
            return c.reply()

        self.assertEqual(slowly("EHLO client.good.test")[0], 250)
        self.assertEqual(slowly("MAIL FROM:<a@mx.test>")[0], 250)
        time.sleep(40)
        self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(MESSAGE + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")

    def test_metrics(self):
        c = connect(self.srv, 34)
        c.reply()
        c.close()
        text = http_get(self.srv.admin_port, "/metrics")[1]
        wait_for(lambda: metric(http_get(self.srv.admin_port, "/metrics")[1], "ringmx_rejects_total",
                                stage="connect", check="score") >= 1,
                 what="the connect refusal counted")
        self.assertGreaterEqual(metric(text, "ringmx_dns_queries_total", type="ptr",
                                       result="found"), 1)


TEASER = """
greeting_delay_ms = 400
greeting_teaser = true
pregreet_action = "score"
pregreet_score = 6

[dns]
servers = ["127.0.0.1:%(port)d"]

[checks]
reject_score = 10

[checks.ptr]
missing = "reject"

[checks.helo]
not_fqdn = "score"
score = 4
"""


class TeaserAndPregreetScore(unittest.TestCase):
    """postscreen's teaser: "220-" at once, the rest of the greeting after the
    delay; an early talker only scored (pregreet_action = "score")."""

    @classmethod
    def setUpClass(cls):
        cls.dns = Dnsmasq(records(1))
        cls.srv = Server(TEASER % {"port": cls.dns.port}, shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        cls.dns.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def test_patient_client_gets_the_whole_greeting_after_the_delay(self):
        c = connect(self.srv, 30)
        t0 = time.monotonic()
        while b"\r\n" not in c.buf:
            c.buf += c.sock.recv(4096)
        self.assertTrue(c.buf.startswith(b"220-mx.test ESMTP\r\n"), c.buf)
        self.assertLess(time.monotonic() - t0, 0.3)  # the teaser came at once
        code, lines = c.reply()
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        self.assertEqual(code, 220)
        self.assertEqual(lines[0], "220-mx.test ESMTP")
        self.assertTrue(lines[-1].startswith("220 mx.test"), lines)
        self.assertEqual(c.cmd("EHLO client.good.test")[0], 250)
        c.cmd("QUIT")

    def test_refused_connection_after_a_teaser_is_refused_per_command(self):
        c = connect(self.srv, 31)  # no PTR
        code, lines = c.reply()
        self.assertEqual(code, 220)  # one code per reply: the teaser is completed
        self.assertEqual(lines[-1], "220 mx.test ESMTP")
        code, lines = c.cmd("EHLO client.test")
        self.assertEqual(code, 554, lines)
        self.assertIn("5.7.25", lines[0])
        code, lines = c.cmd("MAIL FROM:<a@mx.test>")
        self.assertEqual(code, 554, lines)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_early_talker_is_scored_not_refused(self):
        c = connect(self.srv, 30)
        c.send("EHLO client.good.test\r\n")  # before the greeting: +6
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        code, lines = c.reply()  # the EHLO it sent early is answered after the greeting
        self.assertEqual(code, 250, lines)
        # Another early talker whose HELO is no FQDN (+4): the score refuses it.
        c2 = connect(self.srv, 30)
        c2.send("EHLO bot\r\n")
        self.assertEqual(c2.reply()[0], 220)
        code, lines = c2.reply()
        self.assertEqual(code, 550, lines)
        self.assertIn("talked before the greeting", lines[0])
        c.cmd("QUIT")
        c2.cmd("QUIT")
        wait_for(lambda: "event=pregreet" in self.srv.log() and "action=score" in self.srv.log(),
                 what="the pregreet log line")


QUARANTINE = """
[dns]
servers = ["127.0.0.1:%(port)d"]

[checks]
reject_score = 10
quarantine_score = 4

[checks.ptr]
unconfirmed = "score"
score = 4

[[route]]
domains = ["example.org"]
destination = "smtp://127.0.0.1:%(dead)d"
"""



class Quarantine(unittest.TestCase):
    """checks.quarantine_score: mail taken (250) but held in the queue."""

    @classmethod
    def setUpClass(cls):
        cls.dns = Dnsmasq(records(1))
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        cls.dead = dead
        cls.srv = Server(QUARANTINE % {"port": cls.dns.port, "dead": dead.getsockname()[1]},
                         shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        cls.dns.stop()
        cls.dead.close()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def test_scored_client_is_held_a_clean_one_is_not(self):
        qids = {}
        for octet in (32, 30):  # a forged PTR (score 4), a confirmed one (0)
            c = connect(self.srv, octet)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.good.test")[0], 250)
            code, text = transaction(c, "a@mx.test", ["b@example.org"], MESSAGE)
            self.assertEqual(code, 250, text)
            qids[octet] = text.split()[-1]
            c.cmd("QUIT")
        q = wait_for(lambda: (lambda x: x if len(x) == 2 else None)(queue_list(self.srv)),
                     what="both messages queued")
        self.assertTrue(q[qids[32]]["held"], q[qids[32]])
        self.assertFalse(q[qids[30]]["held"], q[qids[30]])
        wait_for(lambda: re.search(r"event=quarantine .*qid=%s .*reason=\"score 4\"" % qids[32],
                                   self.srv.log()), what="the quarantine log line")
        text = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertEqual(metric(text, "ringmx_quarantined_total"), 1)


if __name__ == "__main__":
    if not os.access(DNSMASQ, os.X_OK):
        print("SKIP: dnsmasq is not installed (Debian dnsmasq-base; tools/dev.sh installs it)",
              file=sys.stderr)
        sys.exit(SKIP)
    main()
