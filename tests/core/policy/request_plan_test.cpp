// End-to-end decisions (outbound policy -> routes -> DestinationRule ->
// endpoints -> TLS) for the walkthrough's gateway section and the istio.io
// variants, in both roles: what the kernel e2e test then checks on the wire.
#include "core/policy/request_plan.h"
#include "core/policy/sidecar_scope.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "core/config/loader.h"
#include "core/policy/load_balancer.h"
#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using config::ClientTLSMode;
using config::OutboundTrafficPolicyMode;
using sluice::test_support::load_config;

constexpr const char* kGatewayHost = "istio-egressgateway.istio-system.svc.cluster.local";
constexpr const char* kGatewayId = "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account";

// A config snapshot's tables, as the proxy builds them.
struct Tables {
  explicit Tables(config::ConfigSet c, const std::map<std::string, std::string>& gateway_labels = {})
      : config(std::move(c)), registry(config), routes(config), destinations(config), servers(config, gateway_labels) {}
  PlanTables tables(OutboundTrafficPolicyMode mode = OutboundTrafficPolicyMode::kRegistryOnly) const {
    return {&config, &registry, &routes, &destinations, mode};
  }
  config::ConfigSet config;
  Registry registry;
  RouteTable routes;
  DestinationRules destinations;
  GatewayServers servers;
};

std::unique_ptr<Tables> load(const std::vector<std::string>& rels) {
  return std::make_unique<Tables>(test_support::load_repo_paths(rels),
                                  std::map<std::string, std::string>{{"istio", "egressgateway"}});
}

PlanRequest http(const char* host, uint16_t port, const char* ip = "203.0.113.10") {
  PlanRequest r;
  r.traffic = Traffic::kHttp;
  r.original_ip = *decision::IpAddress::parse(ip);
  r.port = port;
  r.host = host;
  return r;
}

PlanRequest tls(const char* sni, uint16_t port, const char* ip = "203.0.113.10") {
  PlanRequest r = http(sni, port, ip);
  r.traffic = Traffic::kTls;
  return r;
}

// The sidecar's plan for "GET path" to host:port.
RequestPlan plan_get(const Tables& t, const char* host, uint16_t port, const char* path) {
  HttpRequest req;
  req.path = path;
  req.method = "GET";
  PlanRequest r = http(host, port);
  r.http = &req;
  return plan_sidecar(t.tables(), r);
}

// A VirtualService for edition.cnn.com with these http rules (YAML list
// items, two spaces in), as a document for load_config.
std::string cnn_virtual_service(const char* http_rules) {
  return std::string("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: cnn}\n"
                     "spec:\n  hosts: [edition.cnn.com]\n  http:\n") +
         http_rules;
}

std::string steps(const RequestPlan& p) {
  std::string out;
  for (const auto& s : p.steps) out += "  " + s + "\n";
  return out;
}

TEST(RequestPlanTest, WalkthroughSidecarSendsCnnToTheGatewaySubsetOverIstioMutual) {
  auto t = load({"configs/walkthrough"});
  RequestPlan p = plan_sidecar(t->tables(), http("edition.cnn.com", 80));
  ASSERT_EQ(p.kind, RequestPlan::Kind::kForward) << steps(p);
  EXPECT_EQ(p.cluster, std::string("outbound|80|cnn|") + kGatewayHost);
  EXPECT_EQ(p.forward.host, kGatewayHost);
  EXPECT_EQ(p.forward.subset, "cnn");
  EXPECT_EQ(p.forward.port, 80u);
  // No ServiceEntry declares the gateway's service: its name is resolved.
  EXPECT_EQ(p.forward.upstream.kind, UpstreamPlan::Kind::kDns);
  ASSERT_EQ(p.forward.upstream.endpoints.size(), 1u);
  EXPECT_EQ(p.forward.upstream.endpoints[0].dns_name, kGatewayHost);
  EXPECT_EQ(p.forward.upstream.endpoints[0].port, 80);
  EXPECT_EQ(p.forward.tls_mode, ClientTLSMode::kIstioMutual);
  EXPECT_EQ(p.forward.sni, "edition.cnn.com");
  EXPECT_EQ(p.forward.expected_sans, std::vector<std::string>{kGatewayId});
  EXPECT_EQ(p.forward.policy.lb, config::SimpleLB::kRoundRobin);
  EXPECT_GE(p.steps.size(), 4u) << steps(p);
}

