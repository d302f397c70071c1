"""The power-cut file system itself (tests/powercut/README.md): what survives a
cut is exactly what was synced, file data by fsync/fdatasync of the file and
directory entries by fsync of their directory; each ignore mode and the torn
mode behave as documented. test_powercut.py relies on all of this."""

import mmap
import os
import sys
import unittest

import dropfs
from dropfs import DropFs, sync_dir


def write_file(path, data, sync=True):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Normal(unittest.TestCase):
    def setUp(self):
        self.fs = DropFs().mount()
        self.m = self.fs.mnt

    def tearDown(self):
        self.fs.unmount()

    def p(self, *names):
        return os.path.join(self.m, *names)

    def durable_file(self, name, data):
        write_file(self.p(name), data)
        sync_dir(self.m)

    def test_reads_see_unsynced_writes(self):
        write_file(self.p("a"), b"hello", sync=False)
        self.assertEqual(read(self.p("a")), b"hello")
        self.assertNotIn(".dropfs", os.listdir(self.m), "the control file is hidden")

    def test_unsynced_write_is_gone(self):
        self.durable_file("a", b"")
        with open(self.p("a"), "ab") as f:
            f.write(b"never synced")
        self.fs.cut()
        self.assertEqual(read(self.p("a")), b"")

    def test_synced_file_in_unsynced_directory_is_gone(self):
        write_file(self.p("a"), b"data", sync=True)
        self.fs.cut()
        self.assertFalse(os.path.exists(self.p("a")))
        self.assertEqual(os.listdir(self.m), [])

    def test_synced_file_and_directory_survive_byte_exact(self):
        data = os.urandom(200_000)
        self.durable_file("a", data)
        self.fs.cut()
        self.assertEqual(read(self.p("a")), data)

    def test_fdatasync_counts_and_pwrite_at_offsets(self):
        self.durable_file("a", b"x" * 100)
        fd = os.open(self.p("a"), os.O_WRONLY)
        os.pwrite(fd, b"AB", 10)
        os.pwrite(fd, b"tail", 100)
        os.fdatasync(fd)
        os.pwrite(fd, b"lost", 104)
        os.close(fd)
        self.fs.cut()
        self.assertEqual(read(self.p("a")), b"x" * 10 + b"AB" + b"x" * 88 + b"tail")
        st = self.fs.status()
        self.assertGreaterEqual(st["fdatasync"], 1)
        self.assertEqual(st["cuts"], 1)

    def test_only_the_synced_prefix_of_an_append_survives(self):
        self.durable_file("a", b"one,")
        with open(self.p("a"), "ab") as f:
            f.write(b"two,")
            f.flush()
            os.fdatasync(f.fileno())
            f.write(b"three")
        self.fs.cut()
        self.assertEqual(read(self.p("a")), b"one,two,")

    def test_truncate_without_sync_reverts(self):
        self.durable_file("a", b"0123456789")
        os.truncate(self.p("a"), 3)
        self.assertEqual(read(self.p("a")), b"012")
        self.fs.cut()
        self.assertEqual(read(self.p("a")), b"0123456789")

    def test_rename_without_dir_sync_reverts(self):
        self.durable_file("a.tmp", b"payload")
        os.rename(self.p("a.tmp"), self.p("a"))
        self.fs.cut()
        self.assertEqual(sorted(os.listdir(self.m)), ["a.tmp"])
        os.rename(self.p("a.tmp"), self.p("a"))
        sync_dir(self.m)
        self.fs.cut()
        self.assertEqual(sorted(os.listdir(self.m)), ["a"])
        self.assertEqual(read(self.p("a")), b"payload")

    def test_rename_replacing_a_file(self):
        self.durable_file("a", b"old")
        self.durable_file("b", b"new")
        os.replace(self.p("b"), self.p("a"))
        self.assertEqual(read(self.p("a")), b"new")
        self.fs.cut()
        self.assertEqual(read(self.p("a")), b"old")
        self.assertEqual(read(self.p("b")), b"new")
        os.replace(self.p("b"), self.p("a"))
        sync_dir(self.m)
        self.fs.cut()
        self.assertEqual(os.listdir(self.m), ["a"])
        self.assertEqual(read(self.p("a")), b"new")

    def test_unlink_without_dir_sync_reverts(self):
        self.durable_file("a", b"keep me")
        os.unlink(self.p("a"))
        self.assertFalse(os.path.exists(self.p("a")))
        self.fs.cut()
        self.assertEqual(read(self.p("a")), b"keep me")
        os.unlink(self.p("a"))
        sync_dir(self.m)
        self.fs.cut()
        self.assertFalse(os.path.exists(self.p("a")))

    def test_mkdir_without_parent_sync_reverts(self):
        os.mkdir(self.p("d"))
        write_file(self.p("d", "f"), b"in d")
        sync_dir(self.p("d"))       # d's own entries, but not d's name
        self.fs.cut()
        self.assertFalse(os.path.exists(self.p("d")))

    def test_new_subdirectory_needs_its_own_sync(self):
        os.mkdir(self.p("d"))
        sync_dir(self.m)
        write_file(self.p("d", "f"), b"in d")
        self.fs.cut()
        self.assertTrue(os.path.isdir(self.p("d")))
        self.assertEqual(os.listdir(self.p("d")), [])
        write_file(self.p("d", "f"), b"in d")
        sync_dir(self.p("d"))
        self.fs.cut()
        self.assertEqual(read(self.p("d", "f")), b"in d")

    def test_rmdir_without_parent_sync_reverts(self):
        os.mkdir(self.p("d"))
        sync_dir(self.m)
        os.rmdir(self.p("d"))
        self.fs.cut()
        self.assertTrue(os.path.isdir(self.p("d")))

    def test_link_and_metadata(self):
        self.durable_file("a", b"x")
        os.link(self.p("a"), self.p("b"))
        self.assertEqual(os.stat(self.p("a")).st_nlink, 2)
        os.chmod(self.p("a"), 0o600)
        self.assertEqual(os.stat(self.p("b")).st_mode & 0o777, 0o600)
        os.utime(self.p("a"), (1_000_000, 2_000_000))
        self.assertEqual(os.stat(self.p("a")).st_mtime, 2_000_000)
        self.fs.cut()
        self.assertFalse(os.path.exists(self.p("b")))
        self.assertEqual(os.stat(self.p("a")).st_nlink, 1)

    def test_mmap_sees_the_durable_state_after_a_cut(self):
        # ringmx's start-up recovery maps spool files read-only (MAP_PRIVATE).
        self.durable_file("a", b"A" * 5000)
        with open(self.p("a"), "ab") as f:
            f.write(b"B" * 5000)
        with open(self.p("a"), "rb") as f:
            with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ) as m:
                self.assertEqual(m[:], b"A" * 5000 + b"B" * 5000)
        self.fs.cut()
        with open(self.p("a"), "rb") as f:
            with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ) as m:
                self.assertEqual(m[:], b"A" * 5000)

    def test_statfs_reports_plenty_of_space(self):
        st = os.statvfs(self.m)
        self.assertGreater(st.f_bavail * st.f_frsize, 100 << 30)

    def test_sync_command_makes_everything_durable(self):
        os.makedirs(self.p("x", "y"))
        write_file(self.p("x", "y", "f"), b"data", sync=False)
        self.fs.sync_everything()
        self.fs.cut()
        self.assertEqual(read(self.p("x", "y", "f")), b"data")


