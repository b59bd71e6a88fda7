// Endpoint picking and outlier detection, driven by a scripted random source
// and a hand-advanced clock (nothing sleeps).
#include "core/policy/load_balancer.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>
#include <vector>

#include "tests/support/config_fixtures.h"

namespace sluice::policy {
namespace {

using namespace std::chrono_literals;

// Returns the queued numbers in order; fails the test when it runs dry.
class ScriptedRandom final : public RandomSource {
 public:
  explicit ScriptedRandom(std::initializer_list<uint64_t> values) : values_(values) {}
  uint64_t next() override {
    if (values_.empty()) {
      ADD_FAILURE() << "random source exhausted";
      return 0;
    }
    uint64_t v = values_.front();
    values_.pop_front();
    return v;
  }
  void push(uint64_t v) { values_.push_back(v); }

 private:
  std::deque<uint64_t> values_;
};

// A steady clock the test moves by hand.
struct FakeClock {
  MonotonicTime now{std::chrono::seconds(1000)};
  void advance(std::chrono::milliseconds d) { now += d; }
};

LoadBalancer::Options options(LbAlgorithm algorithm) {
  LoadBalancer::Options o;
  o.algorithm = algorithm;
  return o;
}

LoadBalancer::Options with_outlier(LbAlgorithm algorithm, OutlierConfig oc) {
  LoadBalancer::Options o = options(algorithm);
  o.outlier = oc;
  return o;
}

std::vector<size_t> picks(LoadBalancer& lb, int n, MonotonicTime now) {
  std::vector<size_t> out;
  for (int i = 0; i < n; ++i) {
    auto r = lb.pick(now);
    EXPECT_EQ(r.status, PickResult::Status::kPicked) << r.reason().view();
    out.push_back(r.host);
  }
  return out;
}

void fail_n(LoadBalancer& lb, size_t host, int n, MonotonicTime now, uint32_t status = 500) {
  for (int i = 0; i < n; ++i) lb.report_response(host, status, now);
}

// ---------------------------------------------------------------------------
// Algorithms

TEST(LbAlgorithmTest, IstioNamesMapToEnvoyPolicies) {
  EXPECT_EQ(lb_algorithm(nullptr), LbAlgorithm::kRoundRobin) << "Istio 1.4 default";
  config::LoadBalancerSettings s;
  EXPECT_EQ(lb_algorithm(&s), LbAlgorithm::kRoundRobin);
  s.simple = config::SimpleLB::kLeastConn;
  EXPECT_EQ(lb_algorithm(&s), LbAlgorithm::kLeastRequest);
  s.simple = config::SimpleLB::kLeastRequest;
  EXPECT_EQ(lb_algorithm(&s), LbAlgorithm::kLeastRequest);
  s.simple = config::SimpleLB::kRandom;
  EXPECT_EQ(lb_algorithm(&s), LbAlgorithm::kRandom);
  s.simple = config::SimpleLB::kPassthrough;
  EXPECT_EQ(lb_algorithm(&s), LbAlgorithm::kPassthrough);
  s.consistent_hash = config::ConsistentHashLB{};
  EXPECT_EQ(lb_algorithm(&s), LbAlgorithm::kRingHash) << "consistentHash is Envoy's RING_HASH";
}

TEST(RoundRobin, RotatesInOrder) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kRoundRobin), {1, 1, 1});
  EXPECT_EQ(picks(lb, 7, clock.now), (std::vector<size_t>{0, 1, 2, 0, 1, 2, 0}));
  auto r = lb.pick(clock.now);
  EXPECT_EQ(r.reason().view(), "ROUND_ROBIN picked endpoint 1 (3 of 3 available)");
}

TEST(RoundRobin, UnequalWeightsKeepTheirProportionsSmoothly) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kRoundRobin), {3, 1});
  // Smooth weighted round robin: the light host is not starved to the end.
  EXPECT_EQ(picks(lb, 4, clock.now), (std::vector<size_t>{0, 0, 1, 0}));
  std::map<size_t, int> counts;
  for (size_t h : picks(lb, 400, clock.now)) counts[h]++;
  EXPECT_EQ(counts[0], 300);
  EXPECT_EQ(counts[1], 100);
}

