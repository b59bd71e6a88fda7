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
  policy::PickResult r = c->lb->pick(now);
  out.reason = r.reason().str();
  switch (r.status) {
    case policy::PickResult::Status::kNoHealthyUpstream:
      out.no_healthy = true;
      return out;
    case policy::PickResult::Status::kOriginalDestination:
      out.original_destination = true;
      return out;
    case policy::PickResult::Status::kPicked:
      break;
  }
  size_t n = endpoints.size();
  out.order.reserve(n);
  for (size_t i = 0; i < n; ++i) out.order.push_back(endpoints[(r.host + i) % n]);
  return out;
}

void Clusters::report_connect(const std::string& name, const engine::SocketAddress& address, bool ok) {
  std::shared_ptr<Cluster> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = clusters_.find(name);
    if (it == clusters_.end()) return;
    c = it->second;
  }
  std::lock_guard<std::mutex> lock(c->mu);
  if (!c->lb) return;
  for (size_t i = 0; i < c->endpoints.size(); ++i) {
    if (!(c->endpoints[i] == address)) continue;
    auto now = std::chrono::steady_clock::now();
    if (ok) c->lb->report_connect_success(i, now);
    else c->lb->report_local_failure(i, now);
    return;
  }
}

}  // namespace sluice::proxy
