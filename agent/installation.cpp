#include "agent/installation.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "agent/log.h"

// The generated skeleton is C; keep its style warnings out of -Werror builds.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wpedantic"
#include "bpf/sluice.skel.h"
#pragma GCC diagnostic pop

namespace sluice::agent {

namespace {

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

const char* kLinkPrefix = "link_";
const char* kProgPrefix = "prog_";

std::string link_pin(const std::string& dir, uint64_t cgroup_id, const char* prog) {
  return dir + "/" + kLinkPrefix + std::to_string(cgroup_id) + "_" + prog;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
  }
  return names;
}

// Detaches and unpins one pinned link; the pin must be ours (named link_*).
bool remove_link_pin(const std::string& path) {
  bpf_link* link = bpf_link__open(path.c_str());
  if (link == nullptr) {
    log_warning("cannot open pinned link " + path + ": " + errno_text(errno) + "; leaving it");
    return false;
  }
  if (bpf_link__detach(link) != 0) {
    log_warning("cannot detach link " + path + ": " + errno_text(errno));
  }
  bpf_link__destroy(link);
  if (unlink(path.c_str()) != 0) {
    log_warning("cannot unpin " + path + ": " + errno_text(errno));
    return false;
  }
  return true;
}

struct ProbedHook {
  bpf_prog_type type;
  bpf_attach_type attach;
  const char* what;
};

}  // namespace

// Loads a two-instruction program per hook: EPERM means no permission,
// EINVAL a kernel without that hook — a clearer reason than a verifier log.
std::optional<Failure> Installation::check_kernel() {
  const ProbedHook hooks[] = {
      {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, "cgroup/connect4 (Linux 4.17+)"},
      {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, "cgroup/connect6 (Linux 4.17+)"},
      {BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS, "sockops (Linux 4.13+)"},
      {BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_GETSOCKOPT, "cgroup/getsockopt (Linux 5.3+)"},
      {BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT, "sk_msg (Linux 4.17+, CONFIG_BPF_STREAM_PARSER)"},
  };
  const bpf_insn return_one[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1},  // r0 = 1
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},                   // exit
  };
  for (const ProbedHook& hook : hooks) {
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = hook.attach);
    int fd = bpf_prog_load(hook.type, "sluice_probe", "GPL", return_one, 2, &opts);
    if (fd >= 0) {
      close(fd);
      continue;
    }
    int err = -fd;
    if (err == EPERM || err == EACCES) {
      return Failure{kExitEnvironment,
                     "no permission to load BPF programs (" + errno_text(err) +
                         "): run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN"};
    }
    return Failure{kExitEnvironment, std::string("this kernel lacks the BPF hook ") + hook.what +
                                         " (" + errno_text(err) +
                                         "): Sluice needs Linux 5.15 or newer with "
                                         "CONFIG_BPF_SYSCALL=y and CONFIG_CGROUP_BPF=y"};
  }
  return std::nullopt;
}

Installation::~Installation() {
  if (skel_ != nullptr) sluice_bpf__destroy(skel_);  // pins keep everything alive
}

std::optional<Failure> Installation::check_socket_redirect() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) {
    return Failure{kExitEnvironment, "--socket-redirect needs the kernel's BTF (/sys/kernel/btf/vmlinux, "
                                     "CONFIG_DEBUG_INFO_BTF=y): " + errno_text(errno)};
  }
  bool found = false;
  __s32 id = btf__find_by_name_kind(vmlinux, "sk_psock", BTF_KIND_STRUCT);
  if (id > 0) {
    const btf_type* t = btf__type_by_id(vmlinux, static_cast<__u32>(id));
    const btf_member* m = btf_members(t);
    for (__u16 i = 0; i < btf_vlen(t) && !found; ++i, ++m) {
      const char* name = btf__name_by_offset(vmlinux, m->name_off);
      found = name != nullptr && std::strcmp(name, "msg_tot_len") == 0;
    }
  }
  btf__free(vmlinux);
  if (!found) {
    return Failure{kExitEnvironment,
                   "--socket-redirect: this kernel's struct sk_psock has no msg_tot_len (newer kernels "
                   "count a socket's redirected, unread bytes there), so the shortcut could not be "
                   "bounded; run without --socket-redirect"};
  }
  return std::nullopt;
}

