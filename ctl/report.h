// Rendering of diagnostics for sluicectl: the human text form (one line per
// finding, istioctl's shapes) and a JSON form for tools.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "core/config/diagnostic.h"

namespace sluice::ctl {

struct ReportSummary {
  std::string command;  // "validate" | "analyze"
  size_t resources = 0;
  std::vector<std::string> files;
};

enum class OutputFormat { kText, kJson };

// One diagnostic as the JSON reports carry it (level, code, message, origin,
// field, file, line, column, text).
nlohmann::json diagnostic_to_json(const config::Diagnostic& d);

// Writes every diagnostic, then a closing line (text) or one JSON document.
void write_report(std::ostream& out, OutputFormat format, const ReportSummary& summary,
                  const config::Diagnostics& diagnostics);

}  // namespace sluice::ctl
