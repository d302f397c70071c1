#!/usr/bin/env python3
"""Server RSS growth per idle connection: starts ringmx on loopback, opens N
connections (spread over source addresses 127.0.0.2-9, from several client
processes so no one process needs N descriptors), waits until every one is
greeted, and reports (RSS with N open - RSS before) / N.
N defaults to 20,000, capped by the server's descriptor limit (RLIMIT_NOFILE
hard limit minus 256). Bounded: gives up after 120 s.
Usage: idle_memory.py RINGMX_BINARY [N]"""

import multiprocessing as mp
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time

PER_WORKER = 8000


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker(port, count, offset, report, done):
    raise_nofile()
    sel = selectors.DefaultSelector()
    socks = []
    greeted = 0
    deadline = time.monotonic() + 120
    for i in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.bind(("127.0.0.%d" % (2 + (offset + i) % 8), 0))
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        if i % 500 == 499:
            for key, _ in sel.select(timeout=0):
                greeted += key.fileobj.recv(512).startswith(b"220")
                sel.unregister(key.fileobj)
    while greeted < count and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            greeted += key.fileobj.recv(512).startswith(b"220")
            sel.unregister(key.fileobj)
    report.put(greeted)
    done.wait(180)
    for s in socks:
        s.close()


def main():
    binary = sys.argv[1]
    raise_nofile()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    if n > hard - 256:
        print("note: RLIMIT_NOFILE hard limit is %d here; measuring %d connections" %
              (hard, hard - 256))
        n = hard - 256
    tmp = tempfile.mkdtemp(prefix="ringmx-mem-")
    port = free_port()
    cfg = os.path.join(tmp, "ringmx.toml")
    with open(cfg, "w") as f:
        f.write('[server]\nhostname = "mx.bench"\nshards = 2\nlog_level = "warn"\n'
                "max_connections = %d\nmax_connections_per_ip = %d\n"
                '[spool]\ndir = "%s/spool"\n[admin]\nlisten = ""\n'
                '[[listener]]\naddress = "127.0.0.1:%d"\n' % (n + 100, n + 100, tmp, port))
    proc = subprocess.Popen([binary, "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=raise_nofile)
    workers = []
    done = mp.Event()
    try:
        proc.stderr.readline()  # the start-up log line
        time.sleep(0.5)
        base = rss_kib(proc.pid)
        report = mp.Queue()
        left, offset = n, 0
        while left > 0:
            k = min(PER_WORKER, left)
            p = mp.Process(target=worker, args=(port, k, offset, report, done))
            p.start()
            workers.append(p)
            left -= k
            offset += k
        greeted = sum(report.get(timeout=150) for _ in workers)
        time.sleep(1.0)
        held = rss_kib(proc.pid)
        per = (held - base) * 1024 / max(1, greeted)
        print("connections greeted: %d of %d" % (greeted, n))
        print("server RSS before: %d KiB; with %d open: %d KiB" % (base, greeted, held))
        print("RSS growth per idle connection: %.0f bytes (%.2f KiB)" % (per, per / 1024))
        return 0 if greeted == n else 1
    finally:
        done.set()
        for p in workers:
            p.join(30)
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
