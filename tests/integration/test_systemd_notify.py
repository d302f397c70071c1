"""systemd's notification protocol (Type=notify, sd_notify(3)) against the real binary.

The test plays the service manager: it binds a unix datagram socket, starts
ringmx with NOTIFY_SOCKET pointing at it (and WATCHDOG_USEC, WATCHDOG_PID =
the daemon's own pid, as systemd sets them), and reads what arrives:
READY=1 once the SMTP port answers, a STATUS= line naming the listeners,
WATCHDOG=1 every half interval, RELOADING=1 (with MONOTONIC_USEC) then
READY=1 on SIGHUP, a failed reload said so in STATUS, STOPPING=1 with what
is left on SIGTERM, and exit 0. A shard whose event loop is frozen (the test
stops that one thread with ptrace) stops the watchdog pings until it runs
again. ringmx always links libsystemd: a binary that sends nothing fails here."""

import ctypes
import os
import signal
import socket
import tempfile
import threading
import time
import unittest

from harness import Client, Server, dot_stuff, main, started_line, wait_for

WATCHDOG_USEC = 2_000_000   # pings expected every 1 s
STALL_S = 3.0               # ShardWatchdog::kMinStallMs: the longest a shard loop may stand still
# Runs the daemon with WATCHDOG_PID set to its own pid: the shell's $$ is kept by exec.
SAME_PID = ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"']


