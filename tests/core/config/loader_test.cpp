// Loader tests: the walkthrough's resources field by field, the `istio`
// ConfigMap as kubectl prints it, every apiVersion, streams, directories
// (including a ConfigMap volume) and the diagnostics for bad documents.
#include "core/config/loader.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/config/duration.h"

namespace sluice::config {
namespace {

namespace fs = std::filesystem;

std::string source_root() {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return root != nullptr ? root : ".";
}

std::string testdata(const std::string& name) {
  return source_root() + "/tests/core/config/testdata/" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string dump(const Diagnostics& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics.items()) out += d.format() + "\n";
  return out;
}

LoadResult load(std::string_view text, const std::string& file = "test.yaml") {
  LoadResult result;
  load_text(text, file, result);
  return result;
}

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "sluice-loader-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string write(const std::string& relative, const std::string& text) const {
    fs::path p = path_ / relative;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

 private:
  fs::path path_;
};

void expect_at(const ObjectMeta& meta, const std::string& path, uint32_t line, uint32_t column) {
  SourceLocation at = meta.location(path);
  EXPECT_EQ(at.line, line) << path;
  EXPECT_EQ(at.column, column) << path;
}

// ---------------------------------------------------------------------------
// The walkthrough, exactly as users apply it.

TEST(WalkthroughTest, ServiceEntryCnn) {
  const std::string file = testdata("walkthrough-serviceentry-cnn.yaml");
  LoadResult r;
  load_path(file, r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  ASSERT_EQ(r.config.service_entries.size(), 1u);
  EXPECT_EQ(r.config.resource_count(), 1u);
  const ServiceEntry& se = r.config.service_entries[0];
  EXPECT_EQ(se.meta.api_version, "networking.istio.io/v1alpha3");
  EXPECT_EQ(se.meta.kind, "ServiceEntry");
  EXPECT_EQ(se.meta.name, "cnn");
  EXPECT_EQ(se.meta.namespace_, "default");
  EXPECT_EQ(se.meta.key(), "default/cnn");
  EXPECT_TRUE(se.meta.labels.empty());
  EXPECT_TRUE(se.meta.annotations.empty());
  EXPECT_EQ(se.meta.file, file);
  EXPECT_EQ(se.meta.line, 1u);
  EXPECT_EQ(se.hosts, std::vector<std::string>{"edition.cnn.com"});
  EXPECT_TRUE(se.addresses.empty());
  ASSERT_EQ(se.ports.size(), 2u);
  EXPECT_EQ(se.ports[0].number, 80u);
  EXPECT_EQ(se.ports[0].name, "http-port");
  EXPECT_EQ(se.ports[0].protocol, "HTTP");
  EXPECT_EQ(se.ports[0].target_port, 0u);
  EXPECT_EQ(se.ports[1].number, 443u);
  EXPECT_EQ(se.ports[1].name, "https");
  EXPECT_EQ(se.ports[1].protocol, "HTTPS");
  EXPECT_EQ(se.location, ServiceLocation::kMeshExternal);
  EXPECT_EQ(se.resolution, Resolution::kDns);
  EXPECT_TRUE(se.endpoints.empty());
  EXPECT_FALSE(se.workload_selector.has_value());
  EXPECT_TRUE(se.export_to.empty());
  EXPECT_TRUE(se.subject_alt_names.empty());
  EXPECT_EQ(r.config.source_files, std::vector<std::string>{file});

  expect_at(se.meta, "", 1, 1);
  expect_at(se.meta, "metadata.name", 4, 3);
  expect_at(se.meta, "spec.hosts", 6, 3);
  expect_at(se.meta, "spec.hosts[0]", 7, 5);
  expect_at(se.meta, "spec.ports[0]", 9, 5);
  expect_at(se.meta, "spec.ports[0].number", 9, 5);
  expect_at(se.meta, "spec.ports[1].protocol", 14, 5);
  expect_at(se.meta, "spec.resolution", 15, 3);
  EXPECT_EQ(se.meta.location("spec.resolution").str(), file + ":15:3");
}

TEST(WalkthroughTest, GatewayAndDestinationRule) {
  const std::string file = testdata("walkthrough-gateway-destinationrule.yaml");
  LoadResult r;
  load_path(file, r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  ASSERT_EQ(r.config.gateways.size(), 1u);
  ASSERT_EQ(r.config.destination_rules.size(), 1u);

  const Gateway& gw = r.config.gateways[0];
  EXPECT_EQ(gw.meta.kind, "Gateway");
  EXPECT_EQ(gw.meta.key(), "default/istio-egressgateway");
  EXPECT_EQ(gw.meta.line, 1u);
  EXPECT_EQ(gw.selector, (Labels{{"istio", "egressgateway"}}));
  ASSERT_EQ(gw.servers.size(), 1u);
  const Server& server = gw.servers[0];
  EXPECT_EQ(server.port.number, 80u);
  EXPECT_EQ(server.port.name, "https");
  EXPECT_EQ(server.port.protocol, "HTTPS");
  EXPECT_EQ(server.port.target_port, 0u);
  EXPECT_EQ(server.hosts, std::vector<std::string>{"edition.cnn.com"});
  EXPECT_EQ(server.bind, "");
  EXPECT_EQ(server.name, "");
  ASSERT_TRUE(server.tls.has_value());
  EXPECT_EQ(server.tls->mode, ServerTLSMode::kMutual);
  EXPECT_EQ(server.tls->server_certificate, "/etc/certs/cert-chain.pem");
  EXPECT_EQ(server.tls->private_key, "/etc/certs/key.pem");
  EXPECT_EQ(server.tls->ca_certificates, "/etc/certs/root-cert.pem");
  EXPECT_FALSE(server.tls->https_redirect);
  EXPECT_TRUE(server.tls->subject_alt_names.empty());
  expect_at(gw.meta, "spec.servers[0].tls.mode", 16, 7);
  expect_at(gw.meta, "spec.servers[0].port.protocol", 12, 7);

  const DestinationRule& dr = r.config.destination_rules[0];
  EXPECT_EQ(dr.meta.kind, "DestinationRule");
  EXPECT_EQ(dr.meta.key(), "default/egressgateway-for-cnn");
  EXPECT_EQ(dr.meta.line, 21u);
  EXPECT_EQ(dr.host, "istio-egressgateway.istio-system.svc.cluster.local");
  EXPECT_FALSE(dr.traffic_policy.has_value());
  ASSERT_EQ(dr.subsets.size(), 1u);
  const Subset& subset = dr.subsets[0];
  EXPECT_EQ(subset.name, "cnn");
  EXPECT_TRUE(subset.labels.empty());
  ASSERT_TRUE(subset.traffic_policy.has_value());
  ASSERT_TRUE(subset.traffic_policy->load_balancer.has_value());
  EXPECT_EQ(subset.traffic_policy->load_balancer->simple, SimpleLB::kRoundRobin);
  EXPECT_FALSE(subset.traffic_policy->load_balancer->consistent_hash.has_value());
  EXPECT_FALSE(subset.traffic_policy->tls.has_value());
  ASSERT_EQ(subset.traffic_policy->port_level_settings.size(), 1u);
  const PortTrafficPolicy& port_policy = subset.traffic_policy->port_level_settings[0];
  ASSERT_TRUE(port_policy.port.has_value());
  EXPECT_EQ(port_policy.port->number, 80u);
  ASSERT_TRUE(port_policy.tls.has_value());
  EXPECT_EQ(port_policy.tls->mode, ClientTLSMode::kIstioMutual);
  EXPECT_EQ(port_policy.tls->sni, "edition.cnn.com");
  EXPECT_FALSE(port_policy.load_balancer.has_value());
  expect_at(dr.meta, "", 21, 1);
  expect_at(dr.meta, "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls.sni", 37, 11);
  expect_at(dr.meta, "spec.subsets[0].trafficPolicy.portLevelSettings[0].port.number", 34, 11);
}

TEST(WalkthroughTest, VirtualService) {
  const std::string file = testdata("walkthrough-virtualservice.yaml");
  LoadResult r;
  load_path(file, r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  ASSERT_EQ(r.config.virtual_services.size(), 1u);
  const VirtualService& vs = r.config.virtual_services[0];
  EXPECT_EQ(vs.meta.key(), "default/direct-cnn-through-egress-gateway");
  EXPECT_EQ(vs.hosts, std::vector<std::string>{"edition.cnn.com"});
  EXPECT_EQ(vs.gateways, (std::vector<std::string>{"istio-egressgateway", "mesh"}));
  EXPECT_EQ(vs.effective_gateways(), vs.gateways);
  EXPECT_TRUE(vs.tls.empty());
  EXPECT_TRUE(vs.tcp.empty());
  ASSERT_EQ(vs.http.size(), 2u);

  const HTTPRoute& to_gateway = vs.http[0];
  ASSERT_EQ(to_gateway.match.size(), 1u);
  EXPECT_EQ(to_gateway.match[0].gateways, std::vector<std::string>{"mesh"});
  EXPECT_EQ(to_gateway.match[0].port, 80u);
  EXPECT_FALSE(to_gateway.match[0].uri.has_value());
  ASSERT_EQ(to_gateway.route.size(), 1u);
  EXPECT_EQ(to_gateway.route[0].destination.host,
            "istio-egressgateway.istio-system.svc.cluster.local");
  EXPECT_EQ(to_gateway.route[0].destination.subset, "cnn");
  ASSERT_TRUE(to_gateway.route[0].destination.port.has_value());
  EXPECT_EQ(to_gateway.route[0].destination.port->number, 80u);
  EXPECT_EQ(to_gateway.route[0].weight, 100);
  EXPECT_TRUE(to_gateway.route[0].weight_set);
  EXPECT_FALSE(to_gateway.redirect.has_value());
  EXPECT_FALSE(to_gateway.timeout.has_value());

  const HTTPRoute& from_gateway = vs.http[1];
  ASSERT_EQ(from_gateway.match.size(), 1u);
  EXPECT_EQ(from_gateway.match[0].gateways, std::vector<std::string>{"istio-egressgateway"});
  EXPECT_EQ(from_gateway.match[0].port, 80u);
  ASSERT_EQ(from_gateway.route.size(), 1u);
  EXPECT_EQ(from_gateway.route[0].destination.host, "edition.cnn.com");
  EXPECT_EQ(from_gateway.route[0].destination.subset, "");
  EXPECT_EQ(from_gateway.route[0].destination.port->number, 80u);
  EXPECT_EQ(from_gateway.route[0].weight, 100);

  expect_at(vs.meta, "spec.http[0].route[0].weight", 22, 7);
  expect_at(vs.meta, "spec.http[1].match[0].gateways[0]", 25, 9);
  expect_at(vs.meta, "spec.http[1].route[0].destination.port.number", 31, 11);
  // Unrecorded paths fall back to the closest ancestor.
  expect_at(vs.meta, "spec.http[1].route[0].destination.port.number.nothing", 31, 11);
}

TEST(WalkthroughTest, IstioConfigMapAsKubectlPrintsIt) {
  const std::string file = testdata("istio-configmap.yaml");
  LoadResult r;
  load_path(file, r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.resource_count(), 0u);
  const MeshConfig& mesh = r.config.mesh;
  EXPECT_EQ(mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kAllowAny);
  EXPECT_EQ(mesh.access_log_file, "/dev/stdout");
  EXPECT_EQ(mesh.access_log_encoding, "TEXT");
  EXPECT_EQ(mesh.access_log_format, "");
  EXPECT_EQ(mesh.trust_domain, "cluster.local");
  EXPECT_EQ(mesh.root_namespace, "istio-system");
  EXPECT_TRUE(mesh.enable_auto_mtls);
  ASSERT_TRUE(mesh.connect_timeout.has_value());
  EXPECT_EQ(*mesh.connect_timeout, Duration(10'000));
  EXPECT_EQ(mesh.file, file);
  EXPECT_EQ(mesh.line, 3u);  // the `mesh:` key
  EXPECT_EQ(r.config.source_files, std::vector<std::string>{file});
}

TEST(WalkthroughTest, ConfigMapAfterTheSedEdit) {
  // kubectl get configmap istio ... | sed 's/mode: ALLOW_ANY/mode: REGISTRY_ONLY/g'
  std::string text = read_file(testdata("istio-configmap.yaml"));
  text.replace(text.find("mode: ALLOW_ANY"), 15, "mode: REGISTRY_ONLY");
  LoadResult r = load(text);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
}

TEST(WalkthroughTest, ConfigMapErrorsPointIntoTheBlockScalar) {
  std::string text = read_file(testdata("istio-configmap.yaml"));
  text.replace(text.find("mode: ALLOW_ANY"), 15, "mode: ALLOW_ALL");
  LoadResult r = load(text, "istio.yaml");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  const Diagnostic& d = r.diagnostics.items()[0];
  EXPECT_EQ(d.severity, Severity::kError);
  EXPECT_EQ(d.message, "invalid value \"ALLOW_ALL\"; allowed values: ALLOW_ANY, REGISTRY_ONLY");
  // Line 72 of the file, column of the value (6 spaces of indentation + "mode: ").
  EXPECT_EQ(d.location.str(), "istio.yaml:72:13");
  EXPECT_EQ(d.kind, "ConfigMap");
  EXPECT_EQ(d.namespace_, "istio-system");
  EXPECT_EQ(d.name, "istio");
  EXPECT_EQ(d.field, "data.mesh.outboundTrafficPolicy.mode");
  EXPECT_EQ(d.format(),
            "istio.yaml:72:13: error: ConfigMap istio-system/istio: "
            "data.mesh.outboundTrafficPolicy.mode: invalid value \"ALLOW_ALL\"; allowed values: "
            "ALLOW_ANY, REGISTRY_ONLY");
  // A broken document leaves the mesh config as it was.
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kAllowAny);
  EXPECT_EQ(r.config.mesh.file, "");
}

TEST(WalkthroughTest, AllFiveResourcesTogether) {
  LoadResult r =
      load_paths({testdata("istio-configmap.yaml"), testdata("walkthrough-serviceentry-cnn.yaml"),
                  testdata("walkthrough-gateway-destinationrule.yaml"),
                  testdata("walkthrough-virtualservice.yaml")});
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.resource_count(), 4u);
  EXPECT_EQ(r.config.source_files.size(), 4u);
  EXPECT_EQ(r.config.mesh.access_log_file, "/dev/stdout");
}

// ---------------------------------------------------------------------------
// Mesh config in its other shapes

TEST(MeshConfigTest, QuotedMeshStringPointsAtTheKey) {
  LoadResult r = load(R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: "outboundTrafficPolicy:\n  mode: NOPE\n"
)");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "test.yaml:7:3");
  EXPECT_EQ(r.diagnostics.items()[0].field, "data.mesh.outboundTrafficPolicy.mode");
}

TEST(MeshConfigTest, EmbeddedUnknownFieldAndSyntaxError) {
  LoadResult r = load(R"(apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: /dev/stdout
    outboundTrafficPolicy:
      mood: REGISTRY_ONLY
)");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  const Diagnostic& d = r.diagnostics.items()[0];
  EXPECT_EQ(d.severity, Severity::kWarning);
  EXPECT_EQ(d.message, "unknown field \"mood\" in MeshConfig outboundTrafficPolicy");
  EXPECT_EQ(d.location.str(), "test.yaml:8:7");
  EXPECT_EQ(r.config.mesh.access_log_file, "/dev/stdout");  // warnings do not drop it

  r = load(R"(apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    accessLogFile: [unterminated
)");
  ASSERT_EQ(r.diagnostics.error_count(), 1u) << dump(r.diagnostics);
  // The flow sequence that never ends starts on line 6 of the outer file.
  EXPECT_EQ(r.diagnostics.items()[0].location.line, 6u) << dump(r.diagnostics);
  EXPECT_NE(r.diagnostics.items()[0].message.find("MeshConfig is not valid YAML"),
            std::string::npos);
  EXPECT_EQ(r.config.mesh.access_log_file, "");
}

TEST(MeshConfigTest, BareMeshConfigDocument) {
  LoadResult r = load(R"(# the `mesh` key of a ConfigMap volume
accessLogFile: /dev/stdout
accessLogEncoding: JSON
accessLogFormat: "[%START_TIME%] %RESPONSE_CODE%"
trustDomain: example.org
rootNamespace: istio-config
enableAutoMtls: false
connectTimeout: 1.5s
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
)",
                      "mesh");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const MeshConfig& mesh = r.config.mesh;
  EXPECT_EQ(mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(mesh.access_log_file, "/dev/stdout");
  EXPECT_EQ(mesh.access_log_encoding, "JSON");
  EXPECT_EQ(mesh.access_log_format, "[%START_TIME%] %RESPONSE_CODE%");
  EXPECT_EQ(mesh.trust_domain, "example.org");
  EXPECT_EQ(mesh.root_namespace, "istio-config");
  EXPECT_FALSE(mesh.enable_auto_mtls);
  EXPECT_EQ(mesh.connect_timeout, Duration(1500));
  EXPECT_EQ(mesh.file, "mesh");
  EXPECT_EQ(mesh.line, 2u);
}

TEST(MeshConfigTest, MeshNetworksAndUnknownBareDocuments) {
  LoadResult r = load("networks: {}\n", "meshNetworks");
  EXPECT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  r = load("foo: bar\n");
  ASSERT_EQ(r.diagnostics.items().size(), 1u);
  EXPECT_EQ(r.diagnostics.items()[0].severity, Severity::kWarning);
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "test.yaml:1:1");
}

TEST(MeshConfigTest, ByteOrderMarkAndWindowsLineEndings) {
  std::string text = "\xEF\xBB\xBF" + read_file(testdata("istio-configmap.yaml"));
  text.replace(text.find("mode: ALLOW_ANY"), 15, "mode: ALLOW_ALL");
  std::string crlf;
  for (char c : text) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  for (const std::string& variant : {text, crlf}) {
    LoadResult r = load(variant, "istio.yaml");
    ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
    EXPECT_EQ(r.diagnostics.items()[0].location.str(), "istio.yaml:72:13");
  }
}

// ---------------------------------------------------------------------------
// apiVersions, kinds, streams

constexpr const char* kServiceEntryTemplate = R"(apiVersion: networking.istio.io/VERSION
kind: ServiceEntry
metadata:
  name: se
  namespace: egress
spec:
  hosts: [api.example.com]
)";

std::string with_version(const std::string& version) {
  std::string text = kServiceEntryTemplate;
  text.replace(text.find("VERSION"), 7, version);
  return text;
}

TEST(ApiVersionTest, AllThreeIstioVersions) {
  for (const char* version : {"v1alpha3", "v1beta1", "v1"}) {
    LoadResult r = load(with_version(version));
    ASSERT_TRUE(r.diagnostics.empty()) << version << "\n" << dump(r.diagnostics);
    ASSERT_EQ(r.config.service_entries.size(), 1u);
    EXPECT_EQ(r.config.service_entries[0].meta.api_version,
              std::string("networking.istio.io/") + version);
    EXPECT_EQ(r.config.service_entries[0].meta.key(), "egress/se");
  }
}

TEST(ApiVersionTest, OtherNetworkingVersionIsAnError) {
  LoadResult r = load(with_version("v2"));
  ASSERT_EQ(r.diagnostics.items().size(), 1u);
  const Diagnostic& d = r.diagnostics.items()[0];
  EXPECT_EQ(d.severity, Severity::kError);
  EXPECT_EQ(d.message,
            "unsupported apiVersion \"networking.istio.io/v2\"; Istio serves "
            "networking.istio.io/v1, v1beta1 and v1alpha3");
  EXPECT_EQ(d.location.str(), "test.yaml:1:13");
  EXPECT_EQ(d.kind, "ServiceEntry");
  EXPECT_EQ(d.name, "se");
  EXPECT_EQ(r.config.resource_count(), 0u);
}

// The Sidecar resource: egress listeners, workloadSelector and
// outboundTrafficPolicy (whose mode defaults to REGISTRY_ONLY, the proto's
// 0); the inbound side is counted.
TEST(SidecarDecodeTest, EgressListenersSelectorAndOutboundPolicy) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata:
  name: egress
  namespace: shop
spec:
  workloadSelector:
    labels: {app: cart}
  egress:
  - port: {number: 443, protocol: TLS, name: tls}
    hosts: ["istio-system/*", "./api.example.com"]
  - hosts: ["./*"]
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  outboundTrafficPolicy:
    egressProxy: {host: proxy.example.com, port: {number: 3128}}
)");
  EXPECT_EQ(r.diagnostics.error_count(), 0u) << dump(r.diagnostics);
  ASSERT_EQ(r.config.sidecars.size(), 1u);
  const Sidecar& sc = r.config.sidecars[0];
  EXPECT_EQ(sc.meta.namespace_, "shop");
  ASSERT_TRUE(sc.workload_selector.has_value());
  EXPECT_EQ(sc.workload_selector->at("app"), "cart");
  ASSERT_EQ(sc.egress.size(), 2u);
  ASSERT_TRUE(sc.egress[0].port.has_value());
  EXPECT_EQ(sc.egress[0].port->number, 443u);
  EXPECT_EQ(sc.egress[0].port->protocol, "TLS");
  EXPECT_EQ(sc.egress[0].hosts, (std::vector<std::string>{"istio-system/*", "./api.example.com"}));
  EXPECT_FALSE(sc.egress[1].port.has_value());
  EXPECT_EQ(sc.ingress_count, 1u);
  ASSERT_TRUE(sc.outbound_traffic_policy.has_value());
  EXPECT_EQ(sc.outbound_traffic_policy->mode, OutboundTrafficPolicyMode::kRegistryOnly);
  ASSERT_TRUE(sc.outbound_traffic_policy->egress_proxy.has_value());
  EXPECT_EQ(sc.outbound_traffic_policy->egress_proxy->host, "proxy.example.com");
  EXPECT_EQ(r.config.resource_count(), 1u);
}

