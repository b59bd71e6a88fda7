// Asynchronous name resolution for ServiceEntry `resolution: DNS`, on c-ares
// (honours /etc/hosts first, then the resolv.conf servers) with a cache whose
// entries live for the answer's TTL, clamped to [min_ttl, max_ttl]. Failures
// are cached for negative_ttl so a dead name does not cost a query per
// connection.
//
// One resolver thread owns the c-ares channel. Workers read the cache without
// blocking (lookup_cached) and, on a miss, call resolve(); concurrent requests
// for one name share a single query. Callbacks run on the resolver thread: the
// caller hands the answer back to its own worker (the engine's post()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/decision/ip_address.h"

namespace sluice::proxy {

struct DnsAnswer {
  std::vector<decision::IpAddress> addresses;  // IPv4 first, then IPv6
  std::string error;                           // empty on success
  std::chrono::steady_clock::time_point expires;
  bool ok() const { return error.empty() && !addresses.empty(); }
};

struct DnsResolverOptions {
  std::chrono::seconds min_ttl{5};
  std::chrono::seconds max_ttl{300};
  std::chrono::seconds negative_ttl{5};
  std::chrono::milliseconds query_timeout{2000};
  int tries = 2;
  // c-ares lookup order: "fb" = /etc/hosts, then DNS; "f" = /etc/hosts only.
  std::string lookups = "fb";
  // Comma-separated servers ("127.0.0.1:5353,[::1]:53"); empty = resolv.conf.
  std::string servers;
};

class DnsResolver {
 public:
  using Callback = std::function<void(const DnsAnswer&)>;

  // nullptr and *error set when c-ares cannot be initialised.
  static std::unique_ptr<DnsResolver> create(const DnsResolverOptions& options, std::string* error);
  virtual ~DnsResolver() = default;

  // A fresh cached answer (positive or negative) for `name`, without blocking.
  virtual bool lookup_cached(const std::string& name, DnsAnswer* out) const = 0;
  // Resolves `name` (or serves it from the cache) and calls `done` on the
  // resolver thread. Never calls `done` inline on the caller's thread.
  virtual void resolve(const std::string& name, Callback done) = 0;
  // Number of c-ares queries started (cache misses), for stats and tests.
  virtual uint64_t queries_started() const = 0;
};

}  // namespace sluice::proxy
