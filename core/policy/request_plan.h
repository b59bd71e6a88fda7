// What a proxy does with one connection or HTTP request, end to end, as one
// pure decision over a config snapshot: the composition of
//
//   sidecar:  outboundTrafficPolicy (known / unknown)      outbound_policy.h
//             -> VirtualService routes bound to `mesh`      routing.h
//             -> DestinationRule policy for the target      destination.h
//             -> endpoints by the target's ServiceEntry     upstream.h
//                (or DNS for a host no ServiceEntry declares: a Kubernetes
//                service such as istio-egressgateway.istio-system.svc...)
//   gateway:  the Gateway server that took the connection  gateway_servers.h
//             -> VirtualService routes bound to that Gateway, then as above.
//
// The data plane executes a RequestPlan (answer locally, close, or connect
// to the endpoints with the TLS it names); `sluicectl explain` prints one.
// Both call the same functions, so what explain says is what the proxy does.
#pragma once

#include <bitset>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/model.h"
#include "core/decision/ip_address.h"
#include "core/policy/connection_settings.h"
#include "core/policy/destination.h"
#include "core/policy/gateway_servers.h"
#include "core/policy/outbound_policy.h"
#include "core/policy/registry.h"
#include "core/policy/routing.h"
#include "core/policy/upstream.h"

namespace sluice::policy {

// The tables of one config snapshot a plan reads.
struct PlanTables {
  const config::ConfigSet* config = nullptr;
  const Registry* registry = nullptr;
  const RouteTable* routes = nullptr;
  const DestinationRules* destinations = nullptr;
  config::OutboundTrafficPolicyMode mode = config::OutboundTrafficPolicyMode::kAllowAny;
};

// One header operation of a route, in the order Envoy applies them.
struct HeaderEdit {
  enum class Op : uint8_t { kRemove, kSet, kAdd };
  Op op = Op::kSet;
  std::string name;  // lower case
  std::string value;
};
// Istio's Headers.HeaderOperations of the chosen route, flattened: the
// destination's (route[].headers, Envoy's weighted cluster level) first,
// then the rule's (http[].headers, route level), so the rule's `set` wins;
// within each, remove, then set (replace), then add (append), as Envoy's
// header parser evaluates them.
using HeaderEdits = std::vector<HeaderEdit>;

// Applies `edits` to a header list (name, value) in place; names compare
// case-insensitively.
void apply_header_edits(const HeaderEdits& edits, std::vector<std::pair<std::string, std::string>>& fields);

// A route's retry policy for what comes back, as Envoy's router applies it
// (routing.h's RetryPolicy is Istio's translation of HTTPRetry): after a
// matching response or reset the request goes again, to another endpoint
// where there is one, until `attempts` tries were made.
struct RetryPlan {
  uint32_t attempts = 1;          // the first try and its retries; 1: none
  bool on_5xx = false;            // "5xx": any 5xx, or no response (reset, disconnect)
  bool on_gateway_error = false;  // "gateway-error": 502, 503, 504, or no response
  bool on_reset = false;          // "reset": no response
  bool on_connect_failure = false;  // "connect-failure": no connection (TCP, or its TLS handshake)
  bool on_retriable_4xx = false;  // "retriable-4xx": 409
  // "retriable-status-codes" (Istio's default: 503), a bit per code: a
  // plan is built per request, and a set of bits costs no allocation.
  // convert_retries keeps codes in 100..599 only, as Istio does.
  std::bitset<600> status_codes;
  // perTryTimeout (0: none): each try's own deadline for its response; the
  // route timeout spans every try. A try that runs out is retried when the
  // policy retries resets (5xx, gateway-error, reset: Envoy's "read
  // timeout"), else answered 504 UT.
  std::chrono::milliseconds per_try_timeout{0};
  // Envoy's back-off between tries: a random wait below base x 2^(retry-1),
  // capped at ten times base (retries.backoff; 25 ms unset).
  std::chrono::milliseconds backoff_base{25};
  // The wait before retry number `retry` (1, 2, ...) for a random `pick`.
  std::chrono::milliseconds backoff(uint32_t retry, uint64_t pick) const;

