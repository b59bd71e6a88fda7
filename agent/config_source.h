// The agent's view of its configuration: the files given with --config and
// the --set assignments, loaded with the shared config loader and compiled
// into interception rules; plus a cheap fingerprint to notice file changes
// (in-place edits on a VM, ConfigMap `..data` symlink swaps in Kubernetes).
#pragma once

#include <string>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/decision/interception_rules.h"

namespace sluice::agent {

struct ConfigInputs {
  std::vector<std::string> paths;  // --config, in order
  std::vector<std::string> sets;   // --set key=value, applied after the files
};

struct CompiledConfig {
  decision::InterceptionRules rules;
  config::Diagnostics diagnostics;  // loader + compile diagnostics
  bool ok() const { return !diagnostics.has_errors(); }
};

CompiledConfig load_and_compile(const ConfigInputs& inputs, const decision::ProxySettings& proxy);

// config::file_fingerprint (shared with sluice-proxy's config watch).
std::string fingerprint(const std::vector<std::string>& paths);

}  // namespace sluice::agent
