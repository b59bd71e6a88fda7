#include "core/policy/load_balancer.h"

#include <algorithm>

namespace sluice::policy {

const char* to_string(LbAlgorithm a) {
  switch (a) {
    case LbAlgorithm::kRoundRobin: return "ROUND_ROBIN";
    case LbAlgorithm::kLeastRequest: return "LEAST_REQUEST";
    case LbAlgorithm::kRandom: return "RANDOM";
    case LbAlgorithm::kPassthrough: return "PASSTHROUGH";
  }
  return "?";
}

LbAlgorithm lb_algorithm(const config::LoadBalancerSettings* settings) {
  if (!settings) return LbAlgorithm::kRoundRobin;
  switch (settings->simple) {
    case config::SimpleLB::kUnspecified:
    case config::SimpleLB::kRoundRobin:
      return LbAlgorithm::kRoundRobin;
    case config::SimpleLB::kRandom: return LbAlgorithm::kRandom;
    case config::SimpleLB::kPassthrough: return LbAlgorithm::kPassthrough;
    case config::SimpleLB::kLeastRequest:
    case config::SimpleLB::kLeastConn:
      return LbAlgorithm::kLeastRequest;
  }
  return LbAlgorithm::kRoundRobin;
}

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// ---------------------------------------------------------------------------
// OutlierConfig / OutlierDetector

OutlierConfig OutlierConfig::from(const config::OutlierDetection& od) {
  OutlierConfig c;
  // Istio copies consecutive5xxErrors when set (0 disables the detector);
  // unset keeps Envoy's 5.
  if (od.consecutive_5xx_errors) c.consecutive_5xx = *od.consecutive_5xx_errors;
  if (od.consecutive_gateway_errors) c.consecutive_gateway_errors = *od.consecutive_gateway_errors;
  if (od.interval && od.interval->count() > 0) c.interval = *od.interval;
  if (od.base_ejection_time && od.base_ejection_time->count() > 0) c.base_ejection_time = *od.base_ejection_time;
  if (od.max_ejection_percent > 0) c.max_ejection_percent = std::min<uint32_t>(od.max_ejection_percent, 100);
  return c;
}

OutlierDetector::OutlierDetector(OutlierConfig config, size_t hosts) : config_(config), hosts_(hosts) {}

void OutlierDetector::report_response(size_t host, uint32_t status, MonotonicTime now) {
  refresh(now);
  Host& h = hosts_[host];
  if (h.ejected) return;  // answers still in flight when it was ejected
  if (status >= 500 && status <= 599) {
    on_error(host, status == 502 || status == 503 || status == 504, now);
  } else {
    h.consecutive_5xx = 0;
    h.consecutive_gateway = 0;
  }
}

void OutlierDetector::report_local_failure(size_t host, MonotonicTime now) {
  refresh(now);
  if (hosts_[host].ejected) return;
  // Without split_external_local_origin_errors (Istio's default) Envoy
  // counts a connect failure, timeout or reset as a 503.
  on_error(host, /*gateway_error=*/true, now);
}

void OutlierDetector::report_connect_success(size_t host, MonotonicTime now) {
  refresh(now);
  Host& h = hosts_[host];
  if (h.ejected) return;
  h.consecutive_5xx = 0;
  h.consecutive_gateway = 0;
}

void OutlierDetector::on_error(size_t host, bool gateway_error, MonotonicTime now) {
  Host& h = hosts_[host];
  bool trigger = false;
  if (config_.consecutive_5xx != 0 && ++h.consecutive_5xx >= config_.consecutive_5xx) {
    trigger = true;
    h.consecutive_5xx = 0;  // reset whether or not the ejection is allowed
  }
  if (gateway_error) {
    if (config_.consecutive_gateway_errors != 0 && ++h.consecutive_gateway >= config_.consecutive_gateway_errors) {
      trigger = true;
      h.consecutive_gateway = 0;
    }
  } else {
    h.consecutive_gateway = 0;
  }
  if (trigger) eject(host, now);
}

void OutlierDetector::eject(size_t host, MonotonicTime now) {
  // Envoy 1.12/1.13: eject while the share already out is below the limit,
  // which always lets the first ejection through.
  const double share = 100.0 * static_cast<double>(ejected_) / static_cast<double>(hosts_.size());
  if (!(share < static_cast<double>(config_.max_ejection_percent))) return;

  Host& h = hosts_[host];
  h.ejected = true;
  ++ejected_;
  ++h.ejections;
  auto duration = config_.base_ejection_time * h.ejections;
  if (config_.max_ejection_time) duration = std::min(duration, *config_.max_ejection_time);
  h.returns_at = now + duration;
  if (!next_return_ || h.returns_at < *next_return_) next_return_ = h.returns_at;
  ++generation_;
}

bool OutlierDetector::refresh(MonotonicTime now) {
  if (!next_return_ || now < *next_return_) return false;
  next_return_.reset();
  bool changed = false;
  for (auto& h : hosts_) {
    if (!h.ejected) continue;
    if (now >= h.returns_at) {
      h.ejected = false;
      --ejected_;
      // Fresh counters, so that a few errors do not eject it again at once.
      h.consecutive_5xx = 0;
      h.consecutive_gateway = 0;
      changed = true;
    } else if (!next_return_ || h.returns_at < *next_return_) {
      next_return_ = h.returns_at;
    }
  }
  if (changed) ++generation_;
  return changed;
}

// ---------------------------------------------------------------------------
// PickResult

ReasonText PickResult::reason() const {
  ReasonText r;
  switch (status) {
    case Status::kOriginalDestination:
      r.append("PASSTHROUGH: connect to the original destination");
      break;
    case Status::kNoHealthyUpstream:
      if (total == 0) {
        r.append("no endpoints: 503 UH");
      } else {
        r.appendf("all %zu endpoints are ejected by outlier detection and panic routing is off: 503 UH", total);
      }
      break;
    case Status::kPicked:
      r.appendf("%s picked endpoint %zu (%zu of %zu available)", to_string(algorithm), host, available, total);
      if (panic) {
        r.appendf("; below the panic threshold of %u%%: chosen among all endpoints, ejected ones included",
                  panic_threshold);
      }
      break;
  }
  return r;
}

// ---------------------------------------------------------------------------
// LoadBalancer

LoadBalancer::Options LoadBalancer::options_for(const EffectivePolicy& policy) {
  Options o;
  o.algorithm = lb_algorithm(policy.load_balancer);
  // Istio 1.4 overrides Envoy's 50% panic threshold only for a positive
  // minHealthPercent, which the config model does not carry.
  if (policy.outlier_detection) o.outlier = OutlierConfig::from(*policy.outlier_detection);
  return o;
}

LoadBalancer::LoadBalancer(Options options, std::vector<uint32_t> weights, RandomSource* random)
    : options_(std::move(options)), own_random_(options_.seed), random_(random ? random : &own_random_) {
  hosts_.resize(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    hosts_[i].weight = std::max<uint32_t>(weights[i], 1);
    if (hosts_[i].weight != hosts_[0].weight) equal_weights_ = false;
  }
  if (options_.outlier) outlier_.emplace(*options_.outlier, hosts_.size());
  all_.reserve(hosts_.size());
  for (size_t i = 0; i < hosts_.size(); ++i) all_.push_back(static_cast<uint32_t>(i));
  available_ = all_;
}

void LoadBalancer::refresh_available(MonotonicTime now) {
  if (!outlier_) return;
  outlier_->refresh(now);
  if (outlier_->generation() == seen_generation_) return;
  seen_generation_ = outlier_->generation();
  available_.clear();  // capacity stays: no allocation
  for (uint32_t i = 0; i < hosts_.size(); ++i) {
    if (!outlier_->ejected(i)) available_.push_back(i);
  }
}

size_t LoadBalancer::pick_weighted(const std::vector<uint32_t>& candidates, bool by_load) {
  // Smooth weighted round robin: every candidate gains its weight, the
  // richest is chosen and pays the total. With by_load the weight is divided
  // by (active + 1), Envoy's least-request weighting with bias 1.0.
  int64_t total = 0;
  uint32_t best = candidates.front();
  bool first = true;
  for (uint32_t i : candidates) {
    Host& h = hosts_[i];
    int64_t w = h.weight;
    if (by_load) w = std::max<int64_t>(1, static_cast<int64_t>(h.weight) * 1000 / (static_cast<int64_t>(h.active) + 1));
    h.current += w;
    total += w;
    if (first || h.current > hosts_[best].current) {
      best = i;
      first = false;
    }
  }
  hosts_[best].current -= total;
  return best;
}

PickResult LoadBalancer::pick(MonotonicTime now) {
  PickResult r;
  r.algorithm = options_.algorithm;
  r.total = hosts_.size();
  r.panic_threshold = options_.healthy_panic_threshold;
  if (options_.algorithm == LbAlgorithm::kPassthrough) {
    r.status = PickResult::Status::kOriginalDestination;
    r.available = r.total;
    return r;
  }
  refresh_available(now);
  r.available = available_.size();
  const std::vector<uint32_t>* candidates = &available_;
  // Envoy's panic mode: too few available hosts → balance over all of them.
  if (available_.size() * 100 < static_cast<size_t>(options_.healthy_panic_threshold) * hosts_.size()) {
    candidates = &all_;
    r.panic = true;
  }
  if (candidates->empty()) {
    r.status = PickResult::Status::kNoHealthyUpstream;
    r.panic = false;
    return r;
  }
  const auto& c = *candidates;
  switch (options_.algorithm) {
    case LbAlgorithm::kRoundRobin:
      r.host = equal_weights_ ? c[rr_index_++ % c.size()] : pick_weighted(c, /*by_load=*/false);
      break;
    case LbAlgorithm::kLeastRequest:
      if (equal_weights_) {
        const uint32_t a = c[random() % c.size()];
        const uint32_t b = c[random() % c.size()];
        r.host = hosts_[b].active < hosts_[a].active ? b : a;
      } else {
        r.host = pick_weighted(c, /*by_load=*/true);
      }
      break;
    case LbAlgorithm::kRandom:
      r.host = c[random() % c.size()];
      break;
    case LbAlgorithm::kPassthrough:
      break;  // handled above
  }
  r.status = PickResult::Status::kPicked;
  return r;
}

void LoadBalancer::report_response(size_t host, uint32_t status, MonotonicTime now) {
  if (outlier_) outlier_->report_response(host, status, now);
}

void LoadBalancer::report_local_failure(size_t host, MonotonicTime now) {
  if (outlier_) outlier_->report_local_failure(host, now);
}

void LoadBalancer::report_connect_success(size_t host, MonotonicTime now) {
  if (outlier_) outlier_->report_connect_success(host, now);
}

}  // namespace sluice::policy
