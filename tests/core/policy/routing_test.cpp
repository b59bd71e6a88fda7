// VirtualService routing: binding to sidecars and gateways, host precedence,
// every HTTP match condition, first-match order, weights, redirects,
// rewrites, TLS/TCP routes — and the egress walkthrough end to end.
#include "core/policy/routing.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/config/loader.h"
#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using decision::IpAddress;
using sluice::test_support::load_config;

config::ConfigSet load_dir(const std::string& rel) { return test_support::load_repo_paths({rel}); }

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

HttpRequest get(std::string_view host, uint32_t port, std::string_view path = "/") {
  HttpRequest r;
  r.host = host;
  r.port = port;
  r.path = path;
  return r;
}

std::string dump(const RouteTrace& trace) {
  std::string out;
  for (const auto& line : trace) out += "  " + line + "\n";
  return out;
}

// ---------------------------------------------------------------------------
// The walkthrough and its variants

TEST(WalkthroughRouting, SidecarSendsEditionCnnToTheEgressGatewaySubset) {
  auto cfg = load_dir("configs/walkthrough");
  RouteTable table(cfg);
  RouteTrace trace;
  auto d = table.route_http(RouteScope::sidecar(), get("edition.cnn.com", 80, "/politics"), &trace);
  ASSERT_EQ(d.outcome, RouteOutcome::kRoute) << d.reason.view() << "\n" << dump(trace);
  EXPECT_EQ(d.target.host, "istio-egressgateway.istio-system.svc.cluster.local");
  EXPECT_EQ(d.target.subset, "cnn");
  EXPECT_EQ(d.target.port, 80u);
  EXPECT_EQ(d.target.port_source, RouteTarget::PortSource::kDestination);
  EXPECT_EQ(d.target.cluster_name(), "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local");
  EXPECT_EQ(d.virtual_service->meta.name, "direct-cnn-through-egress-gateway");
  EXPECT_EQ(d.rule_index, 0u);
  EXPECT_EQ(d.match_index, 0u);
  EXPECT_EQ(d.response_flags, "-");
  ASSERT_NE(d.retries, nullptr);
  EXPECT_TRUE(d.retries->is_default);
  EXPECT_FALSE(d.timeout.has_value());
  EXPECT_NE(d.reason.view().find("default/direct-cnn-through-egress-gateway http[0].match[0]"), std::string::npos)
      << d.reason.view();
  EXPECT_NE(d.reason.view().find("subset cnn port 80"), std::string::npos) << d.reason.view();
}

TEST(WalkthroughRouting, EgressGatewaySendsEditionCnnOnToPort80) {
  auto cfg = load_dir("configs/walkthrough");
  RouteTable table(cfg);
  // The walkthrough's Gateway omits its namespace: "default".
  auto scope = RouteScope::gateway("istio-egressgateway", "default");
  RouteTrace trace;
  auto d = table.route_http(scope, get("edition.cnn.com", 80, "/politics"), &trace);
  ASSERT_EQ(d.outcome, RouteOutcome::kRoute) << d.reason.view() << "\n" << dump(trace);
  EXPECT_EQ(d.target.host, "edition.cnn.com");
  EXPECT_EQ(d.target.subset, "");
  EXPECT_EQ(d.target.port, 80u);
  EXPECT_EQ(d.target.cluster_name(), "outbound|80||edition.cnn.com");
  EXPECT_EQ(d.rule_index, 1u);
  // The sidecar's rule was considered and set aside for its gateways.
  bool saw_mesh_rule_skipped = false;
  for (const auto& line : trace) {
    if (line.find("http[0].match[0] does not apply: gateways [mesh]") != std::string::npos) saw_mesh_rule_skipped = true;
  }
  EXPECT_TRUE(saw_mesh_rule_skipped) << dump(trace);
}

TEST(WalkthroughRouting, OtherPortsAndHostsGetTheDefaultRoute) {
  auto cfg = load_dir("configs/walkthrough");
  RouteTable table(cfg);
  // Both rules require port 80: on 443 the VirtualService yields no route and
  // the host's default route applies.
  auto d = table.route_http(RouteScope::sidecar(), get("edition.cnn.com", 443));
  EXPECT_EQ(d.outcome, RouteOutcome::kNoVirtualService) << d.reason.view();
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("www.google.com", 80)).outcome,
            RouteOutcome::kNoVirtualService);
  // At the gateway, a host outside the server's hosts binds nothing.
  auto scope = RouteScope::gateway("istio-egressgateway", "default");
  EXPECT_EQ(table.route_http(scope, get("www.google.com", 80)).outcome, RouteOutcome::kNoVirtualService);
}

TEST(WalkthroughRouting, UnknownGatewayBindsNothing) {
  auto cfg = load_dir("configs/walkthrough");
  RouteTable table(cfg);
  auto d = table.route_http(RouteScope::gateway("istio-egressgateway", "istio-system"), get("edition.cnn.com", 80));
  EXPECT_EQ(d.outcome, RouteOutcome::kNoVirtualService);
  EXPECT_NE(d.reason.view().find("istio-system/istio-egressgateway is not in the configuration"), std::string::npos)
      << d.reason.view();
}

TEST(VariantRouting, TlsOriginationAtTheGateway) {
  auto cfg = load_dir("configs/variants/tls-origination-gateway");
  RouteTable table(cfg);
  auto side = table.route_http(RouteScope::sidecar(), get("edition.cnn.com", 80));
  ASSERT_EQ(side.outcome, RouteOutcome::kRoute) << side.reason.view();
  EXPECT_EQ(side.target.cluster_name(), "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local");
  auto gw = table.route_http(RouteScope::gateway("istio-egressgateway", "default"), get("edition.cnn.com", 80));
  ASSERT_EQ(gw.outcome, RouteOutcome::kRoute) << gw.reason.view();
  EXPECT_EQ(gw.target.cluster_name(), "outbound|443||edition.cnn.com");
}