TEST(ApiVersionTest, UnsupportedKindsAreWarnings) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: default
---
apiVersion: v1
kind: Service
metadata:
  name: istio-egressgateway
  namespace: istio-system
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: k8s-gateway
)");
  ASSERT_EQ(r.diagnostics.items().size(), 3u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.error_count(), 0u);
  EXPECT_EQ(r.diagnostics.items()[0].message, "unsupported kind EnvoyFilter, ignored");
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "test.yaml:2:7");
  EXPECT_EQ(r.diagnostics.items()[1].message, "unsupported kind Service, ignored");
  EXPECT_EQ(r.diagnostics.items()[1].location.str(), "test.yaml:7:7");
  EXPECT_EQ(r.diagnostics.items()[1].name, "istio-egressgateway");
  EXPECT_EQ(r.diagnostics.items()[2].message,
            "unsupported kind Gateway, ignored (apiVersion gateway.networking.k8s.io/v1 is not "
            "Istio's networking.istio.io)");
  EXPECT_EQ(r.config.resource_count(), 0u);
  EXPECT_TRUE(r.config.source_files.empty());
}

TEST(StreamTest, MultiDocumentStreamKeepsGoodDocumentsAroundABadOne) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: first}
spec: {hosts: [a.example.com]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: broken}
spec: {hosts: [b.example.com}
---
# comment only
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: third}
spec: {hosts: [c.example.com]}
...
)");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].location.line, 9u);
  EXPECT_EQ(r.diagnostics.items()[0].message.rfind("invalid YAML: ", 0), 0u);
  ASSERT_EQ(r.config.service_entries.size(), 2u);
  EXPECT_EQ(r.config.service_entries[0].meta.name, "first");
  EXPECT_EQ(r.config.service_entries[1].meta.name, "third");
  EXPECT_EQ(r.config.service_entries[1].meta.line, 13u);
  expect_at(r.config.service_entries[1].meta, "spec.hosts[0]", 16, 16);
}