std::unique_ptr<Installation> Installation::load(const std::string& pin_dir, Failure& failure) {
  if (auto f = check_kernel()) {
    failure = *f;
    return nullptr;
  }
  std::unique_ptr<Installation> inst(new Installation());
  inst->pin_dir_ = pin_dir;
  inst->skel_ = sluice_bpf__open();
  if (inst->skel_ == nullptr) {
    failure = {kExitFailure, "cannot open the BPF object: " + errno_text(errno)};
    return nullptr;
  }
  bool any_pinned = false;
  std::string unpinned;  // maps to create: new in this version, or lost
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, inst->skel_->obj) {
    std::string path = pin_dir + "/" + bpf_map__name(map);
    bool pinned = exists(path);
    std::string name = bpf_map__name(map);
    if (pinned && (name == "sluice_counters" || name == "sluice_config" || name == "sluice_sk_path")) {
      // Maps this agent rewrites whole (the config), statistics (the
      // counters) and per-socket path state (a connection already on the
      // shortcut keeps the programs and storage it was given, see
      // attach_sk_msg): another version's layout replaces the map instead of
      // refusing to adopt the rest.
      int fd = bpf_obj_get(path.c_str());
      bpf_map_info info{};
      __u32 len = sizeof(info);
      if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
          (info.max_entries != bpf_map__max_entries(map) || info.value_size != bpf_map__value_size(map)) &&
          unlink(path.c_str()) == 0) {
        log_warning(name + " pinned by another version (" + std::to_string(info.max_entries) + " x " +
                    std::to_string(info.value_size) + " B, this agent " +
                    std::to_string(bpf_map__max_entries(map)) + " x " + std::to_string(bpf_map__value_size(map)) +
                    " B): replaced" + (name == "sluice_counters" ? ", counts start again" : ""));
        pinned = false;
      }
      if (fd >= 0) close(fd);
    }
    any_pinned = any_pinned || pinned;
    if (!pinned) unpinned += std::string(unpinned.empty() ? "" : ", ") + bpf_map__name(map);
    if (int err = bpf_map__set_pin_path(map, path.c_str()); err != 0) {
      failure = {kExitFailure, "cannot set pin path " + path + ": " + errno_text(err)};
      return nullptr;
    }
  }
  if (any_pinned && !unpinned.empty()) {
    log_warning("creating maps not pinned under " + pin_dir + " (new in this version, or removed): " + unpinned);
  }
  inst->adopted_ = any_pinned;

  if (int err = sluice_bpf__load(inst->skel_); err != 0) {
    if (err == -EPERM || err == -EACCES) {
      failure = {kExitEnvironment,
                 "loading the BPF programs was refused (" + errno_text(err) +
                     "): run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (and "
                     "check that no LSM forbids bpf())"};
    } else if (err == -EINVAL && any_pinned) {
      failure = {kExitEnvironment,
                 "cannot load: the maps pinned under " + pin_dir +
                     " do not match this agent's (an incompatible version?). Run "
                     "`sluice-agent uninstall --pin-dir " + pin_dir +
                     "` first; interception stops until the new agent is installed"};
    } else if (err == -EINVAL) {
      failure = {kExitEnvironment,
                 "the kernel rejected a program or map (" + errno_text(err) +
                     "): it probably lacks one of the hooks (cgroup/connect4|6, sockops, "
                     "cgroup/getsockopt, sk_msg) or helpers; Sluice needs Linux 5.15+ with "
                     "CONFIG_CGROUP_BPF=y (libbpf's messages above name the program)"};
    } else {
      failure = {kExitFailure, "cannot load the BPF programs: " + errno_text(err) +
                                   " (libbpf's messages above have the details)"};
    }
    return nullptr;
  }
  return inst;
}

