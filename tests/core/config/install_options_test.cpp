// Install options: istioctl's --set as the walkthrough types it, Helm values
// files and IstioOperator resources.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/config/install_list.h"
#include "core/config/loader.h"

namespace sluice::config {
namespace {

using Strings = std::vector<std::string>;

std::string dump(const Diagnostics& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics.items()) out += d.format() + "\n";
  return out;
}

LoadResult load(std::string_view text, const std::string& file = "values.yaml") {
  LoadResult result;
  load_text(text, file, result);
  return result;
}

TEST(InstallDefaultsTest, AsIstioShipsThem) {
  LoadResult r;
  const InstallOptions& install = r.config.install;
  EXPECT_EQ(install.include_ip_ranges, Strings{"*"});
  EXPECT_TRUE(install.exclude_ip_ranges.empty());
  EXPECT_TRUE(install.include_outbound_ports.empty());
  EXPECT_TRUE(install.exclude_outbound_ports.empty());
  EXPECT_FALSE(install.outbound_traffic_policy.has_value());
  EXPECT_EQ(install.istio_namespace, "istio-system");
  EXPECT_FALSE(install.egress_gateway_enabled);
  EXPECT_EQ(install.file, "");
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kAllowAny);
}

// ---------------------------------------------------------------------------
// --set

TEST(SetFlagTest, WalkthroughIncludeIPRangesAsTyped) {
  // The walkthrough's command, whose closing quote went missing:
  //   --set global.proxy.includeIPRanges="10.244.0.0/16\,10.240.0.0/16
  LoadResult r;
  apply_set_flag(R"(global.proxy.includeIPRanges="10.244.0.0/16\,10.240.0.0/16)", r);
  EXPECT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.install.include_ip_ranges, (Strings{"10.244.0.0/16", "10.240.0.0/16"}));

  for (const char* form : {R"(global.proxy.includeIPRanges="10.244.0.0/16\,10.240.0.0/16")",
                           R"(values.global.proxy.includeIPRanges=10.244.0.0/16\,10.240.0.0/16)",
                           "values.global.proxy.includeIPRanges=10.244.0.0/16,10.240.0.0/16",
                           "global.proxy.includeIPRanges='10.244.0.0/16, 10.240.0.0/16'"}) {
    LoadResult each;
    apply_set_flag(form, each);
    EXPECT_TRUE(each.diagnostics.empty()) << form << "\n" << dump(each.diagnostics);
    EXPECT_EQ(each.config.install.include_ip_ranges, (Strings{"10.244.0.0/16", "10.240.0.0/16"}))
        << form;
  }
}

TEST(SetFlagTest, WalkthroughEgressGatewayCommand) {
  LoadResult r;
  apply_set_flag("values.global.istioNamespace=istio-system", r);
  apply_set_flag("values.gateways.istio-ingressgateway.enabled=false", r);
  apply_set_flag("values.gateways.istio-egressgateway.enabled=true", r);
  EXPECT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.install.istio_namespace, "istio-system");
  EXPECT_TRUE(r.config.install.egress_gateway_enabled);
}

