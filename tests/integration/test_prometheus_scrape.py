"""The real Prometheus server scrapes the real ringmx: a Prometheus on loopback
(its own port, temporary TSDB, scrape and rule evaluation every second, the
repository's deploy/alerts.yml as its rules) sees the ringmx target up, counts
the messages the test sent, loads every alert group of alerts.yml and evaluates
each rule without an error, runs every query of the Grafana dashboard, and once
ringmx is stopped puts RingmxDown in pending: the rules fit the labels a real
scrape gives.

Needs prometheus and promtool (Debian package `prometheus`); exits 77 without them."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import deploy_files as D
from harness import Client, Server, free_port, http_get, main, transaction

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
DEADLINE = 30   # seconds for each thing Prometheus has to get to
MESSAGES = 3
MESSAGE = b"Subject: scraped\r\n\r\ncounted by Prometheus\r\n"

# Dashboard panels whose queries must return series right after this test's traffic.
PANELS_WITH_DATA = ("Accepted messages/s", "Sessions active", "Connections/s by result",
                    "Messages accepted/s", "Replies/s by code", "Transactions/s by result",
                    "Spool free space", "Shard loop iterations/s", "Spool fsync latency",
                    "Resident memory", "TLS handshakes/s by version and result")


class Prometheus:
    """prometheus on 127.0.0.1:<free port> with a temporary config and TSDB; stopped by PID."""

    def __init__(self, targets):
        self.dir = tempfile.mkdtemp(prefix="ringmx-prometheus-")
        self.port = free_port()
        self.config = os.path.join(self.dir, "prometheus.yml")
        config = {   # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [D.ALERTS],
            "scrape_configs": [{"job_name": "ringmx", "metrics_path": "/metrics",
                                "static_configs": [{"targets": targets}]}],
        }
        with open(self.config, "w") as f:
            json.dump(config, f, indent=1)
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.proc = None

    def start(self):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + self.config,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--storage.tsdb.retention.time=1h",
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdout=self.log_file, stderr=self.log_file)
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def api(self, path, **params):
        """GET /api/v1/<path>: the JSON "data", or None while Prometheus is not ready."""
        if params:
            path += "?" + urllib.parse.urlencode(params)
        try:
            status, body = http_get(self.port, "/api/v1/" + path, timeout=5)
        except OSError:
            return None
        if status == 503:
            return None   # "Service Unavailable" in plain text until the TSDB is open
        reply = json.loads(body)
        assert status == 200 and reply["status"] == "success", (path, status, body[:2000])
        return reply["data"]

    def until(self, what, pred):
        """pred()'s first true value, polled every 0.25 s up to DEADLINE seconds."""
        deadline = time.monotonic() + DEADLINE
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited %s\n%s" % (self.proc.returncode,
                                                                         self.log())
            last = pred()
            if last:
                return last
            time.sleep(0.25)
        raise AssertionError("Prometheus: timed out waiting for %s (last: %r)\n%s" %
                             (what, last, self.log()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # this child, by its PID
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log_file.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrometheusScrape(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(shards=2).start()
        cls.target = "127.0.0.1:%d" % cls.srv.admin_port
        cls.prom = Prometheus([cls.target]).start()

    @classmethod
    def tearDownClass(cls):
        cls.prom.stop()
        cls.srv.stop()

    def send_mail(self):
        for i in range(MESSAGES):
            c = Client(self.srv.port)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO scrape%d.test" % i)[0], 250)
            code, text = transaction(c, "a@example.net", ["b@example.org"], MESSAGE)
            self.assertEqual(code, 250, text)
            self.assertEqual(c.cmd("QUIT")[0], 221)
            c.close()

    def target_health(self):
        data = self.prom.api("targets")
        if not data:
            return None
        mine = [t for t in data["activeTargets"] if t["labels"].get("instance") == self.target]
        return mine[0] if mine else None

    def query(self, q):
        return self.prom.api("query", query=q)

    def rules(self):
        data = self.prom.api("rules")
        return data["groups"] if data else None

    def test_scrape_rules_dashboard_and_instance_down(self):
        self.send_mail()

        # The target is scraped and up, with the job the rules expect.
        t = self.prom.until("target up", lambda: (self.target_health() or {}).get(
            "health") == "up" and self.target_health())
        self.assertEqual(t["labels"]["job"], "ringmx")
        self.assertEqual(t["lastError"], "")
        self.assertTrue(t["scrapeUrl"].endswith(":%d/metrics" % self.srv.admin_port), t)

        # Prometheus counts what ringmx accepted.
        def accepted():
            r = self.query("sum(ringmx_messages_accepted_total)")
            return r and r["result"] and float(r["result"][0]["value"][1])
        self.assertGreaterEqual(self.prom.until("messages counted", accepted), MESSAGES)

        # Every group of alerts.yml is loaded, and every rule has been evaluated cleanly.
        want_groups = D.alert_groups()
        want_rules = {a: e for _, a, e in D.alert_rules()}

        def all_evaluated():
            groups = self.rules()
            if not groups or any(r["health"] == "unknown" for g in groups for r in g["rules"]):
                return None
            return groups
        groups = self.prom.until("every rule evaluated", all_evaluated)
        self.assertEqual(sorted(g["name"] for g in groups), sorted(want_groups))
        self.assertTrue(all(g["file"] == D.ALERTS for g in groups), groups[0]["file"])
        loaded = {}
        for g in groups:
            for r in g["rules"]:
                self.assertEqual((r["name"], r["health"], r.get("lastError", "")),
                                 (r["name"], "ok", ""))
                self.assertEqual(r["type"], "alerting", r["name"])
                self.assertIn(r["labels"].get("severity"), D.SEVERITIES, r["name"])
                self.assertTrue(r["annotations"].get("summary"), r["name"])
                self.assertTrue(r["annotations"].get("description"), r["name"])
                self.assertNotIn(r["name"], loaded, "alert name used twice")
                loaded[r["name"]] = r
        self.assertEqual(sorted(loaded), sorted(want_rules))
        # Nothing fires against a healthy ringmx that was just started.
        firing = [r["name"] for r in loaded.values() if r["state"] == "firing"]
        self.assertEqual(firing, [])

        # Every dashboard query runs; the main panels have data (rate() needs two scrapes).
        def scrapes():
            r = self.query("count_over_time(ringmx_messages_accepted_total[30s])")
            return r and r["result"] and float(r["result"][0]["value"][1]) >= 3
        self.prom.until("three scrapes", scrapes)
        empty = []
        for where, expr, _ in D.dashboard_exprs():
            if where.startswith("variable"):
                continue
            r = self.query(D.grafana_to_promql(expr, rate_interval="30s"))
            if not r["result"] and any(where == "panel %r" % p for p in PANELS_WITH_DATA):
                empty.append((where, expr))
        if empty:
            self.fail("dashboard queries without data:\n%s" % "\n".join(map(str, empty)))

        # ringmx stops: the next scrapes fail and RingmxDown goes pending for this target.
        self.assertEqual(self.srv.stop(), 0, self.srv.log())

        def down_pending():
            for g in self.rules() or []:
                for r in g["rules"]:
                    if r["name"] == "RingmxDown":
                        return [a for a in r["alerts"] if a["labels"]["instance"] == self.target
                                and a["state"] in ("pending", "firing")]
            return None
        alert = self.prom.until("RingmxDown pending", down_pending)[0]
        self.assertEqual(alert["labels"]["job"], "ringmx")
        self.assertEqual(alert["labels"]["severity"], "critical")
        self.assertEqual(self.target_health()["health"], "down")


if __name__ == "__main__":
    if not PROMETHEUS or not PROMTOOL:
        print("prometheus or promtool not installed (apt-get install prometheus)", file=sys.stderr)
        sys.exit(77)
    main()
