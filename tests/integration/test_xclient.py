"""XCLIENT (Postfix's extension) against a real client that speaks it: swaks.
A listener with xclient_hosts = ["127.0.0.1"] offers XCLIENT to clients from
127.0.0.1 only; swaks names another client with it (address, port, name,
HELO, protocol, login), and the stored message's Received header and the log
carry that client. From 127.0.0.2 XCLIENT is neither offered nor honoured.

Needs swaks; exits 77 without it."""

import re
import shutil
import subprocess
import sys
import unittest

from harness import Client, SKIP, Server, main, wait_for

SWAKS = shutil.which("swaks")


def swaks(port, *args, source=None):
    cmd = [SWAKS, "--server", "127.0.0.1:%d" % port, "--from", "a@example.net",
           "--to", "b@example.org", "--helo", "frontend.test", "--header", "Subject: xclient"]
    if source:
        cmd += ["--local-interface", source]
    return subprocess.run(cmd + list(args), capture_output=True, timeout=30)


class Xclient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(listener_toml='xclient_hosts = ["127.0.0.1"]\n').start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, "exit code %s\n%s" % (rc, cls.srv.log())

    def test_trusted_client_names_another(self):
        out = swaks(self.srv.port, "--xclient-addr", "192.0.2.50", "--xclient-port", "4444",
                    "--xclient-name", "client.example.net", "--xclient-helo",
                    "client.example.net", "--xclient-proto", "ESMTP", "--xclient-login", "alice")
        text = out.stdout.decode(errors="replace")
        self.assertEqual(out.returncode, 0, text)
        self.assertRegex(text, r"250[- ]XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT")
        self.assertRegex(text, r"<- *220 ")  # the greeting again, after XCLIENT
        records = [m for _, m in self.srv.spool_records().values() if b"Subject: xclient" in m]
        self.assertEqual(len(records), 1)
        head = records[0].split(b"\r\n\r\n")[0]
        self.assertIn(b"Received: from client.example.net (client.example.net [192.0.2.50])",
                      head)
        self.assertIn(b"with ESMTPA id", head)
        self.assertNotIn(b"alice", head)
        self.assertNotIn(b"127.0.0.1", head)
        pattern = re.compile(r"event=xclient .*from=127\.0\.0\.1 client=192\.0\.2\.50 port=4444")
        wait_for(lambda: pattern.search(self.srv.log()), timeout=5, what="the xclient log line")
        # Transactions after XCLIENT are logged under the new client.
        wait_for(lambda: re.search(r"event=disconnect .*client=192\.0\.2\.50 ", self.srv.log()),
                 timeout=5, what="the disconnect line naming the new client")

    def test_other_clients_get_no_xclient(self):
        out = swaks(self.srv.port, "--xclient-addr", "192.0.2.51", source="127.0.0.2")
        self.assertNotEqual(out.returncode, 0)  # swaks will not send what is not offered
        self.assertNotIn(b"192.0.2.51", b"".join(m for _, m in self.srv.spool_records().values()))
        c = Client(self.srv.port, source=("127.0.0.2", 0))
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.cmd("EHLO untrusted.test")
        self.assertEqual(code, 250)
        self.assertFalse(any("XCLIENT" in l for l in lines), lines)
        code, lines = c.cmd("XCLIENT ADDR=192.0.2.51")
        self.assertEqual((code, lines[0]), (550, "550 5.7.0 Error: insufficient authorization"))
        self.assertEqual(c.cmd("QUIT")[0], 221)


if __name__ == "__main__":
    if SWAKS is None:
        print("SKIP: swaks not installed (Debian package swaks)", file=sys.stderr)
        sys.exit(SKIP)
    main()
