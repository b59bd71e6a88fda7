// sluicectl explain over the shipped configurations and small hand-written
// ones: every stage (kernel interception, what the proxy sees, the plan, the
// upstream) and every outcome with its exit code.
#include "ctl/explain.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ctl/config_tables.h"

namespace sluice::ctl {
namespace {

std::string repo_path(const std::string& rel) {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/" + rel;
}

const char* const kRegistryOnly = "configs/mesh/istio-configmap-registry-only.yaml";

class ExplainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluicectl-explain-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& yaml) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << yaml;
    return path;
  }

  // Loads repo-relative paths (or absolute ones) and explains `request`.
  Explanation run(const std::vector<std::string>& paths, const ExplainRequest& request,
                  const std::vector<std::string>& sets = {}) {
    std::vector<std::string> full;
    for (const auto& p : paths) full.push_back(p.front() == '/' ? p : repo_path(p));
    loaded_ = std::make_unique<LoadedConfig>(load_config(full, sets));
    std::string findings;
    for (const auto& d : loaded_->diagnostics.items()) findings += d.format() + "\n";
    EXPECT_NE(loaded_->tables, nullptr) << findings;
    if (!loaded_->tables) return {};
    return explain(*loaded_->tables, loaded_->rules, request);
  }

  static ExplainRequest to(const std::string& dest) {
    ExplainRequest r;
    EXPECT_EQ(parse_destination(dest, r.address, r.port), std::nullopt) << dest;
    return r;
  }
  static ExplainRequest http(const std::string& dest, const std::string& host) {
    ExplainRequest r = to(dest);
    r.host = host;
    return r;
  }
  static ExplainRequest tls(const std::string& dest, const std::string& sni) {
    ExplainRequest r = to(dest);
    r.sni = sni;
    return r;
  }
  static ExplainRequest gateway(ExplainRequest r) {
    r.gateway = true;
    r.labels["istio"] = "egressgateway";
    return r;
  }

  static std::string text(const Explanation& e) {
    std::ostringstream out;
    for (size_t i = 0; i < e.steps.size(); ++i) out << i + 1 << ". [" << e.steps[i].stage << "] " << e.steps[i].text << "\n";
    return out.str() + "=> " + e.summary;
  }
  static bool has_stage(const Explanation& e, const std::string& stage) {
    for (const auto& s : e.steps) {
      if (s.stage == stage) return true;
    }
    return false;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LoadedConfig> loaded_;
};

// ---- the walkthrough, step by step -------------------------------------

TEST_F(ExplainTest, AllowAnyUnknownHostPassesThrough) {
  Explanation e = run({"configs/default"}, http("151.101.1.67:80", "example.com"));
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.cluster, "PassthroughCluster");
  EXPECT_EQ(e.exit_code(), 0);
  ASSERT_TRUE(e.plan);
  EXPECT_EQ(e.plan->route_name, "allow_any");
  EXPECT_EQ(e.plan->forward.upstream.kind, policy::UpstreamPlan::Kind::kOriginalDestination);
  ASSERT_TRUE(e.interception);
  EXPECT_EQ(e.interception->action, decision::Action::kRedirect);
  EXPECT_EQ(e.traffic, "HTTP");
  EXPECT_EQ(e.declared, policy::PortProtocol::kHttp);
  ASSERT_EQ(e.declared_by.size(), 1u);
  EXPECT_NE(e.declared_by[0].find("default/cnn"), std::string::npos);
  EXPECT_NE(e.declared_by[0].find("serviceentry-cnn.yaml:"), std::string::npos);
  EXPECT_EQ(e.steps.front().stage, "interception");
  EXPECT_NE(text(e).find("ALLOW_ANY"), std::string::npos);
}

TEST_F(ExplainTest, RegistryOnlyUnknownHttpGets502BlockAll) {
  Explanation e = run({"configs/default", kRegistryOnly}, http("151.101.1.67:80", "example.com"));
  EXPECT_EQ(e.outcome, Outcome::kLocalReply) << text(e);
  EXPECT_EQ(e.status, 502u);
  EXPECT_EQ(e.exit_code(), kExitNotForwarded);
  ASSERT_TRUE(e.plan);
  EXPECT_EQ(e.plan->route_name, "block_all");
  EXPECT_NE(e.summary.find("502"), std::string::npos);
  EXPECT_NE(e.summary.find("block_all"), std::string::npos);
}

