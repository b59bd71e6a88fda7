#include "userspace-proxy/proxy/clusters.h"

namespace sluice::proxy {

std::shared_ptr<Clusters::Cluster> Clusters::get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = clusters_[name];
  if (!slot) slot = std::make_shared<Cluster>();
  return slot;
}

Clusters::Choice Clusters::pick(const std::string& name, const policy::EffectivePolicy& policy,
                                const std::vector<engine::SocketAddress>& endpoints,
                                const std::vector<uint32_t>& weights) {
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
  if (!c->lb || c->endpoints != endpoints || c->weights != weights || c->algorithm != options.algorithm) {
    c->endpoints = endpoints;
    c->weights = weights;
    c->algorithm = options.algorithm;
    c->lb = std::make_unique<policy::LoadBalancer>(options, weights);
  }
  int32_t max = policy.connection_pool && policy.connection_pool->tcp ? policy.connection_pool->tcp->max_connections : 0;
  if (max > 0 && c->active >= max) {
    out.overflow = true;
    out.reason = "maxConnections " + std::to_string(max) + " reached";
    return out;
  }
  policy::PickResult r = c->lb->pick(now);
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
  ++c->active;
  out.lease = std::shared_ptr<void>(nullptr, [c](void*) {
    std::lock_guard<std::mutex> l(c->mu);
    --c->active;
  });
  size_t n = endpoints.size();
  out.order.reserve(n);
  for (size_t i = 0; i < n; ++i) out.order.push_back(endpoints[(r.host + i) % n]);
  return out;
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