TEST(StreamTest, KubectlListOutput) {
  LoadResult r = load(R"(apiVersion: v1
items:
- apiVersion: networking.istio.io/v1beta1
  kind: ServiceEntry
  metadata:
    creationTimestamp: "2020-01-05T10:00:00Z"
    generation: 1
    name: cnn
    namespace: default
    resourceVersion: "4242"
    uid: 0a0a0a0a-2f49-11ea-821a-3eba27734fb4
  spec:
    hosts: [edition.cnn.com]
    ports:
    - {number: 80, name: http-port, protocol: HTTP}
    resolution: DNS
- apiVersion: networking.istio.io/v1beta1
  kind: VirtualService
  metadata: {name: vs, namespace: default}
  spec:
    hosts: [edition.cnn.com]
    http:
    - route:
      - destination: {host: edition.cnn.com}
kind: List
metadata:
  resourceVersion: ""
  selfLink: ""
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  ASSERT_EQ(r.config.service_entries.size(), 1u);
  ASSERT_EQ(r.config.virtual_services.size(), 1u);
  EXPECT_EQ(r.config.service_entries[0].meta.line, 3u);
  expect_at(r.config.service_entries[0].meta, "", 3, 3);
  expect_at(r.config.service_entries[0].meta, "spec.resolution", 16, 5);
  EXPECT_FALSE(r.config.virtual_services[0].http[0].route[0].weight_set);
}

TEST(StreamTest, JsonInput) {
  LoadResult r = load(R"({
  "apiVersion": "networking.istio.io/v1",
  "kind": "ServiceEntry",
  "metadata": {"name": "json", "namespace": "ns", "labels": {"app": "x"}},
  "spec": {
	"hosts": ["api.example.com"],
	"ports": [{"number": 443, "name": "tls", "protocol": "tls"}],
	"resolution": "NONE"
  }
})",
                      "se.json");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  ASSERT_EQ(r.config.service_entries.size(), 1u);
  const ServiceEntry& se = r.config.service_entries[0];
  EXPECT_EQ(se.meta.key(), "ns/json");
  EXPECT_EQ(se.meta.labels, (Labels{{"app", "x"}}));
  EXPECT_EQ(se.ports[0].protocol, "TLS");
}

