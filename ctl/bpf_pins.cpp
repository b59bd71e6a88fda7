#include "ctl/bpf_pins.h"

#include "ctl/unique_fd.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

namespace sluice::ctl {

namespace {



// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape_mount_path(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    auto octal = [&](size_t k) { return in[k] >= '0' && in[k] <= '7'; };
    if (in[i] == '\\' && i + 3 < in.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(static_cast<char>((in[i + 1] - '0') * 64 + (in[i + 2] - '0') * 8 + (in[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

const char* or_unknown(const char* s) { return s ? s : "unknown"; }

void inspect_program(const std::string& path, PinnedObject& o) {
  Fd fd(bpf_obj_get(path.c_str()));
  if (fd.get() < 0) {
    o.error = "bpf_obj_get: " + errno_text(errno);
    return;
  }
  bpf_prog_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) {
    o.error = "cannot read the program's info: " + errno_text(errno);
    return;
  }
  o.detail = "id " + std::to_string(info.id) + ", " +
             or_unknown(libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(info.type))) + ", name " +
             std::string(info.name);
}

void inspect_map(const std::string& path, PinnedObject& o) {
  Fd fd(bpf_obj_get(path.c_str()));
  if (fd.get() < 0) {
    o.error = "bpf_obj_get: " + errno_text(errno);
    return;
  }
  bpf_map_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) {
    o.error = "cannot read the map's info: " + errno_text(errno);
    return;
  }
  o.detail = "id " + std::to_string(info.id) + ", " +
             or_unknown(libbpf_bpf_map_type_str(static_cast<bpf_map_type>(info.type))) + ", " +
             std::to_string(info.max_entries) + " entries max";
}

void inspect_link(const std::string& path, const std::string& cgroup2, PinnedObject& o) {
  Fd fd(bpf_obj_get(path.c_str()));
  if (fd.get() < 0) {
    o.error = "bpf_obj_get: " + errno_text(errno);
    return;
  }
  bpf_link_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) {
    o.error = "cannot read the link's info: " + errno_text(errno);
    return;
  }
  o.detail = "id " + std::to_string(info.id) + ", " +
             or_unknown(libbpf_bpf_link_type_str(static_cast<bpf_link_type>(info.type))) + ", program id " +
             std::to_string(info.prog_id);
  if (info.type != BPF_LINK_TYPE_CGROUP) return;
  o.cgroup_id = info.cgroup.cgroup_id;
  o.attach_type = or_unknown(libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(info.cgroup.attach_type)));
  if (!cgroup2.empty()) o.cgroup_path = find_cgroup_path(cgroup2, info.cgroup.cgroup_id);
}

}  // namespace

std::string find_cgroup2_mount(const std::string& mounts) {
  std::ifstream in(mounts);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string source, target, type;
    if (fields >> source >> target >> type && type == "cgroup2") return unescape_mount_path(target);
  }
  return {};
}

std::string find_cgroup_path(const std::string& cgroup2_mount, uint64_t cgroup_id, size_t max_dirs) {
  // Breadth first: the cgroups Sluice attaches to (a node's root, a pod's
  // slice) are near the top, and a wide tree does not exhaust the stack.
  std::deque<std::string> queue{cgroup2_mount};
  size_t visited = 0;
  while (!queue.empty() && visited < max_dirs) {
    std::string dir = std::move(queue.front());
    queue.pop_front();
    ++visited;
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0) continue;
    if (static_cast<uint64_t>(st.st_ino) == cgroup_id) return dir;
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    while (dirent* e = readdir(d)) {
      if (e->d_type != DT_DIR) continue;
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      queue.push_back(dir + "/" + e->d_name);
    }
    closedir(d);
  }
  return {};
}

PinReport inspect_pins(const std::string& pin_dir) {
  PinReport report;
  report.pin_dir = pin_dir;
  report.cgroup2_mount = find_cgroup2_mount();
  DIR* d = opendir(pin_dir.c_str());
  if (d == nullptr) {
    const int err = errno;
    report.error = err == ENOENT ? pin_dir + " does not exist: sluice-agent has installed nothing on this host "
                                             "(or pins elsewhere: --pin-dir)"
                                 : "cannot read " + pin_dir + ": " + errno_text(err) +
                                       (err == EACCES ? " (the agent's pin directory is root-only: run as root)" : "");
    return report;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    PinnedObject o;
    o.name = n;
    const std::string path = pin_dir + "/" + n;
    if (n.rfind("prog_", 0) == 0) {
      o.kind = "program";
      inspect_program(path, o);
    } else if (n.rfind("link_", 0) == 0) {
      o.kind = "link";
      inspect_link(path, report.cgroup2_mount, o);
    } else {
      o.kind = "map";
      inspect_map(path, o);
    }
    report.objects.push_back(std::move(o));
  }
  return report;
}

}  // namespace sluice::ctl