TEST(VariantRouting, TlsPassthroughThroughTheGateway) {
  auto cfg = load_dir("configs/variants/tls-passthrough-gateway");
  RouteTable table(cfg);
  auto side = table.route_tls(RouteScope::sidecar(), "edition.cnn.com", 443, ip("151.101.1.67"), 0);
  ASSERT_EQ(side.outcome, RouteOutcome::kRoute) << side.reason.view();
  EXPECT_EQ(side.target.cluster_name(), "outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local");
  EXPECT_EQ(side.rule_index, 0u);
  auto gw = table.route_tls(RouteScope::gateway("istio-egressgateway", "default"), "edition.cnn.com", 443,
                            ip("10.244.0.9"), 0);
  ASSERT_EQ(gw.outcome, RouteOutcome::kRoute) << gw.reason.view();
  EXPECT_EQ(gw.target.cluster_name(), "outbound|443||edition.cnn.com");
  EXPECT_EQ(gw.rule_index, 1u);
  // Another SNI: no VirtualService for it.
  EXPECT_EQ(table.route_tls(RouteScope::sidecar(), "www.google.com", 443, ip("1.2.3.4"), 0).outcome,
            RouteOutcome::kNoVirtualService);
  // HTTP to the same host: the VirtualService has no http routes.
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("edition.cnn.com", 443)).outcome,
            RouteOutcome::kNoVirtualService);
}

TEST(VariantRouting, TlsOriginationAtTheSidecarHasNoVirtualService) {
  auto cfg = load_dir("configs/variants/tls-origination-sidecar");
  RouteTable table(cfg);
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("edition.cnn.com", 80)).outcome,
            RouteOutcome::kNoVirtualService);
}

TEST(VariantRouting, WildcardHostsThroughTheGateway) {
  auto cfg = load_dir("configs/variants/wildcard-hosts");
  RouteTable table(cfg);
  auto side = table.route_tls(RouteScope::sidecar(), "en.wikipedia.org", 443, ip("198.35.26.96"), 0);
  ASSERT_EQ(side.outcome, RouteOutcome::kRoute) << side.reason.view();
  EXPECT_EQ(side.matched_domain, "*.wikipedia.org");
  EXPECT_EQ(side.target.cluster_name(), "outbound|443|wikipedia|istio-egressgateway.istio-system.svc.cluster.local");
  auto gw = table.route_tls(RouteScope::gateway("istio-egressgateway", "default"), "de.wikipedia.org", 443,
                            ip("10.244.0.9"), 0);
  ASSERT_EQ(gw.outcome, RouteOutcome::kRoute) << gw.reason.view();
  EXPECT_EQ(gw.target.cluster_name(), "outbound|443||www.wikipedia.org");
  // "*.wikipedia.org" does not cover the apex.
  EXPECT_EQ(table.route_tls(RouteScope::sidecar(), "wikipedia.org", 443, ip("198.35.26.96"), 0).outcome,
            RouteOutcome::kNoVirtualService);
}

// ---------------------------------------------------------------------------
// Match conditions

// One VirtualService with a rule per condition under test; each rule routes
// to its own host so a test can tell which one matched.
const char* kConditions = R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: conditions, namespace: shop}
spec:
  hosts: [api.example.com]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: exact}}]
  - name: icase
    match: [{uri: {exact: /Mixed}, ignoreUriCase: true}]
    route: [{destination: {host: icase}}]
  - name: regex
    match: [{uri: {regex: "/items/[0-9]+"}}]
    route: [{destination: {host: regex}}]
  - name: method
    match: [{method: {exact: DELETE}}]
    route: [{destination: {host: method}}]
  - name: scheme
    match: [{scheme: {exact: https}}]
    route: [{destination: {host: scheme}}]
  - name: authority
    match: [{authority: {prefix: "api.example.com:8"}}]
    route: [{destination: {host: authority}}]
  - name: header-exact
    match: [{headers: {x-user: {exact: alice}}}]
    route: [{destination: {host: header-exact}}]
  - name: header-prefix
    match: [{headers: {x-version: {prefix: v2}}}]
    route: [{destination: {host: header-prefix}}]
  - name: header-regex
    match: [{headers: {x-tier: {regex: "(?i)gold|platinum"}}}]
    route: [{destination: {host: header-regex}}]
  - name: header-present
    match: [{headers: {x-debug: {}}}]
    route: [{destination: {host: header-present}}]
  - name: query
    match: [{queryParams: {mode: {exact: beta}}}]
    route: [{destination: {host: query}}]
  - name: query-regex
    match: [{queryParams: {id: {regex: "[a-f]+"}}}]
    route: [{destination: {host: query-regex}}]
  - name: and
    match: [{uri: {prefix: /both}, method: {exact: POST}}]
    route: [{destination: {host: and}}]
  - name: or
    match:
    - {uri: {prefix: /one}}
    - {uri: {prefix: /two}, name: second}
    route: [{destination: {host: or}}]
  - name: without
    match: [{uri: {prefix: /guarded}, withoutHeaders: {x-block: {exact: "yes"}}}]
    route: [{destination: {host: without}}]
  - name: port
    match: [{port: 8080}]
    route: [{destination: {host: port}}]
)";

class Conditions : public ::testing::Test {
 protected:
  Conditions() : cfg_(load_config({kConditions})), table_(cfg_) {}

  // The host of the destination chosen, or the outcome's name.
  std::string route(HttpRequest r) {
    if (r.host.empty()) r.host = "api.example.com";
    if (r.port == 0) r.port = 80;
    RouteTrace trace;
    auto d = table_.route_http(RouteScope::sidecar(), r, &trace);
    last_ = d.reason.str();
    last_route_name_ = std::string(d.route_name);
    if (d.outcome != RouteOutcome::kRoute) return to_string(d.outcome);
    return std::string(d.target.host);
  }

  config::ConfigSet cfg_;
  RouteTable table_;
  std::string last_;
  std::string last_route_name_;
};

TEST_F(Conditions, UriExactIgnoresTheQueryString) {
  HttpRequest r;
  r.path = "/exact?x=1";
  EXPECT_EQ(route(r), "exact.shop.svc.cluster.local") << last_;
  r.path = "/exact/more";
  EXPECT_EQ(route(r), "no_route_matched");
}

