// Where the kernel interfaces the agent needs are mounted: the cgroup v2
// hierarchy (found, never assumed: /sys/fs/cgroup on most distributions,
// /sys/fs/cgroup/unified on hybrid ones) and bpffs for the pins.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sluice::agent {

// First cgroup2 mount point listed in `mounts` (/proc/self/mounts format).
std::optional<std::string> find_cgroup2_mount(const std::string& mounts = "/proc/self/mounts");

// A cgroup the programs attach to.
struct CgroupTarget {
  std::string path;
  uint64_t id = 0;  // the kernel's cgroup id (the directory's inode on cgroup2)
};

// Resolves `path` (absolute, or relative to the cgroup2 mount) and checks
// that it is a directory on cgroup2. Returns an error message on failure.
std::optional<std::string> resolve_cgroup(const std::string& cgroup2_mount, const std::string& path,
                                          CgroupTarget& out);

// Makes sure `pin_dir`'s parent is on bpffs, mounting bpffs at /sys/fs/bpf
// when the pin directory lives there and nothing is mounted yet. Creates
// pin_dir (mode 0700). Returns an error message on failure.
std::optional<std::string> prepare_pin_dir(const std::string& pin_dir);

}  // namespace sluice::agent
