// Cross-resource analysis (istioctl analyze): each message with its code,
// level, Istio's exact text and the line istioctl would print. Resources are
// written as YAML and go through the real loader, so the lines are the ones a
// user sees.
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "core/config/analysis.h"
#include "core/config/loader.h"
#include "core/config/validation.h"

namespace sluice::config {
namespace {

// The seed's resources (seed/egress-walkthrough.md), all in namespace
// default. Line numbers below count from each document's first line.
constexpr std::string_view kVirtualService = R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
)";

constexpr std::string_view kGateway = R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: https
      protocol: HTTPS
    hosts:
    - edition.cnn.com
    tls:
      mode: MUTUAL
      serverCertificate: /etc/certs/cert-chain.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/root-cert.pem
)";

constexpr std::string_view kDestinationRule = R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 80
        tls:
          mode: ISTIO_MUTUAL
          sni: edition.cnn.com
)";

constexpr std::string_view kServiceEntry = R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
)";

std::string replaced(std::string_view text, std::string_view from, std::string_view to) {
  std::string out(text);
  size_t at = out.find(from);
  EXPECT_NE(at, std::string::npos) << "test bug: \"" << from << "\" not in document";
  if (at != std::string::npos) out.replace(at, from.size(), to);
  return out;
}

std::string dump(const Diagnostics& d) {
  std::string out;
  for (const auto& item : d.items()) out += "  " + item.format() + "\n";
  return out.empty() ? "  (none)\n" : out;
}

// Loads the documents as one file "test.yaml" (first document at line 1) and
// requires the loader and validation to have nothing to say: every finding
// below is analysis's own.
ConfigSet load(std::initializer_list<std::string_view> docs) {
  std::string text;
  for (std::string_view doc : docs) {
    if (!text.empty()) text += "---\n";
    text += doc;
  }
  LoadResult result;
  load_text(text, "test.yaml", result);
  EXPECT_TRUE(result.diagnostics.empty()) << "loader:\n" << dump(result.diagnostics);
  Diagnostics v = validate(result.config);
  EXPECT_EQ(v.error_count(), 0u) << "validation:\n" << dump(v);
  return result.config;
}

std::vector<std::string> formatted(const Diagnostics& d) {
  std::vector<std::string> out;
  for (const auto& item : d.items()) out.push_back(item.format());
  return out;
}

#define EXPECT_FINDINGS(diags, ...)                                                     \
  do {                                                                                  \
    const Diagnostics& diags_ = (diags);                                                \
    EXPECT_EQ(formatted(diags_), (std::vector<std::string>{__VA_ARGS__})) << dump(diags_); \
  } while (0)

// ---------------------------------------------------------------------------

TEST(Analysis, WalkthroughIsClean) {
  Diagnostics d = analyze(load({kVirtualService, kGateway, kDestinationRule, kServiceEntry}));
  EXPECT_TRUE(d.empty()) << dump(d);
}

TEST(Analysis, FindingsCarryCodeLevelResourceAndLocation) {
  Diagnostics d = analyze(load({kVirtualService, kDestinationRule, kServiceEntry}));
  ASSERT_FALSE(d.empty());
  const Diagnostic& first = d.items()[0];
  EXPECT_EQ(first.code, "IST0101");
  EXPECT_EQ(first.severity, Severity::kError);
  EXPECT_EQ(first.kind, "VirtualService");
  EXPECT_EQ(first.namespace_, "default");
  EXPECT_EQ(first.name, "direct-cnn-through-egress-gateway");
  EXPECT_EQ(first.field, "spec.gateways[0]");
  EXPECT_EQ(first.location.str(), "test.yaml:9:5");
}

// --- IST0101 ReferencedResourceNotFound: gateway --------------------------

