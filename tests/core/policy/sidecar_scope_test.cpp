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

// Two Sidecars at one tier (both selecting the workload, or two without a
// selector in its namespace): the first in load order applies, and the
// reason names the other, with istioctl analyze's code for the ambiguity.
TEST(SidecarScopeTest, AnAmbiguousChoiceNamesTheSidecarsNotTaken) {
  std::string cart_too = kCartOnly;
  cart_too.replace(cart_too.find("name: cart,"), 11, "name: cart2,");
  std::string shop_too = kShopWide;
  shop_too.replace(shop_too.find("name: shop,"), 11, "name: shop2,");
  const config::ConfigSet c = load_config({kShopWide, kCartOnly, cart_too.c_str(), shop_too.c_str()});
  SidecarSelection cart = select_sidecar(c, workload("shop", {{"app", "cart"}}));
  ASSERT_NE(cart.sidecar, nullptr);
  EXPECT_EQ(cart.sidecar->meta.name, "cart");
  EXPECT_NE(cart.reason.find("; also shop/cart2 ("), std::string::npos) << cart.reason;
  EXPECT_NE(cart.reason.find("the first in load order applies (istioctl analyze: IST0110)"), std::string::npos)
      << cart.reason;
  SidecarSelection web = select_sidecar(c, workload("shop", {{"app", "web"}}));
  ASSERT_NE(web.sidecar, nullptr);
  EXPECT_EQ(web.sidecar->meta.name, "shop");
  EXPECT_NE(web.reason.find("; also shop/shop2 ("), std::string::npos) << web.reason;
  EXPECT_NE(web.reason.find("IST0111"), std::string::npos) << web.reason;
  // One of each: nothing to name.
  SidecarSelection plain = select_sidecar(load_config({kShopWide, kCartOnly}), workload("shop", {{"app", "cart"}}));
  EXPECT_EQ(plain.reason.find("also"), std::string::npos) << plain.reason;
  // Two root defaults: the same (IST0111).
  std::string root_too = kRootDefault;
  root_too.replace(root_too.find("name: default,"), 14, "name: default2,");
  SidecarSelection root = select_sidecar(load_config({kRootDefault, root_too.c_str()}), workload("web"));
  EXPECT_NE(root.reason.find("; also istio-system/default2 ("), std::string::npos) << root.reason;
  EXPECT_NE(root.reason.find("IST0111"), std::string::npos) << root.reason;
  // A selector without labels matches every workload, and istioctl's
  // IST0110 skips it: no code named.
  std::string any = cart_too;
  any.replace(any.find("workloadSelector: {labels: {app: cart}}"), 39, "workloadSelector: {}");
  SidecarSelection tie = select_sidecar(load_config({kCartOnly, any.c_str()}), workload("shop", {{"app", "cart"}}));
  EXPECT_NE(tie.reason.find("; also shop/cart2 ("), std::string::npos) << tie.reason;
  EXPECT_EQ(tie.reason.find("IST0110"), std::string::npos) << tie.reason;
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
  EXPECT_EQ(s.sidecar_source.rfind("istio-system/default (", 0), 0u) << s.sidecar_source;
}

// A service is imported when its host lies within the egress host: an
// exact egress host does not import a wildcard ServiceEntry (it would let
// every name under it through).
TEST(SidecarScopeTest, ANarrowerEgressHostDoesNotImportAWildcardEntry) {
  const config::ConfigSet c = load_config({R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: shop}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
)", R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: shop}
spec:
  egress: [{hosts: ["./api.example.com"]}]
)"});
  const WorkloadIdentity shop = workload("shop");
  EXPECT_TRUE(services(scoped_config(c, shop, select_sidecar(c, shop))).empty());
}

// One ServiceEntry stays one entry (a route without a port takes a single
// port entry's): the ports some host is imported on, the hosts imported on
// some kept port.
TEST(SidecarScopeTest, AnEntryIsNeverSplit) {
  const config::ConfigSet c = load_config({R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: two, namespace: shop}
spec:
  hosts: [api.example.com, other.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
)", R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s, namespace: shop}
spec:
  egress:
  - port: {number: 443, protocol: TLS, name: tls}
    hosts: ["./api.example.com"]
  - hosts: ["./*"]
)"});
  const WorkloadIdentity shop = workload("shop");
  const config::ConfigSet s = scoped_config(c, shop, select_sidecar(c, shop));
  ASSERT_EQ(s.service_entries.size(), 1u);
  EXPECT_EQ(s.service_entries[0].hosts, (std::vector<std::string>{"api.example.com", "other.example.com"}));
  EXPECT_EQ(s.service_entries[0].ports.size(), 2u);
}

// VirtualServices are kept when their (qualified) hosts overlap an egress
// host; gateway-bound ones are not the sidecar's business.
TEST(SidecarScopeTest, VirtualServicesFollowTheEgressHosts) {
  const config::ConfigSet c = load_config({R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
)", R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext, namespace: shop}
spec:
  hosts: [api.example.com]
  http: [{route: [{destination: {host: api.example.com}}]}]
)", R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: at-gateway, namespace: shop}
spec:
  hosts: [api.example.com]
  gateways: [istio-egressgateway]
  http: [{route: [{destination: {host: api.example.com}}]}]
)", R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s, namespace: shop}
spec:
  egress: [{hosts: ["./reviews.shop.svc.cluster.local"]}]
)"});
  const WorkloadIdentity shop = workload("shop");
  const config::ConfigSet s = scoped_config(c, shop, select_sidecar(c, shop));
  std::vector<std::string> names;
  for (const auto& vs : s.virtual_services) names.push_back(vs.meta.name);
  EXPECT_EQ(names, (std::vector<std::string>{"reviews", "at-gateway"}));
}

