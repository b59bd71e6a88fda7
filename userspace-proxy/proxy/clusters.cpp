#include "userspace-proxy/proxy/clusters.h"

#include <algorithm>
#include <cstring>

#include "userspace-proxy/engine/verdict.h"

namespace sluice::proxy {

std::shared_ptr<Clusters::Cluster> Clusters::get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = clusters_[name];
  if (!slot) slot = std::make_shared<Cluster>();
  return slot;
}

std::shared_ptr<CircuitBreaker> Clusters::breaker(const std::string& name) { return get(name)->breaker; }

Clusters::Choice Clusters::pick(const std::string& name, const policy::EffectivePolicy& policy,
                                const std::vector<engine::SocketAddress>& endpoints,
                                const std::vector<uint32_t>& weights, std::optional<uint64_t> hash,
                                uint64_t generation) {
  Choice out;
  if (endpoints.empty()) {
    out.no_healthy = true;
    out.reason = "no endpoints";
    return out;
  }
  std::shared_ptr<Cluster> c = get(name);
  policy::LoadBalancer::Options options = policy::LoadBalancer::options_for(policy);
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(c->mu);
  // A connection still on an older config (keep-alive across a reload)
  // uses the newer balancer as it is, rather than rebuilding it back and
  // forth (which would lose its ejections and round-robin place).
  if (c->lb && generation < c->generation) options = c->lb->options();
  else c->generation = generation;
  update_balancer(*c, options, endpoints, weights);
  policy::PickResult r = c->lb->pick(now, hash);
  switch (r.status) {
    case policy::PickResult::Status::kNoHealthyUpstream:
      out.no_healthy = true;
      out.reason = r.reason().str();  // only the failures are explained (in the access log)
      return out;
    case policy::PickResult::Status::kOriginalDestination:
      out.original_destination = true;
      return out;
    case policy::PickResult::Status::kPicked:
      break;
  }
  // Where a failed connect or a retry goes next: the ring's next hosts
  // clockwise for RING_HASH, else the list from the chosen one on.
  const std::vector<engine::SocketAddress>& list = c->endpoints;
  const size_t n = list.size();
  out.order.reserve(n);
  if (options.algorithm == policy::LbAlgorithm::kRingHash) {
    // As many as a connect verdict carries; the buffer is the thread's.
    thread_local std::vector<uint32_t> hosts;
    c->lb->ring_order(r, engine::Verdict::kMaxUpstreams, hosts);
    for (uint32_t h : hosts) out.order.push_back(list[h]);
  } else {
    for (size_t i = 0; i < n; ++i) out.order.push_back(list[(r.host + i) % n]);
  }
  return out;
}

namespace {

// Indices of `endpoints` in address order (a total order on the raw
// socket address: the same set sorts the same whatever order DNS gave).
std::vector<size_t> address_order(const std::vector<engine::SocketAddress>& endpoints,
                                  const std::vector<uint32_t>& weights) {
  std::vector<size_t> idx(endpoints.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    const engine::SocketAddress& x = endpoints[a];
    const engine::SocketAddress& y = endpoints[b];
    if (x.len() != y.len()) return x.len() < y.len();
    if (int d = std::memcmp(x.sa(), y.sa(), x.len()); d != 0) return d < 0;
    return weights[a] < weights[b];  // one address twice (two names): still one order
  });
  return idx;
}

}  // namespace

