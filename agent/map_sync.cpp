#include "agent/map_sync.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

namespace sluice::agent {

namespace {

template <typename K>
std::string bytes_of(const K& key) {
  return std::string(reinterpret_cast<const char*>(&key), sizeof(K));
}

template <typename K, typename V>
std::optional<std::string> upsert(int fd, const char* what,
                                  const std::vector<std::pair<K, V>>& entries, SyncStats& stats) {
  for (const auto& [key, value] : entries) {
    if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0) {
      return std::string("cannot write ") + what + " entry: " + std::strerror(errno) +
             (errno == E2BIG || errno == ENOMEM ? " (too many entries for the map)" : "");
    }
    ++stats.upserted;
  }
  return std::nullopt;
}

template <typename K, typename V>
std::optional<std::string> delete_stale(int fd, const char* what,
                                        const std::vector<std::pair<K, V>>& entries,
                                        SyncStats& stats) {
  // Collect first: deleting while iterating get_next_key restarts the walk.
  std::vector<K> existing;
  K key{};
  K next{};
  const void* cursor = nullptr;
  while (bpf_map_get_next_key(fd, cursor, &next) == 0) {
    existing.push_back(next);
    key = next;
    cursor = &key;
  }
  std::unordered_set<std::string> wanted;
  for (const auto& entry : entries) wanted.insert(bytes_of(entry.first));
  for (const K& k : existing) {
    if (wanted.count(bytes_of(k)) != 0) continue;
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      return std::string("cannot delete stale ") + what + " entry: " + std::strerror(errno);
    }
    ++stats.deleted;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> sync_maps(const MapFds& fds, const decision::MapContents& desired,
                                     SyncStats& stats) {
  std::optional<std::string> err;
  if ((err = upsert(fds.include_v4, "include_v4", desired.include_v4, stats)) ||
      (err = upsert(fds.exclude_v4, "exclude_v4", desired.exclude_v4, stats)) ||
      (err = upsert(fds.include_v6, "include_v6", desired.include_v6, stats)) ||
      (err = upsert(fds.exclude_v6, "exclude_v6", desired.exclude_v6, stats)) ||
      (err = upsert(fds.include_ports, "include_ports", desired.include_ports, stats)) ||
      (err = upsert(fds.exclude_ports, "exclude_ports", desired.exclude_ports, stats))) {
    return err;
  }
  const __u32 zero = 0;
  if (bpf_map_update_elem(fds.config, &zero, &desired.config, BPF_ANY) != 0) {
    return std::string("cannot write the config entry: ") + std::strerror(errno);
  }
  if ((err = delete_stale(fds.include_v4, "include_v4", desired.include_v4, stats)) ||
      (err = delete_stale(fds.exclude_v4, "exclude_v4", desired.exclude_v4, stats)) ||
      (err = delete_stale(fds.include_v6, "include_v6", desired.include_v6, stats)) ||
      (err = delete_stale(fds.exclude_v6, "exclude_v6", desired.exclude_v6, stats)) ||
      (err = delete_stale(fds.include_ports, "include_ports", desired.include_ports, stats)) ||
      (err = delete_stale(fds.exclude_ports, "exclude_ports", desired.exclude_ports, stats))) {
    return err;
  }
  return std::nullopt;
}

}  // namespace sluice::agent
