"""ringmx-bench --lmtp against a real LMTP server: Dovecot's lmtp service,
run as a private instance (`dovecot -F -c CONF`, its own base_dir, state_dir,
log and maildirs in a temporary directory under /var/spool, one inet
listener on 127.0.0.1, no SSL) and stopped by PID. Dovecot is installed here
when missing (apt-get, with a policy-rc.d that keeps the system service from
starting); the file exits 77 only when it cannot be installed (or we are not
root, which installing and delivering as another uid need).

Checked: pipelined and lock-step runs with three recipients deliver every
message (ok == sent) and each user's maildir holds one file per message; the
delivered bodies are the bytes ringmx-bench sends for that seed (compared
with what the ringmx daemon spools from the same run arguments); an .eml
with dot lines arrives byte for byte, unstuffed; BDAT works when the LHLO
reply offers CHUNKING (else every message fails as `unsupported`); a
recipient Dovecot does not know fails the message by its code while the
other recipients still get it (one reply per accepted recipient after the
data), a mailbox over quota refuses its copy after the data, and a message
with no known recipient fails at RCPT, DATA and BDAT alike (Dovecot keeps
the transaction after refusing a BDAT: the messages behind it on the
connection must not inherit it); every sent message has exactly one
outcome."""

import collections
import email
import email.policy
import os
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from harness import Client, Server, free_port, main
from test_bench import BENCH, OUR_FIRST_LINE, SERVER_TOML, BenchChecks, run_bench

DOVECOT = "/usr/sbin/dovecot"
PACKAGES = ("dovecot-core", "dovecot-lmtpd")
DOMAIN = "test.example"
# Local parts the userdb knows: PREFIX1..PREFIX3 for each, and SINGLE;
# `part4` and `ghost` are unknown (550 at RCPT); FULL's mailbox is over its
# quota at once (Dovecot refuses it after the data, per recipient).
PREFIXES = ("pipe", "lock", "bdat", "part", "same", "full")
SINGLE = ("eml",)
FULL = "full2"
MAIL_USER, MAIL_GROUP = "nobody", "nogroup"
START_TIMEOUT = 15  # seconds for Dovecot to answer on its port
STOP_TIMEOUT = 10   # seconds after SIGTERM before SIGKILL


def die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, so an
    aborted test (a ctest timeout) leaves no Dovecot behind."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def dovecot_pids():
    """PIDs of every running process whose executable is Dovecot's master."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % entry).startswith(DOVECOT):
                out.add(int(entry))
        except OSError:
            pass
    return out


def stop_pid(pid, timeout=STOP_TIMEOUT):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists("/proc/%d" % pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def install_dovecot():
    """Installs Dovecot's packages when missing; returns an error text or None."""
    if os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/lmtp"):
        return None
    if os.geteuid() != 0:
        return "Dovecot LMTP is not installed and we are not root (apt-get install %s)" % (
            " ".join(PACKAGES))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = "/usr/sbin/policy-rc.d"
    made_policy = False
    before = dovecot_pids()
    try:
        if not os.path.exists(policy):
            with open(policy, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")  # "not allowed": no service starts
            os.chmod(policy, 0o755)
            made_policy = True
        out = b""
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] +
                    list(PACKAGES)):
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=env, timeout=300)
            except subprocess.TimeoutExpired:
                return "%s timed out" % " ".join(cmd)
            out += p.stdout
            if p.returncode != 0 and cmd[1] == "install":
                return "apt-get install %s failed:\n%s" % (" ".join(PACKAGES),
                                                          out.decode(errors="replace")[-2000:])
    finally:
        if made_policy:
            os.unlink(policy)
        # Despite policy-rc.d, a system Dovecot may have started: stop that one
        # (by its PID), and nothing that was running before.
        for pid in dovecot_pids() - before:
            print("stopping the system Dovecot the install started (pid %d)" % pid,
                  file=sys.stderr)
            stop_pid(pid)
    if not os.path.exists(DOVECOT) or not os.path.exists("/usr/lib/dovecot/lmtp"):
        return "Dovecot LMTP still missing after apt-get install %s" % " ".join(PACKAGES)
    return None


DOVECOT_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = ringmx-lmtp-{port}
protocols = lmtp
listen = 127.0.0.1
ssl = no
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
first_valid_uid = 1
mail_location = maildir:{base}/home/%n/Maildir
mail_fsync = never
lmtp_user_concurrency_limit = 0
mail_plugins = quota
plugin {{
  quota = maildir:User quota
}}
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = passwd-file
  args = {base}/users
  default_fields = uid={uid} gid={gid} home={base}/home/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


