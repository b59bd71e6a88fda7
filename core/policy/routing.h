// VirtualService routing as Istio compiles it into Envoy route tables, done
// per request/connection over an immutable config snapshot.
//
// Binding (which VirtualServices a proxy sees), per Istio's pilot:
//   - a VirtualService applies to the gateways it lists in `gateways`, `[mesh]`
//     when the list is empty; references are `mesh`, `ns/name`, `./name`,
//     `name` (in the VirtualService's namespace) or the legacy
//     `name.ns[.svc.cluster.local]`;
//   - a sidecar (RouteScope::sidecar(), gateway `mesh`) applies it only if
//     `mesh` is listed; a gateway (RouteScope::gateway(name, ns)) only if it
//     is listed — top-level list only, as Istio binds;
//   - inside a bound VirtualService, `match[].gateways` overrides the top-level
//     list for that match (HTTP: when set, sourceLabels are not consulted —
//     Istio's sourceMatchHTTP; TLS/TCP: all conditions AND — matchTLS/matchTCP).
//
// Host selection (Envoy's virtual-host domain precedence): exact domain, then
// the Kubernetes aliases of a *.svc.cluster.local host ("name.ns",
// "name.ns.svc"), then the longest matching `*.suffix`, then `*`. Short
// VirtualService hosts are qualified in the VirtualService's namespace. A
// VirtualService with no route applicable to this scope and port (every match
// names another gateway or port) produces no virtual host in Istio, so a less
// specific one (or the default route) takes over — so here too.
//   - sidecar: one VirtualService per host; duplicates are dropped, the first
//     loaded wins (Istio keeps the oldest; istioctl warns IST0109);
//   - gateway: the domains are the intersection of the VirtualService hosts
//     with the hosts of the Gateway's servers on the request port (the more
//     specific of the two, `ns/host` honoured); VirtualServices sharing the
//     chosen domain are merged in load order with their catch-all routes moved
//     last (Istio's CombineVHostRoutes). No Gateway resource: nothing binds.
//
// Inside the chosen VirtualService(s): http[] / tls[] / tcp[] are tried in
// order, each match block of a rule is one Envoy route (conditions inside a
// block AND, blocks OR, a rule without match blocks matches everything); the
// first route that matches wins. Routes exist but none matches → 404 NR.
//
// Regular expressions: Envoy compiles StringMatch.regex with RE2 and requires
// a full match. We use std::regex (ECMAScript) with regex_match, plus a leading
// "(?i)" turned into icase. Differences: RE2-only syntax (named groups
// (?P<n>), \pL, \z, inline flags other than a leading (?i)) does not compile
// here and such a condition never matches (config validation reports it);
// ECMAScript lookaround/backreferences compile here though RE2 refuses them
// (validation rejects them first). With libstdc++ the patterns run on its
// breadth-first executor (the documented `__polynomial` extension): no
// recursion per subject character, polynomial time — RE2's guarantees, where
// the default backtracking executor needs ~0.5 KiB of stack per character
// and exponential time on patterns like (a*)*b. Subjects longer than
// kMaxRegexSubjectBytes (64 KiB, above Envoy's default 60 KiB header limit;
// 1 KiB with other standard libraries, which backtrack) never match; the
// trace says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config/model.h"
#include "core/decision/ip_address.h"

namespace sluice::policy {

// ---------------------------------------------------------------------------
// Reasons

// A human-readable explanation carried by every decision, stored inline so
// that a per-request decision costs no heap allocation. Text beyond the
// capacity is cut and ends with "...".
class ReasonText {
 public:
  static constexpr size_t kCapacity = 383;

  ReasonText() = default;
  ReasonText(const ReasonText& other);
  ReasonText& operator=(const ReasonText& other);

  ReasonText& append(std::string_view text);
  ReasonText& append(uint64_t number);
  ReasonText& appendf(const char* format, ...) __attribute__((format(printf, 2, 3)));
  void clear() { len_ = 0; truncated_ = false; }
  // Off: appends do nothing (a per-request decision nobody will explain
  // skips the formatting). Callers test on() before building arguments
  // that cost something themselves.
  void off() { clear(); off_ = true; }
  bool on() const { return !off_; }

  std::string_view view() const { return {buf_, len_}; }
  std::string str() const { return std::string(view()); }
  bool empty() const { return len_ == 0; }
  bool truncated() const { return truncated_; }

 private:
  void mark_truncated();

  char buf_[kCapacity + 1];
  uint16_t len_ = 0;
  bool truncated_ = false;
  bool off_ = false;
};

// Optional step-by-step account of a routing decision (`sluicectl explain`):
// one line per candidate considered. The data path passes nullptr and pays
// nothing for it.
using RouteTrace = std::vector<std::string>;

// ---------------------------------------------------------------------------
// Who routes

class RouteScope {
 public:
  // A sidecar (Istio's reserved gateway name "mesh").
  static RouteScope sidecar();
  // An Istio gateway deployment serving the Gateway resource `ns/name`.
  static RouteScope gateway(std::string name, std::string ns);

