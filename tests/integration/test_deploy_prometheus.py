"""The operator's Prometheus kit in deploy/ holds together: promtool accepts
prometheus.yml (with alerts.yml beside it) and alerts.yml, the rule unit tests in
alerts_test.yml pass, the Grafana dashboard is well-formed dashboard JSON whose
queries promtool can parse, and every metric family, label and label value that
alerts.yml and the dashboard query is in a live scrape of the real ringmx after
traffic (an accepted message over STARTTLS, a relay-denied recipient, a route
whose destination is down). Names that arrive with later work are in
NOT_YET_IMPLEMENTED, and must still be missing from the scrape.

Needs promtool (Debian package `prometheus`); exits 77 without it. openssl
makes the certificate for the TLS part; without it that part is left out."""

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import deploy_files as D
from harness import Client, Server, free_port, http_get, main, make_cert, metric, transaction

PROMTOOL = shutil.which("promtool")
OPENSSL = shutil.which("openssl")

# Metric families the rules or the dashboard use before ringmx has them. Each entry is a
# name prefix and the work that brings it; the test fails once such a metric shows up in
# the scrape, so that its entry is removed and the rule gets checked like the others.
NOT_YET_IMPLEMENTED = {
    # prefix of metric names the rules or dashboard use before ringmx serves them: why
}

# Labels whose values appear only once something has been counted (a reply code is
# listed when it was sent), so an `=` matcher on them cannot be checked in a short run.
SPARSE_LABELS = {("ringmx_replies_total", "code")}

MESSAGE = b"Subject: deploy\r\n\r\nchecked\r\n"


def promtool(*args, cwd=None):
    out = subprocess.run([PROMTOOL] + list(args), capture_output=True, timeout=120, cwd=cwd)
    return out.returncode, (out.stdout + out.stderr).decode(errors="replace")


def not_yet(name):
    return next((p for p in NOT_YET_IMPLEMENTED if name.startswith(p)), None)


class Promtool(unittest.TestCase):
    def test_check_config_with_the_rules_beside_it(self):
        # Installed as the header says: both files in one directory (/etc/prometheus).
        d = tempfile.mkdtemp(prefix="ringmx-prom-config-")
        try:
            for f in (D.PROMETHEUS_CONFIG, D.ALERTS):
                shutil.copy(f, d)
            rc, out = promtool("check", "config", os.path.join(d, "prometheus.yml"))
            self.assertEqual(rc, 0, out)
            self.assertIn("SUCCESS: 1 rule files found", out)
            self.assertRegex(out, r"SUCCESS: %d rules found" % len(D.alert_rules()))
        finally:
            shutil.rmtree(d)

    def test_check_config_scrapes_ringmx_admin_metrics(self):
        text = open(D.PROMETHEUS_CONFIG).read()
        self.assertRegex(text, r"(?m)^\s*- job_name: ringmx\b")
        self.assertRegex(text, r"(?m)^\s*metrics_path: /metrics\b")
        targets = re.findall(r'(?m)^\s*- "([^"]+:9425)"', text)
        self.assertGreaterEqual(len(targets), 2, "several ringmx instances: %s" % targets)
        self.assertRegex(text, r"(?m)^\s*- alerts\.yml\b")
        # Every line says what it is for: a comment line, or a trailing comment.
        for n, line in enumerate(text.split("\n"), 1):
            if line.strip():
                self.assertIn("#", line, "prometheus.yml:%d has no comment: %r" % (n, line))

    def test_check_rules(self):
        rc, out = promtool("check", "rules", D.ALERTS)
        self.assertEqual(rc, 0, out)
        # The test's own parser reads as many rules as promtool does.
        m = re.search(r"SUCCESS: (\d+) rules found", out)
        self.assertTrue(m, out)
        rules = D.alert_rules()
        self.assertEqual(int(m.group(1)), len(rules), "parsed %d rules" % len(rules))
        names = [a for _, a, _ in rules]
        self.assertEqual(len(names), len(set(names)), "alert names repeat")
        for group, alert, expr in rules:
            self.assertTrue(group and alert and expr, (group, alert, expr))

    def test_rule_unit_tests(self):
        rc, out = promtool("test", "rules", D.ALERTS_TEST)
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)
        # The rules the issue names are among those tested.
        tested = set(re.findall(r"(?m)^\s*alertname: (\S+)", open(D.ALERTS_TEST).read()))
        for alert in ("RingmxQueueGrowing", "RingmxTlsCertificateExpiresSoon", "RingmxSpoolDiskLow",
                      "RingmxDeliveryFailures", "RingmxRejectRatioSpike"):
            self.assertIn(alert, tested)


