"""Real milters as peers of ringmx's milter client tests: OpenDKIM, Rspamd's
proxy worker in milter mode and tests/integration/milters/test_filter.py
(a scriptable pymilter filter). Each runs as a child process of the test on
127.0.0.1 and a free port, from its own temporary directory and config (no
system service, no system config, no network beyond loopback), and is
stopped by its PID.

    from milter_peers import Opendkim, Rspamd, PyFilter, verify_dkim

    with Opendkim(mode="sign") as dkim:        # .port, .address, .log_text()
        ... configure ringmx with dkim.address ("inet:PORT@127.0.0.1") ...
        ok, detail = verify_dkim(stored_message)

Every class: constructor, start() (returns self; raises RuntimeError when the
peer does not come up), stop() (SIGTERM to the PID, wait, SIGKILL to its
process group after the timeout; the temp dir is removed unless
RINGMX_KEEP_TMP=1), a context manager doing both, and attributes
  host, port        127.0.0.1 and the TCP port
  address           "inet:PORT@127.0.0.1" (libmilter/sendmail spelling)
  postfix_address   "inet:127.0.0.1:PORT" (Postfix's smtpd_milters spelling)
  dir               its temp dir; log_path, log_text() its output
  startup_seconds   from the spawn to the first successful answer
The constructor raises unittest.SkipTest when the Debian package's binary is
missing (and only then).

optneg(port) is a minimal fake MTA: it sends one milter protocol 6 option
negotiation (all actions, all protocol flags by default) and decodes the
reply -- what a peer asks for: actions, protocol flags, macros per stage.

Stdlib only; the peers are Debian's opendkim, opendkim-tools, rspamd,
python3-milter and python3-dkim (tools/dev.sh installs them)."""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KEEP_TMP = bool(os.environ.get("RINGMX_KEEP_TMP"))

OPENDKIM = "/usr/sbin/opendkim"
OPENDKIM_GENKEY = "/usr/sbin/opendkim-genkey"
RSPAMD = "/usr/bin/rspamd"
TEST_FILTER = os.path.join(HERE, "milters", "test_filter.py")

DKIM_DOMAIN = "example.test"
DKIM_SELECTOR = "ringmx"

# ---------------------------------------------------------------------------
# The milter protocol, as much as a probe needs.

SMFIF = {0x1: "ADDHDRS", 0x2: "CHGBODY", 0x4: "ADDRCPT", 0x8: "DELRCPT", 0x10: "CHGHDRS",
         0x20: "QUARANTINE", 0x40: "CHGFROM", 0x80: "ADDRCPT_PAR", 0x100: "SETSYMLIST"}
SMFIP = {0x1: "NOCONNECT", 0x2: "NOHELO", 0x4: "NOMAIL", 0x8: "NORCPT", 0x10: "NOBODY",
         0x20: "NOHDRS", 0x40: "NOEOH", 0x80: "NR_HDR", 0x100: "NOUNKNOWN", 0x200: "NODATA",
         0x400: "SKIP", 0x800: "RCPT_REJ", 0x1000: "NR_CONN", 0x2000: "NR_HELO",
         0x4000: "NR_MAIL", 0x8000: "NR_RCPT", 0x10000: "NR_DATA", 0x20000: "NR_UNKN",
         0x40000: "NR_EOH", 0x80000: "NR_BODY", 0x100000: "HDR_LEADSPC"}
SMFIM = {0: "connect", 1: "helo", 2: "mail", 3: "rcpt", 4: "data", 5: "eom", 6: "eoh"}
ALL_ACTIONS = 0x1ff
ALL_PROTOCOL = 0x1fffff


def flag_names(value, table):
    return [name for bit, name in sorted(table.items()) if value & bit]


def _read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d octets" % (len(data), n))
        data += chunk
    return data