TEST(LeastRequest, TwoRandomChoicesPreferFewerActiveRequests) {
  FakeClock clock;
  ScriptedRandom random{0, 1, 2, 0, 1, 1, 4, 3};
  LoadBalancer lb(options(LbAlgorithm::kLeastRequest), {1, 1, 1}, &random);
  for (int i = 0; i < 5; ++i) lb.on_request_start(0);
  lb.on_request_start(1);
  for (int i = 0; i < 3; ++i) lb.on_request_start(2);
  EXPECT_EQ(lb.pick(clock.now).host, 1u) << "draws 0 (5 active) and 1 (1 active)";
  EXPECT_EQ(lb.pick(clock.now).host, 2u) << "draws 2 (3 active) and 0 (5 active)";
  EXPECT_EQ(lb.pick(clock.now).host, 1u) << "the same host drawn twice";
  // 4 % 3 = 1 and 3 % 3 = 0: host 0 has more.
  EXPECT_EQ(lb.pick(clock.now).host, 1u);
  // Ties go to the first draw.
  for (int i = 0; i < 4; ++i) lb.on_request_end(0);
  EXPECT_EQ(lb.active_requests(0), 1u);
  random.push(1);
  random.push(0);
  EXPECT_EQ(lb.pick(clock.now).host, 1u);
}

TEST(LeastRequest, UnequalWeightsFavourLightlyLoadedHeavyHosts) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kLeastRequest), {2, 1});
  std::map<size_t, int> counts;
  for (size_t h : picks(lb, 300, clock.now)) counts[h]++;
  EXPECT_EQ(counts[0], 200);
  EXPECT_EQ(counts[1], 100);
  // Host 0 busy: its effective weight 2/(9+1) falls below host 1's 1/1.
  for (int i = 0; i < 9; ++i) lb.on_request_start(0);
  counts.clear();
  for (size_t h : picks(lb, 60, clock.now)) counts[h]++;
  EXPECT_EQ(counts[0], 10);
  EXPECT_EQ(counts[1], 50);
}

TEST(RandomLb, UsesTheRandomSourceOverAvailableHosts) {
  FakeClock clock;
  ScriptedRandom random{5, 7, 9};
  LoadBalancer lb(options(LbAlgorithm::kRandom), {1, 1, 1, 1}, &random);
  EXPECT_EQ(picks(lb, 3, clock.now), (std::vector<size_t>{1, 3, 1}));
}

TEST(Passthrough, ConnectsToTheOriginalDestination) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kPassthrough), {});
  auto r = lb.pick(clock.now);
  EXPECT_EQ(r.status, PickResult::Status::kOriginalDestination);
  EXPECT_EQ(r.response_flags(), "-");
  EXPECT_NE(r.reason().view().find("original destination"), std::string::npos);
}

TEST(LoadBalancerTest, NoEndpointsIsNoHealthyUpstream) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kRoundRobin), {});
  auto r = lb.pick(clock.now);
  EXPECT_EQ(r.status, PickResult::Status::kNoHealthyUpstream);
  EXPECT_EQ(r.response_flags(), "UH");
  EXPECT_EQ(r.reason().view(), "no endpoints: 503 UH");
}

// ---------------------------------------------------------------------------
// Outlier detection

