"""cmake --install of the build tree under test (cmake/install.cmake).

Into a temporary prefix (--prefix) and DESTDIR-style (DESTDIR with --prefix
/usr): every expected file is there and nothing else, the programs are
executable and run from where they were installed (ringmx --version,
ringmx-bench --help, ringmxctl --help loading ringmx-spool beside it), the
installed example config validates, man finds the pages, and the installed
unit's ExecStart and ExecReload name the installed daemon and config under
the prefix given at install time (never the DESTDIR)."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BINARY, main

BUILD = os.path.normpath(os.path.join(os.path.dirname(BINARY), ".."))
SOURCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Relative to the prefix; (path, executable).
EXPECTED = [
    ("sbin/ringmx", True),
    ("bin/ringmx-bench", True),
    ("bin/ringmxctl", True),
    ("bin/ringmx-spool", True),
    ("etc/ringmx/ringmx.toml", False),
    ("lib/systemd/system/ringmx.service", False),
    ("lib/sysusers.d/ringmx.conf", False),
    ("share/man/man1/ringmx-bench.1", False),
    ("share/man/man5/ringmx.toml.5", False),
    ("share/man/man8/ringmx.8", False),
    ("share/man/man8/ringmxctl.8", False),
]


def install(prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("cmake --install failed (%d):\n%s%s" % (r.returncode, r.stdout,
                                                                     r.stderr))
    return r


def files_under(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def unit_lines(path, key):
    with open(path) as f:
        return [line.split("=", 1)[1].strip() for line in f
                if line.startswith(key + "=")]


class Install(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
            self.fail("no build tree at %s (RINGMX_BIN=%s)" % (BUILD, BINARY))
        self.tmp = tempfile.mkdtemp(prefix="ringmx-install-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_prefix(self):
        prefix = os.path.join(self.tmp, "prefix")
        install(prefix)
        self.assertEqual(files_under(prefix), {p for p, _ in EXPECTED})
        for path, executable in EXPECTED:
            full = os.path.join(prefix, path)
            self.assertEqual(os.access(full, os.X_OK), executable, full)

        # The programs run from where they were installed.
        ringmx = os.path.join(prefix, "sbin", "ringmx")
        got = subprocess.run([ringmx, "--version"], capture_output=True, text=True, timeout=30)
        want = subprocess.run([BINARY, "--version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(got.stdout, want.stdout)
        self.assertTrue(got.stdout.startswith("ringmx "), got.stdout)
        bench = subprocess.run([os.path.join(prefix, "bin", "ringmx-bench"), "--help"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(bench.returncode, 0, bench.stderr)
        self.assertIn("--target", bench.stdout)
        ctl = subprocess.run([os.path.join(prefix, "bin", "ringmxctl"), "--help"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(ctl.returncode, 0, ctl.stderr)   # it loads ringmx-spool beside it
        self.assertIn("queue", ctl.stdout)
        spool = os.path.join(self.tmp, "empty-spool")
        os.mkdir(spool)
        listing = subprocess.run([os.path.join(prefix, "bin", "ringmx-spool"), spool, "list"],
                                 capture_output=True, text=True, timeout=30)
        self.assertEqual(listing.returncode, 0, listing.stderr)

        # The installed example config is valid as shipped (its spool dir is relative).
        config = os.path.join(prefix, "etc", "ringmx", "ringmx.toml")
        check = subprocess.run([ringmx, "--check-config", config], cwd=self.tmp,
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)

        # The unit names the installed daemon and config.
        unit = os.path.join(prefix, "lib", "systemd", "system", "ringmx.service")
        self.assertEqual(unit_lines(unit, "ExecStart"), ["%s --config %s" % (ringmx, config)])
        reload_lines = unit_lines(unit, "ExecReload")
        self.assertEqual(reload_lines[0], "%s --check-config %s" % (ringmx, config))
        self.assertEqual(reload_lines[1], "/bin/kill -HUP $MAINPID")
        with open(unit) as f:
            text = f.read()
        self.assertIsNone(re.search(r"@[A-Z_]+@", text), "a template name left in the unit")
        with open(os.path.join(SOURCE, "deploy", "ringmx.service.in")) as f:
            template = f.read()
        # Nothing else of the template changed (the system call groups stay).
        self.assertEqual(text, template.replace("@RINGMX_FULL_SBINDIR@", prefix + "/sbin")
                         .replace("@RINGMX_FULL_SYSCONFDIR@", prefix + "/etc"))

        # man finds the pages there.
        if shutil.which("man"):
            for name, section in (("ringmx", "8"), ("ringmx.toml", "5"), ("ringmx-bench", "1"),
                                  ("ringmxctl", "8")):
                r = subprocess.run(["man", "-M", os.path.join(prefix, "share", "man"), "-w",
                                    section, name], capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, "%s(%s): %s" % (name, section, r.stderr))
                self.assertTrue(r.stdout.strip().startswith(prefix), r.stdout)
        else:
            self.fail("man is not installed (tools/dev.sh installs man-db)")

    def test_destdir(self):
        destdir = os.path.join(self.tmp, "stage")
        install("/usr", destdir=destdir)
        self.assertEqual(files_under(destdir), {os.path.join("usr", p) for p, _ in EXPECTED})
        unit = os.path.join(destdir, "usr", "lib", "systemd", "system", "ringmx.service")
        self.assertEqual(unit_lines(unit, "ExecStart"),
                         ["/usr/sbin/ringmx --config /usr/etc/ringmx/ringmx.toml"])


if __name__ == "__main__":
    main()
