#!/usr/bin/env python3
"""TLS handshakes per second per core: ringmx against Postfix smtpd, same
certificate, same core, same client, in one run.

Both servers are pinned to CPU 0 (ringmx with one shard; Postfix's master and
every smtpd/tlsmgr it forks inherit the affinity); ringmx-bench runs on CPU 1
with one thread and drives STARTTLS connections that carry no mail
(`--per-connection 0`: banner, EHLO, STARTTLS, handshake, EHLO, QUIT), with
full handshakes (`--no-resume`) and with ticket resumption. For each
certificate (ECDSA P-256, RSA-2048) and mode it reports handshakes/s and the
server CPU per handshake (utime+stime of every server process, from /proc),
medians of --runs, and the ratio ringmx/Postfix of each run. A second table
gives message throughput over STARTTLS against plaintext (1 KiB, 1 and 100
messages per connection) for both servers.

Run as root (a private Postfix instance under /var/spool). Bounded: every
ringmx-bench run has a message count and a --duration.

  python3 bench/peers/tls_handshakes.py [--runs 3] [--duration 8] [--docs docs/benchmarks.md]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from compare import tree_usage
from private_postfix import POSTFIX, PrivatePostfix, free_port, make_cert

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RINGMX = os.path.join(REPO, "build/release/tools/ringmx")
BENCH = os.path.join(REPO, "build/release/bench/ringmx-bench")
BEGIN = "<!-- tls-handshakes:begin -->"
END = "<!-- tls-handshakes:end -->"


def wait_port(port, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)
            time.sleep(0.05)


def tree_cpu_s(root):
    """CPU seconds of `root` and its live descendants (exited children are in
    their parents' cutime/cstime)."""
    return tree_usage([root])[0]


class Ringmx:
    def __init__(self, base, cert, key):
        self.dir = tempfile.mkdtemp(prefix="ringmx-", dir=base)
        self.port = free_port()
        self.cmd = ["taskset", "-c", "0", RINGMX, "--listen", "127.0.0.1:%d" % self.port,
                    "--tls-cert", cert, "--tls-key", key, "--shards", "1", "--spool-dir",
                    os.path.join(self.dir, "spool"), "--admin-listen", "", "--log-level", "warn",
                    "--hostname", "mx.bench"]
        self.proc = None

    def start(self):
        cfg = os.path.join(self.dir, "ringmx.toml")
        with open(cfg, "w") as f:
            f.write("[server]\nmax_connections_per_ip = 100000\n")
        self.proc = subprocess.Popen(self.cmd + ["--config", cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr.log"), "wb"))
        wait_port(self.port)
        return self

    def root(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postfix:
    """smtpd with STARTTLS on one port, pinned to CPU 0 with everything it forks."""

    def __init__(self, base, cert, key):
        self.pf = PrivatePostfix({"smtp": ""}, cert, key, cpus="0", base_dir=base,
                                 extra_main=POSTFIX_EXTRA)
        self.port = self.pf.ports["smtp"]

    def start(self):
        self.pf.start()
        return self

    def root(self):
        return self.pf.master

    def stop(self):
        self.pf.stop()


# A TLS session cache as a production Postfix has (TLS 1.3 tickets work
# without it; TLS 1.2 session ids need it).
POSTFIX_EXTRA = """smtpd_tls_session_cache_database = btree:${data_directory}/smtpd_scache
"""


def bench(port, args, duration):
    cmd = ["taskset", "-c", "1", BENCH, "--target", "127.0.0.1:%d" % port, "--threads", "1",
           "--json", "--timeout", "10", "--duration", str(duration)] + args
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=duration + 60)
    if p.returncode not in (0, 1):
        raise RuntimeError("ringmx-bench failed: %s\n%s" % (" ".join(cmd),
                                                             p.stderr.decode(errors="replace")))
    return json.loads(p.stdout)


def measure(server, args, duration):
    """(rate/s, server CPU us per unit, report) for one bounded run."""
    before = tree_cpu_s(server.root())
    r = bench(server.port, args, duration)
    # Children that exited were reaped by the master: their time is in its cutime.
    after = tree_cpu_s(server.root())
    return r, after - before


def pick(report, key):
    if key == "handshakes":
        hs = report.get("tls", {}).get("handshakes", {})
        return hs.get("full", 0) + hs.get("resumed", 0), report.get("handshakes_per_s", 0.0)
    return report["ok"], report["messages_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--docs", default="", help="write the tables into this markdown file")
    ap.add_argument("--base", default="/var/spool")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (a private Postfix instance)")
    for exe in (RINGMX, BENCH, POSTFIX):
        if not os.access(exe, os.X_OK):
            sys.exit("missing %s (build first: ./tools/dev.sh build; apt-get install postfix)"
                     % exe)
    base = tempfile.mkdtemp(prefix="ringmx-tls-bench-", dir=a.base)
    os.chmod(base, 0o755)
    rows = []
    tput = []
    try:
        for kind in ("ecdsa", "rsa"):
            cert, key = make_cert(base, kind, "mx.bench")
            for mode, extra in (("full", ["--no-resume"]), ("resumed", [])):
                samples = {"ringmx": [], "postfix": []}
                ratios = []
                for run in range(a.runs):
                    got = {}
                    for name, cls in (("ringmx", Ringmx), ("postfix", Postfix)):
                        srv = cls(base, cert, key).start()
                        try:
                            args = ["--connections", str(a.connections), "--messages", "200000",
                                    "--size", "1024", "--per-connection", "0",
                                    "--starttls"] + extra
                            report, cpu = measure(srv, args, a.duration)
                        finally:
                            srv.stop()
                        n, rate = pick(report, "handshakes")
                        us = cpu * 1e6 / n if n else float("nan")
                        got[name] = (rate, us, report)
                        samples[name].append((rate, us))
                        print("%s %s %s run %d: %.0f handshakes/s, %.0f us CPU each, %d failed"
                              % (kind, mode, name, run + 1, rate, us,
                                 report.get("tls", {}).get("handshakes", {}).get("failed", 0)),
                              flush=True)
                    ratios.append((got["ringmx"][0] / got["postfix"][0],
                                   got["postfix"][1] / got["ringmx"][1]))
                rows.append((kind, mode, samples, ratios))
        # Message throughput over STARTTLS against plaintext, ECDSA certificate.
        cert, key = make_cert(base, "ecdsa", "mx.bench")
        for per_conn in (1, 100):
            res = {}
            for run in range(a.runs):
                for name, cls in (("ringmx", Ringmx), ("postfix", Postfix)):
                    srv = cls(base, cert, key).start()
                    try:
                        for mode, extra in (("plain", []), ("starttls", ["--starttls"])):
                            args = ["--connections", str(a.connections), "--messages",
                                    str(400000 if per_conn > 1 else 100000), "--size", "1024",
                                    "--per-connection", str(per_conn)] + extra
                            report, _ = measure(srv, args, a.duration)
                            rate = pick(report, "messages")[1]
                            res.setdefault((name, mode), []).append(rate)
                            print("throughput %d/conn %s %s run %d: %.0f msgs/s" %
                                  (per_conn, name, mode, run + 1, rate), flush=True)
                    finally:
                        srv.stop()
            tput.append((per_conn, res))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = render(rows, tput, a)
    print(text)
    if a.docs:
        write_docs(a.docs, text)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def render(rows, tput, a):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    pf_version = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                                stdout=subprocess.PIPE, text=True).stdout.strip()
    # The binary names the tree that built it (git describe at build time).
    rx_version = subprocess.run([RINGMX, "--version"], stdout=subprocess.PIPE,
                                text=True).stdout.strip()
    out = [BEGIN, "",
           "Measured %s on %s (%d vCPU), kernel %s; Postfix %s (OpenSSL), %s with "
           "Debian's wolfSSL 5.5.4 (no AES-NI, no assembler P-256/RSA). Servers pinned to "
           "CPU 0, the client (ringmx-bench, one thread) to CPU 1; TLS 1.3, X25519, "
           "%d concurrent STARTTLS connections without mail; medians of %d runs, "
           "ratios taken inside each run. This VM is shared and noisy."
           % (time.strftime("%Y-%m-%d"), cpu, os.cpu_count(), os.uname().release, pf_version,
              rx_version, a.connections, a.runs), "",
           "Command: `python3 bench/peers/tls_handshakes.py --runs %d --duration %d`"
           % (a.runs, a.duration), "",
           "| certificate | handshake | ringmx /s | Postfix /s | ratio | ringmx CPU us | "
           "Postfix CPU us | CPU ratio |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind, mode, s, ratios in rows:
        out.append("| %s | %s | %.0f | %.0f | %.2fx | %.0f | %.0f | %.2fx |" % (
            "ECDSA P-256" if kind == "ecdsa" else "RSA-2048", mode,
            med([x[0] for x in s["ringmx"]]), med([x[0] for x in s["postfix"]]),
            med([r[0] for r in ratios]), med([x[1] for x in s["ringmx"]]),
            med([x[1] for x in s["postfix"]]), med([r[1] for r in ratios])))
    out += ["", "ratio: ringmx handshakes/s over Postfix's; CPU ratio: Postfix's server CPU per "
            "handshake over ringmx's (both > 1 favour ringmx).", "",
            "Message throughput, 1 KiB messages, same pinning (both servers fsync each "
            "message before 250):", "",
            "| messages per connection | server | plaintext msgs/s | STARTTLS msgs/s | "
            "STARTTLS/plaintext |",
            "|---|---|---:|---:|---:|"]
    for per_conn, res in tput:
        for name in ("ringmx", "postfix"):
            p, t = med(res[(name, "plain")]), med(res[(name, "starttls")])
            out.append("| %d | %s | %.0f | %.0f | %.2f |" % (
                per_conn, "ringmx" if name == "ringmx" else "Postfix", p, t, t / p))
    out += ["", END]
    return "\n".join(out)


def write_docs(path, text):
    try:
        with open(path) as f:
            doc = f.read()
    except OSError:
        doc = ""
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + text + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n## TLS handshakes: ringmx and Postfix\n\n" + text + "\n"
    with open(path, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
