// A table of clients (by address) holding at most `max` entries: finding or
// adding one makes it the most recently used, and adding one to a full table
// drops the least recently used. Shard-local (no locks): each shard keeps its
// own. Pure; the cost per operation is one hash lookup and a list splice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <unordered_map>
#include <utility>

#include "core/ip_network.h"

namespace ringmx {

struct IpBytesHash {
  size_t operator()(const IpBytes& ip) const {
    uint64_t a = 0;
    uint64_t b = 0;
    std::memcpy(&a, ip.data(), 8);
    std::memcpy(&b, ip.data() + 8, 8);
    // Mix both halves (multiply-xorshift): IPv4 clients differ only in the low one.
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
    return static_cast<size_t>(h ^ (h >> 31));
  }
};

// Keyed by a client address by default; any hashable key will do (the AUTH
// failures keep user names too).
template <class Value, class Key = IpBytes, class Hash = IpBytesHash>
class LruTable {
 public:
  explicit LruTable(size_t max = 1) : max_(max == 0 ? 1 : max) {}

  // The client's entry, or null; a hit becomes the most recently used.
  Value* find(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  // The client's entry, made (value-initialised) if missing.
  Value& get(const Key& key) {
    if (Value* v = find(key)) return *v;
    if (index_.size() >= max_) evict_one();
    order_.emplace_front(key, Value{});
    index_.emplace(key, order_.begin());
    return order_.front().second;
  }
  void erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    order_.erase(it->second);
    index_.erase(it);
  }
  // A new bound (a reload): the least recently used go until it holds.
  void set_max(size_t max) {
    max_ = max == 0 ? 1 : max;
    while (index_.size() > max_) evict_one();
  }
  size_t size() const { return index_.size(); }
  size_t max() const { return max_; }
  uint64_t evictions() const { return evictions_; }
  // The least recently used client (for tests); null when empty.
  const Key* oldest() const { return order_.empty() ? nullptr : &order_.back().first; }

 private:
  void evict_one() {
    if (order_.empty()) return;
    index_.erase(order_.back().first);
    order_.pop_back();
    ++evictions_;
  }

  size_t max_;
  uint64_t evictions_ = 0;
  std::list<std::pair<Key, Value>> order_;  // front: the most recently used
  std::unordered_map<Key, typename std::list<std::pair<Key, Value>>::iterator, Hash> index_;
};

}  // namespace ringmx
