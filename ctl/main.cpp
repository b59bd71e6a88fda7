// sluicectl: the operator's view of Sluice.
//
//   sluicectl validate PATH...   per-resource checks with Istio's messages
//   sluicectl analyze PATH...    the same, plus istioctl-style cross-resource analysis
//
// Exit codes: 0 clean (warnings allowed unless --fail-threshold Warning),
// 1 findings at or above the threshold, 2 usage error.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "core/config/analysis.h"
#include "core/config/loader.h"
#include "core/config/validation.h"
#include "ctl/report.h"

namespace {

using sluice::config::Diagnostics;
using sluice::config::Severity;

struct CheckOptions {
  std::vector<std::string> paths;
  std::vector<std::string> sets;
  std::string output = "text";
  std::string fail_threshold = "Error";
};

// Loads, validates and (for analyze) cross-checks; prints the report; returns the exit code.
int run_check(const std::string& command, const CheckOptions& opts) {
  sluice::config::LoadResult loaded = sluice::config::load_paths(opts.paths);
  for (const auto& s : opts.sets) sluice::config::apply_set_flag(s, loaded);

  Diagnostics all = loaded.diagnostics;
  all.append(sluice::config::validate(loaded.config));
  if (command == "analyze") all.append(sluice::config::analyze(loaded.config));

  sluice::ctl::ReportSummary summary{command, loaded.config.resource_count(), loaded.config.source_files};
  const auto format = opts.output == "json" ? sluice::ctl::OutputFormat::kJson : sluice::ctl::OutputFormat::kText;
  sluice::ctl::write_report(std::cout, format, summary, all);

  const Severity threshold = opts.fail_threshold == "Warning" ? Severity::kWarning
                             : opts.fail_threshold == "Info" ? Severity::kInfo
                                                             : Severity::kError;
  for (const auto& d : all.items()) {
    if (d.severity >= threshold) return 1;
  }
  return 0;
}

void add_check_command(CLI::App& app, const std::string& name, const std::string& description,
                       CheckOptions& opts, std::string& chosen) {
  CLI::App* sub = app.add_subcommand(name, description);
  sub->add_option("paths", opts.paths,
                  "Files or directories of Istio YAML: ServiceEntry, VirtualService, DestinationRule,\n"
                  "Gateway, the `istio` ConfigMap (or a bare MeshConfig), Helm values or an\n"
                  "IstioOperator. Directories are read recursively (*.yaml, *.yml, *.json and\n"
                  "Kubernetes ConfigMap volumes).")
      ->required();
  sub->add_option("--set", opts.sets,
                  "Install option as istioctl takes it, e.g.\n"
                  "--set values.global.proxy.includeIPRanges=\"10.244.0.0/16\\,10.240.0.0/16\"");
  sub->add_option("-o,--output", opts.output, "Output format: text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  sub->add_option("--fail-threshold", opts.fail_threshold,
                  "Lowest severity that makes the exit code non-zero: Error (default), Warning, Info")
      ->check(CLI::IsMember({"Error", "Warning", "Info"}));
  sub->callback([&chosen, name] { chosen = name; });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluicectl - inspect and check Sluice's configuration.\n\n"
      "Sluice reads Istio's own YAML. `validate` checks each resource the way Istio's\n"
      "admission webhook does; `analyze` also checks the resources against each other the\n"
      "way `istioctl analyze` does (gateways, subsets and hosts that are referenced but\n"
      "missing, TLS without CA certificates, ...). Every finding names file:line.\n\n"
      "Examples:\n"
      "  sluicectl validate configs/walkthrough\n"
      "  sluicectl analyze configs/default -o json\n"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");

  CheckOptions validate_opts;
  CheckOptions analyze_opts;
  std::string chosen;
  add_check_command(app, "validate", "Validate each resource with Istio's rules and messages", validate_opts,
                    chosen);
  add_check_command(app, "analyze",
                    "Validate, then analyze the resources together as `istioctl analyze` does", analyze_opts,
                    chosen);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (chosen == "validate") return run_check("validate", validate_opts);
  if (chosen == "analyze") return run_check("analyze", analyze_opts);
  return 2;
}
