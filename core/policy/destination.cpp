#include "core/policy/destination.h"

#include <algorithm>

#include "core/config/host_match.h"

namespace sluice::policy {

namespace {

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// The four settings a policy level can supply.
struct Settings {
  const config::LoadBalancerSettings* lb = nullptr;
  const config::ConnectionPoolSettings* pool = nullptr;
  const config::OutlierDetection* outlier = nullptr;
  const config::ClientTLSSettings* tls = nullptr;
};

template <typename Policy>
Settings settings_of(const Policy& p) {
  return Settings{p.load_balancer ? &*p.load_balancer : nullptr, p.connection_pool ? &*p.connection_pool : nullptr,
                  p.outlier_detection ? &*p.outlier_detection : nullptr, p.tls ? &*p.tls : nullptr};
}

// The portLevelSettings entry for `port`, if any (the first one, as Istio).
const config::PortTrafficPolicy* port_level(const config::TrafficPolicy& p, uint32_t port, size_t* index) {
  for (size_t i = 0; i < p.port_level_settings.size(); ++i) {
    const auto& pls = p.port_level_settings[i];
    if (pls.port && pls.port->number == port) {
      *index = i;
      return &pls;
    }
  }
  return nullptr;
}

void describe_setting(ReasonText& r, const char* name, const void* value, PolicySource source, bool& first) {
  r.append(first ? "" : ", ").append(name).append(" ");
  first = false;
  if (!value) {
    r.append("default");
    return;
  }
  r.append("from ").append(to_string(source));
}

}  // namespace

const char* to_string(PolicySource s) {
  switch (s) {
    case PolicySource::kDefault: return "default";
    case PolicySource::kTopLevel: return "trafficPolicy";
    case PolicySource::kTopLevelPort: return "trafficPolicy.portLevelSettings";
    case PolicySource::kSubset: return "subset trafficPolicy";
    case PolicySource::kSubsetPort: return "subset portLevelSettings";
  }
  return "?";
}

std::string subset_cluster_name(std::string_view host, std::string_view subset, uint32_t port) {
  std::string out = "outbound|";
  out += std::to_string(port);
  out += "|";
  out.append(subset);
  out += "|";
  out.append(host);
  return out;
}

std::string istio_mutual_sni(std::string_view host, std::string_view subset, uint32_t port) {
  std::string out = "outbound_.";
  out += std::to_string(port);
  out += "_.";
  out.append(subset);
  out += "_.";
  out.append(host);
  return out;
}

bool endpoint_in_subset(const config::WorkloadEntry& endpoint, const config::Labels* subset_labels) {
  return !subset_labels || config::labels_match(*subset_labels, endpoint.labels);
}

void select_endpoints(const config::ServiceEntry& entry, const config::Labels* subset_labels,
                      std::vector<size_t>& out) {
  out.clear();
  for (size_t i = 0; i < entry.endpoints.size(); ++i) {
    if (endpoint_in_subset(entry.endpoints[i], subset_labels)) out.push_back(i);
  }
}

void DestinationRules::Index::add(const config::DestinationRule& dr) {
  std::string host = to_lower(config::qualify_host(dr.host, dr.meta.namespace_));
  size_t index;
  if (auto it = exact.find(host); it != exact.end()) {
    index = it->second;
  } else {
    index = merged.size();
    merged.push_back(Merged{host, {}, nullptr, {}});
    exact.emplace(host, index);
    if (config::host_is_wildcard(host)) wildcards.push_back(index);
  }
  Merged& m = merged[index];
  m.rules.push_back(&dr);
  if (!m.policy_rule && dr.traffic_policy) m.policy_rule = &dr;
  for (const auto& sub : dr.subsets) {
    bool seen = std::any_of(m.subsets.begin(), m.subsets.end(),
                            [&](const Merged::NamedSubset& n) { return n.subset->name == sub.name; });
    if (!seen) m.subsets.push_back({&sub, &dr});
  }
}

void DestinationRules::Index::finish() {
  std::stable_sort(wildcards.begin(), wildcards.end(),
                   [&](size_t a, size_t b) { return merged[a].host.size() > merged[b].host.size(); });
}

const DestinationRules::Merged* DestinationRules::Index::find(std::string_view host) const {
  // A wildcard destination host ("*.wikipedia.org") finds the rule written
  // for exactly that wildcard first, like any other host.
  if (auto it = exact.find(host); it != exact.end()) return &merged[it->second];
  for (size_t i : wildcards) {
    if (config::host_subset_of(host, merged[i].host)) return &merged[i];
  }
  return nullptr;
}

namespace {

// Exported only to its own namespace (Istio's private rules).
bool private_rule(const config::DestinationRule& dr) {
  if (dr.export_to.empty()) return false;
  return std::all_of(dr.export_to.begin(), dr.export_to.end(),
                     [&](const std::string& e) { return e == "." || e == dr.meta.namespace_; });
}

}  // namespace

DestinationRules::DestinationRules(const config::ConfigSet& config) {
  tiered_ = !config.view_namespace.empty();
  proxy_ns_ = config.view_namespace;
  root_ns_ = config.mesh.root_namespace;
  for (const auto& dr : config.destination_rules) {
    if (!tiered_) {
      all_.add(dr);
      continue;
    }
    if (dr.meta.namespace_ == root_ns_ && proxy_ns_ == root_ns_ && private_rule(dr)) {
      root_private_.add(dr);
    } else {
      by_ns_[dr.meta.namespace_].add(dr);
    }
  }
  all_.finish();
  root_private_.finish();
  for (auto& [ns, index] : by_ns_) index.finish();
  if (!tiered_) return;
  // The service's namespace per host: the proxy's own ServiceEntry first.
  for (int own = 1; own >= 0; --own) {
    for (const auto& se : config.service_entries) {
      if ((se.meta.namespace_ == proxy_ns_) != (own == 1)) continue;
      for (const auto& h : se.hosts) {
        service_ns_.emplace(to_lower(config::qualify_host(h, se.meta.namespace_)), se.meta.namespace_);
      }
    }
  }
}

const DestinationRules::Merged* DestinationRules::find(std::string_view host) const {
  if (!tiered_) return all_.find(host);
  auto in = [&](const std::string& ns) -> const Merged* {
    auto it = by_ns_.find(ns);
    return it == by_ns_.end() ? nullptr : it->second.find(host);
  };
  // 1. The proxy's namespace (a root-namespace proxy: its private rules;
  //    its exported ones come third, as for everyone, Istio's order for
  //    egress gateways).
  if (const Merged* m = proxy_ns_ == root_ns_ ? root_private_.find(host) : in(proxy_ns_)) return m;
  // 2. The service's namespace.
  std::string service_ns;
  if (auto it = service_ns_.find(host); it != service_ns_.end()) {
    service_ns = it->second;
  } else {
    std::string name;
    config::split_kubernetes_fqdn(host, &name, &service_ns);
  }
  if (!service_ns.empty() && service_ns != proxy_ns_ && service_ns != root_ns_) {
    if (const Merged* m = in(service_ns)) return m;
  }
  // 3. The root namespace.
  return in(root_ns_);
}

EffectivePolicy DestinationRules::resolve_policy(std::string_view host, std::string_view subset, uint32_t port,
                                                 bool explain) const {
  EffectivePolicy p;
  if (!explain) p.reason.off();
  p.host = std::string(host);
  p.subset = std::string(subset);
  p.port = port;
  p.cluster_name = subset_cluster_name(host, subset, port);

  const Merged* m = find(host);
  p.reason.append("cluster ").append(p.cluster_name).append(": ");
  if (m) {
    p.rule = m->policy_rule ? m->policy_rule : m->rules.front();
    p.rule_host = m->host;
    if (p.reason.on()) p.reason.append("DestinationRule ").append(p.rule->meta.key());
    if (m->host != host) p.reason.append(" (host ").append(m->host).append(")");
  } else {
    p.reason.append("no DestinationRule");
  }

  // 1-2: top level, replaced whole by a matching port-level entry.
  Settings s;
  PolicySource src = PolicySource::kTopLevel;
  if (m && m->policy_rule) {
    const config::TrafficPolicy& top = *m->policy_rule->traffic_policy;
    size_t pls_index = 0;
    if (const auto* pls = port_level(top, port, &pls_index)) {
      s = settings_of(*pls);
      src = PolicySource::kTopLevelPort;
      p.reason.appendf(", trafficPolicy.portLevelSettings[%zu] for port %u replaces the top level", pls_index, port);
    } else {
      s = settings_of(top);
    }
  }
  PolicySource lb_src = src, pool_src = src, outlier_src = src, tls_src = src;
  // The tunnel as Istio's tunnelingconfig.Apply takes it: a route to a
  // subset gets that subset's (none if it has none: no fallback to the top
  // level), a route without one the top level's; ports play no part.
  const config::TunnelSettings* tunnel = nullptr;
  PolicySource tunnel_src = PolicySource::kDefault;
  if (subset.empty() && m && m->policy_rule && m->policy_rule->traffic_policy->tunnel) {
    tunnel = &*m->policy_rule->traffic_policy->tunnel;
    tunnel_src = PolicySource::kTopLevel;
  }

  // 3: the subset.
  if (!subset.empty()) {
    const Merged::NamedSubset* named = nullptr;
    if (m) {
      for (const auto& n : m->subsets) {
        if (n.subset->name == subset) named = &n;
      }
    }
    if (!named) {
      p.status = EffectivePolicy::Status::kSubsetNotFound;
      p.reason.append(m ? " has no subset \"" : " defines subset \"").append(subset);
      p.reason.append("\": no such cluster, 503 NC");
      return p;
    }
    p.subset_definition = named->subset;
    p.subset_rule = named->rule;
    if (!named->subset->labels.empty()) p.subset_labels = &named->subset->labels;
    p.reason.append(", subset ").append(subset);
    if (named->rule != p.rule && p.reason.on()) p.reason.append(" (from ").append(named->rule->meta.key()).append(")");
    if (named->subset->traffic_policy) {
      const config::TrafficPolicy& sp = *named->subset->traffic_policy;
      if (sp.tunnel) {
        tunnel = &*sp.tunnel;
        tunnel_src = PolicySource::kSubset;
      }
      size_t pls_index = 0;
      if (const auto* pls = port_level(sp, port, &pls_index)) {
        s = settings_of(*pls);
        lb_src = pool_src = outlier_src = tls_src = PolicySource::kSubsetPort;
        p.reason.appendf(" with portLevelSettings[%zu] for port %u", pls_index, port);
      } else {
        Settings sub = settings_of(sp);
        if (sub.lb) {
          s.lb = sub.lb;
          lb_src = PolicySource::kSubset;
        }
        if (sub.pool) {
          s.pool = sub.pool;
          pool_src = PolicySource::kSubset;
        }
        if (sub.outlier) {
          s.outlier = sub.outlier;
          outlier_src = PolicySource::kSubset;
        }
        if (sub.tls) {
          s.tls = sub.tls;
          tls_src = PolicySource::kSubset;
        }
      }
    }
  }

  p.load_balancer = s.lb;
  p.load_balancer_source = s.lb ? lb_src : PolicySource::kDefault;
  p.connection_pool = s.pool;
  p.connection_pool_source = s.pool ? pool_src : PolicySource::kDefault;
  p.outlier_detection = s.outlier;
  p.outlier_detection_source = s.outlier ? outlier_src : PolicySource::kDefault;
  p.tls = s.tls;
  p.tls_source = s.tls ? tls_src : PolicySource::kDefault;
  p.tunnel = tunnel;
  p.tunnel_source = tunnel_src;

  // Load balancing: ROUND_ROBIN when unset (Istio 1.4), LEAST_CONN is
  // LEAST_REQUEST under its deprecated name.
  if (s.lb) {
    p.consistent_hash = s.lb->consistent_hash.has_value();
    switch (s.lb->simple) {
      case config::SimpleLB::kUnspecified:
      case config::SimpleLB::kRoundRobin:
        p.lb = config::SimpleLB::kRoundRobin;
        break;
      case config::SimpleLB::kRandom:
      case config::SimpleLB::kPassthrough:
        p.lb = s.lb->simple;
        break;
      case config::SimpleLB::kLeastRequest:
      case config::SimpleLB::kLeastConn:
        p.lb = config::SimpleLB::kLeastRequest;
        break;
    }
  }

  if (s.tls) {
    p.tls_mode = s.tls->mode;
    switch (s.tls->mode) {
      case config::ClientTLSMode::kIstioMutual:
        p.sni = s.tls->sni.empty() ? istio_mutual_sni(host, subset, port) : s.tls->sni;
        break;
      case config::ClientTLSMode::kSimple:
      case config::ClientTLSMode::kMutual:
        p.sni = s.tls->sni;
        p.auto_sni = s.tls->sni.empty();
        break;
      case config::ClientTLSMode::kDisable:
        break;
    }
  }

  p.reason.append(": ");
  bool first = true;
  describe_setting(p.reason, "loadBalancer", s.lb, lb_src, first);
  if (p.consistent_hash) {
    const config::ConsistentHashLB& ch = *s.lb->consistent_hash;
    p.reason.append(" (RING_HASH by ");
    if (!ch.http_header_name.empty()) p.reason.append("header ").append(ch.http_header_name);
    else if (!ch.http_cookie_name.empty()) p.reason.append("cookie ").append(ch.http_cookie_name);
    else if (!ch.http_query_parameter_name.empty()) p.reason.append("query parameter ").append(ch.http_query_parameter_name);
    else if (ch.use_source_ip) p.reason.append("source IP");
    else p.reason.append("nothing: a random point");
  } else {
    p.reason.append(" (").append(config::to_string(p.lb));
  }
  p.reason.append(")");
  describe_setting(p.reason, "tls", s.tls, tls_src, first);
  if (s.tls) {
    p.reason.append(" (").append(config::to_string(p.tls_mode));
    if (!p.sni.empty()) p.reason.append(", sni ").append(p.sni);
    if (p.auto_sni) p.reason.append(", sni from the request Host");
    p.reason.append(")");
  }
  if (tunnel) {
    describe_setting(p.reason, "tunnel", tunnel, tunnel_src, first);
    p.reason.append(" (")
        .append(tunnel->protocol.empty() ? "CONNECT" : tunnel->protocol)
        .append(" ")
        .append(tunnel->target_host)
        .appendf(":%u)", tunnel->target_port);
  }
  describe_setting(p.reason, "connectionPool", s.pool, pool_src, first);
  describe_setting(p.reason, "outlierDetection", s.outlier, outlier_src, first);
  return p;
}

}  // namespace sluice::policy