// The data plane asks without the explanation: the same decision, no steps.
TEST(RequestPlanTest, WithoutExplainTheDecisionIsTheSameAndNoStepsAreBuilt) {
  auto t = load({"configs/walkthrough"});
  PlanRequest quiet = http("edition.cnn.com", 80);
  quiet.explain = false;
  RequestPlan full = plan_sidecar(t->tables(), http("edition.cnn.com", 80));
  RequestPlan p = plan_sidecar(t->tables(), quiet);
  EXPECT_TRUE(p.steps.empty());
  EXPECT_FALSE(full.steps.empty());
  EXPECT_EQ(p.kind, full.kind);
  EXPECT_EQ(p.cluster, full.cluster);
  EXPECT_EQ(p.forward.sni, full.forward.sni);
  EXPECT_EQ(p.forward.expected_sans, full.forward.expected_sans);
  EXPECT_EQ(p.forward.tls_mode, full.forward.tls_mode);
  ASSERT_EQ(p.forward.upstream.endpoints.size(), full.forward.upstream.endpoints.size());
  EXPECT_EQ(p.forward.upstream.endpoints[0].dns_name, full.forward.upstream.endpoints[0].dns_name);
}

// At a gateway, sourceLabels and sourceNamespace match the gateway's own
// labels and namespace (Istio's sourceMatchHTTP takes the proxy's).
TEST(RequestPlanTest, AGatewayMatchesSourceLabelsAgainstItsOwn) {
  const config::ConfigSet all = load_config({R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [api.example.com]
)", R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: istio-system}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 8080, name: http-alt, protocol: HTTP}]
  resolution: DNS
)", R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: istio-system}
spec:
  hosts: [api.example.com]
  gateways: [istio-egressgateway]
  http:
  - match: [{sourceLabels: {istio: egressgateway}, sourceNamespace: istio-system}]
    route: [{destination: {host: api.example.com, port: {number: 8080}}}]
  - route: [{destination: {host: api.example.com, port: {number: 80}}}]
)"});
  auto port_for = [&](const char* ns, bool known) {
    WorkloadIdentity w;
    w.namespace_ = ns;
    w.labels = {{"istio", "egressgateway"}};
    w.source = known;
    Tables t(proxy_view(all, w, /*gateway=*/true).config, {{"istio", "egressgateway"}});
    EXPECT_EQ(t.servers.on_port(80).size(), 1u);
    if (t.servers.on_port(80).empty()) return 0u;
    return plan_gateway(t.tables(), t.servers.on_port(80)[0], http("api.example.com", 80, "10.20.1.2")).forward.port;
  };
  EXPECT_EQ(port_for("istio-system", true), 8080u);
  EXPECT_EQ(port_for("egress", true), 80u) << "sourceNamespace is the gateway's";
  EXPECT_EQ(port_for("istio-system", false), 80u) << "without its identity nothing matches";
}

TEST(RequestPlanTest, WalkthroughHttpsFollowUpGoesDirectByTheServiceEntry) {
  auto t = load({"configs/walkthrough"});
  RequestPlan p = plan_sidecar(t->tables(), tls("edition.cnn.com", 443));
  ASSERT_EQ(p.kind, RequestPlan::Kind::kForward) << steps(p);
  EXPECT_EQ(p.cluster, "outbound|443||edition.cnn.com");
  EXPECT_EQ(p.forward.upstream.kind, UpstreamPlan::Kind::kDns);
  EXPECT_EQ(p.forward.tls_mode, ClientTLSMode::kDisable);
}

TEST(RequestPlanTest, WalkthroughGatewaySendsCnnOutInPlainHttp) {
  auto t = load({"configs/walkthrough"});
  ASSERT_EQ(t->servers.on_port(80).size(), 1u);
  const GatewayServerRef& server = t->servers.on_port(80)[0];
  RequestPlan p = plan_gateway(t->tables(), server, http("edition.cnn.com", 80, "10.20.1.2"));
  ASSERT_EQ(p.kind, RequestPlan::Kind::kForward) << steps(p);
  EXPECT_EQ(p.cluster, "outbound|80||edition.cnn.com");
  EXPECT_EQ(p.forward.upstream.kind, UpstreamPlan::Kind::kDns);
  EXPECT_EQ(p.forward.upstream.endpoints[0].dns_name, "edition.cnn.com");
  EXPECT_EQ(p.forward.tls_mode, ClientTLSMode::kDisable);
  EXPECT_NE(p.steps.front().find("Gateway server"), std::string::npos);
}