  // The labels and namespace of the workload that sends the traffic (a
  // gateway: its own, as Istio's sourceMatchHTTP takes the proxy's), for
  // sourceLabels / sourceNamespace matches. Without them (a node proxy that
  // serves many workloads) a match that names source labels or a source
  // namespace never applies. Not copied: they must outlive the scope (they
  // live in the config snapshot).
  RouteScope& with_source(const config::Labels& labels, std::string_view ns);
  RouteScope& with_source(config::Labels&& labels, std::string_view ns) = delete;  // would dangle

  bool is_sidecar() const { return key_ == "mesh"; }
  const std::string& gateway_name() const { return name_; }
  const std::string& gateway_namespace() const { return namespace_; }
  // What VirtualService gateway references resolve to: "mesh" or "ns/name".
  const std::string& key() const { return key_; }
  const config::Labels* source_labels() const { return source_labels_; }
  std::string_view source_namespace() const { return source_namespace_; }
  // "sidecar (gateway mesh)" or "gateway istio-system/istio-egressgateway".
  std::string describe() const;

 private:
  std::string key_;
  std::string name_;
  std::string namespace_;
  const config::Labels* source_labels_ = nullptr;
  std::string_view source_namespace_;
};

// ---------------------------------------------------------------------------
// Requests

// One request header. Names compare case-insensitively; several fields with
// the same name are matched as Envoy does, joined with ",".
struct HeaderField {
  std::string_view name;
  std::string_view value;
};
using HeaderList = std::span<const HeaderField>;

// ASCII case-insensitive comparison, for header names.
bool header_name_equals(std::string_view a, std::string_view b);
// The first value of query parameter `name` in `path` (raw, not
// percent-decoded, as Envoy reads it; "" for a key without '='); nullopt
// when there is none.
std::optional<std::string_view> query_parameter(std::string_view path, std::string_view name);

struct HttpRequest;
// The value of header `name` (case-insensitive; `:authority`/`host`,
// `:method`, `:path`, `:scheme` from the request line), several fields of
// one name comma-joined into `joined`, as Envoy's header matchers read it.
std::optional<std::string_view> request_header(const HttpRequest& req, std::string_view name, std::string& joined);

struct HttpRequest {
  std::string_view host;       // Host / :authority without port, lower case
  std::string_view authority;  // Host header as received (may carry a port); empty: `host`
  // The listener port: the original destination port at a sidecar, the
  // Gateway server's port at a gateway. Also the port `match.port` compares.
  uint32_t port = 0;
  std::string_view method = "GET";
  std::string_view path = "/";  // request target in origin form, query included
  std::string_view scheme = "http";
  HeaderList headers;
  // A uniformly distributed random number; `pick % total weight` chooses
  // among weighted destinations.
  uint64_t pick = 0;
};

// ---------------------------------------------------------------------------
// Decisions

enum class RouteOutcome {
  kNoVirtualService,  // nothing bound for this host: the host's default route
                      // (a gateway has none and answers 404 NR)
  kRoute,             // forward to `target`
  kRedirect,          // answer `status` with `location`
  kDirectResponse,    // answer `status` with `body`
  kNoRouteMatched,    // a VirtualService applies but no route matched: 404 NR
};
const char* to_string(RouteOutcome o);

// Where a route sends traffic. Views point into the RouteTable.
struct RouteTarget {
  enum class PortSource {
    kDestination,        // destination.port.number
    kServiceSinglePort,  // unset, and the ServiceEntry for the host has one port
    kRequest,            // unset: the listener port
  };

  std::string_view host;    // FQDN: short names qualified in the VirtualService's namespace
  std::string_view subset;  // empty: none
  uint32_t port = 0;
  PortSource port_source = PortSource::kRequest;

  // "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local"
  std::string cluster_name() const;
};
const char* to_string(RouteTarget::PortSource s);

// Istio's translation of HTTPRetry (pilot retry.ConvertPolicy): no `retries`
// → the default policy (2 retries on connect-failure, refused-stream,
// unavailable, cancelled, retriable-status-codes with 503); attempts <= 0 →
// no retries (RouteDecision::retries is nullptr); otherwise the default with
// the attempts, retryOn (numbers become retriable status codes) and
// perTryTimeout given.
struct RetryPolicy {
  uint32_t num_retries = 2;
  std::string retry_on = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
  std::vector<uint32_t> retriable_status_codes{503};
  std::optional<config::Duration> per_try_timeout;
  std::optional<config::Duration> backoff;  // retries.backoff: the back-off's base interval
  bool is_default = true;  // the VirtualService said nothing about retries
};

struct HttpRouteDecision {
  static constexpr size_t kNone = static_cast<size_t>(-1);

  RouteOutcome outcome = RouteOutcome::kNoVirtualService;
  const config::VirtualService* virtual_service = nullptr;
  std::string_view matched_domain;  // the virtual host domain the request host matched
  size_t rule_index = kNone;        // http[rule_index]
  size_t match_index = kNone;       // its match[match_index]; kNone: rule without match
  // Istio's route name: http[].name, plus "." + match[].name when that is set.
  std::string_view route_name;

