#!/usr/bin/env python3
"""What one milter in the chain costs ringmx: the same load against ringmx
with no milter and against the same config plus one [[milter]] pointing at
noop_milter (bench/peers/noop_milter.cc: a filter that changes nothing and
answers every step with CONTINUE, the realistic no-op milter; --no-reply asks
for every SMFIP_NR_* flag instead, so only EOB is answered), in alternating
rounds (the order inside a round flips from one round to the next, so a
drift of the machine falls on both sides), in one run. noop_milter serves
each connection from a thread of its own with blocking reads (libmilter's
classic model; --epoll: one event-loop thread for all): ringmx's figure
includes the kernel's work of waking the milter's reader at each command,
which differs with the model.

The load: ringmx-bench, 32 connections, 1 KiB messages, 10 per connection
(--per-connection; ringmx opens one milter connection per SMTP session, so
the connect, OPTNEG, CONNECT, HELO and QUIT are shared by that many
messages), the same in both. One ringmx shard, its spool in a temp dir on
disk (the harness's Server, as proxy_cost.py and frontdoor_cost.py use it),
or under --spool-dir (/dev/shm takes the disk out: ringmx fsyncs each group
commit, and at a lower rate the groups are smaller, so the fsync's share of
a message grows with any slowdown, the milter's included).

Two phases, both in every round. Closed loop ("max"): as fast as each
set-up goes (--messages, default 20,000), as proxy_cost.py and
frontdoor_cost.py measure: the throughput figures, and the CPU figures the
target is judged on. Open loop ("rate"): the same offered rate for both,
--rate msgs/s (default 2,500, below what the milter set-up reaches on 2
cores; --rate-messages, default 10,000): the CPU at equal, moderate load.
Per message, both set-ups cost more there than flat out (a busy event loop
spreads each wake-up, io_uring_enter and fsync over many messages, an idle
one pays them per event), and the milter's round trips are events of their
own, so the open-loop difference is the larger one.

Per run: messages/s (accepted, over ringmx-bench's own elapsed time), and
ringmx's CPU per accepted message: utime + stime of the ringmx process from
/proc/PID/stat (proxy_cost.cpu_seconds), around the measured load only (after
a warm-up of 1,000 messages on the same server). The milter's CPU is not in
it: noop_milter is its own process, and its CPU per message is reported
beside, for information. The milter runs also check from ringmx's /metrics
and the milter's counters that the milter saw the end of every message.

Reported per phase: every run, the medians, the difference of the medians in
us per message, and the median of the differences inside each round (the
paired figure, steadier when the machine drifts). The issue's target: under
20 us of ringmx CPU per message added by the milter client.

--perf DIR records `perf record -e cpu-clock -g` of ringmx during each
measured load into DIR/{max,rate}-{none,milter}-rN.data (the CPU figures of
such a run carry perf's own overhead: profile, do not quote).

Usage: milter_cost.py RINGMX RINGMX_BENCH [--milter NOOP_MILTER] [--rounds R]
       [--messages N] [--rate R] [--rate-messages N] [--per-connection K]
       [--connections C] [--size S] [--no-reply] [--unix] [--epoll]
       [--spool-dir DIR] [--perf DIR] [--json]
Every load is bounded (--messages, ringmx-bench --duration 60, a 120 s
timeout); every process started here is stopped by its PID."""

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
sys.path.insert(0, HERE)

from proxy_cost import cpu_seconds  # noqa: E402  (utime + stime of one process)

WARMUP = 1000
TARGET_US = 20.0


