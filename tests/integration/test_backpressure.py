"""Back-pressure, driven against the real binary: a client that never reads
its replies holds no more than max_output_buffer and is closed after
send_timeout_ms; a client that reads late loses nothing; a submission queue
far too small for the load defers work instead of failing."""

import os
import select
import signal
import socket
import threading
import time
import unittest

from harness import Client, Server, http_get, main, metric, queue_id, transaction, vm_rss_kib


def write_until_stuck(sock, total, deadline_s, stuck_s):
    """Writes `total` bytes of pipelined NOOPs without ever reading. Returns
    (bytes written, how it ended: 'done' | 'stuck' | 'closed', when)."""
    chunk = b"NOOP\r\n" * 10923  # 64 KiB
    sock.setblocking(False)
    sent = 0
    last_progress = time.monotonic()
    end = time.monotonic() + deadline_s
    view = memoryview(chunk)
    off = 0
    while sent < total and time.monotonic() < end:
        _, w, _ = select.select([], [sock], [], 0.1)
        if not w:
            if time.monotonic() - last_progress > stuck_s:
                return sent, "stuck", time.monotonic()
            continue
        try:
            n = sock.send(view[off:])
        except (BrokenPipeError, ConnectionResetError):
            return sent, "closed", time.monotonic()
        except BlockingIOError:
            continue
        sent += n
        off = (off + n) % len(chunk)
        last_progress = time.monotonic()
    return sent, "done", time.monotonic()


def server_closed(sock, timeout):
    """True when the peer closed (EOF or reset) within `timeout`; discards what
    is still buffered on the way."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(1 << 20):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def warm_baseline(srv):
    """One message through the server (allocator and spool warmed up), then
    its RSS in KiB: the baseline growth is measured from."""
    w = Client(srv.port)
    w.reply()
    w.cmd("EHLO warm.example")
    transaction(w, "a@example.com", ["b@example.org"], b"Subject: warm\r\n\r\nhi\r\n")
    w.cmd("QUIT")
    time.sleep(0.3)
    return vm_rss_kib(srv.proc.pid)


class PeakRss:
    """Samples a process's RSS in a thread from start() to finish()."""

    def __init__(self, pid, base):
        self.pid, self.peak = pid, base
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample)

    def sample(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, vm_rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.02)

    def start(self):
        self.thread.start()
        return self

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak


class NeverReads(unittest.TestCase):
    def test_output_is_bounded_and_the_connection_closed(self):
        send_timeout_s = 3
        srv = Server(shards=1, extra_toml="[limits]\nsend_timeout_ms = %d\n" % (send_timeout_s * 1000))
        with srv:
            base = warm_baseline(srv)

            c = Client(srv.port)
            c.reply()
            c.send(b"EHLO flood.example\r\n")
            rss = PeakRss(srv.proc.pid, base).start()
            started = time.monotonic()
            result = {}

            def flood():
                result["r"] = write_until_stuck(c.sock, 100 << 20, deadline_s=60, stuck_s=30)

            flooder = threading.Thread(target=flood)
            flooder.start()
            # While that client is stuck, another one is served as usual.
            time.sleep(1.0)
            o = Client(srv.port)
            self.assertEqual(o.reply()[0], 220)
            o.cmd("EHLO other.example")
            code, text = transaction(o, "x@example.com", ["y@example.org"],
                                     b"Subject: other\r\n\r\nserved\r\n")
            self.assertEqual(code, 250, text)
            o.cmd("QUIT")
            flooder.join(90)
            peak = rss.finish()
            sent, how, when = result["r"]
            print("flood: %d bytes written, ended %s after %.1f s; RSS %d -> peak %d KiB"
                  % (sent, how, when - started, base, peak))
            # The server stopped reading: far less than the 100 MB went in, and
            # it ended the connection once its output had been stuck for
            # send_timeout_ms (the client's writes then fail, or stall until
            # the reset, depending on what its buffers still held).
            self.assertLess(sent, 64 << 20)
            self.assertTrue(server_closed(c.sock, send_timeout_s + 10),
                            "the server kept a client that never reads")
            self.assertLess(time.monotonic() - started, 40)
            grown = peak - base
            # ASan's quarantine keeps freed blocks resident for a while.
            bound = 64 * 1024 if os.environ.get("RINGMX_SANITIZED") == "1" else 6 * 1024
            self.assertLess(grown, bound, "RSS grew by %d KiB for one non-reading client" % grown)
            status, body = http_get(srv.admin_port, "/metrics")
            self.assertEqual(status, 200)
            self.assertGreaterEqual(metric(body, "ringmx_send_timeouts_total"), 1)
            # Lines reach stderr through the logger thread: give it a moment.
            for _ in range(50):
                if "event=send_timeout" in srv.log():
                    break
                time.sleep(0.1)
            self.assertIn("event=send_timeout", srv.log())


