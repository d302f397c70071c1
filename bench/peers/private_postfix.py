"""A private Postfix instance for benchmarks and tests: its own config, queue
and log under a temporary directory (in /var/spool by default: file creation
in /tmp is slow on these machines), smtpd services on loopback ports,
everything delivered to `discard`. Started with `postfix -c DIR start`,
stopped with `postfix -c DIR stop`, and its master killed by PID if it
lingers. Needs root and Debian's postfix package (no system instance is
touched)."""

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

POSTFIX = "/usr/sbin/postfix"


def free_port():
    """A free port below the ephemeral range, so no client socket takes it first."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def make_cert(directory, kind="ecdsa", cn="test"):
    """A self-signed certificate and key (ECDSA P-256 or RSA-2048) in `directory`."""
    cert = os.path.join(directory, kind + "-cert.pem")
    key = os.path.join(directory, kind + "-key.pem")
    algo = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ecdsa" else
            ["-newkey", "rsa:2048"])
    subprocess.run(["openssl", "req", "-x509"] + algo +
                   ["-nodes", "-subj", "/CN=" + cn, "-days", "2", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


class PrivatePostfix:
    """`services` maps a name to extra smtpd options (one loopback port each, in
    `ports`); `cert`/`key` default to a fresh ECDSA certificate; `cpus` pins the
    master and everything it forks (taskset list, e.g. "0"); `extra_main` is
    appended to main.cf."""

    def __init__(self, services, cert=None, key=None, cpus=None, extra_main="",
                 base_dir="/var/spool"):
        self.services = dict(services)
        self.cpus = cpus
        self.base = tempfile.mkdtemp(prefix="ringmx-pf-", dir=base_dir)
        os.chmod(self.base, 0o755)
        self.conf = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "queue")
        data = os.path.join(self.base, "data")
        for d in (self.conf, self.queue, data):
            os.makedirs(d)
        shutil.chown(data, "postfix")
        self.maillog = os.path.join(self.base, "maillog")
        self.ports = {name: free_port() for name in self.services}
        self.master = None
        if cert is None:
            cert, key = make_cert(self.conf)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main_cf(self.queue, data, self.maillog, self.base))
            f.write(POSTFIX_TLS_MAIN_CF.format(cert=cert, key=key))
            f.write(extra_main)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            for name, opts in self.services.items():
                f.write("127.0.0.1:%d inet n - n - - smtpd %s\n" % (self.ports[name], opts))
            f.write(POSTFIX_MASTER_CF)

    def start(self):
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        p = subprocess.run(pin + [POSTFIX, "-c", self.conf, "start"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("postfix start failed: %s" % p.stdout.decode(errors="replace"))
        pid_file = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.monotonic() + 10
        while self.master is None and time.monotonic() < deadline:
            try:
                with open(pid_file) as f:
                    self.master = int(f.read().strip() or 0) or None
            except OSError:
                time.sleep(0.05)
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("Postfix smtpd is not listening on %d" % port)
                    time.sleep(0.05)
        return self

    def stop(self):
        subprocess.run([POSTFIX, "-c", self.conf, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        if self.master:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(self.master, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(self.master, 9)  # by PID: the master this instance started
        shutil.rmtree(self.base, ignore_errors=True)

    def log_size(self):
        try:
            return os.path.getsize(self.maillog)
        except OSError:
            return 0

    def log(self, since, lines, timeout=20):
        """The mail log from byte offset `since` (a log_size() taken before the
        run), once it holds `lines` smtpd "disconnect from" lines: postlogd
        writes asynchronously and lags on a busy machine."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.maillog, "rb") as f:
                    f.seek(since)
                    text = f.read().decode(errors="replace")
            except OSError:
                text = ""
            if text.count("]: disconnect from ") >= lines or time.monotonic() > deadline:
                time.sleep(0.2)  # anything else written with the last line
                return text
            time.sleep(0.1)


POSTFIX_MAIN_CF = """compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = pf-bench.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination =
relay_domains =
local_recipient_maps =
relay_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8 10.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
default_process_limit = {process_limit}
maillog_file = {maillog}
maillog_file_prefixes = {base}
biff = no
"""

POSTFIX_TLS_MAIN_CF = """smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
"""


def main_cf(queue, data, maillog, base, process_limit=200):
    """main.cf of a private instance: loopback only, no DNS, everything to discard."""
    return POSTFIX_MAIN_CF.format(queue=queue, data=data, maillog=maillog, base=base,
                                  process_limit=process_limit)

POSTFIX_MASTER_CF = """pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def write_config(conf_dir, queue, data, maillog, base, port, process_limit):
    """main.cf and master.cf of a private instance with one smtpd on 127.0.0.1:port, as
    compare.py and postfix_compare.sh both run it (no TLS lines)."""
    with open(os.path.join(conf_dir, "main.cf"), "w") as f:
        f.write(main_cf(queue, data, maillog, base, process_limit=process_limit))
    with open(os.path.join(conf_dir, "master.cf"), "w") as f:
        f.write("127.0.0.1:%d inet n - n - - smtpd\n" % port)
        f.write(POSTFIX_MASTER_CF)


if __name__ == "__main__":
    # For shell scripts: private_postfix.py config CONF QUEUE DATA MAILLOG BASE PORT PROCESS_LIMIT
    import sys
    if len(sys.argv) != 9 or sys.argv[1] != "config":
        sys.exit("usage: private_postfix.py config CONF QUEUE DATA MAILLOG BASE PORT PROCESS_LIMIT")
    c, q, d, m, b, port, limit = sys.argv[2:]
    write_config(c, q, d, m, b, int(port), int(limit))