TEST_F(Conditions, IgnoreUriCase) {
  HttpRequest r;
  r.path = "/mIXED";
  EXPECT_EQ(route(r), "icase.shop.svc.cluster.local") << last_;
}

TEST_F(Conditions, UriRegexIsAFullMatch) {
  HttpRequest r;
  r.path = "/items/42";
  EXPECT_EQ(route(r), "regex.shop.svc.cluster.local");
  r.path = "/items/42/reviews";
  EXPECT_EQ(route(r), "no_route_matched");
  r.path = "/items/42?sort=asc";  // the query string is not part of the subject
  EXPECT_EQ(route(r), "regex.shop.svc.cluster.local");
}

TEST_F(Conditions, MethodSchemeAuthority) {
  HttpRequest r;
  r.method = "DELETE";
  EXPECT_EQ(route(r), "method.shop.svc.cluster.local");
  r = {};
  r.scheme = "https";
  EXPECT_EQ(route(r), "scheme.shop.svc.cluster.local");
  r = {};
  r.authority = "api.example.com:8443";
  EXPECT_EQ(route(r), "authority.shop.svc.cluster.local");
  r.authority = "api.example.com";
  EXPECT_EQ(route(r), "no_route_matched");
}

TEST_F(Conditions, Headers) {
  std::vector<HeaderField> h{{"X-User", "alice"}};
  HttpRequest r;
  r.headers = h;
  EXPECT_EQ(route(r), "header-exact.shop.svc.cluster.local") << "names are case-insensitive";
  h = {{"x-user", "Alice"}};
  r.headers = h;
  EXPECT_EQ(route(r), "no_route_matched") << "values are case-sensitive";
  h = {{"x-version", "v2.1"}};
  r.headers = h;
  EXPECT_EQ(route(r), "header-prefix.shop.svc.cluster.local");
  h = {{"x-tier", "GOLD"}};
  r.headers = h;
  EXPECT_EQ(route(r), "header-regex.shop.svc.cluster.local") << "(?i) turns on case-insensitivity";
  h = {{"x-debug", ""}};
  r.headers = h;
  EXPECT_EQ(route(r), "header-present.shop.svc.cluster.local");
}

TEST_F(Conditions, RepeatedHeadersMatchJoined) {
  // Envoy matches "alice,bob": neither field alone.
  std::vector<HeaderField> h{{"x-user", "alice"}, {"x-user", "bob"}};
  HttpRequest r;
  r.headers = h;
  EXPECT_EQ(route(r), "no_route_matched");
}

TEST_F(Conditions, QueryParameters) {
  HttpRequest r;
  r.path = "/list?page=2&mode=beta";
  EXPECT_EQ(route(r), "query.shop.svc.cluster.local") << last_;
  r.path = "/list?mode=betamax";
  EXPECT_EQ(route(r), "no_route_matched");
  r.path = "/list?id=cafe";
  EXPECT_EQ(route(r), "query-regex.shop.svc.cluster.local");
  r.path = "/list?id=cafx";
  EXPECT_EQ(route(r), "no_route_matched");
}

TEST_F(Conditions, ConditionsInABlockAnd) {
  HttpRequest r;
  r.path = "/both";
  r.method = "POST";
  EXPECT_EQ(route(r), "and.shop.svc.cluster.local");
  r.method = "GET";
  EXPECT_EQ(route(r), "no_route_matched");
}

TEST_F(Conditions, BlocksOrAndNameTheRoute) {
  HttpRequest r;
  r.path = "/one";
  EXPECT_EQ(route(r), "or.shop.svc.cluster.local");
  EXPECT_EQ(last_route_name_, "or");
  r.path = "/two";
  EXPECT_EQ(route(r), "or.shop.svc.cluster.local");
  EXPECT_EQ(last_route_name_, "or.second") << "Istio appends the match name";
}

TEST_F(Conditions, WithoutHeaders) {
  HttpRequest r;
  r.path = "/guarded";
  EXPECT_EQ(route(r), "without.shop.svc.cluster.local") << "an absent header satisfies withoutHeaders";
  std::vector<HeaderField> h{{"x-block", "no"}};
  r.headers = h;
  EXPECT_EQ(route(r), "without.shop.svc.cluster.local");
  h = {{"x-block", "yes"}};
  r.headers = h;
  EXPECT_EQ(route(r), "no_route_matched");
}

TEST_F(Conditions, Port) {
  HttpRequest r;
  r.port = 8080;
  EXPECT_EQ(route(r), "port.shop.svc.cluster.local");
}

TEST_F(Conditions, NoRouteIs404NR) {
  auto d = table_.route_http(RouteScope::sidecar(), get("api.example.com", 80, "/nothing"));
  EXPECT_EQ(d.outcome, RouteOutcome::kNoRouteMatched);
  EXPECT_EQ(d.status, 404u);
  EXPECT_EQ(d.response_flags, "NR");
  EXPECT_EQ(d.virtual_service->meta.name, "conditions");
  EXPECT_NE(d.reason.view().find("404 NR"), std::string::npos) << d.reason.view();
}

TEST_F(Conditions, OverlongSubjectsNeverMatchARegex) {
  std::string path = "/items/" + std::string(RouteTable::kMaxRegexSubjectBytes, '7');
  HttpRequest r;
  r.path = path;
  RouteTrace trace;
  r.host = "api.example.com";
  r.port = 80;
  auto d = table_.route_http(RouteScope::sidecar(), r, &trace);
  EXPECT_EQ(d.outcome, RouteOutcome::kNoRouteMatched);
  bool noted = false;
  for (const auto& line : trace) noted |= line.find("too long for regex") != std::string::npos;
  EXPECT_TRUE(noted) << dump(trace);
  // At the limit it still matches (and does not exhaust the stack).
  path = "/items/" + std::string(RouteTable::kMaxRegexSubjectBytes - 7, '7');
  r.path = path;
  EXPECT_EQ(table_.route_http(RouteScope::sidecar(), r).outcome, RouteOutcome::kRoute);
}

