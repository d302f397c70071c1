// dropfs: an in-memory FUSE file system for power-cut tests (in the spirit
// of LazyFS). Reads see every write; a file's data becomes durable only at an
// fsync/fdatasync of that file, and a directory's entries (create, rename,
// unlink, mkdir, rmdir, link) only at an fsync of that directory. Writing
// "cut" to the hidden control file /.dropfs is a power cut: every file and
// directory goes back to its durable state and whatever no durable entry
// reaches any more is gone. See tests/powercut/README.md.
//
// The kernel must not serve bytes from before a cut: every file is opened
// with direct_io (reads and writes go to us; a read-only MAP_PRIVATE mapping
// still works, the kernel drops the page cache when it is mapped), entry,
// attribute and negative timeouts are 0 (every path walk asks us), and inode
// numbers are never reused. So no notify_inval_* is needed at a cut.
//
// Single-threaded (fuse_session_loop): the state has no locks.
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dropfs_model.h"

namespace {

using ringmx::dropfs::Fs;
using ringmx::dropfs::kControlIno;
using ringmx::dropfs::kControlName;
using ringmx::dropfs::kRootIno;
using ringmx::dropfs::Node;
using ringmx::dropfs::now;
using ringmx::dropfs::Options;

// ---- FUSE glue ----------------------------------------------------------------------

// A directory handle holds a snapshot of the names, so that a listing in
// several readdir calls is consistent while entries come and go.
struct DirItem {
  std::string name;
  fuse_ino_t ino;
  mode_t mode;
};
using Listing = std::vector<DirItem>;

// The session's user data.
struct Mount {
  explicit Mount(Options opt) : fs(opt) {}
  Fs fs;
  std::unordered_map<uint64_t, Listing> listings;  // by directory handle
  uint64_t next_fh = 1;
};

Mount& mount_of(fuse_req_t req) {
  return *static_cast<Mount*>(fuse_req_userdata(req));
}

Fs& fs_of(fuse_req_t req) {
  return mount_of(req).fs;
}

fuse_entry_param entry_of(const struct stat& st) {
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.generation = 1;
  e.attr = st;
  e.attr_timeout = 0;
  e.entry_timeout = 0;
  return e;
}

bool is_control(fuse_ino_t parent, const char* name) {
  return parent == kRootIno && std::strcmp(name, kControlName) == 0;
}

// The directory `parent`, or an errno.
int dir_of(Fs& fs, fuse_ino_t parent, Node*& out) {
  out = fs.find(parent);
  if (out == nullptr) return ENOENT;
  if (!out->is_dir()) return ENOTDIR;
  return 0;
}

// The directory `parent` and its entry `name` (ENOENT when there is none).
int child_of(Fs& fs, fuse_ino_t parent, const char* name, Node*& dir, Node*& child) {
  if (const int err = dir_of(fs, parent, dir)) return err;
  const auto it = dir->entries.find(name);
  child = it == dir->entries.end() ? nullptr : fs.find(it->second);
  return child == nullptr ? ENOENT : 0;
}

void op_init(void* /*userdata*/, fuse_conn_info* conn) {
  // Nothing may be cached in the kernel that a cut would have to take back.
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_READDIRPLUS);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Fs& fs = fs_of(req);
  if (is_control(parent, name)) {
    const fuse_entry_param e = entry_of(Fs::control_attr(fs.status().size()));
    fuse_reply_entry(req, &e);
    return;
  }
  Node* dir = nullptr;
  Node* n = nullptr;
  if (const int err = child_of(fs, parent, name, dir, n)) {
    fuse_reply_err(req, err);
    return;
  }
  const fuse_entry_param e = entry_of(fs.attr(*n));
  fuse_reply_entry(req, &e);
}