// ---------------------------------------------------------------------------
// Diagnostics: unknown fields, wrong types, enums, durations

TEST(DiagnosticsTest, UnknownFieldIsAWarningWithItsLocation) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts: [edition.cnn.com]
  ports:
  - number: 80
    name: http
    foo: bar
  resolution: DNS
  bogus: 1
)");
  ASSERT_EQ(r.diagnostics.items().size(), 2u) << dump(r.diagnostics);
  const Diagnostic& d = r.diagnostics.items()[0];
  EXPECT_EQ(d.severity, Severity::kWarning);
  EXPECT_EQ(d.message, "unknown field \"foo\" in ServiceEntry spec.ports[0]");
  EXPECT_EQ(d.location.str(), "test.yaml:10:5");
  EXPECT_EQ(d.kind, "ServiceEntry");
  EXPECT_EQ(d.namespace_, "default");
  EXPECT_EQ(d.name, "cnn");
  EXPECT_EQ(d.field, "spec.ports[0].foo");
  EXPECT_EQ(r.diagnostics.items()[1].message, "unknown field \"bogus\" in ServiceEntry spec");
  EXPECT_EQ(r.diagnostics.items()[1].location.str(), "test.yaml:12:3");
  // Istio ignores unknown fields, and so does the loader: the resource loads.
  ASSERT_EQ(r.config.service_entries.size(), 1u);
  EXPECT_EQ(r.config.service_entries[0].resolution, Resolution::kDns);
}

TEST(DiagnosticsTest, WrongTypesAreErrorsAtTheValue) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
  namespace: web
spec:
  hosts:
  - {name: edition.cnn.com}
  ports:
  - number: http
    name: http
  - number: -80
    name: negative
  - number: 4294967296
    name: too-big
  - number: 80.5
    name: fraction
  resolution: [DNS]
)");
  ASSERT_EQ(r.diagnostics.items().size(), 6u) << dump(r.diagnostics);
  const auto& items = r.diagnostics.items();
  EXPECT_EQ(items[0].message, "expected a string, found a mapping");
  EXPECT_EQ(items[0].location.str(), "test.yaml:8:5");
  EXPECT_EQ(items[0].field, "spec.hosts[0]");
  EXPECT_EQ(items[1].message, "expected a non-negative integer, found \"http\"");
  EXPECT_EQ(items[1].location.str(), "test.yaml:10:13");
  EXPECT_EQ(items[1].field, "spec.ports[0].number");
  EXPECT_EQ(items[1].kind, "ServiceEntry");
  EXPECT_EQ(items[1].namespace_, "web");
  EXPECT_EQ(items[1].name, "cnn");
  EXPECT_EQ(items[1].format(),
            "test.yaml:10:13: error: ServiceEntry web/cnn: spec.ports[0].number: expected a "
            "non-negative integer, found \"http\"");
  EXPECT_EQ(items[2].message, "value -80 is out of range (0..4294967295)");
  EXPECT_EQ(items[2].location.str(), "test.yaml:12:13");
  EXPECT_EQ(items[3].message, "value 4294967296 is out of range (0..4294967295)");
  EXPECT_EQ(items[4].message, "expected a non-negative integer, found \"80.5\"");
  EXPECT_EQ(items[5].message, "expected an enum name, found a list");
  EXPECT_EQ(items[5].location.str(), "test.yaml:18:15");
  // A resource with errors is not loaded.
  EXPECT_EQ(r.config.resource_count(), 0u);
}

TEST(DiagnosticsTest, BadEnumListsTheAllowedValues) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x}
spec:
  hosts: [a.example.com]
  resolution: DNZ
  location: OUTSIDE
)");
  ASSERT_EQ(r.diagnostics.items().size(), 2u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "invalid value \"DNZ\"; allowed values: NONE, STATIC, DNS, DNS_ROUND_ROBIN");
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "test.yaml:6:15");
  EXPECT_EQ(r.diagnostics.items()[0].field, "spec.resolution");
  EXPECT_EQ(r.diagnostics.items()[1].message,
            "invalid value \"OUTSIDE\"; allowed values: MESH_EXTERNAL, MESH_INTERNAL");
  EXPECT_EQ(r.config.resource_count(), 0u);

  r = load(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: x}
spec:
  host: a.example.com
  trafficPolicy:
    loadBalancer: {simple: FASTEST}
    tls: {mode: STRICT}
)");
  ASSERT_EQ(r.diagnostics.items().size(), 2u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "invalid value \"FASTEST\"; allowed values: UNSPECIFIED, ROUND_ROBIN, LEAST_REQUEST, "
            "LEAST_CONN, RANDOM, PASSTHROUGH");
  EXPECT_EQ(r.diagnostics.items()[1].message,
            "invalid value \"STRICT\"; allowed values: DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL");
}

