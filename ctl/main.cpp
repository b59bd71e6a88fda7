// sluicectl: the operator's view of Sluice.
//
//   sluicectl validate PATH...        per-resource checks with Istio's messages
//   sluicectl analyze PATH...         the same, plus istioctl-style cross-resource analysis
//   sluicectl explain DEST PATH...    every decision the agent and the proxy take for one connection
//   sluicectl config dump PATH...     the effective configuration
//   sluicectl status                  the proxy's health, the agent's pins, certificate expiry
//   sluicectl maps                    the agent's pinned BPF maps, decoded
//
// Exit codes (see --help): 2 is a usage or configuration error everywhere;
// validate/analyze: 0 clean, 1 findings; explain: 0 the connection reaches a
// destination, 3 it does not; config dump: 0; status: 0 healthy, 1 not;
// maps: 0 every map read, 1 not.
#include <CLI/CLI.hpp>
#include <ctime>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "core/config/analysis.h"
#include "core/config/loader.h"
#include "core/config/validation.h"
#include "ctl/config_dump.h"
#include "ctl/config_tables.h"
#include "ctl/explain.h"
#include "ctl/maps.h"
#include "ctl/report.h"
#include "ctl/status.h"

namespace {

using sluice::config::Diagnostics;
using sluice::config::Severity;
using sluice::ctl::OutputFormat;

constexpr int kExitUsage = 2;

const char* const kPathsHelp =
    "Files or directories of Istio YAML: ServiceEntry, VirtualService, DestinationRule,\n"
    "Gateway, the `istio` ConfigMap (or a bare MeshConfig), Helm values or an\n"
    "IstioOperator. Directories are read recursively (*.yaml, *.yml, *.json and\n"
    "Kubernetes ConfigMap volumes).";
const char* const kSetHelp =
    "Install option as istioctl takes it, e.g.\n"
    "--set values.global.proxy.includeIPRanges=\"10.244.0.0/16\\,10.240.0.0/16\"\n"
    "--set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY (repeatable; applied after the files)";

OutputFormat format_of(const std::string& output) {
  return output == "json" ? OutputFormat::kJson : OutputFormat::kText;
}

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
  sluice::ctl::write_report(std::cout, format_of(opts.output), summary, all);

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
  sub->add_option("paths", opts.paths, kPathsHelp)->required();
  sub->add_option("--set", opts.sets, kSetHelp);
  sub->add_option("-o,--output", opts.output, "Output format: text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  sub->add_option("--fail-threshold", opts.fail_threshold,
                  "Lowest severity that makes the exit code non-zero: Error (default), Warning, Info")
      ->check(CLI::IsMember({"Error", "Warning", "Info"}));
  sub->callback([&chosen, name] { chosen = name; });
}

// Loads the configuration for explain / config dump. Findings go to stderr
// (stdout stays one document with -o json); errors make it unusable.
std::unique_ptr<sluice::ctl::LoadedConfig> load_or_report(const std::string& command,
                                                          const std::vector<std::string>& paths,
                                                          const std::vector<std::string>& sets) {
  auto loaded = std::make_unique<sluice::ctl::LoadedConfig>(sluice::ctl::load_config(paths, sets));
  for (const auto& d : loaded->diagnostics.items()) std::cerr << d.format() << "\n";
  if (!loaded->tables) {
    std::cerr << "sluicectl " << command
              << ": the configuration has errors (above): sluice-proxy and sluice-agent would refuse it, so "
                 "there is nothing to "
              << (command == "explain" ? "explain" : "dump") << ". `sluicectl validate` lists them.\n";
    return nullptr;
  }
  return loaded;
}

struct ExplainFlags {
  std::string destination;
  std::vector<std::string> paths;
  std::vector<std::string> sets;
  std::string host;
  std::string sni;
  std::string role = "sidecar";
  std::vector<std::string> labels;
  std::string namespace_;
  std::string method = "GET";
  std::string path = "/";
  std::vector<std::string> headers;
  std::string output = "text";
  CLI::Option* host_option = nullptr;
  CLI::Option* sni_option = nullptr;
};

int usage_error(const std::string& command, const std::string& message) {
  std::cerr << "sluicectl " << command << ": " << message << "\n";
  return kExitUsage;
}

