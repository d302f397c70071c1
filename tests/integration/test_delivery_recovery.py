"""Delivery's journal against a real relay, Postfix's smtp-sink (each
message it takes dumped to a file of its own): segments whose every message
is done are removed, so disk use stays bounded while mail flows; a restart
queues again what was not yet delivered (held while the relay was down) and
never delivers again what was; kill -9 at random moments under load with the
relay up loses no acknowledged message (each arrives at least once; the
duplicates a crash may cause are counted and reported). Exits 77 only when
smtp-sink (Debian's postfix package) is missing."""

import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import wait_for as _wait_for, AckedLoad, Client, Server, free_port, http_get, main, metric, transaction

SMTP_SINK = "/usr/sbin/smtp-sink"
WAIT = 60  # seconds for a backlog to drain


def toml(port, segment_bytes=8192, delivery=""):
    return ('\n[delivery]\nretry_min_ms = 200\nretry_max_ms = 400\nidle_timeout_ms = 1000\n' +
            delivery + '\n[[route]]\nname = "sink"\ndomains = ["example.org"]\n'
            'destination = "smtp://127.0.0.1:%d"\n' % port,
            'segment_bytes = %d\n' % segment_bytes)


def server(port, sink_port, spool=None, shards=2, segment_bytes=8192, delivery=""):
    extra, spool_toml = toml(sink_port, segment_bytes, delivery)
    return Server(extra_toml=extra, spool_toml=spool_toml, shards=shards, spool=spool, port=port)


def wait_for(pred, timeout=WAIT, what="condition"):
    return _wait_for(pred, timeout, what)


