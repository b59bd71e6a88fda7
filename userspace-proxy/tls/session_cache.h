// Client-side TLS sessions kept for resumption: a small LRU map from a key
// (upstream + SNI) to the newest resumable session (a TLS 1.3 ticket or a
// TLS 1.2 session) the server gave us. Shared by every worker that uses one
// client context, hence the mutex; it is touched twice per upstream
// handshake, never per byte.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "userspace-proxy/tls/openssl_ptr.h"

namespace sluice::tls {

class ClientSessionCache {
 public:
  explicit ClientSessionCache(size_t capacity) : capacity_(capacity) {}
  ClientSessionCache(const ClientSessionCache&) = delete;
  ClientSessionCache& operator=(const ClientSessionCache&) = delete;

  // Stores `session` under `key`, replacing an older one and evicting the
  // least recently used key beyond capacity. Sessions that cannot be resumed
  // are dropped.
  void put(const std::string& key, SslSessionPtr session);
  // A new reference to the session stored under `key`, or null (also when
  // it has expired by `now_seconds`, in which case it is removed).
  SslSessionPtr get(const std::string& key, int64_t now_seconds);
  void remove(const std::string& key);

  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  using Entry = std::pair<std::string, SslSessionPtr>;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace sluice::tls