TEST_F(ExplainTest, RegistryOnlyUnknownSniIsClosedUH) {
  Explanation e = run({"configs/default", kRegistryOnly}, tls("151.101.1.67:443", "example.com"));
  EXPECT_EQ(e.outcome, Outcome::kClosed) << text(e);
  EXPECT_EQ(e.response_flags, "UH");
  EXPECT_EQ(e.cluster, "BlackHoleCluster");
  EXPECT_EQ(e.traffic, "TLS");
  EXPECT_EQ(e.exit_code(), kExitNotForwarded);
}

TEST_F(ExplainTest, RegistryOnlyHttpOnAPortNobodyDeclaresIsClosedNot502) {
  // No HTTP listener on 8080: the Host is never looked at, no 502 (Istio).
  Explanation e = run({"configs/default", kRegistryOnly}, http("151.101.1.67:8080", "edition.cnn.com"));
  EXPECT_EQ(e.declared, policy::PortProtocol::kUnspecified);
  EXPECT_EQ(e.outcome, Outcome::kClosed) << text(e);
  EXPECT_EQ(e.response_flags, "UH");
  EXPECT_NE(text(e).find("protocol sniffing"), std::string::npos);
}

TEST_F(ExplainTest, ServiceEntryMakesCnnKnownWithUnresolvedDnsEndpoint) {
  Explanation e = run({"configs/default", kRegistryOnly}, http("151.101.1.67:80", "edition.cnn.com"));
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.cluster, "outbound|80||edition.cnn.com");
  ASSERT_TRUE(e.plan);
  const auto& up = e.plan->forward.upstream;
  EXPECT_EQ(up.kind, policy::UpstreamPlan::Kind::kDns);
  ASSERT_EQ(up.endpoints.size(), 1u);
  EXPECT_EQ(up.endpoints[0].dns_name, "edition.cnn.com");
  EXPECT_FALSE(up.endpoints[0].address);
  EXPECT_NE(text(e).find("edition.cnn.com:80 - resolved by the proxy"), std::string::npos) << text(e);
  EXPECT_NE(text(e).find("not resolved here"), std::string::npos);
}

TEST_F(ExplainTest, WalkthroughVirtualServiceSendsCnnToTheEgressGatewayOverIstioMutual) {
  // The walkthrough limits interception to 10.244/16 and 10.240/16: a pod
  // address in range is intercepted.
  Explanation e = run({"configs/walkthrough", kRegistryOnly}, http("10.244.3.7:80", "edition.cnn.com"));
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.cluster, "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local");
  ASSERT_TRUE(e.plan);
  const policy::ForwardPlan& f = e.plan->forward;
  EXPECT_EQ(f.subset, "cnn");
  EXPECT_EQ(f.tls_mode, config::ClientTLSMode::kIstioMutual);
  EXPECT_EQ(f.sni, "edition.cnn.com");
  ASSERT_EQ(f.expected_sans.size(), 1u);
  EXPECT_EQ(f.expected_sans[0], "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account");
  ASSERT_EQ(f.upstream.endpoints.size(), 1u);
  EXPECT_EQ(f.upstream.endpoints[0].dns_name, "istio-egressgateway.istio-system.svc.cluster.local");
  ASSERT_TRUE(e.interception);
  EXPECT_EQ(e.interception->rule, decision::Rule::kIncludedRange);
  EXPECT_EQ(e.interception_option, "includeIPRanges[0] \"10.244.0.0/16\"");
  EXPECT_NE(e.summary.find("ISTIO_MUTUAL SNI edition.cnn.com"), std::string::npos) << e.summary;
  EXPECT_NE(text(e).find("DestinationRule default/egressgateway-for-cnn (" + repo_path("configs/walkthrough") +
                         "/egress-gateway.yaml:"),
            std::string::npos)
      << text(e);
}