int run_explain(const ExplainFlags& f) {
  sluice::ctl::ExplainRequest req;
  if (auto err = sluice::ctl::parse_destination(f.destination, req.address, req.port)) {
    return usage_error("explain", "DEST " + *err);
  }
  req.gateway = f.role == "gateway";
  if (auto err = sluice::ctl::parse_labels(f.labels, req.labels)) return usage_error("explain", *err);
  if (req.gateway && req.labels.empty()) req.labels["istio"] = "egressgateway";
  req.namespace_ = !f.namespace_.empty() ? f.namespace_ : req.gateway ? "istio-system" : "default";
  req.workload_known = !f.namespace_.empty() || !f.labels.empty();
  if (f.host_option->count() > 0) {
    if (!sluice::ctl::normalize_host(f.host, /*strip_port=*/true)) {
      return usage_error("explain", "--host \"" + f.host + "\" is not a host name (or IP) with an optional :port");
    }
    req.host = f.host;
  }
  if (f.sni_option->count() > 0) {
    if (!sluice::ctl::normalize_host(f.sni, /*strip_port=*/false)) {
      return usage_error("explain", "--sni \"" + f.sni + "\" is not a host name");
    }
    req.sni = f.sni;
  }
  if (f.method.empty() || f.method.find_first_of(" \t\r\n") != std::string::npos) {
    return usage_error("explain", "--method \"" + f.method + "\" is not an HTTP method");
  }
  if (f.path.empty() || f.path.front() != '/') {
    return usage_error("explain", "--path \"" + f.path + "\" must start with / (origin form, query allowed)");
  }
  req.method = f.method;
  req.path = f.path;
  for (const std::string& h : f.headers) {
    const size_t split = h.find_first_of("=:");
    if (split == std::string::npos || split == 0) {
      return usage_error("explain", "--header " + h + ": not NAME=VALUE (e.g. --header x-user=alice)");
    }
    req.headers.emplace_back(h.substr(0, split), h.substr(split + 1));
  }

  auto loaded = load_or_report("explain", f.paths, f.sets);
  if (!loaded) return kExitUsage;
  // The proxy's view, as sluice-proxy builds it (exportTo, a sidecar's
  // Sidecar resource).
  const std::unique_ptr<const sluice::ctl::ConfigTables> view = sluice::ctl::proxy_view(*loaded->tables, req);
  const sluice::ctl::Explanation e = sluice::ctl::explain(*view, loaded->rules, req);
  sluice::ctl::write_explanation(std::cout, format_of(f.output), e, req);
  return e.exit_code();
}

struct DumpFlags {
  std::vector<std::string> paths;
  std::vector<std::string> sets;
  std::vector<std::string> labels;
  std::string namespace_;
  std::vector<std::string> workload_labels;
  std::string output = "text";
};

int run_config_dump(const DumpFlags& f) {
  std::map<std::string, std::string> labels;
  if (auto err = sluice::ctl::parse_labels(f.labels, labels)) return usage_error("config dump", *err);
  if (labels.empty()) labels["istio"] = "egressgateway";
  sluice::ctl::ExplainRequest workload;
  if (auto err = sluice::ctl::parse_labels(f.workload_labels, workload.labels)) {
    return usage_error("config dump", *err);
  }
  if (!f.workload_labels.empty() && f.namespace_.empty()) {
    return usage_error("config dump", "--workload-label needs --namespace (the workload's)");
  }
  auto loaded = load_or_report("config dump", f.paths, f.sets);
  if (!loaded) return kExitUsage;
  // --namespace: what a sidecar of that namespace sees (exportTo, its
  // Sidecar resource), as sluice-proxy --namespace builds it.
  std::unique_ptr<const sluice::ctl::ConfigTables> view;
  if (!f.namespace_.empty()) {
    workload.namespace_ = f.namespace_;
    view = sluice::ctl::proxy_view(*loaded->tables, workload);
    std::cerr << "sluicectl config dump: the view of a sidecar in namespace " << f.namespace_ << ": " << workload.scope
              << "\n";
  }
  sluice::ctl::write_config_dump(std::cout, format_of(f.output), view ? *view : *loaded->tables, loaded->rules, labels,
                                 loaded->diagnostics);
  return 0;
}

struct StatusFlags {
  std::string admin = "http://127.0.0.1:15000";
  std::string pin_dir = "/sys/fs/bpf/sluice";
  std::string certs = "/etc/certs";
  unsigned timeout_ms = 2000;
  std::string output = "text";
};

