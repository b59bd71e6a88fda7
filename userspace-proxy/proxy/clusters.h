// Upstream clusters of a running proxy: one load balancer (and outlier
// detector) per Envoy cluster name, shared by all workers, so that
// ROUND_ROBIN alternates across the whole process as users expect of one
// Envoy cluster, whichever worker a connection landed on.
//
// The endpoint list of a cluster comes from the connection's plan (static
// addresses or the DNS cache); when it changes (a new DNS answer, a config
// reload) the balancer is rebuilt for the new list.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/policy/destination.h"
#include "core/policy/load_balancer.h"
#include "userspace-proxy/engine/socket_address.h"
#include "userspace-proxy/proxy/circuit_breaker.h"

namespace sluice::proxy {

class Clusters {
 public:
  struct Choice {
    // The chosen endpoint first, then the others in balancer order: the
    // engine tries them in turn on connect failure (Envoy's default retry
    // on connect-failure, to another host).
    std::vector<engine::SocketAddress> order;
    bool no_healthy = false;   // 503 UH
    bool original_destination = false;  // PASSTHROUGH load balancing
    std::string reason;                 // why not (no_healthy)
  };

  // The cluster's circuit breaker on connections (maxConnections and its
  // queue): admit() before pick().
  std::shared_ptr<CircuitBreaker> breaker(const std::string& cluster);

  // `hash`: the request's consistentHash key (ForwardPlan::hash_key).
  // `generation`: the config snapshot the caller decided under; an older
  // one than the balancer's was built from uses that balancer's options.
  Choice pick(const std::string& cluster, const policy::EffectivePolicy& policy,
              const std::vector<engine::SocketAddress>& endpoints, const std::vector<uint32_t>& weights,
              std::optional<uint64_t> hash = std::nullopt, uint64_t generation = 0);

  // RING_HASH: the endpoint `hash` goes to now, as the cluster's last pick
  // saw its endpoints (nullopt: not a ring, or no pick yet). Takes no lease.
  std::optional<engine::SocketAddress> ring_endpoint(const std::string& cluster, uint64_t hash);

  // Outcomes, for outlier detection (no-op for unknown clusters/addresses).
  void report_connect(const std::string& cluster, const engine::SocketAddress& address, bool ok);
  void report_response(const std::string& cluster, const engine::SocketAddress& address, uint32_t status);

 private:
  struct Cluster {
    std::mutex mu;
    std::vector<engine::SocketAddress> endpoints;
    std::vector<uint32_t> weights;
    uint64_t generation = 0;  // the newest config snapshot a pick came from
    // RING_HASH keeps `endpoints` in address order; what the last pick
    // passed in, in its own order (a quick check before sorting).
    std::vector<engine::SocketAddress> input_endpoints;
    std::vector<uint32_t> input_weights;
    std::unique_ptr<policy::LoadBalancer> lb;
    std::shared_ptr<CircuitBreaker> breaker = std::make_shared<CircuitBreaker>();
  };
  // Whether c.lb still fits (under c.mu).
  static bool balancer_current(const Cluster& c, const policy::LoadBalancer::Options& options,
                               const std::vector<engine::SocketAddress>& endpoints,
                               const std::vector<uint32_t>& weights);
  // Builds c.lb anew when the endpoints, weights or algorithm changed
  // (under c.mu).
  static void update_balancer(Cluster& c, const policy::LoadBalancer::Options& options,
                              const std::vector<engine::SocketAddress>& endpoints,
                              const std::vector<uint32_t>& weights);
  // The balancer index of `address` in `c`, or -1.
  static int64_t index_of(const Cluster& c, const engine::SocketAddress& address);
  std::shared_ptr<Cluster> get(const std::string& name);   // creates it
  std::shared_ptr<Cluster> find(const std::string& name);  // null if unknown

  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Cluster>> clusters_;
};

}  // namespace sluice::proxy