  // kRoute
  RouteTarget target;
  const config::HTTPRouteDestination* destination = nullptr;
  size_t destination_index = kNone;
  std::string_view authority_rewrite;   // rewrite.authority; empty: unchanged
  std::string_view uri_prefix_rewrite;  // rewrite.uri; empty: unchanged
  size_t rewrite_replaces = 0;          // bytes of the path rewrite.uri replaces
  // rewrite.uriRegexRewrite (Envoy's regex_rewrite): its compiled match
  // (owned by the table) and RE2-style rewrite (\1 a group).
  const std::regex* uri_regex = nullptr;
  std::string_view uri_regex_rewrite;
  std::optional<config::Duration> timeout;  // unset: no route timeout (Istio's default)
  const RetryPolicy* retries = nullptr;     // nullptr: retries disabled
  const config::Headers* route_headers = nullptr;        // http[].headers
  const config::Headers* destination_headers = nullptr;  // route[].headers
  const config::HTTPFaultInjection* fault = nullptr;
  // kRoute with http[].mirror or mirrors[]: where copies go, and each one's
  // share of requests (unset: all).
  struct Mirror {
    RouteTarget target;
    std::optional<config::Percent> percentage;
  };
  std::vector<Mirror> mirrors;

  // kRedirect, kDirectResponse, kNoRouteMatched (404)
  uint32_t status = 0;
  std::string location;                  // kRedirect
  std::optional<std::string_view> body;  // kDirectResponse

  // For the access log: "NR" for kNoRouteMatched, "-" otherwise.
  std::string_view response_flags = "-";
  ReasonText reason;

  bool has_path_rewrite() const { return !uri_prefix_rewrite.empty() || uri_regex != nullptr; }
  // The path to send upstream, with rewrite.uri applied as Envoy's
  // prefix_rewrite does: the matched prefix (the whole path for exact and
  // regex matches, "/" for a rule without uri match) is replaced; the query
  // string is kept. With uriRegexRewrite, every match of its pattern in the
  // path (the query string excluded, and kept) is replaced.
  std::string rewritten_path(std::string_view request_path) const;
};

// TLS (by SNI) and opaque TCP routing: route, no VirtualService, or no match
// (Envoy finds no filter chain: the connection is closed).
struct L4RouteDecision {
  static constexpr size_t kNone = static_cast<size_t>(-1);

  RouteOutcome outcome = RouteOutcome::kNoVirtualService;  // never redirect/direct response
  const config::VirtualService* virtual_service = nullptr;
  std::string_view matched_domain;
  size_t rule_index = kNone;   // tls[rule_index] or tcp[rule_index]
  size_t match_index = kNone;
  RouteTarget target;
  size_t destination_index = kNone;
  ReasonText reason;
};

// ---------------------------------------------------------------------------
// The table

class RouteTable {
 public:
  // Subjects longer than this are never matched by a regex (see above).
#if defined(__GLIBCXX__)
  static constexpr size_t kMaxRegexSubjectBytes = 64 * 1024;
#else
  static constexpr size_t kMaxRegexSubjectBytes = 1024;
#endif

  // Keeps pointers into `config`, which must outlive the table (both belong
  // to the same immutable snapshot). Never throws on odd config: invalid
  // regexes and subnets become conditions that never match, noted in traces.
  explicit RouteTable(const config::ConfigSet& config);
  ~RouteTable();
  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;

  // explain = false (and no trace): the decision's reason stays empty.
  HttpRouteDecision route_http(const RouteScope& scope, const HttpRequest& request,
                               RouteTrace* trace = nullptr, bool explain = true) const;

  // `sni` lower case; `destination` the original destination address.
  L4RouteDecision route_tls(const RouteScope& scope, std::string_view sni, uint32_t port,
                            const decision::IpAddress& destination, uint64_t pick,
                            RouteTrace* trace = nullptr) const;

  // Opaque TCP has no name to pick a VirtualService by. `host`, when the
  // caller knows it (the ServiceEntry host the registry matched for this
  // IP:port), selects VirtualServices by host as for HTTP; empty, every bound
  // VirtualService with tcp routes is tried in load order.
  L4RouteDecision route_tcp(const RouteScope& scope, uint32_t port,
                            const decision::IpAddress& destination, uint64_t pick,
                            std::string_view host = {}, RouteTrace* trace = nullptr) const;

  struct Compiled;  // implementation detail, defined in routing.cpp

 private:
  std::unique_ptr<Compiled> compiled_;
};

// Envoy's redirect Location (Http::Utility::newUri with Istio's
// ApplyRedirect): scheme = redirect.scheme or the request's; host =
// redirect.authority verbatim, else the request's authority with its port
// dropped when a new port is set or the scheme changes away from the port's
// default; port = redirect.port unless it is the new scheme's default;
// path = redirect.uri (the request's query string kept unless uri has one),
// else the request's path. Exposed for tests and `sluicectl explain`.
std::string build_redirect_location(const config::HTTPRedirect& redirect, const HttpRequest& request);

}  // namespace sluice::policy
