#include "ctl/config_dump.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/policy/gateway_servers.h"
#include "core/policy/outbound_mode.h"

namespace sluice::ctl {

namespace {

using nlohmann::json;

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string labels_text(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

json meta_json(const config::ObjectMeta& m, std::string summary) {
  return {{"name", m.key()}, {"file", m.file}, {"line", m.line}, {"summary", std::move(summary)}};
}

std::string service_entry_summary(const config::ServiceEntry& se) {
  std::vector<std::string> ports;
  for (const auto& p : se.ports) {
    std::string s = std::to_string(p.number) + "/" + (p.protocol.empty() ? "-" : p.protocol);
    if (!p.name.empty()) s += " " + p.name;
    if (p.target_port != 0 && p.target_port != p.number) s += " -> " + std::to_string(p.target_port);
    ports.push_back(std::move(s));
  }
  std::string out = "hosts " + join(se.hosts) + "; ports " + (ports.empty() ? "(none)" : join(ports)) +
                    "; resolution " + config::to_string(se.resolution) + "; " + config::to_string(se.location);
  if (!se.addresses.empty()) out += "; addresses " + join(se.addresses);
  if (!se.endpoints.empty()) {
    std::vector<std::string> eps;
    for (const auto& ep : se.endpoints) eps.push_back(ep.address);
    out += "; endpoints " + join(eps);
  }
  return out;
}

std::string virtual_service_summary(const config::VirtualService& vs) {
  return "hosts " + join(vs.hosts) + "; gateways " + join(vs.effective_gateways()) + "; routes: " +
         std::to_string(vs.http.size()) + " http, " + std::to_string(vs.tls.size()) + " tls, " +
         std::to_string(vs.tcp.size()) + " tcp";
}

std::string destination_rule_summary(const config::DestinationRule& dr) {
  std::vector<std::string> subsets;
  for (const auto& s : dr.subsets) subsets.push_back(s.name);
  std::string out = "host " + dr.host;
  if (dr.traffic_policy) out += "; trafficPolicy";
  if (!subsets.empty()) out += "; subsets " + join(subsets);
  return out;
}

std::string sidecar_summary(const config::Sidecar& sc) {
  std::string out = sc.workload_selector ? "workloadSelector " + labels_text(*sc.workload_selector) : "namespace-wide";
  for (const auto& l : sc.egress) {
    out += "; egress " + (l.port ? std::to_string(l.port->number) : std::string("(other ports)")) + " " + join(l.hosts);
  }
  if (sc.outbound_traffic_policy) {
    out += std::string("; outboundTrafficPolicy ") + config::to_string(sc.outbound_traffic_policy->mode);
    if (sc.outbound_traffic_policy->egress_proxy) out += " egressProxy " + sc.outbound_traffic_policy->egress_proxy->host;
  }
  return out;
}

std::string gateway_summary(const config::Gateway& gw) {
  std::vector<std::string> servers;
  for (const auto& s : gw.servers) {
    std::string t = std::to_string(s.port.number) + "/" + s.port.protocol + " " + join(s.hosts, ",");
    if (s.tls) t += std::string(" (TLS ") + config::to_string(s.tls->mode) + ")";
    servers.push_back(std::move(t));
  }
  return "selector " + (gw.selector.empty() ? std::string("(any gateway)") : labels_text(gw.selector)) +
         "; servers " + join(servers, "; ");
}

json port_set_json(const decision::PortSet& set, const char* option) {
  json ports = json::array();
  for (const auto& p : set.ports) {
    ports.push_back({{"port", p.port}, {"option", std::string(option) + "[" + std::to_string(p.index) + "]"}});
  }
  return {{"all", set.all}, {"ports", std::move(ports)}};
}

json range_set_json(const decision::RangeSet& set, const char* option) {
  json ranges = json::array();
  for (const auto& r : set.ranges) {
    ranges.push_back({{"cidr", r.cidr.str()}, {"option", std::string(option) + "[" + std::to_string(r.index) + "]"}});
  }
  return ranges;
}

json build(const ConfigTables& tables, const decision::InterceptionRules& rules,
           const std::map<std::string, std::string>& labels, const config::Diagnostics& diagnostics) {
  const config::ConfigSet& c = tables.config;
  json j;
  j["source_files"] = c.source_files;

  const policy::OutboundMode mode = tables.mode();
  json otp = {{"mode", config::to_string(mode.mode)}, {"source", policy::to_string(mode.source)}};
  if (mode.source == policy::OutboundMode::Source::kMeshConfig) {
    otp["location"] = c.mesh.file + ":" + std::to_string(c.mesh.line);
  } else if (mode.source == policy::OutboundMode::Source::kInstallOption) {
    otp["location"] = c.install.file.empty() ? std::string("--set") : c.install.file;
  } else if (mode.source == policy::OutboundMode::Source::kSidecar) {
    otp["location"] = c.sidecar_source;
  }
  json mesh;
  mesh["file"] = c.mesh.file.empty() ? json(nullptr) : json(c.mesh.file + ":" + std::to_string(c.mesh.line));
  mesh["outbound_traffic_policy"] = std::move(otp);
  mesh["trust_domain"] = c.mesh.trust_domain;
  mesh["access_log_file"] = c.mesh.access_log_file;
  mesh["access_log_encoding"] = c.mesh.access_log_encoding;
  mesh["access_log_format"] = c.mesh.access_log_format;
  mesh["root_namespace"] = c.mesh.root_namespace;
  mesh["enable_auto_mtls"] = c.mesh.enable_auto_mtls;
  mesh["connect_timeout_ms"] = c.mesh.connect_timeout ? json(c.mesh.connect_timeout->count()) : json(nullptr);
  j["mesh"] = std::move(mesh);

  json install;
  install["file"] = c.install.file.empty() ? json(nullptr) : json(c.install.file);
  install["include_ip_ranges"] = c.install.include_ip_ranges;
  install["exclude_ip_ranges"] = c.install.exclude_ip_ranges;
  install["include_outbound_ports"] = c.install.include_outbound_ports;
  install["exclude_outbound_ports"] = c.install.exclude_outbound_ports;
  install["outbound_traffic_policy"] = c.install.outbound_traffic_policy
                                           ? json(config::to_string(*c.install.outbound_traffic_policy))
                                           : json(nullptr);
  install["istio_namespace"] = c.install.istio_namespace;
  install["egress_gateway_enabled"] = c.install.egress_gateway_enabled;
  j["install"] = std::move(install);

  // The compiled rules, in decide()'s evaluation order.
  json ic;
  ic["exclude_ports"] = port_set_json(rules.exclude_ports, "excludeOutboundPorts");
  json own;
  if (rules.proxy.mark) {
    char mark[16];
    std::snprintf(mark, sizeof(mark), "0x%x", *rules.proxy.mark);
    own["mark"] = mark;
  } else {
    own["mark"] = nullptr;
  }
  own["uid"] = rules.proxy.uid ? json(*rules.proxy.uid) : json(nullptr);
  own["gid"] = rules.proxy.gid ? json(*rules.proxy.gid) : json(nullptr);
  ic["own_sockets"] = std::move(own);
  ic["exclude_ranges"] = range_set_json(rules.exclude_ranges, "excludeIPRanges");
  ic["include_ports"] = port_set_json(rules.include_ports, "includeOutboundPorts");
  ic["include_ranges"] = range_set_json(rules.include_ranges, "includeIPRanges");
  json proxy;
  proxy["ipv4"] = rules.proxy.ipv4 ? json(rules.proxy.ipv4->str() + ":" + std::to_string(rules.proxy.port))
                                   : json(nullptr);
  proxy["ipv6"] = rules.proxy.ipv6 ? json("[" + rules.proxy.ipv6->str() + "]:" + std::to_string(rules.proxy.port))
                                   : json(nullptr);
  ic["redirect_to"] = std::move(proxy);
  j["interception"] = std::move(ic);

  json resources;
  resources["ServiceEntry"] = json::array();
  for (const auto& r : c.service_entries) resources["ServiceEntry"].push_back(meta_json(r.meta, service_entry_summary(r)));
  resources["VirtualService"] = json::array();
  for (const auto& r : c.virtual_services) {
    resources["VirtualService"].push_back(meta_json(r.meta, virtual_service_summary(r)));
  }
  resources["DestinationRule"] = json::array();
  for (const auto& r : c.destination_rules) {
    resources["DestinationRule"].push_back(meta_json(r.meta, destination_rule_summary(r)));
  }
  resources["Gateway"] = json::array();
  for (const auto& r : c.gateways) resources["Gateway"].push_back(meta_json(r.meta, gateway_summary(r)));
  resources["Sidecar"] = json::array();
  for (const auto& r : c.sidecars) resources["Sidecar"].push_back(meta_json(r.meta, sidecar_summary(r)));
  j["resources"] = std::move(resources);

  const policy::GatewayServers servers(c, labels);
  json gs;
  gs["labels"] = labels;
  gs["servers"] = json::array();
  for (uint32_t port : servers.ports()) {
    for (const policy::GatewayServerRef& s : servers.on_port(port)) {
      json sj = {{"port", port}, {"server", s.describe()}, {"kind", policy::to_string(s.kind)}, {"hosts", s.hosts}};
      sj["tls_mode"] = s.server->tls ? json(config::to_string(s.server->tls->mode)) : json(nullptr);
      gs["servers"].push_back(std::move(sj));
    }
  }
  j["gateway_servers"] = std::move(gs);

  j["diagnostics"] = json::array();
  for (const auto& d : diagnostics.items()) j["diagnostics"].push_back(diagnostic_to_json(d));
  return j;
}

std::string list_or_none(const json& a) {
  if (!a.is_array() || a.empty()) return "(none)";
  std::vector<std::string> items;
  for (const auto& x : a) items.push_back(x.get<std::string>());
  return join(items);
}

std::string value_text(const json& v) {
  if (v.is_null()) return "(unset)";
  if (v.is_string()) return v.get<std::string>().empty() ? "\"\"" : v.get<std::string>();
  return v.dump();
}

std::string ports_text(const json& set) {
  if (set["all"].get<bool>()) return "* (every port)";
  std::vector<std::string> items;
  for (const auto& p : set["ports"]) items.push_back(std::to_string(p["port"].get<uint32_t>()) + " (" +
                                                     p["option"].get<std::string>() + ")");
  return items.empty() ? "(none)" : join(items);
}

std::string ranges_text(const json& set) {
  std::vector<std::string> items;
  for (const auto& r : set) items.push_back(r["cidr"].get<std::string>() + " (" + r["option"].get<std::string>() + ")");
  return items.empty() ? "(none)" : join(items);
}

void write_text(std::ostream& out, const json& j) {
  out << "Source files (" << j["source_files"].size() << "):\n";
  for (const auto& f : j["source_files"]) out << "  " << f.get<std::string>() << "\n";

  const json& mesh = j["mesh"];
  const json& otp = mesh["outbound_traffic_policy"];
  out << "\nMesh config: " << (mesh["file"].is_null() ? "built-in default (no `istio` ConfigMap loaded)"
                                                      : mesh["file"].get<std::string>())
      << "\n";
  out << "  outboundTrafficPolicy.mode: " << otp["mode"].get<std::string>() << " (from the "
      << otp["source"].get<std::string>();
  if (otp.contains("location")) out << " " << otp["location"].get<std::string>();
  out << ")\n";
  out << "  trustDomain: " << value_text(mesh["trust_domain"]) << "\n";
  out << "  accessLogFile: " << value_text(mesh["access_log_file"]) << " (" << value_text(mesh["access_log_encoding"])
      << ")\n";
  out << "  rootNamespace: " << value_text(mesh["root_namespace"]) << "\n";
  out << "  enableAutoMtls: " << value_text(mesh["enable_auto_mtls"]) << "\n";
  out << "  connectTimeout: "
      << (mesh["connect_timeout_ms"].is_null() ? std::string("(unset: 10s)")
                                               : mesh["connect_timeout_ms"].dump() + " ms")
      << "\n";

  const json& in = j["install"];
  out << "\nInstall options: " << (in["file"].is_null() ? std::string("defaults") : in["file"].get<std::string>())
      << "\n";
  out << "  includeIPRanges: " << list_or_none(in["include_ip_ranges"]) << "\n";
  out << "  excludeIPRanges: " << list_or_none(in["exclude_ip_ranges"]) << "\n";
  out << "  includeOutboundPorts: " << list_or_none(in["include_outbound_ports"]) << "\n";
  out << "  excludeOutboundPorts: " << list_or_none(in["exclude_outbound_ports"]) << "\n";
  out << "  outboundTrafficPolicy.mode: " << value_text(in["outbound_traffic_policy"]) << "\n";
  out << "  istioNamespace: " << value_text(in["istio_namespace"]) << "\n";
  out << "  egress gateway enabled: " << value_text(in["egress_gateway_enabled"]) << "\n";

  const json& ic = j["interception"];
  const json& own = ic["own_sockets"];
  out << "\nInterception rules (compiled; the kernel checks them in this order, the first that applies decides):\n";
  out << "  1. excluded ports -> direct: " << ports_text(ic["exclude_ports"]) << "\n";
  out << "  2. the proxy's own sockets -> direct: mark " << value_text(own["mark"]) << ", uid "
      << value_text(own["uid"]) << ", gid " << value_text(own["gid"]) << "\n";
  out << "  3. loopback and the proxy's listener -> direct\n";
  out << "  4. excluded ranges -> direct: " << ranges_text(ic["exclude_ranges"]) << "\n";
  out << "  5. included ports -> proxy: " << ports_text(ic["include_ports"]) << "\n";
  out << "  6. included ranges -> proxy: " << ranges_text(ic["include_ranges"]) << "\n";
  out << "  7. anything else -> direct\n";
  out << "  proxy: " << value_text(ic["redirect_to"]["ipv4"]) << ", " << value_text(ic["redirect_to"]["ipv6"])
      << "\n";

  for (const char* kind : {"ServiceEntry", "VirtualService", "DestinationRule", "Gateway", "Sidecar"}) {
    const json& list = j["resources"][kind];
    out << "\n" << kind << " (" << list.size() << "):\n";
    for (const auto& r : list) {
      out << "  " << r["name"].get<std::string>() << "  " << r["file"].get<std::string>() << ":"
          << r["line"].get<uint32_t>() << "\n      " << r["summary"].get<std::string>() << "\n";
    }
  }

  const json& gs = j["gateway_servers"];
  std::map<std::string, std::string> labels = gs["labels"].get<std::map<std::string, std::string>>();
  out << "\nGateway servers for a gateway proxy labelled " << labels_text(labels) << " (" << gs["servers"].size()
      << "):\n";
  for (const auto& s : gs["servers"]) {
    std::vector<std::string> hosts = s["hosts"].get<std::vector<std::string>>();
    out << "  port " << s["port"].get<uint32_t>() << ": " << s["server"].get<std::string>() << " "
        << s["kind"].get<std::string>() << " hosts " << join(hosts, ",");
    if (!s["tls_mode"].is_null()) out << " TLS " << s["tls_mode"].get<std::string>();
    out << "\n";
  }

  if (!j["diagnostics"].empty()) {
    out << "\nFindings (" << j["diagnostics"].size() << "):\n";
    for (const auto& d : j["diagnostics"]) out << "  " << d["text"].get<std::string>() << "\n";
  }
}

}  // namespace

void write_config_dump(std::ostream& out, OutputFormat format, const ConfigTables& tables,
                       const decision::InterceptionRules& rules, const std::map<std::string, std::string>& labels,
                       const config::Diagnostics& diagnostics) {
  const json j = build(tables, rules, labels, diagnostics);
  if (format == OutputFormat::kJson) {
    out << j.dump(2) << "\n";
    return;
  }
  write_text(out, j);
}

}  // namespace sluice::ctl
