#include "userspace-proxy/proxy/config_watch.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sluice::proxy {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

std::string mesh(const char* mode) {
  return std::string("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                     "data:\n  mesh: |-\n    outboundTrafficPolicy:\n      mode: ") + mode + "\n";
}

class ConfigWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sluice-watch-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Publishes generation 1 and returns a watch over `paths`.
  std::unique_ptr<ConfigWatch> watch(const std::vector<std::string>& paths) {
    SnapshotLoad first = load_snapshot(paths, 1);
    EXPECT_TRUE(first.snapshot);
    store_.publish(first.snapshot);
    return std::make_unique<ConfigWatch>(
        paths, store_, [this](const std::string& l) { info_.push_back(l); },
        [this](const std::string& l) { errors_.push_back(l); });
  }
  // A change is loaded once it stayed the same for one interval.
  bool settle(ConfigWatch& w) { return w.poll() || w.poll(); }

  fs::path dir_;
  SnapshotStore store_;
  std::vector<std::string> info_, errors_;
};

TEST_F(ConfigWatchTest, ReplacedFileSwitchesModeAndBadFileKeepsLastGood) {
  write(dir_ / "istio.yaml", mesh("ALLOW_ANY"));
  auto w = watch({dir_.string()});
  EXPECT_EQ(store_.current()->mode(), config::OutboundTrafficPolicyMode::kAllowAny);
  EXPECT_FALSE(w->poll());  // nothing changed

  write(dir_ / "new.tmp", mesh("REGISTRY_ONLY"));
  fs::rename(dir_ / "new.tmp", dir_ / "istio.yaml");
  EXPECT_TRUE(settle(*w));
  EXPECT_EQ(store_.current()->generation, 2u);
  EXPECT_EQ(store_.current()->mode(), config::OutboundTrafficPolicyMode::kRegistryOnly);
  ASSERT_FALSE(info_.empty());
  EXPECT_NE(info_.back().find("config generation 2 from "), std::string::npos) << info_.back();

  SnapshotPtr held = store_.current();
  write(dir_ / "se.yaml",
        "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: x}\nspec:\n"
        "  hosts: []\n  ports: [{number: 80, name: http, protocol: HTTP}]\n");
  EXPECT_FALSE(settle(*w));
  EXPECT_EQ(store_.current(), held);  // last good snapshot kept
  ASSERT_FALSE(errors_.empty());
  EXPECT_NE(errors_.front().find("se.yaml:"), std::string::npos) << errors_.front();
  EXPECT_NE(errors_.back().find("keeping config generation 2"), std::string::npos);
}

TEST_F(ConfigWatchTest, ConfigMapVolumeDataSymlinkSwap) {
  // kubelet's layout: ..2026_a/istio.yaml, ..data -> ..2026_a, istio.yaml -> ..data/istio.yaml
  fs::create_directories(dir_ / "..2026_a");
  write(dir_ / "..2026_a" / "istio.yaml", mesh("ALLOW_ANY"));
  fs::create_directory_symlink("..2026_a", dir_ / "..data");
  fs::create_symlink("..data/istio.yaml", dir_ / "istio.yaml");
  auto w = watch({dir_.string()});
  EXPECT_EQ(store_.current()->mode(), config::OutboundTrafficPolicyMode::kAllowAny);

  fs::create_directories(dir_ / "..2026_b");
  write(dir_ / "..2026_b" / "istio.yaml", mesh("REGISTRY_ONLY"));
  fs::create_directory_symlink("..2026_b", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  fs::remove_all(dir_ / "..2026_a");
  EXPECT_TRUE(settle(*w));
  EXPECT_EQ(store_.current()->mode(), config::OutboundTrafficPolicyMode::kRegistryOnly);
}

}  // namespace
}  // namespace sluice::proxy
