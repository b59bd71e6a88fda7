#include "core/policy/gateway_servers.h"

#include <gtest/gtest.h>

#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using test_support::load_config;

const std::map<std::string, std::string> kEgressLabels{{"istio", "egressgateway"}, {"app", "istio-egressgateway"}};

// The walkthrough's Gateway, as written (cert files of the MUTUAL server).
constexpr const char* kWalkthroughGateway = R"(
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: [edition.cnn.com]
    tls:
      mode: MUTUAL
      serverCertificate: /etc/certs/cert-chain.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/root-cert.pem
)";

constexpr const char* kMixedGateway = R"(
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: mixed, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: tls-pass, protocol: TLS}
    hosts: [edition.cnn.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 443, name: tls-wild, protocol: TLS}
    hosts: ["*.cnn.com"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 443, name: tls-any, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["./*.example.org", "api.example.org"]
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
)";

constexpr const char* kIngressGateway = R"(
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: http, protocol: HTTP}
    hosts: ["*"]
)";

TEST(GatewayServersTest, WalkthroughGatewaySelectsEgressProxyOnly) {
  config::ConfigSet cs = load_config({kWalkthroughGateway, kIngressGateway});
  GatewayServers egress(cs, kEgressLabels);
  EXPECT_EQ(egress.ports(), std::vector<uint32_t>{80});
  ASSERT_EQ(egress.on_port(80).size(), 1u);
  const GatewayServerRef& s = egress.on_port(80)[0];
  EXPECT_EQ(s.kind, ServerKind::kTlsTerminate);
  EXPECT_EQ(s.gateway_key, "istio-system/istio-egressgateway");
  EXPECT_EQ(s.describe(), "istio-system/istio-egressgateway server 0 (80/HTTPS)");
  EXPECT_TRUE(egress.port_wants_sni(80));
  EXPECT_EQ(egress.select_by_sni(80, "edition.cnn.com"), &s);
  EXPECT_EQ(egress.select_by_sni(80, "Edition.CNN.com"), &s);
  EXPECT_EQ(egress.select_by_sni(80, "www.cnn.com"), nullptr);
  EXPECT_EQ(egress.select_by_sni(80, ""), nullptr);
  EXPECT_EQ(egress.select_by_host(80, "edition.cnn.com"), nullptr) << "HTTPS server is not a plain HTTP server";

  GatewayServers ingress(cs, {{"istio", "ingressgateway"}});
  EXPECT_EQ(ingress.ports(), std::vector<uint32_t>{8443});
  GatewayServers none(cs, {{"app", "sleep"}});
  EXPECT_TRUE(none.empty());
}

TEST(GatewayServersTest, SniPrefersExactThenLongerWildcardThenStar) {
  config::ConfigSet cs = load_config({kMixedGateway});
  GatewayServers g(cs, kEgressLabels);
  EXPECT_EQ(g.ports(), (std::vector<uint32_t>{443, 8080, 9000}));
  EXPECT_EQ(g.select_by_sni(443, "edition.cnn.com")->server->port.name, "tls-pass");
  EXPECT_EQ(g.select_by_sni(443, "www.cnn.com")->server->port.name, "tls-wild");
  EXPECT_EQ(g.select_by_sni(443, "cnn.com")->server->port.name, "tls-any") << "*.cnn.com needs a label before it";
  EXPECT_EQ(g.select_by_sni(443, "")->server->port.name, "tls-any");
  EXPECT_EQ(g.on_port(443)[0].kind, ServerKind::kTlsPassthrough);
  EXPECT_FALSE(g.port_wants_sni(8080));
}

TEST(GatewayServersTest, HttpHostsDropTheNamespacePart) {
  config::ConfigSet cs = load_config({kMixedGateway});
  GatewayServers g(cs, kEgressLabels);
  const GatewayServerRef* s = g.select_by_host(8080, "api.example.org");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->hosts, (std::vector<std::string>{"*.example.org", "api.example.org"}));
  EXPECT_NE(g.select_by_host(8080, "www.example.org"), nullptr);
  EXPECT_EQ(g.select_by_host(8080, "example.org"), nullptr);
  EXPECT_EQ(g.select_by_host(8080, "other.net"), nullptr);
  EXPECT_EQ(g.select_tcp(9000)->kind, ServerKind::kTcp);
  EXPECT_EQ(g.select_tcp(8080), nullptr);
}

TEST(GatewayServersTest, EmptySelectorSelectsEveryGatewayProxy) {
  config::ConfigSet cs = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: all}
spec:
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
)"});
  GatewayServers g(cs, {});
  EXPECT_EQ(g.ports(), std::vector<uint32_t>{15443});
  EXPECT_EQ(g.on_port(15443)[0].kind, ServerKind::kTlsPassthrough);
}

TEST(GatewayServersTest, HostPatternMatching) {
  EXPECT_TRUE(GatewayServers::host_matches("*", "anything"));
  EXPECT_TRUE(GatewayServers::host_matches("*", ""));
  EXPECT_TRUE(GatewayServers::host_matches("*.a.com", "b.a.com"));
  EXPECT_TRUE(GatewayServers::host_matches("*.a.com", "c.b.a.com"));
  EXPECT_FALSE(GatewayServers::host_matches("*.a.com", "a.com"));
  EXPECT_FALSE(GatewayServers::host_matches("*.a.com", ".a.com"));
  EXPECT_TRUE(GatewayServers::host_matches("a.com", "a.com"));
  EXPECT_FALSE(GatewayServers::host_matches("a.com", "b.a.com"));
}

}  // namespace
}  // namespace sluice::policy
