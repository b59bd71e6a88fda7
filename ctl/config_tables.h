// The configuration sluicectl reasons about, built exactly as the data plane
// builds it: the files (+ --set) through the shared loader and validation,
// the interception rules through decision::compile_rules (as sluice-agent
// does), and the registry, route table and DestinationRule index over the
// ConfigSet (as sluice-proxy's Snapshot does). `explain` and `config dump`
// read nothing else, so what they print is what the agent and proxy do.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/model.h"
#include "core/decision/interception_rules.h"
#include "core/policy/destination.h"
#include "core/policy/outbound_mode.h"
#include "core/policy/registry.h"
#include "core/policy/request_plan.h"
#include "core/policy/routing.h"

namespace sluice::ctl {

// The immutable tables of one loaded configuration. The registry, routes and
// DestinationRule index point into `config`, so the object never moves.
class ConfigTables {
 public:
  explicit ConfigTables(config::ConfigSet loaded);
  ConfigTables(const ConfigTables&) = delete;
  ConfigTables& operator=(const ConfigTables&) = delete;

  policy::OutboundMode mode() const { return policy::effective_outbound_mode(config); }
  policy::PlanTables tables() const { return {&config, &registry, &routes, &destinations, mode().mode}; }

  const config::ConfigSet config;
  const policy::Registry registry;
  const policy::RouteTable routes;
  const policy::DestinationRules destinations;
};

struct LoadedConfig {
  // Null when the configuration has errors: neither the proxy nor the agent
  // would run it, so nothing can be explained from it.
  std::unique_ptr<const ConfigTables> tables;
  decision::InterceptionRules rules;
  // Loader, --set, validation and rule-compilation findings, in that order.
  config::Diagnostics diagnostics;
};

// Loads `paths`, applies each `--set` assignment, validates, and compiles the
// interception rules with the agent's default proxy settings (127.0.0.1 /
// ::1 port 15001, mark 0x539, uid/gid 1337).
LoadedConfig load_config(const std::vector<std::string>& paths, const std::vector<std::string>& sets);

// "k=v" flags (--label) into a map. Returns the offending flag's message on error.
std::optional<std::string> parse_labels(const std::vector<std::string>& flags,
                                        std::map<std::string, std::string>& out);

}  // namespace sluice::ctl