TEST(OutlierConfigTest, IstioFieldsOverEnvoyDefaults) {
  config::OutlierDetection od;
  auto c = OutlierConfig::from(od);
  EXPECT_EQ(c.consecutive_5xx, 5u);
  EXPECT_EQ(c.consecutive_gateway_errors, 0u);
  EXPECT_EQ(c.base_ejection_time, 30s);
  EXPECT_EQ(c.interval, 10s);
  EXPECT_EQ(c.max_ejection_percent, 10u);
  EXPECT_FALSE(c.max_ejection_time.has_value());
  od.consecutive_5xx_errors = 0;
  od.consecutive_gateway_errors = 3;
  od.base_ejection_time = config::Duration(15'000);
  od.interval = config::Duration(2'000);
  od.max_ejection_percent = 50;
  c = OutlierConfig::from(od);
  EXPECT_EQ(c.consecutive_5xx, 0u) << "0 turns the 5xx detector off";
  EXPECT_EQ(c.consecutive_gateway_errors, 3u);
  EXPECT_EQ(c.base_ejection_time, 15s);
  EXPECT_EQ(c.interval, 2s);
  EXPECT_EQ(c.max_ejection_percent, 50u);
}

TEST(Outlier, ConsecutiveErrorsEjectAndTheHostReturnsAfterTheEjectionTime) {
  FakeClock clock;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, OutlierConfig{}), {1, 1, 1});
  fail_n(lb, 1, 4, clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(1));
  lb.report_response(1, 503, clock.now);  // fifth in a row
  ASSERT_TRUE(lb.outlier()->ejected(1));
  EXPECT_EQ(lb.outlier()->returns_at(1), clock.now + 30s);
  EXPECT_EQ(picks(lb, 4, clock.now), (std::vector<size_t>{0, 2, 0, 2}));
  auto r = lb.pick(clock.now);
  EXPECT_EQ(r.available, 2u);
  EXPECT_FALSE(r.panic);

  clock.advance(29'999ms);
  EXPECT_TRUE(lb.outlier()->ejected(1));
  picks(lb, 1, clock.now);
  EXPECT_TRUE(lb.outlier()->ejected(1));
  clock.advance(1ms);
  auto back = lb.pick(clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(1));
  EXPECT_EQ(back.available, 3u);

  // Second ejection: twice the base time.
  fail_n(lb, 1, 5, clock.now);
  ASSERT_TRUE(lb.outlier()->ejected(1));
  EXPECT_EQ(lb.outlier()->ejections(1), 2u);
  EXPECT_EQ(lb.outlier()->returns_at(1), clock.now + 60s);
  clock.advance(59s);
  lb.pick(clock.now);
  EXPECT_TRUE(lb.outlier()->ejected(1));
  clock.advance(1s);
  lb.pick(clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(1));
}

TEST(Outlier, SuccessResetsTheCountAndReturnedHostsStartAfresh) {
  FakeClock clock;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, OutlierConfig{}), {1, 1});
  fail_n(lb, 0, 4, clock.now);
  lb.report_response(0, 404, clock.now);  // not a 5xx
  fail_n(lb, 0, 4, clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(0));
  lb.report_connect_success(0, clock.now);
  fail_n(lb, 0, 4, clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(0));
  lb.report_response(0, 500, clock.now);
  ASSERT_TRUE(lb.outlier()->ejected(0));
  // Answers still in flight from the ejected host change nothing.
  fail_n(lb, 0, 10, clock.now);
  clock.advance(30s);
  lb.pick(clock.now);
  ASSERT_FALSE(lb.outlier()->ejected(0));
  fail_n(lb, 0, 4, clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(0)) << "counts restart when the host returns";
}

TEST(Outlier, LocalFailuresCountAs503) {
  FakeClock clock;
  OutlierConfig oc;
  oc.consecutive_5xx = 3;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, oc), {1, 1});
  lb.report_local_failure(1, clock.now);
  lb.report_response(1, 500, clock.now);
  lb.report_local_failure(1, clock.now);
  EXPECT_TRUE(lb.outlier()->ejected(1));
}

TEST(Outlier, GatewayErrorsDetectorCountsOnly502To504) {
  FakeClock clock;
  OutlierConfig oc;
  oc.consecutive_5xx = 0;  // off
  oc.consecutive_gateway_errors = 2;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, oc), {1, 1});
  lb.report_response(0, 502, clock.now);
  lb.report_response(0, 500, clock.now);  // a 5xx but not a gateway error: resets
  lb.report_response(0, 504, clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(0));
  lb.report_local_failure(0, clock.now);
  EXPECT_TRUE(lb.outlier()->ejected(0));
  // The 5xx detector is off: any number of 500s leaves host 1 alone.
  fail_n(lb, 1, 50, clock.now, 500);
  EXPECT_FALSE(lb.outlier()->ejected(1));
}

TEST(Outlier, MaxEjectionPercentStillLetsOneHostGo) {
  FakeClock clock;
  // Default 10% of three hosts: the first ejection is always allowed (Envoy
  // before 1.27), the second is not.
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, OutlierConfig{}), {1, 1, 1});
  fail_n(lb, 0, 5, clock.now);
  EXPECT_TRUE(lb.outlier()->ejected(0));
  fail_n(lb, 1, 5, clock.now);
  EXPECT_FALSE(lb.outlier()->ejected(1));
  EXPECT_EQ(lb.outlier()->ejected_count(), 1u);

  // 50%: ejections continue while fewer than half are out (0%, then 33%).
  OutlierConfig half;
  half.max_ejection_percent = 50;
  LoadBalancer lb2(with_outlier(LbAlgorithm::kRoundRobin, half), {1, 1, 1});
  fail_n(lb2, 0, 5, clock.now);
  fail_n(lb2, 1, 5, clock.now);
  fail_n(lb2, 2, 5, clock.now);
  EXPECT_TRUE(lb2.outlier()->ejected(0));
  EXPECT_TRUE(lb2.outlier()->ejected(1));
  EXPECT_FALSE(lb2.outlier()->ejected(2));

  // Two hosts at 50%: with one out the share is 50%, not below it.
  LoadBalancer lb3(with_outlier(LbAlgorithm::kRoundRobin, half), {1, 1});
  fail_n(lb3, 0, 5, clock.now);
  fail_n(lb3, 1, 5, clock.now);
  EXPECT_EQ(lb3.outlier()->ejected_count(), 1u);
}