class Dashboard(unittest.TestCase):
    def test_is_grafana_dashboard_json(self):
        dash = D.dashboard()
        self.assertGreaterEqual(dash["schemaVersion"], 36)
        self.assertTrue(dash["uid"] and dash["title"])
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        panels = D.dashboard_panels(dash)
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        cells = set()
        for p in panels:
            g = p["gridPos"]
            self.assertTrue(0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, "%r overlaps another panel" % p["title"])
                    cells.add((x, y))
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"},
                             p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
                # Every query follows the job and instance pickers.
                for name, matchers in D.selectors(t["expr"]):
                    self.assertIn(("job", "=", "$job"), matchers, (p["title"], t["expr"]))
                    self.assertIn(("instance", "=~", "$instance"), matchers,
                                  (p["title"], t["expr"]))

    def test_has_the_panels_an_operator_needs(self):
        exprs = "\n".join(e for _, e, _ in D.dashboard_exprs())
        for needed in ("ringmx_connections_total", "ringmx_sessions_active",
                       "ringmx_messages_accepted_total", "ringmx_received_bytes_total",
                       "ringmx_replies_total", "ringmx_transactions_total",
                       "ringmx_tls_handshakes_total", "ringmx_queue_depth", "ringmx_queue_bytes",
                       "ringmx_queue_oldest_message_age_seconds", "ringmx_delivery_total",
                       "ringmx_spool_free_bytes", "ringmx_body_memory_bytes",
                       "ringmx_tls_certificate_expiry_timestamp_seconds",
                       "ringmx_shard_loop_iterations_total", "ringmx_log_lines_dropped_total"):
            self.assertIn(needed, exprs)
        for hist in ("ringmx_delivery_latency_seconds", "ringmx_spool_fsync_duration_seconds"):
            for q in ("0.5", "0.99"):
                self.assertRegex(exprs, r"histogram_quantile\(%s, sum by \(le\) \(rate\(%s_bucket"
                                 % (re.escape(q), hist))

    def test_queries_parse_as_promql(self):
        # promtool parses each query as a recording rule once Grafana's variables are filled.
        d = tempfile.mkdtemp(prefix="ringmx-dash-rules-")
        try:
            rules = [{"record": "dashboard:query_%d" % i, "expr": D.grafana_to_promql(e)}
                     for i, (where, e, _) in enumerate(D.dashboard_exprs())
                     if not where.startswith("variable")]
            self.assertGreater(len(rules), 40)
            path = os.path.join(d, "dashboard_rules.yml")
            with open(path, "w") as f:
                json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML
            rc, out = promtool("check", "rules", path)
            self.assertEqual(rc, 0, out)
        finally:
            shutil.rmtree(d)


