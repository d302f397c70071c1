"""Delivery to a destination that misbehaves: a scripted fake SMTP relay whose
first connection does one bad thing — garbage for a reply, a reply line that
never ends, a multi-line reply that never finishes, a close in the middle of
the data, silence after the final dot, a TLS failure after STARTTLS — and
whose next connections behave.
Each time the attempt fails cleanly (logged as deferred, with why), the
message is tried again and arrives exactly once, and the shard keeps taking
mail meanwhile (a client is answered while the relay stalls). After a TLS
failure, opportunistic TLS goes on in plaintext; required TLS never does."""

import socket
import threading
import time
import unittest

from harness import wait_for, Client, Server, free_port, main, transaction

RELAY_TIMEOUTS = ("command_timeout_ms = 700\ndata_timeout_ms = 700\nconnect_timeout_ms = 700\n"
                  "retry_min_ms = 200\nretry_max_ms = 300\nidle_timeout_ms = 300\n")


class FakeRelay:
    """A lock-step SMTP server on 127.0.0.1 (no PIPELINING, no CHUNKING).
    `bad` is what its first connection does; later ones behave. Messages
    completed (250 after the dot) are kept in `messages`."""

    def __init__(self, bad):
        self.bad = bad
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.messages = []
        self.connections = 0
        self.always_bad = False  # else only the first connection misbehaves
        self.stop = threading.Event()
        self.threads = []
        t = threading.Thread(target=self.accept_loop, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self):
        self.stop.set()
        self.sock.close()

    def accept_loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            bad = self.bad if self.connections == 1 or self.always_bad else None
            t = threading.Thread(target=self.serve, args=(conn, bad), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, conn, bad):
        conn.settimeout(10)
        f = conn.makefile("rb")

        def send(b):
            conn.sendall(b)

        try:
            if bad == "silent_banner":  # connected, never greets
                time.sleep(20)
                return
            send(b"220 fake.test ESMTP\r\n")
            in_data = False
            body = []
            while not self.stop.is_set():
                line = f.readline()
                if not line:
                    return
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        if bad == "hang_after_dot":
                            time.sleep(5)
                            return
                        self.messages.append(b"".join(body))
                        body = []
                        send(b"250 2.0.0 Ok: queued\r\n")
                    else:
                        if bad == "close_in_data" and len(body) == 2:
                            conn.close()
                            return
                        body.append(line)
                    continue
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    tls = b"250-STARTTLS\r\n" if self.bad == "tls_garbage" else b""
                    send(b"250-fake.test\r\n" + tls + b"250 8BITMIME\r\n")
                elif cmd == b"STAR":
                    if bad == "tls_garbage":  # 220, then no TLS at all
                        send(b"220 2.0.0 go ahead\r\n")
                        f.read(1)
                        send(b"this is not a TLS record\r\n" * 8)
                        return
                    send(b"454 4.7.0 TLS not available now\r\n")
                elif cmd == b"MAIL":
                    if bad == "garbage":
                        send(b"this is not SMTP\r\n")
                    elif bad == "endless_line":
                        for _ in range(40):
                            send(b"x" * 4096)  # no line end, 160 KiB
                        time.sleep(5)
                        return
                    elif bad == "endless_reply":
                        for _ in range(100):  # a multi-line reply that never ends
                            send(b"250-still going\r\n")
                            time.sleep(0.05)
                        return
                    else:
                        send(b"250 2.1.0 Ok\r\n")
                elif cmd == b"RCPT":
                    send(b"250 2.1.5 Ok\r\n")
                elif cmd == b"DATA":
                    send(b"354 go\r\n")
                    in_data = True
                elif cmd == b"QUIT":
                    send(b"221 bye\r\n")
                    return
                elif cmd == b"RSET":
                    send(b"250 Ok\r\n")
                else:
                    send(b"502 5.5.2 what\r\n")
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass



