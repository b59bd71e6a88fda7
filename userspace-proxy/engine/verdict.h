#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <utility>

#include "userspace-proxy/engine/socket_address.h"
#include "userspace-proxy/engine/stream_filter.h"

namespace sluice::engine {

// What a ConnectionHandler decides about a connection that is still in its
// first-bytes phase.
class Verdict {
 public:
  enum class Kind : uint8_t {
    kNeedMore,  // keep reading downstream; ask again on more bytes or on detection timeout
    kClose,     // close now (optionally after writing local_response)
    kConnect,   // connect to upstreams in order, then relay (already-read bytes go first)
  };
  static constexpr size_t kMaxUpstreams = 8;

  static Verdict need_more(std::chrono::milliseconds detection_timeout) {
    Verdict v(Kind::kNeedMore);
    v.detection_timeout_ = detection_timeout;
    return v;
  }
  // `response` is copied by the engine before the call returns to it.
  static Verdict close(std::span<const uint8_t> response = {}) {
    Verdict v(Kind::kClose);
    v.response_ = response;
    return v;
  }
  // Up to kMaxUpstreams addresses, tried in order on connect failure/timeout.
  static Verdict connect(std::span<const SocketAddress> upstreams, StreamFilterPtr filter = nullptr) {
    Verdict v(Kind::kConnect);
    for (const auto& a : upstreams) {
      if (v.upstream_count_ == kMaxUpstreams) break;
      v.upstreams_[v.upstream_count_++] = a;
    }
    v.filter_ = std::move(filter);
    return v;
  }
  static Verdict connect(const SocketAddress& upstream, StreamFilterPtr filter = nullptr) {
    return connect(std::span<const SocketAddress>(&upstream, 1), std::move(filter));
  }

  Kind kind() const { return kind_; }
  std::chrono::milliseconds detection_timeout() const { return detection_timeout_; }
  std::span<const uint8_t> response() const { return response_; }
  std::span<const SocketAddress> upstreams() const { return {upstreams_.data(), upstream_count_}; }
  StreamFilterPtr take_filter() { return std::move(filter_); }

 private:
  explicit Verdict(Kind k) : kind_(k) {}
  Kind kind_;
  uint8_t upstream_count_ = 0;
  std::chrono::milliseconds detection_timeout_{0};
  std::span<const uint8_t> response_;
  std::array<SocketAddress, kMaxUpstreams> upstreams_{};
  StreamFilterPtr filter_;
};

}  // namespace sluice::engine
