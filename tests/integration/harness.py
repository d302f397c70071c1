"""Shared pieces of the integration tests: start the real ringmx binary on
loopback with its own temporary config and spool, talk SMTP to it with raw
sockets, read back what landed in the spool, and stop it by PID.

Each test file is one ctest test; it exits 0 on success, 77 to skip (only when
a peer program cannot be installed), anything else on failure."""

import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

warnings.simplefilter("ignore", ResourceWarning)

BINARY = os.environ.get("RINGMX_BIN", "")
SKIP = 77


def free_port():
    """A free port below the kernel's ephemeral range (32768 and up here), so that
    no client socket of this or another test takes it between this check and the
    server's bind (ports the kernel hands out with bind(0) are ephemeral ones)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """ringmx on 127.0.0.1 with a temp spool; `extra_toml` is appended to the config
    (after the [server] keys); `listener_toml` right after the "smtp" listener's keys, so it
    can add keys to that listener and further [[listener]] tables. The "smtp" listener is on
    `host` (another 127.x address lets several servers share a port number).
    `config_text(server)`, when given, makes the whole config instead (a shipped file with
    the server's spool, port and admin port put in)."""

    def __init__(self, extra_toml="", shards=2, args=(), spool=None, port=None, admin=True,
                 spool_toml="", listener_toml="", host="127.0.0.1", config_text=None):
        self.dir = tempfile.mkdtemp(prefix="ringmx-it-")
        # Removed when the test process ends (spools of load tests are large:
        # left behind, they fill the disk); RINGMX_KEEP_TMP=1 keeps them.
        if not os.environ.get("RINGMX_KEEP_TMP"):
            atexit.register(shutil.rmtree, self.dir, True)
        self.spool = spool or os.path.join(self.dir, "spool")
        self.port = port or free_port()
        self.admin_port = free_port() if admin else 0
        self.config = os.path.join(self.dir, "ringmx.toml")
        with open(self.config, "w") as f:
            f.write('[server]\nhostname = "mx.test"\nshards = %d\n' % shards)
            f.write(extra_toml)
            f.write('\n[spool]\ndir = "%s"\n%s' % (self.spool, spool_toml))
            f.write('[admin]\nlisten = "%s"\n' %
                    ("127.0.0.1:%d" % self.admin_port if admin else ""))
            f.write('[[listener]]\nname = "smtp"\naddress = "%s:%d"\n' % (host, self.port))
            f.write(listener_toml)
        if config_text is not None:
            with open(self.config, "w") as f:
                f.write(config_text(self))
        self.args = list(args)
        self.wrapper = []   # a command to run the binary under (strace ...), if any
        self.proc = None
        self.stderr_path = os.path.join(self.dir, "stderr.log")

    def start(self, wait=True):
        self.stderr = open(self.stderr_path, "ab")
        self.log_offset = self.stderr.tell()  # this run's lines start here
        self.proc = subprocess.Popen(self.wrapper + [BINARY, "--config", self.config] + self.args,
                                     stdout=subprocess.PIPE, stderr=self.stderr,
                                     preexec_fn=raise_nofile)
        if wait:
            deadline = time.monotonic() + 60
            while True:
                line = started_line(self.log(since=self.log_offset))
                if line:
                    break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ringmx did not start (exit %s)\n%s"
                                       % (self.proc.poll(), self.log()))
                time.sleep(0.01)
            self.banner_line = line  # where it listens and where mail goes
        return self

    def log(self, since=0):
        """The daemon's stderr (its log), from byte offset `since`."""
        with open(self.stderr_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("ringmx did not stop within %ss\n%s" % (timeout, self.log()))
            self.check_sanitizer_report()
        return self.proc.returncode

    def check_sanitizer_report(self):
        """Under ASan/UBSan a report in the daemon's stderr fails the test, even one
        (a leak at exit) that would otherwise only change the exit status."""
        if os.environ.get("RINGMX_SANITIZED", "") not in ("1", "ON", "TRUE", "true"):
            return
        log = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                raise AssertionError("sanitizer report from ringmx:\n%s" % log[-6000:])

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def spool_files(self):
        out = {}
        for root, _, files in os.walk(self.spool):
            for name in files:
                if root == self.spool and name == ".lock":
                    continue  # the instance lock, not spool content
                out.setdefault(name, os.path.join(root, name))
        return out

    def spool_records(self):
        """{queue id: (fields, message)} over every record of every .msg file
        (a file holds the messages of one group commit). While the server runs, a
        segment's last record may be half-way through its write (not acknowledged
        yet): it is left out then; once the server has stopped every record must be
        whole."""
        out = {}
        live = self.proc is not None and self.proc.poll() is None
        for name, path in self.spool_files().items():
            if not name.endswith(".msg"):
                continue
            with open(path, "rb") as f:
                for fields, message in parse_spool_records(f.read(), live=live):
                    qid = fields["queue-id"][0]
                    assert qid not in out, "queue id %s stored twice" % qid
                    out[qid] = (fields, message)
        return out

    def spool_message(self, qid):
        rec = self.spool_records().get(qid)
        if not rec:
            raise AssertionError("no spool record for %s" % qid)
        return rec


def make_cert(d, name="mx", cn="mx.test", kind="ec"):
    """A self-signed certificate d/name.crt (ECDSA P-256, or RSA-2048 with kind="rsa") for
    `cn`, valid 30 days, with its key d/name.key: (crt, key)."""
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
              else ["-newkey", "rsa:2048"])
    out = subprocess.run(["openssl", "req", "-x509"] + newkey +
                         ["-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj",
                          "/CN=" + cn], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    return crt, key


DNSMASQ = "/usr/sbin/dnsmasq"


class Dnsmasq:
    """A real DNS server for the checks: dnsmasq in the foreground on 127.0.0.1 and
    a free port, answering only from its command line (`records`: dnsmasq options
    such as "--host-record=name,addr"), NXDOMAIN for anything else under `zones`.
    Stopped by its PID."""

    def __init__(self, records, zones=("test", "127.in-addr.arpa")):
        self.port = free_port()
        args = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--conf-file=/dev/null", "--pid-file=", "--user=root",
                "--listen-address=127.0.0.1", "--bind-interfaces", "--port=%d" % self.port,
                "--local-ttl=300", "--log-facility=/dev/null"]
        args += ["--local=/%s/" % z for z in zones]
        self.proc = subprocess.Popen(args + list(records), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # up once it answers on its port
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited: %s" % self.proc.stderr.read().decode())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                # A query for "test" type SOA.
                s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                         b"\x04test\x00\x00\x06\x00\x01", ("127.0.0.1", self.port))
                try:
                    s.recvfrom(512)
                    return
                except socket.timeout:
                    continue
        raise RuntimeError("dnsmasq did not answer")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # our child, by its PID
            self.proc.wait(10)


