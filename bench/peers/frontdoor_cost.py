#!/usr/bin/env python3
"""What the front door costs: server CPU per refused connection, and what the
checks take from the throughput of legitimate mail.

  pregreet   bots that talk before the greeting (greeting_delay_ms = 2000):
             ringmx refuses with 554 5.5.1; Postfix postscreen with
             postscreen_greet_action = drop, same wait, same bots
  dnsbl      clients from 200 addresses all listed by a DNS block list
             (dnsmasq on a loopback port, the answers cached after the first
             of each): ringmx refuses at connect with 554 5.7.1
  checks     legitimate mail (ringmx-bench, 1 KiB, 10 messages per connection,
             from 50 addresses whose PTR, HELO and sender domain all check
             out) with every check on (warm cache; PTR, HELO, sender, two
             block lists and an allow list, header rules, rates counted with
             limits it never reaches, karma) against the same load with the
             checks off, alternating runs

CPU is utime + stime from /proc/PID/stat: ringmx's process; for Postfix the
master and every process it forked that is alive at the end of the run
(postscreen and its helpers; with greet_action = drop no smtpd is started).
One ringmx shard, so its figure is one core's. Loads are bounded in count and
time; every server is stopped by PID.

Usage: frontdoor_cost.py RINGMX RINGMX_BENCH [--bots N] [--messages N] [--runs R] [--json]"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
sys.path.insert(0, HERE)

from proxy_cost import cpu_seconds  # noqa: E402  (ringmx's utime + stime)


def tree_cpu(root):
    """CPU of `root` and its live descendants, children's reaped time included."""
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            fields = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(p))
    total, todo = 0.0, [root]
    tck = os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        try:
            f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15]) / tck  # utime stime cutime cstime
        todo += kids.get(pid, [])
    return total


def bots(port, n, sources, talk_first, threads=8, timeout=10):
    """n connections from `sources` (cycled), each: talk at once (pregreet) or
    wait for the greeting, then QUIT; read until the server closes."""
    done = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + 300

    def worker(k):
        i = k
        while i < n and time.monotonic() < deadline:
            src = sources[i % len(sources)]
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(src, 0))
                if talk_first:
                    s.sendall(b"EHLO bot.example\r\n")
                else:
                    s.recv(4096)
                    s.sendall(b"QUIT\r\n")
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass  # postscreen resets after its 521
                s.close()
                with lock:
                    done[0] += 1
            except OSError:
                pass
            i += threads

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0]


def ringmx_refusals(kind, n, dns_port):
    from harness import Server
    extra = 'log_level = "warn"\nmax_connections_per_ip = 100000\n'
    if kind == "pregreet":
        extra += "greeting_delay_ms = 2000\n"
        sources = ["127.0.0.1"]
    else:
        extra += ('\n[dns]\nservers = ["127.0.0.1:%d"]\n\n[[dnsbl]]\nzone = "bl.test"\n'
                  'weight = 10\n' % dns_port)
        sources = ["127.0.1.%d" % i for i in range(1, 201)]
    srv = Server(extra_toml=extra, shards=1).start()
    try:
        bots(srv.port, 200, sources, kind == "pregreet")  # warm up (and fill the DNS cache)
        c0 = cpu_seconds(srv.proc.pid)
        t0 = time.monotonic()
        got = bots(srv.port, n, sources, kind == "pregreet")
        c1 = cpu_seconds(srv.proc.pid)
        return {"us_per_conn": (c1 - c0) / got * 1e6, "conns": got,
                "conns_per_s": got / (time.monotonic() - t0)}
    finally:
        srv.stop()


def postscreen_pregreet(n):
    from private_postfix import PrivatePostfix
    pf = PrivatePostfix({}, extra_main=(
        "postscreen_greet_action = drop\npostscreen_greet_wait = 2s\n"
        "postscreen_cache_map = btree:$data_directory/postscreen_cache\n"
        "postscreen_access_list =\npostscreen_dnsbl_sites =\n"))
    port = pf.ports.setdefault("postscreen", __import__("private_postfix").free_port())
    master_cf = os.path.join(pf.conf, "master.cf")
    body = open(master_cf).read()
    with open(master_cf, "w") as f:
        f.write("127.0.0.1:%d inet n - n - 1 postscreen\n" % port)
        f.write("smtpd pass - - n - - smtpd\n")
        f.write("dnsblog unix - - n - 0 dnsblog\n")
        f.write("tlsproxy unix - - n - 0 tlsproxy\n")
        f.write(body)
    pf.start()
    try:
        bots(port, 200, ["127.0.0.1"], True)
        c0 = tree_cpu(pf.master)
        t0 = time.monotonic()
        got = bots(port, n, ["127.0.0.1"], True)
        c1 = tree_cpu(pf.master)
        return {"us_per_conn": (c1 - c0) / got * 1e6, "conns": got,
                "conns_per_s": got / (time.monotonic() - t0)}
    finally:
        pf.stop()