TEST(GatewayReference, MissingGatewayIsReportedWithItsHostCheck) {
  // istioctl reports the missing gateway, and (as it has no hosts) IST0132.
  EXPECT_FINDINGS(analyze(load({kVirtualService, kDestinationRule, kServiceEntry})),
                  "Error [IST0101] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:9) "
                  "Referenced gateway not found: \"istio-egressgateway\"",
                  "Warning [IST0132] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:9) "
                  "one or more host [edition.cnn.com] defined in VirtualService "
                  "default/direct-cnn-through-egress-gateway not found in Gateway default/istio-egressgateway.");
}

TEST(GatewayReference, ShortNameResolvesInTheVirtualServicesNamespace) {
  // The Gateway lives in istio-system: "istio-egressgateway" from default is
  // default/istio-egressgateway, which does not exist.
  std::string gw = replaced(kGateway, "  name: istio-egressgateway\n", "  name: istio-egressgateway\n  namespace: istio-system\n");
  Diagnostics d = analyze(load({kVirtualService, gw, kDestinationRule, kServiceEntry}));
  ASSERT_EQ(d.items().size(), 2u) << dump(d);
  EXPECT_EQ(d.items()[0].message, "Referenced gateway not found: \"istio-egressgateway\"");

  // Qualified, it resolves; so does the legacy "name.namespace" form.
  for (const char* ref : {"istio-system/istio-egressgateway", "istio-egressgateway.istio-system"}) {
    std::string vs = replaced(kVirtualService, "  - istio-egressgateway\n  - mesh", std::string("  - ") + ref + "\n  - mesh");
    Diagnostics ok = analyze(load({vs, gw, kDestinationRule, kServiceEntry}));
    EXPECT_TRUE(ok.empty()) << ref << "\n" << dump(ok);
  }
}

TEST(GatewayReference, MeshIsReserved) {
  std::string vs = replaced(kVirtualService, "  - istio-egressgateway\n  - mesh", "  - mesh");
  vs = replaced(vs, "      - istio-egressgateway\n", "      - mesh\n");
  Diagnostics d = analyze(load({vs, kDestinationRule, kServiceEntry}));
  // (The two rules now share a match: see UnreachableRules.)
  for (const auto& item : d.items()) EXPECT_NE(item.code, "IST0101") << item.format();
}

// --- IST0132 VirtualServiceHostNotFoundInGateway ---------------------------

TEST(GatewayHosts, VirtualServiceHostMustBeOfferedByTheGateway) {
  std::string gw = replaced(kGateway, "    - edition.cnn.com\n", "    - www.cnn.com\n");
  EXPECT_FINDINGS(analyze(load({kVirtualService, gw, kDestinationRule, kServiceEntry})),
                  "Warning [IST0132] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:9) "
                  "one or more host [edition.cnn.com] defined in VirtualService "
                  "default/direct-cnn-through-egress-gateway not found in Gateway default/istio-egressgateway.");
}

TEST(GatewayHosts, WildcardsAndNamespacedHosts) {
  for (const char* host : {"\"*.cnn.com\"", "\"*\"", "default/edition.cnn.com", "./edition.cnn.com",
                           "\"*/edition.cnn.com\""}) {
    std::string gw = replaced(kGateway, "    - edition.cnn.com\n", std::string("    - ") + host + "\n");
    Diagnostics d = analyze(load({kVirtualService, gw, kDestinationRule, kServiceEntry}));
    EXPECT_TRUE(d.empty()) << host << "\n" << dump(d);
  }
  // A host exported to another namespace only is not offered to default.
  std::string gw = replaced(kGateway, "    - edition.cnn.com\n", "    - istio-system/edition.cnn.com\n");
  Diagnostics d = analyze(load({kVirtualService, gw, kDestinationRule, kServiceEntry}));
  ASSERT_EQ(d.items().size(), 1u) << dump(d);
  EXPECT_EQ(d.items()[0].code, "IST0132");
}

// --- IST0101: host+subset in destinationrule --------------------------------

