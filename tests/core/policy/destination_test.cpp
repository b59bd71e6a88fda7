// DestinationRule semantics: rule lookup, Istio's policy precedence (top
// level, port level, subset, subset port level), missing subsets, TLS/SNI,
// and subset endpoint selection — with the walkthrough and its variants.
#include "core/policy/destination.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/config/loader.h"
#include "core/policy/routing.h"
#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using config::ClientTLSMode;
using config::SimpleLB;
using sluice::test_support::load_config;

constexpr const char* kGatewayHost = "istio-egressgateway.istio-system.svc.cluster.local";

config::ConfigSet load_dir(const std::string& rel) { return test_support::load_repo_paths({rel}); }

// ---------------------------------------------------------------------------
// The walkthrough and variants

// The data path's per-request resolution leaves the reason out; the policy
// is the same, a missing subset included.
TEST(WalkthroughPolicy, WithoutExplainThePolicyIsTheSameAndHasNoReason) {
  auto cfg = load_dir("configs/walkthrough");
  DestinationRules rules(cfg);
  for (const char* subset : {"cnn", "nope"}) {
    auto full = rules.resolve_policy(kGatewayHost, subset, 80);
    auto quiet = rules.resolve_policy(kGatewayHost, subset, 80, /*explain=*/false);
    EXPECT_FALSE(full.reason.empty());
    EXPECT_TRUE(quiet.reason.empty()) << quiet.reason.view();
    EXPECT_EQ(quiet.ok(), full.ok()) << full.reason.view();
    EXPECT_EQ(quiet.status, full.status);
    EXPECT_EQ(quiet.cluster_name, full.cluster_name);
    EXPECT_EQ(quiet.tls_mode, full.tls_mode);
    EXPECT_EQ(quiet.sni, full.sni);
    EXPECT_EQ(quiet.lb, full.lb);
  }
}

TEST(WalkthroughPolicy, GatewaySubsetOnPort80IsRoundRobinOverIstioMutual) {
  auto cfg = load_dir("configs/walkthrough");
  DestinationRules rules(cfg);
  auto p = rules.resolve_policy(kGatewayHost, "cnn", 80);
  ASSERT_TRUE(p.ok()) << p.reason.view();
  EXPECT_EQ(p.lb, SimpleLB::kRoundRobin);
  // The subset's port-80 entry replaced the subset policy: ROUND_ROBIN is the
  // default here, not the subset's own loadBalancer.
  EXPECT_EQ(p.load_balancer, nullptr);
  EXPECT_EQ(p.load_balancer_source, PolicySource::kDefault);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kIstioMutual);
  EXPECT_EQ(p.tls_source, PolicySource::kSubsetPort);
  EXPECT_EQ(p.sni, "edition.cnn.com");
  EXPECT_FALSE(p.auto_sni);
  EXPECT_EQ(p.cluster_name, "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local");
  ASSERT_NE(p.rule, nullptr);
  EXPECT_EQ(p.rule->meta.name, "egressgateway-for-cnn");
  EXPECT_EQ(p.subset_labels, nullptr) << "the cnn subset has no labels: every endpoint";
  EXPECT_NE(p.reason.view().find("tls from subset portLevelSettings (ISTIO_MUTUAL, sni edition.cnn.com)"),
            std::string::npos)
      << p.reason.view();
}

TEST(WalkthroughPolicy, SidecarRouteFeedsThePolicyLookup) {
  auto cfg = load_dir("configs/walkthrough");
  RouteTable table(cfg);
  DestinationRules rules(cfg);
  HttpRequest r;
  r.host = "edition.cnn.com";
  r.port = 80;
  auto route = table.route_http(RouteScope::sidecar(), r);
  ASSERT_EQ(route.outcome, RouteOutcome::kRoute);
  auto p = rules.resolve_policy(route.target);
  EXPECT_TRUE(p.ok());
  EXPECT_EQ(p.cluster_name, route.target.cluster_name());
  EXPECT_EQ(p.sni, "edition.cnn.com");
  // The gateway's next hop, edition.cnn.com:80, has no DestinationRule: plain.
  auto gw = table.route_http(RouteScope::gateway("istio-egressgateway", "default"), r);
  auto next = rules.resolve_policy(gw.target);
  EXPECT_TRUE(next.ok());
  EXPECT_EQ(next.rule, nullptr);
  EXPECT_EQ(next.tls_mode, ClientTLSMode::kDisable);
  EXPECT_EQ(next.lb, SimpleLB::kRoundRobin);
}