TEST_F(ExplainTest, IncludeIpRangesLeaveOtherDestinationsDirect) {
  Explanation e = run({"configs/walkthrough"}, http("203.0.113.10:80", "edition.cnn.com"));
  EXPECT_EQ(e.outcome, Outcome::kDirect) << text(e);
  EXPECT_EQ(e.exit_code(), 0);
  ASSERT_TRUE(e.interception);
  EXPECT_EQ(e.interception->action, decision::Action::kPassthrough);
  EXPECT_EQ(e.interception->rule, decision::Rule::kNotIncluded);
  EXPECT_FALSE(e.plan);
  EXPECT_FALSE(has_stage(e, "traffic"));  // the proxy never sees it
  EXPECT_EQ(e.steps.size(), 1u);
}

TEST_F(ExplainTest, SetOverridesInstallOptionsFromFiles) {
  Explanation e = run({"configs/walkthrough"}, http("203.0.113.10:80", "edition.cnn.com"),
                      {"values.global.proxy.includeIPRanges=*"});
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.interception_option, "includeIPRanges[0] \"*\"");
}

TEST_F(ExplainTest, GatewayPort80TerminatesMutualTlsAndRoutesToCnn) {
  Explanation e = run({"configs/walkthrough"}, gateway(tls("10.0.0.7:80", "edition.cnn.com")));
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.cluster, "outbound|80||edition.cnn.com");
  EXPECT_EQ(e.gateway_server, "default/istio-egressgateway server 0 (80/HTTPS)");
  EXPECT_EQ(e.traffic, "HTTP");
  EXPECT_EQ(e.host, "edition.cnn.com");
  EXPECT_FALSE(e.interception);  // a gateway is connected to, not intercepted
  EXPECT_EQ(e.steps.front().stage, "listener");
  EXPECT_NE(text(e).find("terminates TLS MUTUAL"), std::string::npos) << text(e);
  EXPECT_NE(text(e).find("no --host: taken from the SNI"), std::string::npos);
}

TEST_F(ExplainTest, GatewayWithoutClientHelloOnATlsPortIsAProtocolError) {
  Explanation e = run({"configs/walkthrough"}, gateway(http("10.0.0.7:80", "edition.cnn.com")));
  EXPECT_EQ(e.outcome, Outcome::kClosed) << text(e);
  EXPECT_EQ(e.response_flags, "DPE");
  EXPECT_FALSE(e.plan);
}

TEST_F(ExplainTest, GatewayUnknownSniIsClosedNR) {
  Explanation e = run({"configs/walkthrough"}, gateway(tls("10.0.0.7:80", "example.com")));
  EXPECT_EQ(e.outcome, Outcome::kClosed) << text(e);
  EXPECT_EQ(e.response_flags, "NR");
}

TEST_F(ExplainTest, GatewayWithoutServerOnThePortRefuses) {
  Explanation e = run({"configs/walkthrough"}, gateway(tls("10.0.0.7:443", "edition.cnn.com")));
  EXPECT_EQ(e.outcome, Outcome::kRefused) << text(e);
  EXPECT_EQ(e.exit_code(), kExitNotForwarded);
  EXPECT_NE(text(e).find("its server ports: 80"), std::string::npos) << text(e);

  ExplainRequest other = tls("10.0.0.7:80", "edition.cnn.com");
  other.gateway = true;
  other.labels["istio"] = "ingressgateway";
  e = run({"configs/walkthrough"}, other);
  EXPECT_EQ(e.outcome, Outcome::kRefused) << text(e);
  EXPECT_NE(text(e).find("no Gateway selects these labels"), std::string::npos) << text(e);
}

// ---- the variants --------------------------------------------------------

