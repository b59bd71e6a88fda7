// Process-wide clusters: one balancer per cluster shared by all workers,
// a circuit breaker per cluster (circuit_breaker_test has its rules), outlier ejection
// from connect failures and 5xx responses.
#include "userspace-proxy/proxy/clusters.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "core/policy/destination.h"
#include "core/policy/load_balancer.h"
#include "tests/support/config_fixtures.h"

namespace sluice::proxy {
namespace {

engine::SocketAddress addr(const char* text) {
  engine::SocketAddress a;
  EXPECT_TRUE(engine::SocketAddress::parse(text, &a)) << text;
  return a;
}

policy::EffectivePolicy policy_for(const char* dr_yaml, const char* host, uint32_t port) {
  static std::vector<std::unique_ptr<config::ConfigSet>> keep;  // EffectivePolicy points into the config
  keep.push_back(std::make_unique<config::ConfigSet>(test_support::load_config({dr_yaml})));
  static std::vector<std::unique_ptr<policy::DestinationRules>> rules;
  rules.push_back(std::make_unique<policy::DestinationRules>(*keep.back()));
  return rules.back()->resolve_policy(host, "", port);
}

constexpr const char* kRoundRobinMax2 = R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: gw}
spec:
  host: gw.example
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 2}}
)";

constexpr const char* kOutlier = R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: gw}
spec:
  host: gw.example
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
)";

TEST(ClustersTest, RoundRobinIsSharedAcrossCallersAndOrdersFallbacks) {
  Clusters clusters;
  policy::EffectivePolicy p = policy_for(kRoundRobinMax2, "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80"), addr("10.0.0.2:80")};
  std::vector<std::string> firsts;
  for (int i = 0; i < 4; ++i) {
    Clusters::Choice c = clusters.pick("outbound|80||gw.example", p, eps, {1, 1});
    ASSERT_EQ(c.order.size(), 2u);
    EXPECT_NE(c.order[0].to_string(), c.order[1].to_string()) << "the other endpoint is the fallback";
    firsts.push_back(c.order[0].to_string());
  }
  EXPECT_NE(firsts[0], firsts[1]);
  EXPECT_EQ(firsts[0], firsts[2]);
  EXPECT_EQ(firsts[1], firsts[3]);
}

TEST(ClustersTest, EachClusterHasItsOwnCircuitBreaker) {
  Clusters clusters;
  std::shared_ptr<CircuitBreaker> a = clusters.breaker("a");
  EXPECT_EQ(clusters.breaker("a"), a);
  EXPECT_NE(clusters.breaker("b"), a);
}

TEST(ClustersTest, ConsecutiveFailuresEjectAnEndpoint) {
  Clusters clusters;
  policy::EffectivePolicy p = policy_for(kOutlier, "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80"), addr("10.0.0.2:80")};
  clusters.pick("c", p, eps, {1, 1});  // builds the balancer
  clusters.report_response("c", addr("10.0.0.1:80"), 503);
  clusters.report_connect("c", addr("10.0.0.1:80"), false);
  for (int i = 0; i < 6; ++i) {
    Clusters::Choice c = clusters.pick("c", p, eps, {1, 1});
    ASSERT_FALSE(c.order.empty()) << c.reason;
    EXPECT_EQ(c.order[0].to_string(), "10.0.0.2:80") << "10.0.0.1 is ejected: " << c.reason;
  }
}

// A reload that adds outlierDetection (or changes it) takes effect for the
// cluster at once, its endpoints unchanged.
TEST(ClustersTest, AReloadedOutlierPolicyAppliesToTheSameEndpoints) {
  Clusters clusters;
  policy::EffectivePolicy plain = policy_for(kRoundRobinMax2, "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80"), addr("10.0.0.2:80")};
  (void)clusters.pick("c", plain, eps, {1, 1});
  policy::EffectivePolicy guarded = policy_for(kOutlier, "gw.example", 80);
  (void)clusters.pick("c", guarded, eps, {1, 1});
  clusters.report_response("c", addr("10.0.0.1:80"), 503);
  clusters.report_response("c", addr("10.0.0.1:80"), 503);
  for (int i = 0; i < 4; ++i) {
    Clusters::Choice c = clusters.pick("c", guarded, eps, {1, 1});
    ASSERT_FALSE(c.order.empty()) << c.reason;
    EXPECT_EQ(c.order[0].to_string(), "10.0.0.2:80") << "ejected under the reloaded policy";
  }
}

