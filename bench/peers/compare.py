#!/usr/bin/env python3
"""ringmx next to other SMTP servers on one machine, side by side, with ringmx-bench.

  bench/peers/compare.py [--quick] [--runs N] [--loads a,b,c,d,e] [--servers LIST]
                         [--no-install] [--no-docs] [--out DIR] [--tmp-base DIR]

Run as root on Debian 12 (apt-get, a private Postfix master, smtp-sink dropping to nobody).

Installs what is missing: Debian's postfix (without a system instance), gnuplot-nox, nodejs
(npm comes with it), chasquid (if the package installs), and Haraka from npm into
/var/cache/ringmx-bench/haraka (kept and reused). Then starts, on 127.0.0.1 high ports, each
with its own config under a temp dir in --tmp-base (default /var/spool, the file system mail
queues live on):
  sink      Postfix smtp-sink: reads and throws away, stores nothing (the do-nothing ceiling)
  postfix   a private Postfix instance: smtpd -> cleanup (queue file, fsync) -> qmgr -> discard
  haraka    Haraka, nodes = number of CPUs, plugins: queue/discard (shipped) and a 3-line
            plugin that skips reverse DNS and accepts every recipient
  chasquid  chasquid, domain example.org, recipient alias "b: | /bin/true" (queued, then
            delivered by running /bin/true)
  ringmx    build/release/tools/ringmx, --shards = number of CPUs, spool under the temp dir
and drives each with the same ringmx-bench loads (32 concurrent connections):
  a  1 KiB, 1 message per connection
  b  1 KiB, 100 messages per connection
  c  100 KiB, 10 messages per connection
  d  1 KiB, 1 message per connection, STARTTLS (runs when ringmx-bench supports --starttls;
     per server when it can be given a certificate: ECDSA P-256, self-signed)
  e  10,000 idle connections held open (greeted, then silent) plus an open-loop load of
     500 messages/s for 10 s (1 KiB, 1 message per connection)
Every run is bounded by a message count and --duration, and runs under a timeout.
Loads a-d: --runs repetitions (default 3), interleaved (rep, load, server); load e: the idle
connections are opened once per server and the open-loop load runs --runs times on top.
Per run: msgs/s (ringmx-bench's messages_per_s = accepted / elapsed), p99 message latency
(ringmx-bench --json), server CPU per accepted message (utime+stime+cutime+cstime summed
over the server's whole process tree from /proc, read after the server's own queue drained,
so processes that exited and were reaped count through their parent), peak sum of VmRSS of
the tree (sampled every 0.25 s). Reported: median (min-max) over the runs, ratios against
ringmx taken inside each repetition. Writes tables to docs/benchmarks.md (between its
GENERATED markers for this script) and charts to docs/img/ (gnuplot), raw data to --out.

--quick: one repetition, fewer messages, shorter bounds (smoke test, ~3 minutes).
Traffic is loopback only; every process started here is stopped by PID (its process group),
never by name.
"""

import argparse
import datetime
import json
import multiprocessing as mp
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from private_postfix import POSTFIX_MASTER_CF, POSTFIX_TLS_MAIN_CF, main_cf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARAKA_CACHE = "/var/cache/ringmx-bench/haraka"
# The npm registry this was written against lacked two versions that Haraka 3.3.4's
# dependency libmime 5.6 pins exactly; the previous releases of both are API compatible.
HARAKA_PACKAGE = {
    "name": "ringmx-bench-haraka", "private": True,
    "dependencies": {"Haraka": "3.3.4"},
    "overrides": {"encoding-japanese": "2.4.0", "libqp": "2.1.2"},
}
FROM = ""                 # null reverse-path: see the docs (chasquid would do SPF over DNS)
TO = "b@example.org"
SESSIONS = 32
IDLE = 10000
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SERVERS = ["sink", "postfix", "haraka", "chasquid", "ringmx"]
BEGIN_MARK = ("<!-- BEGIN GENERATED: bench/peers/compare.py rewrites everything up to the "
              "END marker -->")
END_MARK = "<!-- END GENERATED: bench/peers/compare.py -->"


def log(msg):
    print("== " + msg, file=sys.stderr, flush=True)