class Dovecot:
    """A private Dovecot with only the lmtp service, on 127.0.0.1:port."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="ringmx-dovecot-", dir="/var/spool")
        os.chmod(self.base, 0o755)  # the auth process (user dovecot) reads `users`
        self.port = free_port()
        self.home = os.path.join(self.base, "home")
        os.makedirs(self.home)
        shutil.chown(self.home, MAIL_USER, MAIL_GROUP)
        with open(os.path.join(self.base, "users"), "w") as f:
            for prefix in PREFIXES:
                for i in (1, 2, 3):
                    local = "%s%d" % (prefix, i)
                    extra = "userdb_quota_rule=*:storage=1" if local == FULL else ""
                    f.write("%s@%s:{PLAIN}unused::::::%s\n" % (local, DOMAIN, extra))
            for local in SINGLE:
                f.write("%s@%s:{PLAIN}unused::::::\n" % (local, DOMAIN))
        os.chmod(os.path.join(self.base, "users"), 0o644)
        self.conf = os.path.join(self.base, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(base=self.base, port=self.port,
                                        uid=pwd.getpwnam(MAIL_USER).pw_uid,
                                        gid=grp.getgrnam(MAIL_GROUP).gr_gid))
        self.log_path = os.path.join(self.base, "dovecot.log")
        self.proc = None

    def start(self):
        self.out = open(os.path.join(self.base, "stdout.log"), "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited %d\n%s" % (self.proc.returncode, self.log()))
            try:
                c = Client(self.port, timeout=5)
                code, lines = c.reply()
                c.close()
                if code != 220:
                    raise RuntimeError("dovecot greeted %r" % lines)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("dovecot did not listen on %d\n%s" % (self.port,
                                                                             self.log()))
                time.sleep(0.05)

    def log(self):
        text = ""
        for name in ("stdout.log", "dovecot.log"):
            try:
                with open(os.path.join(self.base, name), "rb") as f:
                    text += f.read().decode(errors="replace")[-4000:]
            except OSError:
                pass
        return text

    def stop(self):
        """SIGTERM to our master (it stops its children), SIGKILL after a bound."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)

    def lhlo(self):
        """The LHLO reply's keywords."""
        c = Client(self.port, timeout=10)
        try:
            self.greeting = c.reply()
            code, lines = c.cmd("LHLO probe.test")
            assert code == 250, lines
            c.cmd("QUIT")
            return {l[4:].split(" ")[0].upper() for l in lines[1:]}
        finally:
            c.close()

    def mailbox(self, local):
        """{file name: bytes} of the messages delivered to local@DOMAIN."""
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(self.home, local, "Maildir", sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                with open(os.path.join(d, name), "rb") as f:
                    out[name] = f.read()
        return out


def our_part(data):
    """What ringmx-bench sent, from a delivered file: from our first header on,
    with CRLF line ends (maildir files may hold LF)."""
    start = data.find(OUR_FIRST_LINE)
    assert start >= 0, data[:500]
    return re.sub(rb"\r?\n", b"\r\n", data[start:])


class BenchAgainstDovecotLmtp(unittest.TestCase, BenchChecks):
    @classmethod
    def setUpClass(cls):
        if not os.access(BENCH, os.X_OK):
            raise AssertionError("ringmx-bench not built at %s" % BENCH)
        cls.dc = Dovecot()
        try:
            cls.dc.start()
            cls.keywords = cls.dc.lhlo()
        except BaseException:
            cls.dc.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()
        if cls.dc.proc.returncode not in (0, -signal.SIGTERM):
            raise AssertionError("dovecot exited %d\n%s" % (cls.dc.proc.returncode,
                                                           cls.dc.log()))
        cls.dc.cleanup()

    def bench(self, local, *args, expect_rc=0, recipients=3):
        return run_bench(self.dc.port, "--lmtp", "--to", "%s@%s" % (local, DOMAIN),
                         "--recipients", str(recipients), "--duration", "20", *args,
                         expect_rc=expect_rc)

    def delivered(self, prefix, n, users=(1, 2, 3)):
        """Asserts each user got n files (no Delivered-To: Dovecot adds it only
        for a single recipient); returns every file's bytes."""
        files = []
        for i in users:
            local = "%s%d" % (prefix, i)
            box = self.dc.mailbox(local)
            self.assertEqual(len(box), n, "%s has %d files, want %d\n%s" % (
                local, len(box), n, self.dc.log()[-2000:]))
            for data in box.values():
                head = data[:data.find(OUR_FIRST_LINE)]
                self.assertIn(b"with LMTP", head)
                files.append(data)
        return files

    def check_generated(self, files, size):
        """Each file parses as a message, holds exactly what we sent (size octets
        as CRLF) and its dot lines are unstuffed."""
        dot_lines = 0
        for data in files:
            ours = our_part(data)
            self.assertEqual(len(ours), size)
            msg = email.message_from_bytes(data, policy=email.policy.compat32)
            self.assertTrue(msg["Subject"].startswith("generated message "), msg["Subject"])
            self.assertEqual(msg["To"], "Recipient <rcpt@example.org>")
            body = ours.split(b"\r\n\r\n", 1)[1]
            for line in body.split(b"\r\n")[:-1]:
                # message_gen: words and spaces, 2 % of the lines led by one dot.
                self.assertRegex(line, rb"^\.?[a-z ]*$")
                dot_lines += line.startswith(b".")
        self.assertGreater(dot_lines, 0, "no dot lines in %d messages" % len(files))

    def test_lhlo_greeting(self):
        self.assertEqual(self.dc.greeting[0], 220, self.dc.greeting)
        self.assertIn("PIPELINING", self.keywords)

    def test_pipelined_three_recipients(self):
        r = self.bench("pipe", "--connections", "4", "--messages", "200", "--size", "2048",
                       "--per-connection", "10", "--seed", "11")
        self.check_report(r, want_sent=200)
        self.assertEqual(r["ok"], 200, r["errors"])
        self.assertEqual(r["failed"], 0)
        self.assertEqual(r["connection_stats"]["ready"], 20)
        self.assertEqual(r["latency_us"]["data"]["count"], 200)
        files = self.delivered("pipe", 200)
        self.assertEqual(len(files), r["ok"] * 3)
        self.check_generated(files, 2048)

    def test_lock_step_three_recipients(self):
        r = self.bench("lock", "--connections", "4", "--messages", "60", "--size", "1500",
                       "--per-connection", "5", "--no-pipelining", "--seed", "12")
        self.check_report(r, want_sent=60)
        self.assertEqual(r["ok"], 60, r["errors"])
        files = self.delivered("lock", 60)
        self.assertEqual(len(files), r["ok"] * 3)
        self.check_generated(files, 1500)

    def test_bodies_are_what_the_seed_makes(self):
        # Same seed, size and count: the same pool of bodies (message i takes
        # body i mod n). ringmx spools what it received; Dovecot must have
        # delivered exactly those bodies, no more and no other.
        args = ("--connections", "2", "--messages", "40", "--size", "3000",
                "--per-connection", "10", "--seed", "99")
        r = self.bench("same", *args)
        self.assertEqual(r["ok"], 40, r["errors"])
        lmtp = {our_part(d) for d in self.delivered("same", 40)}
        srv = Server(extra_toml=SERVER_TOML, shards=1).start()
        try:
            r2 = run_bench(srv.port, *args, "--duration", "20")
            self.assertEqual(r2["ok"], 40, r2["errors"])
            spooled = {our_part(m) for _, m in srv.spool_records().values()}
        finally:
            self.assertEqual(srv.stop(), 0)
        self.assertEqual(len(spooled), 40)  # 40 messages, a pool of 40 distinct bodies
        self.assertEqual(lmtp, spooled)

    def test_eml_dot_lines_arrive_unstuffed(self):
        # On the wire '..x' and '..': in the mailbox '.x' and '.' again.
        raw = (b"From: <a@example.net>\r\nTo: <b@example.org>\r\nSubject: dots\r\n\r\n"
               b"first\r\n.x\r\n..two\r\n.\r\n. space\r\n...\r\nlast .\r\n")
        d = tempfile.mkdtemp(prefix="ringmx-lmtp-eml-", dir="/var/spool")
        try:
            with open(os.path.join(d, "dots.eml"), "wb") as f:
                f.write(raw)
            r = self.bench("eml", "--connections", "1", "--messages", "3", "--eml-dir", d,
                           recipients=1)
        finally:
            shutil.rmtree(d)
        self.check_report(r, want_sent=3)
        self.assertEqual(r["ok"], 3, r["errors"])
        box = self.dc.mailbox("eml")  # one recipient: --to as is
        self.assertEqual(len(box), 3)
        for data in box.values():
            data = re.sub(rb"\r?\n", b"\r\n", data)
            self.assertTrue(data.endswith(raw), data)
            head = data[:-len(raw)]
            self.assertIn(b"Delivered-To: eml@" + DOMAIN.encode(), head)

    def test_bdat(self):
        args = ("--connections", "2", "--messages", "40", "--size", "2048", "--bdat",
                "--per-connection", "5", "--seed", "13")
        if "CHUNKING" not in self.keywords:
            r = self.bench("bdat", *args, expect_rc=1)
            self.check_report(r, want_sent=40)
            self.assertEqual(r["errors"]["by_kind"]["unsupported"], 40)
            self.assertEqual(self.dc.mailbox("bdat1"), {})
            return
        r = self.bench("bdat", *args)
        self.check_report(r, want_sent=40)
        self.assertEqual(r["ok"], 40, r["errors"])
        self.assertEqual(r["latency_us"]["data"]["count"], 40)
        files = self.delivered("bdat", 40)
        self.check_generated(files, 2048)
        # Lock-step BDAT too.
        r = self.bench("bdat", *args, "--no-pipelining")
        self.assertEqual(r["ok"], 40, r["errors"])
        self.delivered("bdat", 80)

    def test_unknown_recipient_fails_the_message_by_its_code(self):
        # part1..part3 exist, part4 does not: RCPT 4 gets 550, the data still
        # goes to the three others, which answer one reply each after it.
        for flags in ((), ("--no-pipelining",), ("--bdat",) if "CHUNKING" in self.keywords
                      else ()):
            r = self.bench("part", "--connections", "2", "--messages", "20", "--size", "1024",
                           "--per-connection", "4", *flags, recipients=4, expect_rc=1)
            self.check_report(r, want_sent=20)
            self.assertEqual(r["ok"], 0)
            self.assertEqual(r["errors"]["by_code"], {"550": 20}, (flags, r["errors"]))
            self.assertEqual(sum(r["errors"]["by_kind"].values()), 0, (flags, r["errors"]))
            self.assertEqual(r["latency_us"]["data"]["count"], 20)
        runs = 3 if "CHUNKING" in self.keywords else 2
        self.delivered("part", 20 * runs)
        self.assertFalse(os.path.exists(os.path.join(self.dc.home, "part4")))
        # The 550 is Dovecot's userdb saying so, not a refusal of everything.
        c = Client(self.dc.port)
        try:
            c.reply()
            self.assertEqual(c.cmd("LHLO probe.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
            code, lines = c.cmd("RCPT TO:<part4@%s>" % DOMAIN)
            self.assertEqual(code, 550, lines)
            self.assertIn("doesn't exist", lines[-1])
            self.assertEqual(c.cmd("RCPT TO:<part1@%s>" % DOMAIN)[0], 250)
            c.cmd("QUIT")
        finally:
            c.close()

    def test_a_recipient_refused_after_the_data(self):
        # full2 is over quota: its reply after the data is a 552 between two
        # 250s; the message counts by that code, full1 and full3 have it.
        for flags in ((), ("--no-pipelining",)):
            r = self.bench("full", "--connections", "2", "--messages", "12", "--size", "2048",
                           "--per-connection", "3", *flags, expect_rc=1)
            self.check_report(r, want_sent=12)
            self.assertEqual(r["ok"], 0)
            self.assertEqual(r["errors"]["by_code"], {"552": 12}, (flags, r["errors"]))
            self.assertEqual(r["latency_us"]["data"]["count"], 12)
        self.delivered("full", 24, users=(1, 3))
        self.assertEqual(self.dc.mailbox(FULL), {})
        self.assertIn("Quota exceeded", self.dc.log())

    def test_no_known_recipient_fails_at_rcpt(self):
        runs = [(), ("--no-pipelining",)]
        if "CHUNKING" in self.keywords:
            runs += [("--bdat",), ("--bdat", "--no-pipelining")]
        for flags in runs:
            r = self.bench("ghost", "--connections", "2", "--messages", "10", "--size", "1024",
                           "--per-connection", "5", *flags, recipients=1, expect_rc=1)
            self.check_report(r, want_sent=10)
            self.assertEqual(r["ok"], 0)
            # Pipelined BDAT: Dovecot answers the chunk "503 No valid recipients"
            # and keeps the transaction; without RSET the next message's MAIL
            # would get "503 MAIL already given".
            self.assertEqual(r["errors"]["by_code"], {"550": 10}, (flags, r["errors"]))
            # DATA never got a 354; a pipelined BDAT chunk left with the envelope.
            bdat_sent = "--bdat" in flags and "--no-pipelining" not in flags
            self.assertEqual(r["latency_us"]["data"]["count"], 10 if bdat_sent else 0, flags)
        self.assertFalse(os.path.exists(os.path.join(self.dc.home, "ghost")))


if __name__ == "__main__":
    why = install_dovecot()
    if why is None and os.geteuid() != 0:
        why = "Dovecot must run as root here (it delivers as %s)" % MAIL_USER
    if why:
        print("skipped: " + why, file=sys.stderr)
        sys.exit(77)
    main()
