#include "agent/system_mounts.h"

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "agent/log.h"

namespace sluice::agent {

namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// /proc/mounts escapes spaces etc. as \040.
std::string unescape_mount_field(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool is_fs(const std::string& path, long magic) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && static_cast<long>(st.f_type) == magic;
}

std::string parent_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::optional<std::string> find_cgroup2_mount(const std::string& mounts) {
  std::ifstream in(mounts);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string source, target, type;
    if (fields >> source >> target >> type && type == "cgroup2") {
      return unescape_mount_field(target);
    }
  }
  return std::nullopt;
}

std::optional<std::string> resolve_cgroup(const std::string& cgroup2_mount, const std::string& path,
                                          CgroupTarget& out) {
  std::string full = path.empty() ? cgroup2_mount
                     : path[0] == '/' ? path
                                      : cgroup2_mount + "/" + path;
  struct stat st {};
  if (stat(full.c_str(), &st) != 0) {
    return "cgroup " + full + ": " + errno_text(errno) +
           " (give a directory under the cgroup v2 mount " + cgroup2_mount + ")";
  }
  if (!S_ISDIR(st.st_mode) || !is_fs(full, CGROUP2_SUPER_MAGIC)) {
    return "cgroup " + full + " is not a cgroup v2 directory (the cgroup v2 mount is " +
           cgroup2_mount + ")";
  }
  out.path = full;
  out.id = st.st_ino;
  return std::nullopt;
}

std::optional<std::string> prepare_pin_dir(const std::string& pin_dir) {
  const std::string bpffs = "/sys/fs/bpf";
  std::string parent = parent_of(pin_dir);
  if (!is_fs(parent, BPF_FS_MAGIC) && pin_dir.rfind(bpffs + "/", 0) == 0 &&
      !is_fs(bpffs, BPF_FS_MAGIC)) {
    log_info("bpffs is not mounted at " + bpffs + ": mounting it");
    if (mount("bpf", bpffs.c_str(), "bpf", 0, "mode=0700") != 0) {
      return "cannot mount bpffs at " + bpffs + ": " + errno_text(errno) +
             " (mount it yourself: mount -t bpf bpf " + bpffs + ")";
    }
  }
  if (!is_fs(parent, BPF_FS_MAGIC)) {
    return "pin directory " + pin_dir + " is not on a bpffs mount (" + parent +
           " is not bpffs): choose a --pin-dir under a bpffs mount such as /sys/fs/bpf";
  }
  if (mkdir(pin_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return "cannot create pin directory " + pin_dir + ": " + errno_text(errno);
  }
  return std::nullopt;
}

}  // namespace sluice::agent
