// Endpoint picking for one cluster, and passive health (outlier detection),
// with Envoy's algorithms as Istio 1.4 — the walkthrough's era, Envoy
// 1.12/1.13 — configures them. Differences from current Istio/Envoy are noted
// where they matter. State for one worker thread: no locks, no allocation per
// pick. Time is passed in by the caller (the event loop's cached monotonic
// clock), so tests drive it without sleeping.
//
// Algorithms (DestinationRule loadBalancer.simple):
//   ROUND_ROBIN    equal weights: rotate over the available hosts; unequal:
//                  smooth weighted round robin (same proportions as Envoy's
//                  EDF scheduler, not necessarily the same order). Starts at
//                  host 0.
//   LEAST_REQUEST  equal weights: power of two choices — two hosts drawn at
//                  random (with replacement), the one with fewer active
//                  requests wins, ties to the first draw; unequal: the
//                  weighted schedule over weight / (active + 1).
//   RANDOM         uniform over the available hosts (Envoy ignores weights).
//   PASSTHROUGH    no choice: connect to the original destination.
// Unset is ROUND_ROBIN (Istio 1.4 kept Envoy's default; Istio 1.14+ sets
// LEAST_REQUEST). LEAST_CONN is LEAST_REQUEST. consistentHash is not
// implemented and gets the default.
//
// Outlier detection (DestinationRule outlierDetection → Envoy's
// consecutive_5xx / consecutive_gateway_failure detectors, enforced 100%):
//   - a host is ejected on its consecutive5xxErrors-th (default 5)
//     consecutive 5xx response or local failure (connect failure, timeout,
//     reset: Envoy counts them as 503 unless split_external_local_origin_errors
//     is on, which Istio leaves off); consecutiveGatewayErrors (off unless
//     set) counts 502/503/504 and local failures. Any other response, or a
//     completed TCP connect, resets the counts;
//   - it stays out for baseEjectionTime (default 30s) × the number of times
//     it has been ejected; OutlierConfig::max_ejection_time, unset here as in
//     Envoy before 1.17, caps that;
//   - maxEjectionPercent (default 10): a host is ejected while fewer than that
//     share of hosts are out — so the first ejection always happens, whatever
//     the size of the cluster (Envoy until 1.27; since 1.31 at-least-one is
//     the opt-in always_eject_one_host and the limit is strict);
//   - Envoy returns hosts on its `interval` (default 10s) timer; here a host
//     returns at the first pick or report after its time is up, never later;
//   - Envoy's detector is shared by all workers; this one sees one worker's
//     traffic only.
//
// Panic threshold: when fewer than healthy_panic_threshold percent (Envoy's
// default 50) of the hosts are available, Envoy balances over all of them,
// ejected ones included — so when every host is ejected traffic still flows.
// Istio 1.4 overrode the threshold only for outlierDetection.minHealthPercent
// > 0 (not in the config model: always 50 here). Current Istio sets it to
// minHealthPercent even when 0, which turns panic routing off (all ejected →
// 503 UH); Options::healthy_panic_threshold = 0 gives that behaviour.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/config/model.h"
#include "core/policy/destination.h"
#include "core/policy/routing.h"

namespace sluice::policy {

using MonotonicTime = std::chrono::steady_clock::time_point;

enum class LbAlgorithm { kRoundRobin, kLeastRequest, kRandom, kPassthrough };
const char* to_string(LbAlgorithm a);

// The algorithm for DestinationRule settings (nullptr: unset).
LbAlgorithm lb_algorithm(const config::LoadBalancerSettings* settings);

// Random numbers for LEAST_REQUEST and RANDOM; tests script them.
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual uint64_t next() = 0;
};

// SplitMix64: fast, statistically sound for load balancing (not crypto).
class SplitMix64 final : public RandomSource {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() override;

 private:
  uint64_t state_;
};

