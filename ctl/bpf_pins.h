// What sluice-agent left pinned under its pin directory (see
// agent/installation.h for the layout: maps by name, prog_<name>,
// link_<cgroup id>_<program>), read back through libbpf: each program's id
// and type, each link's attach type and the cgroup it is attached to (its
// cgroup id mapped back to a path by scanning the cgroup v2 mount). Nothing
// is modified. Every failure is reported per object, never thrown.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::ctl {

struct PinnedObject {
  std::string name;  // file name under the pin directory
  std::string kind;  // map | program | link
  std::string detail;  // "id 12 cgroup_sock_addr sluice_connect4", ...
  std::string error;   // why it could not be read (EPERM without CAP_BPF, ...)
  // Links on a cgroup.
  std::optional<uint64_t> cgroup_id;
  std::string cgroup_path;  // empty when not found (or the mount unreadable)
  std::string attach_type;
};

struct PinReport {
  std::string pin_dir;
  std::string error;  // non-empty: the directory could not be read at all
  std::vector<PinnedObject> objects;  // sorted by name
  std::string cgroup2_mount;          // empty: none found
};

PinReport inspect_pins(const std::string& pin_dir);

// The directory under `cgroup2_mount` whose inode is `cgroup_id` (cgroup v2
// ids are the directories' inode numbers), searching at most `max_dirs`
// directories. Empty when not found.
std::string find_cgroup_path(const std::string& cgroup2_mount, uint64_t cgroup_id, size_t max_dirs = 100000);

// First cgroup2 mount in `mounts` (/proc/self/mounts format).
std::string find_cgroup2_mount(const std::string& mounts = "/proc/self/mounts");

}  // namespace sluice::ctl