TEST(Routing, PathologicalRegexesFinishOnLongSubjects) {
  // (a*)*b sends a backtracking engine into exponential time, and a
  // recursive one through the stack; RE2 (and the executor used here) are
  // not bothered.
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: evil}
spec:
  hosts: [evil.example.com]
  http:
  - match: [{headers: {x-probe: {regex: "(a*)*b"}}}]
    route: [{destination: {host: never.example.com}}]
  - route: [{destination: {host: fallback.example.com}}]
)"});
  RouteTable table(cfg);
  std::string value(RouteTable::kMaxRegexSubjectBytes, 'a');
  std::vector<HeaderField> h{{"x-probe", value}};
  HttpRequest r = get("evil.example.com", 80);
  r.headers = h;
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), r).target.host, "fallback.example.com");
  value.back() = 'b';
  h = {{"x-probe", value}};
  r.headers = h;
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), r).target.host, "never.example.com");
}

TEST(Routing, FirstMatchingRuleWinsAndARuleWithoutMatchTakesEverything) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: order}
spec:
  hosts: [order.example.com]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: first.example.com}}]
  - match: [{uri: {prefix: /ab}}]
    route: [{destination: {host: never.example.com}}]
  - route: [{destination: {host: rest.example.com}}]
  - match: [{uri: {prefix: /z}}]
    route: [{destination: {host: unreachable.example.com}}]
)"});
  RouteTable table(cfg);
  auto host_for = [&](std::string_view path) {
    return std::string(table.route_http(RouteScope::sidecar(), get("order.example.com", 80, path)).target.host);
  };
  EXPECT_EQ(host_for("/abc"), "first.example.com");
  EXPECT_EQ(host_for("/zzz"), "rest.example.com");
  EXPECT_EQ(host_for("/"), "rest.example.com");
  auto d = table.route_http(RouteScope::sidecar(), get("order.example.com", 80, "/q"));
  EXPECT_EQ(d.rule_index, 2u);
  EXPECT_EQ(d.match_index, HttpRouteDecision::kNone);
}

// ---------------------------------------------------------------------------
// Host selection and binding

TEST(Routing, MostSpecificHostWins) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: any}
spec:
  hosts: ["*.example.com"]
  http: [{route: [{destination: {host: wildcard.example.com}}]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  http: [{route: [{destination: {host: exact.example.com}}]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: deep}
spec:
  hosts: ["*.eu.example.com"]
  http: [{route: [{destination: {host: deep.example.com}}]}]
)"});
  RouteTable table(cfg);
  auto target = [&](std::string_view host) {
    auto d = table.route_http(RouteScope::sidecar(), get(host, 80));
    return d.outcome == RouteOutcome::kRoute ? std::string(d.target.host) : std::string(to_string(d.outcome));
  };
  EXPECT_EQ(target("api.example.com"), "exact.example.com");
  EXPECT_EQ(target("www.example.com"), "wildcard.example.com");
  EXPECT_EQ(target("fr.eu.example.com"), "deep.example.com");
  EXPECT_EQ(target("example.com"), "no_virtual_service");
}

TEST(Routing, ShortNamesAreQualifiedInTheVirtualServiceNamespace) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
)"});
  RouteTable table(cfg);
  for (const char* host : {"reviews.bookinfo.svc.cluster.local", "reviews.bookinfo", "reviews.bookinfo.svc"}) {
    auto d = table.route_http(RouteScope::sidecar(), get(host, 9080));
    ASSERT_EQ(d.outcome, RouteOutcome::kRoute) << host << ": " << d.reason.view();
    EXPECT_EQ(d.target.host, "reviews.bookinfo.svc.cluster.local");
    EXPECT_EQ(d.target.port, 9080u);
    EXPECT_EQ(d.target.port_source, RouteTarget::PortSource::kRequest);
  }
  // The bare short name would need the client's namespace.
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("reviews", 9080)).outcome, RouteOutcome::kNoVirtualService);
}

TEST(Routing, SidecarKeepsTheFirstVirtualServiceForAHost) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: older}
spec:
  hosts: [dup.example.com]
  http: [{match: [{uri: {prefix: /old}}], route: [{destination: {host: old.example.com}}]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: newer}
spec:
  hosts: [dup.example.com]
  http: [{route: [{destination: {host: new.example.com}}]}]
)"});
  RouteTable table(cfg);
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("dup.example.com", 80, "/old")).target.host, "old.example.com");
  // The newer one is dropped entirely: no fallthrough to it.
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("dup.example.com", 80, "/new")).outcome,
            RouteOutcome::kNoRouteMatched);
}

TEST(Routing, LessSpecificHostTakesOverWhenTheExactOneHasNoRouteForThePort) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: exact-8080-only}
spec:
  hosts: [svc.example.com]
  http: [{match: [{port: 8080}], route: [{destination: {host: exact.example.com}}]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: wildcard}
spec:
  hosts: ["*.example.com"]
  http: [{route: [{destination: {host: wildcard.example.com}}]}]
)"});
  RouteTable table(cfg);
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("svc.example.com", 8080)).target.host, "exact.example.com");
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("svc.example.com", 80)).target.host, "wildcard.example.com");
}

const char* kGatewayBinding = R"(
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: egress, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [edition.cnn.com, "apps/internal.example.com"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cnn, namespace: default}
spec:
  hosts: ["*.cnn.com"]
  gateways: [istio-system/egress]
  http:
  - match: [{uri: {prefix: /special}}]
    route: [{destination: {host: special.cnn.com}}]
  - route: [{destination: {host: cnn-catch-all.example.com}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cnn-more, namespace: default}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-system/egress, mesh]
  http:
  - match: [{uri: {prefix: /more}}]
    route: [{destination: {host: more.cnn.com}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: internal, namespace: default}
spec:
  hosts: [internal.example.com]
  gateways: [istio-system/egress]
  http: [{route: [{destination: {host: internal.example.com}}]}]
)";