class LiveScrape(unittest.TestCase):
    """Every name the rules and the dashboard query, against what ringmx really serves."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="ringmx-deploy-certs-")
        tls = ""
        if OPENSSL:
            tls = '\n[tls]\ncert = "%s"\nkey = "%s"\n' % make_cert(cls.certs)
        else:
            print("openssl not found: no TLS in this run", file=sys.stderr)
        cls.tls = bool(OPENSSL)
        dead = free_port()   # nobody listens: the route's deliveries are deferred
        cls.srv = Server(shards=2, extra_toml=tls + (
            '\n[delivery]\nretry_min_ms = 500\nretry_max_ms = 1000\n'
            '[[route]]\nname = "store"\ndomains = ["example.org"]\n'
            'destination = "lmtp://127.0.0.1:%d"\n' % dead +
            # A milter that is not there (mail goes on: accept): the milter series are served.
            '[[milter]]\nname = "gone"\naddress = "unix:/nonexistent/milter.sock"\n'
            'default_action = "accept"\n')).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        shutil.rmtree(cls.certs)
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def traffic(self):
        c = Client(self.srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO deploy.test")[0], 250)
        if self.tls:
            self.assertEqual(c.cmd("STARTTLS")[0], 220)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
            self.assertEqual(c.cmd("EHLO deploy.test")[0], 250)
        code, text = transaction(c, "a@example.net", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<x@not-routed.example>")[0], 550)   # relay denied
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.close()

    def scrape(self):
        status, body = http_get(self.srv.admin_port, "/metrics")
        self.assertEqual(status, 200)
        return body.decode()

    def test_every_queried_metric_label_and_value_is_served(self):
        self.traffic()
        deadline = time.monotonic() + 15
        while True:   # the route's first attempt has failed, the TLS session is gone
            text = self.scrape()
            if ((metric(text, "ringmx_delivery_total", result="deferred") or 0) >= 1
                    and metric(text, "ringmx_sessions_active") == 0):
                break
            self.assertLess(time.monotonic(), deadline, "no deferred delivery\n%s" % text)
            time.sleep(0.1)
        families = D.parse_scrape(text)
        self.assertGreater(len(families), 40)
        if self.tls:
            self.assertEqual(metric(text, "ringmx_tls_handshakes_total", result="ok"), 1)
            self.assertEqual(len(D.label_values(families, "ringmx_tls_certificate_expiry_"
                                                "timestamp_seconds").get("name", ())), 1)

        sources = [("alerts.yml %s" % alert, expr, "") for _, alert, expr in D.alert_rules()]
        sources += D.dashboard_exprs()
        problems, checked, pending = [], set(), set()
        for where, expr, legend in sources:
            names = D.metric_names(expr)
            known = {}   # family -> label names there, for this expression's grouping labels
            for name in sorted(names):
                if not_yet(name):
                    pending.add(name)
                    continue
                family, why = D.resolve(name, families)
                if why:
                    problems.append("%s: %s" % (where, why))
                    continue
                checked.add(name)
                known[family] = set(D.label_values(families, family)) | (
                    {"le"} if name.endswith("_bucket") else set())
            for name, matchers in D.selectors(expr):
                if not name.startswith(D.PREFIXES) or not_yet(name):
                    continue
                family, _ = D.resolve(name, families)
                if not family:
                    continue
                values = D.label_values(families, family, name)
                if not families[family]["series"]:
                    if family == "ringmx_tls_certificate_expiry_timestamp_seconds" and not self.tls:
                        continue
                    problems.append("%s: %s has no samples to check %s against" %
                                    (where, family, matchers))
                    continue
                for label, op, value in matchers:
                    if label in D.TARGET_LABELS:
                        continue
                    if label not in values and not (label == "le" and name.endswith("_bucket")):
                        problems.append("%s: %s has no label %r (has %s)" %
                                        (where, name, label, sorted(values)))
                        continue
                    have = values.get(label, set())
                    if op == "=" and (family, label) not in SPARSE_LABELS and value not in have:
                        problems.append("%s: %s{%s=%r}: no such value (has %s)" %
                                        (where, name, label, value, sorted(have)))
                    if op == "=~":
                        # Each alternative of a|b|c on its own; a real regex must match one.
                        parts = value.split("|") if re.fullmatch(r"[\w|]+", value) else [value]
                        for part in parts:
                            if not any(re.fullmatch(part, v) for v in have):
                                problems.append("%s: %s{%s=~%r}: %r matches no value (has %s)" %
                                                (where, name, label, value, part, sorted(have)))
            # by (...), on (...), {{legend}} labels exist on a family the expression reads.
            if known:
                usable = set().union(*known.values()) | D.TARGET_LABELS
                used = D.grouping_labels(expr) | set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
                for label in sorted(used - usable):
                    problems.append("%s: label %r is on none of %s" % (where, label, sorted(known)))
        if problems:
            self.fail("%d problems:\n%s" % (len(problems), "\n".join(problems)))
        print("checked %d metric names from %d queries; not yet implemented: %s" %
              (len(checked), len(sources), sorted(pending) or "none"), file=sys.stderr)
        self.assertGreater(len(checked), 40)
        # The allow-list is for names that are really missing and really used.
        for prefix in NOT_YET_IMPLEMENTED:
            served = [f for f in families if f.startswith(prefix)]
            self.assertEqual(served, [], "%s is served now: remove %r from NOT_YET_IMPLEMENTED"
                             % (served, prefix))
            self.assertTrue(any(n.startswith(prefix) for n in pending),
                            "nothing queries %s*: remove it from NOT_YET_IMPLEMENTED" % prefix)


if __name__ == "__main__":
    if not PROMTOOL:
        print("promtool not installed (apt-get install prometheus)", file=sys.stderr)
        sys.exit(77)
    main()