TEST(RequestPlanTest, GatewayAnswers404ForAHostNoVirtualServiceBinds) {
  auto t = load({"configs/walkthrough"});
  const GatewayServerRef& server = t->servers.on_port(80)[0];
  RequestPlan p = plan_gateway(t->tables(), server, http("www.example.org", 80, "10.20.1.2"));
  EXPECT_EQ(p.kind, RequestPlan::Kind::kLocalReply) << steps(p);
  EXPECT_EQ(p.status, 404u);
  EXPECT_EQ(p.response_flags, "NR");
}

TEST(RequestPlanTest, RegistryOnlyStillBlocksUndeclaredHosts) {
  auto t = load({"configs/walkthrough"});
  RequestPlan p = plan_sidecar(t->tables(), http("unknown.example.org", 80, "203.0.113.20"));
  EXPECT_EQ(p.kind, RequestPlan::Kind::kLocalReply);
  EXPECT_EQ(p.status, 502u);
  EXPECT_EQ(p.cluster, "BlackHoleCluster");
  RequestPlan allow = plan_sidecar(t->tables(OutboundTrafficPolicyMode::kAllowAny),
                                   http("unknown.example.org", 80, "203.0.113.20"));
  EXPECT_EQ(allow.kind, RequestPlan::Kind::kForward);
  EXPECT_EQ(allow.cluster, "PassthroughCluster");
  EXPECT_EQ(allow.forward.upstream.kind, UpstreamPlan::Kind::kOriginalDestination);
}

TEST(RequestPlanTest, TlsOriginationAtTheGateway) {
  auto t = load({"configs/variants/tls-origination-gateway"});
  RequestPlan side = plan_sidecar(t->tables(), http("edition.cnn.com", 80));
  EXPECT_EQ(side.forward.tls_mode, ClientTLSMode::kIstioMutual) << steps(side);
  ASSERT_FALSE(t->servers.empty());
  RequestPlan gw = plan_gateway(t->tables(), t->servers.on_port(80)[0], http("edition.cnn.com", 80, "10.20.1.2"));
  ASSERT_EQ(gw.kind, RequestPlan::Kind::kForward) << steps(gw);
  EXPECT_EQ(gw.cluster, "outbound|443||edition.cnn.com");
  EXPECT_EQ(gw.forward.port, 443u);
  EXPECT_EQ(gw.forward.tls_mode, ClientTLSMode::kSimple);
  EXPECT_EQ(gw.forward.sni, "edition.cnn.com");
  ASSERT_EQ(gw.forward.upstream.endpoints.size(), 1u);
  EXPECT_EQ(gw.forward.upstream.endpoints[0].port, 443);
}

TEST(RequestPlanTest, TlsOriginationAtTheSidecarUsesTheTargetPort) {
  auto t = load({"configs/variants/tls-origination-sidecar"});
  RequestPlan p = plan_sidecar(t->tables(), http("edition.cnn.com", 80));
  ASSERT_EQ(p.kind, RequestPlan::Kind::kForward) << steps(p);
  EXPECT_EQ(p.cluster, "outbound|80||edition.cnn.com");
  EXPECT_EQ(p.forward.tls_mode, ClientTLSMode::kSimple);
  EXPECT_EQ(p.forward.sni, "edition.cnn.com") << "auto SNI from the request's Host";
  ASSERT_EQ(p.forward.upstream.endpoints.size(), 1u);
  EXPECT_EQ(p.forward.upstream.endpoints[0].port, 443) << "targetPort";
}

TEST(RequestPlanTest, TlsPassthroughRoutesBySniAtBothHops) {
  auto t = load({"configs/variants/tls-passthrough-gateway"});
  RequestPlan side = plan_sidecar(t->tables(), tls("edition.cnn.com", 443));
  ASSERT_EQ(side.kind, RequestPlan::Kind::kForward) << steps(side);
  EXPECT_EQ(side.cluster, std::string("outbound|443|cnn|") + kGatewayHost);
  EXPECT_EQ(side.forward.tls_mode, ClientTLSMode::kDisable) << "the app's TLS passes through untouched";
  ASSERT_EQ(t->servers.on_port(443).size(), 1u);
  const GatewayServerRef& server = t->servers.on_port(443)[0];
  EXPECT_EQ(server.kind, ServerKind::kTlsPassthrough);
  RequestPlan gw = plan_gateway(t->tables(), server, tls("edition.cnn.com", 443, "10.20.1.2"));
  ASSERT_EQ(gw.kind, RequestPlan::Kind::kForward) << steps(gw);
  EXPECT_EQ(gw.cluster, "outbound|443||edition.cnn.com");
  RequestPlan other = plan_gateway(t->tables(), server, tls("www.cnn.com", 443, "10.20.1.2"));
  EXPECT_EQ(other.kind, RequestPlan::Kind::kClose) << steps(other);
  EXPECT_EQ(other.response_flags, "NR");
}