def started_line(log):
    """The daemon's start-up log line (event=started, logfmt or JSON), or None."""
    for line in log.splitlines():
        if "event=started " in line or '"event":"started"' in line:
            return line
    return None


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 65536 and os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))  # root may raise it
            return
        except (ValueError, OSError):
            pass  # no CAP_SYS_RESOURCE (a container): keep the hard limit there is
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def spool_tool():
    """tools/ringmx-spool as a module (it has no .py suffix): its reader and CRC32C."""
    global _SPOOL_TOOL
    if _SPOOL_TOOL is None:
        import importlib.machinery
        import importlib.util
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                            "ringmx-spool")
        loader = importlib.machinery.SourceFileLoader("ringmx_spool_tool", path)
        spec = importlib.util.spec_from_loader(loader.name, loader)
        _SPOOL_TOOL = importlib.util.module_from_spec(spec)
        loader.exec_module(_SPOOL_TOOL)
    return _SPOOL_TOOL


_SPOOL_TOOL = None
SPOOL_TRAILER_SIZE = 16


def parse_record(data, pos=0):
    """One record at data[pos:]: (fields dict of lists, message bytes, end offset).
    Version 2 (what ringmx writes): the CRC32C trailer must be there and match."""
    end = data.find(b"\n\n", pos)
    assert end >= 0, "no empty line after the envelope"
    lines = data[pos:end].decode().split("\n")
    assert lines[0] in ("ringmx-spool 1", "ringmx-spool 2"), lines[0]
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(": ")
        fields.setdefault(k, []).append(v)
    size = int(fields["message-size"][0])
    start = end + 2
    message = data[start:start + size]
    assert len(message) == size, "message has %d octets, envelope says %d" % (len(message), size)
    stop = start + size
    if lines[0] == "ringmx-spool 2":
        trailer = data[stop:stop + SPOOL_TRAILER_SIZE]
        want = b"crc32c %08x\n" % spool_tool().crc32c(memoryview(data)[pos:stop])
        assert trailer == want, "trailer %r, record sums to %r" % (trailer, want)
        stop += SPOOL_TRAILER_SIZE
    return fields, message, stop


