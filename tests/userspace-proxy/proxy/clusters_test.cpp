// Process-wide clusters: one balancer per cluster shared by all workers,
// connection leases for maxConnections (503 UO beyond), outlier ejection
// from connect failures and 5xx responses.
#include "userspace-proxy/proxy/clusters.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/policy/destination.h"
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
  }  // leases released here
  EXPECT_NE(firsts[0], firsts[1]);
  EXPECT_EQ(firsts[0], firsts[2]);
  EXPECT_EQ(firsts[1], firsts[3]);
}

TEST(ClustersTest, MaxConnectionsOverflowsUntilALeaseIsReleased) {
  Clusters clusters;
  policy::EffectivePolicy p = policy_for(kRoundRobinMax2, "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80")};
  Clusters::Choice a = clusters.pick("c", p, eps, {1});
  Clusters::Choice b = clusters.pick("c", p, eps, {1});
  EXPECT_FALSE(a.overflow);
  EXPECT_FALSE(b.overflow);
  Clusters::Choice c = clusters.pick("c", p, eps, {1});
  EXPECT_TRUE(c.overflow);
  EXPECT_TRUE(c.order.empty());
  EXPECT_NE(c.reason.find("maxConnections 2"), std::string::npos) << c.reason;
  a.lease.reset();
  Clusters::Choice d = clusters.pick("c", p, eps, {1});
  EXPECT_FALSE(d.overflow);
  EXPECT_EQ(clusters.pick("other", p, eps, {1}).overflow, false) << "limits are per cluster";
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

TEST(ClustersTest, NoEndpointsIsNoHealthyUpstream) {
  Clusters clusters;
  policy::EffectivePolicy p = policy_for(kOutlier, "gw.example", 80);
  Clusters::Choice c = clusters.pick("c", p, {}, {});
  EXPECT_TRUE(c.no_healthy);
}

TEST(ClustersTest, ConcurrentPicksKeepLeaseCountsExact) {
  Clusters clusters;
  policy::EffectivePolicy p = policy_for(kRoundRobinMax2, "gw.example", 80);
  std::vector<engine::SocketAddress> eps{addr("10.0.0.1:80"), addr("10.0.0.2:80")};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        Clusters::Choice c = clusters.pick("c", p, eps, {1, 1});
        (void)c;
      }
    });
  }
  for (auto& t : threads) t.join();
  // Every lease was released: the limit of 2 is fully available again.
  Clusters::Choice a = clusters.pick("c", p, eps, {1, 1});
  Clusters::Choice b = clusters.pick("c", p, eps, {1, 1});
  EXPECT_FALSE(a.overflow);
  EXPECT_FALSE(b.overflow);
}

}  // namespace
}  // namespace sluice::proxy