struct OutlierConfig {
  uint32_t consecutive_5xx = 5;             // 0: detector off
  uint32_t consecutive_gateway_errors = 0;  // 0: detector off (Envoy enforces it only when Istio sets it)
  std::chrono::milliseconds interval{10'000};  // Envoy's sweep period; informational here
  std::chrono::milliseconds base_ejection_time{30'000};
  std::optional<std::chrono::milliseconds> max_ejection_time;  // unset: no cap (Envoy < 1.17)
  uint32_t max_ejection_percent = 10;

  // Istio's translation of a DestinationRule outlierDetection.
  static OutlierConfig from(const config::OutlierDetection& od);
};

class OutlierDetector {
 public:
  OutlierDetector(OutlierConfig config, size_t hosts);

  // Outcomes of requests/connections sent to `host`.
  void report_response(size_t host, uint32_t status, MonotonicTime now);
  void report_local_failure(size_t host, MonotonicTime now);  // connect failure, timeout, reset
  void report_connect_success(size_t host, MonotonicTime now);

  // Returns hosts whose ejection time is over; true when any returned.
  bool refresh(MonotonicTime now);

  bool ejected(size_t host) const { return hosts_[host].ejected; }
  size_t ejected_count() const { return ejected_; }
  // How many times `host` has been ejected (its ejection-time multiplier).
  uint32_t ejections(size_t host) const { return hosts_[host].ejections; }
  // When an ejected host returns (meaningless for a host in service).
  MonotonicTime returns_at(size_t host) const { return hosts_[host].returns_at; }
  const OutlierConfig& config() const { return config_; }
  // Bumped whenever a host is ejected or returns, so a balancer can tell
  // that its list of available hosts is stale.
  uint64_t generation() const { return generation_; }

 private:
  struct Host {
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    bool ejected = false;
    uint32_t ejections = 0;
    MonotonicTime returns_at{};
  };

  void on_error(size_t host, bool gateway_error, MonotonicTime now);
  void eject(size_t host, MonotonicTime now);

  OutlierConfig config_;
  std::vector<Host> hosts_;
  size_t ejected_ = 0;
  uint64_t generation_ = 0;
  std::optional<MonotonicTime> next_return_;  // earliest returns_at of an ejected host
};

struct PickResult {
  enum class Status {
    kPicked,               // `host` is the endpoint to use
    kOriginalDestination,  // PASSTHROUGH: the connection's original destination
    kNoHealthyUpstream,    // 503 UH: no endpoints, or all ejected without panic routing
  };
  Status status = Status::kNoHealthyUpstream;
  size_t host = 0;
  LbAlgorithm algorithm = LbAlgorithm::kRoundRobin;
  size_t available = 0;  // hosts not ejected
  size_t total = 0;
  bool panic = false;  // below the panic threshold: chosen among all hosts
  uint32_t panic_threshold = 0;

  // "ROUND_ROBIN picked endpoint 2 of 3 (3 available)" and the like.
  ReasonText reason() const;
  std::string_view response_flags() const { return status == Status::kNoHealthyUpstream ? "UH" : "-"; }
};

class LoadBalancer {
 public:
  struct Options {
    LbAlgorithm algorithm = LbAlgorithm::kRoundRobin;
    std::optional<OutlierConfig> outlier;  // nullopt: no outlier detection
    uint32_t healthy_panic_threshold = 50;  // percent; 0: panic routing off
    // For the built-in SplitMix64. Give each worker its own seed, or their
    // RANDOM / LEAST_REQUEST draws move in lockstep.
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
  };

  // Istio's cluster for an effective policy: its algorithm and, with
  // outlierDetection, the detector (panic threshold stays 50, as Istio 1.4).
  static Options options_for(const EffectivePolicy& policy);

  // One weight per endpoint (0 counts as 1, Envoy's default weight).
  // `random`, when given, must outlive the balancer.
  LoadBalancer(Options options, std::vector<uint32_t> weights, RandomSource* random = nullptr);

  PickResult pick(MonotonicTime now);

  // LEAST_REQUEST reads these; callers pair them per request.
  void on_request_start(size_t host) { ++hosts_[host].active; }
  void on_request_end(size_t host) {
    if (hosts_[host].active > 0) --hosts_[host].active;
  }
  uint32_t active_requests(size_t host) const { return hosts_[host].active; }

  // Outcomes for outlier detection (ignored without it). `host` < size().
  void report_response(size_t host, uint32_t status, MonotonicTime now);
  void report_local_failure(size_t host, MonotonicTime now);
  void report_connect_success(size_t host, MonotonicTime now);

  size_t size() const { return hosts_.size(); }
  const Options& options() const { return options_; }
  const OutlierDetector* outlier() const { return outlier_ ? &*outlier_ : nullptr; }

 private:
  struct Host {
    uint32_t weight = 1;
    uint32_t active = 0;
    int64_t current = 0;  // smooth weighted round robin state
  };

  void refresh_available(MonotonicTime now);
  size_t pick_weighted(const std::vector<uint32_t>& candidates, bool by_load);
  uint64_t random() { return random_->next(); }

  Options options_;
  std::vector<Host> hosts_;
  bool equal_weights_ = true;
  std::optional<OutlierDetector> outlier_;
  uint64_t seen_generation_ = 0;
  std::vector<uint32_t> available_;  // hosts not ejected, ascending
  std::vector<uint32_t> all_;        // every host, for panic routing
  uint64_t rr_index_ = 0;
  SplitMix64 own_random_;
  RandomSource* random_;
};

}  // namespace sluice::policy
