// Upstream selection per ServiceEntry resolution.
#include "core/policy/upstream.h"

#include <gtest/gtest.h>

#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using decision::IpAddress;

struct Fixture {
  config::LoadResult loaded;
  std::unique_ptr<Registry> registry;
  explicit Fixture(const char* yaml) {
    sluice::test_support::load_documents({yaml}, loaded);
    registry = std::make_unique<Registry>(loaded.config);
  }
};

TEST(Upstream, DnsResolvesTheMatchedHostNeverTheClientIp) {
  Fixture f(R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  ports:
  - {number: 80, name: http-port, protocol: HTTP, targetPort: 443}
  resolution: DNS
)");
  auto ref = f.registry->find_http(80, "edition.cnn.com");
  ASSERT_TRUE(ref);
  auto plan = plan_upstream(*ref, *IpAddress::parse("192.0.2.66"), 80, "edition.cnn.com");
  EXPECT_EQ(plan.kind, UpstreamPlan::Kind::kDns);
  ASSERT_EQ(plan.endpoints.size(), 1u);
  EXPECT_EQ(plan.endpoints[0].dns_name, "edition.cnn.com");
  EXPECT_FALSE(plan.endpoints[0].address);
  EXPECT_EQ(plan.endpoints[0].port, 443);  // targetPort
  EXPECT_TRUE(plan.error.empty());
}

TEST(Upstream, StaticEndpointsWithNamedPorts) {
  Fixture f(R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  addresses: [198.51.100.0/24]
  ports:
  - {number: 5432, name: pg, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 198.51.100.7
  - address: 198.51.100.8
    ports: {pg: 6432}
    weight: 3
)");
  auto ref = f.registry->find_tcp(*IpAddress::parse("198.51.100.99"), 5432);
  ASSERT_TRUE(ref);
  auto plan = plan_upstream(*ref, *IpAddress::parse("198.51.100.99"), 5432, "");
  EXPECT_EQ(plan.kind, UpstreamPlan::Kind::kStatic);
  ASSERT_EQ(plan.endpoints.size(), 2u);
  EXPECT_EQ(plan.endpoints[0].address->str(), "198.51.100.7");
  EXPECT_EQ(plan.endpoints[0].port, 5432);
  EXPECT_EQ(plan.endpoints[1].port, 6432);
  EXPECT_EQ(plan.endpoints[1].weight, 3u);
}

TEST(Upstream, NoneKeepsTheOriginalDestination) {
  Fixture f(R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: wikipedia}
spec:
  hosts: ["*.wikipedia.org"]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: NONE
)");
  auto ref = f.registry->find_tls(443, "en.wikipedia.org");
  ASSERT_TRUE(ref);
  auto plan = plan_upstream(*ref, *IpAddress::parse("::ffff:203.0.113.4"), 443, "en.wikipedia.org");
  EXPECT_EQ(plan.kind, UpstreamPlan::Kind::kOriginalDestination);
  ASSERT_EQ(plan.endpoints.size(), 1u);
  EXPECT_EQ(plan.endpoints[0].address->str(), "203.0.113.4");
  EXPECT_EQ(plan.endpoints[0].port, 443);
}

TEST(Upstream, WildcardDnsResolvesTheRequestedName) {
  Fixture f(R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: wiki}
spec:
  hosts: ["*.wikipedia.org"]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
)");
  auto ref = f.registry->find_tls(443, "de.wikipedia.org");
  ASSERT_TRUE(ref);
  auto plan = plan_upstream(*ref, *IpAddress::parse("203.0.113.4"), 443, "de.wikipedia.org");
  ASSERT_EQ(plan.endpoints.size(), 1u);
  EXPECT_EQ(plan.endpoints[0].dns_name, "de.wikipedia.org");
}

TEST(Upstream, DnsRoundRobinUsesOneAnswerAtATime) {
  Fixture f(R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS_ROUND_ROBIN
  endpoints:
  - address: a.api.example.com
  - address: 203.0.113.20
)");
  auto ref = f.registry->find_tls(443, "api.example.com");
  ASSERT_TRUE(ref);
  auto plan = plan_upstream(*ref, *IpAddress::parse("203.0.113.4"), 443, "api.example.com");
  EXPECT_TRUE(plan.one_answer_at_a_time);
  ASSERT_EQ(plan.endpoints.size(), 2u);
  EXPECT_EQ(plan.endpoints[0].dns_name, "a.api.example.com");
  EXPECT_EQ(plan.endpoints[1].address->str(), "203.0.113.20");
}

TEST(Upstream, PassthroughUnmapsTheOriginalDestination) {
  auto plan = plan_passthrough(*IpAddress::parse("::ffff:198.51.100.1"), 8080);
  EXPECT_EQ(plan.kind, UpstreamPlan::Kind::kOriginalDestination);
  EXPECT_EQ(plan.endpoints[0].address->str(), "198.51.100.1");
  EXPECT_EQ(plan.endpoints[0].port, 8080);
}

}  // namespace
}  // namespace sluice::policy