def optneg(port, host="127.0.0.1", version=6, actions=ALL_ACTIONS, protocol=ALL_PROTOCOL,
           timeout=5):
    """One SMFIC_OPTNEG to the milter at host:port, then SMFIC_QUIT. Returns
    {"version", "actions", "protocol" (ints), "action_names", "protocol_names",
    "macros": {stage: [macro, ...]}} from its SMFIC_OPTNEG reply; raises
    OSError/ConnectionError when it does not answer one."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        body = b"O" + struct.pack(">III", version, actions, protocol)
        s.sendall(struct.pack(">I", len(body)) + body)
        (length,) = struct.unpack(">I", _read_exact(s, 4))
        reply = _read_exact(s, length)
        try:
            quit_ = b"Q"
            s.sendall(struct.pack(">I", len(quit_)) + quit_)
        except OSError:
            pass
    if reply[:1] != b"O" or len(reply) < 13:
        raise ConnectionError("not an option negotiation reply: %r" % reply[:40])
    ver, act, proto = struct.unpack(">III", reply[1:13])
    macros, rest = {}, reply[13:]
    while len(rest) >= 4:
        (stage,) = struct.unpack(">I", rest[:4])
        text, _, rest = rest[4:].partition(b"\0")
        macros[SMFIM.get(stage, str(stage))] = text.decode(errors="replace").split()
    return {"version": ver, "actions": act, "protocol": proto,
            "action_names": flag_names(act, SMFIF), "protocol_names": flag_names(proto, SMFIP),
            "macros": macros}


# ---------------------------------------------------------------------------
# Running a peer.

_PORTS_GIVEN = set()


def peer_port():
    """harness.free_port(), never one this process handed out before: peers are
    often all made first and started later, and a port is only free until
    someone binds it."""
    for _ in range(100):
        port = free_port()
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no fresh free port")


def listener_pids(port, host="127.0.0.1"):
    """PIDs of the processes holding a TCP socket listening on host:port
    (from /proc/net/tcp and /proc/PID/fd; empty when none is visible)."""
    want = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(host))[0], port)
    inodes = set()
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":   # LISTEN
                    inodes.add("socket:[%s]" % fields[9])
    except OSError:
        return set()
    pids = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) in inodes:
                    pids.add(int(pid))
                    break
        except OSError:
            continue
    return pids


def _exited(pid, timeout=0):
    """True once child `pid` has exited, waiting up to `timeout` seconds; the
    child is not reaped (WNOWAIT), so its PID stays its own."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True   # reaped already
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _group_members(pgid):
    """PIDs whose process group is `pgid` (from /proc/PID/stat)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid:
            out.append(int(pid))
    return out


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None

def _need(path, package):
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("%s is missing (Debian package %s; tools/dev.sh deps installs "
                                "it)" % (path, package))


_PYTHONS = {}


def python_with(module, package):
    """An interpreter that can import `module` (Debian's /usr/bin/python3 holds
    the python3-* packages; the one running the tests may be another)."""
    if module not in _PYTHONS:
        found = None
        for candidate in ("/usr/bin/python3", sys.executable):
            if candidate and os.access(candidate, os.X_OK) and subprocess.run(
                    [candidate, "-c", "import " + module], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=60).returncode == 0:
                found = candidate
                break
        _PYTHONS[module] = found
    if _PYTHONS[module] is None:
        raise unittest.SkipTest("python module %s is missing (Debian package %s)"
                                % (module, package))
    return _PYTHONS[module]


class _Peer:
    """A child process listening on host:port, stopped by its PID."""

    label = "peer"

    def __init__(self, port=None, host="127.0.0.1"):
        self.host = host
        self.port = port or peer_port()
        self.dir = tempfile.mkdtemp(prefix="ringmx-%s-" % self.label)
        os.chmod(self.dir, 0o755)
        self.log_path = os.path.join(self.dir, self.label + ".log")
        self.proc = None
        self.startup_seconds = None

    @property
    def address(self):
        return "inet:%d@%s" % (self.port, self.host)

    @property
    def postfix_address(self):
        return "inet:%s:%d" % (self.host, self.port)

    def command(self):
        raise NotImplementedError

    def ready(self):
        """True once the peer answers; the default is an option negotiation."""
        try:
            self.optneg_reply = optneg(self.port, self.host, timeout=2)
            return True
        except (OSError, ConnectionError):
            return False

    def start(self, timeout=60):
        t0 = time.monotonic()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        deadline = t0 + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                status = self.proc.poll()
                self.stop()
                raise RuntimeError("%s did not come up on %s:%d (exit %s)\n%s" % (
                    self.label, self.host, self.port, status, self.log_text()[-4000:]))
            time.sleep(0.02)
        self.startup_seconds = time.monotonic() - t0
        if self.port is not None:
            # Whoever answered must be ours (a port taken by another program
            # would answer too): a process of the child's own process group.
            owners = listener_pids(self.port, self.host)
            if owners and not any(_pgid(p) == self.proc.pid for p in owners):
                status = self.proc.poll()
                self.stop()
                raise RuntimeError("%s:%d is held by another program (pids %s); %s exit %s\n%s"
                                   % (self.host, self.port, sorted(owners), self.label, status,
                                      self.log_text()[-3000:]))
        return self

    def stop(self, timeout=10):
        proc = self.proc
        if proc is not None:
            if proc.returncode is None and not _exited(proc.pid):
                proc.send_signal(signal.SIGTERM)   # our child, by its PID
                _exited(proc.pid, timeout)
            # Still running after the timeout, or left behind by it (rspamd's
            # workers): its process group, whose id is the child's PID and is
            # its own (a new session). Only while members are left, so the id
            # cannot belong to anything else.
            if _group_members(proc.pid):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout)
        self._log_copy = self.log_text()
        if not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
        return proc.returncode if proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return getattr(self, "_log_copy", "")

    def probe(self, **kw):
        """optneg() to this peer (see there)."""
        return optneg(self.port, self.host, **kw)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------
# DKIM: one test key per test process, shared by every Opendkim and by
# verify_dkim().

class DkimKey:
    """The key opendkim-genkey made: domain, selector, private key file,
    dns_name ("ringmx._domainkey.example.test") and txt (the TXT record's
    text, its quoted strings joined)."""

    def __init__(self, domain, selector, private_key, txt):
        self.domain, self.selector = domain, selector
        self.private_key, self.txt = private_key, txt
        self.dns_name = "%s._domainkey.%s" % (selector, domain)

    def txt_chunks(self, size=255):
        """The TXT text cut into DNS character-strings of at most `size` octets."""
        return [self.txt[i:i + size] for i in range(0, len(self.txt), size)]

    def dnsmasq_records(self):
        """Options for harness.Dnsmasq(records=...) that serve this key's TXT record."""
        return ["--txt-record=%s,%s" % (self.dns_name, ",".join(self.txt_chunks()))]


