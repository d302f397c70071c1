"""ringmx-bench, the load generator, against real servers on 127.0.0.1: the
ringmx daemon (harness.Server), Postfix's smtp-sink, and a private Postfix
instance with TLS and the PROXY protocol (own config and queue under
/var/spool, as root; both skipped, saying so, when Postfix is not installed or
we are not root). Every run is bounded in messages
and seconds (--messages, --duration, --timeout, and a subprocess timeout) and
reports with --json. Checked: every message has one outcome (sent == ok +
failed), what ringmx acknowledged is what landed in its spool (count, size,
recipients), latency percentiles are ordered, an open-loop run at a modest rate
achieves that rate, and the exit status follows --expect-success-rate. With
TLS: STARTTLS and implicit TLS deliver, handshakes are counted full/resumed
(resumption on by default, off with --no-resume), --tls-version 1.2 is what is
negotiated, a server without STARTTLS fails every message as `unsupported`
and gets no mail, connection mode (--per-connection 0) sends no mail; PROXY
v1 and v2 headers make Postfix log the --proxy-source addresses. A --size
list draws both sizes and each lands at its size; --eml-dir sends the files,
cycled, and ringmx stores each byte for byte (as CRLF) behind its Received
header; bad --size lists and empty eml directories are usage errors.
--greeting helo delivers as plain SMTP (ringmx's Received header says `with
SMTP`) and is a usage error with --starttls, --bdat and --lmtp.
Processes started here are stopped by PID."""

import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from harness import BINARY, Server, free_port, main

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                                "peers"))
from private_postfix import POSTFIX, PrivatePostfix  # noqa: E402

BENCH = os.path.normpath(os.path.join(os.path.dirname(BINARY), "..", "bench", "ringmx-bench"))
SMTP_SINK = "/usr/sbin/smtp-sink"
RUN_TIMEOUT = 120          # seconds, a hard bound on every ringmx-bench process
PHASES = ("connect", "handshake", "wait", "transaction", "data", "message")
# Our messages start with this header (bench/message_gen.cc); ringmx puts its
# own Received header in front.
OUR_FIRST_LINE = b"Received: from relay.example.net"
SERVER_TOML = "max_connections_per_ip = 10000\n"


BENCH_ENV = dict(os.environ)


def run_bench(port, *args, expect_rc=0):
    cmd = [BENCH, "--target", "127.0.0.1:%d" % port, "--json", "--timeout", "10"] + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT,
                       env=BENCH_ENV)
    if p.returncode != expect_rc:
        raise AssertionError("ringmx-bench exit %d (want %d): %s\nstdout: %s\nstderr: %s" % (
            p.returncode, expect_rc, " ".join(cmd), p.stdout.decode(errors="replace")[-3000:],
            p.stderr.decode(errors="replace")[-3000:]))
    return json.loads(p.stdout)


class BenchChecks:
    def check_report(self, r, want_sent=None):
        self.assertTrue(r["outcomes_consistent"], r)
        self.assertEqual(r["sent"], r["ok"] + r["failed"])
        failures = sum(r["errors"]["by_code"].values()) + sum(r["errors"]["by_kind"].values())
        self.assertEqual(r["failed"], failures)
        if want_sent is not None:
            self.assertEqual(r["sent"], want_sent)
        for phase in PHASES:
            lat = r["latency_us"][phase]
            values = [lat["p50"], lat["p90"], lat["p99"], lat["p99.9"], lat["max"]]
            self.assertEqual(values, sorted(values), "%s percentiles not ordered: %s" % (phase, lat))
            if lat["count"]:
                self.assertGreater(lat["max"], 0, phase)
        self.assertEqual(r["latency_us"]["message"]["count"], r["sent"] - sum(
            r["errors"]["by_kind"].values()))