class NoopMilter:
    """noop_milter on 127.0.0.1 and a free port (or a unix socket in a temp dir),
    stopped by its PID; stop() returns its counters."""

    def __init__(self, binary, no_reply=False, unix=False, epoll=False):
        from harness import free_port
        self.port = free_port()
        args = [binary, "--listen", "127.0.0.1:%d" % self.port]
        self.dir = None
        if unix:
            self.dir = tempfile.mkdtemp(prefix="ringmx-noop-milter-")
            self.path = os.path.join(self.dir, "milter.sock")
            args += ["--unix", self.path]
            self.address = "unix:%s" % self.path
        else:
            self.address = "inet:127.0.0.1:%d" % self.port
        if no_reply:
            args.append("--no-reply")
        if epoll:
            args.append("--epoll")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"listening":
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("noop_milter did not start: %r %s" %
                               (line, self.proc.stderr.read().decode()[-2000:]))

    def stop(self):
        counters = {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            for field in out.decode().split():
                k, _, v = field.partition("=")
                if v.isdigit():
                    counters[k] = int(v)
        if self.dir:
            shutil.rmtree(self.dir, True)
        return counters


def milter_toml(address, reuse=False):
    # Generous timeouts: a loaded 2-core machine must not turn into failed steps.
    return ('\n[[milter]]\nname = "noop"\naddress = "%s"\nconnect_timeout_ms = 10000\n'
            'command_timeout_ms = 30000\n%s' % (address,
                                                "reuse_connections = true\n"
                                                "max_idle_connections = 64\n" if reuse else ""))


def one_run(a, with_milter, label, perf_dir, rate, messages):
    from harness import Server, http_get, metric
    extra = 'log_level = "warn"\nmax_connections_per_ip = 100000\n'
    milter = None
    if with_milter:
        milter = NoopMilter(a.milter, a.no_reply, a.unix, a.epoll)
        extra += milter_toml(milter.address, a.reuse)
    srv = None
    perf = None
    spool_parent = tempfile.mkdtemp(prefix="ringmx-milter-cost-", dir=a.spool_dir)
    try:
        srv = Server(extra_toml=extra, shards=1,
                     spool=os.path.join(spool_parent, "spool")).start()
        args = [a.bench, "--target", "127.0.0.1:%d" % srv.port,
                "--connections", str(a.connections), "--per-connection", str(a.per_connection),
                "--size", str(a.size), "--duration", "60", "--json",
                "--expect-success-rate", "1"]
        warm = subprocess.run(args + ["--messages", str(WARMUP)], capture_output=True,
                              timeout=120)
        if warm.returncode != 0:
            raise RuntimeError("warm-up failed: %s" % warm.stdout.decode()[-2000:])
        if perf_dir:
            perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-g",
                                     "-p", str(srv.proc.pid), "-o",
                                     os.path.join(perf_dir, label + ".data")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # perf attached before the load starts
        c0 = cpu_seconds(srv.proc.pid)
        m0 = cpu_seconds(milter.proc.pid) if milter else 0.0
        load = ["--messages", str(messages)] + (["--rate", str(rate)] if rate else [])
        out = subprocess.run(args + load, capture_output=True, timeout=120)
        c1 = cpu_seconds(srv.proc.pid)
        m1 = cpu_seconds(milter.proc.pid) if milter else 0.0
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            perf = None
        if out.returncode != 0:
            raise RuntimeError("ringmx-bench failed: %s" % out.stdout.decode()[-2000:])
        report = json.loads(out.stdout)
        ok = report["ok"]
        r = {"msgs_per_s": ok / report["elapsed_s"], "us_per_msg": (c1 - c0) / ok * 1e6,
             "messages": ok}
        if milter:
            _, body = http_get(srv.admin_port, "/metrics")
            eoms = metric(body, "ringmx_milter_calls_total", milter="noop", stage="message",
                          result="continue") or 0
            failures = metric(body, "ringmx_milter_failures_total", milter="noop") or 0
            if eoms < WARMUP + ok or failures:
                raise RuntimeError("the milter did not see every message: %d end-of-message "
                                   "answers for %d messages, %d failures"
                                   % (eoms, WARMUP + ok, failures))
            r["milter_us_per_msg"] = (m1 - m0) / ok * 1e6
            srv.stop()
            srv = None
            counters = milter.stop()
            milter = None
            if counters.get("errors") or counters.get("messages") != WARMUP + ok:
                raise RuntimeError("noop_milter: %s for %d messages" % (counters, WARMUP + ok))
            # Packets the milter answered per message (its connection's share included).
            r["milter_replies_per_msg"] = counters["replies"] / (WARMUP + ok)
        return r
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        if srv:
            srv.stop()
        if milter:
            milter.stop()
        shutil.rmtree(spool_parent, True)


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ringmx")
    ap.add_argument("bench")
    ap.add_argument("--milter", help="noop_milter (default: next to RINGMX_BENCH)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=20000,
                    help="per closed-loop run (default 20000)")
    ap.add_argument("--rate", type=int, default=2500,
                    help="msgs/s of the open-loop runs, the same with and without the milter "
                         "(default 2500, below what the milter run reaches here; 0: none)")
    ap.add_argument("--rate-messages", type=int, default=10000,
                    help="per open-loop run (default 10000)")
    ap.add_argument("--per-connection", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--size", default="1024")
    ap.add_argument("--no-reply", action="store_true",
                    help="the milter asks for every SMFIP_NR_* flag (only EOB answered)")
    ap.add_argument("--unix", action="store_true", help="reach the milter over a unix socket")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse_connections = true: milter connections kept across sessions")
    ap.add_argument("--epoll", action="store_true",
                    help="the milter serves every connection from one epoll thread")
    ap.add_argument("--spool-dir", metavar="DIR",
                    help="put each run's spool under DIR (/dev/shm: no disk in the figures)")
    ap.add_argument("--perf", metavar="DIR", help="perf record ringmx into DIR (profiling)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    a.milter = a.milter or os.path.join(os.path.dirname(os.path.abspath(a.bench)), "noop_milter")
    os.environ["RINGMX_BIN"] = a.ringmx
    import harness
    harness.BINARY = a.ringmx
    if a.perf:
        os.makedirs(a.perf, exist_ok=True)

    phases = [("max", 0, a.messages)]
    if a.rate:
        phases.append(("rate", a.rate, a.rate_messages))
    runs = {p[0]: {"none": [], "milter": []} for p in phases}
    for i in range(a.rounds):
        order = ("none", "milter") if i % 2 == 0 else ("milter", "none")
        for phase, rate, messages in phases:
            for kind in order:
                r = one_run(a, kind == "milter", "%s-%s-r%d" % (phase, kind, i + 1), a.perf,
                            rate, messages)
                runs[phase][kind].append(r)
                if not a.json:
                    extra = ("  noop_milter %5.1f us/msg" % r["milter_us_per_msg"]
                             if "milter_us_per_msg" in r else "")
                    print("round %d %-4s %-6s %7.0f msgs/s  ringmx %5.1f us/msg%s" %
                          (i + 1, phase, kind, r["msgs_per_s"], r["us_per_msg"], extra),
                          flush=True)
    med, summary = {}, {}
    for phase, by_kind in runs.items():
        med[phase] = {k: {m: median([r[m] for r in v]) for m in v[0] if m != "messages"}
                      for k, v in by_kind.items()}
        m = med[phase]
        paired = [y["us_per_msg"] - x["us_per_msg"]
                  for x, y in zip(by_kind["none"], by_kind["milter"])]
        summary[phase] = {
            "us_per_msg_added": m["milter"]["us_per_msg"] - m["none"]["us_per_msg"],
            "us_per_msg_added_paired_median": median(paired),
            "paired": paired,
            "msgs_per_s_ratio": m["milter"]["msgs_per_s"] / m["none"]["msgs_per_s"],
        }
    judged = "max"  # the closed loop, as the other *_cost.py scripts measure
    added = summary[judged]["us_per_msg_added_paired_median"]
    verdict = {"phase": judged, "us_per_msg_added": added, "target_us": TARGET_US,
               "within_target": added < TARGET_US}
    if a.json:
        print(json.dumps({"config": {"messages": a.messages, "rounds": a.rounds,
                                     "rate": a.rate, "rate_messages": a.rate_messages,
                                     "per_connection": a.per_connection,
                                     "connections": a.connections, "size": a.size,
                                     "no_reply": a.no_reply, "unix": a.unix,
                                     "epoll": a.epoll, "spool_dir": a.spool_dir},
                          "runs": runs, "median": med, "summary": summary,
                          "verdict": verdict}, indent=1))
        return
    for phase, _, _ in phases:
        m, s = med[phase], summary[phase]
        title = ("closed loop (as fast as it goes)" if phase == "max"
                 else "open loop at %d msgs/s, both" % a.rate)
        print("%s:" % title)
        print("  median none    %7.0f msgs/s  ringmx %5.1f us/msg" %
              (m["none"]["msgs_per_s"], m["none"]["us_per_msg"]))
        print("  median milter  %7.0f msgs/s  ringmx %5.1f us/msg  noop_milter %5.1f us/msg "
              "(%.1f answers from the milter per message)" %
              (m["milter"]["msgs_per_s"], m["milter"]["us_per_msg"],
               m["milter"]["milter_us_per_msg"], m["milter"]["milter_replies_per_msg"]))
        print("  ringmx CPU added by the milter: %.1f us/msg (difference of medians), %.1f us/msg "
              "(median of the per-round differences: %s)" %
              (s["us_per_msg_added"], s["us_per_msg_added_paired_median"],
               ", ".join("%.1f" % d for d in s["paired"])))
        print("  throughput with / without the milter: %.3f" % s["msgs_per_s_ratio"])
    print("target: under %.0f us/msg added (closed loop, paired median): %.1f, %s" %
          (TARGET_US, added, "met" if verdict["within_target"] else "MISSED"))

if __name__ == "__main__":
    main()
