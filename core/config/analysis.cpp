// Cross-resource analysis after istioctl analyze's analyzers
// (istio/istio pkg/config/analysis/analyzers): same codes, levels and message
// templates (pkg/config/analysis/msg/messages.yaml), same name resolution.
//
// Where istioctl consults the live Kubernetes registry we cannot see, we
// assume Kubernetes-style service names exist (see Registry below): a missed
// finding is better than an error about a Service that is there.
#include "core/config/analysis.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/host_match.h"
#include "core/config/message_format.h"

namespace sluice::config {

namespace {

constexpr std::string_view kMeshGateway = "mesh";

// ---------------------------------------------------------------------------
// Reporting

void report(Diagnostics& out, const ObjectMeta& meta, const char* kind, Severity severity, const char* code,
            const std::string& path, std::string message) {
  Diagnostic d;
  d.severity = severity;
  d.code = code;
  d.message = std::move(message);
  d.location = meta.location(path);
  d.kind = meta.kind.empty() ? kind : meta.kind;
  d.namespace_ = meta.namespace_;
  d.name = meta.name;
  d.field = path;
  out.add(std::move(d));
}

// IST0101 ReferencedResourceNotFound: "Referenced %s not found: %q".
void referenced_not_found(Diagnostics& out, const ObjectMeta& meta, const char* kind, const std::string& path,
                          std::string_view reftype, std::string_view refval) {
  report(out, meta, kind, Severity::kError, "IST0101", path,
         "Referenced " + std::string(reftype) + " not found: " + go_quote(refval));
}

std::string full_name(const ObjectMeta& m) { return m.namespace_ + "/" + m.name; }
std::string at(const std::string& path, size_t index) { return path + "[" + std::to_string(index) + "]"; }

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// ---------------------------------------------------------------------------
// Gateways

struct GatewayName {
  std::string ns;
  std::string name;
  std::string str() const { return ns + "/" + name; }
};

// "ns/name", "name" in the VirtualService's namespace, or the legacy
// "name.namespace[.svc.cluster.local]" pilot still resolves.
GatewayName resolve_gateway(const std::string& ref, const std::string& vs_ns) {
  size_t slash = ref.find('/');
  if (slash != std::string::npos) return {ref.substr(0, slash), ref.substr(slash + 1)};
  size_t d = ref.find('.');
  if (d != std::string::npos) {
    size_t d2 = ref.find('.', d + 1);
    return {ref.substr(d + 1, d2 == std::string::npos ? std::string::npos : d2 - d - 1), ref.substr(0, d)};
  }
  return {vs_ns, ref};
}

const Gateway* find_gateway(const ConfigSet& config, const GatewayName& g) {
  for (const auto& gw : config.gateways) {
    if (gw.meta.namespace_ == g.ns && gw.meta.name == g.name) return &gw;
  }
  return nullptr;
}

// The hosts a Gateway offers to VirtualServices of namespace `vs_ns`, as
// istioctl's GatewayAnalyzer computes them: "./h" means the gateway's own
// namespace, "*/h" any namespace, "ns/h" only ns.
std::vector<std::string> gateway_hosts_for(const Gateway& gw, const std::string& vs_ns) {
  std::vector<std::string> out;
  for (const auto& server : gw.servers) {
    for (const auto& h : server.hosts) {
      size_t slash = h.find('/');
      if (slash == std::string::npos) {
        out.push_back(h);
        continue;
      }
      std::string ns = h.substr(0, slash), name = h.substr(slash + 1);
      if (ns == ".") ns = gw.meta.namespace_;
      if (ns == "*" || ns == vs_ns) out.push_back(name);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The service registry as far as configuration shows it.

class Registry {
 public:
  explicit Registry(const ConfigSet& config) : config_(config) {
    namespaces_ = {"default", config.mesh.root_namespace, config.install.istio_namespace};
    auto add = [&](const ObjectMeta& m) { namespaces_.insert(m.namespace_); };
    for (const auto& r : config.service_entries) add(r.meta);
    for (const auto& r : config.virtual_services) add(r.meta);
    for (const auto& r : config.destination_rules) add(r.meta);
    for (const auto& r : config.gateways) add(r.meta);
  }

  // The ServiceEntry a destination host of a resource in `ns` resolves to:
  // an exact host first, then a wildcard one (Istio's GetDestinationHost).
  const ServiceEntry* find_service_entry(const std::string& host, const std::string& ns) const {
    const std::string fqdn = qualify_host(host, ns);
    for (const auto& se : config_.service_entries) {
      if (!exported_to(se.export_to, se.meta.namespace_, ns)) continue;
      for (const auto& h : se.hosts) {
        if (qualify_host(h, se.meta.namespace_) == fqdn) return &se;
      }
    }
    std::string_view bare = host;
    if (host_is_wildcard(bare)) bare.remove_prefix(1);
    for (const auto& se : config_.service_entries) {
      if (!exported_to(se.export_to, se.meta.namespace_, ns)) continue;
      for (const auto& h : se.hosts) {
        if (host_is_wildcard(h) && ends_with(bare, std::string_view(h).substr(1))) return &se;
      }
    }
    return nullptr;
  }

  // Hosts that name a Kubernetes Service: "reviews", "reviews.default",
  // "reviews.default.svc", "reviews.default.svc.cluster.local". istioctl
  // checks them against the cluster's Services; we have no cluster, so we
  // take them as existing. A two-label name counts only when its second
  // label is a namespace this configuration uses, so that "example.com"
  // is still checked.
  bool is_kubernetes_service_name(const std::string& host) const {
    if (host.empty() || host_is_wildcard(host)) return false;
    if (host.find('.') == std::string::npos) return true;
    if (ends_with(host, std::string(".") + std::string(kKubernetesServiceDomain))) return true;
    std::vector<std::string_view> labels;
    std::string_view rest = host;
    while (true) {
      size_t d = rest.find('.');
      labels.push_back(rest.substr(0, d));
      if (d == std::string_view::npos) break;
      rest.remove_prefix(d + 1);
    }
    if (labels.size() == 2) return namespaces_.count(std::string(labels[1])) != 0;
    if (labels.size() == 3 && labels[2] == "svc") return true;
    return false;
  }

  // Whether some DestinationRule visible from `ns` defines `subset` for the
  // destination host. Unlike istioctl (exact host string per namespace) a DR
  // whose host covers the destination by wildcard counts too, as it does
  // when the proxy looks the subset up.
  bool has_subset(const std::string& host, const std::string& subset, const std::string& ns) const {
    const std::string fqdn = qualify_host(host, ns);
    for (const auto& dr : config_.destination_rules) {
      if (!exported_to(dr.export_to, dr.meta.namespace_, ns)) continue;
      if (!host_subset_of(fqdn, qualify_host(dr.host, dr.meta.namespace_))) continue;
      for (const auto& s : dr.subsets) {
        if (s.name == subset) return true;
      }
    }
    return false;
  }

 private:
  const ConfigSet& config_;
  std::set<std::string> namespaces_;
};

// ---------------------------------------------------------------------------
// VirtualService analyzers

struct RouteDestinationRef {
  const Destination* destination;
  std::string path;  // of the Destination node
  bool mirror;
};

// In istioctl's order: tcp, tls, http routes, then http mirrors.
std::vector<RouteDestinationRef> destinations_of(const VirtualService& vs) {
  std::vector<RouteDestinationRef> out;
  for (size_t i = 0; i < vs.tcp.size(); ++i) {
    for (size_t j = 0; j < vs.tcp[i].route.size(); ++j) {
      out.push_back({&vs.tcp[i].route[j].destination, at(at("spec.tcp", i) + ".route", j) + ".destination", false});
    }
  }
  for (size_t i = 0; i < vs.tls.size(); ++i) {
    for (size_t j = 0; j < vs.tls[i].route.size(); ++j) {
      out.push_back({&vs.tls[i].route[j].destination, at(at("spec.tls", i) + ".route", j) + ".destination", false});
    }
  }
  for (size_t i = 0; i < vs.http.size(); ++i) {
    for (size_t j = 0; j < vs.http[i].route.size(); ++j) {
      out.push_back({&vs.http[i].route[j].destination, at(at("spec.http", i) + ".route", j) + ".destination", false});
    }
  }
  for (size_t i = 0; i < vs.http.size(); ++i) {
    if (vs.http[i].mirror) out.push_back({&*vs.http[i].mirror, at("spec.http", i) + ".mirror", true});
    for (size_t j = 0; j < vs.http[i].mirrors.size(); ++j) {
      if (const auto& d = vs.http[i].mirrors[j].destination) {
        out.push_back({&*d, at(at("spec.http", i) + ".mirrors", j) + ".destination", true});
      }
    }
  }
  return out;
}

// IST0101 gateway, IST0132 VirtualServiceHostNotFoundInGateway.
void analyze_gateway_refs(const ConfigSet& config, const VirtualService& vs, Diagnostics& out) {
  const std::string& ns = vs.meta.namespace_;
  for (size_t i = 0; i < vs.gateways.size(); ++i) {
    const std::string& ref = vs.gateways[i];
    if (ref == kMeshGateway || ref.empty()) continue;
    const std::string path = at("spec.gateways", i);
    GatewayName gw_name = resolve_gateway(ref, ns);
    const Gateway* gw = find_gateway(config, gw_name);
    if (!gw) referenced_not_found(out, vs.meta, "VirtualService", path, "gateway", ref);

    // As istioctl does, a missing gateway also has none of the hosts.
    bool found = false;
    if (gw) {
      for (const auto& gh : gateway_hosts_for(*gw, ns)) {
        for (const auto& h : vs.hosts) found = found || host_matches(gh, h);
      }
    }
    if (!found) {
      report(out, vs.meta, "VirtualService", Severity::kWarning, "IST0132", path,
             "one or more host " + go_list(vs.hosts) + " defined in VirtualService " + full_name(vs.meta) +
                 " not found in Gateway " + gw_name.str() + ".");
    }
  }
}

// IST0101 host / host:port / host+subset, IST0112 port selector required.
void analyze_destinations(const Registry& registry, const VirtualService& vs, Diagnostics& out) {
  const std::string& ns = vs.meta.namespace_;
  for (const auto& ref : destinations_of(vs)) {
    const Destination& d = *ref.destination;
    if (d.host.empty()) continue;  // a validation error already
    const std::string host_path = ref.path + ".host";
    const ServiceEntry* se = registry.find_service_entry(d.host, ns);
    if (!se) {
      if (!registry.is_kubernetes_service_name(d.host)) {
        referenced_not_found(out, vs.meta, "VirtualService", host_path, ref.mirror ? "mirror host" : "host", d.host);
      }
    } else if (!d.port) {
      if (se->ports.size() > 1) {
        std::vector<std::string> numbers;
        for (const auto& p : se->ports) numbers.push_back(std::to_string(p.number));
        report(out, vs.meta, "VirtualService", Severity::kError, "IST0112", host_path,
               "This VirtualService routes to a service " + go_quote(d.host) + " that exposes multiple ports " +
                   go_list(numbers) + ". Specifying a port in the destination is required to disambiguate.");
      }
    } else {
      bool port_found = std::any_of(se->ports.begin(), se->ports.end(),
                                    [&](const ServicePort& p) { return p.number == d.port->number; });
      if (!port_found) {
        referenced_not_found(out, vs.meta, "VirtualService", ref.path + ".port.number", "host:port",
                             d.host + ":" + std::to_string(d.port->number));
      }
    }

    if (!d.subset.empty() && !registry.has_subset(d.host, d.subset, ns)) {
      referenced_not_found(out, vs.meta, "VirtualService", ref.path + ".subset",
                           ref.mirror ? "mirror+subset in destinationrule" : "host+subset in destinationrule",
                           d.host + "+" + d.subset);
    }
  }
}

// Canonical text of a match, without its name, to spot repeated matches.
std::string match_key(const HTTPMatchRequest& m) {
  std::string k;
  auto sm = [&](const char* f, const std::optional<StringMatch>& s) {
    if (s) k += std::string(f) + "=" + to_string(s->kind) + ":" + s->value + ";";
  };
  auto smap = [&](const char* f, const std::map<std::string, StringMatch>& m2) {
    for (const auto& [n, s] : m2) k += std::string(f) + "." + n + "=" + to_string(s.kind) + ":" + s.value + ";";
  };
  sm("uri", m.uri);
  sm("scheme", m.scheme);
  sm("method", m.method);
  sm("authority", m.authority);
  smap("headers", m.headers);
  smap("withoutHeaders", m.without_headers);
  smap("queryParams", m.query_params);
  k += "ignoreUriCase=" + std::to_string(m.ignore_uri_case) + ";port=" + std::to_string(m.port) + ";";
  for (const auto& [l, v] : m.source_labels) k += "sourceLabels." + l + "=" + v + ";";
  for (const auto& g : m.gateways) k += "gateways=" + g + ";";
  k += "sourceNamespace=" + m.source_namespace;
  return k;
}

template <typename Match>
std::string l4_match_key(const Match& m) {
  std::string k = "port=" + std::to_string(m.port) + ";";
  for (const auto& s : m.destination_subnets) k += "subnet=" + s + ";";
  for (const auto& [l, v] : m.source_labels) k += "sourceLabels." + l + "=" + v + ";";
  for (const auto& g : m.gateways) k += "gateways=" + g + ";";
  return k + "sourceNamespace=" + m.source_namespace;
}

std::string tls_match_key(const TLSMatchAttributes& m) {
  std::string k;
  for (const auto& s : m.sni_hosts) k += "sni=" + s + ";";
  return k + l4_match_key(m);
}

// IST0130 VirtualServiceUnreachableRule / IST0131 VirtualServiceIneffectiveMatch,
// for repeated matches (Istio's validation also reports overlapping URI
// prefixes; that refinement is not done here).
template <typename Route, typename KeyFn, typename RouteName, typename MatchName>
void analyze_unreachable(const VirtualService& vs, const std::vector<Route>& routes, const std::string& base,
                         KeyFn key_of, RouteName route_name, MatchName match_name, Diagnostics& out) {
  std::map<std::string, size_t> seen;
  bool empty_match_seen = false;
  for (size_t i = 0; i < routes.size(); ++i) {
    const auto& route = routes[i];
    const std::string path = at(base, i);
    if (route.match.empty()) {
      if (empty_match_seen) {
        report(out, vs.meta, "VirtualService", Severity::kWarning, "IST0130", path,
               "VirtualService rule " + route_name(i) + " not used (only the last rule can have no matches).");
      }
      empty_match_seen = true;
      continue;
    }
    size_t duplicates = 0;
    for (size_t j = 0; j < route.match.size(); ++j) {
      std::string key = key_of(route.match[j]);
      auto it = seen.find(key);
      if (it != seen.end()) {
        report(out, vs.meta, "VirtualService", Severity::kInfo, "IST0131", at(path + ".match", j),
               "VirtualService rule " + route_name(i) + " match " + match_name(i, j) +
                   " is not used (duplicate/overlapping match in rule " + route_name(it->second) + ").");
        ++duplicates;
        continue;
      }
      seen.emplace(std::move(key), i);
    }
    if (duplicates == route.match.size()) {
      report(out, vs.meta, "VirtualService", Severity::kWarning, "IST0130", path,
             "VirtualService rule " + route_name(i) + " not used (all matches used by prior rules).");
    }
  }
}

void analyze_unreachable_rules(const VirtualService& vs, Diagnostics& out) {
  auto numbered = [](size_t i) { return "#" + std::to_string(i); };
  analyze_unreachable(
      vs, vs.http, "spec.http", match_key,
      [&](size_t i) { return vs.http[i].name.empty() ? numbered(i) : go_quote(vs.http[i].name); },
      [&](size_t i, size_t j) {
        const auto& name = vs.http[i].match[j].name;
        return name.empty() ? numbered(j) : go_quote(name);
      },
      out);
  analyze_unreachable(vs, vs.tcp, "spec.tcp", l4_match_key<L4MatchAttributes>, numbered,
                      [&](size_t, size_t j) { return numbered(j); }, out);
  analyze_unreachable(vs, vs.tls, "spec.tls", tls_match_key, numbered, [&](size_t, size_t j) { return numbered(j); },
                      out);
}

// IST0109 ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices bound
// to sidecars claim the same host in the same scope; the merge order is
// undefined.
void analyze_mesh_host_conflicts(const ConfigSet& config, Diagnostics& out) {
  std::map<std::string, std::vector<const VirtualService*>> by_host;
  for (const auto& vs : config.virtual_services) {
    const auto gateways = vs.effective_gateways();
    if (std::find(gateways.begin(), gateways.end(), kMeshGateway) == gateways.end()) continue;
    std::set<std::string> scopes;
    if (vs.export_to.empty() || std::find(vs.export_to.begin(), vs.export_to.end(), "*") != vs.export_to.end()) {
      scopes.insert("*");
    } else {
      for (const auto& e : vs.export_to) scopes.insert(e == "." ? vs.meta.namespace_ : e);
    }
    for (const auto& scope : scopes) {
      for (const auto& h : vs.hosts) {
        auto& list = by_host[scope + "/" + qualify_host(h, vs.meta.namespace_)];
        if (std::find(list.begin(), list.end(), &vs) == list.end()) list.push_back(&vs);
      }
    }
  }
  for (const auto& [scoped_host, list] : by_host) {
    if (list.size() < 2) continue;
    std::vector<std::string> names;
    for (const auto* vs : list) names.push_back(full_name(vs->meta));
    std::sort(names.begin(), names.end());
    for (const auto* vs : list) {
      report(out, vs->meta, "VirtualService", Severity::kError, "IST0109", "metadata.name",
             "The VirtualServices " + join(names, ",") + " associated with mesh gateway define the same host " +
                 scoped_host +
                 " which can lead to undefined behavior. This can be fixed by merging the conflicting "
                 "VirtualServices into a single resource.");
    }
  }
}

// ---------------------------------------------------------------------------
// DestinationRule: IST0128 / IST0129, SIMPLE or MUTUAL origination that does
// not verify the server (no caCertificates), at the top-level policy and its
// port-level settings, as istioctl checks them.

bool verifies_nothing(const std::optional<ClientTLSSettings>& tls, const DestinationRule& dr) {
  if (!tls || (tls->mode != ClientTLSMode::kSimple && tls->mode != ClientTLSMode::kMutual)) return false;
  if (!tls->ca_certificates.empty()) return false;
  // A credential on a workload-selected rule carries its own CA.
  return !(!tls->credential_name.empty() && dr.workload_selector);
}

void analyze_ca_certificates(const DestinationRule& dr, Diagnostics& out) {
  if (!dr.traffic_policy) return;
  const TrafficPolicy& tp = *dr.traffic_policy;
  if (verifies_nothing(tp.tls, dr)) {
    report(out, dr.meta, "DestinationRule", Severity::kWarning, "IST0128", "spec.trafficPolicy.tls.caCertificates",
           "DestinationRule " + full_name(dr.meta) + " in namespace " + dr.meta.namespace_ + " has TLS mode set to " +
               to_string(tp.tls->mode) + " but no caCertificates are set to validate server identity for host: " +
               dr.host);
  }
  for (size_t i = 0; i < tp.port_level_settings.size(); ++i) {
    const PortTrafficPolicy& p = tp.port_level_settings[i];
    if (!verifies_nothing(p.tls, dr)) continue;
    // Go prints the PortSelector message in its text form.
    std::string port = p.port ? "number:" + std::to_string(p.port->number) : "<nil>";
    report(out, dr.meta, "DestinationRule", Severity::kWarning, "IST0129",
           at("spec.trafficPolicy.portLevelSettings", i) + ".tls.caCertificates",
           "DestinationRule " + full_name(dr.meta) + " in namespace " + dr.meta.namespace_ + " has TLS mode set to " +
               to_string(p.tls->mode) + " but no caCertificates are set to validate server identity for host: " +
               dr.host + " at port " + port);
  }
}

// ---------------------------------------------------------------------------
// ServiceEntry: IST0134, a TCP (or unset protocol) port without addresses
// matches every IP on that port.

void analyze_protocol_addresses(const ServiceEntry& se, Diagnostics& out) {
  if (!se.addresses.empty()) return;
  for (size_t i = 0; i < se.ports.size(); ++i) {
    const std::string& p = se.ports[i].protocol;
    if (p.empty() || p == "TCP") {
      report(out, se.meta, "ServiceEntry", Severity::kWarning, "IST0134", at("spec.ports", i) + ".name",
             "ServiceEntry addresses are required for this protocol.");
    }
  }
}

// ---------------------------------------------------------------------------
// Gateway: IST0145, two Gateways selecting the same workloads claim the same
// port and an overlapping host.

std::string selector_text(const Labels& selector) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : selector) parts.push_back(k + "=" + v);  // std::map: sorted, as Kubernetes prints it
  return join(parts, ",");
}

void analyze_conflicting_gateways(const ConfigSet& config, Diagnostics& out) {
  for (const auto& gw : config.gateways) {
    const std::string selector = selector_text(gw.selector);
    for (size_t i = 0; i < gw.servers.size(); ++i) {
      const Server& server = gw.servers[i];
      std::set<std::string> conflicting;
      for (const auto& other : config.gateways) {
        if (&other == &gw || selector_text(other.selector) != selector) continue;
        for (const auto& os : other.servers) {
          if (os.port.number != server.port.number) continue;
          for (const auto& h : server.hosts) {
            for (const auto& oh : os.hosts) {
              if (host_matches(h, oh)) conflicting.insert(full_name(other.meta));
            }
          }
        }
      }
      if (conflicting.empty()) continue;
      report(out, gw.meta, "Gateway", Severity::kError, "IST0145", at("spec.servers", i),
             "Conflict with gateways " + join(std::vector<std::string>(conflicting.begin(), conflicting.end()), ",") +
                 " (workload selector " + selector + ", port " + std::to_string(server.port.number) + ", hosts " +
                 join(server.hosts, ",") + ").");
    }
  }
}

// ---------------------------------------------------------------------------
// Sidecar: IST0111, more than one Sidecar without a workloadSelector in a
// namespace (which one a workload gets is then undefined). IST0110 needs the
// pods a selector picks, which only a cluster knows: `sluicectl explain
// --namespace NS --label k=v` names every Sidecar that matches a workload.

void analyze_sidecars_without_selector(const ConfigSet& config, Diagnostics& out) {
  std::map<std::string, std::vector<const Sidecar*>> by_namespace;
  for (const auto& sc : config.sidecars) {
    if (!sc.workload_selector) by_namespace[sc.meta.namespace_].push_back(&sc);
  }
  for (const auto& [ns, list] : by_namespace) {
    if (list.size() < 2) continue;
    std::vector<std::string> names;
    for (const Sidecar* sc : list) names.push_back(sc->meta.name);
    for (const Sidecar* sc : list) {
      report(out, sc->meta, "Sidecar", Severity::kError, "IST0111", "metadata.name",
             "The Sidecars " + go_list(names) + " in namespace " + go_quote(ns) +
                 " have no workload selector, which can lead to undefined behavior.");
    }
  }
}

}  // namespace

Diagnostics analyze(const ConfigSet& config) {
  Diagnostics out;
  Registry registry(config);
  for (const auto& vs : config.virtual_services) {
    analyze_gateway_refs(config, vs, out);
    analyze_destinations(registry, vs, out);
    analyze_unreachable_rules(vs, out);
  }
  analyze_mesh_host_conflicts(config, out);
  for (const auto& dr : config.destination_rules) analyze_ca_certificates(dr, out);
  for (const auto& se : config.service_entries) analyze_protocol_addresses(se, out);
  analyze_conflicting_gateways(config, out);
  analyze_sidecars_without_selector(config, out);
  return out;
}

}  // namespace sluice::config
