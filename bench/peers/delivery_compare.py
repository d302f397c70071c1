#!/usr/bin/env python3
"""End-to-end delivery: ringmx relaying next to a private Postfix relaying the same load.

  bench/peers/delivery_compare.py [--quick] [--runs N] [--messages N] [--per-connection 100,1]
                                  [--half-seconds S] [--out DIR] [--json FILE]

Run as root on Debian 12 (a private Postfix master, smtp-sink and Dovecot dropping to nobody).
Everything on 127.0.0.1, each server with its own config and queue in a temp dir under
/var/spool (removed at the end); every process started here is stopped by PID (its process
group) in a finally block, never by name.

Servers, started once and kept up for the whole run:
  ringmx-sink    ringmx (fsync before the 250), [[route]] example.org -> smtp://sink
  ringmx-lmtp    ringmx, [[route]] test.example -> lmtp://a private Dovecot LMTP (the one of
                 tests/integration/test_bench_lmtp.py, plus a user b@test.example; maildir)
  postfix        a private Postfix (private_postfix.PrivatePostfix) relaying everything to the
                 same sink: relayhost = [127.0.0.1]:SINK, relay_domains = example.org,
                 default/relay_transport = smtp, no TLS to the sink; Postfix's defaults
                 otherwise (smtp destination concurrency 20; ringmx: 32 per destination)
  ringmx-accept  ringmx without a route: keeps the mail in its local spool (accept only)
  smtp-sink      `smtp-sink -c -u nobody 127.0.0.1:PORT 256` (discards; -c counts messages,
                 the cross-check of what arrived downstream)
Loads (ringmx-bench, 32 connections, 1 KiB, null sender, one recipient, --messages N,
bounded by --duration): 100 messages per connection, and 1 per connection.
Interleaved: for each repetition, for each load, every server once; a warm-up first.

Per run:
  e2e msgs/s     messages delivered downstream / (time the queue was empty - time the load
                 started); queue: ringmx_queue_depth (admin /metrics), Postfix: its queue
                 directories (incoming, active, deferred, hold, maildrop), polled every 50 ms
                 once ringmx-bench has exited (everything is accepted then). Delivered:
                 ringmx_delivery_total{result="delivered"}, Postfix: status=sent in its log;
                 cross-checked against the sink's counter and Dovecot's maildir files.
  accept msgs/s  ringmx-bench's messages_per_s (accepted / its elapsed time)
  CPU µs/msg     utime+stime+cutime+cstime over the server's process tree from /proc
                 (compare.tree_usage), after the queue drained, per accepted message; not the
                 sink's or Dovecot's CPU
  delivery p99   ringmx only: p99 of ringmx_delivery_duration_seconds (one transaction with
                 the destination, MAIL to last reply) over the run, interpolated in the
                 histogram's buckets like Prometheus' histogram_quantile
Then, at half of peak (--half-seconds, 0: skipped): each delivering ringmx again, open loop
(--rate) at half its median e2e msgs/s of the load with the most messages per connection, and
ringmx accept-only at that same rate right after it:
  250 -> downstream 250  p50/p99 of ringmx_delivery_latency_seconds over the run (from the 250
                 ringmx gave its client to the destination's 250 for the recipient)
  CPU ratio      CPU µs/msg delivering over accept-only at the same offered rate (a server's
                 CPU per message falls as its load rises, so the closed-loop ratio above
                 compares different batch sizes when the destination is the bottleneck)
Reported: median (min-max) over --runs; ratios taken inside each repetition, then the median.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True     # no __pycache__ churn in the checkout from the imports below
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(REPO, "tests", "integration"))

import compare  # noqa: E402
from compare import log, mmm, ratios, tree_usage  # noqa: E402
import private_postfix  # noqa: E402
from harness import http_get, metric  # noqa: E402  (tests/integration)
import test_bench_lmtp  # noqa: E402  (its Dovecot class and installer)

SMTP_SINK = "/usr/sbin/smtp-sink"
SINK_DOMAIN, LMTP_DOMAIN = "example.org", test_bench_lmtp.DOMAIN
RCPT_LOCAL = "b"
POLL = 0.05


# ------------------------------------------------------------------ servers

class Sink(compare.Server):
    """smtp-sink, discarding; -c writes a running message counter to its log."""

    def __init__(self, base):
        self.name = "smtp-sink"
        super().__init__(base, None, False)
        self.port = private_postfix.free_port()   # not an ephemeral one a client could take

    def start(self):
        self.launch([SMTP_SINK, "-c", "-u", "nobody", "127.0.0.1:%d" % self.port, "256"])

    def count(self):
        """Messages received so far (the last mesg=N the sink wrote)."""
        try:
            with open(os.path.join(self.base, "server.log"), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 256))
                tail = f.read().decode(errors="replace")
        except OSError:
            return None
        m = re.findall(r"mesg=(\d+)", tail)
        return int(m[-1]) if m else 0


class RingmxServer(compare.Ringmx):
    """ringmx as compare.py runs it, plus an admin port and, optionally, one route."""

    def __init__(self, base, name, binary, route=None):
        self.name = name
        super().__init__(base, None, False, binary=binary)
        self.port = private_postfix.free_port()
        self.admin = private_postfix.free_port()
        self.route = route          # (domain, destination) or None: accept only
        self.rcpt_domain = route[0] if route else SINK_DOMAIN

    def start(self):
        conf = os.path.join(self.base, "ringmx.toml")
        route = ""
        if self.route:
            route = ('[delivery]\nretry_min_ms = 1000\n[[route]]\nname = "%s"\n'
                     'domains = ["%s"]\ndestination = "%s"\n' % (
                         self.name.split("-")[-1], self.route[0], self.route[1]))
        with open(conf, "w") as f:
            f.write('[server]\nhostname = "mx.bench"\nshards = %d\nlog_level = "warn"\n'
                    "max_connections = 100000\nmax_connections_per_ip = 100000\n"
                    '[spool]\ndir = "%s"\n[admin]\nlisten = "127.0.0.1:%d"\n'
                    '[[listener]]\nname = "smtp"\naddress = "127.0.0.1:%d"\n%s'
                    % (os.cpu_count(), os.path.join(self.base, "spool"), self.admin,
                       self.port, route))
        self.launch([self.binary, "--config", conf])

    def wait_ready(self, seconds=20):
        super().wait_ready(seconds)
        with open(os.path.join(self.base, "server.log"), "rb") as f:
            if b"event=started" not in f.read():
                raise RuntimeError("%s greets but logged no event=started" % self.name)

    def metrics(self):
        return http_get(self.admin, "/metrics")[1].decode()

    def queued(self):
        return int(metric(self.metrics(), "ringmx_queue_depth") or 0) if self.route else 0

    def counters(self):
        text = self.metrics()
        buckets, latency = ([(float(le), float(v)) for le, v in re.findall(
            r'^%s_bucket\{le="([^"]+)"\} (\S+)' % name, text, re.M)]
            for name in ("ringmx_delivery_duration_seconds", "ringmx_delivery_latency_seconds"))
        return dict(cpu=metric(text, "process_cpu_seconds_total") or 0,
                    relay_conns=metric(text, "ringmx_relay_connections_total") or 0,
                    delivered=metric(text, "ringmx_delivery_total", result="delivered") or 0,
                    deferred=metric(text, "ringmx_delivery_total", result="deferred") or 0,
                    failed=metric(text, "ringmx_delivery_total", result="failed") or 0,
                    buckets=buckets, latency=latency)


class PostfixRelay:
    """private_postfix.PrivatePostfix relaying everything to the sink."""
    name = "postfix"
    client_args = []
    rcpt_domain = SINK_DOMAIN
    QUEUES = ("incoming", "active", "deferred", "hold", "maildrop")

    def __init__(self, sink_port):
        self.pf = private_postfix.PrivatePostfix({"smtp": ""})
        # Edited in place (postconf -e) rather than appended with extra_main: no duplicate
        # keys, so no "overriding earlier entry" warning from every process Postfix starts.
        self.settings = ["relay_domains = %s" % SINK_DOMAIN,
                         "relayhost = [127.0.0.1]:%d" % sink_port,
                         "default_transport = smtp", "relay_transport = smtp",
                         "smtp_tls_security_level = none", "smtp_host_lookup = native"]
        r = compare.sh(["postconf", "-c", self.pf.conf, "-e"] +
                       [x.replace(" = ", "=", 1) for x in self.settings], timeout=60)
        if r.returncode != 0:
            shutil.rmtree(self.pf.base, ignore_errors=True)
            raise RuntimeError("postconf -e: " + r.stdout + r.stderr)
        self.port = self.pf.ports["smtp"]
        self.proc = None
        self.notes = []

    def start(self):
        self.pf.start()
        if not self.pf.master:
            raise RuntimeError("no Postfix master PID")

    def roots(self):
        return [self.pf.master] if self.pf.master else []

    def alive(self):
        return bool(self.pf.master) and os.path.exists("/proc/%d" % self.pf.master)

    def queued(self):
        """1 as soon as any queue file is found (early exit: the poll stays cheap), else 0."""
        todo = [os.path.join(self.pf.queue, q) for q in self.QUEUES]
        while todo:
            try:
                with os.scandir(todo.pop()) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            todo.append(e.path)
                        else:
                            return 1
            except OSError:
                pass
        return 0

    def counters(self):
        return dict(log_offset=self.pf.log_size())

    def log_counts(self, since, want, timeout=20):
        """status=sent/deferred/bounced counts in the mail log after `since`, once postlogd
        (asynchronous) has written `want` outcomes or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.pf.maillog, "rb") as f:
                    f.seek(since)
                    text = f.read().decode(errors="replace")
            except OSError:
                text = ""
            c = {k: text.count(" status=%s " % k) for k in ("sent", "deferred", "bounced")}
            if c["sent"] + c["bounced"] >= want or time.monotonic() > deadline:
                return c
            time.sleep(0.2)

    def stop(self):
        self.pf.stop()          # postfix stop, then its master by PID; removes its temp dir


