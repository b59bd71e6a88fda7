#include "ctl/report.h"

#include <nlohmann/json.hpp>

namespace sluice::ctl {

nlohmann::json diagnostic_to_json(const config::Diagnostic& d) {
  nlohmann::json j;
  j["level"] = config::severity_name(d.severity);
  if (!d.code.empty()) j["code"] = d.code;
  j["message"] = d.message;
  if (!d.kind.empty()) {
    j["origin"] = {{"kind", d.kind}, {"namespace", d.namespace_}, {"name", d.name}};
  }
  if (!d.field.empty()) j["field"] = d.field;
  j["file"] = d.location.file;
  if (d.location.known()) {
    j["line"] = d.location.line;
    j["column"] = d.location.column;
  }
  j["text"] = d.format();
  return j;
}

void write_report(std::ostream& out, OutputFormat format, const ReportSummary& summary,
                  const config::Diagnostics& diagnostics) {
  if (format == OutputFormat::kJson) {
    nlohmann::json j;
    j["command"] = summary.command;
    j["resources"] = summary.resources;
    j["files"] = summary.files;
    j["errors"] = diagnostics.error_count();
    j["warnings"] = diagnostics.warning_count();
    j["messages"] = nlohmann::json::array();
    for (const auto& d : diagnostics.items()) j["messages"].push_back(diagnostic_to_json(d));
    out << j.dump(2) << "\n";
    return;
  }
  for (const auto& d : diagnostics.items()) out << d.format() << "\n";
  const size_t errors = diagnostics.error_count();
  const size_t warnings = diagnostics.warning_count();
  if (errors == 0 && warnings == 0) {
    out << "\u2714 No validation issues found when " << (summary.command == "analyze" ? "analyzing" : "validating")
        << " " << summary.resources << " resource" << (summary.resources == 1 ? "" : "s") << " from "
        << summary.files.size() << " file" << (summary.files.size() == 1 ? "" : "s") << ".\n";
  } else {
    out << errors << " error" << (errors == 1 ? "" : "s") << ", " << warnings << " warning"
        << (warnings == 1 ? "" : "s") << " in " << summary.resources << " resource"
        << (summary.resources == 1 ? "" : "s") << " from " << summary.files.size() << " file"
        << (summary.files.size() == 1 ? "" : "s") << ".\n";
  }
}

}  // namespace sluice::ctl
