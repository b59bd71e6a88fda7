// A connection's bytes through an HTTP forward proxy: DestinationRule
// trafficPolicy.tunnel, as Envoy's tcp_proxy tunneling_config does it over
// HTTP/1.1. The upstream connection goes to the proxy (the rule's host);
// this filter first sends
//
//   CONNECT <targetHost>:<targetPort> HTTP/1.1
//   Host: <targetHost>:<targetPort>
//
// and holds what the client sends meanwhile (and its FIN). A 2xx answer
// opens the tunnel: the held bytes go, then both ways are relayed as they
// are. Any other answer, or the proxy closing first, fails the connection
// as an upstream connect failure (UF, with the proxy's status line as the
// transport failure reason); the client's connection is closed. The
// tunnel's outcome is the connection's for outlier detection, as Envoy
// reports a tunneled connect's success only at the 2xx.
//
// Used for TCP-proxied connections only (tcp[] and tls[] routes, TCP and
// TLS ports): Istio does not tunnel HTTP routes. Inside TLS origination to
// the proxy, it is the TLS filter's inner filter.
#pragma once

#include <functional>
#include <span>
#include <string>

#include "userspace-proxy/engine/stream_filter.h"

namespace sluice::proxy {

class TunnelFilter final : public engine::StreamFilter {
 public:
  // Why the tunnel failed, and whether the proxy is to blame (its answer,
  // its close) or the client (too much sent before the answer).
  using FailureFn = std::function<void(const std::string& reason, bool proxy_failed)>;
  using OpenFn = std::function<void()>;
  // Client bytes held while the tunnel is set up, at most (beyond: failed),
  // as the TLS filter bounds what it buffers.
  static constexpr size_t kMaxHeld = 256u << 10;
  // The proxy's answer head, at most.
  static constexpr size_t kMaxAnswerHead = 16u << 10;

  // `target_host` (a name or an IP address) and `target_port`: where the
  // proxy is asked to connect. `on_open` hears of the 2xx, `on_failure` why
  // a tunnel failed (either may be empty).
  TunnelFilter(const std::string& target_host, uint32_t target_port, FailureFn on_failure, OpenFn on_open = nullptr);

  // "host:port" ("[v6]:port" for an IPv6 address), as in the request line.
  static std::string authority(const std::string& target_host, uint32_t target_port);

  bool takes_held_bytes() const override { return true; }
  bool upstream_end_held() const override { return state_ == State::kAwaiting; }
  engine::FilterStatus on_start(std::span<const uint8_t> held, engine::FilterOutput& out) override;
  engine::FilterStatus on_data(engine::Direction dir, std::span<const uint8_t> chunk,
                               engine::FilterOutput& out) override;
  engine::FilterStatus on_end_stream(engine::Direction dir, engine::FilterOutput& out) override;

  bool open() const { return state_ == State::kOpen; }

 private:
  enum class State { kAwaiting, kOpen, kFailed };
  engine::FilterStatus answer(std::span<const uint8_t> chunk, engine::FilterOutput& out);
  engine::FilterStatus fail(std::string reason, bool proxy_failed = true);

  std::string authority_;
  FailureFn on_failure_;
  OpenFn on_open_;
  State state_ = State::kAwaiting;
  std::string held_;    // the client's bytes until the tunnel is open
  std::string answer_;  // the proxy's answer head so far
};

}  // namespace sluice::proxy