TEST(GatewayRouting, DomainsAreTheIntersectionWithServerHosts) {
  auto cfg = load_config({kGatewayBinding});
  RouteTable table(cfg);
  auto scope = RouteScope::gateway("egress", "istio-system");
  auto d = table.route_http(scope, get("edition.cnn.com", 80, "/special"));
  ASSERT_EQ(d.outcome, RouteOutcome::kRoute) << d.reason.view();
  EXPECT_EQ(d.target.host, "special.cnn.com");
  EXPECT_EQ(d.matched_domain, "edition.cnn.com");
  // The server only offers edition.cnn.com out of *.cnn.com.
  EXPECT_EQ(table.route_http(scope, get("money.cnn.com", 80)).outcome, RouteOutcome::kNoVirtualService);
  // No server on port 8080.
  EXPECT_EQ(table.route_http(scope, get("edition.cnn.com", 8080)).outcome, RouteOutcome::kNoVirtualService);
  // "apps/internal.example.com" is offered to namespace apps only.
  EXPECT_EQ(table.route_http(scope, get("internal.example.com", 80)).outcome, RouteOutcome::kNoVirtualService);
}

TEST(GatewayRouting, VirtualServicesSharingADomainMergeWithCatchAllsLast) {
  auto cfg = load_config({kGatewayBinding});
  RouteTable table(cfg);
  auto scope = RouteScope::gateway("egress", "istio-system");
  // cnn's catch-all moves behind cnn-more's /more route.
  EXPECT_EQ(table.route_http(scope, get("edition.cnn.com", 80, "/more")).target.host, "more.cnn.com");
  auto rest = table.route_http(scope, get("edition.cnn.com", 80, "/other"));
  EXPECT_EQ(rest.target.host, "cnn-catch-all.example.com");
  EXPECT_EQ(rest.virtual_service->meta.name, "cnn");
  // A sidecar sees only cnn-more (cnn is not bound to mesh): no merge there.
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("edition.cnn.com", 80, "/other")).outcome,
            RouteOutcome::kNoRouteMatched);
}

TEST(GatewayRouting, GatewayReferencesResolveLikeIstio) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: short, namespace: edge}
spec:
  hosts: [short.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: a.example.com}}]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.example.com]
  gateways: [gw.edge.svc.cluster.local]
  http: [{route: [{destination: {host: b.example.com}}]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: elsewhere, namespace: default}
spec:
  hosts: [elsewhere.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: c.example.com}}]}]
)"});
  RouteTable table(cfg);
  auto scope = RouteScope::gateway("gw", "edge");
  EXPECT_EQ(table.route_http(scope, get("short.example.com", 80)).outcome, RouteOutcome::kRoute);
  EXPECT_EQ(table.route_http(scope, get("legacy.example.com", 80)).outcome, RouteOutcome::kRoute);
  // "gw" in namespace default means default/gw.
  EXPECT_EQ(table.route_http(scope, get("elsewhere.example.com", 80)).outcome, RouteOutcome::kNoVirtualService);
  // None of them lists mesh.
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("short.example.com", 80)).outcome,
            RouteOutcome::kNoVirtualService);
}

TEST(Routing, SourceLabelsNeedAKnownSource) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: by-source}
spec:
  hosts: [src.example.com]
  http:
  - match: [{sourceLabels: {app: billing}}]
    route: [{destination: {host: billing-path.example.com}}]
  - match: [{sourceNamespace: payments}]
    route: [{destination: {host: payments-path.example.com}}]
  - route: [{destination: {host: default-path.example.com}}]
)"});
  RouteTable table(cfg);
  EXPECT_EQ(table.route_http(RouteScope::sidecar(), get("src.example.com", 80)).target.host,
            "default-path.example.com");
  // The scope refers to them (they live in the config snapshot in the proxy).
  const config::Labels billing_labels = {{"app", "billing"}, {"version", "v1"}};
  const config::Labels web_labels = {{"app", "web"}};
  auto billing = RouteScope::sidecar();
  billing.with_source(billing_labels, "finance");
  EXPECT_EQ(table.route_http(billing, get("src.example.com", 80)).target.host, "billing-path.example.com");
  auto payments = RouteScope::sidecar();
  payments.with_source(web_labels, "payments");
  EXPECT_EQ(table.route_http(payments, get("src.example.com", 80)).target.host, "payments-path.example.com");
}

// ---------------------------------------------------------------------------
// Actions

TEST(Routing, WeightsSplitByPick) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: canary}
spec:
  hosts: [canary.example.com]
  http:
  - route:
    - {destination: {host: stable.example.com}, weight: 75}
    - {destination: {host: never.example.com}, weight: 0}
    - {destination: {host: canary.example.com}, weight: 25}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: lone}
spec:
  hosts: [lone.example.com]
  http: [{route: [{destination: {host: lone.example.com}, weight: 10}]}]
)"});
  RouteTable table(cfg);
  std::map<std::string, int> counts;
  for (uint64_t pick = 0; pick < 1000; ++pick) {
    HttpRequest r = get("canary.example.com", 80);
    r.pick = pick;
    counts[std::string(table.route_http(RouteScope::sidecar(), r).target.host)]++;
  }
  EXPECT_EQ(counts["stable.example.com"], 750);
  EXPECT_EQ(counts["canary.example.com"], 250);
  EXPECT_EQ(counts.count("never.example.com"), 0u);
  HttpRequest r = get("canary.example.com", 80);
  r.pick = 99;  // 99 % 100 = 99 → past stable's 75
  auto d = table.route_http(RouteScope::sidecar(), r);
  EXPECT_EQ(d.destination_index, 2u);
  EXPECT_NE(d.reason.view().find("destination 2 of 3 (weight 25 of 100)"), std::string::npos) << d.reason.view();
  // A lone destination takes everything whatever its weight.
  for (uint64_t pick : {0ull, 9ull, 10ull, 12345ull}) {
    HttpRequest lr = get("lone.example.com", 80);
    lr.pick = pick;
    EXPECT_EQ(table.route_http(RouteScope::sidecar(), lr).target.host, "lone.example.com");
  }
}