TEST(DiagnosticsTest, BadDurations) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x}
spec:
  hosts: [a.example.com]
  http:
  - timeout: 10
    retries: {attempts: 3, perTryTimeout: 2 seconds}
    route:
    - destination: {host: a.example.com}
)");
  ASSERT_EQ(r.diagnostics.items().size(), 2u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "missing unit in duration \"10\" (use ns, us, ms, s, m or h, e.g. \"10s\")");
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "test.yaml:7:14");
  EXPECT_EQ(r.diagnostics.items()[0].field, "spec.http[0].timeout");
  EXPECT_EQ(r.diagnostics.items()[1].message,
            "unknown unit in duration \"2 seconds\" (use ns, us, ms, s, m or h, e.g. \"10s\")");
  EXPECT_EQ(r.config.resource_count(), 0u);
}

TEST(DurationTest, GoDurationGrammar) {
  struct Case {
    const char* text;
    int64_t ms;
  };
  for (const Case& c :
       {Case{"10s", 10'000}, Case{"1.5s", 1'500}, Case{"100ms", 100}, Case{"1m", 60'000},
        Case{"2h", 7'200'000}, Case{"1h30m", 5'400'000}, Case{"1m0s", 60'000}, Case{"0", 0},
        Case{"0s", 0}, Case{".5s", 500}, Case{"500us", 1}, Case{"1500us", 2}, Case{"2000000ns", 2},
        Case{"-1s", -1'000}, Case{"+3s", 3'000}, Case{"1\xC2\xB5s", 1}}) {
    DurationParse p = parse_duration(c.text);
    ASSERT_TRUE(p.value.has_value()) << c.text << ": " << p.error;
    EXPECT_EQ(p.value->count(), c.ms) << c.text;
  }
  for (const char* bad : {"", "s", "10", "1.5", "10 s", "1d", "1s2", ".s", "-",
                          "99999999999999999999h", "9223372037s"}) {
    EXPECT_FALSE(parse_duration(bad).value.has_value()) << bad;
  }
}

TEST(DiagnosticsTest, MissingNameAndDuplicateKeys) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  namespace: istio-system
spec:
  selector: {istio: egressgateway}
)");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message, "metadata.name is required");
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "test.yaml:3:1");

  r = load(R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: egressgateway, istio: ingressgateway}
  servers: []
  servers: []
)");
  ASSERT_EQ(r.diagnostics.items().size(), 2u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message, "duplicate key \"istio\"");
  EXPECT_EQ(r.diagnostics.items()[1].message, "duplicate field \"servers\"");
  EXPECT_EQ(r.diagnostics.items()[1].location.str(), "test.yaml:7:3");
}

TEST(DiagnosticsTest, MergeKeysAreRefused) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: x}
spec:
  host: a.example.com
  subsets:
  - &v1 {name: v1, labels: {version: v1}}
  - <<: *v1
    name: v2
  - {name: v3, labels: {"<<": quoted-is-a-label}}
)");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "YAML merge keys (<<) are not supported; write the merged fields out");
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "test.yaml:8:5");
}

TEST(DiagnosticsTest, NonMappingDocumentsAndMissingPieces) {
  LoadResult r = load("- just\n- a list\n");
  ASSERT_EQ(r.diagnostics.items().size(), 1u);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "expected a Kubernetes resource (a mapping with apiVersion and kind), found a list");
  r = load("apiVersion: networking.istio.io/v1\n");
  ASSERT_EQ(r.diagnostics.items().size(), 1u);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "document has apiVersion \"networking.istio.io/v1\" but no kind");
  r = load("kind: ServiceEntry\nmetadata: {name: x}\n");
  ASSERT_EQ(r.diagnostics.items().size(), 1u);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "apiVersion is missing; ServiceEntry is networking.istio.io/v1");
  r = load("kind: {a: b}\n");
  ASSERT_EQ(r.diagnostics.items().size(), 1u);
  EXPECT_EQ(r.diagnostics.items()[0].message, "kind must be a string, found a mapping");
}

TEST(DiagnosticsTest, UnsupportedIstioFieldsWarn) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x}
spec:
  hosts: [a.example.com]
  http:
  - corsPolicy: {allowOrigins: [{exact: "*"}]}
    route:
    - destination: {host: a.example.com}
)");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].severity, Severity::kWarning);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "field \"corsPolicy\" in VirtualService spec.http[0] is not supported by Sluice and is "
            "ignored");
  EXPECT_EQ(r.config.virtual_services.size(), 1u);
}

// ---------------------------------------------------------------------------
// Every field of every kind reaches the model.

TEST(FieldsTest, ServiceEntryEveryField) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: full
  namespace: egress
  labels: {team: net, version: 2}
  annotations:
    note: "hello"
spec:
  hosts: [db.example.com, "*.db.example.com"]
  addresses: [10.1.0.0/16, 192.168.1.1]
  ports:
  - number: 5432
    protocol: tcp
    name: postgres
    targetPort: 15432
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: 10.1.2.3
    ports: {postgres: 6432}
    labels: {zone: a}
    network: net1
    locality: us-east1/b
    weight: 7
    serviceAccount: db-sa
  workloadSelector:
    labels: {app: db}
  exportTo: [".", istio-system]
  subjectAltNames: ["spiffe://cluster.local/ns/egress/sa/db"]
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const ServiceEntry& se = r.config.service_entries.at(0);
  EXPECT_EQ(se.meta.labels, (Labels{{"team", "net"}, {"version", "2"}}));
  EXPECT_EQ(se.meta.annotations, (Labels{{"note", "hello"}}));
  EXPECT_EQ(se.hosts, (std::vector<std::string>{"db.example.com", "*.db.example.com"}));
  EXPECT_EQ(se.addresses, (std::vector<std::string>{"10.1.0.0/16", "192.168.1.1"}));
  ASSERT_EQ(se.ports.size(), 1u);
  EXPECT_EQ(se.ports[0].number, 5432u);
  EXPECT_EQ(se.ports[0].protocol, "TCP");
  EXPECT_EQ(se.ports[0].name, "postgres");
  EXPECT_EQ(se.ports[0].target_port, 15432u);
  EXPECT_EQ(se.location, ServiceLocation::kMeshInternal);
  EXPECT_EQ(se.resolution, Resolution::kStatic);
  ASSERT_EQ(se.endpoints.size(), 1u);
  const WorkloadEntry& ep = se.endpoints[0];
  EXPECT_EQ(ep.address, "10.1.2.3");
  EXPECT_EQ(ep.ports, (std::map<std::string, uint32_t>{{"postgres", 6432}}));
  EXPECT_EQ(ep.labels, (Labels{{"zone", "a"}}));
  EXPECT_EQ(ep.network, "net1");
  EXPECT_EQ(ep.locality, "us-east1/b");
  EXPECT_EQ(ep.weight, 7u);
  EXPECT_EQ(ep.service_account, "db-sa");
  ASSERT_TRUE(se.workload_selector.has_value());
  EXPECT_EQ(*se.workload_selector, (Labels{{"app", "db"}}));
  EXPECT_EQ(se.export_to, (std::vector<std::string>{".", "istio-system"}));
  EXPECT_EQ(se.subject_alt_names,
            std::vector<std::string>{"spiffe://cluster.local/ns/egress/sa/db"});
  expect_at(se.meta, "spec.endpoints[0].ports.postgres", 21, 13);
  expect_at(se.meta, "metadata.labels.version", 6, 23);
  expect_at(se.meta, "spec.workloadSelector.labels.app", 28, 14);
}

