// Brings the pinned BPF maps to a new MapContents in place, while the
// programs keep running: first every new entry is inserted (or updated),
// then the config entry is written, then stale entries are deleted. At no
// moment is an entry that is in both the old and the new contents missing,
// so a connection that both configurations redirect is always redirected.
#pragma once

#include <optional>
#include <string>

#include "core/decision/map_contents.h"

namespace sluice::agent {

struct MapFds {
  int config = -1;
  int include_v4 = -1;
  int exclude_v4 = -1;
  int include_v6 = -1;
  int exclude_v6 = -1;
  int include_ports = -1;
  int exclude_ports = -1;
};

struct SyncStats {
  size_t upserted = 0;
  size_t deleted = 0;
};

// Returns an error message on failure (the maps may then hold a mix of the
// old and new entries, but never lack an entry present in both).
std::optional<std::string> sync_maps(const MapFds& fds, const decision::MapContents& desired,
                                     SyncStats& stats);

}  // namespace sluice::agent
