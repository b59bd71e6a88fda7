// The BPF maps' contents for a set of interception rules, as the exact
// key/value structs of bpf/sluice_maps.h. The agent writes these; tests and
// `sluicectl` compare them with what the kernel holds.
#pragma once

#include <utility>
#include <vector>

#include "bpf/sluice_maps.h"
#include "core/decision/interception_rules.h"

namespace sluice::decision {

struct MapContents {
  sluice_config config{};  // flags include SLUICE_F_ENABLED
  std::vector<std::pair<sluice_lpm_v4, sluice_rule_ref>> include_v4;
  std::vector<std::pair<sluice_lpm_v4, sluice_rule_ref>> exclude_v4;
  std::vector<std::pair<sluice_lpm_v6, sluice_rule_ref>> include_v6;
  std::vector<std::pair<sluice_lpm_v6, sluice_rule_ref>> exclude_v6;
  std::vector<std::pair<sluice_port_key, sluice_rule_ref>> include_ports;
  std::vector<std::pair<sluice_port_key, sluice_rule_ref>> exclude_ports;
};

MapContents to_map_contents(const InterceptionRules& rules);

// Byte-wise equality of everything the maps would hold (order-sensitive:
// to_map_contents is deterministic for equal rules).
bool operator==(const MapContents& a, const MapContents& b);

}  // namespace sluice::decision
