#include "agent/proxy_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "agent/log.h"

namespace sluice::agent {

namespace {

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

ProxySupervisor::ProxySupervisor(SupervisorOptions options)
    : o_(std::move(options)), backoff_(o_.min_backoff) {}

std::string ProxySupervisor::start() {
  // Report exec/cgroup failures from the child through a CLOEXEC pipe.
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  std::vector<std::string> argv_s;
  argv_s.push_back(o_.binary);
  argv_s.insert(argv_s.end(), o_.args.begin(), o_.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string procs = o_.cgroup_dir.empty() ? "" : o_.cgroup_dir + "/cgroup.procs";

  pid_t pid = fork();
  if (pid < 0) {
    close(pfd[0]);
    close(pfd[1]);
    return std::string("fork: ") + std::strerror(errno);
  }
  if (pid == 0) {
    close(pfd[0]);
    // The agent blocks its signals for signalfd; the proxy starts clean.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const char* stage = "cgroup";
    if (!procs.empty()) {
      int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) {
        int err = errno;
        (void)!write(pfd[1], stage, 1);
        (void)!write(pfd[1], &err, sizeof(err));
        _exit(127);
      }
      close(fd);
    }
    execv(argv[0], argv.data());
    int err = errno;
    stage = "exec";
    (void)!write(pfd[1], stage, 1);
    (void)!write(pfd[1], &err, sizeof(err));
    _exit(127);
  }
  close(pfd[1]);
  char stage = 0;
  int err = 0;
  ssize_t n = read(pfd[0], &stage, 1);
  if (n == 1) (void)!read(pfd[0], &err, sizeof(err));
  close(pfd[0]);
  if (n == 1) {
    waitpid(pid, nullptr, 0);
    return (stage == 'c' ? "cannot move the proxy into " + procs : "cannot run " + o_.binary) + ": " +
           std::strerror(err);
  }
  pid_ = pid;
  started_at_ = std::chrono::steady_clock::now();
  restart_pending_ = false;
  log_info("proxy started: pid " + std::to_string(pid) + " (" + o_.binary + ")" +
           (procs.empty() ? "" : " in " + o_.cgroup_dir));
  return "";
}

void ProxySupervisor::reap() {
  int status = 0;
  pid_t r;
  while ((r = waitpid(-1, &status, WNOHANG)) > 0) {
    if (r != pid_) continue;
    auto now = std::chrono::steady_clock::now();
    if (now - started_at_ >= o_.healthy_after) backoff_ = o_.min_backoff;
    log_error("proxy pid " + std::to_string(pid_) + " " + describe_status(status) + "; restarting in " +
              std::to_string(backoff_.count()) + " ms");
    pid_ = -1;
    restart_pending_ = true;
    restart_at_ = now + backoff_;
    backoff_ = std::min(backoff_ * 2, o_.max_backoff);
  }
}

void ProxySupervisor::tick() {
  if (!restart_pending_ || std::chrono::steady_clock::now() < restart_at_) return;
  ++restarts_;
  if (std::string err = start(); !err.empty()) {
    log_error(err + "; retrying in " + std::to_string(backoff_.count()) + " ms");
    restart_at_ = std::chrono::steady_clock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, o_.max_backoff);
  }
}

std::chrono::milliseconds ProxySupervisor::until_due(std::chrono::milliseconds cap) const {
  if (!restart_pending_) return cap;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(restart_at_ - std::chrono::steady_clock::now());
  return std::clamp(left + std::chrono::milliseconds(1), std::chrono::milliseconds(1), cap);
}

void ProxySupervisor::stop(std::chrono::milliseconds grace) {
  restart_pending_ = false;
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace sluice::agent