class MisbehavingRelay(unittest.TestCase):
    def run_case(self, bad, why, route_extra=""):
        relay = FakeRelay(bad)
        toml = ('\n[delivery]\n%s[[route]]\nname = "fake"\ndomains = ["example.org"]\n'
                'destination = "smtp://127.0.0.1:%d"\n%s\n' % (RELAY_TIMEOUTS, relay.port,
                                                                 route_extra))
        srv = Server(extra_toml=toml, shards=1).start()
        try:
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            msg = b"Subject: %s\r\nMessage-ID: <%s@test>\r\n\r\nhello\r\nworld\r\nthird\r\n" % (
                bad.encode(), bad.encode())
            t0 = time.monotonic()
            code, text = transaction(c, "a@example.net", ["u@example.org"], msg)
            self.assertEqual(code, 250, text)
            # While the relay misbehaves, the shard keeps answering clients.
            time.sleep(0.1)
            code, text = transaction(c, "a@example.net", ["v@example.org"], msg)
            self.assertEqual(code, 250, text)
            self.assertLess(time.monotonic() - t0, 2.0)
            c.cmd("QUIT")
            wait_for(lambda: len(relay.messages) >= 2, what="both messages at the relay")
            log = wait_for(lambda: (lambda l: l if "result=deferred" in l else None)(srv.log()),
                           what="the deferral logged")
            self.assertRegex(log, r"event=delivery .*result=deferred .*%s" % why)
            time.sleep(0.5)
            self.assertEqual(len(relay.messages), 2, "delivered more than once")
            for m in relay.messages:
                self.assertIn(b"hello\r\nworld\r\nthird\r\n", m)
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.__exit__()
            relay.close()

    def test_garbage_reply(self):
        self.run_case("garbage", "broke the protocol")

    def test_reply_line_that_never_ends(self):
        self.run_case("endless_line", "broke the protocol")

    def test_reply_that_never_finishes(self):
        self.run_case("endless_reply", "timed out")

    def test_close_in_the_middle_of_data(self):
        self.run_case("close_in_data", "(closed the connection|connection lost)")

    def test_silence_after_the_final_dot(self):
        self.run_case("hang_after_dot", "timed out")


    def test_a_destination_that_never_greets_does_not_hold_the_queue(self):
        # The first connection is accepted but never greeted (a long command
        # timeout, so only the set-up grace can help): the relay opens
        # another one beside it after 2 s and delivers.
        relay = FakeRelay("silent_banner")
        toml = ('\n[delivery]\ncommand_timeout_ms = 60000\nretry_min_ms = 200\n'
                'retry_max_ms = 300\n[[route]]\nname = "fake"\ndomains = ["example.org"]\n'
                'destination = "smtp://127.0.0.1:%d"\n' % relay.port)
        srv = Server(extra_toml=toml, shards=1).start()
        try:
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            t0 = time.monotonic()
            code, _ = transaction(c, "a@example.net", ["u@example.org"], b"Subject: s\r\n\r\nx\r\n")
            self.assertEqual(code, 250)
            c.cmd("QUIT")
            wait_for(lambda: relay.messages, timeout=15, what="delivery beside the silent one")
            self.assertLess(time.monotonic() - t0, 10)
            self.assertGreaterEqual(relay.connections, 2)
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.__exit__()
            relay.close()

    # TLS failure after STARTTLS (220, then no TLS record).
    def test_opportunistic_goes_on_in_plaintext(self):
        # The first handshake fails; the next attempt is plaintext and delivers.
        self.run_case("tls_garbage", "TLS with the destination failed")

    def test_required_never_sends_in_plaintext(self):
        relay = FakeRelay("tls_garbage")
        relay.always_bad = True
        toml = ('\n[delivery]\n%s[[route]]\nname = "fake"\ndomains = ["example.org"]\n'
                'destination = "smtp://127.0.0.1:%d"\ntls = "required"\n' % (RELAY_TIMEOUTS,
                                                                               relay.port))
        srv = Server(extra_toml=toml, shards=1).start()
        try:
            c = Client(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            code, _ = transaction(c, "a@example.net", ["u@example.org"], b"Subject: x\r\n\r\nx\r\n")
            self.assertEqual(code, 250)
            c.cmd("QUIT")
            wait_for(lambda: srv.log().count("event=relay_tls_failed") >= 3, what="3 attempts")
            self.assertEqual(relay.messages, [])
            self.assertNotIn("plaintext_for_ms", srv.log())
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.__exit__()
            relay.close()


if __name__ == "__main__":
    main()
