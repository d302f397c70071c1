#!/usr/bin/env python3
"""What waiting costs ringmx in CPU: the whole process's CPU time (every
thread's, from /proc/PID/task/*/schedstat, in nanoseconds) while

  idle      nobody is connected;
  held      N connections (default 10,000) sit idle after the banner, each
            with its command timeout armed;
  at once   no greeting delay: M connections (default 60, one every 0.25 s)
            get the banner and QUIT; CPU per connection, less the idle cost
            of the same time: what a short connection costs at all here
            (mostly the kernel's TCP set-up and tear-down, and waking an
            idle CPU);
  delayed   with a 5 s greeting delay, the same M connections wait it out
            silently, get the banner and QUIT;
  pregreet  the same, but each talks 4.5 s in (before the banner) and is
            refused with 554.

Targets (issue "runtime hygiene"): idle < 0.1 % of one core, held < 0.5 %,
a connection held through the delay and refused < 100 us more than one
served at once (the delay itself must cost next to nothing: no wake-ups
while it runs).
Every phase is bounded in time; the server is stopped by PID.

Usage: idle_cpu.py RINGMX_BINARY [--held N] [--delayed M] [--seconds S] [--json]"""

import argparse
import json
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

# The idle-connection holder (opens N connections, reads each banner, holds them).
from idle_memory import PER_WORKER, free_port, raise_nofile, worker as hold_worker

def cpu_ns(pid):
    """CPU time of every thread of `pid` so far, in ns (live threads only: ringmx's
    threads live as long as the process)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


class Ringmx:
    def __init__(self, binary, greeting_delay_ms=0, max_conns=30000):
        self.dir = tempfile.mkdtemp(prefix="ringmx-idle-cpu-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "ringmx.toml")
        with open(cfg, "w") as f:
            f.write('[server]\nhostname = "mx.bench"\nshards = 2\nlog_level = "warn"\n'
                    "max_connections = %d\nmax_connections_per_ip = %d\n"
                    "greeting_delay_ms = %d\n"
                    '[spool]\ndir = "%s/spool"\n[admin]\nlisten = ""\n'
                    '[[listener]]\naddress = "127.0.0.1:%d"\n' %
                    (max_conns, max_conns, greeting_delay_ms, self.dir, self.port))
        self.proc = subprocess.Popen([binary, "--config", cfg], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=raise_nofile)
        # The start-up log line (always written); at log_level warn little else follows.
        line = self.proc.stderr.readline().decode()
        if "event=started" not in line:
            raise RuntimeError("ringmx did not start: %r" % line)
        self.version = line.strip()

    def cpu(self):
        return cpu_ns(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(srv, seconds):
    """Fraction of one core the server used over `seconds`."""
    a = srv.cpu()
    time.sleep(seconds)
    return (srv.cpu() - a) / (seconds * 1e9)


def phase_idle(binary, seconds):
    srv = Ringmx(binary)
    try:
        time.sleep(1)
        return measure(srv, seconds), srv.version
    finally:
        srv.stop()


def phase_held(binary, n, seconds):
    srv = Ringmx(binary, max_conns=n + 100)
    done = mp.Event()
    report = mp.Queue()
    workers = []
    try:
        left, offset = n, 0
        while left > 0:
            k = min(PER_WORKER, left)
            p = mp.Process(target=hold_worker, args=(srv.port, k, offset, report, done))
            p.start()
            workers.append(p)
            left -= k
            offset += k
        greeted = sum(report.get(timeout=150) for _ in workers)
        time.sleep(2)
        return greeted, measure(srv, seconds)
    finally:
        done.set()
        for p in workers:
            p.join(30)
        srv.stop()


def delayed_client(port, talk_at, results):
    """One client of the delayed phases: silent until `talk_at` seconds (None: wait for
    the banner and QUIT)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        if talk_at is not None:
            time.sleep(talk_at)
            s.sendall(b"EHLO early.test\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        if talk_at is None and data.startswith(b"220"):
            s.sendall(b"QUIT\r\n")
            while s.recv(512):
                pass
        s.close()
        results.append(data[:3])
    except OSError as e:
        results.append(str(e).encode())


def phase_delayed(binary, m, talk_at, idle_fraction, delay_ms=5000):
    """CPU per connection held through a greeting delay, less the idle cost."""
    srv = Ringmx(binary, greeting_delay_ms=delay_ms)
    results = []
    try:
        time.sleep(1)
        threads = []
        a = srv.cpu()
        t0 = time.monotonic()
        for i in range(m):
            t = threading.Thread(target=delayed_client, args=(srv.port, talk_at, results))
            t.start()
            threads.append(t)
            time.sleep(0.25)  # about 20 held at once with the delay
        for t in threads:
            t.join(30)
        time.sleep(0.5)
        used = srv.cpu() - a
        wall = time.monotonic() - t0
        per = (used - idle_fraction * wall * 1e9) / m
        return per / 1000.0, results
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--held", type=int, default=10000)
    ap.add_argument("--delayed", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    raise_nofile()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    held = min(args.held, hard - 256)

    idle, version = phase_idle(args.binary, args.seconds)
    greeted, held_frac = phase_held(args.binary, held, args.seconds)
    now_us, now_res = phase_delayed(args.binary, args.delayed, None, idle, delay_ms=0)
    quit_us, quit_res = phase_delayed(args.binary, args.delayed, None, idle)
    pre_us, pre_res = phase_delayed(args.binary, args.delayed, 4.5, idle)
    out = {
        "version": version,
        "idle_core_percent": round(idle * 100, 4),
        "held_connections": greeted,
        "held_core_percent": round(held_frac * 100, 4),
        "at_once_us_per_connection": round(now_us, 1),
        "delayed_then_served_us_per_connection": round(quit_us, 1),
        "delayed_served_replies": {r.decode(errors="replace"): quit_res.count(r)
                                   for r in set(quit_res)},
        "delayed_then_refused_us_per_connection": round(pre_us, 1),
        "delayed_refused_replies": {r.decode(errors="replace"): pre_res.count(r)
                                    for r in set(pre_res)},
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(version)
        print("| what | measured | target |")
        print("|---|---|---|")
        print("| no traffic | %.3f %% of one core | < 0.1 %% |" % out["idle_core_percent"])
        print("| %d idle connections after the banner | %.3f %% of one core | < 0.5 %% |" %
              (greeted, out["held_core_percent"]))
        print("| served at once (220, QUIT), one every 0.25 s | %.0f us each | |" % now_us)
        print("| held through a 5 s greeting delay, then served (220, QUIT) | %.0f us each "
              "(%+.0f us) | |" % (quit_us, quit_us - now_us))
        print("| held 4.5 s into a 5 s greeting delay, then refused (554) | %.0f us each "
              "(%+.0f us) | < +100 us |" % (pre_us, pre_us - now_us))
        print("replies: served %s, refused %s" % (out["delayed_served_replies"],
                                                 out["delayed_refused_replies"]))
    ok = (idle < 0.001 and held_frac < 0.005 and pre_us - now_us < 100 and greeted == held and
          pre_res.count(b"554") == args.delayed and quit_res.count(b"220") == args.delayed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