_KEY = None


def dkim_key():
    """The process's test key for example.test, selector ringmx (RSA 2048, made
    once with opendkim-genkey in a temp dir removed at exit)."""
    global _KEY
    if _KEY is None:
        _need(OPENDKIM_GENKEY, "opendkim-tools")
        d = tempfile.mkdtemp(prefix="ringmx-dkimkey-")
        if not KEEP_TMP:
            atexit.register(shutil.rmtree, d, True)
        subprocess.run([OPENDKIM_GENKEY, "-b", "2048", "-d", DKIM_DOMAIN, "-s", DKIM_SELECTOR,
                        "-D", d], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
        with open(os.path.join(d, DKIM_SELECTOR + ".txt")) as f:
            txt = "".join(re.findall(r'"([^"]*)"', f.read()))
        _KEY = DkimKey(DKIM_DOMAIN, DKIM_SELECTOR, os.path.join(d, DKIM_SELECTOR + ".private"),
                       txt)
    return _KEY


# libunbound settings for Opendkim(nameserver=...): forward every query to
# the test's DNS server on a loopback port.
UNBOUND_CONF = """server:
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  local-zone: "test." nodefault
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{port}
"""


class Opendkim(_Peer):
    """Debian's opendkim (2.11, libmilter 1.0.1) in the foreground on
    inet:PORT@127.0.0.1 with its own opendkim.conf in the temp dir.

    mode="sign": Mode s; signs mail whose From: is @example.test with the test
    key (dkim_key(): d=example.test, s=ringmx, relaxed/relaxed, rsa-sha256), from
    any client: InternalHosts is 0.0.0.0/0 and ::/0. (opendkim signs when the
    From: domain is in its SigningTable and the client is "internal" by the
    address in SMFIC_CONNECT -- an unknown family counts as 127.0.0.1 -- or
    has authenticated, i.e. a non-empty {auth_type} macro; {daemon_name} only
    matters with an MTA setting and j is used for logging only.) Other mail
    passes untouched.
    mode="verify": Mode v; verifies every DKIM-Signature and adds
    Authentication-Results (authserv-id `authserv_id`, default "ringmx.test"),
    also to unsigned mail (AlwaysAddARHeader).

    Keys are looked up without DNS: by default from a TestDNSData file holding
    the test key's TXT record (opendkim's documented test option: its keys are
    DNS names, its values TXT contents). With nameserver=harness.Dnsmasq (or a
    port) it asks that DNS server instead (serve the key with
    Dnsmasq(dkim_key().dnsmasq_records(), zones=("test",))). Nameservers cannot
    do that: it takes addresses only and libunbound, which Debian's opendkim
    resolves with, refuses loopback servers and answers NXDOMAIN for .test by
    itself. So a ResolverConfiguration file (an unbound.conf) forwards "." to
    127.0.0.1@PORT with do-not-query-localhost off and .test's built-in local
    zone removed.

    opendkim logs only to syslog, which is not captured; `extra_conf` lines are
    appended to opendkim.conf."""

    label = "opendkim"

    def __init__(self, mode="sign", port=None, nameserver=None, authserv_id="ringmx.test",
                 extra_conf=""):
        if mode not in ("sign", "verify"):
            raise ValueError("mode is sign or verify")
        _need(OPENDKIM, "opendkim")
        self.key = dkim_key()
        super().__init__(port)
        self.mode = mode
        self.conf = os.path.join(self.dir, "opendkim.conf")
        key_copy = os.path.join(self.dir, "ringmx.private")
        shutil.copyfile(self.key.private_key, key_copy)
        os.chmod(key_copy, 0o600)
        self._write("keytable", "%s %s:%s:%s\n" % (self.key.dns_name, self.key.domain,
                                                   self.key.selector, key_copy))
        self._write("signingtable", "%s %s\n" % (self.key.domain, self.key.dns_name))
        self._write("internalhosts", "0.0.0.0/0\n::/0\n")
        self._write("dns.data", "%s %s\n" % (self.key.dns_name, self.key.txt))
        lines = ["Socket inet:%d@%s" % (self.port, self.host),
                 "Background no",
                 "PidFile %s" % os.path.join(self.dir, "opendkim.pid"),
                 "Syslog yes", "SyslogSuccess yes", "LogWhy yes",
                 "SoftwareHeader yes",
                 "Canonicalization relaxed/relaxed",
                 "TemporaryDirectory %s" % self.dir,
                 "AuthservID %s" % authserv_id,
                 "UMask 022",
                 # The key's path runs through /tmp, which others may write:
                 # by default that makes opendkim refuse the key ("key data
                 # is not secure") and tempfail every message it should sign.
                 "RequireSafeKeys no"]
        if mode == "sign":
            lines += ["Mode s",
                      "KeyTable file:%s" % os.path.join(self.dir, "keytable"),
                      "SigningTable file:%s" % os.path.join(self.dir, "signingtable"),
                      "InternalHosts file:%s" % os.path.join(self.dir, "internalhosts")]
        else:
            lines += ["Mode v", "AlwaysAddARHeader yes"]
        if nameserver is None:
            lines.append("TestDNSData file:%s" % os.path.join(self.dir, "dns.data"))
        else:
            # libunbound: forward everything to the loopback server, which
            # unbound refuses to query by default (do-not-query-localhost).
            self._write("unbound.conf", UNBOUND_CONF.format(
                port=int(getattr(nameserver, "port", nameserver))))
            lines.append("ResolverConfiguration %s" % os.path.join(self.dir, "unbound.conf"))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_conf)

    def _write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def command(self):
        return [OPENDKIM, "-f", "-x", self.conf]