TEST(RequestPlanTest, MissingSubsetIs503NoCluster) {
  config::ConfigSet cs = load_config({test_support::kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  http:
  - route:
    - destination: {host: edition.cnn.com, subset: v2}
)"});
  Tables t(std::move(cs));
  RequestPlan p = plan_sidecar(t.tables(), http("edition.cnn.com", 80));
  EXPECT_EQ(p.kind, RequestPlan::Kind::kLocalReply) << steps(p);
  EXPECT_EQ(p.status, 503u);
  EXPECT_EQ(p.response_flags, "NC");
  EXPECT_EQ(p.response_code_details, "cluster_not_found");
}

TEST(RequestPlanTest, RedirectsAndDirectResponsesAreLocalReplies) {
  config::ConfigSet cs = load_config({test_support::kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 302}
  - match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: ok}}
  - match: [{uri: {prefix: /api}}]
    route:
    - destination: {host: edition.cnn.com}
)"});
  Tables t(std::move(cs));
  policy::HttpRequest req;
  req.path = "/old/page";
  PlanRequest r = http("edition.cnn.com", 80);
  r.http = &req;
  RequestPlan redirect = plan_sidecar(t.tables(), r);
  EXPECT_EQ(redirect.kind, RequestPlan::Kind::kLocalReply) << steps(redirect);
  EXPECT_EQ(redirect.status, 302u);
  EXPECT_EQ(redirect.location, "http://edition.cnn.com/new");
  req.path = "/health";
  RequestPlan direct = plan_sidecar(t.tables(), r);
  EXPECT_EQ(direct.status, 200u);
  EXPECT_EQ(direct.body, "ok");
  req.path = "/other";
  RequestPlan none = plan_sidecar(t.tables(), r);
  EXPECT_EQ(none.status, 404u);
  EXPECT_EQ(none.response_flags, "NR");
  req.path = "/api/x";
  EXPECT_EQ(plan_sidecar(t.tables(), r).kind, RequestPlan::Kind::kForward);
}

TEST(RequestPlanTest, ExpectedServiceIdentity) {
  EXPECT_EQ(expected_service_identity(kGatewayHost, "cluster.local"), kGatewayId);
  EXPECT_EQ(expected_service_identity("istio-egressgateway.mesh-gw.svc.cluster.local", "corp.example"),
            "spiffe://corp.example/ns/mesh-gw/sa/istio-egressgateway-service-account");
  EXPECT_EQ(expected_service_identity("reviews.default.svc.cluster.local", "cluster.local"), "");
  EXPECT_EQ(expected_service_identity("edition.cnn.com", "cluster.local"), "");
}

// Istio's headers and rewrite on the chosen route: destination-level
// operations first, then the rule's (its set wins), each remove/set/add.
TEST(RequestPlanTest, RouteHeaderOperationsAndRewriteAreInThePlan) {
  Tables t(load_config({R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
)", R"(
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  http:
  - match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /api/v1/, authority: backend.example.com}
    headers:
      request:
        set: {x-route: rule}
        remove: [x-debug]
      response:
        add: {x-served-by: sluice}
    route:
    - destination: {host: api.example.com}
      headers:
        request:
          set: {x-route: destination, x-dest: d}
)"}));
  PlanRequest r = http("api.example.com", 80);
  HttpRequest req;
  req.path = "/v1/items?x=1";
  req.method = "GET";
  r.http = &req;
  RequestPlan p = plan_sidecar(t.tables(), r);
  ASSERT_EQ(p.kind, RequestPlan::Kind::kForward) << steps(p);
  EXPECT_EQ(p.forward.path_rewrite, "/api/v1/items?x=1");
  EXPECT_EQ(p.forward.authority_rewrite, "backend.example.com");
  ASSERT_EQ(p.forward.request_headers.size(), 4u);
  std::vector<std::pair<std::string, std::string>> fields = {
      {"Host", "api.example.com"}, {"X-Route", "client"}, {"x-debug", "1"}, {"x-route", "again"}, {"Accept", "*/*"}};
  apply_header_edits(p.forward.request_headers, fields);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"Host", "api.example.com"}, {"X-Route", "rule"}, {"Accept", "*/*"}, {"x-dest", "d"}};
  EXPECT_EQ(fields, want);
  ASSERT_EQ(p.forward.response_headers.size(), 1u);
  EXPECT_EQ(p.forward.response_headers[0].op, HeaderEdit::Op::kAdd);
  EXPECT_EQ(p.forward.response_headers[0].name, "x-served-by");
  // Another path: the rule does not match, nothing is rewritten.
  req.path = "/v2/items";
  RequestPlan other = plan_sidecar(t.tables(), r);
  EXPECT_TRUE(other.forward.path_rewrite.empty());
  EXPECT_TRUE(other.forward.request_headers.empty());
}