TEST(Routing, DestinationPortDefaultsToTheServicesOnlyPort) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: single}
spec:
  hosts: [single.example.com]
  ports: [{number: 8443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: to-single}
spec:
  hosts: [front.example.com]
  http:
  - match: [{uri: {prefix: /single}}]
    route: [{destination: {host: single.example.com}}]
  - route: [{destination: {host: other.example.com}}]
)"});
  RouteTable table(cfg);
  auto d = table.route_http(RouteScope::sidecar(), get("front.example.com", 80, "/single"));
  EXPECT_EQ(d.target.port, 8443u);
  EXPECT_EQ(d.target.port_source, RouteTarget::PortSource::kServiceSinglePort);
  d = table.route_http(RouteScope::sidecar(), get("front.example.com", 80, "/x"));
  EXPECT_EQ(d.target.port, 80u);
  EXPECT_EQ(d.target.port_source, RouteTarget::PortSource::kRequest);
}

TEST(Routing, RewriteAndRouteSettings) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: rewrites}
spec:
  hosts: [rw.example.com]
  http:
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v1, authority: backend.example.com}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "gateway-error,503,reset"}
    headers:
      request: {set: {x-from: sluice}}
    route: [{destination: {host: backend.example.com}, headers: {response: {remove: [server]}}}]
  - match: [{uri: {exact: /old/page}}]
    rewrite: {uri: /new/page}
    retries: {attempts: 0}
    route: [{destination: {host: backend.example.com}}]
  - rewrite: {uri: /bar}
    route: [{destination: {host: backend.example.com}}]
)"});
  RouteTable table(cfg);
  auto d = table.route_http(RouteScope::sidecar(), get("rw.example.com", 80, "/api/users?x=1"));
  ASSERT_EQ(d.outcome, RouteOutcome::kRoute);
  EXPECT_EQ(d.rewritten_path("/api/users?x=1"), "/v1/users?x=1");
  EXPECT_EQ(d.authority_rewrite, "backend.example.com");
  ASSERT_TRUE(d.timeout.has_value());
  EXPECT_EQ(d.timeout->count(), 3000);
  ASSERT_NE(d.retries, nullptr);
  EXPECT_FALSE(d.retries->is_default);
  EXPECT_EQ(d.retries->num_retries, 4u);
  EXPECT_EQ(d.retries->retry_on, "gateway-error,reset,retriable-status-codes");
  EXPECT_EQ(d.retries->retriable_status_codes, std::vector<uint32_t>{503});
  ASSERT_TRUE(d.retries->per_try_timeout.has_value());
  EXPECT_EQ(d.retries->per_try_timeout->count(), 500);
  ASSERT_NE(d.route_headers, nullptr);
  EXPECT_EQ(d.route_headers->request->set.at("x-from"), "sluice");
  ASSERT_NE(d.destination_headers, nullptr);
  EXPECT_EQ(d.destination_headers->response->remove, std::vector<std::string>{"server"});

  d = table.route_http(RouteScope::sidecar(), get("rw.example.com", 80, "/old/page?q=2"));
  EXPECT_EQ(d.rewritten_path("/old/page?q=2"), "/new/page?q=2") << "an exact match rewrites the whole path";
  EXPECT_EQ(d.retries, nullptr) << "attempts 0 disables retries";

  // No uri match is Istio's prefix "/": "/foo" becomes "/barfoo".
  d = table.route_http(RouteScope::sidecar(), get("rw.example.com", 80, "/foo"));
  EXPECT_EQ(d.rewritten_path("/foo"), "/barfoo");
}

// A VirtualService for rx.example.com with these http rules (YAML list
// items, two spaces in): the uriRegexRewrite tests'.
std::string rx_virtual_service(const char* http_rules) {
  return std::string("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: rx}\n"
                     "spec:\n  hosts: [rx.example.com]\n  http:\n") +
         http_rules;
}

// rewrite.uriRegexRewrite is Envoy's regex_rewrite: every match of the
// pattern in the path (not the query string, which is kept) is replaced,
// \N naming capture group N (RE2's rewrite syntax; a digit after it and a
// '$' stay literal).
TEST(Routing, UriRegexRewriteReplacesEveryMatchInThePath) {
  const std::string vs = rx_virtual_service(R"(  - match: [{uri: {prefix: /service}}]
    rewrite:
      uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}
    route: [{destination: {host: backend.example.com}}]
  - match: [{uri: {prefix: /dup}}]
    rewrite:
      uriRegexRewrite: {match: '(a)', rewrite: '[\0]\15$'}
    route: [{destination: {host: backend.example.com}}]
)");
  auto cfg = load_config({vs.c_str()});
  RouteTable table(cfg);
  auto d = table.route_http(RouteScope::sidecar(), get("rx.example.com", 80, "/service/foo/v1/api?x=/service/y"));
  ASSERT_EQ(d.outcome, RouteOutcome::kRoute);
  EXPECT_TRUE(d.has_path_rewrite());
  EXPECT_EQ(d.rewritten_path("/service/foo/v1/api?x=/service/y"), "/v1/api/instance/foo?x=/service/y");
  d = table.route_http(RouteScope::sidecar(), get("rx.example.com", 80, "/dup/banana"));
  EXPECT_EQ(d.rewritten_path("/dup/banana"), "/dup/b[a]a5$n[a]a5$n[a]a5$") << "every match";
  // A path the pattern does not match goes unchanged.
  d = table.route_http(RouteScope::sidecar(), get("rx.example.com", 80, "/service"));
  EXPECT_EQ(d.rewritten_path("/service"), "/service");
}