TEST(Outlier, MaxEjectionTimeCapsTheGrowth) {
  FakeClock clock;
  OutlierConfig oc;
  oc.max_ejection_percent = 100;
  oc.max_ejection_time = 45s;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, oc), {1, 1});
  fail_n(lb, 0, 5, clock.now);
  EXPECT_EQ(lb.outlier()->returns_at(0), clock.now + 30s);
  clock.advance(30s);
  lb.pick(clock.now);
  fail_n(lb, 0, 5, clock.now);
  EXPECT_EQ(lb.outlier()->returns_at(0), clock.now + 45s);
}

TEST(Outlier, AllEjectedFallsBackToAllHostsInPanic) {
  FakeClock clock;
  OutlierConfig oc;
  oc.max_ejection_percent = 100;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, oc), {1, 1});
  fail_n(lb, 0, 5, clock.now);
  fail_n(lb, 1, 5, clock.now);
  ASSERT_EQ(lb.outlier()->ejected_count(), 2u);
  auto r = lb.pick(clock.now);
  ASSERT_EQ(r.status, PickResult::Status::kPicked);
  EXPECT_TRUE(r.panic);
  EXPECT_EQ(r.available, 0u);
  EXPECT_NE(r.reason().view().find("below the panic threshold of 50%"), std::string::npos) << r.reason().view();
  EXPECT_EQ(picks(lb, 4, clock.now).size(), 4u);
}

TEST(Outlier, PanicStartsBelowHalfAvailable) {
  FakeClock clock;
  OutlierConfig oc;
  oc.max_ejection_percent = 100;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRoundRobin, oc), {1, 1, 1, 1});
  fail_n(lb, 0, 5, clock.now);
  fail_n(lb, 1, 5, clock.now);
  auto r = lb.pick(clock.now);  // 2 of 4 available: exactly 50%, not panic
  EXPECT_FALSE(r.panic);
  EXPECT_TRUE(r.host == 2 || r.host == 3);
  fail_n(lb, 2, 5, clock.now);
  r = lb.pick(clock.now);  // 1 of 4: panic, every host is a candidate
  EXPECT_TRUE(r.panic);
  std::map<size_t, int> counts;
  for (size_t h : picks(lb, 8, clock.now)) counts[h]++;
  EXPECT_EQ(counts.size(), 4u);
}

TEST(Outlier, PanicRoutingOffMeansNoHealthyUpstream) {
  FakeClock clock;
  OutlierConfig oc;
  oc.max_ejection_percent = 100;
  LoadBalancer::Options o = with_outlier(LbAlgorithm::kLeastRequest, oc);
  o.healthy_panic_threshold = 0;  // current Istio with minHealthPercent unset
  LoadBalancer lb(o, {1});
  fail_n(lb, 0, 5, clock.now);
  auto r = lb.pick(clock.now);
  EXPECT_EQ(r.status, PickResult::Status::kNoHealthyUpstream);
  EXPECT_EQ(r.response_flags(), "UH");
  EXPECT_NE(r.reason().view().find("panic routing is off"), std::string::npos) << r.reason().view();
  clock.advance(30s);
  EXPECT_EQ(lb.pick(clock.now).status, PickResult::Status::kPicked);
}

TEST(Outlier, WithoutDetectionReportsAreIgnored) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kRoundRobin), {1, 1});
  fail_n(lb, 0, 100, clock.now);
  lb.report_local_failure(0, clock.now);
  EXPECT_EQ(lb.outlier(), nullptr);
  EXPECT_EQ(picks(lb, 2, clock.now), (std::vector<size_t>{0, 1}));
}

TEST(LoadBalancerTest, OptionsFollowTheEffectivePolicy) {
  auto cfg = sluice::test_support::load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: guarded}