TEST(SetFlagTest, EveryOption) {
  LoadResult r;
  apply_set_flag("values.global.proxy.excludeIPRanges=169.254.169.254/32", r);
  apply_set_flag("global.proxy.includeOutboundPorts=80,443", r);
  apply_set_flag("global.proxy.excludeOutboundPorts=22", r);
  apply_set_flag("values.global.outboundTrafficPolicy.mode=REGISTRY_ONLY", r);
  apply_set_flag("global.istioNamespace=istio-control", r);
  apply_set_flag("gateways.istio-egressgateway.enabled=True", r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const InstallOptions& install = r.config.install;
  EXPECT_EQ(install.include_ip_ranges, Strings{"*"});
  EXPECT_EQ(install.exclude_ip_ranges, Strings{"169.254.169.254/32"});
  EXPECT_EQ(install.include_outbound_ports, (Strings{"80", "443"}));
  EXPECT_EQ(install.exclude_outbound_ports, Strings{"22"});
  EXPECT_EQ(install.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(install.istio_namespace, "istio-control");
  EXPECT_TRUE(install.egress_gateway_enabled);
  // The Helm value is an install option; the running mesh config is separate.
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kAllowAny);
}

TEST(SetFlagTest, MeshConfigKeys) {
  LoadResult r;
  apply_set_flag("meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY", r);
  apply_set_flag("meshConfig.accessLogFile=/dev/stdout", r);
  apply_set_flag("meshConfig.accessLogEncoding=JSON", r);
  apply_set_flag("meshConfig.trustDomain=example.org", r);
  apply_set_flag("spec.meshConfig.enableAutoMtls=false", r);
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(r.config.mesh.access_log_file, "/dev/stdout");
  EXPECT_EQ(r.config.mesh.access_log_encoding, "JSON");
  EXPECT_EQ(r.config.mesh.trust_domain, "example.org");
  EXPECT_FALSE(r.config.mesh.enable_auto_mtls);
  EXPECT_FALSE(r.config.install.outbound_traffic_policy.has_value());
}

TEST(SetFlagTest, EmptyValueMeansEmptyList) {
  LoadResult r;
  apply_set_flag("global.proxy.includeIPRanges=", r);
  EXPECT_TRUE(r.diagnostics.empty());
  EXPECT_TRUE(r.config.install.include_ip_ranges.empty());
  apply_set_flag(R"(global.proxy.includeIPRanges="")", r);
  EXPECT_TRUE(r.config.install.include_ip_ranges.empty());
}

TEST(SetFlagTest, Problems) {
  LoadResult r;
  apply_set_flag("values.global.proxy.inclideIPRanges=10.0.0.0/8", r);
  apply_set_flag("values.global.outboundTrafficPolicy.mode=BLOCK", r);
  apply_set_flag("gateways.istio-egressgateway.enabled=maybe", r);
  apply_set_flag("global.proxy.includeIPRanges", r, "sluice.conf:3");
  ASSERT_EQ(r.diagnostics.items().size(), 4u) << dump(r.diagnostics);
  const auto& d = r.diagnostics.items();
  EXPECT_EQ(d[0].severity, Severity::kWarning);
  EXPECT_EQ(d[0].message,
            "unknown install option \"values.global.proxy.inclideIPRanges\", ignored");
  EXPECT_EQ(d[0].location.file, "--set");
  EXPECT_EQ(d[1].severity, Severity::kError);
  EXPECT_EQ(d[1].message,
            "invalid value \"BLOCK\" for values.global.outboundTrafficPolicy.mode; allowed "
            "values: ALLOW_ANY, REGISTRY_ONLY");
  EXPECT_EQ(d[1].format(),
            "--set: error: values.global.outboundTrafficPolicy.mode: invalid value \"BLOCK\" for "
            "values.global.outboundTrafficPolicy.mode; allowed values: ALLOW_ANY, REGISTRY_ONLY");
  EXPECT_EQ(d[2].message,
            "invalid value \"maybe\" for gateways.istio-egressgateway.enabled; allowed values: "
            "true, false");
  EXPECT_EQ(d[3].severity, Severity::kError);
  EXPECT_EQ(d[3].location.file, "sluice.conf:3");
  // Nothing changed.
  EXPECT_EQ(r.config.install.include_ip_ranges, Strings{"*"});
  EXPECT_FALSE(r.config.install.outbound_traffic_policy.has_value());
}

TEST(InstallListTest, Splitting) {
  EXPECT_EQ(split_install_list(""), Strings{});
  EXPECT_EQ(split_install_list("*"), Strings{"*"});
  EXPECT_EQ(split_install_list(R"(a\,b,c , ,d)"), (Strings{"a", "b", "c", "d"}));
  EXPECT_EQ(split_install_list(R"(a\b)"), Strings{R"(a\b)"});
}

// ---------------------------------------------------------------------------
// Values files

TEST(ValuesFileTest, HelmValues) {
  LoadResult r = load(R"(# istio-values.yaml
global:
  hub: docker.io/istio
  tag: 1.4.0
  istioNamespace: istio-control
  proxy:
    includeIPRanges: "10.244.0.0/16,10.240.0.0/16"
    excludeIPRanges: ""
    includeOutboundPorts: [80, 443]
    excludeOutboundPorts: 22
    resources: {requests: {cpu: 100m}}
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
gateways:
  istio-ingressgateway: {enabled: false}
  istio-egressgateway:
    enabled: true
    autoscaleMin: 1
pilot:
  traceSampling: 1.0
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  const InstallOptions& install = r.config.install;
  EXPECT_EQ(install.include_ip_ranges, (Strings{"10.244.0.0/16", "10.240.0.0/16"}));
  EXPECT_TRUE(install.exclude_ip_ranges.empty());
  EXPECT_EQ(install.include_outbound_ports, (Strings{"80", "443"}));
  EXPECT_EQ(install.exclude_outbound_ports, Strings{"22"});
  EXPECT_EQ(install.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(install.istio_namespace, "istio-control");
  EXPECT_TRUE(install.egress_gateway_enabled);
  EXPECT_EQ(install.file, "values.yaml");
  EXPECT_EQ(r.config.source_files, Strings{"values.yaml"});
}

TEST(ValuesFileTest, ValuesWrapperAndMeshConfig) {
  LoadResult r = load(R"(values:
  global:
    proxy:
      excludeIPRanges: [169.254.169.254/32]
meshConfig:
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
  accessLogFile: /dev/stdout
)");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.install.exclude_ip_ranges, Strings{"169.254.169.254/32"});
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(r.config.mesh.access_log_file, "/dev/stdout");
  EXPECT_EQ(r.config.mesh.file, "values.yaml");
}

TEST(ValuesFileTest, WrongTypesAreErrorsAndChangeNothing) {
  LoadResult r = load(R"(global:
  proxy:
    includeIPRanges: {cidr: 10.0.0.0/8}
    excludeIPRanges: 10.1.0.0/16
  outboundTrafficPolicy:
    mode: BLOCK_ALL
)");
  ASSERT_EQ(r.diagnostics.items().size(), 2u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].message, "expected a string, found a mapping");
  EXPECT_EQ(r.diagnostics.items()[0].location.str(), "values.yaml:3:22");
  EXPECT_EQ(r.diagnostics.items()[0].field, "global.proxy.includeIPRanges");
  EXPECT_EQ(r.diagnostics.items()[1].message,
            "invalid value \"BLOCK_ALL\"; allowed values: ALLOW_ANY, REGISTRY_ONLY");
  EXPECT_EQ(r.config.install.include_ip_ranges, Strings{"*"});
  EXPECT_TRUE(r.config.install.exclude_ip_ranges.empty());
  EXPECT_EQ(r.config.install.file, "");
}

TEST(IstioOperatorTest, ValuesAndMeshConfig) {
  LoadResult r = load(R"(apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata:
  namespace: istio-system
  name: egress-setup
spec:
  profile: default
  hub: docker.io/istio
  components:
    egressGateways:
    - name: istio-egressgateway
      enabled: true
  meshConfig:
    accessLogFile: /dev/stdout
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
  values:
    global:
      istioNamespace: istio-system
      proxy:
        includeIPRanges: "10.244.0.0/16,10.240.0.0/16"
    gateways:
      istio-egressgateway:
        enabled: true
)",
                      "operator.yaml");
  ASSERT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.install.include_ip_ranges, (Strings{"10.244.0.0/16", "10.240.0.0/16"}));
  EXPECT_TRUE(r.config.install.egress_gateway_enabled);
  EXPECT_EQ(r.config.install.file, "operator.yaml");
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
  EXPECT_EQ(r.config.mesh.access_log_file, "/dev/stdout");
  EXPECT_EQ(r.config.mesh.file, "operator.yaml");
  EXPECT_EQ(r.config.resource_count(), 0u);
}

TEST(IstioOperatorTest, MeshConfigProblemsNameTheOperator) {
  LoadResult r = load(R"(apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: op, namespace: istio-system}
spec:
  meshConfig:
    outboundTrafficPolicy: {mode: registry_only}
)",
                      "operator.yaml");
  ASSERT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  const Diagnostic& d = r.diagnostics.items()[0];
  EXPECT_EQ(d.kind, "IstioOperator");
  EXPECT_EQ(d.name, "op");
  EXPECT_EQ(d.field, "spec.meshConfig.outboundTrafficPolicy.mode");
  EXPECT_EQ(d.location.str(), "operator.yaml:6:35");
  EXPECT_EQ(r.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kAllowAny);
}

TEST(InstallOrderTest, SetFlagsOverrideFiles) {
  LoadResult r = load("global:\n  proxy:\n    includeIPRanges: 10.0.0.0/8\n");
  apply_set_flag(R"(global.proxy.includeIPRanges="10.244.0.0/16\,10.240.0.0/16")", r);
  EXPECT_EQ(r.config.install.include_ip_ranges, (Strings{"10.244.0.0/16", "10.240.0.0/16"}));
}

}  // namespace
}  // namespace sluice::config
