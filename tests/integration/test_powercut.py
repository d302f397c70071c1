"""Power cuts under load: every message ringmx acknowledged survives, byte-exact.

kill -9 alone cannot catch a missing or misordered fsync (the page cache
survives a process kill), so ringmx's spool sits on ringmx_dropfs
(tests/powercut/README.md), where only synced data and synced directory
entries survive a cut. Each cycle: start ringmx, put it under concurrent load
(client threads, pipelined or not, every message unique and recorded with the
queue id of its 250), kill -9 it at a random moment, cut the power, start it
again on what survived (start-up recovery), stop it with SIGTERM, and read the
spool with tools/ringmx-spool: every message acknowledged so far must be there
with exactly the bytes sent.

Cases: the spool directory exists beforehand; ringmx creates it (and its
parents) itself; and two runs that must report losses, to show the test can
fail: the file system ignoring file fsyncs, and ignoring directory fsyncs.
A torn-mode run (unsynced appends become zeros) is there too, and one with
delivery to smtp-sink (segments and their journals removed as their mail is
delivered): every acknowledged message must reach the sink.

RINGMX_SEED=N repeats a run; RINGMX_POWERCUT_CASES=normal,creates_dir,...
runs a subset."""

import hashlib
import importlib.machinery
import importlib.util
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest

import dropfs
from dropfs import DropFs, sync_dir
from harness import AckedLoad, Server, free_port, main

THREADS = 8
MAX_MESSAGES_PER_THREAD_CYCLE = 3000  # count bound of each load loop
MAX_CYCLE_SECONDS = 6.0               # time bound of each load loop
LOAD_SECONDS = (1.0, 2.5)             # load before the kill, uniform
MAX_CLI_READS = 3000                  # messages read one `ringmx-spool message` run each

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                    "ringmx-spool")


