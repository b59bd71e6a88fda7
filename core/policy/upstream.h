// Where a connection that matched a ServiceEntry goes, by the entry's
// resolution (Istio's semantics):
//   NONE             the original destination IP, at the port's targetPort
//   STATIC           the entry's endpoints (IP addresses)
//   DNS              the endpoints' names, or the matched host itself when there
//                    are none — resolved by the proxy, balanced over all answers
//   DNS_ROUND_ROBIN  as DNS, but one answer at a time
// For DNS the client's chosen IP is never used: a forged Host header cannot
// reach an arbitrary address.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/decision/ip_address.h"
#include "core/policy/outbound_policy.h"
#include "core/policy/registry.h"

namespace sluice::policy {

struct UpstreamEndpoint {
  // Exactly one of the two: an address, or a name to resolve.
  std::optional<decision::IpAddress> address;
  std::string dns_name;
  uint16_t port = 0;
  uint32_t weight = 1;
};

struct UpstreamPlan {
  enum class Kind { kOriginalDestination, kStatic, kDns };
  Kind kind = Kind::kOriginalDestination;
  bool one_answer_at_a_time = false;  // DNS_ROUND_ROBIN
  std::vector<UpstreamEndpoint> endpoints;
  std::string error;  // non-empty: no usable upstream (an endpoint that is not an IP for STATIC, ...)
};

const char* to_string(UpstreamPlan::Kind k);

// `requested_host` is the Host/SNI that matched (used for a wildcard DNS
// entry without endpoints: the name the client asked for is resolved).
UpstreamPlan plan_upstream(const ServiceRef& service, const decision::IpAddress& original_ip,
                           uint16_t original_port, const std::string& requested_host);

// Passthrough (ALLOW_ANY for an unknown destination): the original destination.
UpstreamPlan plan_passthrough(const decision::IpAddress& original_ip, uint16_t original_port);

}  // namespace sluice::policy