class Manager:
    """The service manager's end of NOTIFY_SOCKET: every datagram, parsed, with
    its arrival time (time.monotonic(), CLOCK_MONOTONIC like the daemon's)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringmx-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.messages = []   # (time, {key: value}, raw text)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            fields = {}
            for line in text.split("\n"):
                k, sep, v = line.partition("=")
                if sep:
                    fields[k] = v
            with self.lock:
                self.messages.append((time.monotonic(), fields, text))

    def since(self, t0, key=None):
        with self.lock:
            return [m for m in self.messages if m[0] >= t0 and (key is None or key in m[1])]

    def wait(self, key, value="1", t0=0.0, timeout=15.0):
        """The first message at or after t0 with key=value; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.since(t0, key):
                if value is None or m[1][key] == value:
                    return m
            time.sleep(0.02)
        with self.lock:
            got = [m[2] for m in self.messages]
        raise AssertionError("no %s=%s from ringmx within %.0fs; got %r" % (key, value, timeout,
                                                                          got[-10:]))

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def start(manager, watchdog_pid="self", shards=2, extra_toml=""):
    """ringmx under a fake manager. watchdog_pid: "self" (WATCHDOG_PID = the daemon's
    pid), None (unset), or a number (someone else's: no watchdog expected)."""
    srv = Server(shards=shards, extra_toml=extra_toml)
    env = {"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    if watchdog_pid == "self":
        srv.wrapper = SAME_PID
    elif watchdog_pid is not None:
        env["WATCHDOG_PID"] = str(watchdog_pid)
    saved = {k: os.environ.get(k) for k in list(env) + ["WATCHDOG_PID"]}
    os.environ.update(env)
    if watchdog_pid is None or watchdog_pid == "self":
        os.environ.pop("WATCHDOG_PID", None)
    try:
        srv.start(wait=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return srv


def greets(port):
    c = Client(port, timeout=5)
    try:
        return c.reply()[0] == 220
    finally:
        c.close()


# ---- freezing one shard thread (ptrace stops that thread only) -------------------

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000   # __WALL: wait for threads too
SYS_IO_URING_ENTER = 426


def shard_threads(pid):
    """Threads of ringmx that wait in io_uring_enter: the shards (the main thread waits
    in rt_sigtimedwait, the logger on a futex, the admin endpoint in epoll_wait)."""
    out = []
    for tid in sorted(int(t) for t in os.listdir("/proc/%d/task" % pid)):
        try:
            with open("/proc/%d/task/%d/comm" % (pid, tid)) as f:
                if f.read().startswith("iou-"):
                    continue   # the kernel's io_uring workers
            with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
                nr = f.read().split()[0]
        except OSError:
            continue
        if nr == str(SYS_IO_URING_ENTER):
            out.append(tid)
    return out


class Frozen:
    """One thread of the daemon stopped (PTRACE_SEIZE + PTRACE_INTERRUPT) until exit."""

    def __init__(self, tid):
        self.tid = tid
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long

    def call(self, req):
        if self.libc.ptrace(req, self.tid, None, None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "ptrace(%#x, %d): %s" % (req, self.tid, os.strerror(e)))

    def __enter__(self):
        self.call(PTRACE_SEIZE)
        self.call(PTRACE_INTERRUPT)
        os.waitpid(self.tid, WALL)   # it has stopped
        return self

    def __exit__(self, *exc):
        self.call(PTRACE_DETACH)


class SystemdNotify(unittest.TestCase):
    def setUp(self):
        self.manager = Manager()
        self.srv = None

    def tearDown(self):
        if self.srv:
            self.srv.__exit__()
        self.manager.close()

    def test_lifecycle(self):
        m = self.manager
        self.srv = srv = start(m)
        t0 = time.monotonic()
        ready = m.wait("READY", timeout=20)
        # READY=1 comes once the listeners are open: the SMTP port greets at once.
        self.assertTrue(greets(srv.port), "READY=1 but no greeting on the SMTP port")
        status = ready[1].get("STATUS", "")
        self.assertIn("SMTP on 127.0.0.1:%d" % srv.port, status)
        self.assertIn("2 shards", status)
        self.assertIn("spool " + srv.spool, status)
        self.assertEqual(len(m.since(0, "READY")), 1)
        # The start-up log line as well, once.
        wait_for(lambda: started_line(srv.log()), timeout=5, what="the start-up log line")
        self.assertEqual(srv.log().count("event=started "), 1)

        # The watchdog, every half interval (1 s), on an idle server too.
        time.sleep(5.2)
        pings = [t for t, f, _ in m.since(ready[0], "WATCHDOG")]
        self.assertGreaterEqual(len(pings), 4, "WATCHDOG=1 at %r" % pings)
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        self.assertTrue(all(0.6 <= g <= 1.6 for g in gaps), "gaps between pings: %r" % gaps)
        self.assertTrue(all(f.get("WATCHDOG") == "1" for _, f, _ in m.since(t0, "WATCHDOG")))

        # SIGHUP: RELOADING=1 with the monotonic time of the request, then READY=1.
        t_hup = time.monotonic()
        srv.send_signal(signal.SIGHUP)
        rel = m.wait("RELOADING", t0=t_hup)
        usec = int(rel[1]["MONOTONIC_USEC"])
        self.assertLessEqual(t_hup * 1e6 - 1e3, usec)
        self.assertLessEqual(usec, rel[0] * 1e6 + 1e3)
        self.assertIn("reloading " + srv.config, rel[1].get("STATUS", ""))
        again = m.wait("READY", t0=rel[0])
        self.assertGreaterEqual(again[0], rel[0])
        self.assertIn("reloaded", again[1].get("STATUS", ""))
        self.assertIn("SMTP on 127.0.0.1:%d" % srv.port, again[1]["STATUS"])

        # A reload that fails (the file no longer parses) still ends in READY=1, and says so.
        with open(srv.config) as f:
            good = f.read()
        with open(srv.config, "a") as f:
            f.write("[server]\nno_such_key = 1\n")
        t_bad = time.monotonic()
        srv.send_signal(signal.SIGHUP)
        rel = m.wait("RELOADING", t0=t_bad)
        bad = m.wait("READY", t0=rel[0])
        self.assertIn("reload failed", bad[1].get("STATUS", ""))
        self.assertTrue(greets(srv.port))
        with open(srv.config, "w") as f:
            f.write(good)
        # The watchdog goes on after both reloads.
        time.sleep(1.2)
        self.assertGreaterEqual(len(m.since(bad[0], "WATCHDOG")), 1)

        # SIGTERM with a message half sent: STOPPING=1, the status says what is left,
        # the message still lands, exit 0.
        c = Client(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO notify.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: drain\r\n\r\nfirst half\r\n")
        t_term = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        stop = m.wait("STOPPING", t0=t_term)
        self.assertIn("draining (SIGTERM)", stop[1].get("STATUS", ""))
        self.assertIn("1 SMTP sessions left", stop[1]["STATUS"])
        self.assertGreater(int(stop[1].get("EXTEND_TIMEOUT_USEC", "0")), 0)
        # Another status line a second later, still counting the open session.
        later = m.wait("STATUS", value=None, t0=stop[0] + 0.5)
        self.assertIn("1 SMTP sessions left", later[1]["STATUS"])
        c.send(dot_stuff(b"second half\r\n") + b".\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        c.close()
        self.assertEqual(srv.proc.wait(30), 0, srv.log())
        srv.check_sanitizer_report()
        self.assertEqual(len(srv.spool_records()), 1)
        self.assertEqual(len(m.since(0, "STOPPING")), 1)

    def test_watchdog_stops_when_a_shard_is_stuck(self):
        m = self.manager
        self.srv = srv = start(m)
        ready = m.wait("READY", timeout=20)
        m.wait("WATCHDOG", t0=ready[0])
        shards = []
        deadline = time.monotonic() + 10
        while len(shards) < 2 and time.monotonic() < deadline:
            shards = shard_threads(srv.proc.pid)
            time.sleep(0.1)
        self.assertEqual(len(shards), 2, "shard threads of %d: %r" % (srv.proc.pid, shards))
        with Frozen(shards[1]):
            t_freeze = time.monotonic()
            # Within the stall limit pings may still come; past it (and a ping
            # period of slack) none may.
            quiet_from = t_freeze + STALL_S + 1.6
            stalled = m.wait("STATUS", value=None, t0=t_freeze, timeout=STALL_S + 3)
            self.assertIn("has not moved", stalled[1]["STATUS"])
            time.sleep(max(0.0, quiet_from - time.monotonic()) + 3.0)
            late = [t - t_freeze for t, _, _ in m.since(quiet_from, "WATCHDOG")]
            self.assertEqual(late, [], "WATCHDOG=1 while a shard was frozen (seconds after)")
            # The SMTP port is served by the other shard meanwhile, and the daemon is up.
            self.assertIsNone(srv.proc.poll())
            t_thaw = time.monotonic()
        # Running again: the pings resume at once, and the status says all is well.
        resumed = m.wait("WATCHDOG", t0=t_thaw, timeout=3)
        self.assertLess(resumed[0] - t_thaw, 1.5)
        ok = m.wait("STATUS", value=None, t0=t_thaw, timeout=3)
        self.assertIn("SMTP on 127.0.0.1:%d" % srv.port, ok[1]["STATUS"])
        self.assertNotIn("has not moved", ok[1]["STATUS"])
        self.assertEqual(srv.stop(), 0, srv.log())

    def test_watchdog_for_another_pid_is_not_ours(self):
        # WATCHDOG_PID names another process (the manager means a different one):
        # READY=1 as always, and no pings.
        m = self.manager
        self.srv = srv = start(m, watchdog_pid=os.getpid())
        ready = m.wait("READY", timeout=20)
        time.sleep(2.5)
        self.assertEqual(m.since(0, "WATCHDOG"), [])
        self.assertEqual(srv.stop(), 0, srv.log())
        self.assertTrue(m.since(ready[0], "STOPPING"))

    def test_watchdog_pid_unset_is_ours(self):
        m = self.manager
        self.srv = srv = start(m, watchdog_pid=None)
        ready = m.wait("READY", timeout=20)
        m.wait("WATCHDOG", t0=ready[0], timeout=3)
        self.assertEqual(srv.stop(), 0, srv.log())


if __name__ == "__main__":
    main()
