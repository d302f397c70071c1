"""Mounts ringmx_dropfs (tests/powercut/README.md) for a test: an in-memory file
system where only synced data and synced directory entries survive a power cut.

    with DropFs(["--ignore-fsync"]) as fs:
        ... write under fs.mnt ...
        fs.cut()          # what was not synced is gone
        fs.status()       # {"fsync": 3, "fdatasync": 10, "fsyncdir": 2, "cuts": 1, ...}

The binary comes from RINGMX_DROPFS (ctest sets it when libfuse3 was found).
skip_reason() says why it cannot run here (the test then exits 77)."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

DROPFS = os.environ.get("RINGMX_DROPFS", "")


def skip_reason():
    """None when a dropfs can be mounted here, else why not."""
    if not DROPFS or not os.access(DROPFS, os.X_OK):
        return "RINGMX_DROPFS is not set to the ringmx_dropfs binary (is libfuse3-dev installed?)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return "cannot open /dev/fuse: %s" % e
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        return "not root and no fusermount3 (apt-get install fuse3)"
    return None


def sync_dir(path):
    """fsync a directory: makes its entries durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DropFs:
    def __init__(self, flags=(), mnt=None):
        self.flags = list(flags)
        self.mnt = mnt or tempfile.mkdtemp(prefix="ringmx-dropfs-")
        self.proc = None

    def mount(self):
        self.proc = subprocess.Popen([DROPFS, "-f"] + self.flags + [self.mnt],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("dropfs: mounted on"):
            self.proc.wait(10)
            raise RuntimeError("dropfs did not mount: %r %s" %
                               (line, self.proc.stderr.read().decode(errors="replace")))
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mnt):
            if time.monotonic() > deadline:
                raise RuntimeError("dropfs: %s is not a mount point" % self.mnt)
            time.sleep(0.01)
        return self

    def control(self, command):
        with open(os.path.join(self.mnt, ".dropfs"), "w") as f:
            f.write(command + "\n")

    def cut(self):
        """The power cut: back to the durable state."""
        self.control("cut")

    def sync_everything(self):
        self.control("sync")

    def status(self):
        out = {}
        with open(os.path.join(self.mnt, ".dropfs")) as f:
            for line in f:
                k, _, v = line.strip().partition(" ")
                out[k] = int(v) if v.isdigit() else v
        return out

    def unmount(self, timeout=20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if shutil.which("fusermount3"):
                subprocess.run(["fusermount3", "-u", "-z", self.mnt],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            os.rmdir(self.mnt)
        except OSError:
            pass
        self.proc = None

    def __enter__(self):
        return self.mount()

    def __exit__(self, *exc):
        self.unmount()