// consistentHash: the request's key in the plan (a made-up cookie's
// Set-Cookie among the response edits), TCP keyed by the client's IP.
TEST(RequestPlanTest, ConsistentHashKeysTheForwardPlan) {
  Tables t(load_config({R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}, {address: 10.0.0.2}]
)", R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: session, ttl: 60s}
    portLevelSettings:
    - port: {number: 5432}
      loadBalancer:
        consistentHash: {useSourceIp: true}
)"}));
  auto client = *decision::IpAddress::parse("10.9.8.7");
  HttpRequest req;
  req.path = "/";
  PlanRequest r = http("api.example.com", 80);
  r.http = &req;
  r.source = &client;
  r.source_port = 40000;
  // No cookie yet: one is made up from the client's address, sent back
  // with the response, and the request already goes where it points.
  RequestPlan first = plan_sidecar(t.tables(), r);
  ASSERT_EQ(first.kind, RequestPlan::Kind::kForward) << steps(first);
  ASSERT_TRUE(first.forward.hash_key.has_value()) << steps(first);
  ASSERT_EQ(first.forward.response_headers.size(), 1u);
  const HeaderEdit& cookie = first.forward.response_headers[0];
  EXPECT_EQ(cookie.op, HeaderEdit::Op::kAdd);
  EXPECT_EQ(cookie.name, "set-cookie");
  EXPECT_EQ(cookie.value.rfind("session=\"", 0), 0u) << cookie.value;
  EXPECT_NE(cookie.value.find("; Max-Age=60; HttpOnly"), std::string::npos) << cookie.value;
  EXPECT_NE(steps(first).find("consistentHash: the request's key hashes to"), std::string::npos) << steps(first);
  // The next request carries it: the same key, nothing set again.
  const std::string sent = cookie.value.substr(0, cookie.value.find(';'));
  std::vector<HeaderField> headers{{"cookie", sent}};
  req.headers = headers;
  r.source_port = 40001;  // another connection of the same client
  RequestPlan next = plan_sidecar(t.tables(), r);
  EXPECT_EQ(next.forward.hash_key, first.forward.hash_key);
  EXPECT_TRUE(next.forward.response_headers.empty());
  // TCP on the port whose rule hashes the source IP.
  PlanRequest tcp;
  tcp.traffic = Traffic::kTcp;
  tcp.original_ip = *decision::IpAddress::parse("10.0.0.1");
  tcp.port = 5432;
  tcp.source = &client;
  RequestPlan opaque = plan_sidecar(t.tables(), tcp);
  ASSERT_EQ(opaque.kind, RequestPlan::Kind::kForward) << steps(opaque);
  EXPECT_EQ(opaque.forward.hash_key, stable_hash("10.9.8.7")) << steps(opaque);
}

