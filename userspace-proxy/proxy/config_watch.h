// Live configuration for sluice-proxy: polls the --config paths' fingerprint
// (config::file_fingerprint) and, once a change has stayed the same for one
// interval (so a half-written file is never loaded), loads and validates the
// files. Errors are logged with file:line and the last good snapshot stays;
// success publishes a new generation. Works for files edited in place and for
// a Kubernetes ConfigMap volume's `..data` symlink swap.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "userspace-proxy/proxy/snapshot.h"

namespace sluice::proxy {

class ConfigWatch {
 public:
  using Log = std::function<void(const std::string& line)>;

  // `store` must already hold generation `first_generation` (loaded at start).
  ConfigWatch(std::vector<std::string> paths, SnapshotStore& store, Log info, Log error,
              std::chrono::milliseconds interval = std::chrono::milliseconds(250), ProxyIdentity identity = {});
  ~ConfigWatch();
  ConfigWatch(const ConfigWatch&) = delete;
  ConfigWatch& operator=(const ConfigWatch&) = delete;

  void start();
  void stop();

  // One polling step (what the thread does every interval); returns true when
  // a new snapshot was published. For tests and for SIGHUP (force = reload
  // even if nothing changed).
  bool poll(bool force = false);

 private:
  std::vector<std::string> paths_;
  ProxyIdentity identity_;
  SnapshotStore& store_;
  Log info_, error_;
  std::chrono::milliseconds interval_;
  std::string seen_, settling_, last_errors_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

// "config generation 3 from a.yaml, b.yaml (2 service entries, mode REGISTRY_ONLY)"
std::string describe(const Snapshot& s);

}  // namespace sluice::proxy
