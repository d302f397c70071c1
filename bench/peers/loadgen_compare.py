#!/usr/bin/env python3
"""ringmx-bench against Postfix's smtp-source: the same loads, the same
servers, the same machine, interleaved in one run.

  bench/peers/loadgen_compare.py [--runs N] [--messages N] [--sessions S] [--rounds R]
                                 [--threads LIST] [--bench PATH] [--ringmx PATH] [--no-ringmx]
                                 [--out DIR]

Servers (127.0.0.1 only): Postfix's smtp-sink (`smtp-sink -u nobody -c 127.0.0.1:PORT
1024`, a fresh one on a fresh port for every measured run, so no run inherits another's
TIME_WAIT sockets) and, unless --no-ringmx, one ringmx daemon (2 shards, spool in a temp
dir under /var/tmp, i.e. on disk, fsync'd) for the whole script.
Loads, S sessions (default 32), 1 KiB messages:
  1/conn    N messages (default 20000), one per connection:
              smtp-source -s S -l 1024 -m N
              ringmx-bench --connections S --messages N --per-connection 1
  100/conn  R rounds (default 6) of S x 100 messages:
              smtp-source -d -s S -l 1024 -m S*100, R times
              ringmx-bench --connections S --messages R*S*100 --per-connection 100
smtp-source -l 1024 sends 1150 octets per message (its own headers + 1024), so ringmx-bench
sends --size 1150: the same octets per message. ringmx-bench runs once per entry of --threads
(default "0,1": its default — half the CPUs for a loopback target —, and one thread like
the one smtp-source process). Both are measured the same way: wall clock
from process start to exit (all rounds for smtp-source) and user+sys CPU from wait4();
msgs/s = messages / wall clock. Each (server, load, tool) runs --runs times (default 3),
interleaved; the ratio ringmx-bench / smtp-source is taken inside each repetition, then
summarised as median (min-max). A run counts only if every message was accepted (smtp-source
exit 0 and its -c counter = messages; ringmx-bench exit 0 and ok = messages). Every process
runs under a timeout and is stopped by PID. Needs root only to let smtp-sink drop to nobody.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
FROM, TO = "a@example.net", "b@example.org"
WIRE_SIZE = 1150   # octets smtp-source -l 1024 sends per message
RUN_TIMEOUT = 180


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not listening" % port)


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed(cmd, out):
    """Runs cmd (stdout+stderr to the file `out`); returns (rc, wall s, cpu s)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = t0 + RUN_TIMEOUT
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.002)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, time.monotonic() - t0, ru.ru_utime + ru.ru_stime


def run_source(port, load, a, logdir, tag):
    if load == "1/conn":
        rounds, args, n = 1, ["-m", str(a.messages)], a.messages
    else:
        rounds, args, n = a.rounds, ["-d", "-m", str(a.sessions * 100)], a.rounds * a.sessions * 100
    wall = cpu = 0.0
    counted = 0
    with open(os.path.join(logdir, "smtp-source.%s.log" % tag), "w+b") as out:
        for _ in range(rounds):
            start = out.tell()
            rc, w, c = timed([SMTP_SOURCE, "-s", str(a.sessions), "-l", "1024", "-c", "-f", FROM,
                              "-t", TO] + args + ["127.0.0.1:%d" % port], out)
            wall += w
            cpu += c
            out.seek(start)
            nums = [x for x in out.read().replace(b"\r", b"\n").split() if x.isdigit()]
            out.seek(0, 2)
            counted += int(nums[-1]) if nums else 0
            if rc != 0:
                return dict(ok=False, n=n, wall=wall, cpu=cpu, note="exit %d" % rc)
    return dict(ok=counted == n, n=n, wall=wall, cpu=cpu, note="" if counted == n else
                "counted %d of %d" % (counted, n))


def run_bench(port, load, a, logdir, tag, threads):
    per, n = (1, a.messages) if load == "1/conn" else (100, a.rounds * a.sessions * 100)
    path = os.path.join(logdir, "ringmx-bench.%s.json" % tag)
    with open(path, "w+b") as out:
        rc, wall, cpu = timed([a.bench, "--target", "127.0.0.1:%d" % port, "--connections",
                               str(a.sessions), "--messages", str(n), "--size", str(WIRE_SIZE),
                               "--per-connection", str(per), "--duration", "120", "--json",
                               "--from", FROM, "--to", TO, "--threads", str(threads)], out)
        out.seek(0)
        try:
            r = json.loads(out.read())
        except ValueError:
            r = {}
    ok = rc == 0 and r.get("ok") == n
    return dict(ok=ok, n=n, wall=wall, cpu=cpu, internal=r.get("messages_per_s"),
                note="" if ok else "exit %d ok %s" % (rc, r.get("ok")))