TEST_F(ExplainTest, TlsOriginationAtTheGatewayGoesOutOn443WithSimpleTls) {
  Explanation e = run({"configs/variants/tls-origination-gateway"}, gateway(tls("10.0.0.7:80", "edition.cnn.com")));
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.cluster, "outbound|443||edition.cnn.com");
  ASSERT_TRUE(e.plan);
  EXPECT_EQ(e.plan->forward.tls_mode, config::ClientTLSMode::kSimple);
  EXPECT_EQ(e.plan->forward.sni, "edition.cnn.com");
  EXPECT_NE(text(e).find("terminates TLS ISTIO_MUTUAL"), std::string::npos) << text(e);
}

TEST_F(ExplainTest, TlsOriginationAtTheSidecarUsesTargetPortAndHostAsSni) {
  Explanation e = run({"configs/variants/tls-origination-sidecar"}, http("151.101.1.67:80", "edition.cnn.com"));
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.cluster, "outbound|80||edition.cnn.com");
  ASSERT_TRUE(e.plan);
  EXPECT_EQ(e.plan->forward.tls_mode, config::ClientTLSMode::kSimple);
  EXPECT_EQ(e.plan->forward.sni, "edition.cnn.com");
  ASSERT_EQ(e.plan->forward.upstream.endpoints.size(), 1u);
  EXPECT_EQ(e.plan->forward.upstream.endpoints[0].port, 443);
}

TEST_F(ExplainTest, TlsPassthroughSidecarThenGateway) {
  Explanation e = run({"configs/variants/tls-passthrough-gateway"}, tls("151.101.1.67:443", "edition.cnn.com"));
  EXPECT_EQ(e.cluster, "outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local") << text(e);
  EXPECT_EQ(e.traffic, "TLS");
  e = run({"configs/variants/tls-passthrough-gateway"}, gateway(tls("10.0.0.7:443", "edition.cnn.com")));
  EXPECT_EQ(e.cluster, "outbound|443||edition.cnn.com") << text(e);
  EXPECT_NE(text(e).find("PASSTHROUGH"), std::string::npos);
}

TEST_F(ExplainTest, WildcardHostsGoThroughTheGatewayToWwwWikipedia) {
  Explanation e = run({"configs/variants/wildcard-hosts"}, tls("91.198.174.192:443", "en.wikipedia.org"));
  EXPECT_EQ(e.cluster, "outbound|443|wikipedia|istio-egressgateway.istio-system.svc.cluster.local") << text(e);
  e = run({"configs/variants/wildcard-hosts"}, gateway(tls("10.0.0.7:443", "de.wikipedia.org")));
  EXPECT_EQ(e.cluster, "outbound|443||www.wikipedia.org") << text(e);
}

// ---- interception rules ----------------------------------------------------

TEST_F(ExplainTest, ExcludedPortBeatsEverything) {
  Explanation e = run({"configs/default"}, tls("151.101.1.67:443", "edition.cnn.com"),
                      {"values.global.proxy.excludeOutboundPorts=22\\,443"});
  EXPECT_EQ(e.outcome, Outcome::kDirect) << text(e);
  ASSERT_TRUE(e.interception);
  EXPECT_EQ(e.interception->rule, decision::Rule::kExcludedPort);
  EXPECT_EQ(e.interception_option, "excludeOutboundPorts[1] \"443\"");
}

TEST_F(ExplainTest, LoopbackIsNeverIntercepted) {
  Explanation e = run({"configs/default"}, to("127.0.0.1:8080"));
  EXPECT_EQ(e.outcome, Outcome::kDirect);
  EXPECT_EQ(e.interception->rule, decision::Rule::kLoopback);
}

TEST_F(ExplainTest, Ipv6DestinationGoesThroughConnect6ToTheIpv6Proxy) {
  Explanation e = run({"configs/default"}, http("[2001:db8::1]:80", "example.com"));
  EXPECT_EQ(e.destination, "[2001:db8::1]:80");
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_NE(e.steps[0].text.find("cgroup/connect6"), std::string::npos);
  EXPECT_NE(e.steps[0].text.find("[::1]:15001"), std::string::npos) << e.steps[0].text;
}

// ---- what the proxy sees ---------------------------------------------------

const char* const kTcpEntry = R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: db
spec:
  hosts: [db.example.com]
  addresses: [192.0.2.10]
  ports:
  - {number: 5432, name: tcp-pg, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 192.0.2.11
  - address: 192.0.2.12
)";