class IgnoreFsync(unittest.TestCase):
    def test_file_syncs_make_nothing_durable(self):
        with DropFs(["--ignore-fsync"]) as fs:
            path = os.path.join(fs.mnt, "a")
            write_file(path, b"synced in vain")
            sync_dir(fs.mnt)
            fs.cut()
            self.assertEqual(read(path), b"", "the name survives (dir sync works), the data not")
            st = fs.status()
            self.assertEqual(st["mode"], "ignore-fsync")
            self.assertGreaterEqual(st["syncs_ignored"], 1)


class IgnoreDirsync(unittest.TestCase):
    def test_directory_syncs_make_no_entry_durable(self):
        with DropFs(["--ignore-dirsync"]) as fs:
            path = os.path.join(fs.mnt, "a")
            write_file(path, b"data")
            sync_dir(fs.mnt)
            fs.cut()
            self.assertFalse(os.path.exists(path))
            fs.sync_everything()            # the control command still works
            write_file(path, b"data")
            fs.sync_everything()
            fs.cut()
            self.assertEqual(read(path), b"data")
            self.assertEqual(fs.status()["mode"], "ignore-dirsync")


class Torn(unittest.TestCase):
    def test_unsynced_appends_become_zeros(self):
        with DropFs(["--torn"]) as fs:
            path = os.path.join(fs.mnt, "a")
            write_file(path, b"synced;")
            sync_dir(fs.mnt)
            with open(path, "ab") as f:
                f.write(b"appended but not synced")
            fs.cut()
            self.assertEqual(read(path), b"synced;" + b"\0" * len(b"appended but not synced"))
            self.assertEqual(fs.status()["torn"], 1)

    def test_a_never_synced_file_with_a_durable_name_is_all_zeros(self):
        with DropFs(["--torn"]) as fs:
            path = os.path.join(fs.mnt, "a")
            write_file(path, b"12345", sync=False)
            sync_dir(fs.mnt)
            fs.cut()
            self.assertEqual(read(path), b"\0" * 5)


if __name__ == "__main__":
    why = dropfs.skip_reason()
    if why:
        print("skipped: " + why, file=sys.stderr)
        sys.exit(77)
    unittest.main(verbosity=2, warnings="ignore")