// Connect failures are retried per the route's retry policy: Istio's
// default (2 retries) unless the rule says otherwise; TCP tries once.
TEST(RequestPlanTest, ConnectAttemptsFollowTheRetryPolicy) {
  Tables t(load_config({R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 5432, name: tcp, protocol: TCP}]
  resolution: DNS
)", R"(
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  http:
  - match: [{uri: {prefix: /none}}]
    retries: {attempts: 0}
    route: [{destination: {host: api.example.com}}]
  - match: [{uri: {prefix: /five}}]
    retries: {attempts: 4, retryOn: "connect-failure,5xx"}
    route: [{destination: {host: api.example.com}}]
  - match: [{uri: {prefix: /status}}]
    retries: {attempts: 4, retryOn: "5xx"}
    route: [{destination: {host: api.example.com}}]
  - match: [{uri: {prefix: /gateway}}]
    retries: {attempts: 2, retryOn: "gateway-error"}
    route: [{destination: {host: api.example.com}}]
  - match: [{uri: {prefix: /reset}}]
    retries: {attempts: 3, retryOn: "reset"}
    route: [{destination: {host: api.example.com}}]
  - match: [{uri: {prefix: /codes}}]
    retries: {attempts: 3, retryOn: "retriable-status-codes,retriable-4xx"}
    route: [{destination: {host: api.example.com}}]
  - route: [{destination: {host: api.example.com}}]
)"}));
  auto attempts = [&](const char* path) {
    RequestPlan p = plan_get(t, "api.example.com", 80, path);
    EXPECT_EQ(p.kind, RequestPlan::Kind::kForward) << steps(p);
    return p.forward.connect_attempts;
  };
  EXPECT_EQ(attempts("/default"), 3u);
  EXPECT_EQ(attempts("/none"), 1u);
  EXPECT_EQ(attempts("/five"), 5u);
  // Envoy's 5xx, gateway-error and reset take a failed connect (no
  // response) as theirs; status-code conditions alone do not.
  EXPECT_EQ(attempts("/status"), 5u);
  EXPECT_EQ(attempts("/gateway"), 3u);
  EXPECT_EQ(attempts("/reset"), 4u);
  EXPECT_EQ(attempts("/codes"), 1u);
  PlanRequest tcp = http("api.example.com", 5432);
  tcp.traffic = Traffic::kTcp;
  tcp.host.clear();
  EXPECT_EQ(plan_sidecar(t.tables(), tcp).forward.connect_attempts, 1u);
}

TEST(RequestPlanTest, FaultSamplingFollowsEachPercentageIndependently) {
  config::HTTPFaultInjection f;
  f.delay = config::HTTPFaultInjection::Delay{config::Duration(1500), config::Percent{100}};
  f.abort = config::HTTPFaultInjection::Abort{503, config::Percent{100}};
  for (uint64_t pick : {0ULL, 1ULL, 42ULL, ~0ULL}) {
    FaultDecision d = sample_fault(f, pick);
    EXPECT_EQ(d.delay.count(), 1500);
    EXPECT_EQ(d.abort_status, 503u);
  }
  // No percentage selects no request (Envoy's default when Istio sets none);
  // nor does 0 %, nor a delay without fixedDelay.
  config::HTTPFaultInjection none;
  none.delay = config::HTTPFaultInjection::Delay{config::Duration(1500), std::nullopt};
  none.abort = config::HTTPFaultInjection::Abort{503, config::Percent{0}};
  config::HTTPFaultInjection no_delay;
  no_delay.delay = config::HTTPFaultInjection::Delay{std::nullopt, config::Percent{100}};
  // 25 % delay, 50 % abort over many requests: about that many, and the two
  // chosen independently (about 12.5 % both).
  config::HTTPFaultInjection some;
  some.delay = config::HTTPFaultInjection::Delay{config::Duration(10), config::Percent{25}};
  some.abort = config::HTTPFaultInjection::Abort{500, config::Percent{50}};
  int delayed = 0, aborted = 0, both = 0;
  uint64_t pick = 0x2545F4914F6CDD1DULL;
  for (int i = 0; i < 20000; ++i) {
    pick = pick * 6364136223846793005ULL + 1442695040888963407ULL;  // the proxy's per-request draw
    FaultDecision n = sample_fault(none, pick);
    EXPECT_EQ(n.delay.count(), 0);
    EXPECT_EQ(n.abort_status, 0u);
    EXPECT_EQ(sample_fault(no_delay, pick).delay.count(), 0);
    FaultDecision d = sample_fault(some, pick);
    delayed += d.delay.count() > 0;
    aborted += d.abort_status != 0;
    both += d.delay.count() > 0 && d.abort_status != 0;
  }
  EXPECT_NEAR(delayed, 5000, 400);
  EXPECT_NEAR(aborted, 10000, 400);
  EXPECT_NEAR(both, 2500, 300);
}

TEST(RequestPlanTest, ResponseFlagsMergeInEnvoysOrder) {
  EXPECT_EQ(merge_response_flags("", "UT"), "UT");
  EXPECT_EQ(merge_response_flags("-", "-"), "");
  EXPECT_EQ(merge_response_flags("DI", "UT,URX"), "UT,DI,URX");
  EXPECT_EQ(merge_response_flags("FI,DI", "DI"), "DI,FI");
  EXPECT_EQ(merge_response_flags("UF,UT", ""), "UT,UF");
  EXPECT_EQ(merge_response_flags("DI", "NC"), "DI,NC");
}