TEST_F(ExplainTest, DeclaredTcpPortIgnoresHostAndRoutesByAddress) {
  std::string se = write("db.yaml", kTcpEntry);
  ExplainRequest r = http("192.0.2.10:5432", "whatever.example");
  Explanation e = run({se, repo_path(kRegistryOnly)}, r);
  EXPECT_EQ(e.traffic, "TCP") << text(e);
  EXPECT_EQ(e.declared, policy::PortProtocol::kTcp);
  EXPECT_EQ(e.outcome, Outcome::kForward);
  EXPECT_EQ(e.cluster, "outbound|5432||db.example.com");
  ASSERT_TRUE(e.plan);
  EXPECT_EQ(e.plan->forward.upstream.kind, policy::UpstreamPlan::Kind::kStatic);
  EXPECT_NE(text(e).find("static endpoint(s) 192.0.2.11:5432 weight 1, 192.0.2.12:5432 weight 1"),
            std::string::npos)
      << text(e);

  // Another address on the same port is unknown: REGISTRY_ONLY closes it.
  e = run({se, repo_path(kRegistryOnly)}, to("192.0.2.99:5432"));
  EXPECT_EQ(e.outcome, Outcome::kClosed) << text(e);
  EXPECT_EQ(e.response_flags, "UH");
}

TEST_F(ExplainTest, TlsOnAPortDeclaredHttpIsAProtocolError) {
  Explanation e = run({"configs/default"}, tls("151.101.1.67:80", "edition.cnn.com"));
  EXPECT_EQ(e.outcome, Outcome::kClosed) << text(e);
  EXPECT_EQ(e.response_flags, "DPE");
  EXPECT_FALSE(e.plan);
}

TEST_F(ExplainTest, HttpOnAPortDeclaredTlsFallsBackToTcp) {
  Explanation e = run({"configs/default", kRegistryOnly}, http("151.101.1.67:443", "edition.cnn.com"));
  EXPECT_EQ(e.traffic, "TCP") << text(e);
  EXPECT_EQ(e.outcome, Outcome::kClosed);  // no address claims 151.101.1.67:443
  EXPECT_EQ(e.response_flags, "UH");
}

// ---- routes, subsets, endpoints --------------------------------------------

