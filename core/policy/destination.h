// DestinationRule semantics: which rule applies to a destination host, the
// traffic policy in force for (host, subset, port), and the endpoints a subset
// selects — as Istio's pilot builds Envoy clusters.
//
// Rule lookup (Istio's MostSpecificHostMatch): the rule whose host equals the
// destination host, else the most specific wildcard (`*.example.com` before
// `*.com` before `*`). Short rule hosts are qualified in the rule's namespace
// ("reviews" in "default" → reviews.default.svc.cluster.local). Several rules
// for one host merge as Istio merges them: subsets are concatenated (the first
// rule naming a subset wins), the top-level trafficPolicy is the first one
// set, in load order. In a proxy's view (config.view_namespace, made by
// policy::scoped_config, which applies exportTo and workloadSelector) a
// destination's rules come from the first namespace in Istio's order that
// has a match (find); over a whole tree every rule applies everywhere.
//
// Policy precedence (Istio's MergeSubsetTrafficPolicy):
//   1. the rule's top-level trafficPolicy;
//   2. a top-level portLevelSettings entry for the port REPLACES it whole
//      (fields it omits fall back to defaults, not to the top level);
//   3. for a route naming a subset, the subset's trafficPolicy overrides
//      field by field (loadBalancer, connectionPool, outlierDetection, tls);
//      a portLevelSettings entry for the port inside the subset's policy
//      supplies all four (omitted ones become defaults).
// Subset policies apply only to routes that name the subset. A subset that
// does not exist (the rule lacks it, or no rule exists) has no cluster in
// Envoy: the request gets 503 with flag NC.
//
// TLS: ISTIO_MUTUAL sends `tls.sni`, else `outbound_.<port>_.<subset>_.<host>`.
// SIMPLE/MUTUAL without `sni` use Envoy's auto_sni as current Istio sets it:
// an HTTP request's Host becomes the SNI (opaque TCP sends none).
// Load balancing left unset is ROUND_ROBIN, Envoy's default that Istio 1.4
// (the walkthrough's era) left in place; current Istio defaults to
// LEAST_REQUEST. The walkthrough depends on it: its `cnn` subset says
// ROUND_ROBIN, but the subset's port-80 entry replaces the subset policy and
// leaves loadBalancer unset. LEAST_CONN is LEAST_REQUEST in both eras.
// (SNI, by contrast, follows current Istio's auto_sni: the shipped
// tls-origination-sidecar variant relies on it.)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config/model.h"
#include "core/policy/routing.h"

namespace sluice::policy {

// Which level of a DestinationRule supplied a setting.
enum class PolicySource {
  kDefault,       // nothing set: Istio's/Envoy's default
  kTopLevel,      // trafficPolicy
  kTopLevelPort,  // trafficPolicy.portLevelSettings[port]
  kSubset,        // subsets[].trafficPolicy
  kSubsetPort,    // subsets[].trafficPolicy.portLevelSettings[port]
};
const char* to_string(PolicySource s);

struct EffectivePolicy {
  enum class Status {
    kOk,
    kSubsetNotFound,  // 503 NC
  };

  Status status = Status::kOk;
  std::string host;
  std::string subset;
  uint32_t port = 0;
  // outbound|<port>|<subset>|<host>
  std::string cluster_name;

  // The rule(s) in force; nullptr: no DestinationRule for the host.
  const config::DestinationRule* rule = nullptr;         // supplied the top-level policy (or first for the host)
  std::string_view rule_host;                            // the (qualified) host it matched by
  const config::Subset* subset_definition = nullptr;     // the named subset
  const config::DestinationRule* subset_rule = nullptr;  // the rule that defines it

  // Each setting, nullptr when left at its default, with where it came from.
  const config::LoadBalancerSettings* load_balancer = nullptr;
  PolicySource load_balancer_source = PolicySource::kDefault;
  const config::ConnectionPoolSettings* connection_pool = nullptr;
  PolicySource connection_pool_source = PolicySource::kDefault;
  const config::OutlierDetection* outlier_detection = nullptr;
  PolicySource outlier_detection_source = PolicySource::kDefault;
  const config::ClientTLSSettings* tls = nullptr;
  PolicySource tls_source = PolicySource::kDefault;
  // trafficPolicy.tunnel as Istio applies it (tunnelingconfig.Apply): the
  // subset's for a route to a subset (none if it has none), else the top
  // level's; for every port (portLevelSettings carry none).
  const config::TunnelSettings* tunnel = nullptr;
  PolicySource tunnel_source = PolicySource::kDefault;

