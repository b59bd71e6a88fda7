#include "core/policy/load_balancer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace sluice::policy {

const char* to_string(LbAlgorithm a) {
  switch (a) {
    case LbAlgorithm::kRoundRobin: return "ROUND_ROBIN";
    case LbAlgorithm::kLeastRequest: return "LEAST_REQUEST";
    case LbAlgorithm::kRandom: return "RANDOM";
    case LbAlgorithm::kPassthrough: return "PASSTHROUGH";
    case LbAlgorithm::kRingHash: return "RING_HASH";
  }
  return "?";
}

LbAlgorithm lb_algorithm(const config::LoadBalancerSettings* settings) {
  if (!settings) return LbAlgorithm::kRoundRobin;
  // Istio's loadBalancer is one of simple and consistentHash.
  if (settings->consistent_hash) return LbAlgorithm::kRingHash;
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

uint64_t stable_hash(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;  // FNV prime
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::string hex64(uint64_t value) {
  char hex[17];
  snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(value));
  return hex;
}

bool hashes_on_client_address(const config::ConsistentHashLB& policy) {
  return policy.use_source_ip || (!policy.http_cookie_name.empty() && policy.http_cookie_ttl.has_value());
}

namespace {

// The value of cookie `name` in the request's Cookie headers (quotes
// around it dropped, as Envoy's parser does).
std::optional<std::string_view> cookie_value(const HttpRequest& http, std::string_view name) {
  for (const HeaderField& f : http.headers) {
    if (!header_name_equals(f.name, "cookie")) continue;
    std::string_view rest = f.value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      size_t eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        std::string_view v = pair.substr(eq + 1);
        while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
        return v;
      }
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> consistent_hash_key(const config::ConsistentHashLB& policy, const HashInput& in,
                                            std::string* set_cookie) {
  if (!policy.http_header_name.empty()) {
    if (!in.http) return std::nullopt;
    std::string joined;
    if (std::optional<std::string_view> v = request_header(*in.http, policy.http_header_name, joined)) {
      return stable_hash(*v);
    }
    return std::nullopt;
  }
  if (!policy.http_cookie_name.empty()) {
    if (!in.http) return std::nullopt;
    std::optional<std::string_view> v = cookie_value(*in.http, policy.http_cookie_name);
    if (v && !v->empty()) return stable_hash(*v);  // an empty one counts as none (Envoy)
    // Envoy makes one up only with a ttl (Istio requires it), and only
    // with a client address to derive it from.
    if (!policy.http_cookie_ttl || !in.source) return std::nullopt;
    std::string from = in.source->str() + ":" + std::to_string(in.source_port);
    const std::string hex = hex64(stable_hash(from));
    if (set_cookie) {
      *set_cookie = policy.http_cookie_name + "=\"" + hex + "\"";
      const int64_t seconds = policy.http_cookie_ttl->count() / 1000;
      if (seconds > 0) set_cookie->append("; Max-Age=").append(std::to_string(seconds));
      if (!policy.http_cookie_path.empty()) set_cookie->append("; Path=").append(policy.http_cookie_path);
      set_cookie->append("; HttpOnly");
    }
    return stable_hash(hex);
  }
  if (!policy.http_query_parameter_name.empty()) {
    if (!in.http) return std::nullopt;
    if (std::optional<std::string_view> v = query_parameter(in.http->path, policy.http_query_parameter_name)) {
      return stable_hash(*v);
    }
    return std::nullopt;
  }
  if (policy.use_source_ip && in.source) return stable_hash(in.source->unmapped().str());
  return std::nullopt;
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
  // The deprecated consecutiveErrors counts gateway errors only (Istio 1.4:
  // consecutive_gateway_failure, the 5xx detector not enforced); the newer
  // fields, when set, override it.
  if (od.consecutive_errors && *od.consecutive_errors > 0) {
    c.consecutive_gateway_errors = *od.consecutive_errors;
    c.consecutive_5xx = 0;
  }
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
      if (algorithm == LbAlgorithm::kRingHash) {
        if (hash) r.appendf(" for hash %016llx", static_cast<unsigned long long>(*hash));
        else r.append(" at a random point: the request has no hash key");
      }
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
  // minHealthPercent.
  if (policy.outlier_detection) {
    o.outlier = OutlierConfig::from(*policy.outlier_detection);
    if (policy.outlier_detection->min_health_percent > 0) {
      o.healthy_panic_threshold = static_cast<uint32_t>(std::min(policy.outlier_detection->min_health_percent, 100));
    }
  }
  if (policy.load_balancer && policy.load_balancer->consistent_hash) {
    const uint64_t n = policy.load_balancer->consistent_hash->minimum_ring_size;
    if (n > 0) o.min_ring_size = std::min(n, kMaxRingSize);
  }
  return o;
}

LoadBalancer::LoadBalancer(Options options, std::vector<uint32_t> weights, RandomSource* random,
                           const std::vector<std::string>& host_keys)
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
  if (options_.algorithm == LbAlgorithm::kRingHash) build_ring(host_keys);
}

void LoadBalancer::build_ring(const std::vector<std::string>& host_keys) {
  if (hosts_.empty()) return;
  // Envoy's sizing: the lightest host gets at least its share of
  // min_ring_size points, the others in proportion to their weights.
  double total = 0;
  uint32_t lightest = hosts_[0].weight;
  for (const Host& h : hosts_) {
    total += h.weight;
    lightest = std::min(lightest, h.weight);
  }
  const uint64_t min_size = std::clamp<uint64_t>(options_.min_ring_size, 1, kMaxRingSize);
  const double min_share = lightest / total;
  const double scale = std::min(std::ceil(min_share * static_cast<double>(min_size)) / min_share,
                                static_cast<double>(kMaxRingSize));
  ring_.reserve(static_cast<size_t>(scale) + hosts_.size());
  // Running totals, so that rounding never adds up past the scale.
  double target = 0;
  uint64_t placed = 0;
  std::string key;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    target += scale * (hosts_[i].weight / total);
    const std::string base = i < host_keys.size() ? host_keys[i] : std::to_string(i);
    for (uint64_t n = 0; placed < target; ++n, ++placed) {
      key.assign(base).append("_").append(std::to_string(n));
      ring_.push_back(RingPoint{stable_hash(key), static_cast<uint32_t>(i)});
    }
  }
  std::sort(ring_.begin(), ring_.end(), [](const RingPoint& a, const RingPoint& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.host < b.host;
  });
}

size_t LoadBalancer::ring_index(uint64_t hash) const {
  auto it = std::lower_bound(ring_.begin(), ring_.end(), hash,
                             [](const RingPoint& p, uint64_t h) { return p.hash < h; });
  return it == ring_.end() ? 0 : static_cast<size_t>(it - ring_.begin());
}

size_t LoadBalancer::pick_ring(uint64_t hash, bool any_host) const {
  const size_t at = ring_index(hash);
  // Pass over an ejected host's points: the next host clockwise, as on a
  // ring built without it.
  for (size_t step = 0; step < ring_.size(); ++step) {
    const uint32_t host = ring_[(at + step) % ring_.size()].host;
    if (any_host || !outlier_ || !outlier_->ejected(host)) return host;
  }
  // Only ejected hosts have points (a host whose weight is too small for a
  // point of its own on a capped ring): any available one.
  return available_.empty() ? ring_[at].host : available_[hash % available_.size()];
}

void LoadBalancer::ring_order(const PickResult& pick, size_t limit, std::vector<uint32_t>& out) const {
  out.clear();
  if (ring_.empty() || pick.status != PickResult::Status::kPicked) return;
  limit = std::min(limit, hosts_.size());
  // Two walks clockwise from the pick's point, the second only when the
  // first found too few: hosts in service, then ejected ones. `out` stays
  // within `limit` (a few), so a linear look-up is the duplicate check.
  auto walk = [&](bool want_ejected) {
    const bool any = pick.panic || !outlier_;
    const size_t at = ring_index(pick.point);
    for (size_t step = 0; step < ring_.size() && out.size() < limit; ++step) {
      const uint32_t host = ring_[(at + step) % ring_.size()].host;
      if (!any && outlier_->ejected(host) != want_ejected) continue;
      if (any && want_ejected) return;  // nothing is set aside in panic
      if (std::find(out.begin(), out.end(), host) == out.end()) out.push_back(host);
    }
  };
  out.push_back(static_cast<uint32_t>(pick.host));
  walk(false);
  walk(true);
  // Hosts without a point of their own (a capped ring), if room is left.
  for (uint32_t h = 0; h < hosts_.size() && out.size() < limit; ++h) {
    if (std::find(out.begin(), out.end(), h) == out.end()) out.push_back(h);
  }
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

PickResult LoadBalancer::pick(MonotonicTime now, std::optional<uint64_t> hash) {
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
    case LbAlgorithm::kRingHash:
      r.hash = hash;
      r.point = hash ? *hash : random();
      r.host = pick_ring(r.point, r.panic);
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