TEST(FieldsTest, VirtualServiceEveryField) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: full, namespace: web}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/egress, mesh]
  exportTo: ["*"]
  http:
  - name: primary
    match:
    - name: m1
      uri: {prefix: /v1}
      scheme: {exact: https}
      method: {regex: "GET|HEAD"}
      authority: {exact: api.example.com}
      headers:
        x-user: {exact: alice}
        x-present: {}
      withoutHeaders:
        x-debug: {prefix: "1"}
      queryParams:
        q: {regex: "^a.*"}
      ignoreUriCase: true
      port: 8080
      sourceLabels: {app: web}
      gateways: [mesh]
      sourceNamespace: frontend
    route:
    - destination: {host: a.example.com, subset: v1, port: {number: 80}}
      weight: 75
      headers:
        request:
          set: {x-a: "1"}
          add: {x-b: "2"}
          remove: [x-c]
        response:
          remove: [server]
    - destination: {host: b.example.com}
      weight: 25
    rewrite: {uri: /v2, authority: new.example.com}
    timeout: 2.5s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,connect-failure", retryRemoteLocalities: true}
    fault:
      delay: {fixedDelay: 100ms, percentage: {value: 12.5}}
      abort: {httpStatus: 503, percentage: {value: 1}}
    mirror: {host: mirror.example.com, subset: shadow}
    mirrorPercentage: {value: 50.0}
    headers:
      request: {set: {x-route: primary}}
  - match:
    - uri: {exact: /old}
    redirect: {uri: /new, authority: other.example.com, port: 8443, scheme: https, redirectCode: 308}
  - directResponse:
      status: 418
      body: {string: "I'm a teapot"}
  - directResponse:
      status: 200
      body: {bytes: aGVsbG8=}
  tls:
  - match:
    - sniHosts: [api.example.com]
      destinationSubnets: [10.0.0.0/8]
      port: 443
      sourceLabels: {app: web}
      gateways: [mesh]
      sourceNamespace: frontend
    route:
    - destination: {host: api.example.com, port: {number: 443}}
      weight: 100
  tcp:
  - match:
    - destinationSubnets: [10.2.0.0/16]
      port: 5432
      sourceLabels: {app: db-client}
      gateways: [mesh]
      sourceNamespace: data
    route:
    - destination: {host: db.example.com, port: {number: 5432}}
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const VirtualService& vs = r.config.virtual_services.at(0);
  EXPECT_EQ(vs.gateways, (std::vector<std::string>{"istio-system/egress", "mesh"}));
  EXPECT_EQ(vs.export_to, std::vector<std::string>{"*"});
  ASSERT_EQ(vs.http.size(), 4u);
  const HTTPRoute& h = vs.http[0];
  EXPECT_EQ(h.name, "primary");
  ASSERT_EQ(h.match.size(), 1u);
  const HTTPMatchRequest& m = h.match[0];
  EXPECT_EQ(m.name, "m1");
  EXPECT_EQ(m.uri->kind, StringMatch::Kind::kPrefix);
  EXPECT_EQ(m.uri->value, "/v1");
  EXPECT_EQ(m.scheme->kind, StringMatch::Kind::kExact);
  EXPECT_EQ(m.scheme->value, "https");
  EXPECT_EQ(m.method->kind, StringMatch::Kind::kRegex);
  EXPECT_EQ(m.method->value, "GET|HEAD");
  EXPECT_EQ(m.authority->value, "api.example.com");
  EXPECT_EQ(m.headers.at("x-user").value, "alice");
  // `{}` means "present with any value": prefix "".
  EXPECT_EQ(m.headers.at("x-present").kind, StringMatch::Kind::kPrefix);
  EXPECT_EQ(m.headers.at("x-present").value, "");
  EXPECT_EQ(m.without_headers.at("x-debug").kind, StringMatch::Kind::kPrefix);
  EXPECT_EQ(m.query_params.at("q").kind, StringMatch::Kind::kRegex);
  EXPECT_TRUE(m.ignore_uri_case);
  EXPECT_EQ(m.port, 8080u);
  EXPECT_EQ(m.source_labels, (Labels{{"app", "web"}}));
  EXPECT_EQ(m.gateways, std::vector<std::string>{"mesh"});
  EXPECT_EQ(m.source_namespace, "frontend");
  ASSERT_EQ(h.route.size(), 2u);
  EXPECT_EQ(h.route[0].destination.subset, "v1");
  EXPECT_EQ(h.route[0].weight, 75);
  ASSERT_TRUE(h.route[0].headers.has_value());
  EXPECT_EQ(h.route[0].headers->request->set.at("x-a"), "1");
  EXPECT_EQ(h.route[0].headers->request->add.at("x-b"), "2");
  EXPECT_EQ(h.route[0].headers->request->remove, std::vector<std::string>{"x-c"});
  EXPECT_EQ(h.route[0].headers->response->remove, std::vector<std::string>{"server"});
  EXPECT_EQ(h.route[1].destination.host, "b.example.com");
  EXPECT_FALSE(h.route[1].destination.port.has_value());
  EXPECT_EQ(h.route[1].weight, 25);
  EXPECT_EQ(h.rewrite->uri, "/v2");
  EXPECT_EQ(h.rewrite->authority, "new.example.com");
  EXPECT_EQ(h.timeout, Duration(2500));
  EXPECT_EQ(h.retries->attempts, 3);
  EXPECT_EQ(h.retries->per_try_timeout, Duration(500));
  EXPECT_EQ(h.retries->retry_on, "5xx,connect-failure");
  EXPECT_TRUE(h.retries->retry_remote_localities);
  EXPECT_EQ(h.fault->delay->fixed_delay, Duration(100));
  EXPECT_DOUBLE_EQ(h.fault->delay->percentage->value, 12.5);
  EXPECT_EQ(h.fault->abort->http_status, 503u);
  EXPECT_DOUBLE_EQ(h.fault->abort->percentage->value, 1.0);
  EXPECT_EQ(h.mirror->host, "mirror.example.com");
  EXPECT_EQ(h.mirror->subset, "shadow");
  EXPECT_DOUBLE_EQ(h.mirror_percentage->value, 50.0);
  EXPECT_EQ(h.headers->request->set.at("x-route"), "primary");
  EXPECT_FALSE(h.headers->response.has_value());

  const HTTPRedirect& redirect = *vs.http[1].redirect;
  EXPECT_EQ(redirect.uri, "/new");
  EXPECT_EQ(redirect.authority, "other.example.com");
  EXPECT_EQ(redirect.port, 8443u);
  EXPECT_EQ(redirect.scheme, "https");
  EXPECT_EQ(redirect.redirect_code, 308u);
  EXPECT_EQ(vs.http[2].direct_response->status, 418u);
  EXPECT_EQ(vs.http[2].direct_response->body, "I'm a teapot");
  EXPECT_EQ(vs.http[3].direct_response->body, "hello");

  ASSERT_EQ(vs.tls.size(), 1u);
  const TLSMatchAttributes& tm = vs.tls[0].match.at(0);
  EXPECT_EQ(tm.sni_hosts, std::vector<std::string>{"api.example.com"});
  EXPECT_EQ(tm.destination_subnets, std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_EQ(tm.port, 443u);
  EXPECT_EQ(tm.source_labels, (Labels{{"app", "web"}}));
  EXPECT_EQ(tm.gateways, std::vector<std::string>{"mesh"});
  EXPECT_EQ(tm.source_namespace, "frontend");
  EXPECT_EQ(vs.tls[0].route.at(0).destination.port->number, 443u);
  EXPECT_EQ(vs.tls[0].route.at(0).weight, 100);
  EXPECT_TRUE(vs.tls[0].route.at(0).weight_set);

  ASSERT_EQ(vs.tcp.size(), 1u);
  const L4MatchAttributes& lm = vs.tcp[0].match.at(0);
  EXPECT_EQ(lm.destination_subnets, std::vector<std::string>{"10.2.0.0/16"});
  EXPECT_EQ(lm.port, 5432u);
  EXPECT_EQ(lm.source_labels, (Labels{{"app", "db-client"}}));
  EXPECT_EQ(lm.gateways, std::vector<std::string>{"mesh"});
  EXPECT_EQ(lm.source_namespace, "data");
  EXPECT_EQ(vs.tcp[0].route.at(0).destination.host, "db.example.com");
  EXPECT_FALSE(vs.tcp[0].route.at(0).weight_set);

  expect_at(vs.meta, "spec.http[0].route[1].weight", 39, 7);
  expect_at(vs.meta, "spec.http[0].match[0].headers.x-present", 18, 9);
  expect_at(vs.meta, "spec.tcp[0].match[0].port", 73, 7);
}