  // Derived
  config::SimpleLB lb = config::SimpleLB::kRoundRobin;  // never kUnspecified or kLeastConn
  bool consistent_hash = false;  // loadBalancer.consistentHash: RING_HASH over the request's key, not `lb`
  config::ClientTLSMode tls_mode = config::ClientTLSMode::kDisable;
  std::string sni;        // the SNI to send; empty with auto_sni or without TLS
  bool auto_sni = false;  // SIMPLE/MUTUAL without sni: SNI from the request's Host
  // The subset's labels; nullptr: every endpoint (no subset, or no labels).
  const config::Labels* subset_labels = nullptr;

  ReasonText reason;

  bool ok() const { return status == Status::kOk; }
  // What the proxy answers when !ok(): 503 with response flag NC.
  uint32_t http_status() const { return ok() ? 0 : 503; }
  std::string_view response_flags() const { return ok() ? "-" : "NC"; }
};

class DestinationRules {
 public:
  // Keeps pointers into `config`, which must outlive this index.
  explicit DestinationRules(const config::ConfigSet& config);

  // Every rule for one host, merged as Istio merges them.
  struct Merged {
    std::string host;  // qualified, lower case
    std::vector<const config::DestinationRule*> rules;  // load order
    const config::DestinationRule* policy_rule = nullptr;  // first with a trafficPolicy
    struct NamedSubset {
      const config::Subset* subset;
      const config::DestinationRule* rule;
    };
    std::vector<NamedSubset> subsets;  // first definition of each name
  };

  // `host`: a qualified name, lower case. nullptr: no rule.
  const Merged* find(std::string_view host) const;

  // The policy for traffic to `host` (qualified, lower case), `subset` (empty:
  // none) and `port` (the cluster's port: the route's destination port).
  // explain = false: the policy's reason stays empty (per-request decisions).
  EffectivePolicy resolve_policy(std::string_view host, std::string_view subset, uint32_t port,
                                 bool explain = true) const;
  EffectivePolicy resolve_policy(const RouteTarget& target, bool explain = true) const {
    return resolve_policy(target.host, target.subset, target.port, explain);
  }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Rules by host: exact, then the most specific wildcard.
  struct Index {
    std::vector<Merged> merged;
    std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> exact;
    std::vector<size_t> wildcards;  // most specific first
    void add(const config::DestinationRule& dr);
    void finish();
    const Merged* find(std::string_view host) const;
  };

  // A proxy's view (config.view_namespace set): Istio's order, tier by
  // tier, the first tier with a matching rule deciding: the proxy's
  // namespace (a root-namespace proxy: its private rules only), the
  // namespace of the service (the ServiceEntry declaring the host, the
  // proxy's own first; a Kubernetes FQDN's namespace), the root namespace.
  // Unscoped (sluicectl over a whole tree): every rule in one tier.
  Index all_;
  bool tiered_ = false;
  std::string proxy_ns_;
  std::string root_ns_;
  std::unordered_map<std::string, Index> by_ns_;  // namespace -> its rules (root: exported ones)
  Index root_private_;                            // a root-namespace proxy's own private rules
  std::unordered_map<std::string, std::string, StringHash, std::equal_to<>> service_ns_;  // host -> namespace
};

// Envoy's cluster name for a subset: "outbound|80|cnn|host".
std::string subset_cluster_name(std::string_view host, std::string_view subset, uint32_t port);
// Istio's default ISTIO_MUTUAL SNI: "outbound_.80_.cnn_.host".
std::string istio_mutual_sni(std::string_view host, std::string_view subset, uint32_t port);

// Whether a ServiceEntry endpoint belongs to a subset: every subset label is
// on the endpoint. No labels (nullptr or empty) selects every endpoint.
bool endpoint_in_subset(const config::WorkloadEntry& endpoint, const config::Labels* subset_labels);
// Indexes into entry.endpoints of the subset's endpoints, into `out`
// (cleared first; reuse it to avoid allocating).
void select_endpoints(const config::ServiceEntry& entry, const config::Labels* subset_labels,
                      std::vector<size_t>& out);

}  // namespace sluice::policy