// Connections decided under the old config (generation 1) and new ones
// (generation 2) at once: the old ones use the newer balancer, which keeps
// its ejection, instead of rebuilding it back and forth.
TEST(ClustersTest, AnOlderConfigsPickDoesNotUndoTheNewerBalancer) {
  Clusters clusters;
  policy::EffectivePolicy old_policy = policy_for(kRoundRobinMax2, "gw.example", 80);
  policy::EffectivePolicy new_policy = policy_for(kOutlier, "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80"), addr("10.0.0.2:80")};
  (void)clusters.pick("c", old_policy, eps, {1, 1}, std::nullopt, 1);
  (void)clusters.pick("c", new_policy, eps, {1, 1}, std::nullopt, 2);
  clusters.report_response("c", addr("10.0.0.1:80"), 503);
  clusters.report_response("c", addr("10.0.0.1:80"), 503);
  for (int i = 0; i < 4; ++i) {
    const uint64_t gen = i % 2 == 0 ? 1 : 2;
    Clusters::Choice c = clusters.pick("c", gen == 1 ? old_policy : new_policy, eps, {1, 1}, std::nullopt, gen);
    ASSERT_FALSE(c.order.empty()) << c.reason;
    EXPECT_EQ(c.order[0].to_string(), "10.0.0.2:80") << "generation " << gen;
  }
}

// minHealthPercent alone changing (the same outlier settings) is a new
// balancer too.
TEST(ClustersTest, AReloadedPanicThresholdApplies) {
  Clusters clusters;
  policy::EffectivePolicy low = policy_for(R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: gw}
spec:
  host: gw.example
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100}
)", "gw.example", 80);
  policy::EffectivePolicy none = policy_for(R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: gw}
spec:
  host: gw.example
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100, minHealthPercent: 100}
)", "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80"), addr("10.0.0.2:80")};
  (void)clusters.pick("c", low, eps, {1, 1});
  clusters.report_response("c", addr("10.0.0.1:80"), 503);
  // One of two ejected: 50 % available is not below Envoy's 50 %: no panic.
  for (int i = 0; i < 2; ++i) EXPECT_EQ(clusters.pick("c", low, eps, {1, 1}).order[0].to_string(), "10.0.0.2:80");
  // Reloaded with minHealthPercent 100 (a fresh detector): eject again, and
  // now 50 % is below the threshold: both endpoints take turns.
  (void)clusters.pick("c", none, eps, {1, 1});
  clusters.report_response("c", addr("10.0.0.1:80"), 503);
  std::set<std::string> seen;
  for (int i = 0; i < 4; ++i) seen.insert(clusters.pick("c", none, eps, {1, 1}).order[0].to_string());
  EXPECT_EQ(seen.size(), 2u) << "panic routing over both";
}

constexpr const char* kRingOutlier = R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: gw}
spec:
  host: gw.example
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100}
)";

// consistentHash: the same key goes to the same endpoint whatever order the
// endpoints come in (DNS), and an ejected home is neither the first connect
// nor an early fallback.
TEST(ClustersTest, RingHashIgnoresEndpointOrderAndPassesOverAnEjectedHome) {
  Clusters clusters;
  policy::EffectivePolicy p = policy_for(kRingOutlier, "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80"), addr("10.0.0.2:80"), addr("10.0.0.3:80")};
  std::vector<engine::SocketAddress> reversed(eps.rbegin(), eps.rend());
  const uint64_t key = policy::stable_hash("alice");
  Clusters::Choice a = clusters.pick("c", p, eps, {1, 1, 1}, key);
  ASSERT_EQ(a.order.size(), 3u) << a.reason;
  const engine::SocketAddress home = a.order[0];
  Clusters::Choice b = clusters.pick("c", p, reversed, {1, 1, 1}, key);
  ASSERT_EQ(b.order.size(), 3u);
  EXPECT_EQ(b.order[0], home);
  EXPECT_EQ(b.order, a.order) << "the same fallbacks too";
  std::optional<engine::SocketAddress> peek = clusters.ring_endpoint("c", key);
  ASSERT_TRUE(peek.has_value());
  EXPECT_EQ(*peek, home);
  clusters.report_response("c", home, 503);  // ejected
  Clusters::Choice c = clusters.pick("c", p, eps, {1, 1, 1}, key);
  ASSERT_EQ(c.order.size(), 3u);
  EXPECT_NE(c.order[0], home);
  EXPECT_EQ(c.order[2], home) << "tried last";
  EXPECT_EQ(*clusters.ring_endpoint("c", key), c.order[0]);
}

TEST(ClustersTest, NoEndpointsIsNoHealthyUpstream) {
  Clusters clusters;
  policy::EffectivePolicy p = policy_for(kOutlier, "gw.example", 80);
  Clusters::Choice c = clusters.pick("c", p, {}, {});
  EXPECT_TRUE(c.no_healthy);
}

}  // namespace
}  // namespace sluice::proxy
