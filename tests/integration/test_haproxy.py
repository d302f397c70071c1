"""ringmx behind the real HAProxy (Debian package), started on loopback with
deploy/haproxy.cfg itself (its addresses replaced by loopback ones) plus one
send-proxy (v1) frontend: two ringmx nodes on 127.0.0.21 and 127.0.0.22 read
the PROXY header HAProxy puts in front of every connection. Clients connect to
HAProxy from chosen 127.x.y.z source addresses, and the test checks:
  - the Received header and the log lines name the client's own address
    (v2, v1, and v2 in front of a TLS ClientHello on an implicit-TLS listener);
  - the per-address connection limit counts the client's address, not the
    balancer's (three sessions from one client are let in, a fourth refused,
    another client still served);
  - a connection from outside trusted_proxies, one without a header and one
    whose header never comes are closed without a byte of SMTP, counted and
    logged;
  - draining one node (SIGTERM) while mail keeps flowing through HAProxy
    loses nothing: every message a client saw a 250 for is in a spool,
    exactly once; HAProxy marks the node down and sends new clients to the
    other one.

Needs haproxy; exits 77 without it."""

import csv
import io
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import (Client, Server, SKIP, http_get, main, make_cert, metric, queue_id,
                     transaction,
                     wait_for)

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)
OPENSSL = shutil.which("openssl")
HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY_CFG = os.path.join(HERE, "..", "..", "deploy", "haproxy.cfg")
NODE_A, NODE_B = "127.0.0.21", "127.0.0.22"


def free_port_on(*hosts):
    """A port free on every one of `hosts` (below the ephemeral range)."""
    import random
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        ok = True
        for h in hosts:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise AssertionError("no free port on %s" % (hosts,))


def haproxy_config(ports, stats_sock, v1_frontend=True):
    """deploy/haproxy.cfg with loopback addresses (and a v1 frontend for node A)."""
    with open(DEPLOY_CFG) as f:
        text = f.read()
    subs = [
        ("bind :25\n", "bind 127.0.0.1:%d\n" % ports["front"]),
        ("bind :465\n", "bind 127.0.0.1:%d\n" % ports["front_tls"]),
        ("10.0.0.21:", NODE_A + ":"),
        ("10.0.0.22:", NODE_B + ":"),
        (":2525\n", ":%d\n" % ports["smtp"]),
        ("port 2525 ", "port %d " % ports["smtp"]),
        (":4650\n", ":%d\n" % ports["tls"]),
        ("stats socket /run/haproxy/admin.sock", "stats socket %s" % stats_sock),
    ]
    for old, new in subs:
        assert old in text, "deploy/haproxy.cfg no longer has %r" % old
        text = text.replace(old, new)
    # No syslog socket in a test: HAProxy would warn about /dev/log.
    text = "\n".join(l for l in text.splitlines() if l.strip() != "log /dev/log local0") + "\n"
    # A check every 2 s (the deploy value) would make the drain test slow to see the node
    # go down: the test checks faster. Everything else is the file as shipped.
    text = text.replace("inter 2s", "inter 300ms")
    # The test machine's descriptor limit may be below what 100k connections need.
    text = text.replace("maxconn 100000", "maxconn 2000")
    if not v1_frontend:
        return text
    text += ("\nfrontend test_v1\n    bind 127.0.0.1:%d\n    default_backend test_v1\n"
             "backend test_v1\n    default-server send-proxy\n    server a1 %s:%d\n"
             % (ports["front_v1"], NODE_A, ports["v1"]))
    # An IPv6 client: HAProxy sends it in a v2 header over IPv4 to the nodes.
    text += ("\nfrontend test_v6\n    bind [::1]:%d\n    default_backend ringmx_smtp\n"
             % ports["front_v6"])
    return text


