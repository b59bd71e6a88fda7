// Registry lookups: which ServiceEntry (if any) a Host, an SNI or an IP:port
// reaches, with Envoy's precedence (exact before wildcard, longest wildcard).
#include "core/policy/registry.h"

#include <gtest/gtest.h>

#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using decision::IpAddress;


using sluice::test_support::kCnnServiceEntry;
using sluice::test_support::load_config;

// Besides the walkthrough's `cnn`.
const char* kEntries = R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: wikipedia}
spec:
  hosts: ["*.wikipedia.org"]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: NONE
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: en-wikipedia}
spec:
  hosts: ["*.en.wikipedia.org"]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: NONE
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  addresses: [198.51.100.0/24]
  ports:
  - {number: 5432, name: tcp, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 198.51.100.7
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: any-mongo}
spec:
  hosts: [mongo.example.com]
  ports:
  - {number: 27017, name: mongo, protocol: MONGO}
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  resolution: DNS
)";

TEST(Registry, ClassifiesIstioProtocols) {
  EXPECT_EQ(classify_protocol("HTTP"), PortProtocol::kHttp);
  EXPECT_EQ(classify_protocol("http2"), PortProtocol::kHttp);
  EXPECT_EQ(classify_protocol("GRPC"), PortProtocol::kHttp);
  EXPECT_EQ(classify_protocol("HTTPS"), PortProtocol::kTls);
  EXPECT_EQ(classify_protocol("TLS"), PortProtocol::kTls);
  EXPECT_EQ(classify_protocol("TCP"), PortProtocol::kTcp);
  EXPECT_EQ(classify_protocol("MONGO"), PortProtocol::kTcp);
  EXPECT_EQ(classify_protocol(""), PortProtocol::kUnspecified);
  EXPECT_EQ(classify_protocol("SOMETHING"), PortProtocol::kUnspecified);
}

TEST(Registry, DeclaredProtocolPerPort) {
  auto cfg = load_config({kCnnServiceEntry, kEntries});
  Registry reg(cfg);
  EXPECT_TRUE(reg.has_http_listener(80));
  EXPECT_FALSE(reg.has_http_listener(443));
  EXPECT_EQ(reg.declared_protocol(443), PortProtocol::kTls);
  EXPECT_EQ(reg.declared_protocol(5432), PortProtocol::kTcp);
  EXPECT_EQ(reg.declared_protocol(8080), PortProtocol::kUnspecified);
}

TEST(Registry, HttpHostExactMatchIgnoresOtherPorts) {
  auto cfg = load_config({kCnnServiceEntry, kEntries});
  Registry reg(cfg);
  auto ref = reg.find_http(80, "edition.cnn.com");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->entry->meta.name, "cnn");
  EXPECT_EQ(ref->port->number, 80u);
  EXPECT_EQ(ref->cluster_name(), "outbound|80||edition.cnn.com");
  EXPECT_FALSE(reg.find_http(80, "www.cnn.com"));
  EXPECT_FALSE(reg.find_http(8080, "edition.cnn.com"));
  // Port 443 of cnn is HTTPS: not an HTTP listener.
  EXPECT_FALSE(reg.find_http(443, "edition.cnn.com"));
}

TEST(Registry, SniLongestWildcardWins) {
  auto cfg = load_config({kCnnServiceEntry, kEntries});
  Registry reg(cfg);
  auto a = reg.find_tls(443, "www.wikipedia.org");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->entry->meta.name, "wikipedia");
  EXPECT_EQ(a->host, "*.wikipedia.org");
  auto b = reg.find_tls(443, "m.en.wikipedia.org");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->entry->meta.name, "en-wikipedia");
  EXPECT_FALSE(reg.find_tls(443, "wikipedia.org"));  // "*." needs a label
  auto c = reg.find_tls(443, "edition.cnn.com");  // HTTPS counts as TLS
  ASSERT_TRUE(c);
  EXPECT_EQ(c->entry->meta.name, "cnn");
  EXPECT_FALSE(reg.find_tls(443, ""));
}

TEST(Registry, TcpByAddressAndCatchAllPort) {
  auto cfg = load_config({kCnnServiceEntry, kEntries});
  Registry reg(cfg);
  auto db = reg.find_tcp(*IpAddress::parse("198.51.100.42"), 5432);
  ASSERT_TRUE(db);
  EXPECT_EQ(db->entry->meta.name, "db");
  EXPECT_FALSE(reg.find_tcp(*IpAddress::parse("203.0.113.1"), 5432));
  // IPv4-mapped IPv6 is the same destination.
  EXPECT_TRUE(reg.find_tcp(*IpAddress::parse("::ffff:198.51.100.42"), 5432));
  // A TCP-family port without addresses claims every IP on the port.
  auto mongo = reg.find_tcp(*IpAddress::parse("203.0.113.9"), 27017);
  ASSERT_TRUE(mongo);
  EXPECT_EQ(mongo->entry->meta.name, "any-mongo");
  // ...but an HTTP port without addresses does not.
  EXPECT_FALSE(reg.find_tcp(*IpAddress::parse("203.0.113.9"), 80));
}

TEST(Registry, KubernetesAliases) {
  auto cfg = load_config({kCnnServiceEntry, kEntries});
  Registry reg(cfg);
  EXPECT_TRUE(reg.find_http(9080, "reviews.shop.svc.cluster.local"));
  EXPECT_TRUE(reg.find_http(9080, "reviews.shop.svc"));
  EXPECT_TRUE(reg.find_http(9080, "reviews.shop"));
  EXPECT_FALSE(reg.find_http(9080, "reviews.other"));
}

TEST(Registry, HttpHostMayBeAnEntryAddress) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  addresses: [203.0.113.10]
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - address: 203.0.113.10
)"});
  Registry reg(cfg);
  auto ref = reg.find_http(8080, "203.0.113.10");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->entry->meta.name, "api");
  EXPECT_FALSE(reg.find_http(8080, "203.0.113.11"));
}

}  // namespace
}  // namespace sluice::policy