TEST(FieldsTest, DestinationRuleEveryField) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: full, namespace: web}
spec:
  host: api.example.com
  exportTo: ["."]
  workloadSelector: {labels: {app: web}}
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        httpCookie: {name: session, ttl: 1h}
        useSourceIp: true
        httpQueryParameterName: user
        minimumRingSize: 1024
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive: {probes: 5, time: 7200s, interval: 75s}
        maxConnectionDuration: 10m
        idleTimeout: 0s
      http:
        http1MaxPendingRequests: 10
        http2MaxRequests: 1000
        maxRequestsPerConnection: 1
        maxRetries: 3
        idleTimeout: 1m
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 0
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 100
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/client.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/ca.pem
      credentialName: client-credential
      caCrl: /etc/certs/client-crl.pem
      subjectAltNames: [api.example.com]
      sni: api.example.com
      insecureSkipVerify: false
    portLevelSettings:
    - port: {number: 443}
      loadBalancer: {simple: LEAST_REQUEST}
      connectionPool: {tcp: {maxConnections: 5}}
      outlierDetection: {consecutive5xxErrors: 2}
      tls: {mode: SIMPLE}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: PASSTHROUGH}
  - name: v2
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const DestinationRule& dr = r.config.destination_rules.at(0);
  EXPECT_EQ(dr.export_to, std::vector<std::string>{"."});
  EXPECT_EQ(*dr.workload_selector, (Labels{{"app", "web"}}));
  const TrafficPolicy& tp = *dr.traffic_policy;
  EXPECT_EQ(tp.load_balancer->simple, SimpleLB::kUnspecified);
  const ConsistentHashLB& ch = *tp.load_balancer->consistent_hash;
  EXPECT_EQ(ch.http_header_name, "x-user");
  EXPECT_EQ(ch.http_cookie_name, "session");
  EXPECT_EQ(ch.http_cookie_ttl, Duration(3'600'000));
  EXPECT_TRUE(ch.use_source_ip);
  EXPECT_EQ(ch.http_query_parameter_name, "user");
  EXPECT_EQ(ch.minimum_ring_size, 1024u);
  const TCPSettings& tcp = *tp.connection_pool->tcp;
  EXPECT_EQ(tcp.max_connections, 100);
  EXPECT_EQ(tcp.connect_timeout, Duration(30));
  EXPECT_EQ(tcp.max_connection_duration, Duration(600'000));
  EXPECT_EQ(tcp.idle_timeout, Duration(0)) << "0s: no idle timeout";
  EXPECT_EQ(tcp.tcp_keepalive->probes, 5u);
  EXPECT_EQ(tcp.tcp_keepalive->time, Duration(7'200'000));
  EXPECT_EQ(tcp.tcp_keepalive->interval, Duration(75'000));
  const HTTPSettings& http = *tp.connection_pool->http;
  EXPECT_EQ(http.http1_max_pending_requests, 10);
  EXPECT_EQ(http.http2_max_requests, 1000);
  EXPECT_EQ(http.max_requests_per_connection, 1);
  EXPECT_EQ(http.max_retries, 3);
  EXPECT_EQ(http.idle_timeout, Duration(60'000));
  const OutlierDetection& od = *tp.outlier_detection;
  EXPECT_EQ(od.consecutive_5xx_errors, 7u);
  EXPECT_EQ(od.consecutive_gateway_errors, 0u);
  EXPECT_EQ(od.interval, Duration(300'000));
  EXPECT_EQ(od.base_ejection_time, Duration(900'000));
  EXPECT_EQ(od.max_ejection_percent, 100);
  const ClientTLSSettings& tls = *tp.tls;
  EXPECT_EQ(tls.mode, ClientTLSMode::kMutual);
  EXPECT_EQ(tls.client_certificate, "/etc/certs/client.pem");
  EXPECT_EQ(tls.private_key, "/etc/certs/key.pem");
  EXPECT_EQ(tls.ca_certificates, "/etc/certs/ca.pem");
  EXPECT_EQ(tls.ca_crl, "/etc/certs/client-crl.pem");
  EXPECT_EQ(tls.credential_name, "client-credential");
  EXPECT_EQ(tls.subject_alt_names, std::vector<std::string>{"api.example.com"});
  EXPECT_EQ(tls.sni, "api.example.com");
  EXPECT_FALSE(tls.insecure_skip_verify);
  ASSERT_EQ(tp.port_level_settings.size(), 1u);
  const PortTrafficPolicy& pl = tp.port_level_settings[0];
  EXPECT_EQ(pl.port->number, 443u);
  EXPECT_EQ(pl.load_balancer->simple, SimpleLB::kLeastRequest);
  EXPECT_EQ(pl.connection_pool->tcp->max_connections, 5);
  EXPECT_EQ(pl.outlier_detection->consecutive_5xx_errors, 2u);
  EXPECT_FALSE(pl.outlier_detection->consecutive_gateway_errors.has_value());
  EXPECT_EQ(pl.tls->mode, ClientTLSMode::kSimple);
  ASSERT_EQ(dr.subsets.size(), 2u);
  EXPECT_EQ(dr.subsets[0].labels, (Labels{{"version", "v1"}}));
  EXPECT_EQ(dr.subsets[0].traffic_policy->load_balancer->simple, SimpleLB::kPassthrough);
  EXPECT_EQ(dr.subsets[1].name, "v2");
  EXPECT_FALSE(dr.subsets[1].traffic_policy.has_value());
  expect_at(dr.meta, "spec.trafficPolicy.portLevelSettings[0].tls.mode", 50, 13);
}

TEST(FieldsTest, GatewayEveryField) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - name: tls-server
    port: {number: 443, protocol: tls, name: tls, targetPort: 8443}
    bind: 0.0.0.0
    hosts: ["*/api.example.com"]
    tls:
      httpsRedirect: true
      mode: ISTIO_MUTUAL
      serverCertificate: /etc/certs/cert.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/ca.pem
      credentialName: egress-cert
      caCrl: /etc/certs/crl.pem
      subjectAltNames: [spiffe://cluster.local/ns/default/sa/sleep]
      verifyCertificateSpki: [abc=]
      verifyCertificateHash: ["AB:CD"]
      minProtocolVersion: TLSV1_2
      maxProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-RSA-AES256-GCM-SHA384]
  - port: {number: 80, protocol: HTTP, name: http}
    hosts: ["*"]
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const Gateway& gw = r.config.gateways.at(0);
  ASSERT_EQ(gw.servers.size(), 2u);
  const Server& s = gw.servers[0];
  EXPECT_EQ(s.name, "tls-server");
  EXPECT_EQ(s.port.number, 443u);
  EXPECT_EQ(s.port.protocol, "TLS");
  EXPECT_EQ(s.port.name, "tls");
  EXPECT_EQ(s.port.target_port, 8443u);
  EXPECT_EQ(s.bind, "0.0.0.0");
  EXPECT_EQ(s.hosts, std::vector<std::string>{"*/api.example.com"});
  const ServerTLSSettings& tls = *s.tls;
  EXPECT_TRUE(tls.https_redirect);
  EXPECT_EQ(tls.mode, ServerTLSMode::kIstioMutual);
  EXPECT_EQ(tls.server_certificate, "/etc/certs/cert.pem");
  EXPECT_EQ(tls.private_key, "/etc/certs/key.pem");
  EXPECT_EQ(tls.ca_certificates, "/etc/certs/ca.pem");
  EXPECT_EQ(tls.credential_name, "egress-cert");
  EXPECT_EQ(tls.ca_crl, "/etc/certs/crl.pem");
  EXPECT_EQ(tls.subject_alt_names,
            std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/sleep"});
  EXPECT_EQ(tls.verify_certificate_spki, std::vector<std::string>{"abc="});
  EXPECT_EQ(tls.verify_certificate_hash, std::vector<std::string>{"AB:CD"});
  EXPECT_EQ(tls.min_protocol_version, "TLSV1_2");
  EXPECT_EQ(tls.max_protocol_version, "TLSV1_3");
  EXPECT_EQ(tls.cipher_suites, std::vector<std::string>{"ECDHE-RSA-AES256-GCM-SHA384"});
  EXPECT_FALSE(gw.servers[1].tls.has_value());
  EXPECT_EQ(gw.servers[1].port.protocol, "HTTP");

  r = load(R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress}
spec:
  servers:
  - port: {number: 443, protocol: TLS, name: tls}
    tls: {mode: PASSTHROUGH, minProtocolVersion: TLSV1_9}
)");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message,
            "invalid value \"TLSV1_9\"; allowed values: TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2, "
            "TLSV1_3");
}

TEST(FieldsTest, BadBase64AndConflictingOneofs) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x}
spec:
  hosts: [a.example.com]
  http:
  - match:
    - uri: {exact: /a, prefix: /b}
    directResponse:
      status: 200
      body: {bytes: "not base64!"}
)");
  ASSERT_EQ(r.diagnostics.items().size(), 2u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message, "only one of exact, prefix or regex may be set");
  EXPECT_EQ(r.diagnostics.items()[1].message, "body.bytes is not valid base64");
  EXPECT_EQ(r.diagnostics.items()[1].field, "spec.http[0].directResponse.body.bytes");
}

TEST(FieldsTest, UriRegexRewrite) {
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x}
spec:
  hosts: [a.example.com]
  http:
  - rewrite:
      uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}
    route: [{destination: {host: b.example.com}}]
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const HTTPRewrite& rw = *r.config.virtual_services.at(0).http.at(0).rewrite;
  ASSERT_TRUE(rw.uri_regex_rewrite.has_value());
  EXPECT_EQ(rw.uri_regex_rewrite->match, "^/service/([^/]+)(/.*)$");
  EXPECT_EQ(rw.uri_regex_rewrite->rewrite, "\\2/instance/\\1");
}

// ---------------------------------------------------------------------------
// Directories

constexpr const char* kSmallServiceEntry = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: NAME}
spec: {hosts: [NAME.example.com]}
)";

