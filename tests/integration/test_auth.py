"""Authenticated submission against real peers: a private Dovecot
(tests/integration/dovecot_auth.py) verifies the credentials over its
auth-client socket, swaks is the mail client (STARTTLS and implicit TLS,
AUTH PLAIN and LOGIN), and a private Postfix (bench/peers/private_postfix.py,
holding what it takes) is the smarthost the "*" route relays to.

Checked: PLAIN after STARTTLS and LOGIN on an implicit-TLS listener succeed
and the message reaches Postfix, for a foreign domain, with "with ESMTPSA" in
our Received header and the user not named; a wrong password gets 535 5.7.8;
AUTH in plaintext is neither offered nor taken (538 5.7.11) and MAIL before
AUTH gets 530 5.7.0; a sender the login does not own gets 553 5.7.1, one the
sender_logins_file gives it passes; without AUTH the "*" route relays
nothing (550 5.7.1); a HELO the checks refuse is held until MAIL and dropped
by AUTH; the brute-force limits delay each failure longer, close the fourth
with 421, refuse the address at connect and let it back after block_s;
Dovecot stopped answers 454 4.7.0 at once and, started again, serves again;
a backend that accepts and never answers gets 454 after auth.timeout_ms while
another session goes on, and an AUTH past max_pending gets 454 at once;
the submission listeners greet without the greeting delay; the metrics and
the log (user, mechanism, result; never the password, at debug level
either). The file backend without Dovecot: sha512-crypt, sha256-crypt and
argon2id hashes (with Dovecot {SCHEME} prefixes) verified, a wrong password
and an unknown user refused alike, SIGHUP reads the file again and a bad file keeps
the users it had. Exits 77 only when Dovecot, Postfix or swaks cannot be had
(or we are not root)."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bench", "peers"))

from harness import (SKIP, Client, Server, http_get, main, make_cert, metric,  # noqa: E402
                     wait_for)
from dovecot_auth import DovecotAuth, install_dovecot  # noqa: E402

SWAKS = shutil.which("swaks")
USERS = {"alice@example.com": "s3cret", "bob@example.com": "hunter2!"}
BAD_HELO = "nodots"  # refused by [checks.helo] not_fqdn = "reject"


def swaks(port, *args, user="alice@example.com", password="s3cret", frm="alice@example.com",
          to="friend@foreign.example", source=None, tls="--tls", auth="PLAIN"):
    cmd = [SWAKS, "--server", "127.0.0.1:%d" % port, "--from", frm, "--to", to,
           "--helo", "client.example.com", "--header", "Subject: submission", tls,
           "--auth", auth, "--auth-user", user, "--auth-password", password]
    if source:
        cmd += ["--local-interface", source]
    return subprocess.run(cmd + list(args), capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def starttls_client(port, source=None, helo="client.example.com"):
    """A Client past EHLO, STARTTLS and EHLO again, over TLS (no verification)."""
    c = Client(port, source=(source, 0) if source else None)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO %s" % helo)[0] == 250
    assert c.cmd("STARTTLS")[0] == 220
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
    code, lines = c.cmd("EHLO %s" % helo)
    assert code == 250, lines
    c.ehlo = lines
    return c


def plain(user, password):
    import base64
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


class HangingBackend:
    """A unix socket that accepts and never says a word."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(16)
        self.conns = []
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop_flag:
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                pass

    def close(self):
        self.stop_flag = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def config(dovecot_socket, relay_port, logins, certdir, extra=""):
    crt, key = make_cert(certdir)
    return ('log_level = "debug"\ngreeting_delay_ms = 1500\n'
            '[tls]\ncert = "%s"\nkey = "%s"\n'
            '[auth]\nbackend = "dovecot"\ndovecot_socket = "%s"\ntimeout_ms = 1000\n'
            'failure_delay_ms = 200\nmax_failure_delay_ms = 600\nmax_failures = 4\n'
            'failure_window_s = 60\nblock_s = 3\nsender_logins_file = "%s"\n%s'
            '[checks.helo]\nnot_fqdn = "reject"\n'
            '[[route]]\nname = "smarthost"\ndomains = ["*"]\n'
            'destination = "smtp://127.0.0.1:%d"\ntls = "none"\n'
            % (crt, key, dovecot_socket, logins, extra, relay_port))