void op_forget(fuse_req_t req, fuse_ino_t /*ino*/, uint64_t /*nlookup*/) {
  // Inodes live until a cut finds them unreachable (an unlinked file may be
  // brought back by a cut), so lookup counts are not needed.
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t /*count*/, fuse_forget_data* /*forgets*/) {
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  Fs& fs = fs_of(req);
  if (ino == kControlIno) {
    const struct stat st = Fs::control_attr(fs.status().size());
    fuse_reply_attr(req, &st, 0);
    return;
  }
  Node* n = fs.find(ino);
  if (n == nullptr) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const struct stat st = fs.attr(*n);
  fuse_reply_attr(req, &st, 0);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* /*fi*/) {
  Fs& fs = fs_of(req);
  if (ino == kControlIno) {  // "echo cut > .dropfs" truncates first: nothing to do
    const struct stat st = Fs::control_attr(fs.status().size());
    fuse_reply_attr(req, &st, 0);
    return;
  }
  Node* n = fs.find(ino);
  if (n == nullptr) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const timespec t = now();
  if (to_set & FUSE_SET_ATTR_MODE) n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
  if (to_set & FUSE_SET_ATTR_UID) n->uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) n->gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (n->is_dir()) {
      fuse_reply_err(req, EISDIR);
      return;
    }
    n->data.truncate(static_cast<uint64_t>(attr->st_size));
    n->mtime = t;
  }
  if (to_set & FUSE_SET_ATTR_ATIME) n->atime = attr->st_atim;
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) n->atime = t;
  if (to_set & FUSE_SET_ATTR_MTIME) n->mtime = attr->st_mtim;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) n->mtime = t;
  n->ctime = t;
  const struct stat st = fs.attr(*n);
  fuse_reply_attr(req, &st, 0);
}

// A new inode named `name` in `parent`: its entry, or an errno.
int add_node(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, Node*& out) {
  Fs& fs = fs_of(req);
  if (is_control(parent, name)) return EEXIST;
  Node* dir = nullptr;
  if (const int err = dir_of(fs, parent, dir)) return err;
  if (dir->entries.count(name) != 0) return EEXIST;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  out = &fs.make(mode, ctx->uid, ctx->gid);
  if (out->is_dir()) out->parent = parent;
  dir->entries[name] = out->ino;
  dir->mtime = dir->ctime = now();
  return 0;
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Node* n = nullptr;
  if (const int err = add_node(req, parent, name, S_IFDIR | (mode & 07777), n)) {
    fuse_reply_err(req, err);
    return;
  }
  const fuse_entry_param e = entry_of(fs_of(req).attr(*n));
  fuse_reply_entry(req, &e);
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  Fs& fs = fs_of(req);
  Node* n = nullptr;
  Node* dir = nullptr;
  if (dir_of(fs, parent, dir) == 0 && !(fi->flags & O_EXCL)) {
    const auto it = dir->entries.find(name);
    if (it != dir->entries.end()) n = fs.find(it->second);  // O_CREAT on an existing file
  }
  if (n == nullptr) {
    if (const int err = add_node(req, parent, name, S_IFREG | (mode & 07777), n)) {
      fuse_reply_err(req, err);
      return;
    }
  } else if (n->is_dir()) {
    fuse_reply_err(req, EISDIR);
    return;
  } else if (fi->flags & O_TRUNC) {
    n->data.truncate(0);
  }
  fi->direct_io = 1;
  fi->keep_cache = 0;
  const fuse_entry_param e = entry_of(fs.attr(*n));
  fuse_reply_create(req, &e, fi);
}

// Removes `name` from `parent`: files only (dirs == false) or directories only.
void remove_entry(fuse_req_t req, fuse_ino_t parent, const char* name, bool dirs) {
  Fs& fs = fs_of(req);
  if (is_control(parent, name)) {
    fuse_reply_err(req, EPERM);
    return;
  }
  Node* dir = nullptr;
  Node* n = nullptr;
  if (const int err = child_of(fs, parent, name, dir, n)) {
    fuse_reply_err(req, err);
    return;
  }
  if (n->is_dir() != dirs) {
    fuse_reply_err(req, dirs ? ENOTDIR : EISDIR);
    return;
  }
  if (dirs && !n->entries.empty()) {
    fuse_reply_err(req, ENOTEMPTY);
    return;
  }
  dir->entries.erase(name);
  fs.drop_link(n->ino);
  dir->mtime = dir->ctime = n->ctime = now();
  fuse_reply_err(req, 0);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  remove_entry(req, parent, name, false);
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  remove_entry(req, parent, name, true);
}