// RE2::GlobalReplace's corners: an empty match right after the previous
// match is skipped (not replaced), a rewrite naming a group the pattern
// lacks changes nothing (explain says why), an invalid escape ends that
// replacement.
TEST(Routing, UriRegexRewriteFollowsRe2GlobalReplace) {
  const std::string vs = rx_virtual_service(R"(  - match: [{uri: {prefix: /empty}}]
    rewrite: {uriRegexRewrite: {match: 'x*', rewrite: 'R'}}
    route: [{destination: {host: backend.example.com}}]
  - match: [{uri: {prefix: /group}}]
    rewrite: {uriRegexRewrite: {match: '/group/(.*)', rewrite: '/\2'}}
    route: [{destination: {host: backend.example.com}}]
  - match: [{uri: {prefix: /escape}}]
    rewrite: {uriRegexRewrite: {match: 'e', rewrite: 'E\q!'}}
    route: [{destination: {host: backend.example.com}}]
)");
  auto cfg = load_config({vs.c_str()});
  RouteTable table(cfg);
  auto d = table.route_http(RouteScope::sidecar(), get("rx.example.com", 80, "/emptyx"));
  EXPECT_EQ(d.rewritten_path("/xab"), "R/RaRbR");
  d = table.route_http(RouteScope::sidecar(), get("rx.example.com", 80, "/group/a"));
  EXPECT_FALSE(d.has_path_rewrite());
  EXPECT_NE(d.reason.str().find("uriRegexRewrite not applied (the rewrite names group \\2, the pattern has 1)"),
            std::string::npos)
      << d.reason.str();
  d = table.route_http(RouteScope::sidecar(), get("rx.example.com", 80, "/escape"));
  EXPECT_EQ(d.rewritten_path("/escape?e=1"), "/EscapE?e=1");
}

TEST(Routing, RedirectsAndDirectResponses) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: redirects}
spec:
  hosts: [old.example.com]
  http:
  - match: [{uri: {prefix: /moved}}]
    redirect: {uri: /new-home}
  - match: [{uri: {prefix: /elsewhere}}]
    redirect: {authority: new.example.com, redirectCode: 302}
  - match: [{uri: {prefix: /secure}}]
    redirect: {scheme: https}
  - match: [{uri: {prefix: /port}}]
    redirect: {port: 8443, scheme: https}
  - match: [{uri: {prefix: /gone}}]
    directResponse: {status: 410, body: {string: "gone for good"}}
)"});
  RouteTable table(cfg);
  auto d = table.route_http(RouteScope::sidecar(), get("old.example.com", 80, "/moved/x?a=1"));
  ASSERT_EQ(d.outcome, RouteOutcome::kRedirect) << d.reason.view();
  EXPECT_EQ(d.status, 301u);
  EXPECT_EQ(d.location, "http://old.example.com/new-home?a=1");
  d = table.route_http(RouteScope::sidecar(), get("old.example.com", 80, "/elsewhere"));
  EXPECT_EQ(d.status, 302u);
  EXPECT_EQ(d.location, "http://new.example.com/elsewhere");
  d = table.route_http(RouteScope::sidecar(), get("old.example.com", 80, "/gone"));
  ASSERT_EQ(d.outcome, RouteOutcome::kDirectResponse);
  EXPECT_EQ(d.status, 410u);
  ASSERT_TRUE(d.body.has_value());
  EXPECT_EQ(*d.body, "gone for good");
}

TEST(RedirectLocation, FollowsEnvoyNewUri) {
  HttpRequest r = get("shop.example.com", 80, "/cart?id=7");
  config::HTTPRedirect rd;
  EXPECT_EQ(build_redirect_location(rd, r), "http://shop.example.com/cart?id=7");
  // The request's authority keeps its port while the scheme stays.
  r.authority = "shop.example.com:8080";
  EXPECT_EQ(build_redirect_location(rd, r), "http://shop.example.com:8080/cart?id=7");
  // A new port replaces it.
  rd.port = 9090;
  EXPECT_EQ(build_redirect_location(rd, r), "http://shop.example.com:9090/cart?id=7");
  // Istio leaves out a port that is the new scheme's default, so Envoy sees
  // no port redirect and keeps the request's own (non-default) port.
  rd.port = 443;
  rd.scheme = "https";
  EXPECT_EQ(build_redirect_location(rd, r), "https://shop.example.com:8080/cart?id=7");
  r.authority = "shop.example.com";
  EXPECT_EQ(build_redirect_location(rd, r), "https://shop.example.com/cart?id=7");
  // Changing scheme drops the old scheme's default port.
  rd.port = 0;
  r.authority = "shop.example.com:80";
  EXPECT_EQ(build_redirect_location(rd, r), "https://shop.example.com/cart?id=7");
  // ...but not another port.
  r.authority = "shop.example.com:8080";
  EXPECT_EQ(build_redirect_location(rd, r), "https://shop.example.com:8080/cart?id=7");
  // An authority is taken verbatim (Envoy drops the request port).
  rd = {};
  rd.authority = "store.example.com";
  EXPECT_EQ(build_redirect_location(rd, r), "http://store.example.com/cart?id=7");
  // A uri with its own query string replaces the request's.
  rd.uri = "/basket?from=cart";
  EXPECT_EQ(build_redirect_location(rd, r), "http://store.example.com/basket?from=cart");
  // IPv6 literal with port.
  rd = {};
  rd.port = 8443;
  r.authority = "[2001:db8::1]:8080";
  EXPECT_EQ(build_redirect_location(rd, r), "http://[2001:db8::1]:8443/cart?id=7");
}

// ---------------------------------------------------------------------------
// TLS and TCP

const char* kL4 = R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: tls-routes}
spec:
  hosts: ["*.example.org"]
  tls:
  - match: [{sniHosts: [secure.example.org], port: 443, destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: internal.example.org, port: {number: 8443}}}]
  - match: [{sniHosts: ["*.example.org"], port: 443}]
    route:
    - {destination: {host: a.example.org}, weight: 50}
    - {destination: {host: b.example.org}, weight: 50}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: tcp-routes}
spec:
  hosts: [db.example.net]
  tcp:
  - match: [{port: 5432, destinationSubnets: ["192.0.2.0/24", "2001:db8::/32"]}]
    route: [{destination: {host: primary.example.net}}]
  - match: [{port: 5432}]
    route: [{destination: {host: replica.example.net}}]
)";