def ringmx_alive(s):
    return s.proc is not None and s.proc.poll() is None


# ------------------------------------------------------------------ measuring

def hist_quantile(q, before, after):
    """Prometheus-style quantile of the bucket deltas after - before (seconds)."""
    prev = dict(before)
    cum = [(le, v - prev.get(le, 0.0)) for le, v in after]
    if not cum or cum[-1][1] <= 0:
        return None
    rank = q * cum[-1][1]
    lo, clo = 0.0, 0.0
    for le, c in cum:
        if c >= rank:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * ((rank - clo) / (c - clo) if c > clo else 1.0)
        lo, clo = le, c
    return None


def bench_cmd(a, srv, load):
    cmd = compare.bench_cmd(a, srv, load)
    cmd[cmd.index("--to") + 1] = "%s@%s" % (RCPT_LOCAL, srv.rcpt_domain)
    return cmd


def maildir_count(dc, clear=False):
    """Messages in the bench user's maildir. clear: then removes the whole maildir (Dovecot
    makes it again at the next delivery): every run starts from an empty one. Deleting only
    the files leaves Dovecot a uidlist and index to resync and a directory that never
    shrinks: each run was slower than the one before."""
    box = os.path.join(dc.home, RCPT_LOCAL, "Maildir")
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len(os.listdir(os.path.join(box, sub)))
        except OSError:
            pass
    if clear:
        shutil.rmtree(box, ignore_errors=True)
    return n


