"""TLS on the real daemon: STARTTLS and implicit TLS driven by real peers
(openssl s_client, swaks, Python's ssl and smtplib) against certificates made
at test time with openssl: versions, SNI, per-listener certificates, the
Received header and spool envelope, byte-exact delivery, the STARTTLS
command-injection defence, resumption, bad and slow handshakes and their
metrics, require_tls, start-up errors and expired certificates, and SIGHUP
replacing the certificate.

Needs openssl and swaks; exits 77 without them."""

import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

from harness import (BINARY, Client, Server, free_port, http_get, main, make_cert, metric,
                     queue_id,
                     transaction)

OPENSSL = shutil.which("openssl")
SWAKS = shutil.which("swaks")

MESSAGE = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: tls\r\n\r\nover TLS\r\n.dot\r\n"
EXPIRED_NOT_AFTER = 1577923200  # 2020-01-02T00:00:00Z, see make_expired()

CERTS = None  # the directory make_certs() fills, once per run


def run(cmd, timeout=20, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)


def make_expired(d, name, cn):
    """A self-signed P-256 certificate valid only on 2020-01-01 (openssl 3.0's req has no
    -not_after, so `openssl ca -selfsign` with explicit dates)."""
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    csr, db = os.path.join(d, name + ".csr"), os.path.join(d, name + "-ca")
    os.makedirs(db)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("01\n")
    cnf = os.path.join(db, "ca.cnf")
    with open(cnf, "w") as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = %s/index.txt\nserial = %s/serial\n"
                "new_certs_dir = %s\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
                "[p]\ncommonName = supplied\n" % (db, db, db))
    for cmd in ([OPENSSL, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                [OPENSSL, "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr],
                [OPENSSL, "ca", "-batch", "-notext", "-config", cnf, "-selfsign", "-keyfile", key,
                 "-in", csr, "-out", crt, "-startdate", "20200101000000Z",
                 "-enddate", "20200102000000Z"]):
        out = run(cmd)
        assert out.returncode == 0, (cmd, out.stderr.decode())
    return crt, key


def make_certs():
    d = tempfile.mkdtemp(prefix="ringmx-tls-certs-")
    certs = {"dir": d}
    for name, cn, kind in (("default", "mx.test", "ec"), ("alt", "alt.test", "ec"),
                           ("wild", "wild.example.org", "ec"), ("rsa", "rsa.test", "rsa"),
                           ("reloaded", "reloaded.test", "ec")):
        certs[name] = make_cert(d, name, cn, kind)
    certs["expired"] = make_expired(d, "expired", "expired.test")
    return certs


def der(crt):
    with open(crt) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def which_cert(der_bytes):
    """The name in CERTS of the certificate the server sent."""
    for name, value in CERTS.items():
        if name != "dir" and der(value[0]) == der_bytes:
            return name
    return "unknown certificate"


def client_context(version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def starttls(c, version=None, sni=None):
    """STARTTLS on a greeted raw Client; wraps its socket. Returns the 220 reply lines."""
    code, lines = c.cmd("STARTTLS")
    assert code == 220, lines
    assert c.buf == b"", "bytes after the 220: %r" % c.buf
    c.sock = client_context(version).wrap_socket(c.sock, server_hostname=sni)
    return lines


def s_client(port, args, stdin=b"", timeout=15):
    """openssl s_client to 127.0.0.1:port; stdin is sent after the handshake (LF becomes
    CRLF); it waits for the server to close. Returns (exit code, stdout+stderr text)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-crlf", "-ign_eof",
           "-nocommands"] + args
    out = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return out.returncode, (out.stdout.decode(errors="replace") + STDERR_MARK +
                            out.stderr.decode(errors="replace"))


STDERR_MARK = "\n--- s_client stderr ---\n"


def after_handshake(text):
    """What s_client printed from the server after the handshake (its stdout only)."""
    return text[text.index("Cipher is"):text.index(STDERR_MARK)]


def offers_starttls(ehlo_lines):
    return any(l[4:].upper() == "STARTTLS" for l in ehlo_lines)


def protocol_of(text):
    m = re.search(r"^(New|Reused), (TLSv1\.\d), Cipher is (\S+)", text, re.M)
    return m.groups() if m else None


def subject_cn(text):
    m = re.search(r"^subject=.*CN\s*=\s*([^,\s/]+)", text, re.M)
    return m.group(1) if m else None


def client_hello():
    """The bytes of a real TLS 1.3 ClientHello (from Python's ssl, in memory)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(incoming, outgoing)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def scrape(srv):
    status, body = http_get(srv.admin_port, "/metrics")
    assert status == 200, status
    return body.decode()


def wait_metric(srv, name, at_least, timeout=5, **labels):
    """The value of `name` once it reaches at_least (bounded); the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = metric(scrape(srv), name, **labels) or 0
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def wait_log(srv, needle, timeout=5):
    deadline = time.monotonic() + timeout
    while needle not in srv.log():
        if time.monotonic() > deadline:
            raise AssertionError("no %r in the log within %ss:\n%s" % (needle, timeout, srv.log()))
        time.sleep(0.05)


def tls_toml(certs, extra=""):
    crt, key = certs["default"]
    out = '\n[tls]\ncert = "%s"\nkey = "%s"\n%s' % (crt, key, extra)
    for name, which in (("alt.test", "alt"), ("*.example.org", "wild")):
        out += '\n[[tls.sni]]\nname = "%s"\ncert = "%s"\nkey = "%s"\n' % ((name,) + certs[which])
    return out + "\n"


def listener(name, port, extra=""):
    return '\n[[listener]]\nname = "%s"\naddress = "127.0.0.1:%d"\n%s' % (name, port, extra)


def received_header(message):
    """Our Received header (with its folded lines) at the start of a stored message."""
    assert message.startswith(b"Received: "), message[:200]
    end = 0
    while True:
        end = message.index(b"\r\n", end) + 2
        if message[end:end + 1] not in (b" ", b"\t"):
            return message[:end]


class Tls(unittest.TestCase):
    """One server with: "smtp" (STARTTLS by default, since [tls] has a cert), "implicit",
    "plain" (tls = none), "strict" (require_tls) and "rsa" (STARTTLS with its own RSA
    certificate)."""

    @classmethod
    def setUpClass(cls):
        cls.implicit, cls.plain, cls.strict, cls.rsa = (free_port() for _ in range(4))
        cls.srv = Server(
            extra_toml=tls_toml(CERTS),
            listener_toml=(listener("implicit", cls.implicit, 'tls = "implicit"\n') +
                           listener("plain", cls.plain, 'tls = "none"\n') +
                           listener("strict", cls.strict, "require_tls = true\n") +
                           listener("rsa", cls.rsa, 'cert = "%s"\nkey = "%s"\n' % CERTS["rsa"])),
            shards=2).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def greet(self, port=None, helo="client.test"):
        c = Client(port or self.srv.port)
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        code, lines = c.cmd("EHLO " + helo)
        self.assertEqual(code, 250, lines)
        return c, lines

    def tls_client(self, port=None, version=None, sni=None):
        """Greeted, STARTTLS done, greeted again over TLS."""
        c, lines = self.greet(port)
        self.assertTrue(offers_starttls(lines), lines)
        starttls(c, version, sni)
        code, lines = c.cmd("EHLO client.test")
        self.assertEqual(code, 250, lines)
        self.assertFalse(offers_starttls(lines), lines)
        return c

    def assert_delivers(self, port=None):
        """A plain STARTTLS delivery: the server still serves."""
        c = self.tls_client(port)
        code, text = transaction(c, "a@example.net", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        c.cmd("QUIT")
        return queue_id(text)

    # 1
    def test_s_client_starttls_versions(self):
        for flag, version in (("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")):
            with self.subTest(version=version):
                rc, out = s_client(self.srv.port, ["-starttls", "smtp", flag],
                                   b"EHLO after.test\nQUIT\n")
                self.assertEqual(rc, 0, out)
                proto = protocol_of(out)
                self.assertIsNotNone(proto, out)
                self.assertEqual(proto[:2], ("New", version), out)
                self.assertRegex(out, r"Protocol\s*:\s*%s" % re.escape(version))
                self.assertEqual(subject_cn(out), "mx.test", out)
                # The EHLO over TLS is answered and no longer offers STARTTLS.
                after = after_handshake(out)
                self.assertIn("250-mx.test", after)
                self.assertNotIn("STARTTLS", after)
                self.assertIn("221", after)

    # 2
    def test_swaks_starttls_delivers_with_tls_in_received_and_envelope(self):
        for proto, version in (("tlsv1_2", "TLS1_2"), ("tlsv1_3", "TLS1_3")):
            with self.subTest(version=version):
                out = run([SWAKS, "--server", "127.0.0.1:%d" % self.srv.port, "--tls",
                           "--tls-protocol", proto, "--to", "user@example.org",
                           "--from", "sender@example.net", "--header", "Subject: swaks tls"],
                          timeout=30)
                text = out.stdout.decode(errors="replace")
                self.assertEqual(out.returncode, 0, text + out.stderr.decode(errors="replace"))
                self.assertIn("TLS started with cipher", text)
                qid = [l for l in text.splitlines() if "queued as" in l][0].split()[-1]
                fields, message = self.srv.spool_message(qid)
                self.assertIn(b"Subject: swaks tls", message)
                header = received_header(message).decode()
                self.assertIn("with ESMTPS", header)
                m = re.search(r"\(version=(TLS1_\d) cipher=([A-Z0-9_-]+)", header)
                self.assertIsNotNone(m, header)
                self.assertEqual(m.group(1), version, header)
                # The server's order decides: ChaCha20-Poly1305 first (faster
                # than AES-GCM in this wolfSSL build), though OpenSSL lists AES first.
                self.assertEqual(m.group(2), "TLS_CHACHA20_POLY1305_SHA256" if
                                 version == "TLS1_3" else
                                 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", header)
                self.assertIn("id %s" % qid, header)
                self.assertEqual(fields["protocol"], ["ESMTPS"])
                self.assertEqual(fields.get("tls"), ["%s %s" % (version, m.group(2))], fields)

    # 3
    def test_swaks_implicit_tls_delivers(self):
        out = run([SWAKS, "--server", "127.0.0.1:%d" % self.implicit, "--tlsc",
                   "--to", "user@example.org", "--from", "sender@example.net",
                   "--header", "Subject: swaks implicit"], timeout=30)
        text = out.stdout.decode(errors="replace")
        self.assertEqual(out.returncode, 0, text + out.stderr.decode(errors="replace"))
        self.assertIn("TLS started with cipher TLSv1.3", text)
        self.assertIn('TLS peer DN="/CN=mx.test"', text)
        qid = [l for l in text.splitlines() if "queued as" in l][0].split()[-1]
        fields, message = self.srv.spool_message(qid)
        self.assertIn(b"Subject: swaks implicit", message)
        header = received_header(message).decode()
        self.assertIn("with ESMTPS", header)
        self.assertIn("(version=TLS1_3 cipher=TLS_", header)
        self.assertEqual(fields["protocol"], ["ESMTPS"])

    def test_implicit_tls_handshake_comes_before_the_banner(self):
        raw = socket.create_connection(("127.0.0.1", self.implicit), timeout=5)
        raw.settimeout(0.5)
        try:
            early = raw.recv(100)
        except socket.timeout:
            early = b""
        self.assertEqual(early, b"", "implicit-TLS listener spoke before the handshake")
        raw.settimeout(10)
        c = Client.__new__(Client)
        c.sock, c.buf = client_context().wrap_socket(raw), b""
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        self.assertIn("mx.test", lines[0])
        code, lines = c.cmd("EHLO implicit.test")
        self.assertEqual(code, 250, lines)
        self.assertFalse(offers_starttls(lines), lines)
        self.assertEqual(c.cmd("STARTTLS")[0], 503)
        c.cmd("QUIT")

    # 4
    def test_smtplib_starttls_five_mib_byte_exact(self):
        body = b"".join(b"%07d .x..y line of the big message\r\n" % i for i in range(150000))
        body += b".\r\n..\r\n.leading\r\nno newline at the very end?\r\n"
        message = b"Subject: big over TLS\r\n\r\n" + body
        self.assertGreater(len(message), 5 * 1024 * 1024)
        with smtplib.SMTP("127.0.0.1", self.srv.port, timeout=30) as s:
            s.ehlo("smtplib.test")
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=client_context())
            self.assertEqual(code, 220)
            s.ehlo("smtplib.test")
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.sendmail("big@example.net", ["r@example.org"], message), {})
        found = []
        for qid, (fields, stored) in self.srv.spool_records().items():
            if fields["mail-from"][0].startswith("<big@example.net>"):
                found.append((qid, fields, stored))
        self.assertEqual(len(found), 1)
        qid, fields, stored = found[0]
        header = received_header(stored)
        self.assertEqual(stored[len(header):], message)  # byte-exact after our header
        self.assertTrue(header.startswith(b"Received: from smtplib.test (unknown [127.0.0.1])"),
                        header)
        self.assertIn(b"with ESMTPS", header)
        self.assertIn(b"(version=TLS1_3 cipher=TLS_", header)
        self.assertIn(("id %s" % qid).encode(), header)

    # 5
    def test_sni_picks_the_certificate(self):
        for name, cn in (("alt.test", "alt.test"), ("ALT.test", "alt.test"),
                         ("host.example.org", "wild.example.org"),
                         ("unknown.test", "mx.test"), ("example.org", "mx.test"),
                         ("a.b.example.org", "mx.test")):
            with self.subTest(servername=name):
                rc, out = s_client(self.srv.port, ["-starttls", "smtp", "-servername", name],
                                   b"QUIT\n")
                self.assertEqual(rc, 0, out)
                self.assertEqual(subject_cn(out), cn, out)
        # No SNI at all: the default certificate; python's ssl over STARTTLS agrees.
        rc, out = s_client(self.srv.port, ["-starttls", "smtp", "-noservername"], b"QUIT\n")
        self.assertEqual(subject_cn(out), "mx.test", out)
        c, _ = self.greet()
        starttls(c, sni="alt.test")
        self.assertEqual(which_cert(c.sock.getpeercert(binary_form=True)), "alt")
        self.assertEqual(c.cmd("EHLO sni.test")[0], 250)
        c.cmd("QUIT")
        # SNI on the implicit listener too.
        rc, out = s_client(self.implicit, ["-servername", "x.example.org"], b"QUIT\n")
        self.assertEqual(rc, 0, out)
        self.assertEqual(subject_cn(out), "wild.example.org", out)

    def test_per_listener_rsa_certificate(self):
        for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            with self.subTest(version=version):
                rc, out = s_client(self.rsa, ["-starttls", "smtp", flag], b"QUIT\n")
                self.assertEqual(rc, 0, out)
                self.assertEqual(subject_cn(out), "rsa.test", out)
                self.assertEqual(protocol_of(out)[1], version, out)
                if version == "TLSv1.2":
                    self.assertIn("ECDHE-RSA-", protocol_of(out)[2])
        c, _ = self.greet(self.rsa)
        starttls(c)
        self.assertEqual(which_cert(c.sock.getpeercert(binary_form=True)), "rsa")
        c.cmd("QUIT")

    # 6
    def test_plaintext_pipelined_behind_starttls_is_discarded(self):
        c, lines = self.greet()
        self.assertTrue(offers_starttls(lines), lines)
        c.send("STARTTLS\r\nRSET\r\n")
        # Exactly the 220 comes back in plaintext, nothing for RSET.
        time.sleep(0.3)
        c.sock.settimeout(2)
        data = c.sock.recv(4096)
        self.assertTrue(data.startswith(b"220 "), data)
        self.assertEqual(data.count(b"\r\n"), 1, "more than the 220 in plaintext: %r" % data)
        self.assertIn(b"2.0.0 Ready to start TLS", data)
        c.sock = client_context().wrap_socket(c.sock)
        # After the handshake: silence until we speak (no 250 for the RSET).
        c.sock.settimeout(0.5)
        try:
            early = c.sock.recv(4096)
        except (socket.timeout, ssl.SSLWantReadError):
            early = b""
        self.assertEqual(early, b"", "reply over TLS before any command: %r" % early)
        c.sock.settimeout(10)
        # The session started over: MAIL before EHLO is out of sequence.
        code, lines = c.cmd("MAIL FROM:<a@example.net>")
        self.assertEqual(code, 503, lines)
        code, lines = c.cmd("EHLO again.test")
        self.assertEqual(code, 250, lines)
        self.assertEqual(lines[0], "250-mx.test")
        self.assertFalse(offers_starttls(lines), lines)
        code, text = transaction(c, "a@example.net", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_envelope_before_starttls_is_forgotten(self):
        c, _ = self.greet(helo="before.test")
        self.assertEqual(c.cmd("MAIL FROM:<old@example.net>")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)
        starttls(c)
        self.assertEqual(c.cmd("RCPT TO:<b@example.org>")[0], 503)
        self.assertEqual(c.cmd("EHLO after.test")[0], 250)
        code, text = transaction(c, "new@example.net", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        fields, message = self.srv.spool_message(queue_id(text))
        self.assertEqual(fields["helo"], ["after.test"])
        self.assertTrue(received_header(message).startswith(b"Received: from after.test "))

    # 7
    def test_resumption(self):
        resumed = metric(scrape(self.srv), "ringmx_tls_resumed_total") or 0
        for flag in ("-tls1_3", "-tls1_2"):
            with self.subTest(version=flag):
                sess = os.path.join(self.srv.dir, "session%s.pem" % flag)
                rc, out = s_client(self.srv.port, ["-starttls", "smtp", flag, "-sess_out", sess],
                                   b"NOOP\nQUIT\n")
                self.assertEqual(rc, 0, out)
                self.assertEqual(protocol_of(out)[0], "New", out)
                self.assertTrue(os.path.exists(sess) and os.path.getsize(sess) > 0,
                                "no session saved\n" + out)
                rc, out = s_client(self.srv.port, ["-starttls", "smtp", flag, "-sess_in", sess],
                                   b"EHLO resumed.test\nQUIT\n")
                self.assertEqual(rc, 0, out)
                self.assertEqual(protocol_of(out)[0], "Reused", out)
                self.assertIn("250-mx.test", after_handshake(out))
                resumed += 1
                self.assertEqual(metric(scrape(self.srv), "ringmx_tls_resumed_total"), resumed)

    # 8
    def failed_handshakes(self):
        return metric(scrape(self.srv), "ringmx_tls_handshakes_total", listener="smtp",
                      result="failed") or 0

    def test_bad_handshakes_are_refused_and_counted(self):
        keeper = self.tls_client()  # a good session open through all of it
        before = self.failed_handshakes()
        expected = before

        # Random bytes after STARTTLS (first byte no TLS record type).
        c, _ = self.greet()
        c.cmd("STARTTLS")
        c.send(b"\xff" + os.urandom(511))
        self.assertTrue(c.closed(5), "server kept a connection that sent garbage for TLS")
        expected += 1
        self.assertGreaterEqual(wait_metric(self.srv, "ringmx_tls_handshakes_total", expected,
                                            listener="smtp", result="failed"), expected,
                                "random bytes not counted as a failed handshake")

        # Half a ClientHello, then the client goes away.
        hello = client_hello()
        self.assertGreater(len(hello), 100)
        c, _ = self.greet()
        c.cmd("STARTTLS")
        c.send(hello[:len(hello) // 2])
        c.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(c.closed(5), "server did not close after a truncated ClientHello")
        c.close()
        expected += 1
        self.assertGreaterEqual(wait_metric(self.srv, "ringmx_tls_handshakes_total", expected,
                                            listener="smtp", result="failed"), expected,
                                "truncated ClientHello not counted as a failed handshake")

        # A TLS 1.0-only client (the server's minimum is TLS 1.2). SECLEVEL=0 lets this
        # openssl offer TLS 1.0 at all; without it, it would fail before sending anything.
        rc, out = s_client(self.srv.port, ["-starttls", "smtp", "-tls1",
                                           "-cipher", "DEFAULT@SECLEVEL=0"], b"QUIT\n")
        self.assertNotEqual(rc, 0, out)
        self.assertIsNone(protocol_of(out), out)
        m = re.search(r"SSL handshake has read \d+ bytes and written (\d+) bytes", out)
        if m and int(m.group(1)) > 0:
            expected += 1
            self.assertGreaterEqual(wait_metric(self.srv, "ringmx_tls_handshakes_total", expected,
                                                listener="smtp", result="failed"), expected,
                                    "TLS 1.0 ClientHello not counted as a failed handshake")
        else:
            print("note: openssl sent no TLS 1.0 ClientHello here; not counted\n" + out,
                  file=sys.stderr)

        # The same on the implicit listener: garbage instead of a ClientHello.
        imp_before = metric(scrape(self.srv), "ringmx_tls_handshakes_total",
                            listener="implicit", result="failed") or 0
        raw = Client(self.implicit)
        raw.send(b"EHLO plaintext.test\r\n")
        self.assertTrue(raw.closed(5))
        self.assertNotIn(b"220", raw.buf)
        self.assertGreaterEqual(
            wait_metric(self.srv, "ringmx_tls_handshakes_total", imp_before + 1,
                        listener="implicit", result="failed"), imp_before + 1)

        # Not one of those counted as a success, nor as a timeout, and the server serves.
        text = scrape(self.srv)
        self.assertEqual(metric(text, "ringmx_tls_handshakes_total", listener="smtp",
                                result="failed"), expected)
        self.assertEqual(metric(text, "ringmx_tls_handshakes_total", result="failed",
                                version="none") or 0,
                         metric(text, "ringmx_tls_handshakes_total", result="failed"))
        self.assert_delivers()
        self.assertEqual(keeper.cmd("NOOP")[0], 250)
        keeper.cmd("QUIT")
        self.assertEqual(metric(scrape(self.srv), "ringmx_tls_handshakes_total",
                                listener="smtp", result="timeout") or 0, 0)

    def test_metrics_follow_handshakes(self):
        text = scrape(self.srv)
        ok13 = metric(text, "ringmx_tls_handshakes_total", listener="smtp", version="TLS1_3",
                      result="ok") or 0
        ok12 = metric(text, "ringmx_tls_handshakes_total", listener="smtp", version="TLS1_2",
                      result="ok") or 0
        imp = metric(text, "ringmx_tls_handshakes_total", listener="implicit", version="TLS1_3",
                     result="ok") or 0
        hist = metric(text, "ringmx_tls_handshake_duration_seconds_count") or 0

        c13 = self.tls_client(version=ssl.TLSVersion.TLSv1_3)
        c12 = self.tls_client(version=ssl.TLSVersion.TLSv1_2)
        raw = socket.create_connection(("127.0.0.1", self.implicit), timeout=10)
        ci = Client.__new__(Client)
        ci.sock, ci.buf = client_context().wrap_socket(raw), b""
        self.assertEqual(ci.reply()[0], 220)

        text = scrape(self.srv)
        self.assertEqual(metric(text, "ringmx_tls_handshakes_total", listener="smtp",
                                version="TLS1_3", result="ok"), ok13 + 1)
        self.assertEqual(metric(text, "ringmx_tls_handshakes_total", listener="smtp",
                                version="TLS1_2", result="ok"), ok12 + 1)
        self.assertEqual(metric(text, "ringmx_tls_handshakes_total", listener="implicit",
                                version="TLS1_3", result="ok"), imp + 1)
        self.assertEqual(metric(text, "ringmx_tls_handshake_duration_seconds_count"), hist + 3)
        self.assertIsNotNone(metric(text, "ringmx_tls_handshake_duration_seconds_bucket",
                                    le="+Inf"))
        self.assertGreaterEqual(metric(text, "ringmx_tls_sessions_active", version="TLS1_3"), 2)
        self.assertGreaterEqual(metric(text, "ringmx_tls_sessions_active", version="TLS1_2"), 1)
        expiry = [l for l in text.splitlines()
                  if l.startswith("ringmx_tls_certificate_expiry_timestamp_seconds{")]
        # at least one sample per certificate: default, two SNI ones and the RSA one on "rsa"
        self.assertGreaterEqual(len(expiry), 4, expiry)
        now = time.time()
        for line in expiry:
            value = float(line.rpartition(" ")[2])
            self.assertTrue(now < value < now + 31 * 86400, line)
        for c in (c13, c12, ci):
            c.cmd("QUIT")
            c.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = scrape(self.srv)
            if (metric(text, "ringmx_tls_sessions_active") or 0) == 0:
                break
            time.sleep(0.05)
        self.assertEqual(metric(text, "ringmx_tls_sessions_active") or 0, 0,
                         "TLS sessions still counted active after QUIT")
        promtool = shutil.which("promtool")
        if promtool:
            out = run([promtool, "check", "metrics"], input=text.encode(), timeout=30)
            self.assertEqual((out.returncode, out.stdout + out.stderr), (0, b""),
                             "promtool check metrics complained")

    # 9
    def test_require_tls(self):
        c, lines = self.greet(self.strict)
        self.assertTrue(offers_starttls(lines), lines)
        code, lines = c.cmd("MAIL FROM:<a@example.net>")
        self.assertEqual(code, 530, lines)
        self.assertIn("5.7.0", lines[0])
        self.assertEqual(c.cmd("NOOP")[0], 250)
        starttls(c)
        self.assertEqual(c.cmd("EHLO strict.test")[0], 250)
        code, text = transaction(c, "a@example.net", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    # 10
    def test_second_starttls_and_tls_none(self):
        c = self.tls_client()
        code, lines = c.cmd("STARTTLS")
        self.assertEqual(code, 503, lines)
        self.assertIn("5.5.1", lines[0])
        self.assertEqual(c.cmd("NOOP")[0], 250)  # and the TLS session is intact
        c.cmd("QUIT")

        c, lines = self.greet(self.plain)
        self.assertFalse(offers_starttls(lines), lines)
        code, lines = c.cmd("STARTTLS")
        self.assertEqual(code, 502, lines)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        code, text = transaction(c, "a@example.net", ["b@example.org"], MESSAGE)
        self.assertEqual(code, 250, text)
        fields, message = self.srv.spool_message(queue_id(text))
        self.assertEqual(fields["protocol"], ["ESMTP"])
        self.assertNotIn("tls", fields)
        self.assertNotIn(b"version=TLS", received_header(message))
        c.cmd("QUIT")

    def test_close_notify_both_ways(self):
        # RFC 8446 6.1 (and RFC 5246 7.2.1): each side sends close_notify before closing its
        # write side. After QUIT the server closes with one; a client's close_notify is
        # answered with the server's.
        for closer in ("QUIT", "client close_notify"):
            with self.subTest(closer=closer):
                c, _ = self.greet()
                self.assertEqual(c.cmd("STARTTLS")[0], 220)
                c.sock = client_context().wrap_socket(c.sock, suppress_ragged_eofs=False)
                self.assertEqual(c.cmd("EHLO bye.test")[0], 250)
                try:
                    if closer == "QUIT":
                        self.assertEqual(c.cmd("QUIT")[0], 221)
                        self.assertEqual(c.sock.recv(100), b"")  # close_notify, not just EOF
                    else:
                        raw = c.sock.unwrap()  # sends ours, waits for the server's
                        raw.settimeout(5)
                        self.assertEqual(raw.recv(100), b"")
                except ssl.SSLEOFError as e:
                    self.fail("server closed the TCP connection without close_notify "
                              "(%s): %r" % (closer, e))
                finally:
                    c.close()

    def test_starttls_with_argument(self):
        c, _ = self.greet()
        code, lines = c.cmd("STARTTLS now")  # RFC 3207: no parameters
        self.assertEqual(code, 501, lines)
        starttls(c)  # still possible after the syntax error
        self.assertEqual(c.cmd("EHLO x.test")[0], 250)
        c.cmd("QUIT")


class StrictServer(unittest.TestCase):
    """handshake_timeout_ms = 300, min_version = "TLS1_3", no session tickets."""

    @classmethod
    def setUpClass(cls):
        cls.implicit = free_port()
        cls.srv = Server(extra_toml=tls_toml(CERTS, 'handshake_timeout_ms = 300\n'
                                                    'min_version = "TLS1_3"\n'
                                                    'session_tickets = false\n'),
                         listener_toml=listener("implicit", cls.implicit, 'tls = "implicit"\n'),
                         shards=1).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def counted(self, listener_name, result):
        return metric(scrape(self.srv), "ringmx_tls_handshakes_total", listener=listener_name,
                      result=result) or 0

    def pending_handshake(self, port):
        """A connection where the server now waits for a ClientHello."""
        c = Client(port)
        if port == self.srv.port:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO slow.test")[0], 250)
            self.assertEqual(c.cmd("STARTTLS")[0], 220)
        return c

    def test_silent_client_is_dropped_and_counted(self):
        for port, name in ((self.implicit, "implicit"), (self.srv.port, "smtp")):
            with self.subTest(listener=name):
                before = self.counted(name, "timeout")
                c = self.pending_handshake(port)
                t0 = time.monotonic()
                self.assertTrue(c.closed(5), "no close within 5 s of a silent handshake")
                took = time.monotonic() - t0
                self.assertGreaterEqual(took, 0.2)
                self.assertLess(took, 3.0)
                self.assertEqual(wait_metric(self.srv, "ringmx_tls_handshakes_total", before + 1,
                                             listener=name, result="timeout"), before + 1)
        # A client that does its handshake in time is served, and the handshake timeout no
        # longer applies once it is done.
        raw = socket.create_connection(("127.0.0.1", self.implicit), timeout=10)
        c = Client.__new__(Client)
        c.sock, c.buf = client_context().wrap_socket(raw), b""
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO fast.test")[0], 250)
        time.sleep(0.6)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.cmd("QUIT")

    def test_slow_client_hello_does_not_extend_the_deadline(self):
        hello = client_hello()
        for port, name in ((self.implicit, "implicit"), (self.srv.port, "smtp")):
            with self.subTest(listener=name):
                before = self.counted(name, "timeout")
                c = self.pending_handshake(port)
                t0 = time.monotonic()
                try:  # one byte every 50 ms: the whole hello would take ~25 s
                    for i in range(len(hello) - 1):
                        c.sock.sendall(hello[i:i + 1])
                        time.sleep(0.05)
                        if time.monotonic() - t0 > 5:
                            break
                except OSError:
                    pass
                self.assertTrue(c.closed(2))
                self.assertLess(time.monotonic() - t0, 3.0, "a trickled ClientHello kept going")
                self.assertEqual(wait_metric(self.srv, "ringmx_tls_handshakes_total", before + 1,
                                             listener=name, result="timeout"), before + 1)

    def test_min_version_tls1_3(self):
        before = self.counted("smtp", "failed")
        rc, out = s_client(self.srv.port, ["-starttls", "smtp", "-tls1_2"], b"QUIT\n")
        self.assertNotEqual(rc, 0, out)
        self.assertIsNone(protocol_of(out), out)
        self.assertEqual(wait_metric(self.srv, "ringmx_tls_handshakes_total", before + 1,
                                     listener="smtp", result="failed"), before + 1)
        rc, out = s_client(self.srv.port, ["-starttls", "smtp"], b"QUIT\n")
        self.assertEqual(rc, 0, out)
        self.assertEqual(protocol_of(out)[:2], ("New", "TLSv1.3"), out)
        # session_tickets = false: TLS 1.3 has no other way to resume, so no ticket comes.
        self.assertNotIn("Post-Handshake New Session Ticket", out)


class ServerInitiatedReplies(unittest.TestCase):
    """Replies the server sends on its own (timeout, too many errors, shutdown) go over TLS,
    never as plaintext into the TLS stream."""

    def tls_session(self, srv, implicit):
        if implicit:
            raw = socket.create_connection(("127.0.0.1", implicit), timeout=10)
            c = Client.__new__(Client)
            c.sock, c.buf = client_context().wrap_socket(raw), b""
            self.assertEqual(c.reply()[0], 220)
        else:
            c = Client(srv.port)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO own.test")[0], 250)
            starttls(c)
        self.assertEqual(c.cmd("EHLO own.test")[0], 250)
        return c

    def rest(self, c):
        """Every reply until the server closes (a TLS error fails the test)."""
        codes = []
        while True:
            try:
                codes.append(c.reply()[0])
            except ConnectionError:
                return codes

    def test_timeout_errors_and_drain_over_tls(self):
        implicit = free_port()
        srv = Server(extra_toml=tls_toml(CERTS) + "\n[limits]\ncommand_timeout_ms = 500\n"
                                                  "max_bad_commands = 3\n",
                     listener_toml=listener("implicit", implicit, 'tls = "implicit"\n'),
                     shards=1)
        with srv:
            for imp in (None, implicit):
                with self.subTest(implicit=bool(imp)):
                    c = self.tls_session(srv, imp)
                    t0 = time.monotonic()
                    self.assertEqual(self.rest(c), [421])  # command timeout
                    self.assertLess(time.monotonic() - t0, 3)
                    c = self.tls_session(srv, imp)
                    c.send(b"BOGUS\r\n" * 5)
                    self.assertEqual(self.rest(c), [500, 500, 421])
            busy, idle = self.tls_session(srv, None), self.tls_session(srv, implicit)
            self.assertEqual(busy.cmd("MAIL FROM:<a@example.net>")[0], 250)
            srv.send_signal(signal.SIGTERM)
            self.assertEqual(self.rest(idle), [421])
            self.assertEqual(busy.cmd("RCPT TO:<b@example.org>")[0], 250)
            self.assertEqual(busy.cmd("DATA")[0], 354)
            busy.send(MESSAGE + b".\r\n")
            self.assertEqual(self.rest(busy), [250, 421])
            self.assertEqual(srv.proc.wait(10), 0)


class StartupErrors(unittest.TestCase):
    def run_binary(self, srv):
        try:
            out = subprocess.run([BINARY, "--config", srv.config], capture_output=True,
                                 timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("ringmx started (ran 10 s) with a bad TLS configuration")
        return out.returncode, out.stdout.decode(errors="replace") + out.stderr.decode(
            errors="replace")

    def test_key_not_matching_certificate(self):
        certs = dict(CERTS, default=(CERTS["default"][0], CERTS["alt"][1]))
        srv = Server(extra_toml=tls_toml(certs))
        rc, out = self.run_binary(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(CERTS["alt"][1], out)  # names the key file
        self.assertNotIn("event=started", out)
        # --check-config loads the certificates too.
        out = run([BINARY, "--check-config", srv.config], timeout=10)
        self.assertNotEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(CERTS["alt"][1], out.stderr.decode())

    def test_key_of_other_type(self):
        certs = dict(CERTS, alt=(CERTS["alt"][0], CERTS["rsa"][1]))
        srv = Server(extra_toml=tls_toml(certs))
        rc, out = self.run_binary(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(CERTS["rsa"][1], out)

    def test_missing_certificate_file(self):
        missing = os.path.join(CERTS["dir"], "no-such.crt")
        certs = dict(CERTS, default=(missing, CERTS["default"][1]))
        srv = Server(extra_toml=tls_toml(certs))
        rc, out = self.run_binary(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(missing, out)

    def test_missing_listener_certificate_file(self):
        missing = os.path.join(CERTS["dir"], "no-such-listener.key")
        srv = Server(extra_toml=tls_toml(CERTS),
                     listener_toml='cert = "%s"\nkey = "%s"\n' % (CERTS["rsa"][0], missing))
        rc, out = self.run_binary(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(missing, out)

    def test_starttls_listener_without_certificate(self):
        srv = Server(listener_toml='tls = "starttls"\n')
        rc, out = self.run_binary(srv)
        self.assertNotEqual(rc, 0, out)

    def test_command_line_tls_errors(self):
        base = [BINARY, "--spool-dir", os.path.join(CERTS["dir"], "cli-spool"),
                "--admin-listen", ""]
        crt, key = CERTS["default"]
        cases = [
            (["--listen-implicit-tls", "localhost:465", "--tls-cert", crt, "--tls-key", key],
             "listener[1].address"),
            (["--listen-implicit-tls", "127.0.0.1:%d" % free_port()], "needs a certificate"),
            (["--tls-cert", crt], "tls.cert and tls.key go together"),
        ]
        for args, message in cases:
            out = run(base + args, timeout=10)
            self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
            self.assertIn(message, out.stderr.decode())
            self.assertNotIn(b"event=started", out.stdout + out.stderr)

    def test_expired_certificate_starts_with_warning(self):
        crt, key = CERTS["expired"]
        srv = Server(extra_toml='\n[tls]\ncert = "%s"\nkey = "%s"\n' % (crt, key), shards=1)
        with srv:
            wait_log(srv, "level=warn")
            warnings = [l for l in srv.log().splitlines() if "level=warn" in l]
            self.assertTrue(any("expired" in l and "expired.test" in l for l in warnings),
                            srv.log())
            text = scrape(srv)
            self.assertEqual(metric(text, "ringmx_tls_certificate_expiry_timestamp_seconds"),
                             EXPIRED_NOT_AFTER, text)
            rc, out = s_client(srv.port, ["-starttls", "smtp"], b"QUIT\n")
            self.assertEqual(subject_cn(out), "expired.test", out)
            self.assertEqual(srv.stop(), 0)


class Reload(unittest.TestCase):
    def test_sighup_replaces_the_certificate(self):
        d = tempfile.mkdtemp(prefix="ringmx-tls-reload-")
        crt, key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
        shutil.copy(CERTS["default"][0], crt)
        shutil.copy(CERTS["default"][1], key)
        srv = Server(extra_toml='\n[tls]\ncert = "%s"\nkey = "%s"\n' % (crt, key), shards=2)
        with srv:
            rc, out = s_client(srv.port, ["-starttls", "smtp"], b"QUIT\n")
            self.assertEqual(subject_cn(out), "mx.test", out)
            # A session in flight across the reload.
            old = Client(srv.port)
            old.reply()
            old.cmd("EHLO old.test")
            starttls(old)
            self.assertEqual(which_cert(old.sock.getpeercert(binary_form=True)), "default")
            self.assertEqual(old.cmd("EHLO old.test")[0], 250)
            self.assertEqual(old.cmd("MAIL FROM:<old@example.net>")[0], 250)

            shutil.copy(CERTS["reloaded"][0], crt + ".new")
            shutil.copy(CERTS["reloaded"][1], key + ".new")
            os.replace(key + ".new", key)
            os.replace(crt + ".new", crt)
            srv.send_signal(signal.SIGHUP)
            wait_log(srv, "event=reload_done")
            deadline = time.monotonic() + 5  # every shard has taken the new config
            while srv.log().count("event=config_reloaded") < 2:
                self.assertLess(time.monotonic(), deadline, srv.log())
                time.sleep(0.05)
            for _ in range(4):  # new handshakes on every shard get the new certificate
                rc, out = s_client(srv.port, ["-starttls", "smtp"], b"QUIT\n")
                self.assertEqual(rc, 0, out)
                self.assertEqual(subject_cn(out), "reloaded.test", out)
            text = scrape(srv)
            self.assertIsNotNone(metric(text, "ringmx_tls_certificate_expiry_timestamp_seconds",
                                        subject="reloaded.test"), text)
            self.assertIsNone(metric(text, "ringmx_tls_certificate_expiry_timestamp_seconds",
                                     subject="mx.test"), text)

            # The old session goes on on its old keys.
            self.assertEqual(old.cmd("RCPT TO:<b@example.org>")[0], 250)
            self.assertEqual(old.cmd("DATA")[0], 354)
            old.send(MESSAGE + b".\r\n")
            code, lines = old.reply()
            self.assertEqual(code, 250, lines)
            old.cmd("QUIT")

            # A broken certificate on reload: the running one stays.
            with open(key, "w") as f:
                f.write("not a key\n")
            srv.send_signal(signal.SIGHUP)
            wait_log(srv, "event=reload_failed")
            failed = [l for l in srv.log().splitlines() if "event=reload_failed" in l]
            self.assertIn(key, failed[0])
            self.assertIsNone(srv.proc.poll(), "ringmx exited on a bad reload\n" + srv.log())
            rc, out = s_client(srv.port, ["-starttls", "smtp"], b"QUIT\n")
            self.assertEqual(rc, 0, out)
            self.assertEqual(subject_cn(out), "reloaded.test", out)
            self.assertEqual(srv.stop(), 0, srv.log())


class CommandLine(unittest.TestCase):
    def test_tls_cert_and_implicit_listener_flags(self):
        implicit = free_port()
        crt, key = CERTS["default"]
        srv = Server(args=["--tls-cert", crt, "--tls-key", key,
                           "--listen-implicit-tls", "127.0.0.1:%d" % implicit], shards=1)
        with srv:
            self.assertIn("127.0.0.1:%d" % implicit, srv.banner_line)
            c = Client(srv.port)
            c.reply()
            code, lines = c.cmd("EHLO cli.test")
            self.assertTrue(offers_starttls(lines), lines)
            starttls(c)
            self.assertEqual(c.cmd("EHLO cli.test")[0], 250)
            c.cmd("QUIT")
            raw = socket.create_connection(("127.0.0.1", implicit), timeout=10)
            ci = Client.__new__(Client)
            ci.sock, ci.buf = client_context().wrap_socket(raw), b""
            self.assertEqual(ci.reply()[0], 220)
            self.assertEqual(ci.cmd("EHLO cli.test")[0], 250)
            ci.cmd("QUIT")
            text = scrape(srv)
            names = {l.split('listener="')[1].split('"')[0] for l in text.splitlines()
                     if l.startswith("ringmx_tls_handshakes_total{") and 'listener="' in l}
            # A listener from the command line is named after its address.
            self.assertEqual(names, {"smtp", "127.0.0.1:%d" % implicit})
            self.assertEqual(metric(text, "ringmx_tls_handshakes_total",
                                    listener="127.0.0.1:%d" % implicit, result="ok"), 1)
            self.assertEqual(srv.stop(), 0)


def setUpModule():
    global CERTS
    CERTS = make_certs()


if __name__ == "__main__":
    if not OPENSSL or not SWAKS:
        print("openssl and swaks are needed (apt-get install openssl swaks)", file=sys.stderr)
        sys.exit(77)
    main()
