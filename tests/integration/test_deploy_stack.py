"""The deployment docs/deploy.md walks through, run with its very files: the
real HAProxy with deploy/haproxy.cfg in front, two ringmx nodes each running
deploy/ringmx-edge.toml behind it, a real Dovecot LMTP inside, and the real
Prometheus with deploy/prometheus.yml (and alerts.yml) scraping both nodes.
Only addresses, ports, paths, names and scrape intervals are replaced by
loopback test values. Mail sent to HAProxy from chosen 127.x source addresses
(STARTTLS on port "25", implicit TLS on "465") lands in the Dovecot mailboxes
with Received headers naming those addresses; both nodes take a share;
Prometheus sees both nodes up and counts every delivery.

Needs haproxy, prometheus, openssl and Dovecot (installed by dev.sh); exits 77
without them."""

import json
import os
import shutil
import ssl
import sys
import tempfile
import unittest

from harness import SKIP, Client, Dnsmasq, Server, main, make_cert, wait_for
from test_bench_lmtp import DOMAIN, Dovecot, install_dovecot
from test_haproxy import HAPROXY, NODE_A, NODE_B, HAProxy, free_port_on, haproxy_config
from test_prometheus_scrape import PROMETHEUS, Prometheus

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY = os.path.join(HERE, "..", "..", "deploy")


def substitute(text, subs, name):
    for old, new in subs:
        assert old in text, "%s no longer has %r" % (name, old)
        text = text.replace(old, new)
    return text


def edge_toml(srv, node, host, ports, cert, dovecot_port):
    with open(os.path.join(DEPLOY, "ringmx-edge.toml")) as f:
        text = f.read()
    return substitute(text, [
        ('hostname = "mx1.example.org"', 'hostname = "mx%d.test"' % node),
        ('"/var/spool/ringmx"', '"%s"' % srv.spool),
        ('"10.0.1.21:9425"', '"%s:%d"' % (host, ports["admin"])),
        ('"10.0.0.21:2525"', '"%s:%d"' % (host, ports["smtp"])),
        ('"10.0.0.21:4650"', '"%s:%d"' % (host, ports["tls"])),
        ('trusted_proxies = ["10.0.0.10"]', 'trusted_proxies = ["127.0.0.1"]'),
        ('"/etc/ringmx/tls/mx.example.org.crt"', '"%s"' % cert[0]),
        ('"/etc/ringmx/tls/mx.example.org.key"', '"%s"' % cert[1]),
        ('domains = ["example.org"]', 'domains = ["%s"]' % DOMAIN),
        ('"lmtp://10.0.0.30:24"', '"lmtp://127.0.0.1:%d"' % dovecot_port),
        ('servers = ["127.0.0.1"]', 'servers = ["127.0.0.1:%d"]' % ports["dns"]),
    ], "deploy/ringmx-edge.toml")