CHECKS_ON = """
[dns]
servers = ["127.0.0.1:%(port)d"]

[checks]
reject_score = 10

[checks.ptr]
missing = "reject"
unconfirmed = "score"
dynamic = "score"
dynamic_patterns = ['(^|[.-])(dyn|dynamic|dhcp|pool|ppp|dsl|cable)[.-]', '[0-9]+-[0-9]+-[0-9]+']

[checks.helo]
bare_ip = "reject"
not_fqdn = "score"
ours = "reject"
literal_mismatch = "score"
unresolvable = "score"

[checks.sender]
unresolvable = "reject"
null_mx = "reject"

[checks.rate]
connections_per_minute = 1000000
messages_per_minute = 1000000
recipients_per_minute = 1000000
max_connections_per_network = 10000

[checks.karma]
enabled = true

[headers]
require_from = true
reject_duplicates = true

[[dnsbl]]
zone = "nolist.test"
weight = 10

[[dnsbl]]
zone = "other-bl.test"
weight = 5

[[dnswl]]
zone = "wl.test"
weight = 5
"""


def legit_run(bench, on, messages, dns_port):
    from harness import Server
    extra = 'log_level = "warn"\nmax_connections_per_ip = 100000\n'
    if on:
        extra += CHECKS_ON % {"port": dns_port}
    srv = Server(extra_toml=extra, shards=1).start()
    try:
        args = [bench, "--target", "127.0.0.1:%d" % srv.port, "--connections", "32",
                "--per-connection", "10", "--size", "1024", "--json",
                "--source", "127.0.2.1-127.0.2.50", "--helo", "client.legit.test",
                "--from", "sender@legit.test", "--expect-success-rate", "1"]
        warm = subprocess.run(args + ["--messages", "1000"], capture_output=True, timeout=300)
        if warm.returncode != 0:
            raise RuntimeError("warm-up failed: %s" % warm.stdout.decode()[-2000:])
        c0 = cpu_seconds(srv.proc.pid)
        out = subprocess.run(args + ["--messages", str(messages)], capture_output=True,
                             timeout=300)
        c1 = cpu_seconds(srv.proc.pid)
        if out.returncode != 0:
            raise RuntimeError("ringmx-bench failed: %s" % out.stdout.decode()[-2000:])
        # The rate as the load generator measured it (its own start-up is not the server's).
        elapsed = json.loads(out.stdout)["elapsed_s"]
        return {"us_per_msg": (c1 - c0) / messages * 1e6, "msgs_per_s": messages / elapsed}
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ringmx")
    ap.add_argument("bench")
    ap.add_argument("--bots", type=int, default=20000)
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-postfix", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    os.environ["RINGMX_BIN"] = a.ringmx
    import harness
    harness.BINARY = a.ringmx
    records = ["--address=/bl.test/127.0.0.2"]  # every client listed
    for i in range(1, 51):
        records.append("--host-record=c%d.legit.test,127.0.2.%d" % (i, i))
    records += ["--host-record=client.legit.test,192.0.2.80",
                "--mx-host=legit.test,mx.legit.test,10", "--host-record=mx.legit.test,192.0.2.25"]
    dns = harness.Dnsmasq(records)
    try:
        runs = {"ringmx_pregreet": [], "ringmx_dnsbl": [], "postscreen_pregreet": [],
                "checks_off": [], "checks_on": []}
        for _ in range(a.runs):
            runs["ringmx_pregreet"].append(ringmx_refusals("pregreet", a.bots, dns.port))
            runs["ringmx_dnsbl"].append(ringmx_refusals("dnsbl", a.bots, dns.port))
            if not a.no_postfix:
                runs["postscreen_pregreet"].append(postscreen_pregreet(a.bots))
            runs["checks_off"].append(legit_run(a.bench, False, a.messages, dns.port))
            runs["checks_on"].append(legit_run(a.bench, True, a.messages, dns.port))
    finally:
        dns.stop()
    median = {}
    for k, v in runs.items():
        if v:
            median[k] = {m: sorted(r[m] for r in v)[len(v) // 2] for m in v[0]}
    if a.json:
        print(json.dumps({"runs": runs, "median": median}, indent=1))
        return
    for k in ("ringmx_pregreet", "postscreen_pregreet", "ringmx_dnsbl"):
        if k in median:
            print("%-20s %8.1f us server CPU per refused connection  %7.0f conns/s"
                  % (k, median[k]["us_per_conn"], median[k]["conns_per_s"]))
    for k in ("checks_off", "checks_on"):
        print("%-20s %8.1f us server CPU per message  %8.0f msgs/s"
              % (k, median[k]["us_per_msg"], median[k]["msgs_per_s"]))
    if "postscreen_pregreet" in median:
        print("postscreen / ringmx CPU per pregreet refusal: %.1f" %
              (median["postscreen_pregreet"]["us_per_conn"] /
               median["ringmx_pregreet"]["us_per_conn"]))
    print("checks on / off: CPU per message %.3f, msgs/s %.3f" %
          (median["checks_on"]["us_per_msg"] / median["checks_off"]["us_per_msg"],
           median["checks_on"]["msgs_per_s"] / median["checks_off"]["msgs_per_s"]))


if __name__ == "__main__":
    main()
