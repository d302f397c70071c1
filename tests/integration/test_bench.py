"""ringmx-bench, the load generator, against real servers on 127.0.0.1: the
ringmx daemon (harness.Server) and Postfix's smtp-sink (skipped, saying so,
when /usr/sbin/smtp-sink is not installed). Every run is bounded in messages
and seconds (--messages, --duration, --timeout, and a subprocess timeout) and
reports with --json. Checked: every message has one outcome (sent == ok +
failed), what ringmx acknowledged is what landed in its spool (count, size,
recipients), latency percentiles are ordered, an open-loop run at a modest rate
achieves that rate, and the exit status follows --expect-success-rate.
Processes started here are stopped by PID."""

import json
import os
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BINARY, Server, free_port, main

BENCH = os.path.normpath(os.path.join(os.path.dirname(BINARY), "..", "bench", "ringmx-bench"))
SMTP_SINK = "/usr/sbin/smtp-sink"
RUN_TIMEOUT = 120          # seconds, a hard bound on every ringmx-bench process
PHASES = ("connect", "wait", "transaction", "data", "message")
# Our messages start with this header (bench/message_gen.cc); ringmx puts its
# own Received header in front.
OUR_FIRST_LINE = b"Received: from relay.example.net"
SERVER_TOML = "max_connections_per_ip = 10000\n"


def run_bench(port, *args, expect_rc=0):
    cmd = [BENCH, "--target", "127.0.0.1:%d" % port, "--json", "--timeout", "10"] + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
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

    def test_tls_and_proxy_are_not_supported_yet(self):
        for flag in (["--starttls"], ["--tls"], ["--proxy", "v2"]):
            p = subprocess.run([BENCH, "--target", "127.0.0.1:25", "--connections", "1",
                                "--messages", "1", "--size", "1000"] + flag,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 2, flag)
            self.assertIn(b"not supported yet", p.stderr)

    def test_usage_errors_exit_2(self):
        p = subprocess.run([BENCH, "--target", "127.0.0.1:25", "--connections", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([BENCH, "--target", "nowhere", "--connections", "1", "--messages", "1",
                            "--size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(p.returncode, 2)


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


if __name__ == "__main__":
    main()