int do_rename(Fs& fs, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return EINVAL;
  if (is_control(parent, name) || is_control(newparent, newname)) return EPERM;
  Node* from = nullptr;
  Node* to = nullptr;
  if (const int err = dir_of(fs, parent, from)) return err;
  if (const int err = dir_of(fs, newparent, to)) return err;
  const auto src = from->entries.find(name);
  Node* n = src == from->entries.end() ? nullptr : fs.find(src->second);
  if (n == nullptr) return ENOENT;
  const auto dst = to->entries.find(newname);
  Node* old = dst == to->entries.end() ? nullptr : fs.find(dst->second);
  if (old == n) return 0;  // two names of one file: nothing happens
  if (old != nullptr) {
    if (flags & RENAME_NOREPLACE) return EEXIST;
    if (n->is_dir() && !old->is_dir()) return ENOTDIR;
    if (!n->is_dir() && old->is_dir()) return EISDIR;
    if (old->is_dir() && !old->entries.empty()) return ENOTEMPTY;
  }
  if (n->is_dir() && fs.is_ancestor(n->ino, newparent)) return EINVAL;
  if (old != nullptr) fs.drop_link(old->ino);
  const fuse_ino_t ino = n->ino;
  from->entries.erase(src);
  to->entries[newname] = ino;
  if (n->is_dir()) n->parent = newparent;
  from->mtime = from->ctime = to->mtime = to->ctime = n->ctime = now();
  return 0;
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  fuse_reply_err(req, do_rename(fs_of(req), parent, name, newparent, newname, flags));
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Fs& fs = fs_of(req);
  Node* n = fs.find(ino);
  Node* dir = nullptr;
  int err = n == nullptr ? ENOENT : n->is_dir() ? EPERM : dir_of(fs, newparent, dir);
  if (err == 0 && (is_control(newparent, newname) || dir->entries.count(newname) != 0)) {
    err = EEXIST;
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  dir->entries[newname] = ino;
  ++n->nlink;
  dir->mtime = dir->ctime = n->ctime = now();
  const fuse_entry_param e = entry_of(fs.attr(*n));
  fuse_reply_entry(req, &e);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Fs& fs = fs_of(req);
  fi->direct_io = 1;
  fi->keep_cache = 0;
  if (ino == kControlIno) {
    fuse_reply_open(req, fi);
    return;
  }
  Node* n = fs.find(ino);
  if (n == nullptr) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (n->is_dir()) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
    n->data.truncate(0);
    n->mtime = n->ctime = now();
  }
  fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* /*fi*/) {
  Fs& fs = fs_of(req);
  std::string out;
  if (ino == kControlIno) {
    const std::string s = fs.status();
    if (static_cast<size_t>(off) < s.size()) out = s.substr(static_cast<size_t>(off), size);
  } else {
    Node* n = fs.find(ino);
    if (n == nullptr || n->is_dir()) {
      fuse_reply_err(req, n == nullptr ? ENOENT : EISDIR);
      return;
    }
    out = n->data.read(static_cast<uint64_t>(off), size);
  }
  fuse_reply_buf(req, out.data(), out.size());
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* /*fi*/) {
  Fs& fs = fs_of(req);
  if (ino == kControlIno) {
    if (const int err = fs.control(std::string_view(buf, size))) {
      fuse_reply_err(req, err);
      return;
    }
    fuse_reply_write(req, size);
    return;
  }
  Node* n = fs.find(ino);
  if (n == nullptr || n->is_dir()) {
    fuse_reply_err(req, n == nullptr ? ENOENT : EISDIR);
    return;
  }
  n->data.write(static_cast<uint64_t>(off), buf, size);
  n->mtime = n->ctime = now();
  fuse_reply_write(req, size);
}

void op_flush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  fuse_reply_err(req, 0);  // close() makes nothing durable
}