int run_status(const StatusFlags& f) {
  sluice::ctl::StatusOptions o;
  if (auto err = sluice::ctl::parse_admin_url(f.admin, o.admin)) return usage_error("status", *err);
  if (f.timeout_ms == 0) return usage_error("status", "--timeout 0: give milliseconds > 0");
  o.pin_dir = f.pin_dir;
  o.certs = f.certs;
  o.timeout = std::chrono::milliseconds(f.timeout_ms);
  const sluice::ctl::StatusReport r = sluice::ctl::collect_status(o, std::time(nullptr));
  sluice::ctl::write_status(std::cout, format_of(f.output), r);
  return r.exit_code();
}

struct MapsFlags {
  std::string pin_dir = "/sys/fs/bpf/sluice";
  std::string output = "text";
};

int run_maps(const MapsFlags& f) {
  const sluice::ctl::MapsReport r = sluice::ctl::read_pinned_maps(f.pin_dir);
  // Errors go to stdout with the rest of the report (JSON carries them), and
  // to stderr as well when the report is JSON, so a pipe into a tool still
  // leaves the reason on the terminal.
  sluice::ctl::write_maps(std::cout, format_of(f.output), r);
  if (format_of(f.output) == OutputFormat::kJson) {
    if (!r.error.empty()) std::cerr << "sluicectl maps: " << r.error << "\n";
    for (const auto& e : r.map_errors) std::cerr << "sluicectl maps: " << e.map << ": " << e.error << "\n";
  }
  return r.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluicectl - inspect, check and explain Sluice's configuration.\n\n"
      "Sluice reads Istio's own YAML. `validate` checks each resource the way Istio's\n"
      "admission webhook does; `analyze` also checks the resources against each other the\n"
      "way `istioctl analyze` does (gateways, subsets and hosts that are referenced but\n"
      "missing, TLS without CA certificates, ...). Every finding names file:line.\n"
      "`explain` prints every decision the kernel and the proxy take for one connection,\n"
      "computed by the same code they run; `config dump` prints the effective\n"
      "configuration; `status` reports what runs on this host; `maps` prints the\n"
      "agent's BPF maps as the kernel holds them.\n\n"
      "Exit codes: 2 = usage or configuration error (every command).\n"
      "  validate, analyze: 0 clean, 1 findings at or above --fail-threshold\n"
      "  explain:           0 the connection reaches a destination (forwarded, or direct\n"
      "                     because it is not intercepted), 3 it does not (local reply,\n"
      "                     closed, refused)\n"
      "  config dump:       0\n"
      "  status:            0 proxy ready (and no certificate expired), 1 otherwise\n"
      "  maps:              0 every map read, 1 no pin directory, no permission, or a map\n"
      "                     missing or unreadable\n\n"
      "Examples:\n"
      "  sluicectl validate configs/walkthrough\n"
      "  sluicectl analyze configs/default -o json\n"
      "  sluicectl explain 151.101.1.67:80 --host edition.cnn.com configs/default\n"
      "  sluicectl explain 151.101.1.67:443 --sni example.com configs/default \\\n"
      "      configs/mesh/istio-configmap-registry-only.yaml\n"
      "  sluicectl explain 10.0.0.7:80 --role gateway --sni edition.cnn.com configs/walkthrough\n"
      "  sluicectl config dump configs/walkthrough -o json\n"
      "  sluicectl status --admin http://127.0.0.1:15000 --certs /etc/certs\n"
      "  sluicectl maps --pin-dir /sys/fs/bpf/sluice -o json\n"};
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

  // explain
  ExplainFlags ef;
  CLI::App* explain = app.add_subcommand(
      "explain",
      "Explain, step by step, what Sluice does with one connection to DEST");
  explain->footer(
      "\nWhat is printed, in order (each line from the function the data plane runs):\n"
      "  sidecar role (default):\n"
      "    1. interception: whether the kernel (cgroup/connect4|6) redirects connect() to the\n"
      "       proxy and by which rule (excludeOutboundPorts, the proxy's own sockets, loopback,\n"
      "       excludeIPRanges, includeOutboundPorts, includeIPRanges), from the install options\n"
      "       in the files and --set. Not intercepted: the connection goes direct, and that is all.\n"
      "    2. traffic: what the proxy sees: HTTP with --host, TLS with --sni, opaque TCP without\n"
      "       either; a port a ServiceEntry declares (HTTP, TLS/HTTPS, TCP) is read as declared.\n"
      "    3. policy: outboundTrafficPolicy (known: which ServiceEntry; unknown: ALLOW_ANY ->\n"
      "       PassthroughCluster, REGISTRY_ONLY -> 502 block_all for HTTP on a port declared HTTP,\n"
      "       else closed UH), the VirtualService rule, the DestinationRule policy.\n"
      "    4. upstream: endpoints (addresses; DNS names are printed, never resolved), load\n"
      "       balancing, TLS origination (mode, SNI, expected peer identity).\n"
      "  gateway role: the Gateway servers selecting --label (default istio=egressgateway) on\n"
      "    DEST's port; the server chosen by --sni (TLS) or --host (HTTP); TLS termination or\n"
      "    passthrough; then the gateway's routes, policy and upstream as above. On a\n"
      "    terminating HTTPS server the inner Host is --host, or the SNI when --host is absent.\n"
      "  Last line: the outcome (forward to cluster X / local reply 502, 404 NR, 503 NC /\n"
      "  closed UH, NR, DPE / direct / refused). Weighted routes show the first destination.\n\n"
      "Exit codes: 0 the connection reaches a destination (forwarded by the proxy, or direct\n"
      "because it is not intercepted); 3 it does not (local reply, closed, refused);\n"
      "2 usage or configuration errors (the config must be free of `validate` errors).\n\n"
      "Examples:\n"
      "  sluicectl explain 151.101.1.67:80 --host edition.cnn.com configs/default\n"
      "  sluicectl explain 10.244.3.7:80 --host edition.cnn.com configs/walkthrough\n"
      "  sluicectl explain 203.0.113.10:80 --host example.com configs/walkthrough\n"
      "  sluicectl explain 151.101.1.67:443 --sni example.com configs/default \\\n"
      "      configs/mesh/istio-configmap-registry-only.yaml\n"
      "  sluicectl explain 10.0.0.7:80 --role gateway --sni edition.cnn.com configs/walkthrough\n"
      "  sluicectl explain 151.101.1.67:80 --host edition.cnn.com --header x-user=alice \\\n"
      "      --path /world -o json configs/walkthrough --set values.global.proxy.includeIPRanges='*'\n");
  explain->add_option("destination", ef.destination,
                      "DEST: the address and port the client connects to, IP:PORT or [IPv6]:PORT\n"
                      "(a gateway: the gateway's listener address and its Gateway server port)")
      ->required();
  explain->add_option("paths", ef.paths, kPathsHelp)->required();
  ef.host_option = explain->add_option("--host", ef.host,
                                       "The client sends an HTTP/1.x request with this Host (HOST[:PORT])");
  ef.sni_option = explain->add_option("--sni", ef.sni,
                                      "The client sends a TLS ClientHello with this SNI (with --role gateway and\n"
                                      "--host too: the HTTP request inside the terminated TLS)");
  explain->add_option("--role", ef.role, "sidecar (default: intercepted connections) or gateway (Gateway servers)")
      ->check(CLI::IsMember({"sidecar", "gateway"}));
  explain->add_option("--label", ef.labels,
                      "KEY=VALUE label of the proxy (repeatable): the gateway's, matched against Gateway\n"
                      "selectors (default istio=egressgateway); the sidecar's workload's, matched against\n"
                      "Sidecar workloadSelectors");
  explain->add_option("--namespace", ef.namespace_,
                      "The proxy's namespace: the sidecar's workload's (exportTo, the Sidecar resource that\n"
                      "applies; default: default), the gateway's (default: istio-system)");
  explain->add_option("--method", ef.method, "HTTP method (default GET)");
  explain->add_option("--path", ef.path, "HTTP request path, query included (default /)");
  explain->add_option("--header", ef.headers,
                      "NAME=VALUE request header for VirtualService header matches (repeatable)");
  explain->add_option("--set", ef.sets, kSetHelp);
  explain->add_option("-o,--output", ef.output, "Output format: text (default, numbered steps) or json")
      ->check(CLI::IsMember({"text", "json"}));
  explain->callback([&chosen] { chosen = "explain"; });

  // config dump
  DumpFlags df;
  CLI::App* config_cmd = app.add_subcommand("config", "Show the configuration Sluice would run");
  config_cmd->require_subcommand(1);
  CLI::App* dump = config_cmd->add_subcommand(
      "dump",
      "Print the effective configuration: source files; the mesh config and where the\n"
      "outboundTrafficPolicy mode comes from (ConfigMap, install option, default); install\n"
      "options and the interception rules compiled from them in the kernel's order; every\n"
      "ServiceEntry, VirtualService, DestinationRule and Gateway with file:line; the Gateway\n"
      "servers a gateway proxy with --label would listen with. Exit 0, or 2 when the\n"
      "configuration has errors.");
  dump->add_option("paths", df.paths, kPathsHelp)->required();
  dump->add_option("--set", df.sets, kSetHelp);
  dump->add_option("--label", df.labels,
                   "KEY=VALUE label of a gateway proxy for the Gateway server list (repeatable;\n"
                   "default istio=egressgateway)");
  dump->add_option("--namespace", df.namespace_,
                   "Dump what a sidecar of this namespace sees (exportTo, the Sidecar resource that\n"
                   "applies to it), as sluice-proxy --namespace; default: every resource");
  dump->add_option("--workload-label", df.workload_labels,
                   "KEY=VALUE label of that sidecar's workload, for Sidecar workloadSelectors (repeatable)");
  dump->add_option("-o,--output", df.output, "Output format: text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  dump->callback([&chosen] { chosen = "config dump"; });

  // status
  StatusFlags sf;
  CLI::App* status = app.add_subcommand(
      "status",
      "Report on what runs on this host: the proxy (admin /ready and /config_dump),\n"
      "the agent's BPF pins and the cgroups they attach to, and certificate expiry");
  status->footer(
      "\nEach part degrades on its own: what cannot be read is reported with the reason (nothing\n"
      "listening, no pin directory, no permission, no certificates), never a crash. Reading the\n"
      "pins needs root (CAP_BPF/CAP_SYS_ADMIN). The admin endpoint must be on loopback.\n\n"
      "Exit codes: 0 the proxy answered /ready with 200 and no certificate under --certs has\n"
      "expired; 1 otherwise (proxy unreachable or not ready, or a certificate expired); missing\n"
      "pins or certificates alone do not fail; 2 usage error.\n");
  status->add_option("--admin", sf.admin, "The proxy's admin endpoint (loopback)")->capture_default_str();
  status->add_option("--pin-dir", sf.pin_dir, "sluice-agent's pin directory on bpffs")->capture_default_str();
  status->add_option("--certs", sf.certs, "Mesh identity directory: cert-chain.pem, key.pem, root-cert.pem")
      ->capture_default_str();
  status->add_option("--timeout", sf.timeout_ms, "Milliseconds to wait for each admin request")
      ->capture_default_str();
  status->add_option("-o,--output", sf.output, "Output format: text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  status->callback([&chosen] { chosen = "status"; });

  // maps
  MapsFlags mf;
  CLI::App* maps = app.add_subcommand(
      "maps",
      "Print the BPF maps sluice-agent pinned, decoded: the config entry (proxy addresses\n"
      "and port, mark, uid, gid, flags), include/exclude ranges and ports with the position\n"
      "of the configured entry behind each, and the per-CPU counters summed");
  maps->footer(
      "\nReads the maps only (bpf_obj_get on the pins); changes nothing. Needs root\n"
      "(CAP_BPF/CAP_SYS_ADMIN): the pin directory is root-only.\n\n"
      "Exit codes: 0 every map was read and decoded; 1 the pin directory is missing or\n"
      "unreadable, or a map is missing, unreadable or of another layout (the reason is\n"
      "printed); 2 usage error.\n");
  maps->add_option("--pin-dir", mf.pin_dir, "sluice-agent's pin directory on bpffs")->capture_default_str();
  maps->add_option("-o,--output", mf.output, "Output format: text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  maps->callback([&chosen] { chosen = "maps"; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (chosen == "validate") return run_check("validate", validate_opts);
  if (chosen == "analyze") return run_check("analyze", analyze_opts);
  if (chosen == "explain") return run_explain(ef);
  if (chosen == "config dump") return run_config_dump(df);
  if (chosen == "status") return run_status(sf);
  if (chosen == "maps") return run_maps(mf);
  return kExitUsage;
}
