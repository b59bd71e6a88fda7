// Every configuration shipped in configs/ loads, validates and analyzes with
// no finding at all: these files are what a newcomer copies first.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config/analysis.h"
#include "core/config/loader.h"
#include "core/config/validation.h"

namespace sluice::config {
namespace {

std::string repo_path(const std::string& rel) {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/" + rel;
}

std::string all_findings(const Diagnostics& d) {
  std::string out;
  for (const auto& item : d.items()) out += item.format() + "\n";
  return out;
}

Diagnostics check(const std::vector<std::string>& paths, LoadResult& loaded) {
  std::vector<std::string> full;
  for (const auto& p : paths) full.push_back(repo_path(p));
  loaded = load_paths(full);
  Diagnostics all = loaded.diagnostics;
  all.append(validate(loaded.config));
  all.append(analyze(loaded.config));
  return all;
}

class ExampleSet : public ::testing::TestWithParam<const char*> {};

TEST_P(ExampleSet, LoadsValidatesAndAnalyzesClean) {
  LoadResult loaded;
  Diagnostics all = check({GetParam()}, loaded);
  EXPECT_TRUE(all.empty()) << all_findings(all);
  EXPECT_GT(loaded.config.resource_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Configs, ExampleSet,
                         ::testing::Values("configs/default", "configs/walkthrough",
                                           "configs/variants/tls-origination-gateway",
                                           "configs/variants/tls-passthrough-gateway",
                                           "configs/variants/tls-origination-sidecar",
                                           "configs/variants/wildcard-hosts",
                                           "configs/variants/tunnel-sidecar"));

TEST(Examples, EveryVariantDirectoryIsCovered) {
  // A new example set must be added to the list above.
  size_t dirs = 0;
  for (const auto& e : std::filesystem::directory_iterator(repo_path("configs/variants"))) {
    if (e.is_directory()) ++dirs;
  }
  EXPECT_EQ(dirs, 5u);
}

TEST(Examples, DefaultIsAllowAnyWithTheCnnServiceEntry) {
  LoadResult loaded;
  Diagnostics all = check({"configs/default"}, loaded);
  EXPECT_EQ(loaded.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kAllowAny);
  ASSERT_EQ(loaded.config.service_entries.size(), 1u);
  EXPECT_EQ(loaded.config.service_entries[0].meta.name, "cnn");
}

TEST(Examples, MeshConfigMapsInBothModes) {
  LoadResult allow;
  Diagnostics a = check({"configs/walkthrough", "configs/mesh/istio-configmap-allow-any.yaml"}, allow);
  EXPECT_TRUE(a.empty()) << all_findings(a);
  EXPECT_EQ(allow.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kAllowAny);

  LoadResult registry;
  Diagnostics r = check({"configs/walkthrough", "configs/mesh/istio-configmap-registry-only.yaml"}, registry);
  EXPECT_TRUE(r.empty()) << all_findings(r);
  EXPECT_EQ(registry.config.mesh.outbound_traffic_policy, OutboundTrafficPolicyMode::kRegistryOnly);
}

TEST(Examples, WalkthroughInstallOptionsLimitInterception) {
  LoadResult loaded;
  check({"configs/walkthrough"}, loaded);
  EXPECT_EQ(loaded.config.install.include_ip_ranges,
            (std::vector<std::string>{"10.244.0.0/16", "10.240.0.0/16"}));
  EXPECT_TRUE(loaded.config.install.egress_gateway_enabled);
}

}  // namespace
}  // namespace sluice::config