class ReadsLate(unittest.TestCase):
    def test_every_pipelined_command_is_answered(self):
        # A tiny output limit: reading stops and resumes many times.
        srv = Server(shards=1, extra_toml="[limits]\nmax_output_buffer = 4096\n")
        with srv:
            c = Client(srv.port, timeout=30)
            c.reply()
            c.cmd("EHLO late.example")
            n = 200000
            payload = b"NOOP\r\n" * n + b"QUIT\r\n"
            writer = threading.Thread(target=lambda: c.sock.sendall(payload))
            writer.start()
            time.sleep(1.0)  # let the server fill its output and stop reading
            codes = {}
            for _ in range(n + 1):
                code = c.reply()[0]
                codes[code] = codes.get(code, 0) + 1
            writer.join(30)
            self.assertEqual(codes, {250: n, 221: 1})
            self.assertTrue(c.closed())


class TinyRing(unittest.TestCase):
    def test_load_through_an_eight_entry_submission_queue(self):
        srv = Server(shards=2, extra_toml="ring_entries = 8\nmax_connections_per_ip = 1000\n")
        with srv:
            errors = []
            qids = []
            lock = threading.Lock()

            def worker(k):
                try:
                    c = Client(srv.port, timeout=30)
                    c.reply()
                    c.cmd("EHLO w%d.example" % k)
                    for i in range(5):
                        body = b"Subject: %d-%d\r\n\r\n" % (k, i) + (b"x" * 98 + b"\r\n") * (k * 97 % 5000 // 100) + b"end\r\n"
                        code, text = transaction(c, "s%d@example.com" % k, ["r@example.org"], body)
                        if code != 250:
                            raise AssertionError("%d %s" % (code, text))
                        with lock:
                            qids.append(queue_id(text))
                    c.cmd("QUIT")
                except Exception as e:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(repr(e))

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            self.assertEqual(errors, [])
            self.assertEqual(len(qids), 200)
            status, body = http_get(srv.admin_port, "/metrics")
            self.assertEqual(status, 200)
            full = metric(body, "ringmx_ring_queue_full_total")
            print("submission queue full: %s times; deferred chains: %s"
                  % (full, metric(body, "ringmx_ring_deferrals_total")))
            self.assertEqual(srv.stop(), 0)
            records = srv.spool_records()
            for q in qids:
                self.assertIn(q, records)

    def test_drain_answers_every_idle_client_through_a_full_queue(self):
        # SIGTERM answers every idle session 421 in one loop iteration: one
        # send each, far more than eight SQEs at once.
        srv = Server(shards=1, extra_toml="ring_entries = 8\nmax_connections_per_ip = 1000\n")
        with srv:
            clients = []
            for _ in range(64):
                c = Client(srv.port, timeout=10)
                self.assertEqual(c.reply()[0], 220)
                clients.append(c)
            srv.send_signal(signal.SIGTERM)
            for c in clients:
                self.assertEqual(c.reply()[0], 421)
            self.assertEqual(srv.proc.wait(30), 0)
            full = [int(line.split("ring_queue_full=")[1].split()[0])
                    for line in srv.log().splitlines() if "event=shard_stopped" in line]
            print("queue full at drain: %s" % full)
            self.assertEqual(len(full), 1)
            self.assertGreater(full[0], 0, "the queue never filled: the test proves nothing")


class BodyMemory(unittest.TestCase):
    def test_many_slow_large_messages_stream_to_the_spool(self):
        # Scaled down from "500 clients x 20 MB" to fit CI: 40 clients x 4 MB
        # against a 16 MiB budget, ten times more than fits at once.
        budget = 16 << 20
        size = 4 << 20
        n = 40
        srv = Server(shards=1, extra_toml=(
            "max_connections_per_ip = 1000\n[limits]\nmax_message_size = %d\n"
            "body_memory_per_shard = %d\n" % (5 << 20, budget)))
        with srv:
            base = warm_baseline(srv)
            rss = PeakRss(srv.proc.pid, base).start()
            results = {}
            lock = threading.Lock()

            def sender(k):
                line = (b"%02d" % k) * 499 + b"\r\n"  # 1000 octets a line
                body = b"Subject: big %d\r\n\r\n" % k + line * (size // len(line))
                try:
                    c = Client(srv.port, timeout=60)
                    c.reply()
                    c.cmd("EHLO big%d.example" % k)
                    assert c.cmd("MAIL FROM:<s%d@example.com>" % k)[0] == 250
                    assert c.cmd("RCPT TO:<r@example.org>")[0] == 250
                    code, lines = c.cmd("DATA")
                    if code != 354:
                        with lock:
                            results[k] = (code, lines[-1], body)
                        return
                    # Slowly: 64 KiB pieces with pauses, so the uploads overlap.
                    for off in range(0, len(body), 65536):
                        c.send(body[off:off + 65536])
                        time.sleep(0.01)
                    c.send(b".\r\n")
                    code, lines = c.reply()
                    with lock:
                        results[k] = (code, lines[-1], body)
                    c.cmd("QUIT")
                except Exception as e:  # noqa: BLE001 - reported below
                    with lock:
                        results[k] = (0, repr(e), body)

            threads = [threading.Thread(target=sender, args=(k,)) for k in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            peak = rss.finish()
            by_code = {}
            for code, _, _ in results.values():
                by_code[code] = by_code.get(code, 0) + 1
            grown = peak - base
            print("replies: %s; RSS %d -> peak %d KiB (+%d KiB, budget %d KiB)"
                  % (by_code, base, peak, grown, budget >> 10))
            self.assertEqual(len(results), n)
            # Past the budget bodies go to the spool as they arrive: every one
            # is accepted, none is held whole.
            self.assertEqual(by_code, {250: n}, [r[:2] for r in results.values() if r[0] != 250])
            # Budget plus overhead: 4 MiB of receive buffers, allocator slack,
            # and per streaming client its header copy and write buffers
            # (measured about 300 KiB each, 12 MiB here). Holding the bodies
            # whole, as before, took the whole 160 MB. ASan keeps up to 256 MiB
            # of freed blocks resident in its quarantine (quarantine_size_mb),
            # on top of the same overhead.
            sanitized = os.environ.get("RINGMX_SANITIZED") == "1"
            bound = budget // 1024 + (32 << 10) + (256 << 10 if sanitized else 0)
            self.assertLess(grown, bound, "RSS grew by %d KiB" % grown)
            status, metrics = http_get(srv.admin_port, "/metrics")
            spills = metric(metrics, "ringmx_body_spills_total")
            print("bodies spilled to disk: %s" % spills)
            self.assertGreater(spills, 0, "the budget never filled: the test proves nothing")
            self.assertEqual(metric(metrics, "ringmx_body_memory_refusals_total"), 0)
            self.assertEqual(metric(metrics, "ringmx_body_memory_bytes"), 0)
            self.assertEqual(srv.stop(), 0)
            records = srv.spool_records()
            for code, text, body in results.values():
                if code == 250:
                    _, message = records[queue_id(text)]
                    self.assertTrue(message.endswith(body), "stored message differs")


    def test_spills_that_end_badly_leave_nothing_behind(self):
        # A budget smaller than a message: every body past 64 KiB streams to
        # disk. Oversize, abandoned and RSET transactions must leave no file;
        # a BDAT body streams like a DATA one.
        srv = Server(shards=1, extra_toml=(
            "[limits]\nmax_message_size = %d\nbody_memory_per_shard = %d\n" % (1 << 20, 64 << 10)))
        with srv:
            line = b"y" * 998 + b"\r\n"
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO spill.example")
            # Too large: streamed, then 552 and the file is gone.
            code, text = transaction(c, "a@example.com", ["b@example.org"],
                                     b"Subject: big\r\n\r\n" + line * 1100)
            self.assertEqual(code, 552, text)
            # BDAT in three chunks, past the budget: accepted whole.
            body = b"Subject: bdat\r\n\r\n" + line * 300
            assert c.cmd("MAIL FROM:<a@example.com>")[0] == 250
            assert c.cmd("RCPT TO:<b@example.org>")[0] == 250
            third = len(body) // 3
            c.send(b"BDAT %d\r\n" % third + body[:third])
            c.send(b"BDAT %d\r\n" % third + body[third:2 * third])
            c.send(b"BDAT %d LAST\r\n" % (len(body) - 2 * third) + body[2 * third:])
            codes = c.replies(3)
            self.assertEqual(codes[:2], [250, 250])
            self.assertEqual(codes[2], 250)
            # BDAT past the budget, then RSET: thrown away.
            assert c.cmd("MAIL FROM:<a@example.com>")[0] == 250
            assert c.cmd("RCPT TO:<b@example.org>")[0] == 250
            c.send(b"BDAT %d\r\n" % len(body) + body)
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.cmd("RSET")[0], 250)
            # A DATA body past the budget whose client goes away half-way.
            d = Client(srv.port)
            d.reply()
            d.cmd("EHLO gone.example")
            assert d.cmd("MAIL FROM:<a@example.com>")[0] == 250
            assert d.cmd("RCPT TO:<b@example.org>")[0] == 250
            assert d.cmd("DATA")[0] == 354
            d.send(b"Subject: half\r\n\r\n" + line * 200)
            time.sleep(0.3)
            d.close()
            c.cmd("QUIT")
            time.sleep(0.5)
            status, metrics = http_get(srv.admin_port, "/metrics")
            self.assertGreaterEqual(metric(metrics, "ringmx_body_spills_total"), 4)
            self.assertEqual(metric(metrics, "ringmx_body_memory_bytes"), 0)
            left = sorted(n for n in srv.spool_files() if n.endswith(".tmp"))
            self.assertEqual(left, [], "streamed files left behind")
            self.assertEqual(srv.stop(), 0)
            records = srv.spool_records()
            stored = [m for _, m in records.values() if b"Subject: bdat" in m]
            self.assertEqual(len(stored), 1)
            self.assertTrue(stored[0].endswith(body))


if __name__ == "__main__":
    main()