TEST(SubsetReference, SubsetMissingFromTheDestinationRule) {
  std::string vs = replaced(kVirtualService, "subset: cnn", "subset: v3");
  EXPECT_FINDINGS(analyze(load({vs, kGateway, kDestinationRule, kServiceEntry})),
                  "Error [IST0101] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:19) "
                  "Referenced host+subset in destinationrule not found: "
                  "\"istio-egressgateway.istio-system.svc.cluster.local+v3\"");
}

TEST(SubsetReference, NoDestinationRuleAtAll) {
  Diagnostics d = analyze(load({kVirtualService, kGateway, kServiceEntry}));
  ASSERT_EQ(d.items().size(), 1u) << dump(d);
  EXPECT_EQ(d.items()[0].message,
            "Referenced host+subset in destinationrule not found: "
            "\"istio-egressgateway.istio-system.svc.cluster.local+cnn\"");
}

constexpr std::string_view kReviewsVirtualService = R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v3
)";

constexpr std::string_view kReviewsDestinationRule = R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
)";

TEST(SubsetReference, ShortNamesAreQualifiedWithTheirNamespace) {
  EXPECT_FINDINGS(analyze(load({kReviewsVirtualService, kReviewsDestinationRule})),
                  "Error [IST0101] (VirtualService default/reviews test.yaml:12) "
                  "Referenced host+subset in destinationrule not found: \"reviews+v3\"");
  // "reviews" in default is reviews.default.svc.cluster.local, as the DR says.
  std::string vs = replaced(kReviewsVirtualService, "subset: v3", "subset: v2");
  EXPECT_TRUE(analyze(load({vs, kReviewsDestinationRule})).empty());
  // A DR written with the short name in the same namespace is the same host.
  std::string dr = replaced(kReviewsDestinationRule, "host: reviews.default.svc.cluster.local", "host: reviews");
  EXPECT_TRUE(analyze(load({vs, dr})).empty());
  // The same short name in another namespace is another service.
  dr = replaced(dr, "  name: reviews\n", "  name: reviews\n  namespace: prod\n");
  Diagnostics d = analyze(load({vs, dr}));
  ASSERT_EQ(d.items().size(), 1u) << dump(d);
  EXPECT_EQ(d.items()[0].message, "Referenced host+subset in destinationrule not found: \"reviews+v2\"");
}

TEST(SubsetReference, DestinationRuleVisibility) {
  std::string vs = replaced(kReviewsVirtualService, "subset: v3", "subset: v2");
  std::string dr = replaced(kReviewsDestinationRule, "  name: reviews\n", "  name: reviews\n  namespace: prod\n");
  // Another namespace's DR for this host applies when exported to everyone...
  EXPECT_TRUE(analyze(load({vs, dr})).empty());
  // ...but not when kept private.
  dr = replaced(dr, "spec:\n", "spec:\n  exportTo:\n  - \".\"\n");
  Diagnostics d = analyze(load({vs, dr}));
  ASSERT_EQ(d.items().size(), 1u) << dump(d);
  EXPECT_EQ(d.items()[0].code, "IST0101");
}

// --- IST0101: host, host:port; IST0112 ----------------------------------------

TEST(HostReference, ExternalHostWithoutServiceEntry) {
  // Without the ServiceEntry, edition.cnn.com is unknown to the registry.
  EXPECT_FINDINGS(analyze(load({kVirtualService, kGateway, kDestinationRule})),
                  "Error [IST0101] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:29) "
                  "Referenced host not found: \"edition.cnn.com\"");
}

TEST(HostReference, KubernetesServiceNamesAreAssumedToExist) {
  for (const char* host : {"reviews", "reviews.default", "reviews.default.svc", "reviews.prod.svc.cluster.local",
                           "istio-egressgateway.istio-system"}) {
    std::string vs = replaced(kVirtualService, "host: edition.cnn.com\n        port:\n          number: 80",
                              std::string("host: ") + host);
    Diagnostics d = analyze(load({vs, kGateway, kDestinationRule, kServiceEntry}));
    EXPECT_TRUE(d.empty()) << host << "\n" << dump(d);
  }
  // "foo.example" looks like a FQDN: its second label is no namespace here.
  std::string vs = replaced(kVirtualService, "host: edition.cnn.com\n", "host: foo.example\n");
  Diagnostics d = analyze(load({vs, kGateway, kDestinationRule, kServiceEntry}));
  ASSERT_EQ(d.items().size(), 1u) << dump(d);
  EXPECT_EQ(d.items()[0].message, "Referenced host not found: \"foo.example\"");
}

