// The model behind dropfs (dropfs.cc): files whose data, and directories
// whose entries, each have a current and a durable state; syncs copy current
// to durable, a power cut copies durable back and drops what is unreachable.
// No FUSE and no I/O here.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringmx::dropfs {

using Ino = uint64_t;

constexpr Ino kRootIno = 1;  // FUSE_ROOT_ID
constexpr Ino kControlIno = 2;
constexpr const char* kControlName = ".dropfs";
// Copy-on-write unit of file contents: a sync shares the chunks, so syncing a
// large append-only segment costs a vector of pointers, not a copy of it.
constexpr size_t kChunkSize = 16384;

using Chunk = std::array<char, kChunkSize>;

// File contents as shared chunks; a missing (null) chunk reads as zeros.
// Invariant: bytes at or past `size` inside a chunk are zero, so growing the
// size (ftruncate up, or a torn append at a cut) exposes zeros only.
struct Content {
  std::vector<std::shared_ptr<Chunk>> chunks;
  uint64_t size = 0;

  std::string read(uint64_t off, size_t len) const {
    if (off >= size) return {};
    len = static_cast<size_t>(std::min<uint64_t>(len, size - off));
    std::string out(len, '\0');
    size_t done = 0;
    while (done < len) {
      const uint64_t pos = off + done;
      const size_t index = static_cast<size_t>(pos / kChunkSize);
      const size_t in_chunk = static_cast<size_t>(pos % kChunkSize);
      const size_t n = std::min(len - done, kChunkSize - in_chunk);
      if (index < chunks.size() && chunks[index]) {
        std::memcpy(out.data() + done, chunks[index]->data() + in_chunk, n);
      }
      done += n;
    }
    return out;
  }

  // The chunk at `index`, private to this Content (cloned when shared).
  Chunk& own(size_t index) {
    if (index >= chunks.size()) chunks.resize(index + 1);
    std::shared_ptr<Chunk>& c = chunks[index];
    if (!c) {
      c = std::make_shared<Chunk>();
      c->fill('\0');
    } else if (c.use_count() > 1) {
      c = std::make_shared<Chunk>(*c);
    }
    return *c;
  }

  void write(uint64_t off, const char* data, size_t len) {
    size_t done = 0;
    while (done < len) {
      const uint64_t pos = off + done;
      const size_t in_chunk = static_cast<size_t>(pos % kChunkSize);
      const size_t n = std::min(len - done, kChunkSize - in_chunk);
      std::memcpy(own(static_cast<size_t>(pos / kChunkSize)).data() + in_chunk, data + done, n);
      done += n;
    }
    size = std::max(size, off + len);
  }

  void truncate(uint64_t n) {
    if (n < size) {
      const size_t keep = static_cast<size_t>((n + kChunkSize - 1) / kChunkSize);
      if (chunks.size() > keep) chunks.resize(keep);
      const size_t in_chunk = static_cast<size_t>(n % kChunkSize);
      const size_t last = static_cast<size_t>(n / kChunkSize);
      if (in_chunk != 0 && last < chunks.size() && chunks[last]) {
        Chunk& c = own(last);
        std::fill(c.begin() + static_cast<std::ptrdiff_t>(in_chunk), c.end(), '\0');
      }
    }
    size = n;
  }
};

struct Node {
  Ino ino = 0;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  timespec atime{}, mtime{}, ctime{};
  uint32_t nlink = 0;     // regular files: names in current directories
  Ino parent = kRootIno;  // directories: current parent
  Content data, durable;
  std::map<std::string, Ino> entries, durable_entries;

  bool is_dir() const { return S_ISDIR(mode); }
};

struct Options {
  bool ignore_fsync = false;
  bool ignore_dirsync = false;
  bool torn = false;
};

struct Counters {
  uint64_t fsync = 0, fdatasync = 0, fsyncdir = 0, cuts = 0, syncs_ignored = 0;
};

inline timespec now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

class Fs {
 public:
  explicit Fs(Options opt) : opt_(opt) { make(S_IFDIR | 0755, 0, 0, kRootIno); }

  Node* find(Ino ino) {
    auto it = nodes_.find(ino);
    return it == nodes_.end() ? nullptr : it->second.get();
  }

  // A new inode; numbers are never reused, so the kernel cannot confuse a
  // file that came back after a cut with another one.
  Node& make(mode_t mode, uid_t uid, gid_t gid, Ino ino = 0) {
    auto n = std::make_unique<Node>();
    n->ino = ino != 0 ? ino : next_ino_++;
    n->mode = mode;
    n->uid = uid;
    n->gid = gid;
    n->atime = n->mtime = n->ctime = now();
    n->nlink = 1;
    Node& ref = *n;
    nodes_[ref.ino] = std::move(n);
    return ref;
  }

  struct stat attr(const Node& n) const {
    struct stat st {};
    st.st_ino = n.ino;
    st.st_mode = n.mode;
    st.st_uid = n.uid;
    st.st_gid = n.gid;
    st.st_atim = n.atime;
    st.st_mtim = n.mtime;
    st.st_ctim = n.ctime;
    st.st_blksize = 4096;
    if (n.is_dir()) {
      nlink_t links = 2;
      for (const auto& [name, ino] : n.entries) {
        const auto it = nodes_.find(ino);
        if (it != nodes_.end() && it->second->is_dir()) ++links;
      }
      st.st_nlink = links;
      st.st_size = 4096;
    } else {
      st.st_nlink = n.nlink;
      st.st_size = static_cast<off_t>(n.data.size);
    }
    st.st_blocks = (st.st_size + 511) / 512;
    return st;
  }