// Per destination, the DestinationRules of the first namespace in Istio's
// order that has a matching one (the workload's, the ServiceEntry's, the
// root's), most specific within it: a workload's wildcard rule beats an
// exact one elsewhere; another namespace's never applies; a root-namespace
// proxy (a gateway) takes its private rules first, its exported ones last.
TEST(SidecarScopeTest, DestinationRulesInIstiosNamespaceOrder) {
  auto dr = [](const char* name, const char* ns, const char* host, const char* export_to = "") {
    return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + std::string(name) +
           ", namespace: " + ns + "}\nspec:\n  host: \"" + host + "\"\n" + export_to +
           "  trafficPolicy: {tls: {mode: SIMPLE}}\n";
  };
  const std::string mine = dr("mine", "web", "*.example.com"), owner = dr("owner", "shop", "api.example.com"),
                    root = dr("root", "istio-system", "api.example.com"), stray = dr("stray", "other", "*.com"),
                    gw_private = dr("gw-private", "istio-system", "api.example.com", "  exportTo: [\".\"]\n");
  auto rule_for = [](const config::ConfigSet& c, const char* ns) {
    const WorkloadIdentity w = workload(ns);
    const config::ConfigSet view = scoped_config(c, w, select_sidecar(c, w));
    DestinationRules rules(view);
    const DestinationRules::Merged* m = rules.find("api.example.com");
    return m ? m->rules.front()->meta.name : std::string("(none)");
  };
  const config::ConfigSet c = load_config({kApi, mine.c_str(), owner.c_str(), root.c_str(), stray.c_str()});
  EXPECT_EQ(rule_for(c, "web"), "mine") << "the workload's namespace first, wildcard and all";
  EXPECT_EQ(rule_for(c, "default"), "owner") << "the ServiceEntry's namespace (shop)";
  EXPECT_EQ(rule_for(c, "other"), "stray") << "its own namespace's *.com";
  const config::ConfigSet no_owner = load_config({kApi, root.c_str(), stray.c_str()});
  EXPECT_EQ(rule_for(no_owner, "default"), "root") << "other/*.com never applies elsewhere";
  // A gateway in the root namespace: its private rule, then the service's
  // namespace, then its exported rules.
  const config::ConfigSet gw = load_config({kApi, owner.c_str(), root.c_str(), gw_private.c_str()});
  EXPECT_EQ(rule_for(gw, "istio-system"), "gw-private");
  const config::ConfigSet gw2 = load_config({kApi, owner.c_str(), root.c_str()});
  EXPECT_EQ(rule_for(gw2, "istio-system"), "owner") << "the service's namespace before the root's exported rule";
}

// A Sidecar with a workloadSelector, even an empty one (which matches every
// workload), is a workload's Sidecar: it wins over the namespace-wide one,
// and never serves as the root default.
TEST(SidecarScopeTest, AnEmptySelectorIsStillASelector) {
  const config::ConfigSet c = load_config({kShopWide, R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: every-workload, namespace: shop}
spec:
  workloadSelector: {}
  egress: [{hosts: ["./*"]}]
)", R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: selected, namespace: istio-system}
spec:
  workloadSelector: {}
  egress: [{hosts: ["./*"]}]
)"});
  EXPECT_EQ(select_sidecar(c, workload("shop", {{"app", "x"}})).sidecar->meta.name, "every-workload");
  EXPECT_EQ(select_sidecar(c, workload("default")).sidecar, nullptr);
}

// A sidecar's view knows its workload: VirtualService sourceNamespace and
// sourceLabels match its namespace and labels.
TEST(SidecarScopeTest, SourceMatchesUseTheWorkload) {
  const config::ConfigSet c = load_config({kApi, R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  http:
  - match: [{sourceLabels: {app: cart}}]
    route: [{destination: {host: api.example.com, port: {number: 443}}}]
  - match: [{sourceNamespace: billing}]
    route: [{destination: {host: api.example.com, port: {number: 443}}}]
  - route: [{destination: {host: api.example.com, port: {number: 80}}}]
)"});
  // The port the sidecar's plan for GET api.example.com:80 goes to.
  auto port_for = [&](const WorkloadIdentity& w) {
    const config::ConfigSet view = scoped_config(c, w, select_sidecar(c, w));
    Registry registry(view);
    RouteTable routes(view);
    DestinationRules destinations(view);
    const PlanTables tables{&view, &registry, &routes, &destinations, OutboundTrafficPolicyMode::kRegistryOnly};
    HttpRequest req;
    req.method = "GET";
    req.path = "/";
    PlanRequest r;
    r.traffic = Traffic::kHttp;
    r.original_ip = *decision::IpAddress::parse("203.0.113.10");
    r.port = 80;
    r.host = "api.example.com";
    r.http = &req;
    return plan_sidecar(tables, r).forward.port;
  };
  auto known = [](WorkloadIdentity w) {
    w.source = true;  // the proxy serves this one workload
    return w;
  };
  EXPECT_EQ(port_for(known(workload("shop", {{"app", "cart"}}))), 443u);
  EXPECT_EQ(port_for(known(workload("billing"))), 443u);
  EXPECT_EQ(port_for(known(workload("shop", {{"app", "web"}}))), 80u);
  // A proxy for many workloads (source unknown): no source rule matches.
  EXPECT_EQ(port_for(workload("billing")), 80u);
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