std::optional<std::string> Installation::apply(const decision::MapContents& contents,
                                               SyncStats& stats) {
  MapFds fds;
  fds.config = bpf_map__fd(skel_->maps.sluice_config);
  fds.include_v4 = bpf_map__fd(skel_->maps.sluice_incl_v4);
  fds.exclude_v4 = bpf_map__fd(skel_->maps.sluice_excl_v4);
  fds.include_v6 = bpf_map__fd(skel_->maps.sluice_incl_v6);
  fds.exclude_v6 = bpf_map__fd(skel_->maps.sluice_excl_v6);
  fds.include_ports = bpf_map__fd(skel_->maps.sluice_incl_pt);
  fds.exclude_ports = bpf_map__fd(skel_->maps.sluice_excl_pt);
  return sync_maps(fds, contents, stats);
}

// sluice_sk_msg: attached to the pinned SOCKHASH, not to a cgroup; it lives
// as long as the map, and attaching again replaces the previous agent's.
std::optional<Failure> Installation::attach_sk_msg() {
  bpf_program* prog = skel_->progs.sluice_sk_msg;
  const std::string prog_path = pin_dir_ + "/" + kProgPrefix + bpf_program__name(prog);
  if (exists(prog_path) && unlink(prog_path.c_str()) != 0) {
    return Failure{kExitFailure, "cannot replace " + prog_path + ": " + errno_text(errno)};
  }
  if (int err = bpf_program__pin(prog, prog_path.c_str()); err != 0) {
    return Failure{kExitFailure, "cannot pin " + prog_path + ": " + errno_text(err)};
  }
  if (bpf_prog_attach(bpf_program__fd(prog), bpf_map__fd(skel_->maps.sluice_socks), BPF_SK_MSG_VERDICT, 0) != 0) {
    return Failure{kExitEnvironment, "cannot attach sluice_sk_msg to the sluice_socks map: " + errno_text(errno)};
  }
  log_debug("attached sluice_sk_msg to the sluice_socks map");
  return std::nullopt;
}