spec:
  host: guarded.example.com
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    outlierDetection: {consecutive5xxErrors: 2, baseEjectionTime: 10s, maxEjectionPercent: 100}
  subsets:
  - name: plain
    trafficPolicy:
      portLevelSettings:
      - port: {number: 8080}
        loadBalancer: {simple: RANDOM}
)"});
  DestinationRules rules(cfg);
  auto o = LoadBalancer::options_for(rules.resolve_policy("guarded.example.com", "", 80));
  EXPECT_EQ(o.algorithm, LbAlgorithm::kLeastRequest);
  ASSERT_TRUE(o.outlier.has_value());
  EXPECT_EQ(o.outlier->consecutive_5xx, 2u);
  EXPECT_EQ(o.outlier->base_ejection_time, 10s);
  EXPECT_EQ(o.outlier->max_ejection_percent, 100u);
  EXPECT_EQ(o.healthy_panic_threshold, 50u);
  auto sub = LoadBalancer::options_for(rules.resolve_policy("guarded.example.com", "plain", 8080));
  EXPECT_EQ(sub.algorithm, LbAlgorithm::kRandom);
  EXPECT_FALSE(sub.outlier.has_value()) << "the subset's port entry replaced outlierDetection too";
  auto none = LoadBalancer::options_for(rules.resolve_policy("other.example.com", "", 80));
  EXPECT_EQ(none.algorithm, LbAlgorithm::kRoundRobin);
  EXPECT_FALSE(none.outlier.has_value());
}

TEST(LoadBalancerTest, MinHealthPercentAndTheDeprecatedConsecutiveErrors) {
  auto cfg = sluice::test_support::load_config({R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: old-style}
spec:
  host: old.example.com
  trafficPolicy:
    outlierDetection: {consecutiveErrors: 3, minHealthPercent: 30}
  subsets:
  - name: newer
    trafficPolicy:
      outlierDetection: {consecutiveErrors: 3, consecutive5xxErrors: 7}
)"});
  DestinationRules rules(cfg);
  auto o = LoadBalancer::options_for(rules.resolve_policy("old.example.com", "", 80));
  ASSERT_TRUE(o.outlier.has_value());
  EXPECT_EQ(o.healthy_panic_threshold, 30u) << "Istio 1.4: a positive minHealthPercent is the panic threshold";
  EXPECT_EQ(o.outlier->consecutive_gateway_errors, 3u) << "consecutiveErrors counts gateway errors";
  EXPECT_EQ(o.outlier->consecutive_5xx, 0u) << "and the 5xx detector is off";
  auto n = LoadBalancer::options_for(rules.resolve_policy("old.example.com", "newer", 80));
  ASSERT_TRUE(n.outlier.has_value());
  EXPECT_EQ(n.outlier->consecutive_5xx, 7u) << "the newer field wins";
  EXPECT_EQ(n.outlier->consecutive_gateway_errors, 3u);
  EXPECT_EQ(n.healthy_panic_threshold, 50u);
}

// ---------------------------------------------------------------------------
// RING_HASH (consistentHash)

std::vector<std::string> keys(std::initializer_list<const char*> k) { return {k.begin(), k.end()}; }

// Where each of `n` user names lands.
std::map<std::string, size_t> placement(LoadBalancer& lb, int n, MonotonicTime now) {
  std::map<std::string, size_t> out;
  for (int i = 0; i < n; ++i) {
    std::string user = "user-" + std::to_string(i);
    PickResult r = lb.pick(now, stable_hash(user));
    EXPECT_EQ(r.status, PickResult::Status::kPicked) << r.reason().view();
    out[user] = r.host;
  }
  return out;
}

TEST(StableHash, IsFixedAcrossBuildsAndSpreads) {
  // Pinned values (computed apart from this code: FNV-1a 64, then
  // MurmurHash3's fmix64): the ring, and so the endpoint a user sticks to,
  // must not move between releases or machines.
  EXPECT_EQ(stable_hash(""), 0xefd01f60ba992926ULL) << std::hex << stable_hash("");
  EXPECT_EQ(stable_hash("alice"), 0x3507d047a67c08f4ULL) << std::hex << stable_hash("alice");
  EXPECT_EQ(stable_hash("alice"), stable_hash("alice"));
  EXPECT_NE(stable_hash("alice"), stable_hash("alicf"));
  // Similar short keys land all over the ring (the top bits differ).
  std::map<uint64_t, int> top;
  for (int i = 0; i < 256; ++i) ++top[stable_hash("user-" + std::to_string(i)) >> 60];
  EXPECT_EQ(top.size(), 16u);
}