bool Clusters::balancer_current(const Cluster& c, const policy::LoadBalancer::Options& options,
                                const std::vector<engine::SocketAddress>& endpoints,
                                const std::vector<uint32_t>& weights) {
  // Any other option (a reload that changes the algorithm, outlierDetection
  // or the panic threshold) is a balancer of its own (Envoy: a new cluster,
  // its detector fresh).
  if (!c.lb || !(c.lb->options() == options)) return false;
  if (c.endpoints == endpoints && c.weights == weights) return true;
  if (options.algorithm != policy::LbAlgorithm::kRingHash || endpoints.size() != c.endpoints.size()) return false;
  if (c.input_endpoints == endpoints && c.input_weights == weights) return true;  // as last time
  // A ring keeps its endpoints in address order: DNS answers in another
  // order are the same ring (no rebuild, the same placement).
  std::vector<size_t> idx = address_order(endpoints, weights);
  for (size_t i = 0; i < idx.size(); ++i) {
    if (!(endpoints[idx[i]] == c.endpoints[i]) || weights[idx[i]] != c.weights[i]) return false;
  }
  return true;
}

void Clusters::update_balancer(Cluster& c, const policy::LoadBalancer::Options& options,
                               const std::vector<engine::SocketAddress>& endpoints,
                               const std::vector<uint32_t>& weights) {
  if (balancer_current(c, options, endpoints, weights)) {
    if (options.algorithm == policy::LbAlgorithm::kRingHash && c.input_endpoints != endpoints) {
      c.input_endpoints = endpoints;  // the same set in another order: compared at once next time
      c.input_weights = weights;
    }
    return;
  }
  c.input_endpoints = endpoints;
  c.input_weights = weights;
  c.endpoints = endpoints;
  c.weights = weights;
  std::vector<std::string> keys;
  if (options.algorithm == policy::LbAlgorithm::kRingHash) {
    // Each endpoint placed by its address, so a key stays on its endpoint
    // when others come or go (a new DNS answer, a reload).
    std::vector<size_t> idx = address_order(endpoints, weights);
    for (size_t i = 0; i < idx.size(); ++i) {
      c.endpoints[i] = endpoints[idx[i]];
      c.weights[i] = weights[idx[i]];
    }
    keys.reserve(c.endpoints.size());
    for (const auto& e : c.endpoints) keys.push_back(e.to_string());
  }
  c.lb = std::make_unique<policy::LoadBalancer>(options, c.weights, nullptr, keys);
}

std::optional<engine::SocketAddress> Clusters::ring_endpoint(const std::string& name, uint64_t hash) {
  std::shared_ptr<Cluster> c = find(name);
  if (!c) return std::nullopt;
  std::lock_guard<std::mutex> lock(c->mu);
  if (!c->lb || c->lb->options().algorithm != policy::LbAlgorithm::kRingHash) return std::nullopt;
  policy::PickResult r = c->lb->pick(std::chrono::steady_clock::now(), hash);
  if (r.status != policy::PickResult::Status::kPicked) return std::nullopt;
  return c->endpoints[r.host];
}

int64_t Clusters::index_of(const Cluster& c, const engine::SocketAddress& address) {
  for (size_t i = 0; i < c.endpoints.size(); ++i) {
    if (c.endpoints[i] == address) return static_cast<int64_t>(i);
  }
  return -1;
}

std::shared_ptr<Clusters::Cluster> Clusters::find(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : it->second;
}

void Clusters::report_connect(const std::string& name, const engine::SocketAddress& address, bool ok) {
  std::shared_ptr<Cluster> c = find(name);
  if (!c) return;
  std::lock_guard<std::mutex> lock(c->mu);
  int64_t i = c->lb ? index_of(*c, address) : -1;
  if (i < 0) return;
  auto now = std::chrono::steady_clock::now();
  if (ok) c->lb->report_connect_success(static_cast<size_t>(i), now);
  else c->lb->report_local_failure(static_cast<size_t>(i), now);
}

void Clusters::report_response(const std::string& name, const engine::SocketAddress& address, uint32_t status) {
  std::shared_ptr<Cluster> c = find(name);
  if (!c) return;
  std::lock_guard<std::mutex> lock(c->mu);
  int64_t i = c->lb ? index_of(*c, address) : -1;
  if (i >= 0) c->lb->report_response(static_cast<size_t>(i), status, std::chrono::steady_clock::now());
}

}  // namespace sluice::proxy
