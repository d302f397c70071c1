"""kill -9 under load: every message a client heard 250 for survives, byte-exact.

Sixteen client threads send 2-20 KiB messages with distinct bodies (some with
the commands pipelined), and record each queue id they got a 250 for together
with a digest of the exact message they sent. At a seeded random moment the
server gets SIGKILL; it is restarted on the same spool and port, and that is
repeated for several rounds. One round is a crash loop: it dies within half a
second and the restart falls in the same wall-clock second (queue ids must
stay unique across restarts). A last start runs the start-up recovery, SIGTERM
stops it, then the spool is checked: every acknowledged queue id is a `.msg`
that parses and whose message part is our Received header followed by exactly
the bytes sent; no `.tmp` is left (the body budget is small, so bodies also
stream to files of their own and crashes leave some half-written); nothing
was set aside in `corrupt/`.
Unacknowledged messages may or may not be there (duplicates, never losses).

Two further cases go through the real binary without load: a record whose
length reached the disk and whose data did not (its message zeroed after the
fact, as a power cut can leave it) is found by `tools/ringmx-spool check`,
cut off at start-up, saved in corrupt/ and named in the log; and, under
strace, start-up fsyncs every directory the spool depends on and syncs the
truncation it makes.

RINGMX_SEED=N repeats a run; the seed in use is printed."""

import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (AckedLoad, Client, Server, main, parse_record, parse_spool_records,
                     queue_id, transaction)

SPILL_TOML = "[limits]\nbody_memory_per_shard = 32768\n"
ROUNDS = 5
THREADS = 16
MAX_MESSAGES_PER_THREAD_ROUND = 400   # count bound of each load loop
MAX_ROUND_SECONDS = 8.0               # time bound of each load loop
KILL_AFTER = (0.2, 2.5)               # seconds of load before SIGKILL, uniform
QUICK_KILL = (0.2, 0.5)               # one round (not the last) dies this soon: a crash
                                      # loop, with the restart in the same wall-clock second

