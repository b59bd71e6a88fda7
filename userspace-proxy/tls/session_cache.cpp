#include "userspace-proxy/tls/session_cache.h"

namespace sluice::tls {

void ClientSessionCache::put(const std::string& key, SslSessionPtr session) {
  if (capacity_ == 0 || !session || SSL_SESSION_is_resumable(session.get()) != 1) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) {
    it->second->second = std::move(session);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(key, std::move(session));
  index_.emplace(key, lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

SslSessionPtr ClientSessionCache::get(const std::string& key, int64_t now_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  SSL_SESSION* s = it->second->second.get();
  // OpenSSL would offer an expired session and fall back to a full
  // handshake; dropping it here saves the server the ticket decryption.
  const int64_t expires = static_cast<int64_t>(SSL_SESSION_get_time(s)) + SSL_SESSION_get_timeout(s);
  if (now_seconds >= expires) {
    lru_.erase(it->second);
    index_.erase(it);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  SSL_SESSION_up_ref(s);
  return SslSessionPtr(s);
}

void ClientSessionCache::remove(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

size_t ClientSessionCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

}  // namespace sluice::tls
