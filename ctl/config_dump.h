// `sluicectl config dump`: the effective configuration the agent and the
// proxy would run from a set of files: mesh config (with where the
// outboundTrafficPolicy mode comes from), install options and the
// interception rules compiled from them (in the kernel's evaluation order),
// every resource by kind with file:line, and the Gateway servers a gateway
// proxy with the given labels would listen with.
#pragma once

#include <map>
#include <ostream>
#include <string>

#include "core/decision/interception_rules.h"
#include "ctl/config_tables.h"
#include "ctl/report.h"

namespace sluice::ctl {

void write_config_dump(std::ostream& out, OutputFormat format, const ConfigTables& tables,
                       const decision::InterceptionRules& rules, const std::map<std::string, std::string>& labels,
                       const config::Diagnostics& diagnostics);

}  // namespace sluice::ctl
