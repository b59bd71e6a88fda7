#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "userspace-proxy/engine/socket_address.h"
#include "userspace-proxy/engine/stream_filter.h"

namespace sluice::engine {

// TCP keep-alive on a connection's upstream socket (a DestinationRule's
// connectionPool.tcp.tcpKeepalive, Envoy's upstream_connection_options):
// SO_KEEPALIVE, and each of the three that is non-zero overrides the
// kernel's default (net.ipv4.tcp_keepalive_*).
struct TcpKeepalive {
  bool enabled = false;
  uint32_t probes = 0;      // TCP_KEEPCNT
  uint32_t time_s = 0;      // TCP_KEEPIDLE: idle seconds before the first probe
  uint32_t interval_s = 0;  // TCP_KEEPINTVL: seconds between probes
};

// What a ConnectionHandler decides about a connection that is still in its
// first-bytes phase.
class Verdict {
 public:
  enum class Kind : uint8_t {
    kNeedMore,  // keep reading downstream; ask again on more bytes or on detection timeout
    kDefer,     // wait for Connection::waker().wake() (any thread), then on_wake; timeout -> on_detection_timeout
    kClose,     // close now (optionally after writing local_response)
    kRespond,   // answer locally, drop the answered bytes, keep the connection undecided
    kConnect,   // connect to upstreams in order, then relay (already-read bytes go first)
  };
  static constexpr size_t kMaxUpstreams = 8;