def prometheus_yml(ports, self_port):
    with open(os.path.join(DEPLOY, "prometheus.yml")) as f:
        text = f.read()
    return substitute(text, [
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("scrape_timeout: 10s", "scrape_timeout: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ('"mx1.example.net:9425"', '"%s:%d"' % (NODE_A, ports["admin"])),
        ('"mx2.example.net:9425"', '"%s:%d"' % (NODE_B, ports["admin"])),
        ('"mx3.example.net:9425"', '"127.0.0.23:%d"' % ports["admin"]),  # nobody: down
        ('["127.0.0.1:9090"]', '["127.0.0.1:%d"]' % self_port),
    ], "deploy/prometheus.yml")


class DeployStack(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ringmx-stack-")
        self.nodes = []
        self.haproxy = self.prometheus = None
        self.dovecot = Dovecot().start()
        # The nodes' DNS: the clients below have forward-confirmed names, the
        # sender's domain an MX, and one client is on the block list.
        records = ["--host-record=c3-%d.clients.test,127.0.3.%d" % (i, i) for i in range(1, 17)]
        records += ["--host-record=c4-%d.clients.test,127.0.4.%d" % (i, i) for i in range(1, 5)]
        records += ["--host-record=listed.clients.test,127.0.5.1",
                    "--address=/1.5.0.127.zen.spamhaus.org/127.0.0.2",
                    "--mx-host=example.net,mx.example.net,10",
                    "--host-record=mx.example.net,192.0.2.25"]
        self.dns = Dnsmasq(records, zones=("test", "127.in-addr.arpa", "example.net",
                                           "zen.spamhaus.org", "list.dnswl.org"))

    def tearDown(self):
        if self.prometheus:
            self.prometheus.stop()
        if self.haproxy:
            self.haproxy.stop()
        for srv in self.nodes:
            rc = srv.stop()
            self.assertEqual(rc, 0, srv.log())
        self.dovecot.stop()
        self.dovecot.cleanup()
        self.dns.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def send(self, port, source, local, tag, implicit_tls=False):
        c = Client(port, source=(source, 0), timeout=20)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if implicit_tls:
            c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.cmd("EHLO sender.test")
        self.assertEqual(code, 250)
        if not implicit_tls:  # STARTTLS is offered on the port-25 path: use it, as MTAs do
            self.assertIn("STARTTLS", " ".join(lines))
            self.assertEqual(c.cmd("STARTTLS")[0], 220)
            c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
            self.assertEqual(c.cmd("EHLO sender.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.net>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<%s@%s>" % (local, DOMAIN))[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"From: sender@example.net\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\n"
               b"Subject: stack\r\nMessage-ID: <%s@stack.test>\r\n\r\nbody\r\n.\r\n"
               % tag.encode())
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        c.cmd("QUIT")
        c.close()

    def delivered(self, local, tag):
        for data in self.dovecot.mailbox(local).values():
            if b"<%s@stack.test>" % tag.encode() in data:
                return data
        return None

    def test_haproxy_ringmx_dovecot_prometheus(self):
        cert = make_cert(self.dir)
        ports = {"smtp": free_port_on(NODE_A, NODE_B), "tls": free_port_on(NODE_A, NODE_B),
                 "admin": free_port_on(NODE_A, NODE_B), "front": free_port_on("127.0.0.1"),
                 "front_tls": free_port_on("127.0.0.1"), "dns": self.dns.port}
        for node, host in ((1, NODE_A), (2, NODE_B)):
            srv = Server(host=host, port=ports["smtp"],
                         config_text=lambda s, node=node, host=host: edge_toml(
                             s, node, host, ports, cert, self.dovecot.port))
            srv.admin_port = ports["admin"]
            self.nodes.append(srv.start())
        self.haproxy = HAProxy(self.dir, lambda sock: haproxy_config(ports, sock,
                                                                     v1_frontend=False))
        self.haproxy.wait_up("mx1", "mx2")
        prom = Prometheus([])
        with open(prom.config, "w") as f:
            f.write(prometheus_yml(ports, prom.port))
        shutil.copy(os.path.join(DEPLOY, "alerts.yml"), os.path.join(prom.dir, "alerts.yml"))
        self.prometheus = prom.start()

        sent = []
        for i in range(16):
            source, local, tag = "127.0.3.%d" % (i + 1), "lock%d" % (i % 3 + 1), "stack%d" % i
            self.send(ports["front"], source, local, tag)
            sent.append((source, local, tag))
        for i in range(4):
            source, local, tag = "127.0.4.%d" % (i + 1), "pipe1", "stacktls%d" % i
            self.send(ports["front_tls"], source, local, tag, implicit_tls=True)
            sent.append((source, local, tag))
        for source, local, tag in sent:
            data = wait_for(lambda: self.delivered(local, tag), timeout=20,
                            what="%s in %s's mailbox" % (tag, local))
            ours = [l for l in data.split(b"\r\n") if b"(ringmx)" in l or b"[127." in l]
            self.assertIn(b"[%s])" % source.encode(), data, ours)
            self.assertIn(b"with ESMTPS", data)
            # The checks saw the client the PROXY header named.
            self.assertIn(b"iprev=pass policy.iprev=%s (" % source.encode(), data)
        # A client on the block list, through HAProxy: refused at connect.
        c = Client(ports["front"], source=("127.0.5.1", 0), timeout=20)
        code, lines = c.reply()
        self.assertEqual(code, 554, lines)
        self.assertIn("listed by zen.spamhaus.org", lines[0])
        c.close()
        def per_node():
            return [len([l for l in srv.log().splitlines()
                         if '"event":"transaction"' in l and '"code":250' in l])
                    for srv in self.nodes]

        # The log is written by a thread of its own, a moment after the 250.
        wait_for(lambda: sum(per_node()) == len(sent), timeout=10,
                 what="a transaction line per message")
        per_node = per_node()
        self.assertTrue(all(n > 0 for n in per_node), per_node)  # HAProxy spread the load
        for srv in self.nodes:  # node logs are JSON, as ringmx-edge.toml says
            for line in srv.log().splitlines():
                json.loads(line)

        def up_nodes():
            data = prom.api("query", query='up{job="ringmx"} == 1')
            return data and sorted(r["metric"]["instance"] for r in data["result"])

        self.assertEqual(prom.until("both nodes scraped", lambda: up_nodes() == [NODE_A, NODE_B]
                                    and up_nodes()), [NODE_A, NODE_B])

        def delivered_total():
            data = prom.api("query", query='sum(ringmx_delivery_total{job="ringmx",'
                                           'result="delivered"})')
            return data and data["result"] and float(data["result"][0]["value"][1]) >= len(sent)

        prom.until("every delivery counted", delivered_total)
        rules = prom.api("rules")
        self.assertTrue(rules["groups"], rules)


if __name__ == "__main__":
    missing = [n for n, p in (("haproxy", HAPROXY), ("prometheus", PROMETHEUS),
                              ("openssl", shutil.which("openssl"))) if p is None]
    err = install_dovecot()
    if missing or err:
        print("SKIP: %s" % (", ".join(missing) or err), file=sys.stderr)
        sys.exit(SKIP)
    main()