class Durability(unittest.TestCase):
    def test_kill9_loses_no_acknowledged_message(self):
        seed = int(os.environ.get("RINGMX_SEED") or random.SystemRandom().randrange(1 << 31))
        print("\ndurability seed %d (RINGMX_SEED=%d to repeat)" % (seed, seed), flush=True)
        rng = random.Random(seed)
        quick_round = rng.randrange(ROUNDS - 1)
        # A small body budget, so bodies also stream to their own files (and
        # a crash leaves some half-written ID.tmp for the recovery to remove).
        first = Server(shards=2, extra_toml=SPILL_TOML)
        spool, port = first.spool, first.port
        acked = []
        sent = 0
        servers = []
        t_start = time.monotonic()
        try:
            for round_no in range(ROUNDS):
                srv = first if round_no == 0 else Server(shards=2, spool=spool, port=port,
                                                          extra_toml=SPILL_TOML)
                servers.append(srv)
                if round_no == quick_round:
                    # Start just after the wall clock turns a second, so this
                    # run and the restart after it share one second of time.
                    time.sleep(1.02 - time.time() % 1)
                srv.start()
                load = AckedLoad(port, "durability-r%d" % round_no, seed,
                                 MAX_MESSAGES_PER_THREAD_ROUND, MAX_ROUND_SECONDS,
                                 (2 * 1024, 20 * 1024), (1, 4))
                threads = [threading.Thread(target=load.run, args=(t,), daemon=True)
                           for t in range(THREADS)]
                for th in threads:
                    th.start()
                delay = rng.uniform(*(QUICK_KILL if round_no == quick_round else KILL_AFTER))
                time.sleep(delay)
                alive = srv.proc.poll() is None
                srv.kill9()
                load.stop.set()
                for th in threads:
                    th.join(15)
                self.assertFalse(any(th.is_alive() for th in threads), "load threads hung")
                self.assertTrue(alive, "ringmx died before the kill\n%s" % srv.log())
                self.assertEqual(load.errors, [], "protocol errors in round %d" % round_no)
                print("round %d: SIGKILL after %.2fs, %d sent, %d acknowledged" %
                      (round_no, delay, load.sent, len(load.acked)), flush=True)
                acked.extend(load.acked)
                sent += load.sent

            # Start-up recovery on the spool the crashes left, then a clean stop.
            last = Server(shards=2, spool=spool, port=port, extra_toml=SPILL_TOML)
            servers.append(last)
            last.start()
            rc = last.stop()
            self.assertEqual(rc, 0, "exit status %s\n%s" % (rc, last.log()))
            recovery = re.findall(r"event=spool_recovered .*", last.log())
            # Half-written streamed bodies the restarts removed (each start
            # logs its own recovery).
            partial = sum(int(n) for s in servers
                          for n in re.findall(r"event=spool_recovered .*removed_partial=(\d+)",
                                              s.log()))
            print("streamed bodies left half-written by the crashes and removed: %d" % partial)
        finally:
            for s in servers:
                s.__exit__()

        # Which files are there.
        msgs, tmps, corrupt, others = {}, [], [], []
        for root, dirs, files in os.walk(spool):
            for name in files:
                path = os.path.join(root, name)
                if os.path.basename(root) == "corrupt" or "/corrupt/" in path:
                    corrupt.append(path)
                elif name.endswith(".tmp"):
                    tmps.append(path)
                elif name.endswith(".msg"):
                    # A file holds every message of one group commit.
                    with open(path, "rb") as f:
                        data = f.read()
                    try:
                        records = parse_spool_records(data)
                    except (AssertionError, ValueError, KeyError) as e:
                        corrupt.append("%s: does not parse: %s" % (path, e))
                        continue
                    for fields, stored in records:
                        qid = fields["queue-id"][0]
                        self.assertNotIn(qid, msgs, "%s stored twice" % qid)
                        msgs[qid] = (fields, stored)
                else:
                    others.append(path)
        print("totals: %d rounds, %d messages sent, %d acknowledged, %d stored messages found, "
              "%d .tmp, %d corrupt, in %.1fs" % (ROUNDS, sent, len(acked), len(msgs), len(tmps),
                                                 len(corrupt), time.monotonic() - t_start))
        for line in recovery:
            print("  last start: " + line.strip())
        self.assertGreater(len(acked), 0, "no message was acknowledged at all")
        self.assertEqual(tmps, [], "temporary files left in the spool")
        self.assertEqual(corrupt, [], "files moved to corrupt/ (a torn .msg)")

        # Every acknowledged message is there, complete, byte-exact; and one
        # queue id was never acknowledged for two different messages.
        by_qid = {}
        for qid, digest, length, tag in acked:
            by_qid.setdefault(qid, []).append(tag)
        reused = sorted((q, tags) for q, tags in by_qid.items() if len(tags) > 1)
        missing, bad = [], []
        for qid, digest, length, tag in acked:
            rec = msgs.get(qid)
            if rec is None:
                missing.append("%s (%s)" % (qid, tag))
                continue
            fields, stored = rec
            if fields.get("queue-id") != [qid]:
                bad.append("%s (%s): queue-id field %s" % (qid, tag, fields.get("queue-id")))
            tail = stored[-length:] if length <= len(stored) else b""
            if hashlib.sha256(tail).hexdigest() != digest:
                got = re.search(rb"Message-ID: <([^@>]*)@", stored)
                bad.append("%s (%s): the file holds another message (%s)" %
                           (qid, tag, got.group(1).decode() if got else "?"))
                continue
            header = stored[:len(stored) - length]
            if not header.startswith(b"Received: from ") or \
                    ("id %s" % qid).encode() not in header:
                bad.append("%s (%s): unexpected Received header %r" % (qid, tag, header[:200]))
        problems = []
        if reused:
            problems.append("%d queue ids acknowledged for more than one message, e.g. %s" %
                            (len(reused), "; ".join("%s: %s" % (q, ", ".join(t))
                                                    for q, t in reused[:3])))
        if missing:
            problems.append("%d acknowledged messages have no .msg file, e.g. %s" %
                            (len(missing), ", ".join(missing[:3])))
        if bad:
            problems.append("%d acknowledged messages are not stored as sent, e.g. %s" %
                            (len(bad), "; ".join(bad[:3])))
        if problems:
            self.fail("acknowledged mail lost or damaged (seed %d):\n  %s" %
                      (seed, "\n  ".join(problems)))

        # Whatever else survived (unacknowledged messages) parsed above too.


TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                    "ringmx-spool")


def send_messages(port, bodies):
    """One session, one message per body; returns the queue ids."""
    c = Client(port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO torn.test")[0] == 250
    qids = []
    for body in bodies:
        code, text = transaction(c, "s@example.net", ["r@example.org"], body)
        assert code == 250, text
        qids.append(queue_id(text))
    c.cmd("QUIT")
    return qids


def segments(spool):
    """Every .msg under spool/shard-N (not corrupt/), by path."""
    out = []
    for shard in sorted(os.listdir(spool)):
        d = os.path.join(spool, shard)
        if shard.startswith("shard-") and os.path.isdir(d):
            out += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".msg")]
    return out


