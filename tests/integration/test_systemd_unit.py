"""The systemd unit (deploy/ringmx.service.in) as `cmake --install` writes it.

- `systemd-analyze verify` finds no problem in it: exit 0 and nothing on
  stderr (verify only warns, exit 0, on a misspelt value, so stderr counts;
  the test shows that on a broken copy). Its ExecStart is the installed
  daemon and its man: Documentation= pages are the installed ones (verify
  runs `man` for each).
- The settings the deployment needs: Type=notify, a dedicated user (the
  sysusers.d entry creates it, tried with systemd-sysusers --root), only
  CAP_NET_BIND_SERVICE, ProtectSystem=strict with the spool's state
  directory writable, LimitNOFILE for 100k connections, Restart=on-failure,
  ExecReload sending SIGHUP, a watchdog; each setting with a comment above it.
- SystemCallFilter: every system call the daemon makes (traced with strace
  through start-up, a message, a metrics scrape, a reload and a drain) is in
  the unit's filter as `systemd-analyze syscall-filter` expands it here, so
  the sandbox does not break it.
No systemd needs to run as PID 1 for any of this."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BINARY, Client, Server, http_get, main, transaction, wait_for

BUILD = os.path.normpath(os.path.join(os.path.dirname(BINARY), ".."))
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def install(prefix):
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix],
                       env={k: v for k, v in os.environ.items() if k != "DESTDIR"},
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("cmake --install failed:\n%s%s" % (r.stdout, r.stderr))


def verify(unit, prefix):
    env = dict(os.environ)
    env["MANPATH"] = os.path.join(prefix, "share", "man")
    env["SYSTEMD_LOG_COLOR"] = "0"
    return subprocess.run([ANALYZE, "verify", unit], env=env, cwd=os.path.dirname(unit),
                          capture_output=True, text=True, timeout=120)


def settings(text):
    """[(section, key, value, the line before)] of a unit file."""
    out, section, prev = [], None, ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
        elif s and not s.startswith("#") and "=" in s:
            k, _, v = s.partition("=")
            out.append((section, k.strip(), v.strip(), prev))
        prev = s
    return out


def syscall_groups():
    """{"@group": set of names and "@subgroups"} from systemd-analyze syscall-filter."""
    r = subprocess.run([ANALYZE, "syscall-filter"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    groups, current = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), set())
        elif line.startswith("    ") and current is not None:
            item = line.strip()
            if item and not item.startswith("#"):
                current.add(item)
    return groups


def expand(names, groups, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for n in names:
        if n.startswith("@"):
            if n in seen:
                continue
            seen.add(n)
            if n not in groups:
                raise AssertionError("unknown system call group %s" % n)
            out |= expand(groups[n], groups, seen)
        else:
            out.add(n)
    return out


class Unit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(ANALYZE):
            raise AssertionError("systemd-analyze is missing (tools/dev.sh installs systemd)")
        cls.tmp = tempfile.mkdtemp(prefix="ringmx-unit-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        install(cls.prefix)
        cls.unit = os.path.join(cls.prefix, "lib", "systemd", "system", "ringmx.service")
        with open(cls.unit) as f:
            cls.text = f.read()
        cls.settings = settings(cls.text)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def values(self, key, section="Service"):
        return [v for s, k, v, _ in self.settings if k == key and s == section]

    def test_verify_is_clean(self):
        r = verify(self.unit, self.prefix)
        self.assertEqual((r.returncode, r.stderr, r.stdout), (0, "", ""))

    def test_verify_catches_a_broken_copy(self):
        # Each of these is only a warning for verify (exit 0 for the first two):
        # the test above must read stderr.
        for bad in (("ProtectSystem=strict", "ProtectSystem=stricter"),
                    ("Type=notify", "Type=notify-reloadish"),
                    ("Documentation=man:ringmx(8)", "Documentation=man:ringmx-nosuch(8)")):
            broken = os.path.join(self.tmp, "broken", "ringmx.service")
            os.makedirs(os.path.dirname(broken), exist_ok=True)
            with open(broken, "w") as f:
                f.write(self.text.replace(*bad))
            r = verify(broken, self.prefix)
            self.assertNotEqual(r.stderr, "", "verify said nothing about %s" % bad[1])

    def test_settings(self):
        self.assertEqual(self.values("Type"), ["notify"])
        self.assertEqual(self.values("NotifyAccess"), ["main"])
        self.assertEqual(self.values("User"), ["ringmx"])
        self.assertEqual(self.values("Group"), ["ringmx"])
        self.assertEqual(self.values("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(self.values("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(self.values("NoNewPrivileges"), ["yes"])
        self.assertEqual(self.values("ProtectSystem"), ["strict"])
        self.assertEqual(self.values("StateDirectory"), ["ringmx"])
        self.assertEqual(self.values("WorkingDirectory"), ["/var/lib/ringmx"])
        self.assertGreaterEqual(int(self.values("LimitNOFILE")[0]), 2 * 100_000)
        self.assertEqual(self.values("Restart"), ["on-failure"])
        self.assertEqual(self.values("ExecReload")[-1], "/bin/kill -HUP $MAINPID")
        self.assertTrue(self.values("WatchdogSec"))
        self.assertEqual(self.values("WantedBy", "Install"), ["multi-user.target"])
        # The user and group the unit names are the ones sysusers.d creates (tried
        # in an empty root: a system user with no login, at home in the state directory).
        root = os.path.join(self.tmp, "sysusers-root")
        os.makedirs(os.path.join(root, "etc"), exist_ok=True)
        r = subprocess.run(["systemd-sysusers", "--root", root,
                            os.path.join(self.prefix, "lib", "sysusers.d", "ringmx.conf")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(root, "etc", "passwd")) as f:
            users = [l.strip().split(":") for l in f]
        with open(os.path.join(root, "etc", "group")) as f:
            groups = [l.strip().split(":") for l in f]
        self.assertEqual([(u[0], u[5], u[6]) for u in users],
                         [("ringmx", "/var/lib/ringmx", "/usr/sbin/nologin")])
        self.assertLess(int(users[0][2]), 1000)   # a system user
        self.assertEqual([g[0] for g in groups], ["ringmx"])
        # The shipped config's relative spool lands in the writable state directory.
        with open(os.path.join(self.prefix, "etc", "ringmx", "ringmx.toml")) as f:
            self.assertRegex(f.read(), r'(?m)^dir = "\./ringmx-spool"')
        # Every setting says why, in a comment right above it.
        bare = ["%s=%s" % (k, v) for _, k, v, prev in self.settings if not prev.startswith("#")]
        self.assertEqual(bare, [], "settings without a comment above them")

    def test_system_calls_are_in_the_filter(self):
        if os.environ.get("RINGMX_SANITIZED", "") in ("1", "ON", "TRUE", "true"):
            # ASan's runtime makes calls of its own (and is never what the unit runs);
            # the release tree of the same test run checks the daemon's.
            self.skipTest("sanitizer build")
        if not shutil.which("strace"):
            self.fail("strace is not installed (tools/dev.sh installs it)")
        filters = self.values("SystemCallFilter")
        self.assertEqual(len(filters), 1)
        allowed = expand(filters[0].split(), syscall_groups())
        self.assertIn("io_uring_enter", allowed)
        trace = os.path.join(self.tmp, "strace.txt")
        srv = Server(shards=2, extra_toml='[[route]]\ndomains = ["relay.test"]\n'
                     'destination = "smtp://localhost:9"\n')
        srv.wrapper = ["strace", "-f", "-qq", "-o", trace]
        try:
            srv.start()
            with open("/proc/%d/task/%d/children" % (srv.proc.pid, srv.proc.pid)) as f:
                child = int(f.read().split()[0])
            c = Client(srv.port)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO unit.test")[0], 250)
            code, _ = transaction(c, "a@example.net", ["b@relay.test"],
                                  b"Subject: filter\r\n\r\nbody\r\n")
            self.assertEqual(code, 250)
            c.cmd("QUIT")
            c.close()
            status, _ = http_get(srv.admin_port, "/metrics")
            self.assertEqual(status, 200)
            os.kill(child, signal.SIGHUP)
            wait_for(lambda: "reload_done" in srv.log(), 30, "the reload")
            time.sleep(1.5)   # a delivery attempt to the closed port, an idle loop or two
            os.kill(child, signal.SIGTERM)
            self.assertEqual(srv.proc.wait(60), 0, srv.log())
        finally:
            srv.__exit__()
        made = set()
        with open(trace) as f:
            for line in f:
                m = re.match(r"^\d+\s+([a-z_0-9]+)\(", line)
                if m:
                    made.add(m.group(1))
        self.assertIn("io_uring_enter", made)
        self.assertGreater(len(made), 20)
        self.assertEqual(sorted(made - allowed), [],
                         "system calls ringmx makes that %s refuses" % filters[0])


if __name__ == "__main__":
    main()