TEST(WalkthroughPolicy, OtherPortsOfTheSubsetKeepTheSubsetPolicy) {
  auto cfg = load_dir("configs/walkthrough");
  DestinationRules rules(cfg);
  auto p = rules.resolve_policy(kGatewayHost, "cnn", 443);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.lb, SimpleLB::kRoundRobin);
  EXPECT_EQ(p.load_balancer_source, PolicySource::kSubset);
  EXPECT_EQ(p.tls, nullptr);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kDisable);
}

TEST(VariantPolicy, TlsOriginationAtTheGateway) {
  auto cfg = load_dir("configs/variants/tls-origination-gateway");
  DestinationRules rules(cfg);
  auto p = rules.resolve_policy("edition.cnn.com", "", 443);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kSimple);
  EXPECT_EQ(p.tls_source, PolicySource::kTopLevelPort);
  EXPECT_EQ(p.sni, "edition.cnn.com");
  ASSERT_NE(p.tls, nullptr);
  EXPECT_EQ(p.tls->ca_certificates, "/etc/ssl/certs/ca-certificates.crt");
  // The port-443 entry replaced the top level whole, ROUND_ROBIN included
  // (which is also the default).
  EXPECT_EQ(p.load_balancer_source, PolicySource::kDefault);
  EXPECT_EQ(p.lb, SimpleLB::kRoundRobin);
  auto sidecar_hop = rules.resolve_policy(kGatewayHost, "cnn", 80);
  EXPECT_EQ(sidecar_hop.tls_mode, ClientTLSMode::kIstioMutual);
  EXPECT_EQ(sidecar_hop.sni, "edition.cnn.com");
}

TEST(VariantPolicy, TlsOriginationAtTheSidecarUsesAutoSni) {
  auto cfg = load_dir("configs/variants/tls-origination-sidecar");
  DestinationRules rules(cfg);
  auto p = rules.resolve_policy("edition.cnn.com", "", 80);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kSimple);
  EXPECT_EQ(p.sni, "");
  EXPECT_TRUE(p.auto_sni);
  EXPECT_EQ(p.cluster_name, "outbound|80||edition.cnn.com");
  EXPECT_EQ(rules.resolve_policy("edition.cnn.com", "", 443).tls_mode, ClientTLSMode::kDisable);
}

TEST(VariantPolicy, PassthroughAndWildcardSubsetsExistWithoutPolicy) {
  for (const char* dir : {"configs/variants/tls-passthrough-gateway", "configs/variants/wildcard-hosts"}) {
    auto cfg = load_dir(dir);
    DestinationRules rules(cfg);
    const char* subset = std::string(dir).find("wildcard") != std::string::npos ? "wikipedia" : "cnn";
    auto p = rules.resolve_policy(kGatewayHost, subset, 443);
    ASSERT_TRUE(p.ok()) << dir << ": " << p.reason.view();
    EXPECT_EQ(p.tls_mode, ClientTLSMode::kDisable);
    EXPECT_EQ(p.subset_labels, nullptr);
  }
}

// ---------------------------------------------------------------------------
// Precedence

const char* kReviews = R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 100}}
    outlierDetection: {consecutive5xxErrors: 7}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 9443}
      tls: {mode: SIMPLE, sni: reviews.example}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: LEAST_CONN}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      connectionPool: {http: {http2MaxRequests: 5}}
      portLevelSettings:
      - port: {number: 9080}
        loadBalancer: {simple: ROUND_ROBIN}
)";
constexpr const char* kReviewsHost = "reviews.bookinfo.svc.cluster.local";

