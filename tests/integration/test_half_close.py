"""A client that pipelines the end of a message with QUIT and then closes its
sending side (TCP FIN, or TLS close_notify then FIN) is still owed the replies
to everything it sent: the message's "250 ... queued as" and the 221. Exim
does exactly this on the last message of a connection; a server that answers
the close with its own instead makes Exim retry, and the message arrives twice.

Four variants (DATA and BDAT, plaintext and STARTTLS, TLS 1.2 and 1.3), with a
scripted client that drives TLS through memory BIOs so it can send close_notify
and still read what the server says after it. Also: a half-closed client in the
middle of a message gets no 250 (the message is not stored), a half-close after
only a MAIL gets its 250 and then the server's close, and a half-closed client
whose message waits behind a slow disk still gets its reply.

Needs openssl; exits 77 without it."""

import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest

from harness import Server, main, make_cert, metric, http_get, queue_id, SKIP

OPENSSL = shutil.which("openssl")

BODY = (b"From: exim@example.net\r\nTo: rcpt@example.org\r\nSubject: half close\r\n\r\n"
        b"the last message of a connection\r\n")


def replies(data):
    """The reply codes in `data`, one per complete reply; and the text of each."""
    out = []
    for line in data.split(b"\r\n"):
        if len(line) >= 4 and line[3:4] == b" ":
            out.append((int(line[:3]), line.decode(errors="replace")))
    return out