class Submission(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0 or not SWAKS or not os.path.exists("/usr/sbin/postfix"):
            print("SKIP: needs root, swaks and Debian's postfix", file=sys.stderr)
            sys.exit(SKIP)
        problem = install_dovecot()
        if problem:
            print("SKIP: " + problem, file=sys.stderr)
            sys.exit(SKIP)
        from private_postfix import PrivatePostfix
        cls.pf = PrivatePostfix({"relay": ""}, extra_main=(
            "\nsmtpd_recipient_restrictions = check_recipient_access static:HOLD, permit\n"
        )).start()
        cls.dovecot = DovecotAuth(USERS).start()
        cls.dir = os.path.join(cls.dovecot.base, "ringmx")
        os.makedirs(cls.dir)
        cls.logins = os.path.join(cls.dir, "logins")
        with open(cls.logins, "w") as f:
            f.write("alice@example.com: alice@example.com, @lists.example.com\n")
        cls.sub_port = 0
        cls.srv = Server(config("unix:" + cls.dovecot.socket, cls.pf.ports["relay"], cls.logins,
                                cls.dir),
                         shards=1,
                         listener_toml=cls.listeners())
        cls.srv.start()

    @classmethod
    def listeners(cls):
        from harness import free_port
        cls.sub_port = free_port()
        cls.smtps_port = free_port()
        return ('tls = "starttls"\n'
                '[[listener]]\nname = "submission"\naddress = "127.0.0.1:%d"\n'
                'tls = "starttls"\nauth = "required"\n'
                '[[listener]]\nname = "smtps"\naddress = "127.0.0.1:%d"\n'
                'tls = "implicit"\nauth = "optional"\n' % (cls.sub_port, cls.smtps_port))

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        cls.dovecot.stop()
        cls.dovecot.cleanup()
        cls.pf.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def held_with(self, text):
        """The held Postfix messages (postcat -bh) that contain `text`."""
        out = []
        q = subprocess.run(["postqueue", "-c", self.pf.conf, "-j"], capture_output=True,
                           timeout=30)
        import json
        for line in q.stdout.decode().splitlines():
            qid = json.loads(line)["queue_id"]
            p = subprocess.run(["postcat", "-c", self.pf.conf, "-bh", "-q", qid],
                               capture_output=True, timeout=30)
            if text.encode() in p.stdout:
                out.append(p.stdout.decode(errors="replace"))
        return out

    def test_plain_after_starttls_is_relayed(self):
        out = swaks(self.sub_port, "--header", "X-Tag: plain-starttls")
        self.assertEqual(out.returncode, 0, out.stdout.decode()[-2000:])
        self.assertIn(b"235 2.7.0 Authentication successful", out.stdout)
        held = wait_for(lambda: self.held_with("X-Tag: plain-starttls"), what="Postfix has it")
        self.assertRegex(held[0], r"by mx\.test \(ringmx\) with ESMTPSA id ")
        self.assertNotIn("Authenticated sender", held[0])
        log = wait_for(lambda: (lambda t: t if "result=success" in t else None)(self.srv.log()),
                       what="the auth line")
        self.assertRegex(log, r"event=auth .*user=alice@example.com mechanism=PLAIN "
                              r"result=success")
        self.assertNotIn("s3cret", log)
        self.assertNotIn(plain("alice@example.com", "s3cret"), log)

    def test_login_on_implicit_tls(self):
        out = swaks(self.smtps_port, "--header", "X-Tag: login-smtps", tls="--tlsc",
                    auth="LOGIN", user="bob@example.com", password="hunter2!",
                    frm="bob@example.com")
        self.assertEqual(out.returncode, 0, out.stdout.decode()[-2000:])
        self.assertIn(b"334 VXNlcm5hbWU6", out.stdout)
        held = wait_for(lambda: self.held_with("X-Tag: login-smtps"), what="Postfix has it")
        self.assertIn("with ESMTPSA id", held[0])
        text = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertGreaterEqual(metric(text, "ringmx_auth_total", listener="smtps",
                                       mechanism="LOGIN", result="success"), 1)

    def test_wrong_password(self):
        out = swaks(self.sub_port, password="wrong", source="127.0.0.21")
        self.assertIn(b"535 5.7.8 Error: authentication failed", out.stdout)
        text = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertGreaterEqual(metric(text, "ringmx_auth_total", listener="submission",
                                       mechanism="PLAIN", result="failure"), 1)
        self.assertNotIn("wrong", self.srv.log().replace("wrong_", ""))

    def test_plaintext_neither_offered_nor_taken(self):
        c = Client(self.sub_port)
        c.reply()
        code, lines = c.cmd("EHLO client.example.com")
        self.assertFalse([l for l in lines if "AUTH" in l], lines)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain("alice@example.com", "s3cret")),
                         (538, ["538 5.7.11 Encryption required for requested authentication "
                                "mechanism"]))
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com>"),
                         (530, ["530 5.7.0 Authentication required"]))
        c.close()

    def test_sender_must_belong_to_the_login(self):
        c = starttls_client(self.sub_port)
        self.assertTrue([l for l in c.ehlo if l[4:] == "AUTH PLAIN LOGIN"], c.ehlo)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain("alice@example.com", "s3cret"))[0], 235)
        self.assertEqual(c.cmd("MAIL FROM:<bob@example.com>"),
                         (553, ["553 5.7.1 Error: sender address not owned by the "
                                "authenticated user"]))
        self.assertEqual(c.cmd("MAIL FROM:<news@lists.example.com>")[0], 250)  # the file's @domain
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<>")[0], 250)
        c.close()
        # bob is not in the file: only his own address.
        out = swaks(self.sub_port, user="bob@example.com", password="hunter2!",
                    frm="alice@example.com")
        self.assertIn(b"553 5.7.1", out.stdout)
        wait_for(lambda: "event=sender_login_mismatch" in self.srv.log(), what="the log line")

    def test_no_relay_without_auth(self):
        c = Client(self.srv.port)
        c.reply()
        c.cmd("EHLO client.example.com")
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.net>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<friend@foreign.example>"),
                         (550, ["550 5.7.1 Error: relay access denied"]))
        c.close()
        # On the smtps listener (auth optional), a client that did not authenticate.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = Client(self.smtps_port)
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
        c.reply()
        c.cmd("EHLO client.example.com")
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.net>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<friend@foreign.example>")[0], 550)
        c.close()

    def test_front_door_refusal_waits_for_auth(self):
        # The port-25 listener refuses the HELO at once.
        c = Client(self.srv.port)
        c.reply()
        self.assertEqual(c.cmd("EHLO " + BAD_HELO)[0], 550)
        c.close()
        # On submission the same HELO passes; AUTH spares the user the check.
        c = starttls_client(self.sub_port, helo=BAD_HELO)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain("alice@example.com", "s3cret"))[0], 235)
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com>")[0], 250)
        c.close()
        # Without AUTH (the smtps listener takes MAIL before it) the refusal comes at MAIL.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = Client(self.smtps_port)
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
        c.reply()
        self.assertEqual(c.cmd("EHLO " + BAD_HELO)[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.net>")[0], 550)
        c.close()
        # Counted under the stage that found it, once it applied: port 25's and this one.
        text = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertGreaterEqual(metric(text, "ringmx_rejects_total", stage="helo", check="helo"), 2)

    def test_no_greeting_delay_on_submission(self):
        for port, at_least, at_most in ((self.sub_port, 0, 0.5), (self.srv.port, 1.5, 10)):
            t = time.monotonic()
            c = Client(port)
            self.assertEqual(c.reply()[0], 220)
            took = time.monotonic() - t
            c.close()
            self.assertGreaterEqual(took, at_least, port)
            self.assertLess(took, at_most, port)

    def test_brute_force_is_slowed_then_blocked_and_recovers(self):
        src = "127.0.0.33"
        c = starttls_client(self.sub_port, source=src)
        waits = []
        for _ in range(3):
            t = time.monotonic()
            code, _ = c.cmd("AUTH PLAIN " + plain("nobody@example.com", "guess"))
            waits.append(time.monotonic() - t)
            self.assertEqual(code, 535)
        # 200 ms, then doubled (Dovecot's own FAIL takes up to 0.5 s more).
        self.assertGreaterEqual(waits[0], 0.2)
        self.assertGreaterEqual(waits[1], 0.4)
        self.assertGreaterEqual(waits[2], 0.6)
        code, lines = c.cmd("AUTH PLAIN " + plain("nobody@example.com", "guess"))
        self.assertEqual(code, 421, lines)
        self.assertTrue(c.closed())
        # The address is refused at connect; another is not.
        c = Client(self.sub_port, source=(src, 0))
        self.assertEqual(c.reply()[0], 421)
        c.close()
        other = Client(self.sub_port, source=("127.0.0.34", 0))
        self.assertEqual(other.reply()[0], 220)
        other.close()
        wait_for(lambda: "event=auth_blocked" in self.srv.log(), what="the auth_blocked line")
        # block_s later it may try again, and the right password works.
        time.sleep(3.2)
        out = swaks(self.sub_port, source=src, frm="alice@example.com")
        self.assertIn(b"235 2.7.0", out.stdout, out.stdout.decode()[-1500:])
        text = http_get(self.srv.admin_port, "/metrics")[1]
        self.assertGreaterEqual(metric(text, "ringmx_auth_blocked_connections_total"), 1)


class BackendTrouble(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0 or not SWAKS:
            print("SKIP: needs root and swaks", file=sys.stderr)
            sys.exit(SKIP)
        problem = install_dovecot()
        if problem:
            print("SKIP: " + problem, file=sys.stderr)
            sys.exit(SKIP)

    def test_dovecot_stopped_then_back(self):
        dovecot = DovecotAuth(USERS).start()
        d = os.path.join(dovecot.base, "ringmx")
        os.makedirs(d)
        try:
            srv = Server(config("unix:" + dovecot.socket, 9, "", d), shards=1,
                         listener_toml='tls = "starttls"\nauth = "required"\n').start()
            try:
                self.assertIn(b"235 2.7.0", swaks(srv.port).stdout)
                dovecot.stop()
                t = time.monotonic()
                out = swaks(srv.port)
                self.assertIn(b"454 4.7.0 Temporary authentication failure", out.stdout)
                self.assertLess(time.monotonic() - t, 5)
                dovecot.start()
                # Within a second of a failure AUTH is answered at once; then it asks again.
                got = wait_for(lambda: b"235 2.7.0" in swaks(srv.port).stdout, timeout=20,
                               what="AUTH works again")
                self.assertTrue(got)
            finally:
                self.assertEqual(srv.stop(), 0, srv.log())
        finally:
            dovecot.stop()
            dovecot.cleanup()

    def test_hanging_backend_times_out_others_go_on(self):
        d = os.path.join("/var/spool", "ringmx-hang-%d" % os.getpid())
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "auth")
        hang = HangingBackend(path)
        try:
            srv = Server(config("unix:" + path, 9, "", d, extra="max_pending = 1\n"), shards=1,
                         listener_toml='tls = "starttls"\nauth = "optional"\n').start()
            try:
                result = {}

                def auth():
                    t = time.monotonic()
                    result["out"] = swaks(srv.port)
                    result["took"] = time.monotonic() - t

                th = threading.Thread(target=auth)
                th.start()
                time.sleep(0.3)
                # Meanwhile the shard serves another session.
                c = Client(srv.port)
                t = time.monotonic()
                self.assertEqual(c.reply()[0], 220)
                self.assertEqual(c.cmd("EHLO other.example.com")[0], 250)
                self.assertEqual(c.cmd("NOOP")[0], 250)
                self.assertLess(time.monotonic() - t, 0.5)
                c.close()
                # max_pending = 1: a second AUTH meanwhile is refused at once.
                c = starttls_client(srv.port)
                t = time.monotonic()
                self.assertEqual(c.cmd("AUTH PLAIN " + plain("bob@example.com", "x")),
                                 (454, ["454 4.7.0 Temporary authentication failure"]))
                self.assertLess(time.monotonic() - t, 0.5)
                c.close()
                th.join(30)
                self.assertIn(b"454 4.7.0 Temporary authentication failure",
                              result["out"].stdout)
                self.assertGreaterEqual(result["took"], 1.0)
                text = http_get(srv.admin_port, "/metrics")[1]
                self.assertEqual(metric(text, "ringmx_auth_total", listener="smtp",
                                        mechanism="PLAIN", result="timeout"), 1)
                self.assertRegex(srv.log(), r"event=auth .*result=timeout")
            finally:
                self.assertEqual(srv.stop(), 0, srv.log())
        finally:
            hang.close()
            shutil.rmtree(d, ignore_errors=True)


# `doveadm pw -s ARGON2ID -p s3cret` (Dovecot's own prefix included).
ARGON2ID_S3CRET = ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$UgVtfS8MzisxKdDZOzUcNg$"
                   "Il3TZdRDDBAz49Wb829f5XCl8Ug4Jwa6zjxCmK9P9g4")


def crypt_hash(password, scheme):
    """A crypt(3) hash of `password` made by openssl ("-6": sha512-crypt, "-5": sha256-crypt)."""
    p = subprocess.run(["openssl", "passwd", scheme, password], capture_output=True, timeout=30,
                       check=True)
    return p.stdout.decode().strip()


class FileBackend(unittest.TestCase):
    """[auth] backend = "file": no Dovecot, crypt(3) hashes verified off the shard."""

    @classmethod
    def setUpClass(cls):
        if not SWAKS:
            print("SKIP: needs swaks", file=sys.stderr)
            sys.exit(SKIP)
        cls.dir = os.path.join("/tmp", "ringmx-authfile-%d" % os.getpid())
        os.makedirs(cls.dir, exist_ok=True)
        cls.users = os.path.join(cls.dir, "users")
        cls.lines = ["alice@example.com:%s\n" % crypt_hash("s3cret", "-6"),
                     "bob@example.com:{SHA256-CRYPT}%s::::::\n" % crypt_hash("hunter2!", "-5"),
                     "erin@example.com:%s\n" % ARGON2ID_S3CRET]
        with open(cls.users, "w") as f:
            f.writelines(cls.lines)
        crt, key = make_cert(cls.dir)
        cls.srv = Server('[tls]\ncert = "%s"\nkey = "%s"\n'
                         '[auth]\nbackend = "file"\nusers_file = "%s"\nhash_workers = 2\n'
                         'failure_delay_ms = 0\n' % (crt, key, cls.users), shards=2,
                         listener_toml='tls = "starttls"\nauth = "required"\n').start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def test_users_and_hashes(self):
        self.assertIn(b"235 2.7.0", swaks(self.srv.port, to="x@example.org").stdout)
        out = swaks(self.srv.port, auth="LOGIN", user="bob@example.com", password="hunter2!",
                    frm="bob@example.com", to="x@example.org")
        self.assertIn(b"235 2.7.0", out.stdout, out.stdout.decode()[-1500:])
        self.assertIn(b"535 5.7.8",
                      swaks(self.srv.port, password="s3cret!", to="x@example.org").stdout)
        out = swaks(self.srv.port, user="erin@example.com", frm="erin@example.com",
                    to="x@example.org")
        self.assertIn(b"235 2.7.0", out.stdout, out.stdout.decode()[-1500:])
        # An unknown user costs a hash too, and is refused the same way.
        self.assertIn(b"535 5.7.8", swaks(self.srv.port, user="carol@example.com",
                                          frm="carol@example.com", to="x@example.org").stdout)
        self.assertNotIn("s3cret", self.srv.log())

    def test_reload_reads_the_file_again(self):
        carol = "carol@example.com:%s\n" % crypt_hash("pw-carol", "-6")
        with open(self.users, "w") as f:
            f.writelines(self.lines + [carol])
        mark = len(self.srv.log())
        self.srv.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=config_reloaded" in self.srv.log()[mark:], what="reload")
        out = swaks(self.srv.port, user="carol@example.com", password="pw-carol",
                    frm="carol@example.com", to="x@example.org")
        self.assertIn(b"235 2.7.0", out.stdout, out.stdout.decode()[-1500:])
        # A bad line: the reload fails and the users stay as they were.
        with open(self.users, "w") as f:
            f.writelines(self.lines + ["dave@example.com:{PLAIN}pw\n"])
        mark = len(self.srv.log())
        self.srv.send_signal(signal.SIGHUP)
        wait_for(lambda: "auth.users_file" in self.srv.log()[mark:], what="the refused reload")
        out = swaks(self.srv.port, user="carol@example.com", password="pw-carol",
                    frm="carol@example.com", to="x@example.org")
        self.assertIn(b"235 2.7.0", out.stdout)


if __name__ == "__main__":
    main()
