// The Sidecar resource as Istio applies it to a workload's proxy: which
// one is selected, what the workload then sees (exportTo, egress hosts per
// port), its outboundTrafficPolicy, and its egress proxy in the plan.
#include "core/policy/sidecar_scope.h"

#include <gtest/gtest.h>

#include "core/policy/destination.h"
#include "core/policy/outbound_mode.h"
#include "core/policy/registry.h"
#include "core/policy/request_plan.h"
#include "core/policy/routing.h"
#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using config::OutboundTrafficPolicyMode;
using sluice::test_support::load_config;

constexpr const char* kApi = R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
)";

constexpr const char* kPrivate = R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: billing}
spec:
  hosts: [pay.example.com]
  exportTo: ["."]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
)";

constexpr const char* kRootDefault = R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
)";

constexpr const char* kShopWide = R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: shop, namespace: shop}
spec:
  egress:
  - port: {number: 443, protocol: TLS, name: tls}
    hosts: ["billing/*"]
  - hosts: ["./*"]
)";

constexpr const char* kCartOnly = R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: cart, namespace: shop}
spec:
  workloadSelector: {labels: {app: cart}}
  egress:
  - hosts: ["istio-system/*"]
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy: {host: squid.example.com, port: {number: 3128}}
)";

WorkloadIdentity workload(const char* ns, config::Labels labels = {}) {
  WorkloadIdentity w;
  w.namespace_ = ns;
  w.labels = std::move(labels);
  return w;
}

std::vector<std::string> services(const config::ConfigSet& c) {
  std::vector<std::string> out;
  for (const auto& se : c.service_entries) {
    for (const auto& p : se.ports) out.push_back(se.hosts[0] + ":" + std::to_string(p.number));
  }
  return out;
}

TEST(SidecarScopeTest, TheWorkloadsOwnSelectorThenItsNamespaceThenTheRoot) {
  const config::ConfigSet c = load_config({kRootDefault, kShopWide, kCartOnly});
  SidecarSelection cart = select_sidecar(c, workload("shop", {{"app", "cart"}}));
  ASSERT_NE(cart.sidecar, nullptr);
  EXPECT_EQ(cart.sidecar->meta.name, "cart");
  EXPECT_NE(cart.reason.find("workloadSelector matches"), std::string::npos) << cart.reason;
  SidecarSelection web = select_sidecar(c, workload("shop", {{"app", "web"}}));
  ASSERT_NE(web.sidecar, nullptr);
  EXPECT_EQ(web.sidecar->meta.name, "shop");
  SidecarSelection other = select_sidecar(c, workload("default"));
  ASSERT_NE(other.sidecar, nullptr);
  EXPECT_EQ(other.sidecar->meta.name, "default");
  EXPECT_NE(other.reason.find("root namespace"), std::string::npos) << other.reason;
  const config::ConfigSet none = load_config({kShopWide});
  EXPECT_EQ(select_sidecar(none, workload("default")).sidecar, nullptr);
}

TEST(SidecarScopeTest, ExportToAndEgressHostsPerPortDecideWhatIsSeen) {
  const config::ConfigSet c = load_config({kApi, kPrivate, kShopWide});
  // No Sidecar for "default": what is exported to it (not billing's ".").
  const WorkloadIdentity dflt = workload("default");
  EXPECT_EQ(services(scoped_config(c, dflt, select_sidecar(c, dflt))),
            (std::vector<std::string>{"api.example.com:80", "api.example.com:443"}));
  // billing sees its own.
  const WorkloadIdentity billing = workload("billing");
  EXPECT_EQ(services(scoped_config(c, billing, select_sidecar(c, billing))),
            (std::vector<std::string>{"api.example.com:80", "api.example.com:443", "pay.example.com:443"}));
  // shop's Sidecar: port 443 sees billing/* only (and pay.example.com is
  // not exported to shop), every other port "./*": api on 80 only.
  const WorkloadIdentity shop = workload("shop");
  const config::ConfigSet s = scoped_config(c, shop, select_sidecar(c, shop));
  EXPECT_EQ(services(s), (std::vector<std::string>{"api.example.com:80"}));
  EXPECT_TRUE(s.sidecars.empty());
  EXPECT_FALSE(s.sidecar_outbound.has_value()) << "no outboundTrafficPolicy: the mesh's mode";
}

TEST(SidecarScopeTest, ItsOutboundTrafficPolicyReplacesTheMeshMode) {
  config::ConfigSet c = load_config({kApi, kRootDefault});
  c.mesh.file = "mesh.yaml";  // a loaded ConfigMap says ALLOW_ANY
  c.mesh.outbound_traffic_policy = OutboundTrafficPolicyMode::kAllowAny;
  const WorkloadIdentity dflt = workload("default");
  const config::ConfigSet s = scoped_config(c, dflt, select_sidecar(c, dflt));
  const OutboundMode m = effective_outbound_mode(s);
  EXPECT_EQ(m.mode, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(m.source, OutboundMode::Source::kSidecar);
  EXPECT_NE(s.sidecar_source.find("Sidecar istio-system/default"), std::string::npos) << s.sidecar_source;
}

// With ALLOW_ANY and an egressProxy, an unknown destination goes to the
// proxy's cluster instead of passing through.
TEST(SidecarScopeTest, AnEgressProxyTakesWhatWouldPassThrough) {
  const config::ConfigSet c = load_config({kApi, kCartOnly});
  const WorkloadIdentity cart = workload("shop", {{"app", "cart"}});
  const config::ConfigSet s = scoped_config(c, cart, select_sidecar(c, cart));
  EXPECT_TRUE(services(s).empty()) << "egress istio-system/* only";
  Registry registry(s);
  RouteTable routes(s);
  DestinationRules destinations(s);
  const PlanTables tables{&s, &registry, &routes, &destinations, effective_outbound_mode(s).mode};
  PlanRequest r;
  r.traffic = Traffic::kTls;
  r.original_ip = *decision::IpAddress::parse("203.0.113.10");
  r.port = 443;
  r.host = "api.example.com";
  r.explain = true;
  RequestPlan p = plan_sidecar(tables, r);
  ASSERT_EQ(p.kind, RequestPlan::Kind::kForward);
  EXPECT_EQ(p.cluster, "outbound|3128||squid.example.com");
  EXPECT_EQ(p.forward.port, 3128u);
  std::string all;
  for (const auto& step : p.steps) all += step + "\n";
  EXPECT_NE(all.find("egress proxy of Sidecar shop/cart"), std::string::npos) << all;
}

}  // namespace
}  // namespace sluice::policy
