// The agent's kernel state: the BPF object (skeleton), its pins and its
// cgroup links under one pin directory.
//
// Pin layout (everything Sluice creates, nothing else):
//   <pin-dir>/<map name>                 maps, e.g. sluice_counters
//   <pin-dir>/prog_<program name>        programs
//   <pin-dir>/link_<cgroup id>_<program> one BPF link per cgroup and hook
//
// Loading adopts what a previous agent pinned: the pinned maps are reused
// (so records, counters and ranges survive) and the pinned links are
// switched to the new programs with BPF_LINK_UPDATE, atomically, so
// interception never stops across an agent restart or upgrade.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/map_sync.h"
#include "agent/system_mounts.h"
#include "core/decision/map_contents.h"

struct sluice_bpf;

namespace sluice::agent {

// Exit codes the agent uses for start-up failures (documented in --help).
enum ExitCode {
  kExitOk = 0,
  kExitFailure = 1,      // runtime failure
  kExitUsage = 2,        // bad flags or configuration
  kExitEnvironment = 3,  // no cgroup v2, no BPF permission, kernel lacks a hook
};

struct Failure {
  int exit_code = kExitFailure;
  std::string message;
};

class Installation {
 public:
  ~Installation();
  Installation(const Installation&) = delete;
  Installation& operator=(const Installation&) = delete;

  // Checks that the kernel has every hook and that we may load programs,
  // with a reason a user can act on.
  static std::optional<Failure> check_kernel();

  // --socket-redirect bounds each shortcut by the peer's unread bytes, which
  // the sk_msg program reads from sk_psock.msg_tot_len: refuses (with the
  // reason) on a kernel whose BTF lacks it, rather than run unbounded.
  static std::optional<Failure> check_socket_redirect();

  // Loads the programs, reusing maps pinned in pin_dir by an earlier run.
  static std::unique_ptr<Installation> load(const std::string& pin_dir, Failure& failure);

  // True when the maps came from an earlier run (a restart).
  bool adopted() const { return adopted_; }

  // Writes the maps (see map_sync.h for the ordering guarantees).
  std::optional<std::string> apply(const decision::MapContents& contents, SyncStats& stats);

  // Pins the programs and makes the links match `cgroups` (the sk_msg
  // program goes first, onto its SOCKHASH): existing links
  // switch to the new programs, missing ones are created and pinned, links
  // pinned for cgroups no longer listed are detached and unpinned.
  std::optional<Failure> attach(const std::vector<CgroupTarget>& cgroups);

  // Removes everything a previous run pinned under pin_dir: detaches its
  // links, unpins programs and maps, removes the directory. Leaves unknown
  // files alone (and says so).
  static std::optional<Failure> uninstall(const std::string& pin_dir);

 private:
  Installation() = default;
  // Pins sluice_sk_msg and attaches it to the sluice_socks SOCKHASH.
  std::optional<Failure> attach_sk_msg();

  std::string pin_dir_;
  sluice_bpf* skel_ = nullptr;
  bool adopted_ = false;
};

}  // namespace sluice::agent