def parse_spool_records(data, live=False):
    """Every record of a spool file, in order; asserts the file is complete (`live`:
    a file still being appended to, whose last record may be cut short)."""
    out, pos = [], 0
    while True:
        if live and pos == len(data):
            return out
        try:
            fields, message, pos = parse_record(data, pos)
        except AssertionError:
            if live:
                return out  # the record being written; the ones before it are whole
            raise
        out.append((fields, message))
        if pos == len(data):
            return out


def parse_spool(data):
    """A file holding exactly one record: (fields, message)."""
    records = parse_spool_records(data)
    assert len(records) == 1, "%d records in the file" % len(records)
    return records[0]


class Client:
    """A raw SMTP client: sends bytes, reads complete replies."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=source)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One whole reply: (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; have %r" % self.buf)
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\r\n")
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] == b" ":
                return int(line[:3]), lines

    def replies(self, n):
        return [self.reply()[0] for _ in range(n)]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def dot_stuff(message):
    out = []
    for line in message.split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out)


def transaction(c, sender, rcpts, message):
    """Runs MAIL/RCPT/DATA on an open, greeted client; returns (code, text) of the final reply."""
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(dot_stuff(message) + b".\r\n")
    code, lines = c.reply()
    return code, lines[-1]


def random_message(rng, tag, label, min_size, max_size):
    """A message of min_size..max_size octets, unique by its Message-ID
    (tag) and random body, with lines that need dot-stuffing (".", ".x")
    and empty lines."""
    import base64
    size = rng.randint(min_size, max_size)
    head = ("From: load@example.net\r\nTo: sink@example.org\r\nSubject: %s %s\r\n"
            "Message-ID: <%s@%s.test>\r\n\r\n" % (label, tag, tag, label)).encode()
    lines = []
    total = len(head)
    while total < size:
        r = rng.random()
        if r < 0.05:
            line = b"."
        elif r < 0.12:
            line = b"." + base64.b64encode(rng.randbytes(rng.randint(0, 40)))
        elif r < 0.15:
            line = b""
        else:
            line = base64.b64encode(rng.randbytes(rng.randint(1, 57)))
        lines.append(line + b"\r\n")
        total += len(line) + 2
    return head + b"".join(lines)


class AckedLoad:
    """Client threads that send random messages (random_message) until
    stopped or their bounds, and record each acknowledged one as (queue id,
    sha256 of the message, length, tag): what a crash test then looks for in
    the spool. MAIL, RCPT and DATA go pipelined or one by one, at random.
    run(t) is one thread; `errors` lists protocol surprises (a killed server
    is not one)."""

    def __init__(self, port, label, seed, max_messages, max_seconds, sizes, per_connection):
        import threading
        self.port, self.label, self.seed = port, label, seed
        self.max_messages, self.max_seconds = max_messages, max_seconds
        self.sizes, self.per_connection = sizes, per_connection
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []
        self.sent = 0   # messages whose final dot went out
        self.errors = []

    def note(self, what):
        if not self.stop.is_set():
            with self.lock:
                self.errors.append(what)

    def run(self, t):
        import hashlib
        import re
        queued = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-V]{17})$")
        rng = random.Random("%d-%s-%d" % (self.seed, self.label, t))
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self.stop.is_set() and n < self.max_messages and time.monotonic() < deadline:
            try:
                c = Client(self.port, timeout=10)
            except OSError:
                time.sleep(0.02)
                continue
            try:
                if c.reply()[0] != 220 or c.cmd("EHLO t%d.%s.test" % (t, self.label))[0] != 250:
                    self.note("greeting or EHLO refused")
                    continue
                for _ in range(rng.randint(*self.per_connection)):
                    if self.stop.is_set() or n >= self.max_messages:
                        break
                    tag = "%s-t%d-n%d-%08x" % (self.label, t, n, rng.getrandbits(32))
                    msg = random_message(rng, tag, self.label, *self.sizes)
                    n += 1
                    if rng.random() < 0.5:   # MAIL, RCPT and DATA in one write
                        c.send("MAIL FROM:<load@example.net>\r\nRCPT TO:<sink@example.org>\r\n"
                               "DATA\r\n")
                        codes = c.replies(3)
                    else:
                        codes = [c.cmd("MAIL FROM:<load@example.net>")[0],
                                 c.cmd("RCPT TO:<sink@example.org>")[0], c.cmd("DATA")[0]]
                    if codes != [250, 250, 354]:
                        self.note("envelope replies %s" % codes)
                        break
                    c.send(dot_stuff(msg) + b".\r\n")
                    with self.lock:
                        self.sent += 1
                    code, lines = c.reply()
                    m = queued.match(lines[-1])
                    if code != 250 or not m:
                        self.note("end of data: %s" % lines[-1])
                        break
                    with self.lock:
                        self.acked.append((m.group(1), hashlib.sha256(msg).hexdigest(),
                                           len(msg), tag))
                c.send(b"QUIT\r\n")
                c.reply()
            except (OSError, ConnectionError, ValueError):
                pass   # the server was killed under us
            finally:
                try:
                    c.close()
                except OSError:
                    pass


def queue_list(srv):
    """{queue id: entry} of `ringmxctl queue list --json` on a running server."""
    ctl = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                       "ringmxctl")
    p = subprocess.run([sys.executable, ctl, "--config", srv.config, "queue", "list", "--json"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return {m["queue_id"]: m for m in map(json.loads, p.stdout.decode().splitlines())}


def wait_for(pred, timeout=20, what="condition", interval=0.05):
    """pred()'s first true value, polled until `timeout` seconds; AssertionError after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def queue_id(reply_text):
    return reply_text.rsplit(" ", 1)[-1]


def http_get(port, path, timeout=5, host="127.0.0.1"):
    """GET http://host:port/path; returns (status, body bytes)."""
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metric(text, name, **labels):
    """Sum of the samples of `name` in Prometheus text whose labels include `labels`;
    None when there is no such sample."""
    if isinstance(text, bytes):
        text = text.decode()
    total = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        mname, brace, rest = series.partition("{")
        if mname != name:
            continue
        have = {}
        if brace:
            for part in rest.rstrip("}").split(","):
                k, _, v = part.partition("=")
                if k:
                    have[k] = v.strip('"')
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total = (total or 0) + float(value)
    return total


def vm_rss_kib(pid):
    """Resident set size of process `pid` in KiB (VmRSS from /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def main():
    if not BINARY or not os.access(BINARY, os.X_OK):
        print("RINGMX_BIN is not set to the ringmx binary", file=sys.stderr)
        sys.exit(2)
    unittest.main(verbosity=2, warnings="ignore")