class TornRecord(unittest.TestCase):
    def test_zeroed_record_is_found_cut_and_saved(self):
        body = b"Subject: torn\r\n\r\n" + b"".join(b"line %04d of the body\r\n" % i
                                                    for i in range(200))
        srv = Server(shards=1)
        try:
            srv.start()
            first, second = send_messages(srv.port, [body, body])
            self.assertEqual(srv.stop(), 0, srv.log())
            files = segments(srv.spool)
            self.assertEqual(len(files), 1, files)   # one shard, one open segment
            path = files[0]
            with open(path, "rb") as f:
                data = f.read()
            _, _, end1 = parse_record(data, 0)
            fields, message, end2 = parse_record(data, end1)
            self.assertEqual(end2, len(data))
            self.assertEqual(fields["queue-id"], [second])
            # The power cut: the second record's length is on disk, its
            # message is not (zeros); the trailer made it.
            start = data.index(b"\n\n", end1) + 2
            torn = data[:start] + bytes(len(message)) + data[start + len(message):]
            with open(path, "wb") as f:
                f.write(torn)
            name = os.path.basename(path)

            check = subprocess.run([TOOL, srv.spool, "check"], capture_output=True, text=True)
            self.assertEqual(check.returncode, 1, check.stdout + check.stderr)
            self.assertIn("%s: record 2 (offset %d): checksum mismatch" % (path, end1),
                          check.stderr)

            again = Server(shards=1, spool=srv.spool, port=srv.port)
            try:
                again.start()
                self.assertEqual(again.stop(), 0, again.log())
                log = again.log()
            finally:
                again.__exit__()
        finally:
            srv.__exit__()

        with open(path, "rb") as f:
            self.assertEqual(f.read(), data[:end1], "not cut back to the first record")
        saved = os.path.join(os.path.dirname(path), "corrupt", name + ".tail")
        with open(saved, "rb") as f:
            self.assertEqual(f.read(), torn[end1:], "the cut record was not saved")
        self.assertRegex(log, r"event=spool_recovered .*checksum_failures=1")
        warn = [l for l in log.splitlines() if "event=spool_recovery " in l]
        self.assertTrue(any(name in l and "record 2: checksum mismatch" in l and
                            "corrupt/%s.tail" % name in l for l in warn), "\n".join(warn) or log)
        check = subprocess.run([TOOL, srv.spool, "check"], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn("1 messages", check.stdout)
        self.assertNotIn(second, subprocess.run([TOOL, srv.spool, "list"], capture_output=True,
                                                text=True).stdout)


class StartupSyncs(unittest.TestCase):
    """What start-up makes durable, seen in the system calls it makes."""

    def test_directories_and_the_cut_are_synced(self):
        if not shutil.which("strace"):
            self.skipTest("strace is not installed")
        top = os.path.realpath(tempfile.mkdtemp(prefix="ringmx-it-"))
        spool = os.path.join(top, "fresh", "spool")
        # A segment of an earlier run whose last append was cut short, in a
        # shard directory that run created and, crashing, never synced.
        shard = os.path.join(top, "fresh", "spool", "shard-0")
        os.makedirs(shard)
        srv = Server(shards=1)
        srv.start()
        send_messages(srv.port, [b"Subject: x\r\n\r\nbody\r\n"])
        self.assertEqual(srv.stop(), 0, srv.log())
        srv.__exit__()
        (seg,) = segments(srv.spool)
        with open(seg, "rb") as f:
            whole = f.read()
        name = os.path.basename(seg)
        with open(os.path.join(shard, name), "wb") as f:
            f.write(whole + whole[:40])   # the unfinished second record
        trace = os.path.join(top, "strace.txt")
        traced = Server(shards=1, spool=spool)
        traced.wrapper = ["strace", "-f", "-y", "-qq", "-o", trace,
                          "-e", "trace=fsync,fdatasync,ftruncate"]
        try:
            traced.start()
            # The banner comes after recovery; stop ringmx itself (strace's child).
            with open("/proc/%d/task/%d/children" % (traced.proc.pid, traced.proc.pid)) as f:
                child = int(f.read().split()[0])
            os.kill(child, signal.SIGTERM)
            traced.proc.wait(30)
        finally:
            traced.__exit__()
        with open(trace) as f:
            calls = [re.sub(r"^\d+\s+", "", l.strip()) for l in f]
        synced = [m.group(1) for m in (re.match(r"fsync\(\d+<(.*)>\)", c) for c in calls) if m]
        for d in (top, os.path.join(top, "fresh"), spool, shard):
            self.assertIn(d, synced, "start-up did not fsync %s\n%s" % (d, "\n".join(calls)))
        seg_path = os.path.join(shard, name)
        cut = [i for i, c in enumerate(calls) if c.startswith("ftruncate(") and seg_path in c]
        self.assertEqual(len(cut), 1, "\n".join(calls))
        fd = re.match(r"ftruncate\((\d+)<", calls[cut[0]]).group(1)
        self.assertTrue(any(c.startswith("fsync(%s<%s>)" % (fd, seg_path)) or
                            c.startswith("fdatasync(%s<%s>)" % (fd, seg_path))
                            for c in calls[cut[0] + 1:]),
                        "the truncation was not synced\n%s" % "\n".join(calls))
        with open(seg_path, "rb") as f:
            self.assertEqual(f.read(), whole)


if __name__ == "__main__":
    main()
