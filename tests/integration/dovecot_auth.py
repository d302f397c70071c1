"""A private Dovecot that only authenticates: no mail protocol (`protocols =
none`), its auth service listening on a unix auth-client socket and on a
loopback TCP port, users from a passwd-file (PLAIN and SHA512-CRYPT
passwords), PLAIN and LOGIN offered. Started as `dovecot -F -c CONF` with its
own base_dir under /var/spool and stopped by PID. install_dovecot() (from
test_bench_lmtp) installs the packages when missing."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import free_port
from test_bench_lmtp import DOVECOT, Dovecot, die_with_parent, install_dovecot  # noqa: F401

CONF = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = ringmx-auth-{port}
protocols = none
listen = 127.0.0.1
ssl = no
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
auth_mechanisms = plain login
auth_failure_delay = 0
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener auth-client {{
    path = {base}/auth-client
    mode = 0666
  }}
  inet_listener auth-inet {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""

START_TIMEOUT = 15
STOP_TIMEOUT = 10


class DovecotAuth(Dovecot):
    """Its log() and cleanup() are the LMTP instance's. `users` maps a user name to its password; the first is stored as
    {PLAIN}, the others hashed ({SHA512-CRYPT} through `doveadm pw`)."""

    def __init__(self, users):
        self.base = tempfile.mkdtemp(prefix="ringmx-dvauth-", dir="/var/spool")
        os.chmod(self.base, 0o755)  # the auth process (user dovecot) reads `users`
        self.port = free_port()
        self.socket = os.path.join(self.base, "auth-client")
        lines = []
        for i, (user, password) in enumerate(users.items()):
            if i == 0:
                scheme = "{PLAIN}" + password
            else:
                p = subprocess.run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", password],
                                   capture_output=True, timeout=30, check=True)
                scheme = p.stdout.decode().strip()
            lines.append("%s:%s::::::\n" % (user, scheme))
        with open(os.path.join(self.base, "users"), "w") as f:
            f.writelines(lines)
        os.chmod(os.path.join(self.base, "users"), 0o644)
        self.conf = os.path.join(self.base, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(base=self.base, port=self.port))
        self.proc = None

    def start(self):
        self.out = open(os.path.join(self.base, "stdout.log"), "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited %d\n%s" % (self.proc.returncode, self.log()))
            if self.handshake_ok():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dovecot's auth socket did not answer\n%s" % self.log())
            time.sleep(0.05)

    def handshake_ok(self):
        """The auth-client socket answers its handshake."""
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(self.socket)
            s.sendall(b"VERSION\t1\t2\nCPID\t1\n")
            got = b""
            while b"DONE\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                got += chunk
            s.close()
            return True
        except OSError:
            return False

    def children(self):
        """PIDs of the processes our master started (its auth and log processes)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if self.proc and ppid == self.proc.pid:
                out.append(int(entry))
        return out

    def stop(self):
        """SIGTERM to our master, SIGKILL after a bound; then its children (an auth
        process outlives its master while it has clients), by PID."""
        if self.proc and self.proc.poll() is None:
            children = self.children()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