_VERIFY_SCRIPT = r"""
import io, logging, os, re, sys
import dkim
name = os.environ["RINGMX_DKIM_NAME"].encode()
txt = os.environ["RINGMX_DKIM_TXT"].encode()
def dnsfunc(qname, timeout=5):
    return txt if qname.rstrip(b".").lower() == name.lower() else None
out = io.StringIO()
logger = logging.getLogger("dkim")
logger.addHandler(logging.StreamHandler(out))
logger.setLevel(logging.DEBUG)
message = sys.stdin.buffer.read()
if not re.search(rb"^DKIM-Signature:", message, re.M | re.I):
    print("FAIL no DKIM-Signature header")
    sys.exit(0)
try:
    d = dkim.DKIM(message, logger=logger)
    ok = d.verify(dnsfunc=dnsfunc)
    sig = d.signature_fields
    detail = "d=%s s=%s" % (sig.get(b"d", b"?").decode(), sig.get(b"s", b"?").decode())
except Exception as e:
    ok, detail = False, "%s: %s" % (type(e).__name__, e)
print("PASS" if ok else "FAIL", detail, out.getvalue().strip().replace("\n", " | "))
"""


def verify_dkim(message, key=None):
    """Verifies the first DKIM-Signature of `message` (bytes; CRLF or LF line
    ends, e.g. postcat -bh output or a spool record) with python3-dkim
    (dkim.DKIM.verify, an implementation independent of opendkim), its DNS
    lookup answered from `key` (default dkim_key(): the key every Opendkim of
    this process signs with). Runs in Debian's /usr/bin/python3, where the
    module lives. Returns (ok, detail): ok True when the signature verifies;
    detail names d= and s= and carries the library's debug log (why it failed)."""
    key = key or dkim_key()
    python = python_with("dkim", "python3-dkim")
    env = dict(os.environ, RINGMX_DKIM_NAME=key.dns_name, RINGMX_DKIM_TXT=key.txt)
    p = subprocess.run([python, "-c", _VERIFY_SCRIPT], input=message, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0 or not out:
        return False, "verifier failed: %s" % p.stderr.decode(errors="replace")[-2000:]
    verdict, _, detail = out.partition(" ")
    return verdict == "PASS", detail


# ---------------------------------------------------------------------------
# Rspamd

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# Rspamd's own test patterns (enable_test_patterns): the same string with
# another first letter forces another action.
GTUBE_ADD_HEADER = "Y" + GTUBE[1:]
GTUBE_REWRITE_SUBJECT = "Z" + GTUBE[1:]
GTUBE_NO_ACTION = "A" + GTUBE[1:]

RSPAMD_CONF = """# ringmx test peer: one proxy worker in milter mode scanning by itself
options {{
  pidfile = "{dir}/rspamd.pid";
  dbdir = "{dir}/db";
  tempdir = "{dir}/tmp";
  hs_cache_dir = "{dir}/db";
  disable_hyperscan = true;
  # The stock list of 9600 public suffixes takes ~6 s to compile at start;
  # the tests' mail uses .test addresses only.
  url_tld = "{dir}/tld.dat";
  filters = "";
  enable_test_patterns = true;
  local_addrs = [];
  dns {{
    nameserver = ["127.0.0.1:{dead_port}"];
    timeout = 0.2s;
    retransmits = 1;
  }}
  task_timeout = 8s;
}}
logging {{
  type = "console";
  level = "{log_level}";
  color = false;
}}
lua = "$RULESDIR/rspamd.lua";
modules {{
  path = "$PLUGINSDIR/milter_headers.lua";
}}
actions {{
  reject = 15;
  add_header = 6;
  greylist = 4;
}}
milter_headers {{
  # Local (127/8) and authenticated clients get no headers by default.
  skip_local = false;
  skip_authenticated = false;
  extended_spam_headers = true;
  use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "x-rspamd-action",
         "x-spam-status", "x-spam-level", "authentication-results"];
}}
worker "rspamd_proxy" {{
  bind_socket = "{host}:{port}";
  milter = yes;
  timeout = 120s;
  count = 1;
  upstream "local" {{
    default = yes;
    self_scan = yes;
  }}
  {reject_message}
}}
{extra_conf}
"""


class Rspamd(_Peer):
    """Debian's rspamd (3.4) with a private config in the temp dir: one
    rspamd_proxy worker, milter = yes, on 127.0.0.1:PORT scanning by itself
    (self_scan: no normal worker, no controller, no redis), run as root in the
    foreground (rspamd -f -i -u root -g root -c CONF). Nothing uses the
    network: its DNS server is a closed loopback port, the C modules (regexp,
    dkim, fuzzy_check, chartable) are off, and the only Lua plugin loaded is
    milter_headers (the rules of rspamd.lua still run: they need no DNS).

    Actions: GTUBE (the string in the body) is rejected at end of message
    (SMFIR_REPLYCODE "554 5.7.1 " + reject text; default "Gtube pattern",
    Rspamd's reason for GTUBE -- `reject_message` sets the proxy's text for
    score-based rejects); GTUBE_ADD_HEADER gets "X-Spam: Yes",
    GTUBE_REWRITE_SUBJECT a changed Subject. Every accepted message gets the
    milter_headers headers: X-Spamd-Result, X-Rspamd-Server,
    X-Rspamd-Queue-Id, X-Rspamd-Action, X-Spam-Status, X-Spam-Level (where the
    score is positive), Authentication-Results (where it has results to say).
    `log_level` ("info", "debug" for milter traces) goes to log_text()."""

    label = "rspamd"

    def __init__(self, port=None, reject_message=None, log_level="info", extra_conf=""):
        _need(RSPAMD, "rspamd")
        super().__init__(port)
        for d in ("db", "tmp"):
            os.makedirs(os.path.join(self.dir, d))
        with open(os.path.join(self.dir, "tld.dat"), "w") as f:
            f.write("test\nexample\nlocalhost\n")
        self.conf = os.path.join(self.dir, "rspamd.conf")
        with open(self.conf, "w") as f:
            f.write(RSPAMD_CONF.format(
                dir=self.dir, host=self.host, port=self.port, dead_port=peer_port(),
                log_level=log_level, extra_conf=extra_conf,
                reject_message=('reject_message = "%s";' % reject_message
                                if reject_message else "")))

    def command(self):
        return [RSPAMD, "-f", "-i", "-u", "root", "-g", "root", "-c", self.conf]


# ---------------------------------------------------------------------------
# The scriptable pymilter filter

class PyFilter(_Peer):
    """tests/integration/milters/test_filter.py (see its docstring for the
    directives the message chooses) on inet:PORT@127.0.0.1, or on a unix
    socket in the temp dir with unix=True (then address is "unix:/path" and
    port is None). `args` are extra command-line flags: "--reject-connect",
    "--hang-connect", "30", "--no-reply-steps", "--leading-space",
    "--rcpt-rej", "--skip-callbacks", "body", "--symlist", "connect:{client_addr}".

    events(conn=None, event=None) -> the log's JSON objects (each has t, conn,
    event, and args/macros/reply as the callback had them), filtered;
    wait_events(pred, timeout) waits until pred(events()) is true. The start
    is seen from the filter's own "start" line (written once its socket
    listens), so no probe connection shows up in the log (a probe() does:
    a negotiate and a close event). stop() waits `timeout` for libmilter to
    finish its connections, so a filter hanging in a callback is killed then."""

    label = "pyfilter"

    def __init__(self, port=None, unix=False, args=()):
        self.python = python_with("Milter", "python3-milter")
        super().__init__(None if unix else port)
        self.unix_path = os.path.join(self.dir, "filter.sock") if unix else None
        if unix:
            self.port = None
        self.args = [str(a) for a in args]
        self.events_path = os.path.join(self.dir, "events.jsonl")

    @property
    def address(self):
        if self.unix_path:
            return "unix:" + self.unix_path
        return super().address

    @property
    def postfix_address(self):
        if self.unix_path:
            return "unix:" + self.unix_path
        return super().postfix_address

    def command(self):
        spec = ("unix:" + self.unix_path) if self.unix_path else "inet:%d@%s" % (self.port,
                                                                                   self.host)
        return [self.python, TEST_FILTER, "--socket", spec, "--log", self.events_path] + self.args

    def ready(self):
        if not any(e["event"] == "start" for e in self.events()):
            return False
        if self.unix_path:
            # libmilter makes the socket with the process umask: let an MTA
            # running as another user (Postfix's smtpd) connect.
            os.chmod(self.unix_path, 0o666)
        return True

    def probe(self, **kw):
        if self.unix_path:
            raise ValueError("probe() speaks TCP; this filter is on a unix socket")
        return super().probe(**kw)

    def events(self, conn=None, event=None):
        out = []
        try:
            with open(self.events_path) as f:
                lines = f.read().splitlines()
        except OSError:
            lines = getattr(self, "_events_lines", [])   # stopped: the temp dir is gone
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue   # a line being written
            if (conn is None or e.get("conn") == conn) and (event is None or
                                                            e.get("event") == event):
                out.append(e)
        return out

    def wait_events(self, pred, timeout=20, what="filter events"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; log:\n%s" % (
            what, "\n".join(json.dumps(e) for e in self.events()[-40:])))

    def stop(self, timeout=10):
        try:
            with open(self.events_path) as f:
                self._events_lines = f.read().splitlines()
        except OSError:
            pass
        return super().stop(timeout)