TEST(HostReference, WildcardServiceEntryCoversTheHost) {
  std::string se = replaced(kServiceEntry, "  - edition.cnn.com\n", "  - \"*.cnn.com\"\n");
  se = replaced(se, "resolution: DNS", "resolution: NONE");
  EXPECT_TRUE(analyze(load({kVirtualService, kGateway, kDestinationRule, se})).empty());
}

TEST(HostReference, ServiceEntryVisibility) {
  std::string se = replaced(kServiceEntry, "  name: cnn\n", "  name: cnn\n  namespace: egress\n");
  EXPECT_TRUE(analyze(load({kVirtualService, kGateway, kDestinationRule, se})).empty());
  se = replaced(se, "spec:\n", "spec:\n  exportTo:\n  - \".\"\n");
  Diagnostics d = analyze(load({kVirtualService, kGateway, kDestinationRule, se}));
  ASSERT_EQ(d.items().size(), 1u) << dump(d);
  EXPECT_EQ(d.items()[0].message, "Referenced host not found: \"edition.cnn.com\"");
}

TEST(HostReference, PortNotExposedByTheServiceEntry) {
  std::string vs = replaced(kVirtualService, "host: edition.cnn.com\n        port:\n          number: 80",
                            "host: edition.cnn.com\n        port:\n          number: 8080");
  EXPECT_FINDINGS(analyze(load({vs, kGateway, kDestinationRule, kServiceEntry})),
                  "Error [IST0101] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:31) "
                  "Referenced host:port not found: \"edition.cnn.com:8080\"");
}

TEST(HostReference, PortSelectorRequiredForMultiPortService) {
  std::string vs = replaced(kVirtualService, "host: edition.cnn.com\n        port:\n          number: 80",
                            "host: edition.cnn.com");
  EXPECT_FINDINGS(analyze(load({vs, kGateway, kDestinationRule, kServiceEntry})),
                  "Error [IST0112] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:29) "
                  "This VirtualService routes to a service \"edition.cnn.com\" that exposes multiple ports [80 443]. "
                  "Specifying a port in the destination is required to disambiguate.");
}

TEST(HostReference, MirrorHost) {
  std::string vs = std::string(kVirtualService) + "    mirror:\n      host: shadow.example.org\n";
  Diagnostics d = analyze(load({vs, kGateway, kDestinationRule, kServiceEntry}));
  EXPECT_FINDINGS(d, "Error [IST0101] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:34) "
                     "Referenced mirror host not found: \"shadow.example.org\"");
  // mirrors[] destinations too.
  vs = std::string(kVirtualService) + "    mirrors:\n    - destination:\n        host: shadow.example.org\n";
  EXPECT_FINDINGS(analyze(load({vs, kGateway, kDestinationRule, kServiceEntry})),
                  "Error [IST0101] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:35) "
                  "Referenced mirror host not found: \"shadow.example.org\"");
}

// --- IST0109 ConflictingMeshGatewayVirtualServiceHosts ------------------------

