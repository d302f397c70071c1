"""tools/ringmxctl against the real daemon and Postfix's smtp-sink as the
relay: the delivery queue listed, summarised and shown (text and --json)
while the relay is down; hold keeps a message back (across a restart too),
delete drops one for good, retry and flush send at once, release lets a held
one go; the same commands on a stopped spool act through the journal and the
next start honours them. Exits 77 only when smtp-sink is missing."""

import json
import os
import subprocess
import sys
import time
import unittest

from harness import free_port, http_get, main
from test_delivery_recovery import SMTP_SINK, Sink, queue_depth, send_tagged, server, wait_for

CTL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "ringmxctl")


def ctl(srv, *args, check=True):
    p = subprocess.run([sys.executable, CTL, "--config", srv.config] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("ringmxctl %s: %d\n%s%s" % (" ".join(args), p.returncode,
                                                          p.stdout.decode(), p.stderr.decode()))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def listed(srv):
    _, out, _ = ctl(srv, "queue", "list", "--json")
    return {m["queue_id"]: m for m in map(json.loads, out.splitlines())}


def by_subject(srv, msgs):
    """queue id of each message, from the spool (its Message-ID tag)."""
    out = {}
    for qid, (fields, message) in srv.spool_records().items():
        for line in message.split(b"\r\n"):
            if line.startswith(b"Message-ID: <"):
                out[line[13:-1].decode()] = qid
    return out


class RingmxCtl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(SMTP_SINK) or os.geteuid() != 0:
            print("SKIP: needs root and smtp-sink (Debian's postfix package)", file=sys.stderr)
            sys.exit(77)

    def check_pages(self, srv, want):
        """GET /queue in pages: queue-id order across the shards, a {"next"} line while more
        follow, every message once; ringmxctl pages through the same; bad queries get 400."""
        got, after, pages = [], None, 0
        while pages <= len(want):  # one message a page, and a last one without "next"
            status, body = http_get(srv.admin_port, "/queue?limit=1" + (
                "&after=" + after if after else ""))
            self.assertEqual(status, 200, body)
            lines = [json.loads(x) for x in body.decode().splitlines()]
            pages += 1
            msgs = [m for m in lines if "next" not in m]
            nxt = [m["next"] for m in lines if "next" in m]
            self.assertLessEqual(len(msgs), 1)
            got += [m["queue_id"] for m in msgs]
            if not nxt:
                break
            self.assertEqual(lines[-1], {"next": msgs[-1]["queue_id"]})  # last, the last id
            after = nxt[0]
        self.assertEqual(got, want)
        status, body = http_get(srv.admin_port, "/queue?after=" + want[0] + "&limit=10000")
        self.assertEqual([json.loads(x)["queue_id"] for x in body.decode().splitlines()], want[1:])
        _, out, _ = ctl(srv, "queue", "list", "--json", "--page", "1")
        self.assertEqual([json.loads(x)["queue_id"] for x in out.splitlines()], want)
        for bad in ("limit=0", "limit=10001", "limit=x", "limit=", "after=a/b", "after=%2e",
                    "color=red", "limit=5&sort=size"):
            status, body = http_get(srv.admin_port, "/queue?" + bad)
            self.assertEqual(status, 400, bad)
            self.assertIn(b"error", body)
        self.assertEqual(http_get(srv.admin_port, "/queue/" + want[0] + "?limit=1")[0], 400)

    def test_live_queue(self):
        sink = Sink()  # down for now
        srv = server(free_port(), sink.port, shards=2, segment_bytes=1 << 20).start()
        try:
            tags = ["ctl-a@t", "ctl-b@t", "ctl-c@t"]
            send_tagged(srv.port, tags)
            wait_for(lambda: srv.log().count("result=deferred") >= 3, what="three deferrals")
            ids = by_subject(srv, tags)
            q = listed(srv)
            self.assertEqual(set(q), set(ids.values()))
            m = q[ids["ctl-a@t"]]
            self.assertEqual(m["sender"], "a@example.net")
            self.assertEqual(m["recipients"][0]["address"], "sink@example.org")
            self.assertEqual(m["recipients"][0]["state"], "pending")
            self.assertGreaterEqual(m["recipients"][0]["attempts"], 1)
            self.assertIn("4.4.1", m["recipients"][0]["reply"])  # connection refused
            _, out, _ = ctl(srv, "queue", "summary", "--json")
            s = json.loads(out)
            self.assertEqual(s["messages"], 3)
            self.assertEqual(s["domains"], {"example.org": 3})
            self.assertEqual(s["deferred"], 3)
            _, text, _ = ctl(srv, "queue", "list")
            self.assertIn("-- 3 message(s)", text)
            _, out, _ = ctl(srv, "queue", "show", ids["ctl-b@t"], "--json")
            self.assertEqual(json.loads(out)["queue_id"], ids["ctl-b@t"])
            self.check_pages(srv, sorted(ids.values()))
            self.assertEqual(ctl(srv, "queue", "show", "NOSUCHMESSAGE0001", check=False)[0], 1)

            ctl(srv, "queue", "hold", ids["ctl-a@t"])
            ctl(srv, "queue", "delete", ids["ctl-b@t"])
            self.assertTrue(listed(srv)[ids["ctl-a@t"]]["held"])
            self.assertNotIn(ids["ctl-b@t"], listed(srv))
            sink.start()
            ctl(srv, "queue", "flush")  # at once, not after the back-off
            wait_for(lambda: sink.message_ids()["ctl-c@t"], what="c delivered")
            time.sleep(1.0)
            got = sink.message_ids()
            self.assertEqual(got["ctl-a@t"], 0)  # held
            self.assertEqual(got["ctl-b@t"], 0)  # deleted
            self.assertEqual(set(listed(srv)), {ids["ctl-a@t"]})
            # Held across a restart.
            self.assertEqual(srv.stop(), 0)
            srv = server(srv.port, sink.port, spool=srv.spool, shards=2,
                         segment_bytes=1 << 20).start()
            wait_for(lambda: queue_depth(srv) == 1, what="the held message reloaded")
            time.sleep(0.8)
            self.assertEqual(sink.message_ids()["ctl-a@t"], 0)
            self.assertTrue(listed(srv)[ids["ctl-a@t"]]["held"])
            ctl(srv, "queue", "release", ids["ctl-a@t"])
            wait_for(lambda: sink.message_ids()["ctl-a@t"], what="a released and delivered")
            wait_for(lambda: queue_depth(srv) == 0, what="an empty queue")
            self.assertEqual(sink.message_ids()["ctl-b@t"], 0)
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.__exit__()
            sink.cleanup()

    def test_stopped_spool(self):
        sink = Sink()
        srv = server(free_port(), sink.port, shards=1, segment_bytes=1 << 20).start()
        try:
            tags = ["off-a@t", "off-b@t", "off-c@t"]
            send_tagged(srv.port, tags)
            wait_for(lambda: srv.log().count("result=deferred") >= 3, what="deferrals")
            ids = by_subject(srv, tags)
            self.assertEqual(srv.stop(), 0)
            # No ringmx on the spool: ringmxctl reads it itself.
            q = listed(srv)
            self.assertEqual(set(q), set(ids.values()))
            _, out, _ = ctl(srv, "queue", "summary", "--json")
            self.assertEqual(json.loads(out)["messages"], 3)
            ctl(srv, "queue", "hold", ids["off-a@t"])
            ctl(srv, "queue", "delete", ids["off-b@t"])
            self.assertTrue(listed(srv)[ids["off-a@t"]]["held"])
            self.assertNotIn(ids["off-b@t"], listed(srv))
            self.assertEqual(ctl(srv, "queue", "retry", "NOSUCHMESSAGE0001", check=False)[0], 1)
            sink.start()
            srv = server(srv.port, sink.port, spool=srv.spool, shards=1,
                         segment_bytes=1 << 20).start()
            wait_for(lambda: sink.message_ids()["off-c@t"], what="c delivered")
            time.sleep(0.8)
            got = sink.message_ids()
            self.assertEqual((got["off-a@t"], got["off-b@t"]), (0, 0))
            ctl(srv, "queue", "release", ids["off-a@t"])  # live now
            wait_for(lambda: sink.message_ids()["off-a@t"], what="a delivered")
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.__exit__()
            sink.cleanup()


if __name__ == "__main__":
    main()