class Precedence : public ::testing::Test {
 protected:
  Precedence() : cfg_(load_config({kReviews})), rules_(cfg_) {}
  const config::TrafficPolicy& top() const { return *cfg_.destination_rules[0].traffic_policy; }
  const config::TrafficPolicy& subset_policy(size_t i) const {
    return *cfg_.destination_rules[0].subsets[i].traffic_policy;
  }

  config::ConfigSet cfg_;
  DestinationRules rules_;
};

TEST_F(Precedence, TopLevelAppliesWithoutSubset) {
  auto p = rules_.resolve_policy(kReviewsHost, "", 9080);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.lb, SimpleLB::kRandom);
  EXPECT_EQ(p.load_balancer, &*top().load_balancer);
  EXPECT_EQ(p.load_balancer_source, PolicySource::kTopLevel);
  EXPECT_EQ(p.connection_pool, &*top().connection_pool);
  EXPECT_EQ(p.outlier_detection, &*top().outlier_detection);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kIstioMutual);
  EXPECT_EQ(p.sni, "outbound_.9080_._.reviews.bookinfo.svc.cluster.local");
  EXPECT_EQ(p.subset_labels, nullptr);
}

TEST_F(Precedence, TopLevelPortSettingsReplaceTheTopLevelWhole) {
  auto p = rules_.resolve_policy(kReviewsHost, "", 9443);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kSimple);
  EXPECT_EQ(p.tls_source, PolicySource::kTopLevelPort);
  EXPECT_EQ(p.sni, "reviews.example");
  // Not inherited from the top level: defaults.
  EXPECT_EQ(p.load_balancer, nullptr);
  EXPECT_EQ(p.lb, SimpleLB::kRoundRobin);
  EXPECT_EQ(p.connection_pool, nullptr);
  EXPECT_EQ(p.outlier_detection, nullptr);
  EXPECT_NE(p.reason.view().find("portLevelSettings[0] for port 9443 replaces the top level"), std::string::npos)
      << p.reason.view();
}

TEST_F(Precedence, SubsetWithoutPolicyInheritsTheTopLevel) {
  auto p = rules_.resolve_policy(kReviewsHost, "v1", 9080);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.lb, SimpleLB::kRandom);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kIstioMutual);
  EXPECT_EQ(p.sni, "outbound_.9080_.v1_.reviews.bookinfo.svc.cluster.local");
  ASSERT_NE(p.subset_labels, nullptr);
  EXPECT_EQ(p.subset_labels->at("version"), "v1");
}

TEST_F(Precedence, SubsetPolicyOverridesFieldByField) {
  auto p = rules_.resolve_policy(kReviewsHost, "v2", 9080);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.lb, SimpleLB::kLeastRequest) << "LEAST_CONN is LEAST_REQUEST";
  EXPECT_EQ(p.load_balancer, &*subset_policy(1).load_balancer);
  EXPECT_EQ(p.load_balancer_source, PolicySource::kSubset);
  EXPECT_EQ(p.connection_pool, &*top().connection_pool);
  EXPECT_EQ(p.connection_pool_source, PolicySource::kTopLevel);
  EXPECT_EQ(p.outlier_detection_source, PolicySource::kTopLevel);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kIstioMutual);
}

TEST_F(Precedence, SubsetPolicyOverridesTheTopLevelPortEntry) {
  auto p = rules_.resolve_policy(kReviewsHost, "v2", 9443);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.load_balancer_source, PolicySource::kSubset);
  EXPECT_EQ(p.lb, SimpleLB::kLeastRequest);
  EXPECT_EQ(p.tls_source, PolicySource::kTopLevelPort);
  EXPECT_EQ(p.sni, "reviews.example");
  EXPECT_EQ(p.connection_pool, nullptr) << "the top-level port entry replaced the pool with the default";
}

TEST_F(Precedence, SubsetPortSettingsSupplyAllFour) {
  auto p = rules_.resolve_policy(kReviewsHost, "v3", 9080);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.lb, SimpleLB::kRoundRobin);
  EXPECT_EQ(p.load_balancer_source, PolicySource::kSubsetPort);
  EXPECT_EQ(p.connection_pool, nullptr);
  EXPECT_EQ(p.outlier_detection, nullptr);
  EXPECT_EQ(p.tls, nullptr);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kDisable);
}