TEST(RingHash, TheSameKeyKeepsItsHost) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kRingHash), {1, 1, 1}, nullptr, keys({"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}));
  auto first = placement(lb, 300, clock.now);
  EXPECT_EQ(placement(lb, 300, clock.now), first) << "a key's host does not change from pick to pick";
  std::map<size_t, int> load;
  for (const auto& [user, host] : first) ++load[host];
  ASSERT_EQ(load.size(), 3u) << "keys spread over every host";
  for (const auto& [host, n] : load) EXPECT_GT(n, 60) << "host " << host << " got " << n << " of 300";
  PickResult r = lb.pick(clock.now, stable_hash("user-0"));
  EXPECT_NE(r.reason().view().find("RING_HASH picked endpoint"), std::string_view::npos) << r.reason().view();
  EXPECT_NE(r.reason().view().find("for hash"), std::string_view::npos) << r.reason().view();
}

TEST(RingHash, AHostThatGoesTakesOnlyItsOwnKeys) {
  FakeClock clock;
  LoadBalancer three(options(LbAlgorithm::kRingHash), {1, 1, 1}, nullptr,
                     keys({"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}));
  // The same endpoints without the second, in another order: placed by
  // address, not by position.
  LoadBalancer two(options(LbAlgorithm::kRingHash), {1, 1}, nullptr, keys({"10.0.0.3:80", "10.0.0.1:80"}));
  auto before = placement(three, 600, clock.now);
  auto after = placement(two, 600, clock.now);
  const size_t to_index[] = {1, 99, 0};  // three's host -> two's index (host 1 is gone)
  int gone = 0, stayed = 0, others = 0;
  for (const auto& [user, host] : before) {
    if (host == 1) {
      ++gone;
      continue;
    }
    ++others;
    if (after[user] == to_index[host]) ++stayed;
  }
  EXPECT_GT(gone, 100);
  // As on Envoy's ring, the remaining hosts get more points when the ring
  // is sized again for two (512 each instead of 342), and those take some
  // keys from each other; most stay where they were.
  EXPECT_GT(stayed * 100, others * 75) << stayed << " of " << others << " stayed";
  // The same host list in another order is the same ring.
  LoadBalancer reordered(options(LbAlgorithm::kRingHash), {1, 1, 1}, nullptr,
                         keys({"10.0.0.3:80", "10.0.0.1:80", "10.0.0.2:80"}));
  const size_t from_reordered[] = {2, 0, 1};
  for (const auto& [user, host] : placement(reordered, 600, clock.now)) {
    EXPECT_EQ(from_reordered[host], before[user]) << user;
  }
}

TEST(RingHash, WeightsSetTheShareOfKeys) {
  FakeClock clock;
  LoadBalancer lb(options(LbAlgorithm::kRingHash), {3, 1}, nullptr, keys({"a:80", "b:80"}));
  std::map<size_t, int> load;
  for (const auto& [user, host] : placement(lb, 2000, clock.now)) ++load[host];
  EXPECT_GT(load[0], 1300) << "weight 3 of 4: about 1500 of 2000, got " << load[0];
  EXPECT_LT(load[0], 1700);
}

TEST(RingHash, EjectedHostsArePassedOverAndKeysComeBack) {
  FakeClock clock;
  OutlierConfig oc;
  oc.consecutive_5xx = 1;
  oc.max_ejection_percent = 100;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRingHash, oc), {1, 1, 1}, nullptr, keys({"a:80", "b:80", "c:80"}));
  auto before = placement(lb, 300, clock.now);
  fail_n(lb, 2, 1, clock.now);
  auto during = placement(lb, 300, clock.now);
  for (const auto& [user, host] : before) {
    if (host == 2) EXPECT_NE(during[user], 2u) << user << " moves off the ejected host";
    else EXPECT_EQ(during[user], host) << user << " keeps its host";
  }
  clock.advance(31s);
  EXPECT_EQ(placement(lb, 300, clock.now), before) << "the host is back with its own keys";
}

TEST(RingHash, NoKeyIsARandomPoint) {
  FakeClock clock;
  ScriptedRandom random({stable_hash("user-7"), stable_hash("user-8")});
  LoadBalancer lb(options(LbAlgorithm::kRingHash), {1, 1, 1}, &random, keys({"a:80", "b:80", "c:80"}));
  EXPECT_EQ(lb.pick(clock.now).host, lb.pick(clock.now, stable_hash("user-7")).host);
  PickResult r = lb.pick(clock.now);
  EXPECT_EQ(r.host, lb.pick(clock.now, stable_hash("user-8")).host);
  EXPECT_NE(r.reason().view().find("no hash key"), std::string_view::npos) << r.reason().view();
}

TEST(RingHash, MinimumRingSizeFromTheRule) {
  auto cfg = sluice::test_support::load_config({R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: sticky}
spec:
  host: sticky.example.com
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user, minimumRingSize: 64}
)"});
  DestinationRules rules(cfg);
  EffectivePolicy p = rules.resolve_policy("sticky.example.com", "", 80);
  auto o = LoadBalancer::options_for(p);
  EXPECT_EQ(o.algorithm, LbAlgorithm::kRingHash);
  EXPECT_EQ(o.min_ring_size, 64u);
  EXPECT_NE(p.reason.view().find("RING_HASH by header x-user"), std::string_view::npos) << p.reason.view();
  LoadBalancer small(o, {1, 1}, nullptr, keys({"a:80", "b:80"}));
  EXPECT_EQ(small.ring_size(), 64u);
  LoadBalancer usual(options(LbAlgorithm::kRingHash), {1, 1}, nullptr, keys({"a:80", "b:80"}));
  EXPECT_EQ(usual.ring_size(), 1024u) << "Envoy's default minimum";
  // Three hosts: the lightest's share of 1024 rounded up, the others alike.
  LoadBalancer three(options(LbAlgorithm::kRingHash), {1, 1, 2}, nullptr, keys({"a:80", "b:80", "c:80"}));
  EXPECT_EQ(three.ring_size(), 1024u);
  LoadBalancer odd(options(LbAlgorithm::kRingHash), {1, 1, 1}, nullptr, keys({"a:80", "b:80", "c:80"}));
  EXPECT_EQ(odd.ring_size(), 1026u) << "342 points each";
}

TEST(RingHash, RetriesWalkTheRingToTheNextHosts) {
  FakeClock clock;
  OutlierConfig oc;
  oc.consecutive_5xx = 1;
  oc.max_ejection_percent = 100;
  for (int i = 0; i < 20; ++i) {
    LoadBalancer lb(with_outlier(LbAlgorithm::kRingHash, oc), {1, 1, 1, 1}, nullptr,
                    keys({"a:80", "b:80", "c:80", "d:80"}));
    const uint64_t key = stable_hash("user-" + std::to_string(i));
    PickResult r = lb.pick(clock.now, key);
    std::vector<uint32_t> order;
    lb.ring_order(r, 8, order);
    ASSERT_EQ(order.size(), 4u);
    EXPECT_EQ(order[0], r.host) << "the pick first";
    EXPECT_EQ(std::set<uint32_t>(order.begin(), order.end()).size(), 4u) << "every host once";
    std::vector<uint32_t> two;
    lb.ring_order(r, 2, two);
    EXPECT_EQ(two, std::vector<uint32_t>(order.begin(), order.begin() + 2)) << "the limit keeps the head";
    // The fallback is where the ring sends the key once the first is out.
    fail_n(lb, order[0], 1, clock.now);
    EXPECT_EQ(lb.pick(clock.now, key).host, order[1]) << "user-" << i;
  }
}

TEST(RingHash, AnEjectedHomeIsNeitherTheFirstConnectNorAnEarlyRetry) {
  FakeClock clock;
  OutlierConfig oc;
  oc.consecutive_5xx = 1;
  oc.max_ejection_percent = 100;
  LoadBalancer lb(with_outlier(LbAlgorithm::kRingHash, oc), {1, 1, 1, 1}, nullptr,
                  keys({"a:80", "b:80", "c:80", "d:80"}));
  const uint64_t key = stable_hash("user-3");
  const size_t home = lb.pick(clock.now, key).host;
  fail_n(lb, home, 1, clock.now);
  PickResult r = lb.pick(clock.now, key);
  ASSERT_NE(r.host, home);
  std::vector<uint32_t> order;
  lb.ring_order(r, 8, order);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0], r.host) << "the connect goes where the pick went";
  EXPECT_EQ(order[3], home) << "the ejected home is tried last";
}