class HAProxy:
    """The real haproxy in the foreground (-db) with a config text, stopped by its PID; its
    runtime API (a stats socket in its directory) tells the servers' states."""

    def __init__(self, directory, config_for):
        self.dir = directory
        self.stats_sock = os.path.join(directory, "admin.sock")
        self.cfg = os.path.join(directory, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(config_for(self.stats_sock))
        check = subprocess.run([HAPROXY, "-c", "-f", self.cfg], capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        self.log_file = open(os.path.join(directory, "haproxy.log"), "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=self.log_file,
                                     stderr=subprocess.STDOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()

    def stats(self):
        """`show stat` rows."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(self.stats_sock)
                s.sendall(b"show stat\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return []
        text = data.decode().lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def states(self, backend="ringmx_smtp"):
        return {r["svname"]: r["status"].split()[0] for r in self.stats()
                if r.get("pxname") == backend and r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_up(self, *servers):
        wait_for(lambda: all(self.states().get(sv) == "UP" for sv in servers), timeout=20,
                 what="HAProxy to see %s up" % ", ".join(servers))


class HAProxyEdge(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nodes = {}
        cls.haproxy = None
        try:
            cls.start_all()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_all(cls):
        cls.dir = tempfile.mkdtemp(prefix="ringmx-haproxy-")
        cls.crt, cls.key = make_cert(cls.dir)
        cls.ports = {
            "smtp": free_port_on(NODE_A, NODE_B),
            "tls": free_port_on(NODE_A, NODE_B),
            "v1": free_port_on(NODE_A),
            "front": free_port_on("127.0.0.1"),
            "front_tls": free_port_on("127.0.0.1"),
            "front_v1": free_port_on("127.0.0.1"),
            "front_v6": free_port_on("127.0.0.1"),
        }
        for name, host in (("a", NODE_A), ("b", NODE_B)):
            extra = ('max_connections_per_ip = 3\nproxy_timeout_ms = 500\n'
                     '[tls]\ncert = "%s"\nkey = "%s"\n' % (cls.crt, cls.key))
            listeners = ('proxy_protocol = "v2"\ntrusted_proxies = ["127.0.0.1"]\n'
                         '[[listener]]\nname = "smtps"\naddress = "%s:%d"\ntls = "implicit"\n'
                         'proxy_protocol = "v2"\ntrusted_proxies = ["127.0.0.1"]\n'
                         % (host, cls.ports["tls"]))
            if name == "a":
                listeners += ('[[listener]]\nname = "v1"\naddress = "%s:%d"\n'
                              'proxy_protocol = "v1"\ntrusted_proxies = ["127.0.0.0/30"]\n'
                              % (host, cls.ports["v1"]))
            cls.nodes[name] = Server(extra_toml=extra, listener_toml=listeners, host=host,
                                     port=cls.ports["smtp"], shards=2).start()
        cls.haproxy = HAProxy(cls.dir, lambda sock: haproxy_config(cls.ports, sock))
        cls.haproxy.wait_up("mx1", "mx2")

    @classmethod
    def tearDownClass(cls):
        if cls.haproxy is not None:
            cls.haproxy.stop()
        for node in cls.nodes.values():
            rc = node.stop()
            assert rc == 0, "exit code %s\n%s" % (rc, node.log())

    def stored(self, tag):
        """(node name, message) of the message carrying `tag`, from whichever spool has it."""
        found = []
        for name, node in self.nodes.items():
            for _, message in node.spool_records().values():
                if tag.encode() in message:
                    found.append((name, message))
        self.assertEqual(len(found), 1, "message %s stored %d times" % (tag, len(found)))
        return found[0]

    def send_one(self, port, source, tag, wrap=None):
        c = Client(port, source=(source, 0))
        if wrap:
            c.sock = wrap(c.sock)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        code, text = transaction(c, "a@example.net", ["b@example.org"],
                                 b"Subject: " + tag.encode() + b"\r\n\r\nbody\r\n")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.close()
        return queue_id(text)

    def test_1_v2_names_the_client(self):
        self.send_one(self.ports["front"], "127.0.0.7", "tag-v2")
        name, message = self.stored("tag-v2")
        self.assertIn(b"[127.0.0.7]", message.split(b"\r\n\r\n")[0])
        self.assertNotIn(b"[127.0.0.1]", message.split(b"\r\n\r\n")[0])
        node = self.nodes[name]
        pattern = re.compile(r"event=connect .*client=127\.0\.0\.7 .*proxy=127\.0\.0\.1 ")
        wait_for(lambda: pattern.search(node.log()), timeout=5, what="the connect log line")

    def test_2_v1_names_the_client(self):
        self.send_one(self.ports["front_v1"], "127.0.0.8", "tag-v1")
        name, message = self.stored("tag-v1")
        self.assertEqual(name, "a")
        self.assertIn(b"[127.0.0.8]", message.split(b"\r\n\r\n")[0])

    def test_3_header_in_front_of_a_client_hello(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.send_one(self.ports["front_tls"], "127.0.0.9", "tag-tls",
                      wrap=lambda s: ctx.wrap_socket(s, server_hostname="mx.test"))
        _, message = self.stored("tag-tls")
        head = message.split(b"\r\n\r\n")[0]
        self.assertIn(b"[127.0.0.9]", head)
        self.assertIn(b"ESMTPS", head)

    def test_3b_ipv6_client(self):
        c = Client(self.ports["front_v6"], host="::1")
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client6.test")[0], 250)
        code, text = transaction(c, "a@example.net", ["b@example.org"],
                                 b"Subject: tag-v6\r\n\r\nbody\r\n")
        self.assertEqual(code, 250, text)
        c.cmd("QUIT")
        c.close()
        _, message = self.stored("tag-v6")
        self.assertIn(b"(unknown [IPv6:::1])", message.split(b"\r\n\r\n")[0])

    def test_4_per_address_limit_counts_the_client(self):
        held = []
        try:
            for _ in range(3):
                c = Client(self.ports["front_v1"], source=("127.0.0.11", 0))
                self.assertEqual(c.reply()[0], 220)
                held.append(c)
            c = Client(self.ports["front_v1"], source=("127.0.0.11", 0))
            code, lines = c.reply()
            self.assertEqual(code, 421, lines)
            self.assertIn("4.7.0", lines[0])
            c.close()
            # Another client behind the same balancer is not the one over its limit.
            other = Client(self.ports["front_v1"], source=("127.0.0.12", 0))
            self.assertEqual(other.reply()[0], 220)
            held.append(other)
        finally:
            for c in held:
                c.close()

    def direct(self, source, send=b""):
        """A connection straight to node A's PROXY listener: what it got back, how it ended."""
        s = socket.create_connection((NODE_A, self.ports["smtp"]), timeout=5,
                                     source_address=(source, 0))
        if send:
            s.sendall(send)
        got = b""
        started = time.monotonic()
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        finally:
            s.close()
        return got, time.monotonic() - started

    def test_5_untrusted_bad_and_slow_headers_are_refused(self):
        a = self.nodes["a"]

        def count(result):
            _, body = http_get(a.admin_port, "/metrics")
            return metric(body, "ringmx_connections_total", listener="smtp", result=result) or 0

        before = {r: count(r) for r in ("proxy_untrusted", "proxy_error", "proxy_timeout")}
        got, _ = self.direct("127.0.0.5", b"PROXY TCP4 192.0.2.1 192.0.2.2 1 25\r\nEHLO x\r\n")
        self.assertEqual(got, b"")  # not trusted: no banner, header not believed
        got, _ = self.direct("127.0.0.1", b"EHLO no.header.test\r\n")
        self.assertEqual(got, b"")
        got, _ = self.direct("127.0.0.1", b"PROXY TCP4 192.0.2.1 192.0.2.2 1 25\r\n")
        self.assertEqual(got, b"")  # a v1 header on a v2 listener
        got, took = self.direct("127.0.0.1")
        self.assertEqual(got, b"")
        self.assertGreater(took, 0.3)  # proxy_timeout_ms = 500
        self.assertLess(took, 4)
        wait_for(lambda: count("proxy_untrusted") >= before["proxy_untrusted"] + 1 and
                 count("proxy_error") >= before["proxy_error"] + 2 and
                 count("proxy_timeout") >= before["proxy_timeout"] + 1, timeout=5,
                 what="the refusals to be counted")
        wait_for(lambda: "result=proxy_timeout" in a.log(), timeout=5, what="the log lines")
        log = a.log()
        self.assertRegex(log, r"proxy_refused .*peer=127\.0\.0\.5 .*result=proxy_untrusted")
        self.assertRegex(log, r"proxy_refused .*result=proxy_error .*reason=\"?bad PROXY header")
        self.assertRegex(log, r"proxy_refused .*result=proxy_timeout")

    def test_6_header_split_over_reads_with_smtp_behind_it(self):
        """A v2 header in three pieces (read separately), its last piece followed by a
        command in the same segment: the header is assembled, the command is the session's."""
        import struct
        header = (b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11" + struct.pack("!H", 12) +
                  socket.inet_aton("192.0.2.77") + socket.inet_aton("192.0.2.1") +
                  struct.pack("!HH", 40000, 25))
        s = socket.create_connection((NODE_A, self.ports["smtp"]), timeout=5)
        c = Client.__new__(Client)
        c.sock, c.buf = s, b""
        try:
            s.sendall(header[:5])
            time.sleep(0.1)
            s.sendall(header[5:17])
            time.sleep(0.1)
            s.sendall(header[17:] + b"EHLO split.test\r\n")
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.reply()[0], 250)
            code, text = transaction(c, "a@example.net", ["b@example.org"],
                                     b"Subject: tag-split\r\n\r\nbody\r\n")
            self.assertEqual(code, 250, text)
        finally:
            s.close()
        name, message = self.stored("tag-split")
        self.assertEqual(name, "a")
        self.assertIn(b"[192.0.2.77]", message.split(b"\r\n\r\n")[0])

    def test_7_connections_waiting_for_a_header_count_against_the_limit(self):
        """Header-less connections hold a slot of max_connections until proxy_timeout_ms:
        at the limit a client with a header is refused (421 4.3.2); once they time out,
        it is served."""
        srv = Server(extra_toml="max_connections = 2\nproxy_timeout_ms = 1500\n",
                     listener_toml='proxy_protocol = "v1"\ntrusted_proxies = ["127.0.0.1"]\n')
        srv.start()
        held = []
        try:
            for _ in range(2):
                held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))

            def sessions():
                return metric(http_get(srv.admin_port, "/metrics")[1], "ringmx_sessions_active")

            wait_for(lambda: sessions() == 2, timeout=5, what="both connections accepted")
            c = Client(srv.port)
            c.send(b"PROXY TCP4 192.0.2.40 192.0.2.1 4000 25\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 421, lines)
            self.assertIn("4.3.2", lines[0])
            c.close()
            for s in held:  # the server closes them unserved at the header deadline
                s.settimeout(5)
                self.assertEqual(s.recv(100), b"")
            c = Client(srv.port)
            c.send(b"PROXY TCP4 192.0.2.41 192.0.2.1 4001 25\r\n")
            self.assertEqual(c.reply()[0], 220)
            c.cmd("QUIT")
            c.close()
        finally:
            for s in held:
                s.close()
            self.assertEqual(srv.stop(), 0, srv.log())

    def test_9_draining_a_node_loses_nothing(self):
        stop = threading.Event()
        lock = threading.Lock()
        acked = {}      # tag -> node it was accepted by (from the spools, later)
        retries = [0]
        errors = []
        counter = [0]

        def worker(n):
            src = "127.0.1.%d" % (n + 1)
            while not stop.is_set():
                with lock:
                    counter[0] += 1
                    tag = "drain-%05d" % counter[0]
                for attempt in range(20):
                    try:
                        c = Client(self.ports["front"], source=(src, 0), timeout=10)
                        code, lines = c.reply()
                        if code != 220:
                            raise ConnectionError("banner %s" % lines)
                        if c.cmd("EHLO load.test")[0] != 250:
                            raise ConnectionError("EHLO refused")
                        if c.cmd("MAIL FROM:<a@example.net>")[0] != 250:
                            raise ConnectionError("MAIL refused")
                        if c.cmd("RCPT TO:<b@example.org>")[0] != 250:
                            raise ConnectionError("RCPT refused")
                        if c.cmd("DATA")[0] != 354:
                            raise ConnectionError("DATA refused")
                        c.send(b"Subject: " + tag.encode() + b"\r\n\r\nx\r\n.\r\n")
                        code, lines = c.reply()
                        c.close()
                        if code == 250:
                            with lock:
                                acked[tag] = True
                            break
                        raise ConnectionError("end of data: %s" % lines)
                    except (OSError, ConnectionError):
                        with lock:
                            retries[0] += 1
                        time.sleep(0.05)
                else:
                    errors.append(tag)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(acked) >= 40, timeout=20, what="mail to flow")
            b = self.nodes["b"]
            b.send_signal(signal.SIGTERM)
            sigterm_at = len(acked)
            self.assertEqual(b.proc.wait(30), 0, b.log())
            wait_for(lambda: self.haproxy.states().get("mx2") == "DOWN", timeout=10,
                     what="HAProxy to mark the drained node down")
            after_down = len(acked)
            wait_for(lambda: len(acked) >= after_down + 40, timeout=20,
                     what="mail to keep flowing to the other node")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(errors, [], "messages never accepted")
        spooled = {}
        for name, node in self.nodes.items():
            for _, message in node.spool_records().values():
                m = re.search(rb"Subject: (drain-\d+)", message)
                if m:
                    tag = m.group(1).decode()
                    self.assertNotIn(tag, spooled, "%s stored twice" % tag)
                    spooled[tag] = name
        missing = [t for t in acked if t not in spooled]
        self.assertEqual(missing, [], "acknowledged but not in any spool")
        on_b = sum(1 for t in acked if spooled[t] == "b")
        self.assertGreater(on_b, 0, "node b took no mail before its drain")
        late = [t for t in acked if int(t.split("-")[1]) > counter[0] - 20]
        self.assertTrue(all(spooled[t] == "a" for t in late), "new mail still went to b")
        print("drain: %d messages acknowledged (%d on b, %d after SIGTERM), %d client retries"
              % (len(acked), on_b, len(acked) - sigterm_at, retries[0]), file=sys.stderr)


if __name__ == "__main__":
    if HAPROXY is None or OPENSSL is None:
        print("SKIP: haproxy or openssl not installed (Debian packages haproxy, openssl)",
              file=sys.stderr)
        sys.exit(SKIP)
    main()
