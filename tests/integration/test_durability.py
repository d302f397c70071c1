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
the bytes sent; no `.tmp` is left; nothing was set aside in `corrupt/`.
Unacknowledged messages may or may not be there (duplicates, never losses).

RINGMX_SEED=N repeats a run; the seed in use is printed."""

import base64
import hashlib
import os
import random
import re
import socket
import threading
import time
import unittest

from harness import Client, Server, dot_stuff, main, parse_spool_records

ROUNDS = 5
THREADS = 16
MAX_MESSAGES_PER_THREAD_ROUND = 400   # count bound of each load loop
MAX_ROUND_SECONDS = 8.0               # time bound of each load loop
KILL_AFTER = (0.2, 2.5)               # seconds of load before SIGKILL, uniform
QUICK_KILL = (0.2, 0.5)               # one round (not the last) dies this soon: a crash
                                      # loop, with the restart in the same wall-clock second

QID_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-V]{17})$")


class Conn(Client):
    """harness.Client whose reply() gives (code, last line), as this test reads it."""

    def reply(self):
        code, lines = Client.reply(self)
        return code, lines[-1]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def make_message(rng, tag):
    """A 2-20 KiB message, unique by its Message-ID and random body, with
    lines that need dot-stuffing."""
    size = rng.randint(2 * 1024, 20 * 1024)
    head = ("From: load@example.net\r\nTo: sink@example.org\r\nSubject: durability %s\r\n"
            "Message-ID: <%s@durability.test>\r\n\r\n" % (tag, tag)).encode()
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


class Load:
    """One round of load against one server instance."""

    def __init__(self, port, round_no, seed):
        self.port = port
        self.round_no = round_no
        self.seed = seed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []          # (qid, sha256 hex, length, tag)
        self.sent = 0            # messages whose final dot went out
        self.errors = []         # protocol surprises (not connection loss)

    def run_thread(self, t):
        rng = random.Random("%d-%d-%d" % (self.seed, self.round_no, t))
        deadline = time.monotonic() + MAX_ROUND_SECONDS
        n = 0
        while not self.stop.is_set() and n < MAX_MESSAGES_PER_THREAD_ROUND \
                and time.monotonic() < deadline:
            try:
                c = Conn(self.port)
            except OSError:
                time.sleep(0.02)
                continue
            try:
                code, text = c.reply()
                if code != 220:
                    self.note("greeting %d %s" % (code, text))
                    continue
                c.send(b"EHLO t%d.durability.test\r\n" % t)
                if c.reply()[0] != 250:
                    continue
                for _ in range(rng.randint(1, 4)):
                    if self.stop.is_set() or n >= MAX_MESSAGES_PER_THREAD_ROUND:
                        break
                    tag = "r%d-t%d-n%d-%d" % (self.round_no, t, n, rng.getrandbits(32))
                    msg = make_message(rng, tag)
                    n += 1
                    env = b"MAIL FROM:<load@example.net>\r\nRCPT TO:<sink@example.org>\r\nDATA\r\n"
                    if rng.random() < 0.5:
                        c.send(env)   # pipelined: MAIL, RCPT and DATA in one write
                        codes = [c.reply()[0] for _ in range(3)]
                    else:
                        codes = []
                        for line in env.split(b"\r\n")[:3]:
                            c.send(line + b"\r\n")
                            codes.append(c.reply()[0])
                    if codes != [250, 250, 354]:
                        self.note("envelope replies %s" % codes)
                        break
                    c.send(dot_stuff(msg) + b".\r\n")
                    with self.lock:
                        self.sent += 1
                    code, text = c.reply()
                    if code == 250:
                        m = QID_RE.match(text)
                        if not m:
                            self.note("250 without a queue id: %r" % text)
                            continue
                        with self.lock:
                            self.acked.append((m.group(1), hashlib.sha256(msg).hexdigest(),
                                               len(msg), tag))
                    else:
                        self.note("end of data %d %s" % (code, text))
                        break
                c.send(b"QUIT\r\n")
                c.reply()
            except (OSError, ConnectionError, ValueError):
                pass   # the server was killed under us, or is gone
            finally:
                c.close()

    def note(self, what):
        # Only count as an error while the server is still supposed to be alive.
        if not self.stop.is_set():
            with self.lock:
                self.errors.append(what)


class Durability(unittest.TestCase):
    def test_kill9_loses_no_acknowledged_message(self):
        seed = int(os.environ.get("RINGMX_SEED") or random.SystemRandom().randrange(1 << 31))
        print("\ndurability seed %d (RINGMX_SEED=%d to repeat)" % (seed, seed), flush=True)
        rng = random.Random(seed)
        quick_round = rng.randrange(ROUNDS - 1)
        first = Server(shards=2)
        spool, port = first.spool, first.port
        acked = []
        sent = 0
        servers = []
        t_start = time.monotonic()
        try:
            for round_no in range(ROUNDS):
                srv = first if round_no == 0 else Server(shards=2, spool=spool, port=port)
                servers.append(srv)
                if round_no == quick_round:
                    # Start just after the wall clock turns a second, so this
                    # run and the restart after it share one second of time.
                    time.sleep(1.02 - time.time() % 1)
                srv.start()
                load = Load(port, round_no, seed)
                threads = [threading.Thread(target=load.run_thread, args=(t,), daemon=True)
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
            last = Server(shards=2, spool=spool, port=port)
            servers.append(last)
            last.start()
            rc = last.stop()
            self.assertEqual(rc, 0, "exit status %s\n%s" % (rc, last.log()))
            recovery = re.findall(r"event=spool_recovered .*", last.log())
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


if __name__ == "__main__":
    main()
