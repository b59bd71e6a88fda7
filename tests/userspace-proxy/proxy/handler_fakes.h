// Fakes for driving a ConnectionHandler (sidecar or gateway role) without
// sockets: a Connection, a DNS resolver with fixed answers, and a
// FilterOutput that records what a filter forwards and injects.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "userspace-proxy/engine/connection_handler.h"
#include "userspace-proxy/engine/stream_filter.h"
#include "userspace-proxy/proxy/dns_resolver.h"

namespace sluice::proxy::test_fakes {

inline std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string text(std::span<const uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

class FakeConnection final : public engine::Connection {
 public:
  uint64_t id() const override { return 1; }
  uint32_t worker() const override { return 0; }
  int downstream_fd() const override { return -1; }
  uint64_t context() const override { return ctx_; }
  void set_context(uint64_t v) override { ctx_ = v; }
  engine::Waker waker() override { return {}; }
  void spawn(int fd, uint64_t tag) override { spawned.emplace_back(fd, tag); }
  bool draining() const override { return drain; }
  std::vector<std::pair<int, uint64_t>> spawned;  // the test closes them
  bool drain = false;  // what draining() says

 private:
  uint64_t ctx_ = 0;
};

class FakeDns final : public DnsResolver {
 public:
  bool lookup_cached(const std::string& name, DnsAnswer* out) const override {
    auto it = answers_.find(name);
    if (it == answers_.end()) return false;
    *out = it->second;
    return true;
  }
  void resolve(const std::string& name, Callback) override { asked.push_back(name); }
  uint64_t queries_started() const override { return asked.size(); }
  void answer(const std::string& name, const std::string& ip) {
    answers_[name].addresses.push_back(*decision::IpAddress::parse(ip));
  }
  void expire(const std::string& name) { answers_.erase(name); }  // the cached answer's TTL ran out
  std::vector<std::string> asked;

 private:
  std::map<std::string, DnsAnswer> answers_;
};

class FakeOutput final : public engine::FilterOutput {
 public:
  explicit FakeOutput(std::string_view chunk) : chunk_(chunk) {}
  int forward(size_t n) override {
    upstream += std::string(chunk_.substr(pos_, n));
    all += std::string(chunk_.substr(pos_, n));
    pos_ += n;
    return 0;
  }
  void skip(size_t n) override { pos_ += n; }
  int inject(engine::Direction dir, std::span<const uint8_t> b) override {
    (dir == engine::Direction::kDownstreamToUpstream ? upstream : downstream)
        .append(reinterpret_cast<const char*>(b.data()), b.size());
    all.append(reinterpret_cast<const char*>(b.data()), b.size());
    return 0;
  }
  void set_timer(std::chrono::milliseconds after) override { timer = after; }
  // forward() lands in `upstream` whatever the chunk's direction; `all`:
  // every byte output, in order.
  std::string upstream, downstream, all;
  std::optional<std::chrono::milliseconds> timer;  // the last set_timer

 private:
  std::string_view chunk_;
  size_t pos_ = 0;
};

}  // namespace sluice::proxy::test_fakes
