"""Exim as the sending MTA. Exim ends the last message of a connection by
pipelining its end (". " or BDAT LAST) with QUIT and then half-closing (FIN,
or close_notify then FIN under TLS); a server that does not answer after the
half-close makes Exim defer ("Remote host closed connection in response to
pipelined end of data") and send the message again. Here a private Exim 4.96
(Debian's exim4-daemon-light, unpacked into a cache directory: it cannot be
installed beside the postfix package the other tests use) queues messages and
delivers them to ringmx in one queue run, over BDAT and over DATA, plaintext and
STARTTLS: every message must arrive exactly once and Exim must log no defer.

Needs root (Exim runs from its own spool as the Debian-exim user, created if
missing) and apt-get download; exits 77 when Exim cannot be fetched."""

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from harness import SKIP, Server, main, make_cert

CACHE = "/var/cache/ringmx-test/exim"
EXIM_USER = "Debian-exim"
MESSAGES = 3


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 120),
                          **kw)


def fetch_exim():
    """The unpacked exim4 binary and the library path it needs; (None, reason) if not."""
    root = os.path.join(CACHE, "root")
    exim = os.path.join(root, "usr/sbin/exim4")
    libdir = os.path.join(root, "usr/lib/x86_64-linux-gnu")
    if not os.path.exists(exim):
        os.makedirs(CACHE, exist_ok=True)
        debs = os.path.join(CACHE, "debs")
        os.makedirs(debs, exist_ok=True)
        os.chmod(debs, 0o777)  # apt's _apt user writes the download here
        want = ["exim4-daemon-light", "exim4-base"]
        deps = run(["apt-cache", "depends", "--no-recommends", "--no-suggests"] + want).stdout
        for line in deps.splitlines():
            name = line.split(":", 1)[-1].strip()
            if line.strip().startswith("Depends:") and name.startswith("lib"):
                installed = run(["dpkg-query", "-W", "-f=${Status}", name]).stdout
                if "install ok installed" not in installed:
                    want.append(name)
        got = run(["apt-get", "download"] + want, cwd=debs, timeout=300)
        if got.returncode != 0:
            return None, "apt-get download %s failed: %s" % (" ".join(want), got.stderr[-500:])
        for deb in glob.glob(os.path.join(debs, "*.deb")):
            x = run(["dpkg", "-x", deb, root])
            if x.returncode != 0:
                return None, "dpkg -x %s: %s" % (deb, x.stderr)
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        made = run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    EXIM_USER])
        if made.returncode != 0:
            return None, "cannot create the %s user: %s" % (EXIM_USER, made.stderr)
    return (exim, libdir), ""


class Exim:
    """A private Exim: its own config, spool and logs under a temp dir; every message to
    127.0.0.1:port over SMTP."""

    def __init__(self, exim, libdir, port, chunking, tls):
        self.exim, self.env = exim, dict(os.environ, LD_LIBRARY_PATH=libdir)
        self.dir = tempfile.mkdtemp(prefix="ringmx-exim-")
        for sub in ("spool", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        run(["chown", "-R", EXIM_USER, self.dir])
        self.conf = os.path.join(self.dir, "exim.conf")
        with open(self.conf, "w") as f:
            f.write("""primary_hostname = exim.test
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
exim_user = {user}
exim_group = {user}
keep_environment =
tls_advertise_hosts =
begin routers
to_ringmx:
  driver = manualroute
  route_list = * 127.0.0.1 byname
  transport = remote_smtp
  self = send
begin transports
remote_smtp:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_try_chunking = {chunking}
  {tls}
begin retry
* * F,1h,1m
""".format(d=self.dir, user=EXIM_USER, port=port, chunking="*" if chunking else "",
                       tls="hosts_require_tls = *\n  tls_verify_hosts =" if tls
                       else "hosts_avoid_tls = *"))

    def queue(self, tag, i):
        msg = "From: exim@exim.test\nTo: rcpt@example.org\nSubject: %s %d\n\nbody %d\n" % (
            tag, i, i)
        r = run([self.exim, "-C", self.conf, "-odq", "-f", "sender@exim.test",
                 "rcpt@example.org"], input=msg, env=self.env)
        assert r.returncode == 0, r.stdout + r.stderr

    def queue_run(self):
        return run([self.exim, "-C", self.conf, "-qqff", "-v"], env=self.env, timeout=120)

    def mainlog(self):
        try:
            with open(os.path.join(self.dir, "log", "mainlog")) as f:
                return f.read()
        except OSError:
            return ""

    def queued(self):
        return run([self.exim, "-C", self.conf, "-bpc"], env=self.env).stdout.strip()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class EximSender(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="ringmx-exim-certs-")
        crt, key = make_cert(cls.certs)
        cls.srv = Server(extra_toml='\n[tls]\ncert = "%s"\nkey = "%s"\n' % (crt, key)).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        shutil.rmtree(cls.certs, ignore_errors=True)
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def deliver(self, chunking, tls):
        tag = "exim-%s-%s" % ("bdat" if chunking else "data", "tls" if tls else "plain")
        ex = Exim(EXIM[0], EXIM[1], self.srv.port, chunking, tls)
        try:
            for i in range(MESSAGES):
                ex.queue(tag, i)
            out = ex.queue_run()
            log = ex.mainlog()
            transcript = out.stdout + out.stderr
            # Every message delivered once, in one queue run, none deferred.
            self.assertEqual(log.count(" => rcpt@example.org"), MESSAGES, log + transcript)
            self.assertNotIn("==", log, "a delivery was deferred:\n" + log)
            self.assertEqual(ex.queued(), "0", log)
            # Exim did what it does: QUIT pipelined behind the last message's end, then
            # (in plaintext) a half-close before reading the replies.
            self.assertIn("QUIT", transcript)
            if not tls:
                self.assertIn("(shutdown)>>", transcript)
            if chunking:
                self.assertIn("BDAT", transcript)
            else:
                self.assertIn("DATA", transcript)
            # ringmx stored each exactly once.
            deadline = time.monotonic() + 5
            while True:
                stored = [m for f, m in self.srv.spool_records().values()
                          if ("Subject: %s " % tag).encode() in m]
                if len(stored) >= MESSAGES or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            subjects = sorted(m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in stored)
            self.assertEqual(subjects, [("%s %d" % (tag, i)).encode() for i in range(MESSAGES)])
            if tls:
                self.assertTrue(all(b"version=TLS" in m.split(b"\r\n\r\n", 1)[0]
                                    for m in stored), "not over TLS")
        finally:
            ex.cleanup()

    def test_bdat_plaintext(self):
        self.deliver(chunking=True, tls=False)

    def test_data_plaintext(self):
        self.deliver(chunking=False, tls=False)

    def test_bdat_starttls(self):
        self.deliver(chunking=True, tls=True)

    def test_data_starttls(self):
        self.deliver(chunking=False, tls=True)


EXIM = None

if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: needs root (Exim's own user and spool)", file=sys.stderr)
        sys.exit(SKIP)
    EXIM, why = fetch_exim()
    if EXIM is None:
        print("SKIP: Exim could not be fetched: " + why, file=sys.stderr)
        sys.exit(SKIP)
    main()