  static Verdict need_more(std::chrono::milliseconds detection_timeout) {
    Verdict v(Kind::kNeedMore);
    v.detection_timeout_ = detection_timeout;
    return v;
  }
  // As above, and from now on every downstream chunk goes through `filter`
  // (downstream -> upstream) before the handler sees it: forward()/inject()
  // toward the upstream build the pending bytes the handler is shown (and
  // max_sniff_bytes counts); inject() toward the downstream is sent at once
  // (a TLS server's handshake records). The handler is asked after every
  // chunk, even one that added no pending bytes (a handshake record).
  // Bytes already read when the filter is installed (the ClientHello the
  // handler took an SNI from) are its first input, as one chunk; if that
  // yields pending bytes the handler is asked again at once.
  // kClose/kReset from the filter closes the connection (reason
  // kFilterClose): kClose first flushes what it wrote toward the downstream
  // (a TLS alert), then FIN. A downstream FIN reaches filter->on_end_stream
  // before the handler's on_downstream_eof.
  // The filter stays for the rest of the connection; a later verdict
  // carrying no filter keeps it (one carrying another filter is an error:
  // the connection is closed, kInternalError).
  static Verdict need_more(std::chrono::milliseconds detection_timeout, StreamFilterPtr filter) {
    Verdict v = need_more(detection_timeout);
    v.filter_ = std::move(filter);
    return v;
  }
  // The handler waits for something off the worker thread (a DNS answer).
  // Downstream bytes keep arriving into the pending buffer (through the
  // filter, if need_more() installed one) but are not reported; more than
  // max_sniff_bytes pending closes the connection (kSniffLimit). When some
  // thread calls Connection::waker().wake(), the worker calls
  // on_wake(conn, pending) for the next verdict; if `timeout` passes first
  // (0 = none; the idle timeout still applies), on_detection_timeout.
  // A downstream FIN read while deferred is remembered: the next verdict
  // that asks for more bytes (need_more() from on_wake or
  // on_detection_timeout) gets on_downstream_eof instead; defer() keeps it
  // remembered; connect() forwards it upstream after the pending bytes.
  // A wake issued before the handler call returning defer() has returned
  // is not lost (the worker reads wakes only between callbacks). A wake
  // meant for an earlier defer() of the same connection can end a later
  // one: on_wake checks its own state and may defer() again.
  static Verdict defer(std::chrono::milliseconds timeout) {
    Verdict v(Kind::kDefer);
    v.detection_timeout_ = timeout;
    return v;
  }
  // kDefer: a downstream FIN read while deferred ends the wait instead of
  // being remembered: on_downstream_eof is called at once (a request
  // waiting in a queue whose client went away gives its place up).
  Verdict&& ended_by_eof() && {
    ended_by_eof_ = true;
    return std::move(*this);
  }
  bool is_ended_by_eof() const { return ended_by_eof_; }
  // `response` is copied by the engine before the call returns to it. With
  // a filter installed by need_more(), the response is that filter's
  // plaintext: it goes through on_data(kUpstreamToDownstream), then
  // on_end_stream(kUpstreamToDownstream), so a TLS server filter encrypts it
  // and adds close_notify.
  static Verdict close(std::span<const uint8_t> response = {}) {
    Verdict v(Kind::kClose);
    v.response_ = response;
    return v;
  }
  // Answers a request locally and keeps the connection (an HTTP/1.1
  // keep-alive local reply: Envoy keeps the connection after answering a
  // complete request itself). `response` goes to the downstream (through
  // need_more()'s filter, as plaintext, without its end of stream), the
  // first `consumed` pending bytes (the request answered) are dropped, and
  // the connection stays undecided as after need_more(timeout): the handler
  // is asked again at once when bytes remain (a pipelined request), else on
  // the next bytes. A downstream that does not read its answers (its queue
  // beyond max_sniff_bytes) gets this one and then a close. `response` is
  // copied by the engine before the call returns to it. Empty with nothing
  // consumed (on_new_upstream after the upstream was let go): the
  // connection is undecided again, as after an answer.
  static Verdict respond(std::span<const uint8_t> response, size_t consumed,
                         std::chrono::milliseconds timeout) {
    Verdict v(Kind::kRespond);
    v.response_ = response;
    v.consumed_ = consumed;
    v.detection_timeout_ = timeout;
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

  // kConnect: a connect timeout for this connection's attempts instead of
  // EngineConfig::connect_timeout (a DestinationRule's
  // connectionPool.tcp.connectTimeout). Zero keeps the engine's.
  Verdict&& with_connect_timeout(std::chrono::milliseconds timeout) && {
    connect_timeout_ = timeout;
    return std::move(*this);
  }
  std::chrono::milliseconds connect_timeout() const { return connect_timeout_; }

  // kConnect: TCP keep-alive for the upstream socket this connection
  // opens (a pooled one keeps the settings it was opened with).
  Verdict&& with_tcp_keepalive(TcpKeepalive keepalive) && {
    keepalive_ = keepalive;
    return std::move(*this);
  }
  const TcpKeepalive& tcp_keepalive() const { return keepalive_; }

  // kConnect: the upstream may come from, and go back to, the worker's pool
  // of idle upstream connections under `key` (same key = interchangeable:
  // same endpoint, same TLS settings). A pooled one is used instead of
  // connecting (its address replaces upstreams()); at the end the upstream
  // is parked when the filter ended the downstream with kEndDownstream and
  // reports upstream_reusable().
  Verdict&& with_pool(std::string key) && {
    pool_key_ = std::move(key);
    return std::move(*this);
  }
  std::string take_pool_key() { return std::move(pool_key_); }
  // kConnect with a pool key: how long the upstream may wait idle in the
  // pool (a DestinationRule's connectionPool.http.idleTimeout); zero: the
  // engine's EngineConfig::upstream_pool_idle_timeout; kNoTimeout: until
  // its peer closes it or the pool needs the room.
  Verdict&& with_pool_idle_timeout(std::chrono::milliseconds timeout) && {
    pool_idle_timeout_ = timeout;
    return std::move(*this);
  }
  std::chrono::milliseconds pool_idle_timeout() const { return pool_idle_timeout_; }

  // No timeout at all (with_idle_timeout, with_pool_idle_timeout).
  static constexpr std::chrono::milliseconds kNoTimeout = std::chrono::milliseconds::max();
  // kConnect: this connection's idle timeout (no bytes either way) instead
  // of EngineConfig::idle_timeout, from now on (a DestinationRule's
  // connectionPool.tcp.idleTimeout); kNoTimeout: none. Negative (unset):
  // the connection keeps the one it has.
  Verdict&& with_idle_timeout(std::chrono::milliseconds timeout) && {
    idle_timeout_ = timeout;
    return std::move(*this);
  }
  std::chrono::milliseconds idle_timeout() const { return idle_timeout_; }
  // kConnect: the connection is closed this long after this verdict, busy
  // or not (CloseReason::kMaxDuration; a DestinationRule's
  // connectionPool.tcp.maxConnectionDuration, Envoy's
  // max_downstream_connection_duration, which starts once protocol
  // detection is done). Zero (unset): the connection keeps the bound it has.
  Verdict&& with_max_duration(std::chrono::milliseconds duration) && {
    max_duration_ = duration;
    return std::move(*this);
  }
  std::chrono::milliseconds max_duration() const { return max_duration_; }

  Kind kind() const { return kind_; }
  std::chrono::milliseconds detection_timeout() const { return detection_timeout_; }
  std::span<const uint8_t> response() const { return response_; }
  size_t consumed() const { return consumed_; }
  std::span<const SocketAddress> upstreams() const { return {upstreams_.data(), upstream_count_}; }
  StreamFilterPtr take_filter() { return std::move(filter_); }

 private:
  explicit Verdict(Kind k) : kind_(k) {}
  Kind kind_;
  uint8_t upstream_count_ = 0;
  bool ended_by_eof_ = false;
  std::chrono::milliseconds detection_timeout_{0};
  std::chrono::milliseconds connect_timeout_{0};
  TcpKeepalive keepalive_;
  std::chrono::milliseconds pool_idle_timeout_{0};
  std::chrono::milliseconds idle_timeout_{-1};
  std::chrono::milliseconds max_duration_{0};
  std::span<const uint8_t> response_;
  size_t consumed_ = 0;
  std::array<SocketAddress, kMaxUpstreams> upstreams_{};
  StreamFilterPtr filter_;
  std::string pool_key_;
};

}  // namespace sluice::engine