def run_one(a, srv, load, tag, sink, dc):
    """One measured run; returns a result dict."""
    cmd = bench_cmd(a, srv, load)
    roots = srv.roots()
    down = (lambda: sink.count()) if srv.name in ("ringmx-sink", "postfix") else \
        (lambda: maildir_count(dc)) if srv.name == "ringmx-lmtp" else (lambda: None)
    c0 = srv.counters()
    down0 = down()
    cpu0 = tree_usage(roots)[0]
    out_path = os.path.join(a.out, "bench.%s.json" % tag)
    wall = time.time()
    t0 = time.monotonic()
    try:
        with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
            rc = subprocess.run(cmd, stdout=out, stderr=err,
                                timeout=load["duration"] + 60).returncode
    except subprocess.TimeoutExpired:
        rc = -9
    t_bench = time.monotonic()
    deadline = t_bench + a.drain
    while srv.queued() and time.monotonic() < deadline:
        time.sleep(POLL)
    t_empty = time.monotonic()
    drained = not srv.queued()
    cpu1 = tree_usage(roots)[0]
    try:
        with open(out_path) as f:
            j = json.load(f)
    except (OSError, ValueError):
        j = {}
    ok, sent = j.get("ok", 0), j.get("sent", 0)
    r = dict(server=srv.name, load=load["key"], tag=tag, rc=rc, when=wall, ok=ok, sent=sent,
             accept_rate=j.get("messages_per_s", 0.0), bench_elapsed=j.get("elapsed_s", 0.0),
             accept_p99_ms=(j.get("latency_us", {}).get("message", {}).get("p99", 0) or 0) / 1e3,
             cpu_us=(cpu1 - cpu0) * 1e6 / ok if ok else None, drained=drained,
             errors=j.get("errors", {}), cmd=cmd, delivered=None, e2e_rate=None, e2e_s=None,
             delivery_p99_ms=None, latency_p50_ms=None, latency_p99_ms=None, downstream=None,
             deferred=None, failed=None)
    if srv.name != "ringmx-accept":
        if srv.name == "postfix":
            c = srv.log_counts(c0["log_offset"], ok)
            delivered, r["deferred"], r["failed"] = c["sent"], c["deferred"], c["bounced"]
        else:
            c1 = srv.counters()
            delivered = int(c1["delivered"] - c0["delivered"])
            r["deferred"] = int(c1["deferred"] - c0["deferred"])
            r["failed"] = int(c1["failed"] - c0["failed"])
            r["relay_connections"] = int(c1["relay_conns"] - c0["relay_conns"])
            p = hist_quantile(0.99, c0["buckets"], c1["buckets"])
            r["delivery_p99_ms"] = p * 1e3 if p is not None else None
            for q in (0.5, 0.99):
                p = hist_quantile(q, c0["latency"], c1["latency"])
                r["latency_p%d_ms" % round(q * 100)] = p * 1e3 if p is not None else None
        r["delivered"] = delivered
        r["e2e_s"] = t_empty - t0
        r["e2e_rate"] = delivered / (t_empty - t0) if drained and delivered else None
        # The sink counts a message at its end of data, before its reply: give it a moment.
        lag = time.monotonic() + 5
        n = down()
        while n is not None and n - down0 < delivered and time.monotonic() < lag:
            time.sleep(0.1)
            n = down()
        r["downstream"] = n - down0 if n is not None and down0 is not None else None
    if isinstance(srv, RingmxServer) and ok:
        # ringmx's own process_cpu_seconds_total: finer than /proc's 10 ms ticks (cross-check)
        r["cpu_us_metric"] = (srv.counters()["cpu"] - c0["cpu"]) * 1e6 / ok
    if srv.name == "ringmx-lmtp":
        maildir_count(dc, clear=True)       # a fresh maildir for every run
    log("  %-13s %-7s %6d/%-6d ok  accept %7.0f msg/s  e2e %s msg/s  cpu %s us/msg%s%s%s" % (
        srv.name, tag.split(".")[1], ok, sent, r["accept_rate"],
        "%7.0f" % r["e2e_rate"] if r["e2e_rate"] else "      -",
        "%.0f" % r["cpu_us"] if r["cpu_us"] else "-",
        "  delivered %s down %s" % (r["delivered"], r["downstream"])
        if r["delivered"] is not None else "",
        "  p99 %.2f ms" % r["delivery_p99_ms"] if r["delivery_p99_ms"] else "",
        "" if rc == 0 and drained else "  rc %s drained %s %s" % (
            rc, drained, json.dumps(r["errors"].get("by_kind", {})))))
    return r