def load_tool():
    """tools/ringmx-spool as a module, to read many messages in one process:
    tens of thousands of `message` runs would take minutes. None when it no
    longer has records(path) (then its CLI is used per message)."""
    try:
        loader = importlib.machinery.SourceFileLoader("ringmx_spool", TOOL)
        spec = importlib.util.spec_from_loader("ringmx_spool", loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
    except (OSError, SyntaxError):
        return None
    return mod if callable(getattr(mod, "records", None)) else None


def read_spool(spool):
    """{queue id: stored message (Received header + body)} through tools/ringmx-spool,
    and a list of problems it reported."""
    if not os.path.isdir(spool):
        return {}, ["the spool directory %s is gone" % spool]
    problems = []
    chk = subprocess.run([sys.executable, TOOL, spool, "check"], capture_output=True, timeout=120)
    if chk.returncode != 0:
        problems.append("ringmx-spool check: %s %s" % (chk.stdout.decode().strip(),
                                                      chk.stderr.decode().strip()[-500:]))
    lst = subprocess.run([sys.executable, TOOL, spool, "list"], capture_output=True, timeout=120)
    if lst.returncode != 0:
        problems.append("ringmx-spool list failed: %s" % lst.stderr.decode()[-500:])
        return {}, problems
    files = {}
    for line in lst.stdout.decode().splitlines():
        parts = line.split()
        if parts:
            files.setdefault(parts[-1], []).append(parts[0])
    listed = [q for qids in files.values() for q in qids]
    out = {}
    tool = load_tool()
    if tool is not None:
        try:
            for rel in files:
                for rec in tool.records(os.path.join(spool, rel)):
                    out[rec[0]["queue-id"][0]] = rec[2]
        except (KeyError, IndexError, TypeError) as e:
            problems.append("tools/ringmx-spool records() changed shape (%r): reading "
                            "message by message" % e)
            out, tool = {}, None
    if tool is not None and listed:
        # The module's view must be the CLI's: check one message each time.
        sample = listed[len(listed) // 2]
        if out.get(sample) != cli_message(spool, sample):
            problems.append("tools/ringmx-spool records() disagrees with its 'message' "
                            "command: reading message by message")
            out, tool = {}, None
    if tool is None:
        if len(listed) > MAX_CLI_READS:
            raise AssertionError("%d messages are too many to read one ringmx-spool run "
                                 "each: teach read_spool the tool's new API" % len(listed))
        out = {q: cli_message(spool, q) for q in listed}
    return out, problems


def cli_message(spool, qid):
    r = subprocess.run([sys.executable, TOOL, spool, "message", qid], capture_output=True,
                       timeout=60)
    return r.stdout if r.returncode == 0 else None


def recovery_summary(log):
    """Sums of the start-up recovery's counters over its spool_recovered lines."""
    out = {"kept": 0, "tails_cut": 0, "corrupt": 0, "removed_partial": 0}
    for line in log.splitlines():
        if "event=spool_recovered" not in line:
            continue
        for m in re.finditer(r"(\w+)=(\d+)", line):
            if m.group(1) in out:
                out[m.group(1)] += int(m.group(2))
    return out


def compare(acked, stored):
    """(present, missing, mismatched, examples) of the acknowledged messages."""
    present, missing, bad, examples = 0, 0, 0, []
    for qid, digest, length, tag in acked:
        msg = stored.get(qid)
        if msg is None:
            missing += 1
            if len(examples) < 3:
                examples.append("missing %s (%s)" % (qid, tag))
            continue
        header = msg[:len(msg) - length]
        if len(msg) < length or hashlib.sha256(msg[len(msg) - length:]).hexdigest() != digest \
                or not header.startswith(b"Received: ") or ("id " + qid).encode() not in header:
            bad += 1
            if len(examples) < 3:
                examples.append("mismatched %s (%s)" % (qid, tag))
            continue
        present += 1
    return present, missing, bad, examples


def count_spilled(spool):
    """Records written by a spill: their message-size has the fixed width."""
    n = 0
    for root, _, files in os.walk(spool):
        if os.path.basename(root) == "corrupt":
            continue
        for name in files:
            if name.endswith(".msg"):
                with open(os.path.join(root, name), "rb") as f:
                    n += f.read().count(b"\nmessage-size: 0000000000")
    return n


class PowerCut(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.seed = int(os.environ.get("RINGMX_SEED") or random.SystemRandom().randrange(1 << 31))
        print("\npowercut seed %d (RINGMX_SEED=%d to repeat)" % (cls.seed, cls.seed), flush=True)
        only = os.environ.get("RINGMX_POWERCUT_CASES", "")
        cls.only = set(only.split(",")) if only else None

    def load_then_kill(self, srv, port, tag, rng, sizes):
        """Acknowledged load from THREADS clients, then kill -9 at a random moment (the
        power cut is the caller's). Returns the load and how long it ran."""
        load = AckedLoad(port, tag, self.seed, MAX_MESSAGES_PER_THREAD_CYCLE, MAX_CYCLE_SECONDS,
                         sizes, (1, 5))
        threads = [threading.Thread(target=load.run, args=(t,), daemon=True)
                   for t in range(THREADS)]
        for th in threads:
            th.start()
        delay = rng.uniform(*LOAD_SECONDS)
        time.sleep(delay)
        alive = srv.proc.poll() is None
        srv.kill9()
        load.stop.set()
        for th in threads:
            th.join(20)
        self.assertFalse(any(th.is_alive() for th in threads), "load threads hung")
        self.assertTrue(alive, "ringmx died before the kill\n%s" % srv.log()[-3000:])
        return load, delay

    def run_cycles(self, name, flags, cycles, create_spool, extra_toml=""):
        """Runs the cycles; returns (total acknowledged, [per-cycle (missing, mismatched)],
        final (present, missing, mismatched))."""
        if self.only is not None and name not in self.only:
            self.skipTest("not in RINGMX_POWERCUT_CASES")
        rng = random.Random("%d-%s" % (self.seed, name))
        fs = DropFs(flags).mount()
        servers = []
        try:
            if create_spool:
                spool = os.path.join(fs.mnt, "spool")
                os.mkdir(spool)
                sync_dir(fs.mnt)    # the operator made it, durably
                if create_spool == "with shards":
                    # Made durable whatever the mode, so that losses can only
                    # come from ringmx's own syncs of its segments.
                    for i in range(2):
                        os.mkdir(os.path.join(spool, "shard-%d" % i))
                    fs.sync_everything()
            else:
                spool = os.path.join(fs.mnt, "var", "spool", "ringmx")   # ringmx makes it
            port = free_port()
            acked, per_cycle = [], []
            t0 = time.monotonic()
            print("[%s] dropfs %s, spool %s" % (
                name, " ".join(flags) or "(normal)",
                "and shard directories made beforehand" if create_spool == "with shards"
                else "made beforehand" if create_spool else "made by ringmx"), flush=True)
            for cycle in range(cycles):
                srv = Server(shards=2, spool=spool, port=port, extra_toml=extra_toml)
                servers.append(srv)
                srv.start()
                load, delay = self.load_then_kill(srv, port, "%s-c%d" % (name, cycle), rng,
                                                  (1024, 12 * 1024))
                self.assertEqual(load.errors, [], "protocol errors in cycle %d" % cycle)
                fs.cut()
                acked.extend(load.acked)
                # Said before recovery can make it again: a missing directory
                # entry loses every message under it at once.
                survived = [d for d in ("", "shard-0", "shard-1")
                            if os.path.isdir(os.path.join(spool, d))]

                # What survived: start-up recovery, a clean stop, then read it.
                rec = Server(shards=2, spool=spool, port=port, extra_toml=extra_toml)
                servers.append(rec)
                rec.start()
                rc = rec.stop()
                self.assertEqual(rc, 0, "exit status %s after recovery\n%s" %
                                 (rc, rec.log()[-3000:]))
                recovered = recovery_summary(rec.log())
                stored, problems = read_spool(spool)
                present, missing, bad, examples = compare(acked, stored)
                per_cycle.append((missing, bad))
                st = fs.status()
                print("[%s] cycle %d: kill -9 after %.2fs, %d sent, %d acknowledged; "
                      "all %d acknowledged so far: %d present, %d missing, %d mismatched; "
                      "%d messages in the spool; recovery kept %d, cut %d tails, set %d aside "
                      "(dropfs: fdatasync %d, fsync %d, fsyncdir %d)%s%s" %
                      (name, cycle, delay, load.sent, len(load.acked), len(acked), present,
                       missing, bad, len(stored), recovered["kept"], recovered["tails_cut"],
                       recovered["corrupt"], st.get("fdatasync", 0), st.get("fsync", 0),
                       st.get("fsyncdir", 0),
                       "" if len(survived) == 3 else
                       "\n    after the cut, before recovery: %s" % (
                           "the spool directory itself is gone" if "" not in survived
                           else "shard directories left: %s" % (survived[1:] or "none")),
                       "".join("\n    " + e for e in examples + problems)), flush=True)
            print("[%s] %d cycles in %.1fs" % (name, cycles, time.monotonic() - t0), flush=True)
            self.assertGreater(len(acked), 0, "no message was acknowledged at all")
            self.spilled = count_spilled(spool)
            return len(acked), per_cycle, (present, missing, bad), problems
        finally:
            for s in servers:
                s.__exit__()
                shutil.rmtree(s.dir, ignore_errors=True)   # its config and log
            fs.unmount()

    def assert_no_losses(self, name, flags, cycles, create_spool, extra_toml=""):
        total, per_cycle, (present, missing, bad), problems = \
            self.run_cycles(name, flags, cycles, create_spool, extra_toml)
        lost = [(i, m, b) for i, (m, b) in enumerate(per_cycle) if m or b]
        if lost:
            self.fail("acknowledged mail lost after a power cut (seed %d): %s" % (
                self.seed, "; ".join("cycle %d: %d missing, %d mismatched" % x for x in lost)))
        self.assertEqual(present, total)
        self.assertEqual(problems, [], "ringmx-spool reported problems after recovery")

    def assert_losses(self, name, flags, cycles):
        total, _, (present, missing, bad), _ = self.run_cycles(name, flags, cycles,
                                                               "with shards")
        self.assertGreater(missing + bad, 0,
                           "the checker saw no loss with %s: it could not catch a missing "
                           "sync" % " ".join(flags))

    # (a) The spool directory exists (made and synced beforehand).
    def test_a_normal(self):
        self.assert_no_losses("normal", [], 4, True)

    # (b) Without file syncs acknowledged data is lost: the checker must see it.
    def test_b_ignore_fsync_reports_losses(self):
        self.assert_losses("ignore_fsync", ["--ignore-fsync"], 2)

    # (c) Without directory syncs a new segment's name is not durable, and
    # with it every message in it. (The spool and shard directories are made
    # durable beforehand in (b) and (c), so only ringmx's syncs are tested.)
    def test_c_ignore_dirsync_reports_losses(self):
        self.assert_losses("ignore_dirsync", ["--ignore-dirsync"], 2)

    # (d) ringmx creates the spool directory and its parents on the mount.
    def test_d_creates_spool_dir(self):
        self.assert_no_losses("creates_dir", [], 4, False)

    # (e) Torn appends: a cut turns unsynced appends into zeros. Only
    # unacknowledged records may be damaged; recovery sets those aside.
    def test_e_torn(self):
        if os.environ.get("RINGMX_POWERCUT_TORN", "1") == "0":
            self.skipTest("RINGMX_POWERCUT_TORN=0")
        self.assert_no_losses("torn", ["--torn"], 3, True)

    # (f) Bodies past the body memory budget stream to files of their own
    # (written as ID.tmp, sealed, renamed to ID.msg, directory synced).
    def test_f_spilled_bodies(self):
        self.assert_no_losses("spill", [], 3, True,
                              "[limits]\nmax_message_size = 16384\n"
                              "body_memory_per_shard = 16384\n")
        print("[spill] %d spilled messages in the spool" % self.spilled, flush=True)
        self.assertGreater(self.spilled, 0, "nothing spilled: the case proves nothing")

    # (g) With delivery: ringmx relays to smtp-sink while it takes mail, so
    # segments are removed (with their journals) as their messages are
    # delivered. After the cuts, a last run drains the queue: every message
    # acknowledged must have reached the sink at least once.
    def test_g_delivery(self):
        name = "delivery"
        if self.only is not None and name not in self.only:
            self.skipTest("not in RINGMX_POWERCUT_CASES")
        from test_delivery_recovery import Sink, queue_depth
        rng = random.Random("%d-%s" % (self.seed, name))
        sink = Sink().start()
        fs = DropFs([]).mount()
        servers = []
        # Short command and data timeouts: a connection the sink accepted
        # late (its backlog full while the crashes' load hits it) holds no
        # message for minutes.
        extra = ('\n[delivery]\nretry_min_ms = 200\nretry_max_ms = 400\n'
                 'command_timeout_ms = 5000\ndata_timeout_ms = 5000\n'
                 '[[route]]\nname = "sink"\ndomains = ["example.org"]\n'
                 'destination = "smtp://127.0.0.1:%d"\n' % sink.port)
        try:
            spool = os.path.join(fs.mnt, "spool")
            os.mkdir(spool)
            sync_dir(fs.mnt)
            port = free_port()
            acked = []
            for cycle in range(3):
                srv = Server(shards=2, spool=spool, port=port, extra_toml=extra,
                             spool_toml="segment_bytes = 65536\n")
                servers.append(srv)
                srv.start()
                load, delay = self.load_then_kill(srv, port, "%s-c%d" % (name, cycle), rng,
                                                  (1024, 8 * 1024))
                self.assertEqual(load.errors, [], "protocol errors in cycle %d" % cycle)
                fs.cut()
                acked.extend(load.acked)
                print("[%s] cycle %d: kill -9 and power cut after %.2fs, %d acknowledged" %
                      (name, cycle, delay, len(load.acked)), flush=True)
            last = Server(shards=2, spool=spool, port=port, extra_toml=extra,
                          spool_toml="segment_bytes = 65536\n")
            servers.append(last)
            last.start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and queue_depth(last) != 0:
                time.sleep(0.2)
            if queue_depth(last) != 0:
                from harness import http_get
                _, q = http_get(last.admin_port, "/queue")
                notes = [l for l in last.log().splitlines()
                         if "deferred" in l or "failed" in l or "error" in l][-20:]
                self.fail("the queue did not drain (seed %d); still queued:\n%s\n%s" %
                          (self.seed, q.decode()[:3000], "\n".join(notes)))
            self.assertEqual(last.stop(), 0)
            # Delivered segments are gone: what is left is at most each shard's open one.
            left = [f for _r, _d, fs_ in os.walk(spool) for f in fs_ if f.endswith(".msg")]
            self.assertLessEqual(len(left), 2, left)
            at_sink = sink.message_ids()
            tags = {tag for (_q, _sha, _len, tag) in acked}
            delivered = {k.split("@")[0] for k in at_sink}
            missing = sorted(t for t in tags if t not in delivered)
            dups = sum(v - 1 for v in at_sink.values() if v > 1)
            print("[%s] %d acknowledged, %d missing at the sink, %d duplicates" %
                  (name, len(tags), len(missing), dups), flush=True)
            self.assertGreater(len(tags), 0)
            self.assertEqual(missing[:5], [], "acknowledged mail lost (seed %d)" % self.seed)
        finally:
            for s in servers:
                s.__exit__()
                shutil.rmtree(s.dir, ignore_errors=True)
            fs.unmount()
            sink.cleanup()


if __name__ == "__main__":
    why = dropfs.skip_reason()
    if why:
        print("skipped: " + why, file=sys.stderr)
        sys.exit(77)
    main()