TEST(MeshHostConflicts, TwoVirtualServicesForOneHostOnTheMesh) {
  std::string other = replaced(kReviewsVirtualService, "  name: reviews\n", "  name: reviews-canary\n");
  std::string vs = replaced(kReviewsVirtualService, "subset: v3", "subset: v1");
  other = replaced(other, "subset: v3", "subset: v2");
  const std::string message =
      "The VirtualServices default/reviews,default/reviews-canary associated with mesh gateway define the same host "
      "*/reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the "
      "conflicting VirtualServices into a single resource.";
  // The second document starts at line 14.
  EXPECT_FINDINGS(analyze(load({vs, other, kReviewsDestinationRule})),
                  "Error [IST0109] (VirtualService default/reviews test.yaml:4) " + message,
                  "Error [IST0109] (VirtualService default/reviews-canary test.yaml:17) " + message);

  // Scoped to their own namespaces by exportTo, they no longer meet.
  std::string in_prod = replaced(other, "  name: reviews-canary\n", "  name: reviews-canary\n  namespace: prod\n");
  in_prod = replaced(in_prod, "spec:\n", "spec:\n  exportTo:\n  - \".\"\n");
  vs = replaced(vs, "spec:\n", "spec:\n  exportTo:\n  - \".\"\n");
  Diagnostics d = analyze(load({vs, in_prod, kReviewsDestinationRule}));
  for (const auto& item : d.items()) EXPECT_NE(item.code, "IST0109") << item.format();
}

TEST(MeshHostConflicts, GatewayOnlyVirtualServicesDoNotConflict) {
  std::string gw_only = replaced(kVirtualService, "  name: direct-cnn-through-egress-gateway\n", "  name: cnn-at-gateway\n");
  gw_only = replaced(gw_only, "  - istio-egressgateway\n  - mesh", "  - istio-egressgateway");
  gw_only = replaced(gw_only, "      - mesh\n", "      - istio-egressgateway\n");
  Diagnostics d = analyze(load({kVirtualService, gw_only, kGateway, kDestinationRule, kServiceEntry}));
  for (const auto& item : d.items()) EXPECT_NE(item.code, "IST0109") << item.format();
}

// --- IST0128 / IST0129 DestinationRule TLS without caCertificates -------------

constexpr std::string_view kOriginationRule = R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-tls-for-edition-cnn-com
spec:
  host: edition.cnn.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: SIMPLE
)";

TEST(CaCertificates, PortLevelSimpleWithoutCa) {
  EXPECT_FINDINGS(analyze(load({kOriginationRule, kServiceEntry})),
                  "Warning [IST0129] (DestinationRule default/originate-tls-for-edition-cnn-com test.yaml:13) "
                  "DestinationRule default/originate-tls-for-edition-cnn-com in namespace default has TLS mode set to "
                  "SIMPLE but no caCertificates are set to validate server identity for host: edition.cnn.com at port "
                  "number:443");
  std::string with_ca = std::string(kOriginationRule) + "        caCertificates: /etc/ssl/certs/ca-certificates.crt\n";
  EXPECT_TRUE(analyze(load({with_ca, kServiceEntry})).empty());
}

TEST(CaCertificates, DestinationLevelMutualWithoutCa) {
  std::string dr = replaced(kOriginationRule,
                            "    portLevelSettings:\n    - port:\n        number: 443\n      tls:\n        mode: SIMPLE\n",
                            "    tls:\n      mode: MUTUAL\n      clientCertificate: /etc/certs/client.pem\n"
                            "      privateKey: /etc/certs/client-key.pem\n");
  EXPECT_FINDINGS(analyze(load({dr, kServiceEntry})),
                  "Warning [IST0128] (DestinationRule default/originate-tls-for-edition-cnn-com test.yaml:10) "
                  "DestinationRule default/originate-tls-for-edition-cnn-com in namespace default has TLS mode set to "
                  "MUTUAL but no caCertificates are set to validate server identity for host: edition.cnn.com");
}

TEST(CaCertificates, IstioMutualNeedsNoCa) {
  std::string dr = replaced(kOriginationRule, "mode: SIMPLE", "mode: ISTIO_MUTUAL");
  EXPECT_TRUE(analyze(load({dr, kServiceEntry})).empty());
}

// --- IST0134 ServiceEntryAddressesRequired -------------------------------------

