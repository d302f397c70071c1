#!/usr/bin/env python3
"""Authenticated submission: ringmx against Postfix smtpd (smtpd_sasl_type =
dovecot), the same Dovecot verifying both, in one run.

Each connection does STARTTLS, AUTH PLAIN and one 1 KiB message (ringmx-bench
--starttls --auth USER:PASS --per-connection 1). Both servers and the private
Dovecot (tests/integration/dovecot_auth.py; PLAIN password, so Dovecot's own
cost is small and alike for both) are pinned to CPU 0, ringmx-bench to CPU 1
with one thread. ringmx has one shard, a STARTTLS listener with auth =
"required" and the dovecot backend over Dovecot's TCP auth listener; Postfix
has smtpd_sasl_auth_enable, smtpd_tls_auth_only and permit_sasl_authenticated
only, over the same TCP listener. Both fsync each message before 250 (ringmx
its spool, Postfix its queue file); Postfix discards what it took. Reported:
messages/s, the server's CPU per message (utime+stime of ringmx, or of the
Postfix master and everything it forked) and Dovecot's, medians of --runs
with the ratios taken inside each run. A third row runs the same ringmx with
STARTTLS and no AUTH, so the difference is what AUTH itself costs.

Run as root. Bounded: each ringmx-bench run has a message count and a --duration.

  python3 bench/peers/auth_compare.py [--runs 3] [--duration 8] [--connections 16]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from compare import tree_pids, tree_usage  # noqa: E402
from private_postfix import POSTFIX, PrivatePostfix, free_port, make_cert  # noqa: E402
import tls_handshakes  # noqa: E402
from tls_handshakes import wait_port  # noqa: E402

RINGMX = os.path.join(REPO, "build/release/tools/ringmx")
BENCH = os.path.join(REPO, "build/release/bench/ringmx-bench")
USER, PASSWORD = "alice@example.com", "s3cret"


def pin_tree(pid, cpus):
    """Pins `pid` and its descendants (what they fork later inherits it)."""
    for p in tree_pids([pid])[0]:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(p)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


class Ringmx(tls_handshakes.Ringmx):
    """One shard, a STARTTLS submission listener; root() and stop() as for the TLS runs."""
    auth = "required"

    def __init__(self, base, cert, key, dovecot_port):
        self.dir = tempfile.mkdtemp(prefix="ringmx-", dir=base)
        self.port = free_port()
        self.config = os.path.join(self.dir, "ringmx.toml")
        with open(self.config, "w") as f:
            f.write('[server]\nhostname = "mx.bench"\nshards = 1\nlog_level = "warn"\n'
                    'max_connections_per_ip = 100000\n'
                    '[spool]\ndir = "%s"\n[admin]\nlisten = ""\n'
                    '[tls]\ncert = "%s"\nkey = "%s"\n'
                    '[auth]\nbackend = "dovecot"\ndovecot_socket = "inet:127.0.0.1:%d"\n'
                    '[[listener]]\nname = "submission"\naddress = "127.0.0.1:%d"\n'
                    'tls = "starttls"\nauth = "%s"\n'
                    % (os.path.join(self.dir, "spool"), cert, key, dovecot_port, self.port,
                       self.auth))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["taskset", "-c", "0", RINGMX, "--config", self.config],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr.log"), "wb"))
        wait_port(self.port)
        return self


class RingmxNoAuth(Ringmx):
    """The same ringmx and STARTTLS without AUTH: what AUTH itself costs."""
    auth = "none"


class Postfix:
    def __init__(self, base, cert, key, dovecot_port):
        opts = ("-o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot "
                "-o smtpd_sasl_path=inet:127.0.0.1:%d -o smtpd_tls_auth_only=yes "
                "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject "
                "-o smtpd_recipient_restrictions=permit_sasl_authenticated,reject"
                % dovecot_port)
        self.pf = PrivatePostfix({"submission": opts}, cert, key, cpus="0", base_dir=base,
                                 extra_main="smtpd_tls_session_cache_database = "
                                            "btree:${data_directory}/smtpd_scache\n")
        self.port = self.pf.ports["submission"]

    def start(self):
        self.pf.start()
        return self

    def root(self):
        return self.pf.master

    def stop(self):
        self.pf.stop()


def bench(port, args, duration):
    cmd = ["taskset", "-c", "1", BENCH, "--target", "127.0.0.1:%d" % port, "--threads", "1",
           "--json", "--timeout", "10", "--duration", str(duration)] + args
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=duration + 60)
    if p.returncode not in (0, 1):
        raise RuntimeError("ringmx-bench failed: %s\n%s" % (" ".join(cmd),
                                                             p.stderr.decode(errors="replace")))
    return json.loads(p.stdout)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--base", default="/var/spool")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (private Postfix and Dovecot instances)")
    for exe in (RINGMX, BENCH, POSTFIX):
        if not os.access(exe, os.X_OK):
            sys.exit("missing %s (build first: ./tools/dev.sh build)" % exe)
    from dovecot_auth import DovecotAuth
    base = tempfile.mkdtemp(prefix="ringmx-auth-bench-", dir=a.base)
    os.chmod(base, 0o755)
    dovecot = DovecotAuth({USER: PASSWORD}).start()
    pin_tree(dovecot.proc.pid, "0")
    samples = {"ringmx": [], "postfix": [], "ringmx-noauth": []}
    ratios = []
    try:
        cert, key = make_cert(base, "ecdsa", "mx.bench")
        for run in range(a.runs):
            got = {}
            for name, cls in (("ringmx", Ringmx), ("postfix", Postfix),
                              ("ringmx-noauth", RingmxNoAuth)):
                srv = cls(base, cert, key, dovecot.port).start()
                auth = [] if cls is RingmxNoAuth else ["--auth", "%s:%s" % (USER, PASSWORD)]
                try:
                    dv0 = tree_usage([dovecot.proc.pid])[0]
                    s0 = tree_usage([srv.root()])[0]
                    r = bench(srv.port, ["--connections", str(a.connections), "--messages",
                                         "100000", "--size", "1024", "--per-connection", "1",
                                         "--starttls", "--from", USER] + auth,
                              a.duration)
                    s1 = tree_usage([srv.root()])[0]
                    dv1 = tree_usage([dovecot.proc.pid])[0]
                finally:
                    srv.stop()
                n = r["ok"]
                if n == 0 or r.get("failed", 0) > n // 100:
                    raise RuntimeError("%s: %d ok, %s" % (name, n, json.dumps(r)[:600]))
                got[name] = (r["messages_per_s"], (s1 - s0) * 1e6 / n, (dv1 - dv0) * 1e6 / n)
                samples[name].append(got[name])
                print("run %d %s: %.0f msgs/s, server %.0f us/msg, dovecot %.0f us/msg, "
                      "%d ok %d failed" % (run + 1, name, got[name][0], got[name][1],
                                           got[name][2], n, r.get("failed", 0)), flush=True)
            ratios.append((got["ringmx"][0] / got["postfix"][0],
                           got["postfix"][1] / got["ringmx"][1]))
    finally:
        dovecot.stop()
        dovecot.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    print("\n| server | msgs/s | server CPU us/msg | Dovecot CPU us/msg |")
    print("|---|---:|---:|---:|")
    for name in ("ringmx", "postfix", "ringmx-noauth"):
        s = samples[name]
        print("| %s | %.0f | %.0f | %.0f |" % (name, med([x[0] for x in s]),
                                              med([x[1] for x in s]), med([x[2] for x in s])))
    print("\nratios (inside each run): rate ringmx/Postfix %.2fx, CPU per message "
          "Postfix/ringmx %.2fx; AUTH's own cost to ringmx %.0f us/msg (with - without); "
          "%d runs of %d s, %d connections, %s"
          % (med([r[0] for r in ratios]), med([r[1] for r in ratios]),
             med([x[1] for x in samples["ringmx"]]) - med([x[1] for x in samples["ringmx-noauth"]]),
             a.runs, a.duration, a.connections, time.strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