TEST(RequestPlanTest, FaultAbortAnswersBeforeTheRouteAndDelayHoldsIt) {
  const std::string vs = cnn_virtual_service(R"(  - name: abort
    match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: edition.cnn.com}}]
  - name: delay
    match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 2s, percentage: {value: 100}}}
    route: [{destination: {host: edition.cnn.com}}]
  - name: both
    match: [{uri: {prefix: /both}}]
    fault:
      delay: {fixedDelay: 250ms, percentage: {value: 100}}
      abort: {httpStatus: 503, percentage: {value: 100}}
    route: [{destination: {host: edition.cnn.com}}]
  - name: missing
    match: [{uri: {prefix: /missing}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: edition.cnn.com, subset: nowhere}}]
  - name: never
    match: [{uri: {prefix: /never}}]
    fault: {abort: {httpStatus: 500}}
    route: [{destination: {host: edition.cnn.com}}]
)");
  Tables t(load_config({test_support::kCnnServiceEntry, vs.c_str()}));
  auto plan = [&t](const char* path) { return plan_get(t, "edition.cnn.com", 80, path); };
  RequestPlan abort = plan("/abort");
  EXPECT_EQ(abort.kind, RequestPlan::Kind::kLocalReply) << steps(abort);
  EXPECT_EQ(abort.status, 418u);
  EXPECT_EQ(abort.body, "fault filter abort");
  EXPECT_EQ(abort.response_flags, "FI");
  EXPECT_EQ(abort.response_code_details, "fault_filter_abort");
  EXPECT_EQ(abort.route_name, "abort");
  EXPECT_EQ(abort.cluster, "outbound|80||edition.cnn.com");
  EXPECT_EQ(abort.fault_delay.count(), 0);

  RequestPlan delay = plan("/delay");
  EXPECT_EQ(delay.kind, RequestPlan::Kind::kForward) << steps(delay);
  EXPECT_EQ(delay.fault_delay.count(), 2000);
  EXPECT_EQ(delay.response_flags, "DI");

  RequestPlan both = plan("/both");
  EXPECT_EQ(both.kind, RequestPlan::Kind::kLocalReply) << steps(both);
  EXPECT_EQ(both.status, 503u);
  EXPECT_EQ(both.fault_delay.count(), 250);
  EXPECT_EQ(both.response_flags, "DI,FI");

  // The fault filter runs before the router: the abort, not NC.
  RequestPlan missing = plan("/missing");
  EXPECT_EQ(missing.status, 500u) << steps(missing);
  EXPECT_EQ(missing.response_flags, "FI");

  RequestPlan never = plan("/never");
  EXPECT_EQ(never.kind, RequestPlan::Kind::kForward) << steps(never);
  EXPECT_EQ(never.response_flags, "-");
  EXPECT_NE(steps(never).find("fault: configured, not selected"), std::string::npos) << steps(never);
}

// Envoy's retry back-off (JitteredExponentialBackOffStrategy): retry n waits
// a random time below base x 2^(n-1), at most ten times base;
// retries.backoff sets the base (25 ms unset).
TEST(RequestPlanTest, RetryBackoffFollowsEnvoysBaseAndCap) {
  RetryPlan r;
  EXPECT_EQ(r.backoff(1, 24).count(), 24);
  EXPECT_EQ(r.backoff(1, 25).count(), 0) << "below 25";
  EXPECT_EQ(r.backoff(2, 49).count(), 49);
  EXPECT_EQ(r.backoff(3, 99).count(), 99);
  EXPECT_EQ(r.backoff(4, 199).count(), 199);
  EXPECT_EQ(r.backoff(5, 249).count(), 249) << "capped at 10 x base";
  EXPECT_EQ(r.backoff(40, 250).count(), 0);

  const std::string vs = cnn_virtual_service(R"(  - retries: {attempts: 3, retryOn: 5xx, backoff: 100ms}
    route: [{destination: {host: edition.cnn.com}}]
)");
  Tables t(load_config({test_support::kCnnServiceEntry, vs.c_str()}));
  const RequestPlan p = plan_get(t, "edition.cnn.com", 80, "/");
  EXPECT_EQ(p.forward.retry.backoff_base.count(), 100);
  EXPECT_EQ(p.forward.retry.backoff(1, 99).count(), 99);
  EXPECT_EQ(p.forward.retry.backoff(9, 999).count(), 999);
  EXPECT_EQ(p.forward.retry.backoff(9, 1000).count(), 0);
}

