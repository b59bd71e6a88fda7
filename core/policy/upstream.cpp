#include "core/policy/upstream.h"

#include "core/config/host_match.h"

namespace sluice::policy {

const char* to_string(UpstreamPlan::Kind k) {
  switch (k) {
    case UpstreamPlan::Kind::kOriginalDestination: return "ORIGINAL_DST";
    case UpstreamPlan::Kind::kStatic: return "STATIC";
    case UpstreamPlan::Kind::kDns: return "DNS";
  }
  return "ORIGINAL_DST";
}

namespace {

uint16_t service_target_port(const config::ServicePort& p) {
  return static_cast<uint16_t>(p.target_port != 0 ? p.target_port : p.number);
}

// An endpoint's port for the service port: its named port if it has one,
// else the service port's target.
uint16_t endpoint_port(const config::WorkloadEntry& e, const config::ServicePort& p) {
  if (auto it = e.ports.find(p.name); it != e.ports.end()) return static_cast<uint16_t>(it->second);
  return service_target_port(p);
}

}  // namespace

UpstreamPlan plan_passthrough(const decision::IpAddress& original_ip, uint16_t original_port) {
  UpstreamPlan plan;
  plan.kind = UpstreamPlan::Kind::kOriginalDestination;
  plan.endpoints.push_back(UpstreamEndpoint{original_ip.unmapped(), "", original_port, 1});
  return plan;
}

UpstreamPlan plan_upstream(const ServiceRef& service, const decision::IpAddress& original_ip,
                           uint16_t original_port, const std::string& requested_host) {
  const auto& se = *service.entry;
  const auto& port = *service.port;
  UpstreamPlan plan;
  switch (se.resolution) {
    case config::Resolution::kNone: {
      plan = plan_passthrough(original_ip, original_port);
      plan.endpoints[0].port = service_target_port(port);
      return plan;
    }
    case config::Resolution::kStatic: {
      plan.kind = UpstreamPlan::Kind::kStatic;
      for (const auto& e : se.endpoints) {
        auto ip = decision::IpAddress::parse(e.address);
        if (!ip) {
          plan.error = "STATIC endpoint \"" + e.address + "\" of ServiceEntry " + se.meta.key() +
                       " is not an IP address";
          continue;
        }
        plan.endpoints.push_back(UpstreamEndpoint{ip->unmapped(), "", endpoint_port(e, port), e.weight ? e.weight : 1});
      }
      if (plan.endpoints.empty() && plan.error.empty()) {
        plan.error = "ServiceEntry " + se.meta.key() + " has resolution STATIC but no endpoints";
      }
      return plan;
    }
    case config::Resolution::kDns:
    case config::Resolution::kDnsRoundRobin: {
      plan.kind = UpstreamPlan::Kind::kDns;
      plan.one_answer_at_a_time = se.resolution == config::Resolution::kDnsRoundRobin;
      for (const auto& e : se.endpoints) {
        UpstreamEndpoint ep;
        if (auto ip = decision::IpAddress::parse(e.address)) {
          ep.address = ip->unmapped();
        } else {
          ep.dns_name = e.address;
        }
        ep.port = endpoint_port(e, port);
        ep.weight = e.weight ? e.weight : 1;
        plan.endpoints.push_back(std::move(ep));
      }
      if (se.endpoints.empty()) {
        // The matched host itself; for a wildcard entry, the name the client
        // asked for (it is within the wildcard, or it would not have matched).
        std::string name = config::host_is_wildcard(service.host) ? requested_host : service.host;
        if (name.empty()) {
          plan.error = "ServiceEntry " + se.meta.key() + " host \"" + service.host +
                       "\" is a wildcard with resolution DNS and the request named no host";
        } else {
          plan.endpoints.push_back(UpstreamEndpoint{std::nullopt, std::move(name), service_target_port(port), 1});
        }
      }
      return plan;
    }
  }
  return plan;
}

}  // namespace sluice::policy
