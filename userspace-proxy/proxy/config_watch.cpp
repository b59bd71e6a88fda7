#include "userspace-proxy/proxy/config_watch.h"

#include "core/config/file_fingerprint.h"

namespace sluice::proxy {

std::string describe(const Snapshot& s) {
  std::string files;
  for (const auto& f : s.config.source_files) files += (files.empty() ? "" : ", ") + f;
  if (files.empty()) files = "(built-in defaults)";
  std::string out = "config generation " + std::to_string(s.generation) + " from " + files + " (" +
                    std::to_string(s.config.service_entries.size()) + " service entries, outboundTrafficPolicy " +
                    config::to_string(s.mode()) + ")";
  // A sidecar scoped by a Sidecar resource says which.
  if (!s.sidecar_scope.empty()) out += "; " + s.sidecar_scope;
  return out;
}

ConfigWatch::ConfigWatch(std::vector<std::string> paths, SnapshotStore& store, Log info, Log error,
                         std::chrono::milliseconds interval, ProxyIdentity identity)
    : paths_(std::move(paths)), identity_(std::move(identity)), store_(store), info_(std::move(info)), error_(std::move(error)),
      interval_(interval) {
  seen_ = settling_ = config::file_fingerprint(paths_);
}

ConfigWatch::~ConfigWatch() { stop(); }

void ConfigWatch::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, interval_, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      poll();
      lock.lock();
    }
  });
}

void ConfigWatch::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool ConfigWatch::poll(bool force) {
  std::string now = config::file_fingerprint(paths_);
  if (!force) {
    if (now == seen_) return false;
    if (now != settling_) {  // still changing: wait one more interval
      settling_ = now;
      return false;
    }
  }
  seen_ = settling_ = now;
  SnapshotPtr current = store_.current();
  uint64_t next_generation = (current ? current->generation : 0) + 1;
  SnapshotLoad load = load_snapshot(paths_, next_generation, identity_);
  if (!load.snapshot) {
    std::string errors;
    for (const auto& d : load.diagnostics.items()) errors += d.format() + "\n";
    if (errors != last_errors_) {
      for (const auto& d : load.diagnostics.items()) error_(d.format());
      error_("the new configuration has errors: keeping config generation " +
             std::to_string(current ? current->generation : 0));
      last_errors_ = errors;
    }
    return false;
  }
  last_errors_.clear();
  for (const auto& d : load.diagnostics.items()) info_(d.format());
  store_.publish(load.snapshot);
  info_(describe(*load.snapshot));
  return true;
}

}  // namespace sluice::proxy