TEST(ProtocolAddresses, TcpPortsNeedAddresses) {
  std::string se = replaced(kServiceEntry, "    protocol: HTTPS\n", "    protocol: TCP\n");
  se = replaced(se, "  resolution: DNS", "  - number: 5432\n    name: postgres\n  resolution: DNS");
  EXPECT_FINDINGS(analyze(load({se})),
                  "Warning [IST0134] (ServiceEntry default/cnn test.yaml:13) "
                  "ServiceEntry addresses are required for this protocol.",
                  "Warning [IST0134] (ServiceEntry default/cnn test.yaml:16) "
                  "ServiceEntry addresses are required for this protocol.");
  se = replaced(se, "spec:\n", "spec:\n  addresses:\n  - 151.101.1.67\n");
  Diagnostics d = analyze(load({se}));
  EXPECT_TRUE(d.empty()) << dump(d);
}

// --- IST0145 ConflictingGateways -------------------------------------------------

TEST(ConflictingGateways, SameSelectorPortAndHost) {
  std::string other = replaced(kGateway, "  name: istio-egressgateway\n", "  name: cnn-egress\n");
  Diagnostics d = analyze(load({kGateway, other}));
  EXPECT_FINDINGS(d,
                  "Error [IST0145] (Gateway default/istio-egressgateway test.yaml:9) Conflict with gateways "
                  "default/cnn-egress (workload selector istio=egressgateway, port 80, hosts edition.cnn.com).",
                  "Error [IST0145] (Gateway default/cnn-egress test.yaml:29) Conflict with gateways "
                  "default/istio-egressgateway (workload selector istio=egressgateway, port 80, hosts edition.cnn.com).");
  other = replaced(other, "      number: 80\n", "      number: 443\n");
  EXPECT_TRUE(analyze(load({kGateway, other})).empty());
}

// --- IST0111 MultipleSidecarsWithoutWorkloadSelectors ------------------------------

TEST(SidecarsWithoutSelector, TwoInOneNamespaceAreBothReported) {
  constexpr std::string_view a = R"(apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a, namespace: shop}
spec:
  egress:
  - hosts: ["./*"]
)";
  const std::string b = replaced(std::string(a), "name: a,", "name: b,");
  const std::string selected =
      replaced(replaced(std::string(a), "name: a,", "name: c,"), "spec:\n", "spec:\n  workloadSelector: {labels: {app: cart}}\n");
  const std::string elsewhere = replaced(std::string(a), "namespace: shop", "namespace: web");
  Diagnostics d = analyze(load({std::string(a), b, selected, elsewhere}));
  EXPECT_FINDINGS(d,
                  "Error [IST0111] (Sidecar shop/a test.yaml:3) The Sidecars [a b] in namespace \"shop\" have no "
                  "workload selector, which can lead to undefined behavior.",
                  "Error [IST0111] (Sidecar shop/b test.yaml:10) The Sidecars [a b] in namespace \"shop\" have no "
                  "workload selector, which can lead to undefined behavior.");
  EXPECT_TRUE(analyze(load({std::string(a), selected, elsewhere})).empty());
}

// --- IST0130 / IST0131 unreachable rules -------------------------------------------

TEST(UnreachableRules, DuplicateMatchesAndCatchAlls) {
  std::string vs = replaced(kVirtualService, "      - istio-egressgateway\n", "      - mesh\n");
  Diagnostics d = analyze(load({vs, kGateway, kDestinationRule, kServiceEntry}));
  EXPECT_FINDINGS(d,
                  "Info [IST0131] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:24) "
                  "VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0).",
                  "Warning [IST0130] (VirtualService default/direct-cnn-through-egress-gateway test.yaml:23) "
                  "VirtualService rule #1 not used (all matches used by prior rules).");

  constexpr std::string_view two_catch_alls = R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - name: first
    route:
    - destination:
        host: reviews
  - name: second
    route:
    - destination:
        host: reviews
)";
  EXPECT_FINDINGS(analyze(load({two_catch_alls})),
                  "Warning [IST0130] (VirtualService default/reviews test.yaml:13) "
                  "VirtualService rule \"second\" not used (only the last rule can have no matches).");
}

}  // namespace
}  // namespace sluice::config