def sh(cmd, timeout=600, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ------------------------------------------------------------------ /proc accounting

def proc_table():
    """pid -> (ppid, cpu ticks incl. reaped children, rss bytes)."""
    t = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        a = s[s.rfind(")") + 2:].split()
        # fields after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
        t[int(d)] = (int(a[1]), int(a[11]) + int(a[12]) + int(a[13]) + int(a[14]),
                     int(a[21]) * PAGE)
    return t


def tree_pids(roots, table=None):
    table = table if table is not None else proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = set(), [r for r in roots if r in table]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo.extend(kids.get(p, ()))
    return out, table


def tree_usage(roots):
    """(cpu seconds, rss bytes, process count) over the live tree under roots."""
    pids, table = tree_pids(roots)
    return (sum(table[p][1] for p in pids) / CLK, sum(table[p][2] for p in pids), len(pids))


def tree_pss(roots):
    total = 0
    for p in tree_pids(roots)[0]:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


class PeakRss(threading.Thread):
    def __init__(self, roots):
        super().__init__(daemon=True)
        self.roots, self.peak, self.stop_ev = roots, 0, threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            self.peak = max(self.peak, tree_usage(self.roots)[1])
            self.stop_ev.wait(0.25)

    def finish(self):
        self.stop_ev.set()
        self.join()
        self.peak = max(self.peak, tree_usage(self.roots)[1])
        return self.peak


# ------------------------------------------------------------------ installation

def system_masters():
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                exe = os.readlink("/proc/%s/exe" % d)
            except OSError:
                continue
            if exe.endswith("/postfix/sbin/master") or exe.endswith("/bin/chasquid"):
                out.add(int(d))
    return out


def apt_install(pkgs, notes):
    """apt-get install without letting a package start its service; stops (by PID) any
    Postfix master or chasquid that appears anyway. Returns True on success."""
    before = system_masters()
    created = False
    if not os.path.exists("/usr/sbin/policy-rc.d"):
        with open("/usr/sbin/policy-rc.d", "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod("/usr/sbin/policy-rc.d", 0o755)
        created = True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if "postfix" in pkgs:
            subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type "
                           "select No configuration\n", text=True, check=False)
        log("apt-get install " + " ".join(pkgs))
        r = sh(["apt-get", "install", "-y", "-qq"] + pkgs, timeout=900, env=env)
        if r.returncode != 0:
            sh(["apt-get", "update", "-qq"], timeout=600, env=env)
            r = sh(["apt-get", "install", "-y", "-qq"] + pkgs, timeout=900, env=env)
        if r.returncode != 0:
            notes.append("apt-get install %s failed: %s" % (" ".join(pkgs),
                                                            r.stderr.strip()[-300:]))
            return False
        return True
    finally:
        if created:
            os.unlink("/usr/sbin/policy-rc.d")
        for pid in system_masters() - before:
            log("WARNING: the install started PID %d; stopping it by PID" % pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


def install(a, notes):
    def missing(paths):
        return [p for p in paths if not os.access(p, os.X_OK)]

    want = []
    if missing(["/usr/sbin/smtp-sink", "/usr/sbin/postfix", "/usr/lib/postfix/sbin/master"]):
        want.append("postfix")
    if not shutil.which("gnuplot"):
        want.append("gnuplot-nox")
    if not shutil.which("node"):
        want.append("nodejs")
    if want and not a.no_install:
        apt_install(want, notes)
    if not shutil.which("npm") and shutil.which("node") and not a.no_install:
        apt_install(["npm"], notes)      # nodesource's nodejs ships npm; Debian's does not
    if not shutil.which("chasquid") and not a.no_install:
        pol = sh(["apt-cache", "policy", "chasquid"], timeout=60).stdout
        if "Candidate: (none)" in pol or "Candidate" not in pol:
            notes.append("chasquid: no apt candidate")
        else:
            apt_install(["chasquid"], notes)
    haraka = os.path.join(HARAKA_CACHE, "node_modules", ".bin", "haraka")
    if not os.access(haraka, os.X_OK) and shutil.which("npm") and not a.no_install:
        os.makedirs(HARAKA_CACHE, exist_ok=True)
        with open(os.path.join(HARAKA_CACHE, "package.json"), "w") as f:
            json.dump(HARAKA_PACKAGE, f, indent=1)
        log("npm install Haraka into " + HARAKA_CACHE)
        r = sh(["npm", "install", "--no-audit", "--no-fund", "--omit=optional"], timeout=900,
               cwd=HARAKA_CACHE)
        if r.returncode != 0:
            notes.append("npm install Haraka failed: " + r.stderr.strip()[-300:])


# ------------------------------------------------------------------ servers

class Server:
    name = "?"
    client_args = []          # extra ringmx-bench arguments for this server
    client_note = ""

    def __init__(self, base, cert, tls_wanted):
        self.base = os.path.join(base, self.name)
        os.makedirs(self.base, exist_ok=True)
        self.cert, self.tls_wanted = cert, tls_wanted
        self.port = free_port()
        self.proc = None
        self.notes = []
        self.tls = False          # offers STARTTLS with our certificate
        self.tls_reason = "not configured"
        self.cmd = []

    def available(self):
        return None               # or a reason it cannot run

    def version(self):
        return "?"

    def launch(self, cmd, env=None, cwd=None):
        self.cmd = cmd
        self.log = open(os.path.join(self.base, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=env, cwd=cwd or "/")

    def roots(self):
        return [self.proc.pid] if self.proc else []

    def wait_ready(self, seconds=20):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s); see %s/server.log" %
                                   (self.name, self.proc.returncode, self.base))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("%s does not greet on port %d" % (self.name, self.port))

    def queued(self):
        """Messages the server has accepted and not finished with (queue servers)."""
        return 0

    def drain(self):
        """Waits (bounded) until the server has finished what it accepted."""
        deadline = time.monotonic() + 120
        while self.queued() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.queued():
            self.notes.append("queue not empty 120 s after a run")

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        pg = self.proc.pid          # start_new_session: our child leads its own group
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        except OSError:
            pass
        try:
            os.killpg(pg, signal.SIGKILL)    # leftovers of the group we created
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Sink(Server):
    name = "sink"

    def available(self):
        return None if os.access("/usr/sbin/smtp-sink", os.X_OK) else "smtp-sink not installed"

    def version(self):
        return "Postfix smtp-sink " + postfix_version()

    def start(self):
        self.tls_reason = "smtp-sink has no TLS"
        self.launch(["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:%d" % self.port, "1024"])


def postfix_version():
    r = sh(["postconf", "-d", "-h", "mail_version"], timeout=30)
    return r.stdout.strip() or "?"


class Postfix(Server):
    name = "postfix"
    MASTER = "/usr/lib/postfix/sbin/master"

    def available(self):
        return None if os.access(self.MASTER, os.X_OK) else "postfix not installed"

    def version(self):
        return "Postfix " + postfix_version()

    def start(self):
        conf, q, data = (os.path.join(self.base, x) for x in ("etc", "queue", "data"))
        for d in (conf, q, data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(data, "postfix")
        self.queue = q
        self.maillog = os.path.join(self.base, "maillog")
        dns = "smtp_dns_support_level = disabled"
        if sh(["postconf", "-d", "disable_dns_lookups"], timeout=30).returncode == 0:
            dns = "disable_dns_lookups = yes"
        tls = ""
        if self.tls_wanted:
            tls = POSTFIX_TLS_MAIN_CF.format(cert=self.cert[0], key=self.cert[1])
            self.tls, self.tls_reason = True, ""
        with open(os.path.join(conf, "main.cf"), "w") as f:
            # Postfix's default process limit (100) is kept: load (e) reports what it does.
            f.write(main_cf(q, data, self.maillog, self.base, process_limit=100))
            f.write("smtp_host_lookup = native\n%s\n%s" % (dns, tls))
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write("""# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n - n - - smtpd
""".format(port=self.port) + POSTFIX_MASTER_CF)
        r = sh(["postfix", "-c", conf, "check"], timeout=120)   # creates the queue dirs
        if r.returncode != 0:
            raise RuntimeError("postfix check: " + r.stdout + r.stderr)
        # The master in the foreground (no -w: no daemonising wrapper), so its PID is ours.
        self.launch([self.MASTER, "-c", conf], env=dict(os.environ, MAIL_CONFIG=conf))

    def queued(self):
        n = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _, _, files in os.walk(os.path.join(self.queue, sub)):
                n += len(files)
        return n



class Haraka(Server):
    name = "haraka"
    # Haraka 3.3.4 answers 503 to a MAIL pipelined behind the previous message's end of data
    # (every second message of a connection failed), and with pipelining its 354 waits for
    # the client's delayed ACK (~40 ms per message): lock-step, its best case here.
    client_args = ["--no-pipelining"]
    client_note = "--no-pipelining"
    BIN = os.path.join(HARAKA_CACHE, "node_modules", ".bin", "haraka")

    def available(self):
        return None if os.access(self.BIN, os.X_OK) else "Haraka not installed (npm)"

    def version(self):
        try:
            with open(os.path.join(HARAKA_CACHE, "node_modules", "Haraka", "package.json")) as f:
                v = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            v = "?"
        return "Haraka %s (node %s)" % (v, sh(["node", "--version"], timeout=30).stdout.strip())

    def start(self):
        inst = os.path.join(self.base, "inst")
        r = sh([self.BIN, "-i", inst], timeout=120)
        if not os.path.isdir(os.path.join(inst, "config")):
            raise RuntimeError("haraka -i failed: " + r.stdout + r.stderr)
        cfg = os.path.join(inst, "config")
        with open(os.path.join(cfg, "smtp.ini"), "w") as f:
            f.write("listen=127.0.0.1:%d\nnodes=cpus\n" % self.port)
        with open(os.path.join(cfg, "log.ini"), "w") as f:
            f.write("[main]\nlevel=warn\n")
        plugins = ["bench_accept", "queue/discard"]
        if self.tls_wanted:
            shutil.copy(self.cert[0], os.path.join(cfg, "tls_cert.pem"))
            shutil.copy(self.cert[1], os.path.join(cfg, "tls_key.pem"))
            plugins.insert(0, "tls")
            self.tls, self.tls_reason = True, ""
        with open(os.path.join(cfg, "plugins"), "w") as f:
            f.write("\n".join(plugins) + "\n")
        with open(os.path.join(inst, "plugins", "bench_accept.js"), "w") as f:
            f.write("// ringmx bench: no reverse DNS lookup (no resolver here), any recipient OK\n"
                    "exports.hook_lookup_rdns = (next) => next(OK, 'localhost')\n"
                    "exports.hook_rcpt = (next) => next(OK)\n")
        # queue/discard drops a message only when told to: this variable tells it to.
        self.launch([self.BIN, "-c", inst], env=dict(os.environ, YES_REALLY_DO_DISCARD="1"))


class Chasquid(Server):
    name = "chasquid"
    # chasquid 1.11 loses a QUIT that arrives in the same segment as the end of data
    # (ringmx-bench pipelines it so), and then waits for the client's timeout; lock-step.
    client_args = ["--no-pipelining"]
    client_note = "--no-pipelining"

    def available(self):
        return None if shutil.which("chasquid") else "chasquid not installed"

    def version(self):
        return sh(["chasquid", "-version"], timeout=30).stdout.split("(")[0].strip() or "?"

    def start(self):
        conf = os.path.join(self.base, "conf")
        certdir = os.path.join(conf, "certs", "bench.test")
        dom = os.path.join(conf, "domains", "example.org")
        self.data = os.path.join(self.base, "data")
        for d in (certdir, dom, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.copy(self.cert[0], os.path.join(certdir, "fullchain.pem"))
        shutil.copy(self.cert[1], os.path.join(certdir, "privkey.pem"))
        self.tls, self.tls_reason = True, ""
        with open(os.path.join(dom, "aliases"), "w") as f:
            f.write("b: | /bin/true\n")
        with open(os.path.join(conf, "chasquid.conf"), "w") as f:
            # every listener on loopback: an unset address list means the defaults, on all
            # interfaces
            f.write('hostname: "bench.test"\n'
                    'smtp_address: "127.0.0.1:%d"\n'
                    'submission_address: "127.0.0.1:%d"\n'
                    'submission_over_tls_address: "127.0.0.1:%d"\n'
                    'monitoring_address: ""\n'
                    'mail_delivery_agent_bin: "/bin/true"\n'
                    'data_dir: "%s"\n'
                    'mail_log_path: "%s"\n'
                    % (self.port, free_port(), free_port(), self.data,
                       os.path.join(self.base, "mail.log")))
        self.launch(["chasquid", "-config_dir", conf, "-alsologtostderr"])

    def queued(self):
        try:
            return len(os.listdir(os.path.join(self.data, "queue")))
        except OSError:
            return 0



class Ringmx(Server):
    name = "ringmx"

    def __init__(self, *a, binary=None):
        super().__init__(*a)
        self.binary = binary

    def available(self):
        return None if os.access(self.binary, os.X_OK) else "no %s (build it)" % self.binary

    def version(self):
        # The binary names the tree that built it (git describe at build time).
        return sh([self.binary, "--version"], timeout=30).stdout.strip()

    def start(self):
        conf = os.path.join(self.base, "ringmx.toml")
        with open(conf, "w") as f:
            f.write('[server]\nhostname = "mx.bench"\nshards = %d\nlog_level = "warn"\n'
                    "max_connections = 100000\nmax_connections_per_ip = 100000\n"
                    '[spool]\ndir = "%s"\n[admin]\nlisten = ""\n'
                    '[[listener]]\nname = "smtp"\naddress = "127.0.0.1:%d"\n'
                    % (os.cpu_count(), os.path.join(self.base, "spool"), self.port))
        cmd = [self.binary, "--config", conf]
        if self.tls_wanted:
            helptext = sh([self.binary, "--help"], timeout=30).stdout
            if "--tls-cert" in helptext and "--tls-key" in helptext:
                cmd += ["--tls-cert", self.cert[0], "--tls-key", self.cert[1]]
                self.tls, self.tls_reason = True, ""
            else:
                self.tls_reason = "ringmx --help lists no --tls-cert yet"
        self.launch(cmd)


class RingmxLockstep(Server):
    """The same ringmx process driven lock-step, for the peers that need --no-pipelining."""
    name = "ringmx-lockstep"
    client_args = ["--no-pipelining"]
    client_note = "--no-pipelining"

    def __init__(self, ringmx):
        self.ringmx, self.name, self.port, self.proc = ringmx, "ringmx-lockstep", ringmx.port, ringmx.proc
        self.notes, self.tls, self.tls_reason, self.cmd = [], ringmx.tls, ringmx.tls_reason, []

    def roots(self):
        return self.ringmx.roots()

    def stop(self):
        pass


# ------------------------------------------------------------------ loads

def loads_for(quick):
    q = quick
    return {
        "a": dict(title="1 KiB, 1 message per connection", size=1024, per=1,
                  messages=2000 if q else 20000, duration=4 if q else 6),
        "b": dict(title="1 KiB, 100 messages per connection", size=1024, per=100,
                  messages=6400 if q else 64000, duration=4 if q else 6),
        "c": dict(title="100 KiB, 10 messages per connection", size=102400, per=10,
                  messages=500 if q else 4000, duration=4 if q else 6),
        "d": dict(title="1 KiB, 1 message per connection, STARTTLS", size=1024, per=1,
                  messages=2000 if q else 20000, duration=4 if q else 6, starttls=True),
        "e": dict(title="%s idle connections + open loop %d msgs/s" %
                  ("{:,}".format(2000 if q else IDLE), 200 if q else 500),
                  size=1024, per=1, idle=2000 if q else IDLE, rate=200 if q else 500,
                  messages=600 if q else 5000, duration=3 if q else 10),
    }


def bench_cmd(a, server, load, extra=()):
    cmd = [a.bench, "--target", "127.0.0.1:%d" % server.port, "--connections", str(SESSIONS),
           "--messages", str(load["messages"]), "--size", str(load["size"]),
           "--per-connection", str(load["per"]), "--duration", str(load["duration"]),
           "--timeout", "10", "--json", "--from", FROM, "--to", TO, "--threads", "0"]
    if load.get("rate"):
        cmd += ["--rate", str(load["rate"])]
    if load.get("starttls"):
        cmd += ["--starttls"] + list(a.tls_client_args)
    return cmd + list(server.client_args) + list(extra)


def run_bench(a, server, load, tag):
    """One measured run; returns a result dict."""
    cmd = bench_cmd(a, server, load)
    roots = server.roots()
    cpu0 = tree_usage(roots)[0]
    peak = PeakRss(roots)
    peak.start()
    t0 = time.time()
    out_path = os.path.join(a.out, "bench.%s.json" % tag)
    try:
        with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
            p = subprocess.run(cmd, stdout=out, stderr=err, timeout=load["duration"] + 90)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = -9
    server.drain()
    cpu1 = tree_usage(roots)[0]
    rss = peak.finish()
    try:
        with open(out_path) as f:
            j = json.load(f)
    except (OSError, ValueError):
        j = {}
    ok = j.get("ok", 0)
    r = dict(server=server.name, tag=tag, rc=rc, when=t0, ok=ok, sent=j.get("sent", 0),
             rate=j.get("messages_per_s", 0.0), elapsed=j.get("elapsed_s", 0.0),
             p99_ms=(j.get("latency_us", {}).get("message", {}).get("p99", 0) or 0) / 1000,
             cpu_us=(cpu1 - cpu0) * 1e6 / ok if ok else None, rss=rss,
             errors=j.get("errors", {}), cmd=cmd)
    log("  %-8s %-4s %7d/%-7d ok  %8.0f msg/s  p99 %8.2f ms  cpu %s us/msg  rss %.1f MiB%s" %
        (server.name, tag.split(".")[1], ok, r["sent"], r["rate"], r["p99_ms"],
         "%.0f" % r["cpu_us"] if r["cpu_us"] else "-", rss / 2**20,
         "" if rc == 0 else "  exit %s %s" % (rc, json.dumps(r["errors"].get("by_kind", {})))))
    return r


# ------------------------------------------------------------------ idle connections

def idle_worker(port, count, offset, report, release, result):
    raise_nofile()
    sel = selectors.DefaultSelector()
    socks, greeted = [], 0
    deadline = time.monotonic() + 30

    def reap(timeout):
        nonlocal greeted
        for key, _ in sel.select(timeout=timeout):
            try:
                greeted += key.fileobj.recv(512).startswith(b"220")
            except OSError:
                pass
            sel.unregister(key.fileobj)

    for i in range(count):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind(("127.0.0.%d" % (2 + (offset + i) % 8), 0))
            s.connect_ex(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        if i % 250 == 249:
            reap(0)
    while greeted < count and time.monotonic() < deadline and sel.get_map():
        reap(0.5)
    report.put(greeted)
    release.wait(600)
    alive = 0
    for s in socks:         # still open at the end: no EOF, no error
        try:
            alive += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    result.put(alive)


def run_idle(a, server, load, reps, rows):
    n = load["idle"]
    per = 5000
    ctx = mp.get_context("fork")
    report, result, release = ctx.Queue(), ctx.Queue(), ctx.Event()
    roots = server.roots()
    rss0 = tree_usage(roots)[1]
    t0 = time.monotonic()
    workers, off = [], 0
    while off < n:
        k = min(per, n - off)
        p = ctx.Process(target=idle_worker, args=(server.port, k, off, report, release, result))
        p.start()
        workers.append(p)
        off += k
    try:
        greeted = 0
        for _ in workers:
            greeted += report.get(timeout=120)
        open_s = time.monotonic() - t0
        time.sleep(1)
        rss1 = tree_usage(roots)[1]
        log("  %-8s idle: %d of %d greeted in %.1f s; server RSS %.1f -> %.1f MiB" %
            (server.name, greeted, n, open_s, rss0 / 2**20, rss1 / 2**20))
        runs = []
        for rep in range(1, reps + 1):
            r = run_bench(a, server, load, "r%d.e.%s" % (rep, server.name))
            r["rep"] = rep
            runs.append(r)
    finally:
        release.set()
        alive = 0
        for _ in workers:
            try:
                alive += result.get(timeout=60)
            except Exception:
                pass
        for p in workers:
            p.join(30)
            if p.is_alive():
                p.kill()
    rows.append(dict(server=server.name, load="e", idle=n, greeted=greeted, alive=alive,
                     open_s=open_s, rss_before=rss0, rss_idle=rss1, runs=runs))


# ------------------------------------------------------------------ report

def mmm(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt % m
    return (fmt + " (" + fmt + "–" + fmt + ")") % (m, min(xs), max(xs))


def ratios(runs, ref_runs, key, invert):
    out = []
    ref = {r["rep"]: r for r in ref_runs}
    for r in runs:
        q = ref.get(r["rep"])
        if not q or not r.get(key) or not q.get(key):
            continue
        out.append(q[key] / r[key] if invert else r[key] / q[key])
    return out


def hhmm(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%H:%M")


def load_table(key, load, results, skips, servers):
    head = ("| server | msgs/s | ok / sent | ringmx msgs/s ÷ this | server CPU µs/msg | "
            "this CPU/msg ÷ ringmx | p99 ms | peak ΣRSS MiB | measured (UTC) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
    lines = []
    ref = [r for r in results if r["load"] == key and r["server"] == "ringmx"]
    reasons = set(skips.get((key, s.name)) for s in servers)
    if len(reasons) == 1 and None not in reasons:
        return "#### (%s) %s\n\nskipped: %s\n" % (key, load["title"], reasons.pop())
    for s in servers:
        if (key, s.name) in skips:
            lines.append("| %s | skipped: %s | | | | | | | |" % (s.name, skips[(key, s.name)]))
            continue
        runs = [r for r in results if r["load"] == key and r["server"] == s.name]
        if not runs:
            continue
        good = [r for r in runs if r["ok"]]
        note = ""
        if s.client_note:
            note = " (client %s)" % s.client_note
        rr = "1" if s.name == "ringmx" else mmm(ratios(good, ref, "rate", True), "%.2f")
        cr = "1" if s.name == "ringmx" else mmm(ratios(good, ref, "cpu_us", False), "%.2f")
        lines.append("| %s%s | %s | %d / %d | %s | %s | %s | %s | %s | %s |" % (
            s.name, note, mmm([r["rate"] for r in runs], "%.0f"),
            sum(r["ok"] for r in runs), sum(r["sent"] for r in runs), rr,
            mmm([r["cpu_us"] for r in good], "%.0f"), cr,
            mmm([r["p99_ms"] for r in good], "%.1f"),
            mmm([r["rss"] / 2**20 for r in runs], "%.1f"),
            ", ".join(hhmm(r["when"]) for r in runs)))
    return "#### (%s) %s\n\n%s%s\n" % (key, load["title"], head, "\n".join(lines))


def idle_table(load, idle_rows, skips, servers):
    head = ("| server | idle greeted / opened | not closed by the server | time to open s | "
            "ΣRSS before → with idle MiB | KiB per idle conn | msgs/s (target %d) | ok / sent "
            "| p99 ms | server CPU µs/msg | measured (UTC) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n" % load["rate"])
    lines = []
    for s in servers:
        if ("e", s.name) in skips:
            lines.append("| %s | skipped: %s | | | | | | | | | |" % (s.name, skips[("e", s.name)]))
            continue
        row = next((r for r in idle_rows if r["server"] == s.name), None)
        if not row:
            continue
        runs = row["runs"]
        per = "%.2f" % ((row["rss_idle"] - row["rss_before"]) / 1024 / max(1, row["greeted"]))
        if row["greeted"] < row["idle"]:
            per = "– (not all greeted)"
        lines.append("| %s%s | %d / %d | %d | %.1f | %.1f → %.1f | %s | %s | %d / %d | %s | %s | %s |"
                     % (s.name, " (client %s)" % s.client_note if s.client_note else "",
                        row["greeted"], row["idle"], row["alive"], row["open_s"],
                        row["rss_before"] / 2**20, row["rss_idle"] / 2**20, per,
                        mmm([r["rate"] for r in runs], "%.0f"), sum(r["ok"] for r in runs),
                        sum(r["sent"] for r in runs),
                        mmm([r["p99_ms"] for r in runs if r["ok"]], "%.1f"),
                        mmm([r["cpu_us"] for r in runs if r["ok"]], "%.0f"),
                        ", ".join(hhmm(r["when"]) for r in runs)))
    return "#### (e) %s\n\n%s%s\n" % (load["title"], head, "\n".join(lines))


def charts(a, results, servers, loads):
    """Two PNGs with gnuplot: msgs/s and CPU µs/msg, per server per load (medians)."""
    if not shutil.which("gnuplot"):
        return []
    keys = [k for k in "abcde" if any(r["load"] == k for r in results)]
    names = [s.name for s in servers if any(r["server"] == s.name for r in results)]
    made = []
    for metric, fname, ylabel, logy in (
            ("rate", "peers-msgs-per-s.png", "messages/s (median)", True),
            ("cpu_us", "peers-cpu-us-per-msg.png", "server CPU µs per message (median)", True)):
        dat = os.path.join(a.out, fname + ".dat")
        with open(dat, "w") as f:
            f.write("load " + " ".join(names) + "\n")
            for k in keys:
                vals = []
                for n in names:
                    xs = [r[metric] for r in results if r["load"] == k and r["server"] == n
                          and r.get(metric) and r["ok"]]
                    vals.append("%.1f" % statistics.median(xs) if xs else "NaN")
                f.write('"(%s) %s" %s\n' % (k, loads[k]["short"], " ".join(vals)))
        png = os.path.join(a.img, fname)
        script = """set terminal pngcairo size 1000,480 font "sans,10"
set output '{png}'
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key outside right top
set grid ytics
set ylabel '{ylabel}'
{logy}
set yrange [{ymin}:*]
set title '{title}'
plot for [i=2:{ncol}] '{dat}' using i:xtic(1) title columnheader(i)
""".format(png=png, ylabel=ylabel, logy="set logscale y" if logy else "",
           ymin=("10" if metric == "rate" else "5") if logy else "0", ncol=len(names) + 1, dat=dat,
           title="%s, loopback, %d CPUs, %s (medians; log scale)" % (
               "throughput" if metric == "rate" else "server CPU per message",
               os.cpu_count(), time.strftime("%Y-%m-%d", time.gmtime())))
        r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True,
                           timeout=60)
        if r.returncode == 0:
            made.append(os.path.relpath(png, os.path.dirname(a.docs)))
        else:
            log("gnuplot failed: " + r.stderr[-300:])
    return made


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    osr = "?"
    try:
        with open("/etc/os-release") as f:
            osr = re.search(r'PRETTY_NAME="?([^"\n]*)', f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return "nproc %d; CPU %s; %.0f GiB RAM; kernel %s; %s" % (
        os.cpu_count(), cpu, mem, os.uname().release, osr)


def write_docs(a, report):
    if not os.path.exists(a.docs):
        with open(a.docs, "w") as f:
            f.write("# Benchmarks\n")
    with open(a.docs) as f:
        text = f.read()
    if BEGIN_MARK not in text or END_MARK not in text:
        text = text.rstrip("\n") + ("\n\n## ringmx next to Postfix, Haraka and chasquid "
                                    "(ringmx-bench, loopback)\n\n%s\n%s\n" % (BEGIN_MARK, END_MARK))
    i, j = text.index(BEGIN_MARK) + len(BEGIN_MARK), text.index(END_MARK)
    with open(a.docs, "w") as f:
        f.write(text[:i] + "\n" + report.rstrip("\n") + "\n" + text[j:])
    log("report written to " + a.docs)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--quick", action="store_true", help="one repetition, small loads")
    ap.add_argument("--runs", type=int, default=None, help="repetitions (default 3; --quick 1)")
    ap.add_argument("--loads", default="a,b,c,d,e")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--no-docs", action="store_true", help="leave docs/ alone")
    ap.add_argument("--out", default=None, help="raw results (default /var/tmp/ringmx-peers.*)")
    ap.add_argument("--tmp-base", default="/var/spool", help="where queues and spools go")
    ap.add_argument("--bench", default=os.path.join(REPO, "build/release/bench/ringmx-bench"))
    ap.add_argument("--ringmx", default=os.path.join(REPO, "build/release/tools/ringmx"))
    ap.add_argument("--docs", default=os.path.join(REPO, "docs/benchmarks.md"))
    ap.add_argument("--img", default=os.path.join(REPO, "docs/img"))
    a = ap.parse_args()
    runs = a.runs or (1 if a.quick else 3)
    if os.geteuid() != 0:
        sys.exit("compare.py: run as root (apt-get, Postfix master, smtp-sink -u nobody)")
    started = time.time()
    hard = raise_nofile()
    notes = []
    install(a, notes)
    if not os.access(a.bench, os.X_OK):
        sys.exit("compare.py: no %s; build the release tree first" % a.bench)
    a.out = a.out or tempfile.mkdtemp(prefix="ringmx-peers.", dir="/var/tmp")
    os.makedirs(a.out, exist_ok=True)
    if a.no_docs:
        a.img = a.out
    os.makedirs(a.img, exist_ok=True)
    loads = loads_for(a.quick)
    for k, short in zip("abcde", ("1K 1/conn", "1K 100/conn", "100K 10/conn", "STARTTLS",
                                  "idle + rate")):
        loads[k]["short"] = short
    want_loads = [k for k in a.loads.split(",") if k in loads]

    # STARTTLS in the load generator: listed in --help and not marked as unsupported.
    bhelp = sh([a.bench, "--help"], timeout=30).stdout
    m = re.search(r"^\s*--starttls\b(.*)$", bhelp, re.M)
    tls_skip = None
    if not m:
        tls_skip = "ringmx-bench --help lists no --starttls"
    elif "not supported" in m.group(1):
        tls_skip = "ringmx-bench --starttls is not supported yet (its --help says so)"
    a.tls_client_args = []
    for opt in ("--insecure", "--no-verify", "--tls-no-verify"):
        if re.search(r"^\s*%s\b" % re.escape(opt), bhelp, re.M):
            a.tls_client_args = [opt]
            break
    if "d" not in want_loads:
        tls_skip = tls_skip or "not requested"

    base = tempfile.mkdtemp(prefix="ringmx-peers.", dir=a.tmp_base)
    os.chmod(base, 0o755)
    cert = (os.path.join(base, "cert.pem"), os.path.join(base, "key.pem"))
    r = sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "7", "-subj", "/CN=bench.test", "-addext",
            "subjectAltName=DNS:bench.test,DNS:localhost,IP:127.0.0.1",
            "-keyout", cert[1], "-out", cert[0]], timeout=60)
    if r.returncode != 0:
        sys.exit("openssl: " + r.stderr)
    for p in cert:
        os.chmod(p, 0o644)
    if "--tls-ca" in bhelp:
        a.tls_client_args += ["--tls-ca", cert[0]]

    classes = {"sink": Sink, "postfix": Postfix, "haraka": Haraka, "chasquid": Chasquid,
               "ringmx": Ringmx}
    servers, skipped_servers = [], {}
    skips = {}
    rows, idle_rows = [], []
    try:
        for name in [s for s in a.servers.split(",") if s in classes]:
            kw = {"binary": a.ringmx} if name == "ringmx" else {}
            s = classes[name](base, cert, tls_skip is None, **kw)
            why = s.available()
            if why:
                skipped_servers[name] = why
                log("%s: left out: %s" % (name, why))
                continue
            try:
                s.start()
                s.wait_ready()
            except Exception as e:      # a peer that will not start is reported, not fatal
                skipped_servers[name] = "did not start: %s" % e
                log("%s: %s" % (name, skipped_servers[name]))
                s.stop()
                continue
            servers.append(s)
            log("%s on 127.0.0.1:%d (PID %d): %s" % (name, s.port, s.proc.pid, s.version()))
        if not any(s.name == "ringmx" for s in servers):
            raise RuntimeError("ringmx did not start: %s" % skipped_servers.get("ringmx"))
        versions = {s.name: s.version() for s in servers}
        if any(s.client_args for s in servers):
            servers.append(RingmxLockstep(next(s for s in servers if s.name == "ringmx")))

        for s in servers:
            for k in want_loads:
                if k == "d" and (tls_skip or not s.tls):
                    skips[(k, s.name)] = tls_skip or s.tls_reason
        # Warm-up, not measured: forks Postfix's daemons, JITs Haraka's JavaScript.
        for s in servers:
            warm = dict(loads["a"], messages=300, duration=5)
            run_bench(a, s, warm, "warmup.w.%s" % s.name)

        # (e) first: the idle RSS baseline is then not inflated by the 100 KiB load's buffers.
        if "e" in want_loads:
            log("load (e) %s" % loads["e"]["title"])
            for s in servers:
                if s.name == "ringmx-lockstep":
                    continue
                if s.proc.poll() is not None:
                    skips[("e", s.name)] = "server exited (%s)" % s.proc.returncode
                    continue
                run_idle(a, s, loads["e"], runs, idle_rows)
                for r in idle_rows[-1]["runs"]:
                    r["load"] = "e"
                    rows.append(r)
                time.sleep(2)
        for rep in range(1, runs + 1):
            for k in [k for k in want_loads if k != "e"]:
                log("rep %d/%d, load (%s) %s" % (rep, runs, k, loads[k]["title"]))
                for s in servers:
                    if (k, s.name) in skips:
                        continue
                    if s.proc.poll() is not None:
                        skips[(k, s.name)] = "server exited (%s)" % s.proc.returncode
                        continue
                    r = run_bench(a, s, loads[k], "r%d.%s.%s" % (rep, k, s.name))
                    r.update(load=k, rep=rep)
                    rows.append(r)
                    time.sleep(1)
        for s in servers:
            if s.proc.poll() is not None:
                notes.append("%s exited during the run (%s)" % (s.name, s.proc.returncode))
        pss = {s.name: tree_pss(s.roots()) for s in servers if s.name != "ringmx-lockstep"}
    finally:
        for s in servers:
            s.stop()
        for s in servers:       # keep the servers' own logs with the raw results
            for f in ("server.log", "maillog", "mail.log"):
                src = os.path.join(base, s.name, f)
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(a.out, "%s.%s" % (s.name, f)))
        shutil.rmtree(base, ignore_errors=True)

    with open(os.path.join(a.out, "rows.json"), "w") as f:
        json.dump(dict(rows=rows, idle=idle_rows, skips={"%s/%s" % k: v for k, v in skips.items()},
                       skipped_servers=skipped_servers, notes=notes), f, indent=1)

    # ---- report
    when = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    cmdline = "bench/peers/compare.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    imgs = charts(a, rows, servers, loads)
    parts = []
    parts.append("Generated by `%s` on %s UTC, %s; %d repetition%s; the whole script took %.0f "
                 "minutes. The clock time of every run is in the last column, so it can be "
                 "matched with other activity on the machine." %
                 (cmdline.strip(), when.strftime("%Y-%m-%d %H:%M"),
                  "**smoke test (--quick): small loads, one run, not for comparison**"
                  if a.quick else "full run", runs, "" if runs == 1 else "s",
                  (time.time() - started) / 60))
    parts.append("Machine: %s. File system of the queues and spools: %s (%s). "
                 "RLIMIT_NOFILE: %d (raised to the hard limit for every server and client)." %
                 (machine(), sh(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target",
                                 a.tmp_base], timeout=30).stdout.strip() or "?", a.tmp_base, hard))
    parts.append("These VMs are small, shared and noisy: absolute rates move from run to run by "
                 "10–30 %, at times 2x, so each cell is the median with the (min–max) spread, and every "
                 "ratio against ringmx is taken inside one repetition, servers measured a few "
                 "seconds apart, before its median is taken.")
    parts.append("Versions: " + "; ".join("%s: %s" % (k, v) for k, v in versions.items()) +
                 "; ringmx-bench from the same tree; %s." %
                 sh(["openssl", "version"], timeout=30).stdout.strip())
    if skipped_servers:
        parts.append("Left out: " + "; ".join("%s — %s" % kv for kv in skipped_servers.items()) + ".")
    for k in want_loads:
        if k == "e":
            parts.append(idle_table(loads["e"], idle_rows, skips, servers))
        else:
            parts.append(load_table(k, loads[k], rows, skips, servers))
    parts.append("ΣPss of each server's process tree at the end of the run (shared pages "
                 "counted once): " + ", ".join("%s %.1f MiB" % (k, v / 2**20)
                                               for k, v in pss.items()) + ".")
    if imgs:
        parts.append(" ".join("![%s](%s)" % (os.path.basename(i)[:-4], i) for i in imgs))
    cmds = ["ringmx-bench per load (PORT = the server's; haraka, chasquid and ringmx-lockstep "
            "add --no-pipelining):", "```"]
    dummy = Server.__new__(Server)
    dummy.port, dummy.client_args = 0, []
    for k in want_loads:
        c = bench_cmd(a, dummy, loads[k])
        c[0] = "build/release/bench/ringmx-bench"
        line = " ".join(shlex.quote(x) for x in c).replace("127.0.0.1:0", "127.0.0.1:PORT")
        if k == "e":
            line += "   # with %d idle connections held open" % loads[k]["idle"]
        cmds.append("(%s) %s" % (k, line))
    cmds.append("```")
    parts.append("\n".join(cmds))
    srv_cmds = ["Servers (paths under the temp dir shown as $T):", "```"]
    for s in [s for s in servers if s.cmd]:
        srv_cmds.append(" ".join(shlex.quote(x) for x in s.cmd).replace(base, "$T")
                        .replace(REPO + "/", ""))
    srv_cmds.append("```")
    parts.append("\n".join(srv_cmds))
    allnotes = notes + ["%s: %s" % (s.name, n) for s in servers for n in sorted(set(s.notes))]
    if allnotes:
        parts.append("Notes from this run: " + "; ".join(allnotes) + ".")
    report = "\n\n".join(p for p in parts if p) + "\n"
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(report)
    print(report)
    print("raw results and logs: " + a.out)
    if not a.no_docs:
        write_docs(a, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