class Sink:
    """smtp-sink on 127.0.0.1:port, every message dumped to DIR/NN.RANDOM."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="ringmx-sink-", dir="/var/spool")
        shutil.chown(self.dir, "nobody", "nogroup")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-d", self.dir + "/%M.",
                                      "127.0.0.1:%d" % self.port, "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                c = Client(self.port, timeout=2)
                c.reply()
                c.close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("smtp-sink did not listen on %d" % self.port)
                time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def message_ids(self):
        """Counter of Message-ID values over every dumped message."""
        out = collections.Counter()
        for name in os.listdir(self.dir):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for m in re.finditer(rb"(?im)^Message-ID: <([^>]+)>", data):
                out[m.group(1).decode()] += 1
        return out


def oldest_age(srv):
    status, body = http_get(srv.admin_port, "/metrics")
    return metric(body.decode(), "ringmx_queue_oldest_message_age_seconds")


def queue_depth(srv):
    status, body = http_get(srv.admin_port, "/metrics")
    return metric(body.decode(), "ringmx_queue_depth")



def spool_files(spool, suffix):
    out = []
    for root, dirs, files in os.walk(spool):
        if "corrupt" in root:
            continue
        out += [os.path.join(root, f) for f in files if f.endswith(suffix)]
    return out


def send_tagged(port, tags, rcpt="sink@example.org"):
    c = Client(port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO recovery.test")[0] == 250
    for tag in tags:
        msg = ("From: a@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\n\r\n"
               "body of %s\r\n" % (rcpt, tag, tag, tag)).encode() + b"x" * 900 + b"\r\n"
        code, text = transaction(c, "a@example.net", [rcpt], msg)
        assert code == 250, text
    c.cmd("QUIT")
    c.close()


class DeliveryRecovery(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(SMTP_SINK) or os.geteuid() != 0:
            print("SKIP: needs root and smtp-sink (Debian's postfix package)", file=sys.stderr)
            sys.exit(77)

    def test_segments_are_removed_once_delivered(self):
        sink = Sink().start()
        srv = server(free_port(), sink.port).start()
        try:
            tags = ["bounded-%d@recovery.test" % i for i in range(300)]
            threads = [threading.Thread(target=send_tagged, args=(srv.port, tags[i::4]))
                       for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            got = wait_for(lambda: (lambda ids: ids if all(ids[t] for t in tags) else None)(
                sink.message_ids()), what="300 messages at the sink")
            self.assertEqual(sum(got[t] for t in tags), 300)  # each once
            wait_for(lambda: queue_depth(srv) == 0, what="an empty queue")
            # 300 messages of ~1.3 KiB went through 8 KiB segments: every
            # closed one is gone; what is left is each shard's open segment.
            wait_for(lambda: len(spool_files(srv.spool, ".msg")) <= 2, what="segments removed")
            status, body = http_get(srv.admin_port, "/metrics")
            self.assertGreaterEqual(metric(body.decode(), "ringmx_spool_segments_removed_total"),
                                    20)
            self.assertLess(metric(body.decode(), "ringmx_spool_bytes"), 2 * 8192 + 4096)
            self.assertEqual(srv.stop(), 0)
            # A restart finds everything done: the open segments go too.
            srv2 = server(srv.port, sink.port, spool=srv.spool).start()
            wait_for(lambda: "event=delivery_recovered" in srv2.log(), what="the scan")
            self.assertEqual(spool_files(srv.spool, ".msg"), [])
            self.assertEqual(spool_files(srv.spool, ".done"), [])
            self.assertEqual(srv2.stop(), 0)
            self.assertEqual(sum(sink.message_ids()[t] for t in tags), 300)
        finally:
            srv.__exit__()
            sink.cleanup()

    def test_restart_queues_again_and_never_delivers_twice(self):
        sink = Sink()  # not started: the relay is down
        srv = server(free_port(), sink.port, segment_bytes=1 << 20).start()
        srv2 = srv3 = None
        try:
            tags = ["held-%d@recovery.test" % i for i in range(10)]
            send_tagged(srv.port, tags[:5])
            wait_for(lambda: srv.log().count("result=deferred") >= 5, what="deferrals")
            self.assertEqual(queue_depth(srv), 5)
            self.assertEqual(srv.stop(), 0)  # held mail, five messages, not delivered
            sink.start()
            srv2 = server(srv.port, sink.port, spool=srv.spool, segment_bytes=1 << 20).start()
            self.assertRegex(srv2.log() + srv2.log(), r"event=delivery_recovered .*pending=\d")
            send_tagged(srv2.port, tags[5:])
            wait_for(lambda: all(sink.message_ids()[t] for t in tags), what="all ten")
            wait_for(lambda: queue_depth(srv2) == 0, what="an empty queue")
            self.assertEqual(srv2.stop(), 0)
            srv3 = server(srv.port, sink.port, spool=srv.spool, segment_bytes=1 << 20).start()
            wait_for(lambda: "event=delivery_recovered" in srv3.log(), what="the scan")
            time.sleep(1.0)  # anything queued again would be delivered by now
            self.assertRegex(srv3.log(), r"event=delivery_recovered .*pending=0 ")
            self.assertEqual(srv3.stop(), 0)
            ids = sink.message_ids()
            self.assertEqual({t: ids[t] for t in tags}, {t: 1 for t in tags})
            self.assertEqual(spool_files(srv.spool, ".msg"), [])
        finally:
            for s in (srv, srv2, srv3):
                if s:
                    s.__exit__()
            sink.cleanup()

    def test_back_pressure_while_the_relay_is_down(self):
        sink = Sink()  # down
        srv = server(free_port(), sink.port, shards=1, delivery="max_queue_messages = 5").start()
        srv2 = None
        try:
            tags = ["bp-%d@recovery.test" % i for i in range(5)]
            send_tagged(srv.port, tags)
            self.assertEqual(queue_depth(srv), 5)
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO bp.test")
            code, lines = c.cmd("MAIL FROM:<a@example.net>")
            self.assertEqual(code, 452)
            self.assertIn("4.3.1", lines[-1])
            c.cmd("QUIT")
            status, body = http_get(srv.admin_port, "/metrics")
            self.assertEqual(metric(body.decode(), "ringmx_queue_full_refusals_total"), 1)
            self.assertEqual(srv.stop(), 0)
            # Far over (a restart with a smaller limit finds 5 >= 2 x 2):
            # refused at connect.
            srv2 = server(srv.port, sink.port, spool=srv.spool, shards=1,
                          delivery="max_queue_messages = 2").start()
            wait_for(lambda: queue_depth(srv2) == 5, what="the queue reloaded")
            # The oldest message's age comes from its arrival, across the restart.
            age = wait_for(lambda: (lambda a: a if a and a >= 1 else None)(oldest_age(srv2)),
                           what="the oldest message a second old")
            self.assertLess(age, 60)
            c = Client(srv2.port)
            code, lines = c.reply()
            self.assertEqual(code, 421)
            self.assertIn("4.3.2", lines[-1])
            c.close()
            # The relay comes back: the queue drains and acceptance resumes by itself.
            sink.start()
            wait_for(lambda: queue_depth(srv2) == 0, what="the queue drained")
            self.assertEqual(oldest_age(srv2), 0)
            send_tagged(srv2.port, ["bp-after@recovery.test"])
            wait_for(lambda: sink.message_ids()["bp-after@recovery.test"], what="the new one")
            ids = sink.message_ids()
            self.assertEqual({t: ids[t] for t in tags}, {t: 1 for t in tags})
            self.assertEqual(srv2.stop(), 0)
        finally:
            for s in (srv, srv2):
                if s:
                    s.__exit__()
            sink.cleanup()

    def test_reload_moves_a_route_to_a_new_destination(self):
        first, second = Sink().start(), Sink().start()
        srv = server(free_port(), first.port, shards=1).start()
        try:
            send_tagged(srv.port, ["before@reload.test"])
            wait_for(lambda: first.message_ids()["before@reload.test"], what="the first sink")
            with open(srv.config) as f:
                text = f.read()
            with open(srv.config, "w") as f:
                f.write(text.replace("127.0.0.1:%d" % first.port, "127.0.0.1:%d" % second.port))
            srv.send_signal(signal.SIGHUP)
            wait_for(lambda: "config_reloaded" in srv.log(), what="the reload")
            send_tagged(srv.port, ["after@reload.test"])
            wait_for(lambda: second.message_ids()["after@reload.test"], what="the second sink")
            self.assertEqual(first.message_ids()["after@reload.test"], 0)
            time.sleep(1.5)  # the old pool's idle connection closes, and the pool with it
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.__exit__()
            first.cleanup()
            second.cleanup()

    def test_kill9_under_load_loses_nothing(self):
        sink = Sink().start()
        port = free_port()
        first = server(port, sink.port)
        spool = first.spool
        servers = [first]
        rng = random.Random(os.environ.get("RINGMX_TEST_SEED", "delivery-kill9"))
        acked = []
        try:
            for round_no in range(4):
                srv = first if round_no == 0 else server(port, sink.port, spool=spool)
                if round_no:
                    servers.append(srv)
                srv.start()
                load = AckedLoad(port, "kill9-r%d" % round_no, 7, 3000, 10, (512, 4096), (1, 5))
                threads = [threading.Thread(target=load.run, args=(t,), daemon=True)
                           for t in range(4)]
                for t in threads:
                    t.start()
                delay = rng.uniform(0.2, 1.5)
                time.sleep(delay)
                srv.kill9()
                load.stop.set()
                for t in threads:
                    t.join(15)
                self.assertEqual(load.errors, [])
                print("round %d: SIGKILL after %.2fs, %d acknowledged" %
                      (round_no, delay, len(load.acked)), flush=True)
                acked.extend(load.acked)
            last = server(port, sink.port, spool=spool)
            servers.append(last)
            last.start()
            want = {tag for (_qid, _sha, _len, tag) in acked}
            wait_for(lambda: want <= {k.split("@")[0] for k in sink.message_ids()},
                     timeout=120, what="every acknowledged message at the sink")
            wait_for(lambda: queue_depth(last) == 0, what="an empty queue")
            self.assertEqual(last.stop(), 0)
            ids = collections.Counter({k.split("@")[0]: v for k, v in sink.message_ids().items()})
            missing = [t for t in want if ids[t] == 0]
            duplicates = sum(ids[t] - 1 for t in want if ids[t] > 1)
            print("acknowledged %d, delivered all of them; duplicates from the crashes: %d" %
                  (len(want), duplicates), flush=True)
            self.assertEqual(missing, [])
            self.assertGreater(len(want), 0)
        finally:
            for s in servers:
                s.__exit__()
            sink.cleanup()


if __name__ == "__main__":
    main()