TEST(L4Routing, TlsBySniPortAndSubnet) {
  auto cfg = load_config({kL4});
  RouteTable table(cfg);
  auto d = table.route_tls(RouteScope::sidecar(), "secure.example.org", 443, ip("10.1.2.3"), 0);
  ASSERT_EQ(d.outcome, RouteOutcome::kRoute) << d.reason.view();
  EXPECT_EQ(d.target.cluster_name(), "outbound|8443||internal.example.org");
  // Same SNI from outside the subnet: the wildcard rule.
  d = table.route_tls(RouteScope::sidecar(), "secure.example.org", 443, ip("203.0.113.5"), 0);
  EXPECT_EQ(d.rule_index, 1u);
  EXPECT_EQ(d.target.host, "a.example.org");
  d = table.route_tls(RouteScope::sidecar(), "secure.example.org", 443, ip("203.0.113.5"), 51);
  EXPECT_EQ(d.target.host, "b.example.org");
  EXPECT_EQ(d.target.port, 443u);
  // Port 8443: the VirtualService has no TLS route there.
  EXPECT_EQ(table.route_tls(RouteScope::sidecar(), "x.example.org", 8443, ip("10.1.2.3"), 0).outcome,
            RouteOutcome::kNoVirtualService);
}

TEST(L4Routing, TlsWithoutMatchingRouteIsNoMatch) {
  auto cfg = load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: narrow}
spec:
  hosts: ["*.example.org"]
  tls:
  - match: [{sniHosts: [only.example.org]}]
    route: [{destination: {host: only.example.org}}]
)"});
  RouteTable table(cfg);
  RouteTrace trace;
  auto d = table.route_tls(RouteScope::sidecar(), "other.example.org", 443, ip("10.1.2.3"), 0, &trace);
  EXPECT_EQ(d.outcome, RouteOutcome::kNoRouteMatched) << d.reason.view();
  EXPECT_NE(dump(trace).find("sniHosts [only.example.org] do not match"), std::string::npos) << dump(trace);
  EXPECT_EQ(table.route_tls(RouteScope::sidecar(), "", 443, ip("10.1.2.3"), 0).outcome,
            RouteOutcome::kNoVirtualService);
}

TEST(L4Routing, TcpByPortAndSubnet) {
  auto cfg = load_config({kL4});
  RouteTable table(cfg);
  auto d = table.route_tcp(RouteScope::sidecar(), 5432, ip("192.0.2.10"), 0, "db.example.net");
  ASSERT_EQ(d.outcome, RouteOutcome::kRoute) << d.reason.view();
  EXPECT_EQ(d.target.host, "primary.example.net");
  EXPECT_EQ(d.target.port, 5432u);
  EXPECT_EQ(table.route_tcp(RouteScope::sidecar(), 5432, ip("2001:db8::5"), 0, "db.example.net").target.host,
            "primary.example.net");
  EXPECT_EQ(table.route_tcp(RouteScope::sidecar(), 5432, ip("::ffff:192.0.2.10"), 0, "db.example.net").target.host,
            "primary.example.net")
      << "IPv4-mapped addresses match IPv4 subnets";
  EXPECT_EQ(table.route_tcp(RouteScope::sidecar(), 5432, ip("198.51.100.1"), 0, "db.example.net").target.host,
            "replica.example.net");
  // Without a host, every bound VirtualService with tcp routes is tried.
  EXPECT_EQ(table.route_tcp(RouteScope::sidecar(), 5432, ip("192.0.2.10"), 0).target.host, "primary.example.net");
  EXPECT_EQ(table.route_tcp(RouteScope::sidecar(), 3306, ip("192.0.2.10"), 0).outcome,
            RouteOutcome::kNoVirtualService);
}

TEST(ReasonTextTest, TruncatesWithAnEllipsis) {
  ReasonText r;
  r.append("start ");
  r.append(std::string(1000, 'x'));
  EXPECT_TRUE(r.truncated());
  EXPECT_EQ(r.view().size(), ReasonText::kCapacity);
  EXPECT_EQ(r.view().substr(r.view().size() - 3), "...");
  r.append("more");  // ignored once full
  EXPECT_EQ(r.view().size(), ReasonText::kCapacity);
  ReasonText copy = r;
  EXPECT_EQ(copy.view(), r.view());
  ReasonText f;
  f.appendf("%s=%d", "port", 80).append(" ").append(uint64_t{42});
  EXPECT_EQ(f.view(), "port=80 42");
}

TEST(ReasonTextTest, OffIgnoresAppendsAndStaysOffWhenCopied) {
  ReasonText r;
  r.append("kept? ");
  r.off();
  EXPECT_FALSE(r.on());
  r.append("x").appendf("%d", 1).append(uint64_t{2});
  EXPECT_TRUE(r.empty());
  ReasonText copy = r;
  copy.append("y");
  EXPECT_TRUE(copy.empty());
  EXPECT_FALSE(copy.on());
}

// The data path's per-request routing: the same decision without its reason
// (a trace asked for turns it back on).
TEST(WalkthroughRouting, WithoutExplainTheDecisionIsTheSameAndHasNoReason) {
  auto cfg = load_dir("configs/walkthrough");
  RouteTable table(cfg);
  for (const char* host : {"edition.cnn.com", "www.google.com"}) {
    auto full = table.route_http(RouteScope::sidecar(), get(host, 80, "/politics"));
    auto quiet = table.route_http(RouteScope::sidecar(), get(host, 80, "/politics"), nullptr, false);
    EXPECT_FALSE(full.reason.empty());
    EXPECT_TRUE(quiet.reason.empty()) << quiet.reason.view();
    EXPECT_EQ(quiet.outcome, full.outcome);
    EXPECT_EQ(quiet.target.host, full.target.host);
    EXPECT_EQ(quiet.target.subset, full.target.subset);
    EXPECT_EQ(quiet.rule_index, full.rule_index);
    RouteTrace trace;
    auto traced = table.route_http(RouteScope::sidecar(), get(host, 80, "/politics"), &trace, false);
    EXPECT_EQ(traced.reason.view(), full.reason.view());
  }
}

}  // namespace
}  // namespace sluice::policy
