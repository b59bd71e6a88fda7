// outboundTrafficPolicy as the walkthrough exercises it: ALLOW_ANY passes the
// unknown through, REGISTRY_ONLY answers 502 for HTTP on an HTTP port and
// closes everything else, and a ServiceEntry makes a destination known.
#include "core/policy/outbound_policy.h"

#include <gtest/gtest.h>

#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using config::OutboundTrafficPolicyMode;
using decision::IpAddress;

class OutboundPolicy : public ::testing::Test {
 protected:
  void SetUp() override {
    sluice::test_support::load_documents({sluice::test_support::kCnnServiceEntry}, loaded_);
    registry_ = std::make_unique<Registry>(loaded_.config);
  }
  OutboundDecision decide(OutboundTrafficPolicyMode mode, Traffic t, const char* ip, uint16_t port,
                          std::string host) {
    return decide_outbound(*registry_, mode, OutboundRequest{*IpAddress::parse(ip), port, t, std::move(host)});
  }
  config::LoadResult loaded_;
  std::unique_ptr<Registry> registry_;
};

constexpr auto kAllow = OutboundTrafficPolicyMode::kAllowAny;
constexpr auto kRegistry = OutboundTrafficPolicyMode::kRegistryOnly;

TEST_F(OutboundPolicy, KnownHostRoutesInBothModes) {
  for (auto mode : {kAllow, kRegistry}) {
    auto d = decide(mode, Traffic::kHttp, "203.0.113.5", 80, "edition.cnn.com");
    EXPECT_EQ(d.action, Action::kRoute);
    EXPECT_EQ(d.cluster, "outbound|80||edition.cnn.com");
    EXPECT_EQ(d.response_flags, "-");
    EXPECT_NE(d.reason.find("ServiceEntry default/cnn"), std::string::npos) << d.reason;
    auto t = decide(mode, Traffic::kTls, "203.0.113.5", 443, "edition.cnn.com");
    EXPECT_EQ(t.action, Action::kRoute);
    EXPECT_EQ(t.cluster, "outbound|443||edition.cnn.com");
  }
}

TEST_F(OutboundPolicy, AllowAnyPassesUnknownThrough) {
  auto h = decide(kAllow, Traffic::kHttp, "203.0.113.5", 80, "example.org");
  EXPECT_EQ(h.action, Action::kPassthrough);
  EXPECT_EQ(h.cluster, "PassthroughCluster");
  EXPECT_EQ(h.route_name, "allow_any");
  auto t = decide(kAllow, Traffic::kTcp, "203.0.113.5", 22, "");
  EXPECT_EQ(t.action, Action::kPassthrough);
  EXPECT_EQ(t.route_name, "");
}

TEST_F(OutboundPolicy, RegistryOnlyHttpUnknownHostIs502) {
  auto d = decide(kRegistry, Traffic::kHttp, "203.0.113.5", 80, "example.org");
  EXPECT_EQ(d.action, Action::kLocalReply502);
  EXPECT_EQ(d.cluster, "BlackHoleCluster");
  EXPECT_EQ(d.route_name, "block_all");
  EXPECT_EQ(d.response_flags, "-");
}

TEST_F(OutboundPolicy, RegistryOnlyEverythingElseIsClosed) {
  // The walkthrough's `curl -L` follows the redirect to https: unknown SNI.
  auto tls = decide(kRegistry, Traffic::kTls, "203.0.113.5", 443, "www.example.org");
  EXPECT_EQ(tls.action, Action::kBlackhole);
  EXPECT_EQ(tls.response_flags, "UH");
  EXPECT_EQ(tls.cluster, "BlackHoleCluster");
  auto tcp = decide(kRegistry, Traffic::kTcp, "203.0.113.5", 5432, "");
  EXPECT_EQ(tcp.action, Action::kBlackhole);
  // HTTP on a port no ServiceEntry declares HTTP: no HTTP listener, no 502.
  auto http8080 = decide(kRegistry, Traffic::kHttp, "203.0.113.5", 8080, "edition.cnn.com");
  EXPECT_EQ(http8080.action, Action::kBlackhole);
  // TLS to a known host's HTTP port is not a TLS match either.
  auto tls80 = decide(kRegistry, Traffic::kTls, "203.0.113.5", 80, "edition.cnn.com");
  EXPECT_EQ(tls80.action, Action::kBlackhole);
}

TEST_F(OutboundPolicy, EmptyHostNeverMatchesByName) {
  auto d = decide(kRegistry, Traffic::kHttp, "203.0.113.5", 80, "");
  EXPECT_EQ(d.action, Action::kLocalReply502);
  auto t = decide(kRegistry, Traffic::kTls, "203.0.113.5", 443, "");
  EXPECT_EQ(t.action, Action::kBlackhole);
}

TEST_F(OutboundPolicy, ReasonNamesDestination) {
  auto d = decide(kRegistry, Traffic::kTcp, "2001:db8::1", 5432, "");
  EXPECT_NE(d.reason.find("[2001:db8::1]:5432"), std::string::npos) << d.reason;
}

// The data path asks without the explanation: every outcome the same, the
// reason left empty.
TEST_F(OutboundPolicy, WithoutExplainTheDecisionIsTheSameAndHasNoReason) {
  struct Case {
    OutboundTrafficPolicyMode mode;
    Traffic traffic;
    const char* ip;
    uint16_t port;
    const char* host;
  };
  const Case cases[] = {
      {kRegistry, Traffic::kHttp, "192.0.2.1", 80, "edition.cnn.com"},  // known by Host
      {kRegistry, Traffic::kTls, "192.0.2.1", 443, "edition.cnn.com"},  // known by SNI
      {kAllow, Traffic::kHttp, "192.0.2.1", 80, "unknown.example"},     // passthrough
      {kRegistry, Traffic::kHttp, "192.0.2.1", 80, "unknown.example"},  // 502
      {kRegistry, Traffic::kTcp, "2001:db8::1", 5432, ""},              // blackhole
  };
  for (const Case& c : cases) {
    OutboundRequest r{*IpAddress::parse(c.ip), c.port, c.traffic, c.host};
    OutboundDecision full = decide_outbound(*registry_, c.mode, r);
    r.explain = false;
    OutboundDecision quiet = decide_outbound(*registry_, c.mode, r);
    EXPECT_FALSE(full.reason.empty()) << c.host;
    EXPECT_TRUE(quiet.reason.empty()) << quiet.reason;
    EXPECT_EQ(quiet.action, full.action) << full.reason;
    EXPECT_EQ(quiet.cluster, full.cluster) << full.reason;
    EXPECT_EQ(quiet.route_name, full.route_name) << full.reason;
    EXPECT_EQ(quiet.response_flags, full.response_flags) << full.reason;
    EXPECT_EQ(quiet.service.has_value(), full.service.has_value()) << full.reason;
  }
}

}  // namespace
}  // namespace sluice::policy
