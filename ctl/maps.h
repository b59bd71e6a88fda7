// `sluicectl maps`: the contents of the BPF maps sluice-agent pinned, read
// back from the kernel and decoded with the layouts of bpf/sluice_maps.h:
// the config entry, the include/exclude ranges and ports (each with the
// position of the configured entry that put it there) and the per-CPU
// counters summed over every possible CPU.
//
// What the kernel holds is put into decision::MapContents, the struct the
// agent writes from, so a reader can compare both with operator==. Nothing is
// modified; every failure is reported (per map), never thrown.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "bpf/sluice_maps.h"
#include "core/decision/map_contents.h"
#include "ctl/report.h"

namespace sluice::ctl {

// Exit codes of `sluicectl maps` (2, usage, is the CLI's).
enum MapsExit {
  kMapsOk = 0,      // every map was read and decoded
  kMapsFailed = 1,  // no pin directory, no permission, a map missing or of another layout
};

struct MapReadError {
  std::string map;    // pin name, e.g. sluice_incl_v4
  std::string error;  // why it could not be read or decoded
};

struct MapsReport {
  std::string pin_dir;
  std::string error;  // non-empty: the pin directory itself could not be read
  std::vector<MapReadError> map_errors;
  bool have_config = false;           // the config entry was read
  decision::MapContents contents;     // entries sorted by rule index, then key
  unsigned possible_cpus = 0;         // the counters were summed over these
  std::vector<uint64_t> counters;     // by enum sluice_counter; empty: unread

  int exit_code() const { return error.empty() && map_errors.empty() ? kMapsOk : kMapsFailed; }
};

MapsReport read_pinned_maps(const std::string& pin_dir);

// The counter's name as the kernel tests and `maps` print it ("intercepted",
// "excluded_port", ...): enum sluice_counter without SLUICE_CTR_, lower case.
// nullptr for an index this build does not know (a newer agent's map).
const char* counter_name(uint32_t index);

// "a.b.c.d/n" and "x:y::/n", host bits as stored.
std::string range_text(const sluice_lpm_v4& key);
std::string range_text(const sluice_lpm_v6& key);

void write_maps(std::ostream& out, OutputFormat format, const MapsReport& report);

}  // namespace sluice::ctl