std::string service_entry(const std::string& name) {
  std::string text = kSmallServiceEntry;
  for (size_t at; (at = text.find("NAME")) != std::string::npos;) text.replace(at, 4, name);
  return text;
}

std::vector<std::string> names(const ConfigSet& config) {
  std::vector<std::string> out;
  for (const ServiceEntry& se : config.service_entries) out.push_back(se.meta.name);
  return out;
}

TEST(DirectoryTest, RecursiveSortedAndFilteredByExtension) {
  TempDir dir;
  dir.write("b.yaml", service_entry("b"));
  dir.write("a.yml", service_entry("a"));
  dir.write("c.json", R"({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                        "metadata": {"name": "c"}, "spec": {"hosts": ["c.example.com"]}})");
  dir.write("sub/d.yaml", service_entry("d"));
  dir.write("sub/deeper/e.yaml", service_entry("e"));
  dir.write("README.md", "not yaml: [");
  dir.write("notes", "apiVersion: [");
  LoadResult r;
  load_path(dir.path().string(), r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(names(r.config), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  ASSERT_EQ(r.config.source_files.size(), 5u);
  EXPECT_EQ(r.config.source_files[0], (dir.path() / "a.yml").string());
  EXPECT_EQ(r.config.service_entries[3].meta.file, (dir.path() / "sub/d.yaml").string());
}

TEST(DirectoryTest, ConfigMapVolumeLayout) {
  // What the kubelet mounts for `volumes: [{name: config, configMap: {name: istio}}]`.
  TempDir dir;
  const fs::path root = dir.path() / "istio-config";
  const std::string stamp = "..2024_01_01_00_00_00.123456789";
  dir.write("istio-config/" + stamp + "/mesh",
            "accessLogFile: /dev/stdout\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n");
  dir.write("istio-config/" + stamp + "/meshNetworks", "networks: {}\n");
  dir.write("istio-config/" + stamp + "/egress.yaml", service_entry("cnn"));
  fs::create_directory_symlink(stamp, root / "..data");
  fs::create_symlink("..data/mesh", root / "mesh");
  fs::create_symlink("..data/meshNetworks", root / "meshNetworks");
  fs::create_symlink("..data/egress.yaml", root / "egress.yaml");

  LoadResult r;
  load_path(root.string(), r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(r.config.mesh.access_log_file, "/dev/stdout");
  EXPECT_EQ(r.config.mesh.file, (root / "mesh").string());
  // Each key once, through its visible name, never through ..data or the stamp.
  EXPECT_EQ(names(r.config), std::vector<std::string>{"cnn"});
  EXPECT_EQ(r.config.source_files,
            (std::vector<std::string>{(root / "egress.yaml").string(), (root / "mesh").string()}));

  // The parent of the volume is an ordinary directory: extensionless files
  // are only taken inside the volume itself.
  LoadResult parent;
  dir.write("stray", "apiVersion: [");
  load_path(dir.path().string(), parent);
  ASSERT_TRUE(parent.diagnostics.empty()) << dump(parent.diagnostics);
  EXPECT_EQ(parent.config.source_files.size(), 2u);
}

TEST(DirectoryTest, SymlinkLoopsAndMissingPaths) {
  TempDir dir;
  dir.write("a.yaml", service_entry("a"));
  fs::create_directory_symlink(dir.path(), dir.path() / "loop");
  LoadResult r;
  load_path(dir.path().string(), r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(names(r.config), std::vector<std::string>{"a"});

  LoadResult missing;
  load_path((dir.path() / "nope.yaml").string(), missing);
  ASSERT_EQ(missing.diagnostics.items().size(), 1u);
  EXPECT_EQ(missing.diagnostics.items()[0].message, "cannot read: No such file or directory");
  EXPECT_EQ(missing.diagnostics.items()[0].location.file, (dir.path() / "nope.yaml").string());
}

TEST(DirectoryTest, ExplicitFileIsLoadedWhateverItsName) {
  TempDir dir;
  const std::string path = dir.write("mesh", "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n");
  LoadResult r = load_paths({path});
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
}

TEST(DirectoryTest, ThousandResourcesLoadQuickly) {
  TempDir dir;
  for (int i = 0; i < 500; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "se-%04d.yaml", i);
    dir.write(name, R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: se-)" + std::to_string(i) +
                        R"(
  namespace: egress
spec:
  hosts: [host-)" + std::to_string(i) +
                        R"(.example.com]
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs-)" + std::to_string(i) +
                        R"(
  namespace: egress
spec:
  hosts: [host-)" + std::to_string(i) +
                        R"(.example.com]
  http:
  - match:
    - uri: {prefix: /api}
    route:
    - destination: {host: host-)" +
                        std::to_string(i) + R"(.example.com, port: {number: 443}}
      weight: 100
)");
  }
  const auto start = std::chrono::steady_clock::now();
  LoadResult r;
  load_path(dir.path().string(), r);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.service_entries.size(), 500u);
  EXPECT_EQ(r.config.virtual_services.size(), 500u);
  EXPECT_EQ(r.config.resource_count(), 1000u);
  EXPECT_EQ(r.config.source_files.size(), 500u);
  // Generous bound (sanitizer builds, busy CI); the point is "not seconds".
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), 5000);
  std::printf("loaded 1000 resources from 500 files in %lld ms\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
}

}  // namespace
}  // namespace sluice::config
