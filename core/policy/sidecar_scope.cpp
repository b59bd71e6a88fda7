#include "core/policy/sidecar_scope.h"

#include <algorithm>
#include <map>

#include "core/config/host_match.h"

namespace sluice::policy {

namespace {

// "ns/name (file:line)".
std::string where(const config::Sidecar& sc) {
  std::string out = sc.meta.namespace_ + "/" + sc.meta.name;
  if (!sc.meta.file.empty()) out += " (" + sc.meta.file + ":" + std::to_string(sc.meta.line) + ")";
  return out;
}

// One egress host entry, "namespace/dnsName".
struct HostPattern {
  std::string ns;    // "*", a name (".": the workload's, resolved), "~": none
  std::string host;  // "*", "*.suffix" or exact
};

std::vector<HostPattern> patterns(const config::SidecarEgressListener& l, const std::string& workload_ns) {
  std::vector<HostPattern> out;
  for (const auto& h : l.hosts) {
    const size_t slash = h.find('/');
    if (slash == std::string::npos) continue;  // invalid (validation says so)
    HostPattern p{h.substr(0, slash), h.substr(slash + 1)};
    if (p.ns == ".") p.ns = workload_ns;
    out.push_back(std::move(p));
  }
  return out;
}

// Whether an egress host entry imports `host` of namespace `ns`. A service
// is imported when its host lies within the entry's (Istio's SubsetOf: a
// narrower entry does not import a wildcard ServiceEntry); a
// VirtualService when the two overlap (`overlap`: Istio's VSMatches).
bool selects(const std::vector<HostPattern>& ps, const std::string& ns, const std::string& host, bool overlap = false) {
  for (const auto& p : ps) {
    if (p.ns == "~") continue;
    if (p.ns != "*" && p.ns != ns) continue;
    if (p.host == "*") return true;
    if (overlap ? config::host_matches(p.host, host) : config::host_subset_of(host, p.host)) return true;
  }
  return false;
}

// The egress listeners' host patterns: per port, and the catch-all's.
struct Egress {
  bool everything = true;  // no egress listeners: all that is exported
  std::map<uint32_t, std::vector<HostPattern>> by_port;
  std::optional<std::vector<HostPattern>> catch_all;

