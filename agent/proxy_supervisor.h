// Starts sluice-proxy as a child of the agent, inside the managed proxy
// cgroup (so its own connections are exempt and SO_ORIGINAL_DST answers it),
// and restarts it with exponential backoff when it dies. Driven by the
// agent's loop: reap() on SIGCHLD, tick() every iteration.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::agent {

struct SupervisorOptions {
  std::string binary;             // --proxy-binary
  std::vector<std::string> args;  // --proxy-arg, in order
  std::string cgroup_dir;         // the proxy's cgroup v2 directory ("" = stay in the agent's)
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{10000};
  // A proxy that ran at least this long resets the backoff.
  std::chrono::milliseconds healthy_after{10000};
};

class ProxySupervisor {
 public:
  explicit ProxySupervisor(SupervisorOptions options);
  // Starts the proxy now. Returns "" or what failed (fork, exec, cgroup).
  std::string start();
  // Collects an exited proxy (SIGCHLD) and schedules the restart.
  void reap();
  // Restarts the proxy when its backoff has passed.
  void tick();
  // How long the agent may sleep before tick() has work (for its poll timeout).
  std::chrono::milliseconds until_due(std::chrono::milliseconds cap) const;
  // SIGTERM to the proxy, then waits up to `grace` before SIGKILL.
  void stop(std::chrono::milliseconds grace);

  pid_t pid() const { return pid_; }
  uint64_t restarts() const { return restarts_; }

 private:
  SupervisorOptions o_;
  pid_t pid_ = -1;
  std::chrono::steady_clock::time_point started_at_{};
  std::chrono::steady_clock::time_point restart_at_{};
  bool restart_pending_ = false;
  std::chrono::milliseconds backoff_;
  uint64_t restarts_ = 0;
};

}  // namespace sluice::agent
