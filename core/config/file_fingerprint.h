// A cheap fingerprint of configuration files, for polling watchers (the
// agent's and the proxy's): it changes whenever a file under the paths is
// added, removed, replaced or modified. Covers in-place edits on a VM and a
// Kubernetes ConfigMap volume's `..data` symlink swap (symlinks are followed,
// so the new target's inodes show up).
#pragma once

#include <string>
#include <vector>

namespace sluice::config {

// Path, inode, size and mtime of every file under `paths` (directories read
// recursively, sorted), one line each.
std::string file_fingerprint(const std::vector<std::string>& paths);

}  // namespace sluice::config