# ------------------------------------------------------------------ report

LABELS = {"ringmx-sink": "ringmx -> smtp-sink", "ringmx-lmtp": "ringmx -> Dovecot LMTP",
          "postfix": "Postfix -> smtp-sink", "ringmx-accept": "ringmx accept-only"}


def summarize(rows, loads, servers):
    out = {}
    for k in loads:
        per = {}
        for s in servers:
            runs = [r for r in rows if r["load"] == k and r["server"] == s]
            if not runs:
                continue
            good = [r for r in runs if r["ok"]]
            med = lambda key: (statistics.median([r[key] for r in good if r[key] is not None])  # noqa: E731
                               if any(r[key] is not None for r in good) else None)
            per[s] = dict(runs=len(runs), ok=sum(r["ok"] for r in runs),
                          sent=sum(r["sent"] for r in runs),
                          delivered=(sum(r["delivered"] for r in runs)
                                     if all(r["delivered"] is not None for r in runs) else None),
                          downstream=(sum(r["downstream"] for r in runs)
                                      if all(r["downstream"] is not None for r in runs) else None),
                          all_drained=all(r["drained"] for r in runs),
                          e2e_rate=med("e2e_rate"), accept_rate=med("accept_rate"),
                          cpu_us=med("cpu_us"), delivery_p99_ms=med("delivery_p99_ms"),
                          accept_p99_ms=med("accept_p99_ms"))
        rr = lambda s, ref, key: ratios([r for r in rows if r["load"] == k and r["server"] == s],  # noqa: E731
                                        [r for r in rows if r["load"] == k and r["server"] == ref],
                                        key, True)
        rat = {
            "ringmx_over_postfix_e2e_rate": rr("postfix", "ringmx-sink", "e2e_rate"),
            "ringmx_over_postfix_accept_rate": rr("postfix", "ringmx-sink", "accept_rate"),
            "ringmx_over_postfix_cpu": rr("postfix", "ringmx-sink", "cpu_us"),
            "ringmx_sink_over_accept_only_cpu": rr("ringmx-accept", "ringmx-sink", "cpu_us"),
            "ringmx_lmtp_over_accept_only_cpu": rr("ringmx-accept", "ringmx-lmtp", "cpu_us"),
        }
        out[k] = dict(servers=per, ratios={n: dict(median=statistics.median(v) if v else None,
                                                     each=v) for n, v in rat.items()})
    return out


