// Which files a directory argument stands for.
//
// Like `kubectl apply -f dir/`: every *.yaml, *.yml and *.json file below it,
// recursively, in path order. A mounted Kubernetes ConfigMap volume is also a
// directory, laid out as
//     dir/..2024_01_01_00_00_00.123/mesh   the data, swapped atomically
//     dir/..data -> ..2024_01_01_00_00_00.123
//     dir/mesh -> ..data/mesh
// Its files are named after the ConfigMap's keys, usually without an
// extension; they are loaded once each through their visible names and the
// `..`-prefixed internals are skipped.
#pragma once

#include <string>
#include <vector>

#include "core/config/diagnostic.h"

namespace sluice::config {

// Files to load for directory `dir`, sorted. Unreadable entries are reported
// to `diagnostics` and skipped.
std::vector<std::string> list_config_files(const std::string& dir, Diagnostics& diagnostics);

}  // namespace sluice::config