TEST_F(Precedence, SubsetPolicyOnAnotherPort) {
  auto p = rules_.resolve_policy(kReviewsHost, "v3", 8000);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.connection_pool, &*subset_policy(2).connection_pool);
  EXPECT_EQ(p.connection_pool_source, PolicySource::kSubset);
  EXPECT_EQ(p.lb, SimpleLB::kRandom);
  EXPECT_EQ(p.load_balancer_source, PolicySource::kTopLevel);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kIstioMutual);
}

TEST_F(Precedence, MissingSubsetIs503NC) {
  auto p = rules_.resolve_policy(kReviewsHost, "v9", 9080);
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.status, EffectivePolicy::Status::kSubsetNotFound);
  EXPECT_EQ(p.http_status(), 503u);
  EXPECT_EQ(p.response_flags(), "NC");
  EXPECT_NE(p.reason.view().find("has no subset \"v9\""), std::string::npos) << p.reason.view();
  // No rule at all for the host, but the route names a subset.
  auto none = rules_.resolve_policy("ratings.bookinfo.svc.cluster.local", "v1", 9080);
  EXPECT_FALSE(none.ok());
  EXPECT_EQ(none.response_flags(), "NC");
  EXPECT_NE(none.reason.view().find("no DestinationRule defines subset \"v1\""), std::string::npos)
      << none.reason.view();
  // And without a subset, no rule is just defaults.
  auto plain = rules_.resolve_policy("ratings.bookinfo.svc.cluster.local", "", 9080);
  EXPECT_TRUE(plain.ok());
  EXPECT_EQ(plain.rule, nullptr);
  EXPECT_EQ(plain.lb, SimpleLB::kRoundRobin);
}

// ---------------------------------------------------------------------------
// Lookup and merging

TEST(DestinationRuleLookup, ExactBeforeMostSpecificWildcard) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: everything}
spec:
  host: "*"
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: example}
spec:
  host: "*.example.com"
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: eu}
spec:
  host: "*.eu.example.com"
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.eu.example.com
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
)"});
  DestinationRules rules(cfg);
  auto name_for = [&](std::string_view host) {
    const auto* m = rules.find(host);
    return m ? m->rules.front()->meta.name : std::string("none");
  };
  EXPECT_EQ(name_for("api.eu.example.com"), "api");
  EXPECT_EQ(name_for("web.eu.example.com"), "eu");
  EXPECT_EQ(name_for("www.example.com"), "example");
  EXPECT_EQ(name_for("example.org"), "everything");
  EXPECT_EQ(rules.resolve_policy("web.eu.example.com", "", 443).lb, SimpleLB::kPassthrough);
  EXPECT_EQ(rules.resolve_policy("web.eu.example.com", "", 443).rule_host, "*.eu.example.com");
}

TEST(DestinationRuleLookup, ShortHostsAreQualifiedInTheRuleNamespace) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}]
)"});
  DestinationRules rules(cfg);
  EXPECT_NE(rules.find("ratings.bookinfo.svc.cluster.local"), nullptr);
  EXPECT_EQ(rules.find("ratings.default.svc.cluster.local"), nullptr);
  EXPECT_TRUE(rules.resolve_policy("ratings.bookinfo.svc.cluster.local", "v1", 9080).ok());
}

TEST(DestinationRuleLookup, RulesForOneHostMergeLikeIstio) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: subsets-only}
spec:
  host: merged.example.com
  subsets: [{name: a, labels: {track: a}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: with-policy}
spec:
  host: merged.example.com
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: a, labels: {track: shadowed}}
  - {name: b, labels: {track: b}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: late-policy}
spec:
  host: merged.example.com
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
)"});
  DestinationRules rules(cfg);
  auto a = rules.resolve_policy("merged.example.com", "a", 80);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.subset_labels->at("track"), "a") << "the first definition of a subset wins";
  EXPECT_EQ(a.subset_rule->meta.name, "subsets-only");
  EXPECT_EQ(a.lb, SimpleLB::kRandom) << "the first top-level trafficPolicy wins";
  EXPECT_EQ(a.rule->meta.name, "with-policy");
  auto b = rules.resolve_policy("merged.example.com", "b", 80);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.subset_rule->meta.name, "with-policy");
}