  const std::vector<HostPattern>* for_port(uint32_t port) const {
    auto it = by_port.find(port);
    if (it != by_port.end()) return &it->second;
    return catch_all ? &*catch_all : nullptr;
  }
  // Some listener's hosts overlap (ns, host), on any port (VirtualServices).
  bool any_overlap(const std::string& ns, const std::string& host) const {
    if (everything) return true;
    for (const auto& [port, ps] : by_port) {
      if (selects(ps, ns, host, /*overlap=*/true)) return true;
    }
    return catch_all && selects(*catch_all, ns, host, /*overlap=*/true);
  }
};

Egress egress_of(const config::Sidecar* sc, const std::string& workload_ns) {
  Egress e;
  if (!sc || sc->egress.empty()) return e;
  e.everything = false;
  for (const auto& l : sc->egress) {
    if (!l.port) {
      if (!e.catch_all) e.catch_all = patterns(l, workload_ns);
    } else if (l.port->number != 0) {
      e.by_port.emplace(l.port->number, patterns(l, workload_ns));
    }
  }
  return e;
}

}  // namespace

SidecarSelection select_sidecar(const config::ConfigSet& config, const WorkloadIdentity& workload) {
  SidecarSelection out;
  // Candidates in load order at each tier; the first is taken (Istio takes
  // the oldest), the others named so that the ambiguity shows.
  std::vector<const config::Sidecar*> by_selector, namespace_wide, root;
  for (const auto& sc : config.sidecars) {
    // A workloadSelector, even without labels (which matches every
    // workload), makes it a workload's Sidecar, as Istio classifies them.
    if (sc.meta.namespace_ == workload.namespace_) {
      if (sc.workload_selector) {
        if (config::labels_match(*sc.workload_selector, workload.labels)) by_selector.push_back(&sc);
      } else {
        namespace_wide.push_back(&sc);
      }
    }
    if (sc.meta.namespace_ == config.mesh.root_namespace && !sc.workload_selector) root.push_back(&sc);
  }
  // "; also ns/b (file:line): the first in load order applies (istioctl
  // analyze: IST0111)". `code` empty: none that istioctl would report.
  auto others = [](const std::vector<const config::Sidecar*>& list, const std::string& code) {
    if (list.size() < 2) return std::string();
    std::string names;
    for (size_t i = 1; i < list.size(); ++i) names += (i > 1 ? ", " : "") + where(*list[i]);
    return "; also " + names + ": the first in load order applies" +
           (code.empty() ? std::string() : " (istioctl analyze: " + code + ")");
  };
  // IST0110 skips Sidecars whose workloadSelector has no labels.
  auto selector_code = [](const std::vector<const config::Sidecar*>& list) {
    for (const config::Sidecar* sc : list) {
      if (sc->workload_selector->empty()) return std::string();
    }
    return std::string("IST0110");
  };
  if (!by_selector.empty()) {
    out.sidecar = by_selector.front();
    out.reason = "Sidecar " + where(*out.sidecar) + ": its workloadSelector matches the workload's labels" +
                 others(by_selector, selector_code(by_selector));
  } else if (!namespace_wide.empty()) {
    out.sidecar = namespace_wide.front();
    out.reason = "Sidecar " + where(*out.sidecar) + ": the workload's namespace " + workload.namespace_ +
                 ", no selector" + others(namespace_wide, "IST0111");
  } else if (!root.empty()) {
    out.sidecar = root.front();
    out.reason = "Sidecar " + where(*out.sidecar) + ": the root namespace's default (" + config.mesh.root_namespace +
                 ")" + others(root, "IST0111");
  } else {
    out.reason = "no Sidecar applies to the workload (namespace " + workload.namespace_ +
                 "): every service exported to its namespace is visible";
  }
  return out;
}

config::ConfigSet scoped_config(const config::ConfigSet& config, const WorkloadIdentity& workload,
                                const SidecarSelection& selection) {
  config::ConfigSet out;
  out.mesh = config.mesh;
  out.install = config.install;
  out.source_files = config.source_files;
  out.gateways = config.gateways;
  const std::string& ns = workload.namespace_;
  const Egress egress = egress_of(selection.sidecar, ns);

  for (const auto& se : config.service_entries) {
    if (!config::exported_to(se.export_to, se.meta.namespace_, ns)) continue;
    if (egress.everything) {
      out.service_entries.push_back(se);
      continue;
    }
    // Per port, the hosts its listener imports. One copy per resource (a
    // route without a port picks a single-port entry's, so an entry is
    // never split): the ports where some host is imported, and the hosts
    // imported on some kept port.
    config::ServiceEntry copy = se;
    copy.ports.clear();
    std::vector<bool> seen(se.hosts.size(), false);
    for (const auto& port : se.ports) {
      const std::vector<HostPattern>* ps = egress.for_port(port.number);
      if (!ps) continue;
      bool any = false;
      for (size_t i = 0; i < se.hosts.size(); ++i) {
        if (selects(*ps, se.meta.namespace_, config::qualify_host(se.hosts[i], se.meta.namespace_))) {
          seen[i] = any = true;
        }
      }
      if (any) copy.ports.push_back(port);
    }
    if (copy.ports.empty()) continue;
    copy.hosts.clear();
    for (size_t i = 0; i < se.hosts.size(); ++i) {
      if (seen[i]) copy.hosts.push_back(se.hosts[i]);
    }
    out.service_entries.push_back(std::move(copy));
  }
  for (const auto& vs : config.virtual_services) {
    if (!config::exported_to(vs.export_to, vs.meta.namespace_, ns)) continue;
    const bool seen = std::any_of(vs.hosts.begin(), vs.hosts.end(), [&](const std::string& h) {
      return egress.any_overlap(vs.meta.namespace_, config::qualify_host(h, vs.meta.namespace_));
    });
    // Gateway-bound rules are not the sidecar's business: kept as they are.
    const bool mesh = vs.gateways.empty() || std::find(vs.gateways.begin(), vs.gateways.end(), "mesh") != vs.gateways.end();
    if (seen || !mesh) out.virtual_services.push_back(vs);
  }
  // DestinationRules exported here; one with a workloadSelector applies to
  // its own namespace's matching workloads only (Istio treats it as
  // private). Which namespace's rule applies to a destination is decided at
  // lookup (DestinationRules, by view_namespace): Istio's order.
  for (const auto& dr : config.destination_rules) {
    if (!config::exported_to(dr.export_to, dr.meta.namespace_, ns)) continue;
    if (dr.workload_selector &&
        (dr.meta.namespace_ != ns || !config::labels_match(*dr.workload_selector, workload.labels))) {
      continue;
    }
    out.destination_rules.push_back(dr);
  }
  out.view_namespace = ns;
  out.view_labels = workload.labels;
  out.view_source = workload.source;
  if (selection.sidecar && selection.sidecar->outbound_traffic_policy) {
    out.sidecar_outbound = selection.sidecar->outbound_traffic_policy;
    out.sidecar_source = where(*selection.sidecar);
  }
  return out;
}

ProxyView proxy_view(const config::ConfigSet& all, const WorkloadIdentity& workload, bool gateway) {
  ProxyView out;
  // Sidecar resources apply to sidecars only.
  const SidecarSelection selection = gateway ? SidecarSelection{} : select_sidecar(all, workload);
  if (selection.sidecar) out.scope = selection.reason;
  out.config = scoped_config(all, workload, selection);
  return out;
}

}  // namespace sluice::policy
