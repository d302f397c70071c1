"""The daemon's log, read as an operator's log shipper would: with
log_format = "json" every line on stderr is one JSON object with an RFC 3339
millisecond timestamp (the start-up line too, and a config error at
start-up); the transaction line names the client, HELO, TLS version, sender,
recipients, size and queue id; a refusal names its reply text and the
argument refused; a reload logs the keys it changed, and switching to logfmt
makes every later line logfmt."""

import json
import os
import re
import signal
import subprocess
import unittest

from harness import BINARY, Client, Server, main, queue_id, transaction, wait_for

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LOGFMT = re.compile(r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warn|error) "
                    r"event=\w+( |$)")


def json_lines(text):
    out = []
    for line in text.splitlines():
        obj = json.loads(line)  # every line is one JSON object
        assert TS.match(obj["ts"]), obj
        assert obj["level"] in ("debug", "info", "warn", "error"), obj
        out.append(obj)
    return out


class Logs(unittest.TestCase):
    def test_json_lines_then_reload_to_logfmt(self):
        srv = Server(extra_toml='log_format = "json"\nmax_connections = 1000\n').start()
        try:
            c = Client(srv.port)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.example")[0], 250)
            code, text = transaction(c, "alice@example.net", ["bob@example.org", "carol@example.org"],
                                     b"Subject: logs\r\n\r\nbody\r\n")
            self.assertEqual(code, 250, text)
            qid = queue_id(text)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.net>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<no-closing-bracket@example.org")[0], 501)
            self.assertEqual(c.cmd("QUIT")[0], 221)
            c.close()

            def lines():
                return json_lines(srv.log())

            wait_for(lambda: any(l["event"] == "disconnect" for l in lines()), timeout=5,
                     what="the disconnect line")
            objs = lines()
            started = [l for l in objs if l["event"] == "started"]
            self.assertEqual(len(started), 1)
            self.assertIn("127.0.0.1:%d" % srv.port, started[0]["smtp"])
            txn = [l for l in objs if l["event"] == "transaction"]
            self.assertEqual(len(txn), 1, objs)
            t = txn[0]
            self.assertEqual((t["qid"], t["client"], t["helo"], t["tls"], t["from"], t["to"],
                              t["rcpts"], t["code"]),
                             (qid, "127.0.0.1", "client.example", "none", "alice@example.net",
                              "bob@example.org,carol@example.org", 2, 250))
            self.assertIsInstance(t["size"], int)
            self.assertGreater(t["size"], 0)
            reply = [l for l in objs if l["event"] == "reply" and l["code"] == 501]
            self.assertEqual(len(reply), 1, objs)
            self.assertEqual(reply[0]["verb"], "RCPT")
            self.assertEqual(reply[0]["arg"], "TO:<no-closing-bracket@example.org")
            self.assertEqual(reply[0]["enhanced"], "5.1.3")
            self.assertTrue(reply[0]["text"], reply[0])

            # A reload: the changed keys are logged; the new format applies from there on.
            offset = len(srv.log().encode())
            with open(srv.config) as f:
                text = f.read()
            text = text.replace('log_format = "json"', 'log_format = "logfmt"')
            text = text.replace("max_connections = 1000", "max_connections = 2000")
            with open(srv.config, "w") as f:
                f.write(text)
            srv.send_signal(signal.SIGHUP)
            wait_for(lambda: "event=reload_done" in srv.log(since=offset), timeout=10,
                     what="the reload line")
            after = srv.log(since=offset)
            done = [l for l in after.splitlines() if "event=reload_done" in l][0]
            self.assertIn("changed=server.log_format,server.max_connections", done)
            c = Client(srv.port)
            c.reply()
            c.cmd("QUIT")
            c.close()
            wait_for(lambda: "event=disconnect" in srv.log(since=offset), timeout=5,
                     what="a line after the reload")
        finally:
            self.assertEqual(srv.stop(), 0, srv.log())
        tail = srv.log(since=offset)
        for line in tail.splitlines():
            if line.startswith("{"):  # a shard's line still in flight from before the switch
                json.loads(line)
                continue
            self.assertRegex(line, LOGFMT)
        self.assertIn("event=stopped", tail)

    def test_config_error_at_start_is_a_log_line(self):
        srv = Server(extra_toml='log_format = "json"\nmax_connections = 0\n')
        out = subprocess.run([BINARY, "--config", srv.config], capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertEqual(out.stdout, b"")
        objs = json_lines(out.stderr.decode())
        self.assertEqual([o["event"] for o in objs], ["config_error"])
        self.assertIn("server.max_connections", objs[0]["error"])
        # --check-config is a command, not the daemon: plain text for a person.
        out = subprocess.run([BINARY, "--check-config", srv.config], capture_output=True,
                             timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertTrue(out.stderr.startswith(srv.config.encode() + b":"), out.stderr)
        self.assertIn(b"server.max_connections: must be between 1 and", out.stderr)


if __name__ == "__main__":
    main()
