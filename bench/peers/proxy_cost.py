#!/usr/bin/env python3
"""What reading a PROXY protocol header costs ringmx: the same load (one 1 KiB
message per connection, so one header per message: the worst case) against a
plain listener and against a `proxy_protocol = "v2"` listener, alternating
runs, with ringmx's CPU time (utime + stime from /proc/PID/stat) per message
and the rate. ringmx-bench sends the v2 header with client addresses cycled
over 192.0.2.1-200. One shard, so the figure is one core's.

Usage: proxy_cost.py RINGMX_BINARY RINGMX_BENCH [--messages N] [--runs R] [--json]
Every run is bounded (--messages, a 300 s timeout); servers are stopped by PID."""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(bench, proxy, messages):
    import time
    from harness import Server
    listener = 'proxy_protocol = "v2"\ntrusted_proxies = ["127.0.0.1"]\n' if proxy else ""
    srv = Server(extra_toml='log_level = "warn"\nmax_connections_per_ip = 100000\n',
                 listener_toml=listener, shards=1).start()
    try:
        args = [bench, "--target", "127.0.0.1:%d" % srv.port, "--connections", "32",
                "--messages", str(messages), "--per-connection", "1", "--size", "1024", "--json"]
        if proxy:
            args += ["--proxy", "v2", "--proxy-source", "192.0.2.1-192.0.2.200"]
        c0, t0 = cpu_seconds(srv.proc.pid), time.monotonic()
        out = subprocess.run(args, capture_output=True, timeout=300)
        c1, t1 = cpu_seconds(srv.proc.pid), time.monotonic()
        if out.returncode != 0:
            raise RuntimeError("ringmx-bench failed: %s" % out.stderr.decode()[-2000:])
        return {"us_per_msg": (c1 - c0) / messages * 1e6, "msgs_per_s": messages / (t1 - t0)}
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ringmx")
    ap.add_argument("bench")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    os.environ["RINGMX_BIN"] = a.ringmx
    import harness
    harness.BINARY = a.ringmx
    runs = {"plain": [], "proxy_v2": []}
    for _ in range(a.runs):
        runs["plain"].append(one_run(a.bench, False, a.messages))
        runs["proxy_v2"].append(one_run(a.bench, True, a.messages))
    median = {k: {m: sorted(r[m] for r in v)[len(v) // 2] for m in ("us_per_msg", "msgs_per_s")}
              for k, v in runs.items()}
    if a.json:
        print(json.dumps({"runs": runs, "median": median}, indent=1))
        return
    for k, m in median.items():
        print("%-9s %6.1f us of ringmx CPU per message  %8.0f msgs/s" %
              (k, m["us_per_msg"], m["msgs_per_s"]))
    print("proxy_v2 / plain CPU per message: %.3f" %
          (median["proxy_v2"]["us_per_msg"] / median["plain"]["us_per_msg"]))


if __name__ == "__main__":
    main()