class Wire:
    """A scripted client: plaintext on the socket until start_tls(), then TLS through memory
    BIOs, so that close_notify can be sent while the server's answers are still read."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls = None
        self.buf = b""

    def send(self, data):
        if self.tls is None:
            self.sock.sendall(data)
            return
        self.tls.write(data)
        self.flush_tls()

    def flush_tls(self):
        out = self.out_bio.read()
        if out:
            self.sock.sendall(out)

    def pump(self):
        """Receives once; appends what it decrypts to buf. False at the end of the stream."""
        raw = self.sock.recv(65536)
        if self.tls is None:
            self.buf += raw
            return bool(raw)
        if raw:
            self.in_bio.write(raw)
        else:
            self.in_bio.write_eof()
        while True:
            try:
                piece = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.peer_notified = True
                break
            except ssl.SSLError as e:  # the stream ended without close_notify
                self.buf += ("<tls error: %s>" % e).encode()
                return False
            if not piece:
                break
            self.buf += piece
        return bool(raw)

    def reply(self):
        while True:
            r = replies(self.buf)
            if r:
                end = self.buf.index(r[0][1].encode()) + len(r[0][1]) + 2
                self.buf = self.buf[end:]
                return r[0]
            if not self.pump():
                raise ConnectionError("closed; have %r" % self.buf)

    def start_tls(self, version):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        self.in_bio, self.out_bio = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.in_bio, self.out_bio)
        self.peer_notified = False
        while True:
            try:
                self.tls.do_handshake()
                self.flush_tls()
                return
            except ssl.SSLWantReadError:
                self.flush_tls()
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                self.in_bio.write(chunk)

    def half_close(self):
        """close_notify (under TLS), then FIN (unless a reset has closed the socket)."""
        try:
            if self.tls is not None:
                try:
                    self.tls.unwrap()
                except ssl.SSLWantReadError:
                    pass
                self.flush_tls()
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # a reset came first; rest() reports it
            pass

    def rest(self, timeout=10):
        """Everything the server still sends, until it closes; (data, closed in time)."""
        self.sock.settimeout(timeout)
        try:
            while self.pump():
                pass
            closed = True
        except socket.timeout:
            closed = False
        except ConnectionResetError:
            self.buf += b"<reset>"
            closed = True
        data, self.buf = self.buf, b""
        return data, closed


class HalfClose(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="ringmx-half-close-")
        crt, key = make_cert(cls.certs)
        # Bodies over 256 KiB are streamed to their own file (the spill path).
        cls.srv = Server(extra_toml='\n[tls]\ncert = "%s"\nkey = "%s"\n'
                         '[limits]\nbody_memory_per_shard = %d\n' % (crt, key, 256 << 10)).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        shutil.rmtree(cls.certs, ignore_errors=True)
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def session(self, tls_version=None):
        w = Wire(self.srv.port)
        self.assertEqual(w.reply()[0], 220)
        w.send(b"EHLO exim.test\r\n")
        self.assertEqual(w.reply()[0], 250)
        if tls_version is not None:
            w.send(b"STARTTLS\r\n")
            self.assertEqual(w.reply()[0], 220)
            w.start_tls(tls_version)
            w.send(b"EHLO exim.test\r\n")
            self.assertEqual(w.reply()[0], 250)
        return w

    def last_message(self, w, verb, tag, padding=0):
        """Sends one message the way Exim sends the last one of a connection: its end and
        QUIT in one packet, then the half-close. Returns the replies that came back."""
        body = BODY.replace(b"half close", tag.encode()) + b"padding line\r\n" * padding
        if verb == "DATA":
            w.send(b"MAIL FROM:<exim@example.net>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n")
            self.assertEqual([w.reply()[0] for _ in range(3)], [250, 250, 354])
            w.send(body + b".\r\nQUIT\r\n")
        else:
            w.send(b"MAIL FROM:<exim@example.net>\r\nRCPT TO:<rcpt@example.org>\r\n"
                   b"BDAT %d LAST\r\n" % len(body) + body + b"QUIT\r\n")
        w.half_close()
        data, closed = w.rest()
        self.assertTrue(closed, "server did not close after the replies: %r" % data)
        return replies(data), data

    def check_variant(self, verb, tls_version, padding=0):
        tag = "%s-%s-%d" % (verb, tls_version, padding)
        w = self.session(tls_version)
        got, data = self.last_message(w, verb, tag, padding)
        codes = [code for code, _ in got]
        if verb == "BDAT":
            self.assertEqual(codes[:2], [250, 250], data)
            codes, got = codes[2:], got[2:]
        self.assertEqual(codes, [250, 221], data)
        self.assertIn("queued as", got[0][1])
        qid = queue_id(got[0][1])
        fields, message = self.srv.spool_message(qid)
        self.assertIn(tag.encode(), message)
        if tls_version is not None:
            self.assertTrue(w.peer_notified, "the server closed without its close_notify")

    def test_data_plaintext(self):
        self.check_variant("DATA", None)

    def test_bdat_plaintext(self):
        self.check_variant("BDAT", None)

    def test_data_starttls_tls13(self):
        self.check_variant("DATA", ssl.TLSVersion.TLSv1_3)

    def test_bdat_starttls_tls13(self):
        self.check_variant("BDAT", ssl.TLSVersion.TLSv1_3)

    def test_data_starttls_tls12(self):
        self.check_variant("DATA", ssl.TLSVersion.TLSv1_2)

    def test_bdat_starttls_tls12(self):
        self.check_variant("BDAT", ssl.TLSVersion.TLSv1_2)

    def test_streamed_bodies(self):
        # 1 MiB bodies go to disk as they arrive; the end of data, QUIT and the half-close
        # come while the file is still being written and sealed.
        before = self.counter("ringmx_body_spills_total")
        for verb in ("DATA", "BDAT"):
            for version in (None, ssl.TLSVersion.TLSv1_3):
                with self.subTest(verb=verb, tls=version):
                    self.check_variant(verb, version, padding=(1 << 20) // 14)
        self.assertEqual(self.counter("ringmx_body_spills_total"), before + 4)

    def test_half_close_after_mail_gets_its_reply_then_close(self):
        w = self.session()
        w.send(b"MAIL FROM:<exim@example.net>\r\n")
        w.half_close()
        data, closed = w.rest()
        self.assertTrue(closed, data)
        self.assertEqual([c for c, _ in replies(data)], [250], data)

    def test_input_after_the_last_reply_does_not_reset_the_replies_away(self):
        # The client's last words (a close_notify, a stray command) may reach the server
        # after it has sent its last reply. A server that has closed its socket answers
        # them with a reset, and a reset can destroy the replies the client has not read
        # yet (Linux keeps them; other stacks do not); ringmx's close lingers (reads and
        # discards until the client's FIN).
        for version in (None, ssl.TLSVersion.TLSv1_2):
            with self.subTest(tls=version):
                w = self.session(version)
                w.send(b"MAIL FROM:<late@example.net>\r\nQUIT\r\n")
                time.sleep(0.3)  # the 250, the 221 and the server's close are out
                w.send(b"NOOP\r\n")
                time.sleep(0.3)  # ... and whatever the server answers the NOOP with
                # A reset from the server shows as a pending socket error (EPIPE here: it
                # meets our socket after the server's FIN). Linux still hands out the data
                # queued before it; other systems' stacks throw it away.
                self.assertEqual(w.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0,
                                 "the server answered input after its close with a reset")
                w.half_close()
                data, closed = w.rest()
                self.assertTrue(closed, data)
                self.assertNotIn(b"<reset>", data)
                self.assertEqual([c for c, _ in replies(data)], [250, 221], data)

    def linger_ms(self, tail, hold):
        """A client that QUITs, reads its 221 and the server's FIN, sends `tail` and holds its
        side open for `hold` seconds: how long after the session began the server let go of
        the connection (its disconnect log line)."""
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        port = s.getsockname()[1]
        s.sendall(b"QUIT\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertIn(b"221 ", data)
        try:
            s.sendall(tail)
        except OSError:
            pass  # reset: the server stopped reading
        time.sleep(hold)
        s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            log = self.srv.log()
            m = re.search(r"event=connect sid=(\S+) client=127\.0\.0\.1 port=%d " % port, log)
            if m:
                d = re.search(r"event=disconnect sid=%s .* ms=(\d+)" % m.group(1), log)
                if d:
                    return int(d.group(1))
            time.sleep(0.05)
        self.fail("no disconnect logged for port %d" % port)

    def test_the_lingering_close_is_bounded(self):
        # After its FIN the server reads on (and discards) for at most 1 s or 64 KiB.
        held = self.linger_ms(b"y" * 1024, 2.0)  # a small tail, then silence: the time bound
        self.assertGreaterEqual(held, 900)
        self.assertLess(held, 1900)
        flood = self.linger_ms(b"z" * (256 << 10), 1.5)  # the byte bound, well before 1 s
        self.assertLess(flood, 700)
        closed = self.linger_ms(b"", 0.0)  # the client closes at once: so does the server
        self.assertLess(closed, 700)

    def test_half_close_in_the_middle_of_a_message_stores_nothing(self):
        before = self.aborted()
        w = self.session()
        w.send(b"MAIL FROM:<exim@example.net>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n")
        self.assertEqual([w.reply()[0] for _ in range(3)], [250, 250, 354])
        w.send(b"Subject: cut short\r\n\r\nno end of data")
        w.half_close()
        data, closed = w.rest()
        self.assertTrue(closed, data)
        self.assertEqual(replies(data), [], data)
        for _ in range(50):
            if self.aborted() > before:
                break
            time.sleep(0.05)
        self.assertEqual(self.aborted(), before + 1)

    def counter(self, name, **labels):
        status, body = http_get(self.srv.admin_port, "/metrics")
        self.assertEqual(status, 200)
        return metric(body.decode(), name, **labels) or 0

    def aborted(self):
        return self.counter("ringmx_transactions_total", result="aborted")


if __name__ == "__main__":
    if not OPENSSL:
        print("SKIP: openssl is not installed", file=sys.stderr)
        sys.exit(SKIP)
    main()