const char* const kRouted = R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: api
spec:
  hosts: [api.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - {address: 192.0.2.21, labels: {version: v1}}
  - {address: 192.0.2.22, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: api
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [api.example.com]
  http:
  - name: alice
    match:
    - headers:
        x-user: {exact: alice}
    route:
    - destination: {host: api.example.com, subset: v2}
  - name: missing
    match:
    - uri: {prefix: /missing}
    route:
    - destination: {host: api.example.com, subset: v3}
  - name: docs
    match:
    - uri: {prefix: /docs}
    route:
    - destination: {host: api.example.com, subset: v1}
)";

TEST_F(ExplainTest, HeaderMatchPicksTheSubsetAndItsStaticEndpoints) {
  std::string cfg = write("api.yaml", kRouted);
  ExplainRequest r = http("192.0.2.20:80", "api.example.com");
  r.headers.emplace_back("X-User", "alice");
  Explanation e = run({cfg}, r);
  EXPECT_EQ(e.outcome, Outcome::kForward) << text(e);
  EXPECT_EQ(e.cluster, "outbound|80|v2|api.example.com");
  ASSERT_TRUE(e.plan);
  EXPECT_EQ(e.plan->route_name, "alice");
  ASSERT_EQ(e.plan->forward.upstream.endpoints.size(), 1u);
  EXPECT_EQ(e.plan->forward.upstream.endpoints[0].address->str(), "192.0.2.22");
  EXPECT_EQ(e.plan->forward.policy.lb, config::SimpleLB::kLeastRequest);
  EXPECT_NE(text(e).find("load balancing LEAST_REQUEST (trafficPolicy)"), std::string::npos) << text(e);
}

TEST_F(ExplainTest, PathMatchAndNoMatch) {
  std::string cfg = write("api.yaml", kRouted);
  ExplainRequest r = http("192.0.2.20:80", "api.example.com");
  r.path = "/docs/index.html";
  Explanation e = run({cfg}, r);
  EXPECT_EQ(e.cluster, "outbound|80|v1|api.example.com") << text(e);

  r.path = "/other";
  e = run({cfg}, r);
  EXPECT_EQ(e.outcome, Outcome::kLocalReply) << text(e);
  EXPECT_EQ(e.status, 404u);
  EXPECT_EQ(e.response_flags, "NR");
}

TEST_F(ExplainTest, UnknownSubsetIs503NC) {
  std::string cfg = write("api.yaml", kRouted);
  ExplainRequest r = http("192.0.2.20:80", "api.example.com:80");
  r.path = "/missing";
  Explanation e = run({cfg}, r);
  EXPECT_EQ(e.outcome, Outcome::kLocalReply) << text(e);
  EXPECT_EQ(e.status, 503u);
  EXPECT_EQ(e.response_flags, "NC");
  EXPECT_EQ(e.exit_code(), kExitNotForwarded);
}

// ---- configuration errors and inputs ----------------------------------------

TEST_F(ExplainTest, ConfigurationWithErrorsCannotBeExplained) {
  std::string bad = write("bad.yaml", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: weights
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 0
    - destination: {host: reviews, subset: v2}
      weight: 0
)");
  LoadedConfig l = load_config({bad}, {});
  EXPECT_EQ(l.tables, nullptr);
  EXPECT_TRUE(l.diagnostics.has_errors());

  l = load_config({repo_path("configs/default")}, {"values.global.proxy.includeIPRanges=10.0.0.0/33"});
  EXPECT_EQ(l.tables, nullptr);  // the agent cannot compile the rules
}

TEST(ParseDestination, AcceptsIpv4AndBracketedIpv6) {
  decision::IpAddress a;
  uint16_t port = 0;
  EXPECT_EQ(parse_destination("151.101.1.67:80", a, port), std::nullopt);
  EXPECT_EQ(a.str(), "151.101.1.67");
  EXPECT_EQ(port, 80);
  EXPECT_EQ(parse_destination("[2001:db8::1]:443", a, port), std::nullopt);
  EXPECT_TRUE(a.is_v6());
  EXPECT_EQ(port, 443);
  EXPECT_EQ(parse_destination("[::ffff:10.0.0.1]:80", a, port), std::nullopt);
  EXPECT_TRUE(a.is_v4_mapped());
}

TEST(ParseDestination, RejectsWhatConnectCannotTake) {
  decision::IpAddress a;
  uint16_t port = 0;
  for (const char* bad : {"", "151.101.1.67", "edition.cnn.com:80", "2001:db8::1:443", "1.2.3.4:0",
                          "1.2.3.4:65536", "1.2.3.4:http", "[1.2.3.4]:80", "[::1]80", "1.2.3.4:"}) {
    EXPECT_NE(parse_destination(bad, a, port), std::nullopt) << bad;
  }
}

TEST(NormalizeHost, AsTheSniffersDo) {
  EXPECT_EQ(normalize_host("Edition.CNN.com.", false), "edition.cnn.com");
  EXPECT_EQ(normalize_host("edition.cnn.com:8080", true), "edition.cnn.com");
  EXPECT_EQ(normalize_host("[2001:DB8::1]:80", true), "2001:db8::1");
  EXPECT_EQ(normalize_host("", false), "");
  EXPECT_EQ(normalize_host("a b", false), std::nullopt);
  EXPECT_EQ(normalize_host(std::string_view("evil.com\0.x", 11), false), std::nullopt);
  EXPECT_EQ(normalize_host("a..b", false), std::nullopt);
  EXPECT_EQ(normalize_host("host:80", false), std::nullopt);  // SNI has no port
  EXPECT_EQ(normalize_host("host:http", true), std::nullopt);
  EXPECT_EQ(normalize_host(std::string(64, 'a') + ".com", false), std::nullopt);
}

}  // namespace
}  // namespace sluice::ctl