std::optional<Failure> Installation::attach(const std::vector<CgroupTarget>& cgroups) {
  std::set<std::string> wanted_links;
  bpf_program* prog = nullptr;

  // The sk_msg program first: a socket takes the map's programs when it is
  // added, so one added by a sockops program before this attach would keep
  // the plain TCP path for its life; and a failure here happens before any
  // cgroup link has switched programs.
  if (auto f = attach_sk_msg()) return f;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (bpf_program__type(prog) == BPF_PROG_TYPE_SK_MSG) continue;
    const char* name = bpf_program__name(prog);
    std::string prog_path = pin_dir_ + "/" + kProgPrefix + name;
    // Replace the program pin; the links keep the old program alive until
    // they switch below.
    if (exists(prog_path) && unlink(prog_path.c_str()) != 0) {
      return Failure{kExitFailure, "cannot replace " + prog_path + ": " + errno_text(errno)};
    }
    if (int err = bpf_program__pin(prog, prog_path.c_str()); err != 0) {
      return Failure{kExitFailure, "cannot pin " + prog_path + ": " + errno_text(err)};
    }

    for (const CgroupTarget& cg : cgroups) {
      std::string path = link_pin(pin_dir_, cg.id, name);
      wanted_links.insert(path);
      if (exists(path)) {
        bpf_link* link = bpf_link__open(path.c_str());
        bpf_link_info info{};
        __u32 len = sizeof(info);
        bool usable = link != nullptr &&
                      bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 &&
                      info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cg.id &&
                      info.cgroup.attach_type == bpf_program__expected_attach_type(prog);
        if (usable) {
          // Atomic: the hook never runs without a Sluice program.
          if (int err = bpf_link__update_program(link, prog); err != 0) {
            bpf_link__destroy(link);
            return Failure{kExitFailure, "cannot switch link " + path + " to the new program: " +
                                             errno_text(err)};
          }
          bpf_link__destroy(link);  // closes our fd; the pin keeps it attached
          log_debug("link " + path + " now runs the new " + name);
          continue;
        }
        // Defunct (its cgroup was removed) or not what the name says.
        if (link != nullptr) bpf_link__destroy(link);
        log_warning("pinned link " + path + " is no longer attached to " + cg.path + ": replacing it");
        if (unlink(path.c_str()) != 0) {
          return Failure{kExitFailure, "cannot remove stale " + path + ": " + errno_text(errno)};
        }
      }
      int cg_fd = open(cg.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (cg_fd < 0) {
        return Failure{kExitFailure, "cannot open cgroup " + cg.path + ": " + errno_text(errno)};
      }
      bpf_link* link = bpf_program__attach_cgroup(prog, cg_fd);
      int attach_err = errno;
      close(cg_fd);
      if (link == nullptr) {
        std::string why = errno_text(attach_err);
        if (attach_err == EPERM) {
          why += ": another program is attached to this hook exclusively (without "
                 "BPF_F_ALLOW_MULTI); Sluice does not replace other tools' programs — "
                 "reattach that one with `multi` or as a link";
        } else if (attach_err == EINVAL) {
          why += ": the kernel may lack BPF links for cgroups (Linux 5.7+)";
        }
        return Failure{kExitEnvironment,
                       std::string("cannot attach ") + name + " to " + cg.path + ": " + why};
      }
      if (int err = bpf_link__pin(link, path.c_str()); err != 0) {
        bpf_link__destroy(link);  // unpinned: closing detaches it
        return Failure{kExitFailure, "cannot pin link " + path + ": " + errno_text(err)};
      }
      bpf_link__disconnect(link);
      bpf_link__destroy(link);
      log_info(std::string("attached ") + name + " to " + cg.path + " (link pinned at " + path + ")");
    }
  }

  // Links of cgroups (or programs) this run does not manage any more.
  for (const std::string& n : list_dir(pin_dir_)) {
    if (n.rfind(kLinkPrefix, 0) != 0) continue;
    std::string path = pin_dir_ + "/" + n;
    if (wanted_links.count(path) != 0) continue;
    log_info("detaching " + path + ": its cgroup is no longer managed");
    remove_link_pin(path);
  }
  return std::nullopt;
}

std::optional<Failure> Installation::uninstall(const std::string& pin_dir) {
  struct stat st {};
  if (stat(pin_dir.c_str(), &st) != 0) {
    log_info("nothing installed: " + pin_dir + " does not exist");
    return std::nullopt;
  }
  // Map names come from the object itself (no load needed).
  std::set<std::string> map_names;
  if (sluice_bpf* skel = sluice_bpf__open()) {
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, skel->obj) map_names.insert(bpf_map__name(map));
    sluice_bpf__destroy(skel);
  } else {
    return Failure{kExitFailure, "cannot open the BPF object: " + errno_text(errno)};
  }

  size_t links = 0, pins = 0;
  std::vector<std::string> names = list_dir(pin_dir);
  // Links first: detaching them stops interception; only then the rest.
  for (const std::string& n : names) {
    if (n.rfind(kLinkPrefix, 0) == 0 && remove_link_pin(pin_dir + "/" + n)) ++links;
  }
  for (const std::string& n : names) {
    if (n.rfind(kProgPrefix, 0) != 0 && map_names.count(n) == 0) continue;
    std::string path = pin_dir + "/" + n;
    if (unlink(path.c_str()) == 0) {
      ++pins;
    } else {
      log_warning("cannot unpin " + path + ": " + errno_text(errno));
    }
  }
  log_info("detached " + std::to_string(links) + " links, removed " + std::to_string(pins) +
           " program and map pins");
  if (rmdir(pin_dir.c_str()) != 0) {
    std::string left;
    for (const std::string& n : list_dir(pin_dir)) left += " " + n;
    return Failure{kExitFailure, "cannot remove " + pin_dir + " (" + errno_text(errno) +
                                     "); left in place, not created by Sluice:" + left};
  }
  log_info("removed " + pin_dir);
  return std::nullopt;
}

}  // namespace sluice::agent
