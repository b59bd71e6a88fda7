#include "core/policy/outbound_policy.h"

namespace sluice::policy {

const char* to_string(Action a) {
  switch (a) {
    case Action::kRoute: return "route";
    case Action::kPassthrough: return "passthrough";
    case Action::kLocalReply502: return "local-reply-502";
    case Action::kBlackhole: return "blackhole";
  }
  return "blackhole";
}

namespace {

std::string destination_text(const OutboundRequest& r) {
  const std::string ip = r.original_ip.unmapped().str();
  const bool v6 = r.original_ip.unmapped().is_v6();
  return (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(r.original_port);
}

// What matched a known destination, for the reason: the Host, the SNI or the
// destination address.
enum class MatchedBy { kHost, kSni, kDestination };

OutboundDecision known(const ServiceRef& ref, const OutboundRequest& request, MatchedBy by) {
  OutboundDecision d;
  d.action = Action::kRoute;
  d.service = ref;
  d.cluster = ref.cluster_name();
  d.response_flags = "-";
  if (!request.explain) return d;
  const std::string how = by == MatchedBy::kHost  ? "Host \"" + request.host + "\""
                          : by == MatchedBy::kSni ? "SNI \"" + request.host + "\""
                                                  : "destination " + destination_text(request);
  d.reason = how + " matches ServiceEntry " + ref.entry->meta.key() + " host \"" + ref.host + "\" port " +
             std::to_string(ref.port->number) + " (" + ref.port->protocol + ")";
  return d;
}

}  // namespace

OutboundDecision decide_outbound(const Registry& registry, config::OutboundTrafficPolicyMode mode,
                                 const OutboundRequest& request) {
  const uint32_t port = request.original_port;
  const bool http_listener = registry.has_http_listener(port);

  // Name-based matches first: Host for HTTP (only where an HTTP listener
  // exists, as in Istio: elsewhere HTTP is just bytes), SNI for TLS.
  if (request.traffic == Traffic::kHttp && http_listener) {
    if (auto ref = registry.find_http(port, request.host)) return known(*ref, request, MatchedBy::kHost);
  } else if (request.traffic == Traffic::kTls) {
    if (auto ref = registry.find_tls(port, request.host)) return known(*ref, request, MatchedBy::kSni);
  }
  // HTTP on an HTTP listener is decided by Host alone; everything else falls
  // back to the destination address.
  if (!(request.traffic == Traffic::kHttp && http_listener)) {
    if (auto ref = registry.find_tcp(request.original_ip, port)) {
      return known(*ref, request, MatchedBy::kDestination);
    }
  }

  OutboundDecision d;
  std::string what;
  if (request.explain) {
    what = request.traffic == Traffic::kHttp  ? "HTTP Host \"" + request.host + "\""
           : request.traffic == Traffic::kTls ? "TLS SNI \"" + request.host + "\""
                                              : "TCP";
  }
  if (mode == config::OutboundTrafficPolicyMode::kAllowAny) {
    d.action = Action::kPassthrough;
    d.cluster = "PassthroughCluster";
    d.route_name = request.traffic == Traffic::kHttp && http_listener ? "allow_any" : "";
    d.response_flags = "-";
    if (request.explain) {
      d.reason = what + " to " + destination_text(request) +
                 " is not in the registry; outboundTrafficPolicy ALLOW_ANY passes it to the original destination";
    }
    return d;
  }
  d.cluster = "BlackHoleCluster";
  if (request.traffic == Traffic::kHttp && http_listener) {
    d.action = Action::kLocalReply502;
    d.route_name = "block_all";
    d.response_flags = "-";
    if (request.explain) {
      d.reason = what + " on port " + std::to_string(port) +
                 " matches no ServiceEntry host; REGISTRY_ONLY answers 502 (route block_all)";
    }
  } else {
    d.action = Action::kBlackhole;
    d.response_flags = "UH";
    if (request.explain) {
      d.reason = what + " to " + destination_text(request) +
                 " is not in the registry; REGISTRY_ONLY closes the connection (BlackHoleCluster)";
    }
  }
  return d;
}

}  // namespace sluice::policy