def report(a, rows, loads, servers, summary, notes, started, setup):
    lines = []
    lines.append("ringmx delivery, end to end, next to Postfix (bench/peers/delivery_compare.py %s)"
                 % " ".join(sys.argv[1:]))
    lines.append("%s UTC; %s; %d run%s per cell, median (min–max); %d connections, 1 KiB, "
                 "null sender, 1 recipient; took %.1f min" % (
                     datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
                     .strftime("%Y-%m-%d %H:%M"), compare.machine(), a.runs,
                     "" if a.runs == 1 else "s", compare.SESSIONS,
                     (time.time() - started) / 60))
    for k, load in loads.items():
        lines.append("")
        lines.append("### %s, %d messages (bounded to %d s)" % (load["title"], load["messages"],
                                                                 load["duration"]))
        lines.append("")
        lines.append("| server | e2e msgs/s | accept msgs/s | server CPU µs/msg | "
                     "delivery p99 ms | accept p99 ms | ok / sent | delivered | downstream |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in servers:
            runs = [r for r in rows if r["load"] == k and r["server"] == s]
            if not runs:
                continue
            good = [r for r in runs if r["ok"]]
            su = summary[k]["servers"][s]
            lines.append("| %s | %s | %s | %s | %s | %s | %d / %d | %s | %s |" % (
                LABELS[s], mmm([r["e2e_rate"] for r in good], "%.0f"),
                mmm([r["accept_rate"] for r in runs], "%.0f"),
                mmm([r["cpu_us"] for r in good], "%.0f"),
                mmm([r["delivery_p99_ms"] for r in good], "%.2f"),
                mmm([r["accept_p99_ms"] for r in good], "%.1f"),
                su["ok"], su["sent"],
                "–" if su["delivered"] is None else su["delivered"],
                "–" if su["downstream"] is None else su["downstream"]))
        rt = summary[k]["ratios"]
        lines.append("")
        lines.append("ringmx/Postfix (both -> smtp-sink): e2e msgs/s %s, accept msgs/s %s, "
                     "CPU/msg %s" % tuple(mmm(rt[n]["each"], "%.2f") for n in (
                         "ringmx_over_postfix_e2e_rate", "ringmx_over_postfix_accept_rate",
                         "ringmx_over_postfix_cpu")))
        lines.append("ringmx delivering / ringmx accept-only, CPU/msg (target <= 2): "
                     "-> smtp-sink %s, -> Dovecot LMTP %s" % tuple(mmm(rt[n]["each"], "%.2f") for n in (
                         "ringmx_sink_over_accept_only_cpu", "ringmx_lmtp_over_accept_only_cpu")))
    lines.append("")
    lines.append("e2e msgs/s = delivered downstream / (queue empty - load start); accept msgs/s = "
                 "ringmx-bench's messages_per_s; CPU = the server's process tree only (not the "
                 "sink's, not Dovecot's) per accepted message; delivery p99 = "
                 "ringmx_delivery_duration_seconds (one transaction with the destination); "
                 "accept p99 = ringmx-bench's message latency; downstream = the sink's counter "
                 "or files in Dovecot's maildir.")
    lines += setup
    if notes:
        lines.append("Notes: " + "; ".join(notes))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ half of peak

def half_phase(a, servers, rows, loads, half_rows, half_loads, sink, dc):
    """Each delivering ringmx again, open loop at half its median e2e rate of the
    most-messages-per-connection load, and ringmx accept-only at the same rate, in turn:
    the latency from the 250 to the destination's 250 (ringmx_delivery_latency_seconds)
    below saturation, and CPU per message against accepting alone at an equal rate (a
    server's CPU per message falls as its load rises: batches grow)."""
    if a.half_seconds <= 0:
        return
    by_name = {s.name: s for s in servers}
    accept = by_name.get("ringmx-accept")
    peak_key = max(loads, key=lambda k: loads[k]["per"])
    for name in ("ringmx-sink", "ringmx-lmtp"):
        srv = by_name.get(name)
        peaks = [r["e2e_rate"] for r in rows
                 if r["server"] == name and r["load"] == peak_key and r["e2e_rate"]]
        if srv is None or accept is None or not peaks:
            continue
        rate = max(1, round(statistics.median(peaks) / 2))
        key = "half-" + name
        load = dict(key=key, size=1024, per=loads[peak_key]["per"], rate=rate,
                    messages=int(rate * a.half_seconds), duration=a.half_seconds + 5,
                    peak=statistics.median(peaks))
        half_loads[key] = load
        for rep in range(1, a.runs + 1):
            log("rep %d/%d, %s at %d msgs/s (half of %.0f), %d messages" % (
                rep, a.runs, name, rate, load["peak"], load["messages"]))
            for s in (srv, accept):
                if not ringmx_alive(s):
                    continue
                r = run_one(a, s, load, "h%d.%s.%s" % (rep, key, s.name), sink, dc)
                r["rep"] = rep
                half_rows.append(r)
                time.sleep(1)


def half_report(half_rows, half_loads):
    if not half_loads:
        return ""
    lines = ["", "### At half of peak: open loop, %d connections, 1 KiB, the rate offered = half "
             "the median e2e msgs/s above" % compare.SESSIONS, "",
             "| route | offered msgs/s | accepted msgs/s | 250 -> downstream 250 p50 ms | p99 ms | "
             "delivery p99 ms | CPU µs/msg | accept-only CPU µs/msg, same rate | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, load in half_loads.items():
        mine = [r for r in half_rows if r["load"] == key and r["server"] != "ringmx-accept"]
        ref = [r for r in half_rows if r["load"] == key and r["server"] == "ringmx-accept"]
        if not mine:
            continue
        lines.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            LABELS[mine[0]["server"]].split("-> ")[-1], load["rate"],
            mmm([r["accept_rate"] for r in mine], "%.0f"),
            mmm([r["latency_p50_ms"] for r in mine], "%.2f"),
            mmm([r["latency_p99_ms"] for r in mine], "%.2f"),
            mmm([r["delivery_p99_ms"] for r in mine], "%.2f"),
            mmm([r["cpu_us"] for r in mine], "%.0f"), mmm([r["cpu_us"] for r in ref], "%.0f"),
            mmm(ratios(ref, mine, "cpu_us", True), "%.2f")))
    lines.append("")
    lines.append("250 -> downstream 250 = ringmx_delivery_latency_seconds: from the 250 ringmx "
                 "gave its client to the destination's 250 for the recipient (histogram "
                 "quantiles, interpolated in the buckets). ratio = CPU/msg delivering over "
                 "accept-only at the same offered rate, taken inside each repetition.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--quick", action="store_true",
                    help="3,000 messages, one run unless --runs (smoke test)")
    ap.add_argument("--runs", type=int, default=None, help="repetitions (default 3; --quick 1)")
    ap.add_argument("--messages", type=int, default=None,
                    help="messages per run (default 20,000; --quick 3,000)")
    ap.add_argument("--per-connection", default="100,1",
                    help="loads: messages per connection, comma separated (default 100,1)")
    ap.add_argument("--duration", type=float, default=None,
                    help="bound on each load's sending time, s (default 120; --quick 30)")
    ap.add_argument("--drain", type=float, default=None,
                    help="bound on the wait for an empty queue, s (default 180; --quick 60)")
    ap.add_argument("--half-seconds", type=float, default=None,
                    help="length of each half-of-peak run, s (default 20; --quick 10; 0: none)")
    ap.add_argument("--out", default=None,
                    help="raw results and logs (default /var/tmp/ringmx-delivery.*)")
    ap.add_argument("--json", default=None, help="write the results as JSON to FILE")
    ap.add_argument("--bench", default=os.path.join(REPO, "build/release/bench/ringmx-bench"))
    ap.add_argument("--ringmx", default=os.path.join(REPO, "build/release/tools/ringmx"))
    a = ap.parse_args()
    a.runs = a.runs or (1 if a.quick else 3)
    a.messages = a.messages or (3000 if a.quick else 20000)
    a.duration = a.duration or (30 if a.quick else 120)
    a.drain = a.drain or (60 if a.quick else 180)
    if a.half_seconds is None:
        a.half_seconds = 10 if a.quick else 20
    if os.geteuid() != 0:
        sys.exit("delivery_compare.py: run as root (Postfix master, smtp-sink -u nobody, Dovecot)")
    for p in (a.bench, a.ringmx):
        if not os.access(p, os.X_OK):
            sys.exit("delivery_compare.py: no %s; ninja -C build/release first" % p)
    started = time.time()
    load_before = os.getloadavg()
    compare.raise_nofile()
    notes = []
    if not all(os.access(p, os.X_OK) for p in (SMTP_SINK, private_postfix.POSTFIX,
                                               compare.Postfix.MASTER)):
        compare.apt_install(["postfix"], notes)
    why = test_bench_lmtp.install_dovecot()
    if why:
        notes.append("Dovecot LMTP left out: " + why)
    a.out = a.out or tempfile.mkdtemp(prefix="ringmx-delivery.", dir="/var/tmp")
    os.makedirs(a.out, exist_ok=True)
    loads = {}
    for per in [int(x) for x in a.per_connection.split(",") if x.strip()]:
        loads["%dpc" % per] = dict(key="%dpc" % per, size=1024, per=per, messages=a.messages,
                                   duration=a.duration,
                                   title="1 KiB, %d message%s per connection" % (
                                       per, "" if per == 1 else "s"))

    base = tempfile.mkdtemp(prefix="ringmx-delivery.", dir="/var/spool")
    os.chmod(base, 0o755)
    sink = dc = None
    started_servers = []
    rows = []
    half_rows, half_loads = [], {}
    versions = {}
    postfix_settings = []
    try:
        sink = Sink(base)
        sink.start()
        sink.wait_ready()
        log("smtp-sink on 127.0.0.1:%d (PID %d)" % (sink.port, sink.proc.pid))
        if not why:
            dc = test_bench_lmtp.Dovecot()
            with open(os.path.join(dc.base, "users"), "a") as f:
                f.write("%s@%s:{PLAIN}unused::::::\n" % (RCPT_LOCAL, LMTP_DOMAIN))
            dc.start()
            log("Dovecot LMTP on 127.0.0.1:%d (PID %d)" % (dc.port, dc.proc.pid))
        servers = started_servers       # every one is stopped in the finally block
        servers.append(RingmxServer(base, "ringmx-sink", a.ringmx,
                                    (SINK_DOMAIN, "smtp://127.0.0.1:%d" % sink.port)))
        if dc:
            servers.append(RingmxServer(base, "ringmx-lmtp", a.ringmx,
                                        (LMTP_DOMAIN, "lmtp://127.0.0.1:%d" % dc.port)))
        servers.append(PostfixRelay(sink.port))
        postfix_settings = servers[-1].settings
        servers.append(RingmxServer(base, "ringmx-accept", a.ringmx))
        for s in servers:
            s.start()
            if isinstance(s, RingmxServer):
                s.wait_ready()
            log("%s on 127.0.0.1:%d (PID %d)" % (s.name, s.port, s.roots()[0]))
        versions["ringmx"] = servers[0].version()
        versions["postfix"] = compare.postfix_version()
        versions["dovecot"] = (compare.sh([test_bench_lmtp.DOVECOT, "--version"], timeout=30)
                               .stdout.strip() if dc else None)
        # Warm-up, not measured: Postfix forks its daemons, ringmx opens its relay connections.
        for s in servers:
            warm = dict(next(iter(loads.values())), messages=300, duration=10, key="warm")
            run_one(a, s, warm, "warmup.w.%s" % s.name, sink, dc)
        for rep in range(1, a.runs + 1):
            for k, load in loads.items():
                log("rep %d/%d, %s, %d messages" % (rep, a.runs, load["title"], load["messages"]))
                for s in servers:
                    if not (s.alive() if isinstance(s, PostfixRelay) else ringmx_alive(s)):
                        notes.append("%s was not running for rep %d %s" % (s.name, rep, k))
                        continue
                    r = run_one(a, s, load, "r%d.%s.%s" % (rep, k, s.name), sink, dc)
                    r["rep"] = rep
                    rows.append(r)
                    time.sleep(1)
        half_phase(a, servers, rows, loads, half_rows, half_loads, sink, dc)
        for s in servers:
            if isinstance(s, RingmxServer) and not ringmx_alive(s):
                notes.append("%s exited during the run (%s)" % (s.name, s.proc.returncode))
    finally:
        for s in started_servers:
            if isinstance(s, PostfixRelay):
                try:
                    with open(s.pf.maillog, "rb") as f:     # the tail, with the raw results
                        f.seek(max(0, os.fstat(f.fileno()).st_size - (256 << 10)))
                        data = f.read()
                    with open(os.path.join(a.out, "postfix.maillog.tail"), "wb") as f:
                        f.write(data)
                except OSError:
                    pass
            try:
                s.stop()
            except Exception as e:      # keep stopping the others
                log("stopping %s: %s" % (s.name, e))
        if dc:
            try:
                with open(os.path.join(a.out, "dovecot.log.tail"), "w") as f:
                    f.write(dc.log())
            except OSError:
                pass
            dc.stop()
            dc.cleanup()
        if sink:
            sink.stop()
        for s in started_servers:
            src = os.path.join(getattr(s, "base", "/nonexistent"), "server.log")
            if isinstance(s, RingmxServer) and os.path.exists(src):
                shutil.copy(src, os.path.join(a.out, "%s.server.log" % s.name))
        shutil.rmtree(base, ignore_errors=True)

    for r in rows:
        if r["ok"] and r["ok"] < r["sent"]:
            notes.append("%s: %d of %d accepted (%s)" % (r["tag"], r["ok"], r["sent"],
                                                       json.dumps(r["errors"].get("by_kind"))))
        if r["delivered"] is not None and (not r["drained"] or r["delivered"] < r["ok"]):
            notes.append("%s: %d delivered of %d accepted%s" % (
                r["tag"], r["delivered"], r["ok"], "" if r["drained"] else ", queue not empty "
                "%.0f s after the load" % a.drain))
        if r["downstream"] is not None and r["delivered"] is not None and \
                r["downstream"] != r["delivered"]:
            notes.append("%s: downstream counted %d, server said %d delivered" % (
                r["tag"], r["downstream"], r["delivered"]))
    names = [n for n in ("ringmx-sink", "ringmx-lmtp", "postfix", "ringmx-accept")
             if any(r["server"] == n for r in rows)]
    summary = summarize(rows, loads, names)
    setup = ["Versions: %s." % "; ".join("%s: %s" % kv for kv in versions.items() if kv[1]),
             "ringmx: shards = %d, fsync before 250, [delivery] retry_min_ms = 1000, other "
             "delivery settings default (max_connections_per_destination = 32). Postfix: "
             "private_postfix.py's main.cf (default_process_limit 200) with %s; Postfix's smtp "
             "concurrency defaults (20 per destination). Dovecot LMTP: test_bench_lmtp.py's "
             "config (maildir, mail_fsync = never)." % (
                 os.cpu_count(), ", ".join(postfix_settings)),
             "Load average (1, 5, 15 min) at the start %s, at the end %s: the machine is shared "
             "(2 CPUs), other work running at the same time shows here." % (
                 "/".join("%.1f" % x for x in load_before),
                 "/".join("%.1f" % x for x in os.getloadavg())),
             "Queue polls: every %.0f ms once ringmx-bench has exited (ringmx: GET /metrics, "
             "~0.1 ms of ringmx CPU each)." % (POLL * 1e3)]
    text = report(a, rows, loads, names, summary, notes, started, setup)
    text += half_report(half_rows, half_loads)
    print(text)
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(text)
    result = dict(generated=datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
                  .isoformat(), argv=sys.argv[1:], machine=compare.machine(), versions=versions,
                  runs=a.runs, loads=loads, summary=summary, rows=rows, notes=notes,
                  half_loads=half_loads, half_rows=half_rows)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    print("raw results and logs: " + a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