def med(xs, fmt):
    if not xs:
        return "–"
    return (fmt + " (" + fmt + "–" + fmt + ")") % (statistics.median(xs), min(xs), max(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", default="0,1",
                    help="ringmx-bench --threads values to run, comma separated (0: default)")
    ap.add_argument("--bench", default=os.path.join(REPO, "build/release/bench/ringmx-bench"))
    ap.add_argument("--ringmx", default=os.path.join(REPO, "build/release/tools/ringmx"))
    ap.add_argument("--no-ringmx", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    variants = [int(x) for x in a.threads.split(",") if x != ""]
    tools = ["smtp-source"] + ["ringmx-bench/%s" % ("default" if t == 0 else "t%d" % t)
                               for t in variants]
    for path in (SMTP_SINK, SMTP_SOURCE, a.bench) + (() if a.no_ringmx else (a.ringmx,)):
        if not os.access(path, os.X_OK):
            sys.exit("loadgen_compare: %s is missing (Debian package postfix for smtp-*)" % path)
    logdir = a.out or tempfile.mkdtemp(prefix="ringmx-loadgen-compare.", dir="/var/tmp")
    os.makedirs(logdir, exist_ok=True)

    ringmx = None
    tmp = tempfile.mkdtemp(prefix="ringmx-loadgen-spool.", dir="/var/tmp")
    servers = ["sink"] + ([] if a.no_ringmx else ["ringmx"])
    rows = []
    try:
        if not a.no_ringmx:
            rport = free_port()
            conf = os.path.join(tmp, "ringmx.toml")
            with open(conf, "w") as f:
                f.write('[server]\nhostname = "mx.test"\nshards = 2\nlog_level = "warn"\n'
                        "max_connections_per_ip = 100000\n"
                        '[spool]\ndir = "%s"\n[admin]\nlisten = ""\n'
                        '[[listener]]\nname = "smtp"\naddress = "127.0.0.1:%d"\n'
                        % (os.path.join(tmp, "spool"), rport))
            ringmx = subprocess.Popen([a.ringmx, "--config", conf], stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(logdir, "ringmx.stderr"), "wb"))
            wait_port(rport, ringmx)
        for rep in range(1, a.runs + 1):
            for load in ("1/conn", "100/conn"):
                for server in servers:
                    for tool in tools:
                        sink = None
                        if server == "sink":
                            port = free_port()
                            sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-c",
                                                     "127.0.0.1:%d" % port, "1024"],
                                                    stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)
                            wait_port(port, sink)
                        else:
                            port = rport
                        tag = "r%d-%s-%s-%s" % (rep, load.split("/")[0], server,
                                                 tool.replace("/", "-"))
                        try:
                            if tool == "smtp-source":
                                r = run_source(port, load, a, logdir, tag)
                            else:
                                r = run_bench(port, load, a, logdir, tag,
                                              variants[tools.index(tool) - 1])
                        finally:
                            if sink:
                                stop(sink)
                        r.update(rep=rep, load=load, server=server, tool=tool,
                                 rate=r["n"] / r["wall"] if r["wall"] else 0)
                        rows.append(r)
                        print("rep %d %-8s %-6s %-20s %6d msgs %7.3f s %8.0f msg/s  cpu %6.1f us/msg"
                              "%s%s" % (rep, load, server, tool, r["n"], r["wall"], r["rate"],
                                        r["cpu"] * 1e6 / r["n"],
                                        "  (internal %.0f msg/s)" % r["internal"]
                                        if r.get("internal") else "",
                                        "  FAILED: " + r["note"] if not r["ok"] else ""),
                              file=sys.stderr, flush=True)
                        time.sleep(1)
    finally:
        if ringmx:
            stop(ringmx)
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(logdir, "rows.json"), "w") as f:
        json.dump(rows, f, indent=1)

    if not a.no_ringmx:  # the binary names the tree that built it
        print("ringmx: " + subprocess.run([a.ringmx, "--version"], capture_output=True,
                                          text=True).stdout.strip())
    head = "| server | load | msgs/run | smtp-source msgs/s"
    for t in tools[1:]:
        head += " | %s msgs/s | ÷ smtp-source" % t
    head += " | CPU µs/msg: " + ", ".join(tools) + " |"
    print(head)
    print("|---|---|---:|---:" + "|---:|---:" * (len(tools) - 1) + "|---:|")
    failed = False
    for server in servers:
        for load in ("1/conn", "100/conn"):
            sel = [r for r in rows if r["server"] == server and r["load"] == load]
            failed |= any(not r["ok"] for r in sel)
            good = {t: [r for r in sel if r["tool"] == t and r["ok"]] for t in tools}
            n = sel[0]["n"] if sel else 0
            line = "| %s | %s | %d | %s" % ("smtp-sink" if server == "sink" else "ringmx", load,
                                           n, med([r["rate"] for r in good["smtp-source"]], "%.0f"))
            for t in tools[1:]:
                ratios = []
                for rep in range(1, a.runs + 1):
                    s_ = [r["rate"] for r in good["smtp-source"] if r["rep"] == rep]
                    b_ = [r["rate"] for r in good[t] if r["rep"] == rep]
                    if s_ and b_:
                        ratios.append(b_[0] / s_[0])
                line += " | %s | %s" % (med([r["rate"] for r in good[t]], "%.0f"),
                                        med(ratios, "%.2f"))
            line += " | " + ", ".join(med([r["cpu"] * 1e6 / r["n"] for r in good[t]], "%.1f")
                                      for t in tools) + " |"
            print(line)
    print("\nraw results and logs: %s" % logdir)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
