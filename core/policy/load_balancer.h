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
//   RING_HASH      loadBalancer.consistentHash (Envoy's ring hash, as Istio
//                  configures it): every host has points on a 64-bit ring,
//                  about minimumRingSize (default 1024) in all, in proportion
//                  to its weight, each the hash of "<host key>_<n>"; a
//                  request's hash (consistent_hash_key) goes to the first
//                  point at or after it. The same key keeps its host while
//                  the host set stays, and a host that goes takes only its
//                  own keys with it. An ejected host's points are passed
//                  over (what Envoy's ring rebuilt without it gives). No
//                  key in the request (a missing header): a random point.
// Unset is ROUND_ROBIN (Istio 1.4 kept Envoy's default; Istio 1.14+ sets
// LEAST_REQUEST). LEAST_CONN is LEAST_REQUEST. The ring's hash is this
// file's stable_hash (FNV-1a with a MurmurHash3 finish), not Envoy's
// xxHash64: the same keys stick, on other hosts than Envoy would pick.
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
// > 0, as here (options_for). Current Istio sets it to
// minHealthPercent even when 0, which turns panic routing off (all ejected →
// 503 UH); Options::healthy_panic_threshold = 0 gives that behaviour.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/model.h"
#include "core/decision/ip_address.h"
#include "core/policy/destination.h"
#include "core/policy/routing.h"

namespace sluice::policy {

using MonotonicTime = std::chrono::steady_clock::time_point;

enum class LbAlgorithm { kRoundRobin, kLeastRequest, kRandom, kPassthrough, kRingHash };
const char* to_string(LbAlgorithm a);

// The algorithm for DestinationRule settings (nullptr: unset).
LbAlgorithm lb_algorithm(const config::LoadBalancerSettings* settings);

// A 64-bit hash that is the same on every build and run (the ring's points
// and the requests' keys): FNV-1a, then MurmurHash3's 64-bit finaliser so
// that short, similar strings spread over the whole ring.
uint64_t stable_hash(std::string_view text);
// 16 lower-case hex digits (a hash key, a made-up cookie's value).
std::string hex64(uint64_t value);

// Whether a consistentHash policy's key can come from the client's address
// (useSourceIp, or a cookie made up from it when missing).
bool hashes_on_client_address(const config::ConsistentHashLB& policy);

// What a request hashes to under a consistentHash policy, as Envoy's hash
// policy computes it: the value of header `httpHeaderName`, of cookie
// `httpCookie.name`, of query parameter `httpQueryParameterName` (the first
// of each), or the client's IP (`useSourceIp`). Nullopt when the request
// has no such value (no header, a TCP connection for an HTTP key, no client
// address): the ring then takes a random point, as Envoy does.
//
// A missing cookie with a `ttl` is made up, as Envoy's router does: its
// value is 16 hex digits hashed from the client's address and port, the
// request hashes to that value, and *set_cookie gets the response's
// `Set-Cookie` value (`name="value"; Max-Age=ttl; HttpOnly`, no Max-Age for
// a zero ttl: a session cookie) so that the client's next requests carry it.
struct HashInput {
  const HttpRequest* http = nullptr;       // null for TCP/TLS connections
  const decision::IpAddress* source = nullptr;  // the client's address; null when unknown
  uint16_t source_port = 0;
};
std::optional<uint64_t> consistent_hash_key(const config::ConsistentHashLB& policy, const HashInput& input,
                                            std::string* set_cookie = nullptr);

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
  friend bool operator==(const OutlierConfig&, const OutlierConfig&) = default;
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
  std::optional<uint64_t> hash;  // RING_HASH: the request's key (nullopt: a random point)
  uint64_t point = 0;            // RING_HASH: where on the ring the pick started (the key, or the random point)
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
    // RING_HASH: points on the ring in all, at least (Envoy's
    // minimum_ring_size; Istio's minimumRingSize, default 1024). At most
    // kMaxRingSize, Envoy's maximum_ring_size default.
    uint64_t min_ring_size = 1024;
    // For the built-in SplitMix64. Give each worker its own seed, or their
    // RANDOM / LEAST_REQUEST draws move in lockstep.
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    friend bool operator==(const Options&, const Options&) = default;
  };

  // Istio's cluster for an effective policy: its algorithm and, with
  // outlierDetection, the detector and (Istio 1.4) a positive
  // minHealthPercent as the panic threshold, else Envoy's 50.
  static Options options_for(const EffectivePolicy& policy);

  static constexpr uint64_t kMaxRingSize = 8 * 1024 * 1024;

  // One weight per endpoint (0 counts as 1, Envoy's default weight).
  // `random`, when given, must outlive the balancer. RING_HASH places each
  // host by its key (`host_keys[i]`, e.g. "10.0.0.1:80"; the index when
  // none are given): a host keeps its points whatever else is in the list.
  LoadBalancer(Options options, std::vector<uint32_t> weights, RandomSource* random = nullptr,
               const std::vector<std::string>& host_keys = {});

  // `hash`: the request's consistent_hash_key (RING_HASH only; the others
  // ignore it).
  PickResult pick(MonotonicTime now, std::optional<uint64_t> hash = std::nullopt);

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
  size_t ring_size() const { return ring_.size(); }  // RING_HASH: points on the ring
  // RING_HASH: up to `limit` hosts, each once, `pick`'s host first, then
  // clockwise from its point (ejected hosts last, unless the pick was in
  // panic): where connect failures and retries go next, as Envoy's ring
  // walks on.
  void ring_order(const PickResult& pick, size_t limit, std::vector<uint32_t>& out) const;
  const Options& options() const { return options_; }
  const OutlierDetector* outlier() const { return outlier_ ? &*outlier_ : nullptr; }

 private:
  struct Host {
    uint32_t weight = 1;
    uint32_t active = 0;
    int64_t current = 0;  // smooth weighted round robin state
  };

  void refresh_available(MonotonicTime now);
  void build_ring(const std::vector<std::string>& host_keys);
  size_t ring_index(uint64_t hash) const;  // the first point at or after `hash`, wrapping
  size_t pick_ring(uint64_t hash, bool any_host) const;
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
  struct RingPoint {
    uint64_t hash;
    uint32_t host;
  };
  std::vector<RingPoint> ring_;  // RING_HASH, ascending by hash
  SplitMix64 own_random_;
  RandomSource* random_;
};

}  // namespace sluice::policy