  static struct stat control_attr(size_t size) {
    struct stat st {};
    st.st_ino = kControlIno;
    st.st_mode = S_IFREG | 0600;
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(size);
    st.st_blksize = 4096;
    return st;
  }

  // fsync/fdatasync of a file: its data (and size) become durable.
  void sync_file(Node& n, bool datasync) {
    ++(datasync ? counters_.fdatasync : counters_.fsync);
    if (opt_.ignore_fsync) {
      ++counters_.syncs_ignored;
      return;
    }
    n.durable = n.data;
  }

  // fsync of a directory: its current entries become durable (not those of
  // a new subdirectory, which needs its own fsync).
  void sync_dir(Node& n) {
    ++counters_.fsyncdir;
    if (opt_.ignore_dirsync) {
      ++counters_.syncs_ignored;
      return;
    }
    n.durable_entries = n.entries;
  }

  // Everything durable, as if every file and directory had been synced (for
  // setting up a test's starting state); modes do not apply.
  void sync_all() {
    for (auto& [ino, n] : nodes_) {
      if (n->is_dir()) {
        n->durable_entries = n->entries;
      } else {
        n->durable = n->data;
      }
    }
  }

  // The power cut: back to the durable state; unreachable inodes vanish.
  void cut() {
    ++counters_.cuts;
    for (auto& [ino, n] : nodes_) {
      if (n->is_dir()) {
        n->entries = n->durable_entries;
        continue;
      }
      const uint64_t current_size = n->data.size;
      n->data = n->durable;
      // Torn: the size of an append reached the disk, its data did not.
      if (opt_.torn && current_size > n->data.size) {
        n->data.truncate(current_size);
        n->durable = n->data;  // what the disk holds now
      }
    }
    std::set<Ino> reachable{kRootIno};
    std::vector<Ino> todo{kRootIno};
    std::unordered_map<Ino, uint32_t> links;
    while (!todo.empty()) {
      Node* dir = find(todo.back());
      todo.pop_back();
      if (dir == nullptr) continue;
      for (auto it = dir->entries.begin(); it != dir->entries.end();) {
        Node* child = find(it->second);
        if (child == nullptr) {  // dropped earlier: the entry cannot survive
          it = dir->entries.erase(it);
          continue;
        }
        ++links[child->ino];
        if (reachable.insert(child->ino).second && child->is_dir()) {
          child->parent = dir->ino;
          todo.push_back(child->ino);
        }
        ++it;
      }
    }
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      if (reachable.count(it->first) == 0) {
        it = nodes_.erase(it);
        continue;
      }
      it->second->nlink = links[it->first];
      ++it;
    }
    // A durable entry set may name an inode that is now gone; keep the two
    // views consistent so a later sync does not resurrect a dangling name.
    for (auto& [ino, n] : nodes_) {
      if (n->is_dir()) n->durable_entries = n->entries;
    }
  }

  std::string status() const {
    std::ostringstream out;
    out << "mode "
        << (opt_.ignore_fsync && opt_.ignore_dirsync ? "ignore-fsync,ignore-dirsync"
            : opt_.ignore_fsync                      ? "ignore-fsync"
            : opt_.ignore_dirsync                    ? "ignore-dirsync"
                                                     : "normal")
        << "\ntorn " << (opt_.torn ? 1 : 0) << "\nfsync " << counters_.fsync << "\nfdatasync "
        << counters_.fdatasync << "\nfsyncdir " << counters_.fsyncdir << "\nsyncs_ignored "
        << counters_.syncs_ignored << "\ncuts " << counters_.cuts << "\ninodes " << nodes_.size()
        << "\n";
    return out.str();
  }

  // Runs the commands of one write to the control file; 0 or an errno.
  int control(std::string_view text) {
    while (!text.empty()) {
      const size_t nl = text.find('\n');
      std::string_view line = text.substr(0, nl);
      text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
      while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
      if (line.empty()) continue;
      if (line == "cut") {
        cut();
      } else if (line == "sync") {
        sync_all();
      } else {
        return EINVAL;
      }
    }
    return 0;
  }

  // Would making `dir` a child of `target` put it inside itself?
  bool is_ancestor(Ino dir, Ino target) {
    for (Ino cur = target;;) {
      if (cur == dir) return true;
      if (cur == kRootIno) return false;
      Node* n = find(cur);
      if (n == nullptr) return false;
      cur = n->parent;
    }
  }

  void drop_link(Ino ino) {
    Node* n = find(ino);
    if (n != nullptr && !n->is_dir() && n->nlink > 0) --n->nlink;
  }

 private:
  Options opt_;
  Counters counters_;
  Ino next_ino_ = kControlIno + 1;
  std::unordered_map<Ino, std::unique_ptr<Node>> nodes_;
};

}  // namespace ringmx::dropfs