class BenchAgainstRingmx(unittest.TestCase, BenchChecks):
    def setUp(self):
        if not os.access(BENCH, os.X_OK):
            self.fail("ringmx-bench not built at %s" % BENCH)
        self.srv = Server(extra_toml=SERVER_TOML, shards=2).start()

    def tearDown(self):
        rc = self.srv.stop()
        self.assertEqual(rc, 0, self.srv.log()[-3000:])

    def spool_messages(self):
        return [m for _, m in self.srv.spool_records().values()]

    def test_closed_loop_one_message_per_connection(self):
        r = run_bench(self.srv.port, "--connections", "16", "--messages", "1500", "--size", "1024",
                      "--duration", "20", "--seed", "7")
        self.check_report(r, want_sent=1500)
        self.assertEqual(r["ok"], 1500, r["errors"])
        self.assertEqual(r["connection_stats"]["ready"], 1500)
        messages = self.spool_messages()
        self.assertEqual(len(messages), r["ok"])
        for m in messages:
            start = m.find(OUR_FIRST_LINE)
            self.assertGreater(start, 0)
            self.assertEqual(len(m) - start, 1024)  # dot-stuffed on the wire, exact in the spool
        self.assertEqual(r["mode"], "closed")
        self.assertGreater(r["messages_per_s"], 0)
        self.assertGreater(r["cpu"]["user_s"] + r["cpu"]["sys_s"], 0)

    def test_closed_loop_many_per_connection_for_a_few_seconds(self):
        # Bounded by time: far more messages allowed than 3 s can carry.
        t0 = time.monotonic()
        r = run_bench(self.srv.port, "--connections", "32", "--messages", "10000000", "--size",
                      "2048", "--per-connection", "100", "--duration", "3")
        wall = time.monotonic() - t0
        self.check_report(r)
        self.assertEqual(r["failed"], 0, r["errors"])
        self.assertGreater(r["ok"], 100)
        self.assertLess(r["elapsed_s"], 3 + 10 + 1)
        self.assertLess(wall, 3 + 10 + 5)
        self.assertEqual(len(self.srv.spool_records()), r["ok"])
        # 100 per connection: a connection for every 100 messages, give or take the end.
        self.assertLessEqual(r["connection_stats"]["ready"], r["ok"] // 100 + 32 + 1)

    def test_bdat_several_recipients_lock_step(self):
        r = run_bench(self.srv.port, "--connections", "4", "--messages", "200", "--size", "3000",
                      "--bdat", "--recipients", "3", "--per-connection", "10", "--no-pipelining")
        self.check_report(r, want_sent=200)
        self.assertEqual(r["ok"], 200, r["errors"])
        records = self.srv.spool_records()
        self.assertEqual(len(records), 200)
        for fields, message in records.values():
            self.assertEqual(fields["rcpt-to"],
                             ["<rcpt1@example.org>", "<rcpt2@example.org>", "<rcpt3@example.org>"])
            self.assertEqual(len(message) - message.find(OUR_FIRST_LINE), 3000)
        # BDAT: no end-of-data line, but the final reply is timed from the chunk.
        self.assertEqual(r["latency_us"]["data"]["count"], 200)

    def test_open_loop_achieves_a_modest_rate(self):
        rate, duration = 200, 3
        r = run_bench(self.srv.port, "--connections", "8", "--messages", "100000", "--size", "1024",
                      "--rate", str(rate), "--duration", str(duration), "--per-connection", "50")
        self.check_report(r)
        self.assertEqual(r["mode"], "open")
        self.assertEqual(r["failed"], 0, r["errors"])
        # The schedule issues exactly rate x duration messages (+1: the one at t = 0)...
        self.assertLessEqual(abs(r["sent"] - rate * duration), 2, r["sent"])
        # ...and the server kept up: the achieved rate is the asked one, within 10 %.
        self.assertLess(abs(r["messages_per_s"] - rate) / rate, 0.10, r["messages_per_s"])
        self.assertEqual(len(self.srv.spool_records()), r["ok"])

    def test_helo_greeting_speaks_plain_smtp(self):
        # --greeting helo: HELO, no extensions, lock-step; ringmx names the
        # protocol from the greeting in its Received header.
        r = run_bench(self.srv.port, "--connections", "4", "--messages", "40", "--size", "1500",
                      "--recipients", "2", "--per-connection", "5", "--duration", "20",
                      "--greeting", "helo", "--helo", "helo.bench.test")
        self.check_report(r, want_sent=40)
        self.assertEqual(r["ok"], 40, r["errors"])
        self.assertEqual(r["connection_stats"]["ready"], 8)
        self.assertFalse(r["pipelining"])  # nothing known to pipeline with
        self.assertEqual(r["greeting"], "helo")
        records = self.srv.spool_records()
        self.assertEqual(len(records), 40)
        for fields, message in records.values():
            self.assertEqual(fields["rcpt-to"], ["<rcpt1@example.org>", "<rcpt2@example.org>"])
            start = message.find(OUR_FIRST_LINE)
            self.assertGreater(start, 0)
            self.assertEqual(len(message) - start, 1500)
            received = message[:start]
            self.assertTrue(received.startswith(b"Received: from helo.bench.test"), received)
            self.assertIn(b" with SMTP id ", received)
            self.assertNotIn(b"ESMTP", received)

    def test_starttls_not_offered_fails_every_message_as_unsupported(self):
        # ringmx in this tree offers no STARTTLS: nothing may go out in plaintext.
        r = run_bench(self.srv.port, "--connections", "4", "--messages", "40", "--size", "1024",
                      "--starttls", "--per-connection", "5", expect_rc=1)
        self.check_report(r, want_sent=40)
        self.assertEqual(r["errors"]["by_kind"]["unsupported"], 40)
        self.assertEqual(r["connection_stats"]["failed_by_kind"]["unsupported"], 40)
        self.assertEqual(r["tls"]["mode"], "starttls")
        self.assertEqual(r["tls"]["handshakes"], {"full": 0, "resumed": 0, "failed": 0})
        self.assertEqual(r["transactions_per_s"], 0)
        self.assertEqual(len(self.srv.spool_records()), 0)

    def test_connection_mode_sends_no_mail(self):
        r = run_bench(self.srv.port, "--connections", "8", "--messages", "300", "--size", "1024",
                      "--per-connection", "0", "--duration", "20")
        self.check_report(r, want_sent=300)
        self.assertEqual(r["ok"], 300, r["errors"])
        self.assertEqual(r["connection_stats"]["attempts"], 300)
        self.assertEqual(r["connection_stats"]["ready"], 300)
        self.assertEqual(r["latency_us"]["transaction"]["count"], 0)
        self.assertEqual(r["latency_us"]["message"]["count"], 300)  # connect -> ready
        self.assertEqual(r["latency_us"]["connect"]["count"], 300)
        self.assertGreater(r["connections_per_s"], 0)
        self.assertEqual(len(self.srv.spool_records()), 0)

    def test_expect_success_rate_decides_the_exit_status(self):
        # A message over the server's size limit is refused (552) at the end of data.
        srv = Server(extra_toml=SERVER_TOML + "[limits]\nmax_message_size = 4096\n",
                     shards=1).start()
        try:
            r = run_bench(srv.port, "--connections", "2", "--messages", "20", "--size", "8000",
                          expect_rc=1)
            self.check_report(r, want_sent=20)
            self.assertEqual(r["ok"], 0)
            self.assertEqual(r["errors"]["by_code"], {"552": 20})
            run_bench(srv.port, "--connections", "2", "--messages", "20", "--size", "8000",
                      "--expect-success-rate", "0", expect_rc=0)
            self.assertEqual(len(srv.spool_records()), 0)
        finally:
            self.assertEqual(srv.stop(), 0)


    def test_size_distribution(self):
        r = run_bench(self.srv.port, "--connections", "8", "--messages", "200", "--size",
                      "600:1,2k:1", "--per-connection", "10", "--duration", "20", "--seed", "3")
        self.check_report(r, want_sent=200)
        self.assertEqual(r["ok"], 200, r["errors"])
        self.assertIsNone(r["size"])
        self.assertEqual(r["size_distribution"],
                         [{"size": 600, "weight": 1}, {"size": 2048, "weight": 1}])
        self.assertEqual(r["mean_size"], 1324.0)
        self.assertIsNone(r["eml_dir"])
        messages = self.spool_messages()
        self.assertEqual(len(messages), r["ok"])
        sizes = collections.Counter()
        for m in messages:
            start = m.find(OUR_FIRST_LINE)
            self.assertGreater(start, 0)
            sizes[len(m) - start] += 1
        self.assertEqual(set(sizes), {600, 2048}, sizes)
        for n in sizes.values():
            self.assertTrue(60 <= n <= 140, sizes)  # weights 1:1, seeded: about 100 each
        # bytes/s counts each message at its own size (as sent: dot-stuffed, with ".\r\n").
        raw = sum(size * n for size, n in sizes.items())
        sent = r["bytes_per_s"] * r["elapsed_s"]
        self.assertGreaterEqual(sent, raw * 0.999)
        self.assertLessEqual(sent, raw * 1.05)

    def test_eml_dir_lands_byte_for_byte(self):
        files = {
            "a-lf.eml": b"From: <a@example.net>\nTo: <b@example.org>\nSubject: lf\n\n"
                        b"first line\n.one dot\n..two dots\n.\nlast\n",
            "b-crlf.eml": b"From: <c@example.net>\r\nSubject: crlf\r\n\r\nbody\r\n"
                          b"- not a dot\r\n",
            "c-no-final-newline.eml": b"Subject: no final newline\n\n.starts with a dot\nend",
        }
        expected = {name: re.sub(rb"\r?\n", b"\r\n", data) for name, data in files.items()}
        expected["c-no-final-newline.eml"] += b"\r\n"
        d = tempfile.mkdtemp(prefix="ringmx-bench-eml-")
        try:
            for name, data in files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            with open(os.path.join(d, "README"), "wb") as f:
                f.write(b"not an .eml file: not sent\n")
            r = run_bench(self.srv.port, "--connections", "4", "--messages", "30",
                          "--per-connection", "3", "--duration", "20", "--eml-dir", d)
            self.check_report(r, want_sent=30)
            self.assertEqual(r["ok"], 30, r["errors"])
            self.assertEqual(r["eml_dir"], d)
            self.assertEqual(r["eml_files"], 3)
            self.assertIsNone(r["size"])
            # BDAT sends the same files raw.
            r = run_bench(self.srv.port, "--connections", "2", "--messages", "6", "--bdat",
                          "--eml-dir", d)
            self.assertEqual(r["ok"], 6, r["errors"])
        finally:
            shutil.rmtree(d)
        messages = self.spool_messages()
        self.assertEqual(len(messages), 36)
        landed = collections.Counter()
        for m in messages:
            names = [n for n, e in expected.items() if m.endswith(e)]
            self.assertEqual(len(names), 1, m)
            landed[names[0]] += 1
            # In front: ringmx's own Received header, one (folded) header field.
            received = m[:len(m) - len(expected[names[0]])]
            self.assertTrue(received.startswith(b"Received: "), received)
            self.assertTrue(received.endswith(b"\r\n"), received)
            for line in received[:-2].split(b"\r\n")[1:]:
                self.assertIn(line[:1], (b" ", b"\t"), received)
        # Cycled in name order: message i is file i % 3, 10 + 2 of each.
        self.assertEqual(landed, collections.Counter({n: 12 for n in files}))


class BenchErrors(unittest.TestCase, BenchChecks):
    def test_refused_connections_fail_each_message_once(self):
        port = free_port()  # nothing listens there
        r = run_bench(port, "--connections", "4", "--messages", "50", "--size", "1024",
                      expect_rc=1)
        self.check_report(r, want_sent=50)
        self.assertEqual(r["errors"]["by_kind"]["refused"], 50)
        self.assertEqual(r["connection_stats"]["failed_by_kind"]["refused"], 50)

    def test_silent_server_times_out(self):
        # Accepts and never says a word: every connection times out after --timeout.
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(64)
            port = lsock.getsockname()[1]
            cmd = [BENCH, "--target", "127.0.0.1:%d" % port, "--json", "--connections", "2",
                   "--messages", "2", "--size", "600", "--timeout", "1"]
            t0 = time.monotonic()
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=RUN_TIMEOUT)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertLess(time.monotonic() - t0, 10)
            r = json.loads(p.stdout)
            self.check_report(r, want_sent=2)
            self.assertEqual(r["errors"]["by_kind"]["timeout"], 2)

    def test_tls_and_proxy_usage_errors_exit_2(self):
        for flags in (["--starttls", "--implicit-tls"], ["--starttls", "--tls"],
                      ["--proxy", "v3"], ["--proxy-source", "10.0.0.1"],
                      ["--proxy", "v1", "--proxy-source", "10.0.0.9-10.0.0.1"],
                      ["--implicit-tls", "--tls-version", "1.1"]):
            p = subprocess.run([BENCH, "--target", "127.0.0.1:25", "--connections", "1",
                                "--messages", "1", "--size", "1000"] + flags,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 2, flags)
            self.assertEqual(p.stdout, b"", flags)  # no run, no report

    def test_helo_greeting_usage_errors_exit_2(self):
        for flags, says in ((["--starttls"], b"--starttls"), (["--bdat"], b"--bdat"),
                            (["--lmtp"], b"LHLO")):
            p = subprocess.run([BENCH, "--target", "127.0.0.1:25", "--connections", "1",
                                "--messages", "1", "--size", "1000", "--greeting", "helo"] + flags,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 2, flags)
            self.assertEqual(p.stdout, b"", flags)
            self.assertIn(b"--greeting helo excludes", p.stderr, flags)
            self.assertIn(says, p.stderr, flags)
        p = subprocess.run([BENCH, "--target", "127.0.0.1:25", "--connections", "1",
                            "--messages", "1", "--size", "1000", "--greeting", "lhlo"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--greeting", p.stderr)

    def test_usage_errors_exit_2(self):
        p = subprocess.run([BENCH, "--target", "127.0.0.1:25", "--connections", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([BENCH, "--target", "nowhere", "--connections", "1", "--messages", "1",
                            "--size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(p.returncode, 2)

    def test_bad_sizes_and_eml_dirs_exit_2(self):
        empty = tempfile.mkdtemp(prefix="ringmx-bench-eml-")
        try:
            for flags, says in ((["--size", "1k:0"], b"weight"), (["--size", "abc"], b"not a size"),
                                (["--size", "100"], b"out of range"), (["--size", ""], b"empty"),
                                (["--size", "1k:70,2k"], b"SIZE:WEIGHT"), ([], b"--eml-dir"),
                                (["--eml-dir", empty], b"no .eml file"),
                                (["--eml-dir", empty + "/missing"], b"missing")):
                p = subprocess.run([BENCH, "--target", "127.0.0.1:25", "--connections", "1",
                                    "--messages", "1"] + flags,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
                self.assertEqual(p.returncode, 2, flags)
                self.assertEqual(p.stdout, b"", flags)
                self.assertIn(says, p.stderr, flags)
        finally:
            shutil.rmtree(empty)


class BenchAgainstSmtpSink(unittest.TestCase, BenchChecks):
    def setUp(self):
        if not os.access(SMTP_SINK, os.X_OK):
            self.skipTest("Postfix's smtp-sink is not installed (%s; Debian package postfix)"
                          % SMTP_SINK)
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ringmx-bench-sink-")
        self.log = open(os.path.join(self.dir, "smtp-sink.log"), "wb")
        self.sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-c",
                                      "127.0.0.1:%d" % self.port, "1024"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.sink.poll() is not None:
                    self.fail("smtp-sink did not start")
                time.sleep(0.05)

    def tearDown(self):
        self.sink.terminate()  # by PID: the process started in setUp
        try:
            self.sink.wait(10)
        except subprocess.TimeoutExpired:
            self.sink.kill()
            self.sink.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_closed_loop_both_ways(self):
        for per_connection in ("1", "100"):
            r = run_bench(self.port, "--connections", "32", "--messages", "3000", "--size", "1024",
                          "--per-connection", per_connection, "--duration", "20")
            self.check_report(r, want_sent=3000)
            self.assertEqual(r["ok"], 3000, r["errors"])
            self.assertGreater(r["messages_per_s"], 0)

    def test_open_loop_and_lock_step(self):
        r = run_bench(self.port, "--connections", "8", "--messages", "400", "--size", "1024",
                      "--rate", "200", "--poisson", "--duration", "2", "--no-pipelining",
                      "--per-connection", "20")
        self.check_report(r)
        self.assertEqual(r["failed"], 0, r["errors"])
        self.assertEqual(r["arrival"], "poisson")
        self.assertGreater(r["sent"], 250)  # about 400 (Poisson: +- a few sd of 20)


POSTFIX_SERVICES = {
    "starttls": "",
    "implicit": "-o smtpd_tls_wrappermode=yes",
    "proxy": "-o smtpd_upstream_proxy_protocol=haproxy",
    "proxy_implicit": "-o smtpd_upstream_proxy_protocol=haproxy -o smtpd_tls_wrappermode=yes",
    "plain": "-o smtpd_tls_security_level=none",
}


class BenchAgainstPostfixTls(unittest.TestCase, BenchChecks):
    pf = None

    @classmethod
    def setUpClass(cls):
        if not os.access(POSTFIX, os.X_OK) or os.geteuid() != 0:
            raise unittest.SkipTest("a private Postfix needs %s and root" % POSTFIX)
        cls.pf = PrivatePostfix(POSTFIX_SERVICES)
        try:
            cls.pf.start()
        except Exception:
            cls.pf.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.pf:
            cls.pf.stop()

    def port(self, name):
        return self.pf.ports[name]

    def connects_from(self, log, pattern):
        """Client addresses of the smtpd "connect from" lines matching `pattern`."""
        return re.findall(r"\]: connect from unknown\[(%s)\]" % pattern, log)

    def check_tls(self, r, n, version="TLS1_3"):
        self.check_report(r, want_sent=n)
        self.assertEqual(r["ok"], n, (r["errors"], r["tls"]))
        hs = r["tls"]["handshakes"]
        self.assertEqual(hs["failed"], 0, r["tls"])
        self.assertEqual(hs["full"] + hs["resumed"], r["connection_stats"]["ready"])
        self.assertEqual(r["tls"]["versions"][version], hs["full"] + hs["resumed"])
        self.assertEqual(r["latency_us"]["handshake"]["count"], hs["full"] + hs["resumed"])
        self.assertGreater(r["latency_us"]["handshake"]["p50"], 0)

    def test_starttls_resumes_by_default(self):
        mark = self.pf.log_size()
        r = run_bench(self.port("starttls"), "--connections", "4", "--messages", "120",
                      "--size", "1024", "--starttls", "--duration", "30")
        self.check_tls(r, 120)
        hs = r["tls"]["handshakes"]
        self.assertEqual(hs["full"] + hs["resumed"], 120)
        # Each thread's first connections are full; later ones resume.
        self.assertGreaterEqual(hs["resumed"], 100, hs)
        self.assertEqual(r["tls"]["mode"], "starttls")
        log = self.pf.log(mark, 120)
        self.assertEqual(log.count("ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1"), 120)

    def test_no_resume_and_tls12(self):
        r = run_bench(self.port("starttls"), "--connections", "4", "--messages", "40",
                      "--size", "1024", "--starttls", "--no-resume", "--tls-version", "1.2",
                      "--per-connection", "2", "--duration", "30")
        self.check_tls(r, 40, version="TLS1_2")
        self.assertEqual(r["tls"]["handshakes"], {"full": 20, "resumed": 0, "failed": 0})
        self.assertFalse(r["tls"]["resume"])
        self.assertEqual(r["tls"]["max_version"], "1.2")

    def test_implicit_tls_through_the_hidden_alias_too(self):
        for flag in ("--implicit-tls", "--tls"):
            r = run_bench(self.port("implicit"), "--connections", "4", "--messages", "60",
                          "--size", "4096", "--per-connection", "5", flag, "--duration", "30")
            self.check_tls(r, 60)
            self.assertEqual(r["tls"]["mode"], "implicit")
            self.assertEqual(r["connection_stats"]["ready"], 12)

    def test_connection_mode_measures_handshakes(self):
        mark = self.pf.log_size()
        r = run_bench(self.port("starttls"), "--connections", "8", "--messages", "200",
                      "--size", "1024", "--starttls", "--per-connection", "0", "--duration", "30")
        self.check_tls(r, 200)
        self.assertEqual(r["connection_stats"]["ready"], 200)
        self.assertEqual(r["latency_us"]["transaction"]["count"], 0)
        self.assertGreater(r["handshakes_per_s"], 0)
        log = self.pf.log(mark, 200)
        self.assertEqual(log.count(" ehlo=2 starttls=1 quit=1 commands=4"), 200)
        self.assertNotIn("mail=", log)

    def test_server_without_starttls(self):
        mark = self.pf.log_size()
        r = run_bench(self.port("plain"), "--connections", "2", "--messages", "10",
                      "--size", "1024", "--starttls", expect_rc=1)
        self.check_report(r, want_sent=10)
        self.assertEqual(r["errors"]["by_kind"]["unsupported"], 10)
        log = self.pf.log(mark, 10)
        self.assertEqual(log.count(" ehlo=1 quit=1 commands=2"), 10)
        self.assertNotIn("mail=", log)

    def test_proxy_v1_and_v2_carry_the_source_addresses(self):
        for version, net in (("v1", "10.9.1."), ("v2", "10.9.2.")):
            mark = self.pf.log_size()
            r = run_bench(self.port("proxy"), "--connections", "2", "--messages", "12",
                          "--size", "1024", "--proxy", version, "--proxy-source",
                          net + "1-" + net + "3", "--threads", "1")
            self.check_report(r, want_sent=12)
            self.assertEqual(r["ok"], 12, r["errors"])
            self.assertEqual(r["proxy"], version)
            seen = self.connects_from(self.pf.log(mark, 12), re.escape(net) + r"\d+")
            self.assertEqual(sorted(set(seen)), [net + "1", net + "2", net + "3"])
            self.assertEqual(len(seen), 12)

    def test_proxy_header_goes_before_implicit_tls(self):
        mark = self.pf.log_size()
        r = run_bench(self.port("proxy_implicit"), "--connections", "2", "--messages", "6",
                      "--size", "1024", "--proxy", "v2", "--implicit-tls", "--proxy-source",
                      "10.9.3.7")
        self.check_tls(r, 6)
        self.assertEqual(self.connects_from(self.pf.log(mark, 6), r"[0-9.]+"), ["10.9.3.7"] * 6)


if __name__ == "__main__":
    main()
