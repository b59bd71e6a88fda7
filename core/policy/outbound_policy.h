// What a sidecar does with one outbound connection (or, for HTTP, one
// request), given what it learned: the original destination and what was
// sniffed. Istio's outboundTrafficPolicy semantics, as pure code:
//
//   known to the registry            -> kRoute (upstream per the ServiceEntry)
//   unknown, ALLOW_ANY               -> kPassthrough (PassthroughCluster)
//   unknown, REGISTRY_ONLY, HTTP on a port with an HTTP listener
//                                    -> kLocalReply502 (route block_all, empty body)
//   unknown, REGISTRY_ONLY, anything else (unknown SNI, opaque TCP, HTTP on a
//   port no ServiceEntry declares HTTP)
//                                    -> kBlackhole (accept, then close; flag UH)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/config/model.h"
#include "core/decision/ip_address.h"
#include "core/policy/registry.h"

namespace sluice::policy {

// What the connection turned out to carry.
enum class Traffic { kHttp, kTls, kTcp };

struct OutboundRequest {
  decision::IpAddress original_ip;
  uint16_t original_port = 0;
  Traffic traffic = Traffic::kTcp;
  // HTTP: the Host header (or absolute-form authority) without port, lower
  // case; TLS: the SNI; TCP: empty. An empty host on HTTP/TLS matches nothing
  // by name and falls back to the IP:port rules.
  std::string host;
  // Build OutboundDecision::reason. The data plane's per-request decisions
  // leave it off (PlanRequest::explain): the decision is the same, without
  // formatting an explanation nobody reads.
  bool explain = true;
};

enum class Action { kRoute, kPassthrough, kLocalReply502, kBlackhole };
const char* to_string(Action a);

struct OutboundDecision {
  Action action = Action::kBlackhole;
  std::optional<ServiceRef> service;  // set for kRoute
  // For the access log and metrics, as Envoy names them.
  std::string cluster;        // outbound|80||edition.cnn.com, PassthroughCluster, BlackHoleCluster
  std::string route_name;     // "allow_any", "block_all", or empty
  std::string response_flags; // "UH" for a blackholed connection, "-" otherwise
  // Why, in one line, for logs and `sluicectl explain` (empty unless
  // OutboundRequest::explain).
  std::string reason;
};

OutboundDecision decide_outbound(const Registry& registry, config::OutboundTrafficPolicyMode mode,
                                 const OutboundRequest& request);

}  // namespace sluice::policy