// What a request hashes to: the header, cookie, query parameter or client
// address the rule names.
struct HashRequest {
  std::vector<HeaderField> headers;
  HttpRequest http;
  HashRequest(std::vector<HeaderField> h, std::string_view path) : headers(std::move(h)) {
    http.headers = headers;
    http.path = path;
  }
  HashRequest(const HashRequest&) = delete;
};

TEST(ConsistentHashKey, HeaderCookieQueryAndSourceIp) {
  config::ConsistentHashLB by_header;
  by_header.http_header_name = "X-User";
  HashRequest alice(std::vector<HeaderField>{{"host", "a"}, {"x-user", "alice"}}, "/");
  EXPECT_EQ(consistent_hash_key(by_header, {&alice.http}), stable_hash("alice")) << "header names fold case";
  HashRequest nobody(std::vector<HeaderField>{{"host", "a"}}, "/");
  EXPECT_FALSE(consistent_hash_key(by_header, {&nobody.http}).has_value());
  EXPECT_FALSE(consistent_hash_key(by_header, {}).has_value()) << "a TCP connection has no headers";

  config::ConsistentHashLB by_cookie;
  by_cookie.http_cookie_name = "session";
  by_cookie.http_cookie_ttl = std::chrono::milliseconds(60'000);
  HashRequest cookie(std::vector<HeaderField>{{"Cookie", "theme=dark; session=\"abc123\"; x=1"}}, "/");
  std::string set_cookie;
  EXPECT_EQ(consistent_hash_key(by_cookie, {&cookie.http}, &set_cookie), stable_hash("abc123"));
  EXPECT_TRUE(set_cookie.empty()) << "the client has one: none made up";
  HashRequest empty(std::vector<HeaderField>{{"cookie", "session=\"\""}}, "/");
  EXPECT_FALSE(consistent_hash_key(by_cookie, {&empty.http}).has_value()) << "an empty cookie is none (Envoy)";

  config::ConsistentHashLB by_authority;
  by_authority.http_header_name = ":authority";
  HashRequest host(std::vector<HeaderField>{{"host", "api.example.com"}}, "/");
  host.http.authority = "api.example.com";
  EXPECT_EQ(consistent_hash_key(by_authority, {&host.http}), stable_hash("api.example.com"))
      << "HTTP/1.1's Host is the :authority";

  config::ConsistentHashLB by_query;
  by_query.http_query_parameter_name = "user";
  HashRequest query(std::vector<HeaderField>{}, "/cart?item=1&user=bob&user=eve");
  EXPECT_EQ(consistent_hash_key(by_query, {&query.http}), stable_hash("bob")) << "the first one";
  HashRequest no_query(std::vector<HeaderField>{}, "/cart?username=bob");
  EXPECT_FALSE(consistent_hash_key(by_query, {&no_query.http}).has_value());

  config::ConsistentHashLB by_ip;
  by_ip.use_source_ip = true;
  auto ip = decision::IpAddress::parse("10.1.2.3");
  ASSERT_TRUE(ip.has_value());
  EXPECT_EQ(consistent_hash_key(by_ip, {nullptr, &*ip, 4242}), stable_hash("10.1.2.3")) << "TCP too; no port";
  EXPECT_FALSE(consistent_hash_key(by_ip, {}).has_value());
}

TEST(ConsistentHashKey, AMissingCookieIsMadeUpFromTheClientAddress) {
  config::ConsistentHashLB by_cookie;
  by_cookie.http_cookie_name = "session";
  by_cookie.http_cookie_ttl = std::chrono::milliseconds(3'600'000);
  auto ip = decision::IpAddress::parse("10.1.2.3");
  HashRequest none(std::vector<HeaderField>{{"cookie", "theme=dark"}}, "/");
  std::string set_cookie;
  std::optional<uint64_t> key = consistent_hash_key(by_cookie, {&none.http, &*ip, 4242}, &set_cookie);
  ASSERT_TRUE(key.has_value());
  ASSERT_EQ(set_cookie.rfind("session=\"", 0), 0u) << set_cookie;
  const std::string value = set_cookie.substr(9, 16);
  EXPECT_EQ(set_cookie, "session=\"" + value + "\"; Max-Age=3600; HttpOnly");
  EXPECT_EQ(*key, stable_hash(value)) << "the request goes where the cookie's next requests will";
  // The client's next request, carrying the cookie, hashes the same.
  const std::string sent = set_cookie.substr(0, set_cookie.find(';'));
  HashRequest next(std::vector<HeaderField>{{"cookie", sent}}, "/");
  std::string again;
  EXPECT_EQ(consistent_hash_key(by_cookie, {&next.http, &*ip, 5555}, &again), key);
  EXPECT_TRUE(again.empty());
  // ttl 0s: a session cookie, no Max-Age; httpCookie.path scopes it.
  by_cookie.http_cookie_ttl = std::chrono::milliseconds(0);
  by_cookie.http_cookie_path = "/";
  consistent_hash_key(by_cookie, {&none.http, &*ip, 4242}, &set_cookie);
  EXPECT_EQ(set_cookie, "session=\"" + value + "\"; Path=/; HttpOnly");
  // Without a client address nothing is made up.
  set_cookie.clear();
  EXPECT_FALSE(consistent_hash_key(by_cookie, {&none.http}, &set_cookie).has_value());
  EXPECT_TRUE(set_cookie.empty());
}

}  // namespace
}  // namespace sluice::policy
