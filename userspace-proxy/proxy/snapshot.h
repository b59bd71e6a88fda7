// The configuration one connection is decided with: an immutable snapshot of
// everything loaded from --config plus the registry built over it. Workers
// read the current one with one atomic load; a connection keeps the snapshot
// it started with (shared_ptr), so a reload never changes a decision half-way.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/model.h"
#include "core/policy/registry.h"

namespace sluice::proxy {

struct Snapshot {
  Snapshot(config::ConfigSet loaded, uint64_t gen);
  Snapshot(const Snapshot&) = delete;  // the registry points into `config`
  Snapshot& operator=(const Snapshot&) = delete;

  // The effective outboundTrafficPolicy: the mesh config (the `istio`
  // ConfigMap) when one was loaded, else the install option, else ALLOW_ANY.
  config::OutboundTrafficPolicyMode mode() const;

  const config::ConfigSet config;
  const policy::Registry registry;
  const uint64_t generation;
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

struct SnapshotLoad {
  SnapshotPtr snapshot;              // null when the files have errors
  config::Diagnostics diagnostics;   // loader + validation findings
};

// Loads and validates `paths`; errors leave `snapshot` null.
SnapshotLoad load_snapshot(const std::vector<std::string>& paths, uint64_t generation);

// Holds the current snapshot for all workers.
class SnapshotStore {
 public:
  SnapshotPtr current() const { return current_.load(std::memory_order_acquire); }
  void publish(SnapshotPtr next) { current_.store(std::move(next), std::memory_order_release); }

 private:
  std::atomic<std::shared_ptr<const Snapshot>> current_;
};

}  // namespace sluice::proxy