TEST(DestinationNames, ClusterAndSni) {
  EXPECT_EQ(subset_cluster_name("h.example.com", "", 443), "outbound|443||h.example.com");
  EXPECT_EQ(istio_mutual_sni("h.example.com", "v1", 80), "outbound_.80_.v1_.h.example.com");
}

// ---------------------------------------------------------------------------
// Endpoints

TEST(SubsetEndpoints, LabelsSelectEndpoints) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: pool}
spec:
  hosts: [pool.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 192.0.2.1, labels: {version: v1, zone: a}}
  - {address: 192.0.2.2, labels: {version: v2, zone: a}}
  - {address: 192.0.2.3, labels: {version: v1, zone: b}}
  - {address: 192.0.2.4}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: pool}
spec:
  host: pool.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1a, labels: {version: v1, zone: a}}
  - {name: all}
)"});
  DestinationRules rules(cfg);
  const auto& se = cfg.service_entries[0];
  std::vector<size_t> picked;
  auto select = [&](const char* subset) {
    auto p = rules.resolve_policy("pool.example.com", subset, 80);
    EXPECT_TRUE(p.ok()) << subset;
    select_endpoints(se, p.subset_labels, picked);
    return picked;
  };
  EXPECT_EQ(select("v1"), (std::vector<size_t>{0, 2}));
  EXPECT_EQ(select("v1a"), (std::vector<size_t>{0}));
  EXPECT_EQ(select("all"), (std::vector<size_t>{0, 1, 2, 3}));
  EXPECT_EQ(select(""), (std::vector<size_t>{0, 1, 2, 3}));
  EXPECT_TRUE(endpoint_in_subset(se.endpoints[3], nullptr));
}

// trafficPolicy.tunnel as Istio's tunnelingconfig.Apply takes it: without a
// subset the top level's, for every port (portLevelSettings carry none);
// with a subset that subset's own, and none when it has none (no fallback
// to the top level, unlike the other settings).
TEST(TunnelPolicy, TopLevelWithoutASubsetAndOnlyTheSubsetsWithOne) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: via-proxy, namespace: default}
spec:
  host: forward-proxy.corp.example
  trafficPolicy:
    tunnel: {targetHost: external.corp.example, targetPort: 443}
    portLevelSettings:
    - port: {number: 3128}
      tls: {mode: SIMPLE}
  subsets:
  - name: tcp
    trafficPolicy:
      tunnel: {protocol: CONNECT, targetHost: 192.0.2.7, targetPort: 5432}
  - name: inherits
)"});
  DestinationRules rules(cfg);
  const auto& top = *cfg.destination_rules[0].traffic_policy->tunnel;
  auto p = rules.resolve_policy("forward-proxy.corp.example", "", 3128);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.tunnel, &top) << "a port-level entry does not clear it";
  EXPECT_EQ(p.tunnel_source, PolicySource::kTopLevel);
  EXPECT_EQ(p.tls_mode, ClientTLSMode::kSimple);
  EXPECT_NE(p.reason.view().find("tunnel from trafficPolicy (CONNECT external.corp.example:443"), std::string::npos)
      << p.reason.view();
  auto s = rules.resolve_policy("forward-proxy.corp.example", "tcp", 3128);
  ASSERT_NE(s.tunnel, nullptr);
  EXPECT_EQ(s.tunnel->target_host, "192.0.2.7");
  EXPECT_EQ(s.tunnel->target_port, 5432u);
  EXPECT_EQ(s.tunnel_source, PolicySource::kSubset);
  EXPECT_EQ(rules.resolve_policy("forward-proxy.corp.example", "inherits", 8080).tunnel, nullptr);
  EXPECT_EQ(rules.resolve_policy("elsewhere.example", "", 443).tunnel, nullptr);
}

}  // namespace
}  // namespace sluice::policy