TEST(RequestPlanTest, MirrorPlansACopyToTheMirrorsCluster) {
  Tables t(load_config({test_support::kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: shadow}
spec:
  hosts: [shadow.example]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.7}]
)", R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  http:
  - match: [{uri: {prefix: /off}}]
    mirror: {host: shadow.example}
    mirrorPercentage: {value: 0}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /missing}}]
    mirror: {host: shadow.example, subset: none}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /old-off}}]
    mirror: {host: shadow.example}
    mirrorPercent: 0
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /old-on}}]
    mirror: {host: shadow.example}
    mirrorPercent: 100
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /both}}]
    mirror: {host: shadow.example}
    mirrorPercent: 0
    mirrorPercentage: {value: 100}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /halves}}]
    mirrors:
    - destination: {host: shadow.example}
      percentage: {value: 50}
    - destination: {host: edition.cnn.com}
      percentage: {value: 50}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /many}}]
    mirrors:
    - destination: {host: shadow.example}
    - destination: {host: edition.cnn.com}
      percentage: {value: 100}
    - destination: {host: shadow.example}
      percentage: {value: 0}
    mirrorPercentage: {value: 0}
    route: [{destination: {host: edition.cnn.com}}]
  - mirror: {host: shadow.example}
    route: [{destination: {host: edition.cnn.com}}]
)"}));
  auto plan = [&t](const char* path) { return plan_get(t, "edition.cnn.com", 80, path); };
  RequestPlan p = plan("/");
  EXPECT_EQ(p.kind, RequestPlan::Kind::kForward) << steps(p);
  EXPECT_EQ(p.cluster, "outbound|80||edition.cnn.com");
  ASSERT_EQ(p.mirrors.size(), 1u) << steps(p);
  EXPECT_EQ(p.mirrors[0]->kind, RequestPlan::Kind::kForward);
  // The service's only port (8080), not the request's.
  EXPECT_EQ(p.mirrors[0]->cluster, "outbound|8080||shadow.example");
  ASSERT_EQ(p.mirrors[0]->forward.upstream.endpoints.size(), 1u);
  EXPECT_NE(steps(p).find("mirror (shadow.example, 100 %): a copy"), std::string::npos) << steps(p);
  EXPECT_TRUE(plan("/off").mirrors.empty());
  EXPECT_TRUE(plan("/missing").mirrors.empty());  // no such subset: no copy (the original is unaffected)
  EXPECT_EQ(plan("/missing").kind, RequestPlan::Kind::kForward);
  // Istio 1.4's mirror_percent, when mirrorPercentage is unset.
  EXPECT_TRUE(plan("/old-off").mirrors.empty());
  EXPECT_EQ(plan("/old-on").mirrors.size(), 1u);
  EXPECT_EQ(plan("/both").mirrors.size(), 1u) << "mirrorPercentage wins";
  // mirrors[] (Istio 1.18+): a copy to each chosen one, in order, each
  // with its own percentage (unset: 100 %); mirrorPercentage is mirror's
  // only.
  RequestPlan many = plan("/many");
  ASSERT_EQ(many.mirrors.size(), 2u) << steps(many);
  EXPECT_EQ(many.mirrors[0]->cluster, "outbound|8080||shadow.example");
  EXPECT_EQ(many.mirrors[1]->cluster, "outbound|80||edition.cnn.com");
  EXPECT_NE(steps(many).find("mirror 3/3 (shadow.example, 0 %): configured, not selected"), std::string::npos)
      << steps(many);

  // Every mirror tests its percentage against the request's one draw, as
  // Envoy's router does: of two 50 % mirrors a request gets both copies or
  // none, never one.
  size_t both = 0, none = 0;
  for (uint64_t pick = 0; pick < 200; ++pick) {
    HttpRequest req;
    req.path = "/halves";
    req.method = "GET";
    PlanRequest r = http("edition.cnn.com", 80);
    r.http = &req;
    r.pick = pick * 0x9e3779b97f4a7c15ULL;
    const size_t copies = plan_sidecar(t.tables(), r).mirrors.size();
    ASSERT_NE(copies, 1u) << "pick " << pick;
    (copies == 2 ? both : none)++;
  }
  EXPECT_GT(both, 0u);
  EXPECT_GT(none, 0u);
}

}  // namespace
}  // namespace sluice::policy