  // Whether a response with `status` is retried (attempts permitting).
  bool retries_status(uint32_t status) const;
  // Whether an upstream that closed or reset before any response is.
  bool retries_reset() const { return on_5xx || on_gateway_error || on_reset; }
  // Whether a failed connection (a refused connect, a failed upstream TLS
  // handshake) is: Envoy's wouldRetryFromReset takes it for these too.
  bool retries_connect() const { return attempts > 1 && (on_connect_failure || retries_reset()); }
  // Whether anything after the request was sent can be retried.
  bool retries_responses() const {
    return attempts > 1 && (retries_reset() || on_retriable_4xx || status_codes.any());
  }
};
// Istio's policy (null: retries off) as the data plane applies it.
RetryPlan retry_plan(const RetryPolicy* policy);

// VirtualService http[].fault for one request, as Envoy's fault filter
// (which runs before the router) samples it: the delay and the abort each
// with its own percentage, independently; a fault without `percentage`
// selects no request (Istio passes none to Envoy, whose default is 0 %).
// `pick` is the request's random draw (PlanRequest::pick).
struct FaultDecision {
  std::chrono::milliseconds delay{0};  // fixedDelay, when selected; 0: none
  uint32_t abort_status = 0;           // httpStatus, when selected; 0: none
};
FaultDecision sample_fault(const config::HTTPFaultInjection& fault, uint64_t pick);

// Envoy's response flags of one access log line, "UT,URX" style: `a` and `b`
// ("-" or empty for none) merged without repeats, in the order Envoy prints
// them.
std::string merge_response_flags(std::string_view a, std::string_view b);

// Where a forwarded connection goes and how.
struct ForwardPlan {
  std::string host;    // the destination host (FQDN), or empty for passthrough
  std::string subset;  // empty: none
  uint32_t port = 0;   // the cluster's port
  UpstreamPlan upstream;
  // The DestinationRule policy in force (for passthrough: defaults).
  EffectivePolicy policy;
  // Connect timeout, keep-alive, pool idle timeout and circuit breakers:
  // the mesh config's defaults under the policy's connectionPool.
  ConnectionSettings connection;
  // TLS origination: the mode, the SNI to send and the identities the
  // server must present (ISTIO_MUTUAL: the destination's SPIFFE id when
  // known; SIMPLE/MUTUAL: the DestinationRule's subjectAltNames).
  config::ClientTLSMode tls_mode = config::ClientTLSMode::kDisable;
  std::string sni;
  std::vector<std::string> expected_sans;
  // HTTP route extras the proxy applies to the request.
  std::string authority_rewrite;
  std::string path_rewrite;  // the whole new path (rewrite.uri applied); empty: unchanged
  HeaderEdits request_headers;
  HeaderEdits response_headers;
  std::optional<config::Duration> timeout;
  // Connection attempts (the first and its retries) before giving up with
  // UF: HTTP routes retry a connect failure per their retry policy (Istio's
  // default: 2 retries), TCP and TLS make one attempt per endpoint.
  uint32_t connect_attempts = 1;
  // HTTP: retries of a response or a reset (RetryPlan).
  RetryPlan retry;
  // loadBalancer.consistentHash: the request's key on the cluster's ring
  // (consistent_hash_key); nullopt: none (a random point), or no
  // consistentHash.
  std::optional<uint64_t> hash_key;

  bool rewrites_request() const {
    return !authority_rewrite.empty() || !path_rewrite.empty() || !request_headers.empty();
  }
};

struct RequestPlan {
  enum class Kind {
    kForward,     // connect per `forward`
    kLocalReply,  // answer `status` (HTTP) and close
    kClose,       // close with nothing forwarded (opaque traffic that may not pass)
  };
  Kind kind = Kind::kClose;
  // kLocalReply
  uint32_t status = 0;
  std::string location;  // redirects
  std::string body;      // direct responses
  // For the access log and metrics, as Envoy names them.
  std::string cluster;             // outbound|80|cnn|host, PassthroughCluster, BlackHoleCluster, ...
  std::string route_name;          // allow_any, block_all, the VirtualService route's name, ...
  std::string response_flags = "-";  // UH, NR, NC or "-"
  std::string response_code_details;  // direct_response, route_not_found, cluster_not_found
  ForwardPlan forward;
  // Fault injection: wait this long before carrying the plan out (flag DI).
  // An injected abort is a kLocalReply with flag FI ("fault filter abort").
  std::chrono::milliseconds fault_delay{0};
  // http[].mirror or mirrors[], each when this request is chosen (its
  // percentage, 100 % when unset): where copies go (kForward plans to the
  // mirrors' clusters; Envoy's shadow: Host gets "-shadow", the response is
  // dropped). Empty: no copy (no mirror, none chosen, or their clusters do
  // not exist).
  std::vector<std::shared_ptr<const RequestPlan>> mirrors;
  // Every step taken, one line each, for logs and `sluicectl explain`.
  std::vector<std::string> steps;
};
const char* to_string(RequestPlan::Kind k);

// What the connection carries, as far as the proxy could tell.
struct PlanRequest {
  Traffic traffic = Traffic::kTcp;
  decision::IpAddress original_ip;  // the sidecar's original destination; a gateway's listener address
  uint16_t port = 0;                // the original destination port / the Gateway server's port
  // HTTP: the Host without port, lower case; TLS: the SNI; TCP: empty.
  std::string host;
  // HTTP only (may be null for TLS/TCP): method, path, headers for routes.
  const HttpRequest* http = nullptr;
  uint64_t pick = 0;  // random, for weighted routes
  // The client's address, for consistentHash useSourceIp and a made-up
  // httpCookie; null when the proxy did not look it up.
  const decision::IpAddress* source = nullptr;
  uint16_t source_port = 0;
  // Fill RequestPlan::steps (sluicectl explain, the first request's debug
  // log). The data plane's per-request checks leave it off: the decision is
  // the same, without building the explanation's strings.
  bool explain = true;
};

// A sidecar's decision (Istio's outbound listeners and routes).
RequestPlan plan_sidecar(const PlanTables& tables, const PlanRequest& request);

// An egress/ingress gateway's decision for a connection (or request) the
// Gateway server `server` took. `request.traffic` is what is inside after
// any TLS termination (HTTP, or TCP for a terminated TLS server).
RequestPlan plan_gateway(const PlanTables& tables, const GatewayServerRef& server, const PlanRequest& request);

// The SPIFFE identity Istio's control plane would expect of a Kubernetes
// service's pods, for ISTIO_MUTUAL: known for the Istio egress gateway
// (spiffe://<td>/ns/<ns>/sa/istio-egressgateway-service-account); empty
// otherwise (any certificate from the mesh root is accepted, as Istio does
// for a service whose accounts it does not know).
std::string expected_service_identity(std::string_view host, std::string_view trust_domain);

}  // namespace sluice::policy