void op_release(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* /*fi*/) {
  Fs& fs = fs_of(req);
  if (ino != kControlIno) {
    Node* n = fs.find(ino);
    if (n == nullptr) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    fs.sync_file(*n, datasync != 0);
  }
  fuse_reply_err(req, 0);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Mount& m = mount_of(req);
  Node* dir = nullptr;
  if (const int err = dir_of(m.fs, ino, dir)) {
    fuse_reply_err(req, err);
    return;
  }
  Listing l;
  l.push_back({".", dir->ino, S_IFDIR});
  l.push_back({"..", dir->parent, S_IFDIR});
  for (const auto& [name, child] : dir->entries) {
    if (Node* n = m.fs.find(child)) l.push_back({name, child, n->mode});
  }
  fi->fh = m.next_fh++;
  m.listings[fi->fh] = std::move(l);
  fuse_reply_open(req, fi);
}

void op_readdir(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
  const auto it = mount_of(req).listings.find(fi->fh);
  if (it == mount_of(req).listings.end()) {
    fuse_reply_err(req, EBADF);
    return;
  }
  const Listing& l = it->second;
  std::string buf(size, '\0');
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < l.size(); ++i) {
    struct stat st {};
    st.st_ino = l[i].ino;
    st.st_mode = l[i].mode;
    const size_t need = fuse_add_direntry(req, buf.data() + used, size - used, l[i].name.c_str(),
                                          &st, static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_releasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  mount_of(req).listings.erase(fi->fh);
  fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, fuse_file_info* /*fi*/) {
  Fs& fs = fs_of(req);
  Node* dir = nullptr;
  if (const int err = dir_of(fs, ino, dir)) {
    fuse_reply_err(req, err);
    return;
  }
  fs.sync_dir(*dir);
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  // Plenty of room: ringmx refuses mail when its spool's disk runs low.
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_blocks = uint64_t{1} << 28;  // 1 TiB
  st.f_bfree = st.f_blocks;
  st.f_bavail = st.f_blocks;
  st.f_files = uint64_t{1} << 24;
  st.f_ffree = st.f_files;
  st.f_favail = st.f_files;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.link = op_link;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsyncdir;
  ops.statfs = op_statfs;
  ops.create = op_create;
  return ops;
}

constexpr const char* kUsage =
    "usage: ringmx_dropfs [-f] [-s] [-d] [--ignore-fsync] [--ignore-dirsync] [--torn] MOUNTPOINT\n"
    "  Mounts an in-memory file system whose unsynced changes a power cut drops.\n"
    "  echo cut > MOUNTPOINT/.dropfs   power cut: back to what was synced\n"
    "  echo sync > MOUNTPOINT/.dropfs  make everything durable now\n"
    "  cat MOUNTPOINT/.dropfs          mode and counters of fsync, fdatasync, fsyncdir, cuts\n"
    "  --ignore-fsync    fsync/fdatasync of a file make nothing durable\n"
    "  --ignore-dirsync  fsync of a directory makes none of its entries durable\n"
    "  --torn            at a cut, data appended since a file's last sync becomes zeros\n"
    "  -f, -s            accepted for habit: it always runs in the foreground, one thread\n"
    "  -d                FUSE debug output\n"
    "Unmount with fusermount3 -u MOUNTPOINT (or SIGTERM).\n";

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  bool debug = false;
  const char* mountpoint = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--ignore-fsync") {
      opt.ignore_fsync = true;
    } else if (a == "--ignore-dirsync") {
      opt.ignore_dirsync = true;
    } else if (a == "--torn") {
      opt.torn = true;
    } else if (a == "-f" || a == "-s") {
      // always so
    } else if (a == "-d" || a == "--debug") {
      debug = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!a.empty() && a[0] != '-' && mountpoint == nullptr) {
      mountpoint = argv[i];
    } else {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  if (mountpoint == nullptr) {
    std::fputs(kUsage, stderr);
    return 2;
  }

  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  fuse_opt_add_arg(&args, argv[0]);
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, "fsname=dropfs,subtype=dropfs");
  if (debug) fuse_opt_add_arg(&args, "-d");

  Mount mount(opt);
  const fuse_lowlevel_ops ops = make_ops();
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &mount);
  fuse_opt_free_args(&args);
  if (se == nullptr) return 1;
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, mountpoint) == 0) {
      std::printf("dropfs: mounted on %s\n", mountpoint);
      std::fflush(stdout);
      rc = fuse_session_loop(se) == 0 ? 0 : 1;
      fuse_session_unmount(se);
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return rc;
}
