#include "core/policy/registry.h"

#include <algorithm>

#include "core/config/host_match.h"

namespace sluice::policy {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// How well a registry host covers a request host; higher wins, 0 = no match.
// Envoy picks exact domains first, then the longest suffix wildcard, then "*".
size_t match_score(std::string_view registry_host, std::string_view request_host) {
  if (registry_host == request_host) return 1'000'000;
  if (config::host_is_wildcard(registry_host)) {
    if (config::host_subset_of(request_host, registry_host)) return registry_host.size();
    return 0;
  }
  // Kubernetes-style aliases Istio adds for *.svc.cluster.local hosts:
  // "name.ns.svc" and "name.ns" reach "name.ns.svc.cluster.local". (The bare
  // "name" alias needs the client's namespace, which a node proxy does not know.)
  std::string name, ns;
  if (config::split_kubernetes_fqdn(registry_host, &name, &ns)) {
    if (request_host == name + "." + ns || request_host == name + "." + ns + ".svc") return 999'999;
  }
  return 0;
}

bool address_matches(const std::string& address, const decision::IpAddress& ip) {
  auto parsed = decision::Cidr::parse(address);
  if (!parsed.cidr) return false;
  const decision::IpAddress unmapped = ip.unmapped();
  return parsed.cidr->family() == unmapped.family() && parsed.cidr->contains(unmapped);
}

}  // namespace

PortProtocol classify_protocol(std::string_view p) {
  for (const char* http : {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"}) {
    if (iequals(p, http)) return PortProtocol::kHttp;
  }
  if (iequals(p, "HTTPS") || iequals(p, "TLS")) return PortProtocol::kTls;
  for (const char* tcp : {"TCP", "MONGO", "MYSQL", "REDIS", "THRIFT", "UDP"}) {
    if (iequals(p, tcp)) return PortProtocol::kTcp;
  }
  return PortProtocol::kUnspecified;
}

const char* to_string(PortProtocol p) {
  switch (p) {
    case PortProtocol::kHttp: return "HTTP";
    case PortProtocol::kTls: return "TLS";
    case PortProtocol::kTcp: return "TCP";
    case PortProtocol::kUnspecified: return "UNSPECIFIED";
  }
  return "UNSPECIFIED";
}

std::string ServiceRef::cluster_name() const {
  return "outbound|" + std::to_string(port ? port->number : 0) + "||" + host;
}

Registry::Registry(const config::ConfigSet& config) {
  for (const auto& se : config.service_entries) {
    for (const auto& port : se.ports) {
      by_port_[port.number].push_back(Candidate{&se, &port, classify_protocol(port.protocol)});
    }
  }
}

bool Registry::has_http_listener(uint32_t port) const {
  return declared_protocol(port) == PortProtocol::kHttp;
}

PortProtocol Registry::declared_protocol(uint32_t port) const {
  auto it = by_port_.find(port);
  if (it == by_port_.end()) return PortProtocol::kUnspecified;
  bool tls = false, tcp = false, unspecified = false;
  for (const auto& c : it->second) {
    if (c.protocol == PortProtocol::kHttp) return PortProtocol::kHttp;
    tls |= c.protocol == PortProtocol::kTls;
    tcp |= c.protocol == PortProtocol::kTcp;
    unspecified |= c.protocol == PortProtocol::kUnspecified;
  }
  if (unspecified) return PortProtocol::kUnspecified;
  if (tls) return PortProtocol::kTls;
  return tcp ? PortProtocol::kTcp : PortProtocol::kUnspecified;
}

std::optional<ServiceRef> Registry::find_by_host(uint32_t port, std::string_view host, bool http) const {
  auto it = by_port_.find(port);
  if (it == by_port_.end() || host.empty()) return std::nullopt;
  std::optional<ServiceRef> best;
  size_t best_score = 0;
  for (const auto& c : it->second) {
    const bool eligible = http ? c.protocol == PortProtocol::kHttp
                               : (c.protocol == PortProtocol::kTls || c.protocol == PortProtocol::kUnspecified);
    if (!eligible) continue;
    for (const auto& h : c.entry->hosts) {
      const size_t score = match_score(h, host);
      // Strictly greater: on a tie the first entry loaded wins, as Istio
      // orders by creation time.
      if (score > best_score) {
        best_score = score;
        best = ServiceRef{c.entry, c.port, h};
      }
    }
    if (http && best_score < 1'000'000) {
      // An HTTP Host may also be one of the entry's addresses.
      auto ip = decision::IpAddress::parse(host);
      if (ip) {
        for (const auto& a : c.entry->addresses) {
          if (address_matches(a, *ip) && best_score < 1'000'000) {
            best_score = 1'000'000;
            best = ServiceRef{c.entry, c.port, c.entry->hosts.empty() ? std::string(host) : c.entry->hosts[0]};
          }
        }
      }
    }
  }
  return best;
}

std::optional<ServiceRef> Registry::find_http(uint32_t port, std::string_view host) const {
  return find_by_host(port, host, /*http=*/true);
}

std::optional<ServiceRef> Registry::find_tls(uint32_t port, std::string_view sni) const {
  return find_by_host(port, sni, /*http=*/false);
}

std::optional<ServiceRef> Registry::find_tcp(const decision::IpAddress& ip, uint32_t port) const {
  auto it = by_port_.find(port);
  if (it == by_port_.end()) return std::nullopt;
  // Entries that list addresses match on them (the most specific listener
  // filter chain). An opaque (TCP-family or unspecified) port without
  // addresses claims every IP on the port; HTTP and TLS ports without
  // addresses match only by Host/SNI.
  std::optional<ServiceRef> catch_all;
  for (const auto& c : it->second) {
    const auto& se = *c.entry;
    if (se.addresses.empty()) {
      if (!catch_all && (c.protocol == PortProtocol::kTcp || c.protocol == PortProtocol::kUnspecified) &&
          !se.hosts.empty()) {
        catch_all = ServiceRef{&se, c.port, se.hosts[0]};
      }
      continue;
    }
    for (const auto& a : se.addresses) {
      if (address_matches(a, ip)) return ServiceRef{&se, c.port, se.hosts.empty() ? a : se.hosts[0]};
    }
  }
  return catch_all;
}

}  // namespace sluice::policy
