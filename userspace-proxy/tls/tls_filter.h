// TLS inside the engine's byte stream: a StreamFilter that terminates TLS
// from the downstream, originates TLS to the upstream, or both, with an
// optional plaintext filter (e.g. the proxy's per-request HTTP guard) in the
// middle. It works on memory BIOs only (TlsConnection); the engine keeps all
// socket I/O.
//
//   downstream ──ciphertext──▶ [server side] ─plain─▶ [inner] ─plain─▶ [client side] ──ciphertext──▶ upstream
//              ◀─ciphertext── [server side] ◀─plain─ [inner] ◀─plain─ [client side] ◀─ciphertext──
//
// Either side may be absent (plaintext on that leg). Installed three ways:
//  (a) sidecar origination: with Verdict::connect(); on_start() starts the
//      client handshake (the ClientHello goes out even with nothing held)
//      and holds the handler's plaintext (bounded) until it completes.
//  (b) gateway termination: with Verdict::need_more(timeout, filter); the
//      handler reads decrypted bytes as its pending data (the handshake
//      records go back to the downstream at once). Before its connect
//      verdict the handler may call set_upstream_tls() to originate as well;
//      on_start() then encrypts the plaintext the handler saw.
//  (c) both at once.
// Every handshake outcome goes to the on_handshake callback (with TLS 1.3 an
// upstream that rejects our client certificate does so after our side has
// finished: a failed upstream report then follows the successful one); a failed
// upstream handshake can answer the downstream with a local reply (Envoy's
// 503 "upstream connect error ... TLS error: ..."), encrypted if the
// downstream leg is TLS. No exceptions; callbacks run on the worker thread
// and must neither throw nor call back into the filter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "userspace-proxy/engine/stream_filter.h"
#include "userspace-proxy/tls/peer_identity.h"
#include "userspace-proxy/tls/tls_connection.h"
#include "userspace-proxy/tls/tls_context.h"

namespace sluice::tls {

enum class TlsSide : uint8_t {
  kDownstream,  // our server side: TLS terminated from the client
  kUpstream,    // our client side: TLS originated to the upstream
};

std::string_view to_string(TlsSide side);  // "downstream", "upstream"

struct TlsHandshakeResult {
  TlsSide side = TlsSide::kDownstream;
  bool ok = false;
  PeerIdentity peer;    // the other end's certificate SANs (empty if none)
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_128_GCM_SHA256"
  std::string sni;      // downstream: received; upstream: sent
  std::string alpn;
  bool resumed = false;
  std::string failure_reason;  // when !ok: OpenSSL's error text and why
};

using HandshakeCallback = std::function<void(const TlsHandshakeResult&)>;
// The bytes to send the downstream when the upstream handshake fails
// (empty: none, just close).
using UpstreamFailureReply = std::function<std::string(const TlsHandshakeResult&)>;

struct TlsFilterOptions {
  std::shared_ptr<const TlsServerContext> downstream_tls;  // null: plaintext downstream
  std::shared_ptr<const TlsClientContext> upstream_tls;    // null: plaintext upstream (see set_upstream_tls)
  ClientSessionParams upstream_params;
  engine::StreamFilterPtr inner;  // sees plaintext in both directions; may be null
  // Plaintext held per direction while that direction's handshake is still
  // running (the engine keeps reading meanwhile). Beyond it the connection
  // is closed: the alternative is unbounded memory per connection.
  size_t max_handshake_buffer = 256 * 1024;
  HandshakeCallback on_handshake;
  // Make the upstream TLS session at on_start rather than now: a filter that
  // adopts a pooled session (adopt_upstream) then never makes its own.
  bool defer_upstream_session = false;
  UpstreamFailureReply upstream_failure_reply;
};

// Envoy's response body (and response code details) when the upstream TLS
// handshake fails, for use in an UpstreamFailureReply: "upstream connect
// error or disconnect/reset before headers. reset reason: connection
// failure, transport failure reason: TLS error: <reason>".
std::string upstream_tls_failure_details(std::string_view reason, bool retried = false);

class TlsFilter final : public engine::StreamFilter {
 public:
  // Null with *error when a TLS connection cannot be created.
  static std::unique_ptr<TlsFilter> create(TlsFilterOptions options, std::string* error);
  ~TlsFilter() override;

  // Gateway origination, decided after the handler has read the decrypted
  // request: adds (or replaces) the client side. Only before on_start().
  bool set_upstream_tls(std::shared_ptr<const TlsClientContext> context, const ClientSessionParams& params,
                        std::string* error);
  // The plaintext filter between the sides; only before on_start(). Bytes
  // the handler has already seen reach it through its own on_start() if it
  // takes_held_bytes(), else not at all (they go upstream as they are).
  bool set_inner(engine::StreamFilterPtr inner);
  void set_upstream_failure_reply(UpstreamFailureReply reply) { options_.upstream_failure_reply = std::move(reply); }
  void set_on_handshake(HandshakeCallback cb) { options_.on_handshake = std::move(cb); }

  bool terminates() const { return down_ != nullptr; }
  bool originates() const { return up_ != nullptr || up_pending_; }
  // Null until that side's handshake finished (ok or not).
  const TlsHandshakeResult* downstream_result() const { return down_result_ ? &*down_result_ : nullptr; }
  const TlsHandshakeResult* upstream_result() const { return up_result_ ? &*up_result_ : nullptr; }
  // The SNI the downstream sent (known once its handshake is done).
  std::string_view downstream_sni() const;
  // Why the filter closed the connection (empty while it has not).
  const std::string& error() const { return error_; }

  // engine::StreamFilter
  engine::FilterStatus on_data(engine::Direction dir, std::span<const uint8_t> chunk,
                               engine::FilterOutput& out) override;
  engine::FilterStatus on_end_stream(engine::Direction dir, engine::FilterOutput& out) override;
  // The inner filter's timer (its replies are encrypted toward a TLS downstream).
  engine::FilterStatus on_timer(engine::FilterOutput& out) override;
  engine::FilterStatus on_drain(engine::FilterOutput& out) override;
  // Passed on to the inner filter at once, or, when this filter originates
  // TLS, once the upstream handshake is done (the connection is ready then).
  void on_upstream_ready(engine::FilterOutput& out) override;
  engine::FilterStatus on_connect_failed(engine::FilterOutput& out, bool timed_out) override;
  bool takes_held_bytes() const override;
  // The inner filter's (a tunnel's, through a TLS-originated proxy hop).
  bool upstream_end_held() const override { return !failed_ && options_.inner && options_.inner->upstream_end_held(); }
  engine::FilterStatus on_start(std::span<const uint8_t> held, engine::FilterOutput& out) override;
  // Pooling (origination only, plaintext downstream): the upstream session
  // is reusable when its handshake is done, nothing is buffered either way
  // and the inner filter says so; it moves with the socket to the next
  // connection's filter, which then skips its own handshake.
  bool upstream_reusable() const override;
  engine::UpstreamStatePtr release_upstream() override;
  bool adopt_upstream(engine::UpstreamStatePtr state) override;
  // FilterStatus::kNewUpstream (from the inner filter): the upstream leg
  // and the inner filter go; the inner filter's held bytes and any
  // plaintext still buffered in the downstream session become the pending
  // bytes. A terminator stays installed (set_upstream_tls/set_inner work
  // again for the next upstream); an originator is removed.
  bool on_new_upstream(engine::FilterOutput& out) override;
  // This connection's upstream session came from the pool.
  bool adopted_upstream() const { return adopted_; }

 private:
  class InnerOutput;
  using Status = engine::FilterStatus;
  using Dir = engine::Direction;

  explicit TlsFilter(TlsFilterOptions options);

  Status plain_in(Dir dir, std::span<const uint8_t> bytes, engine::FilterOutput& out, bool engine_chunk);
  Status emit(Dir dir, std::span<const uint8_t> bytes, engine::FilterOutput& out);
  Status emit_up(std::span<const uint8_t> bytes, engine::FilterOutput& out);
  Status emit_down(std::span<const uint8_t> bytes, engine::FilterOutput& out);
  Status send_down(std::span<const uint8_t> bytes, engine::FilterOutput& out);  // also while failing
  bool encrypts(Dir dir) const;
  Status flush(TlsConnection& conn, engine::FilterOutput& out);
  Status pump_down(engine::FilterOutput& out);
  Status pump_up(engine::FilterOutput& out);
  Status read_plaintext(TlsConnection& conn, engine::FilterOutput& out);
  Status start_upstream(engine::FilterOutput& out);
  Status peer_closed(TlsConnection& conn, engine::FilterOutput& out);
  Status close_upstream_tls(engine::FilterOutput& out);
  Status end_inner(Dir dir, engine::FilterOutput& out);
  Status close_notify_if_ended(Status st, engine::FilterOutput& out);
  template <typename Fn>
  Status call_inner(engine::FilterOutput& out, Fn fn);
  Status fail_downstream(std::string reason);
  // `may_retry`: on the upstream's own bytes or FIN while relaying (the inner
  // filter may then ask for another upstream instead of the failure reply).
  Status fail_upstream_handshake(std::string reason, engine::FilterOutput& out, bool may_retry = false);
  Status fail_stream(std::string reason, Status status);
  void report(TlsSide side, bool ok, const std::string& reason);

  TlsFilterOptions options_;
  std::unique_ptr<TlsConnection> down_;
  std::unique_ptr<TlsConnection> up_;
  std::string to_upstream_;    // plaintext waiting for the upstream handshake
  std::string to_downstream_;  // plaintext waiting for the downstream handshake
  std::optional<TlsHandshakeResult> down_result_;
  std::optional<TlsHandshakeResult> up_result_;
  std::string error_;
  bool started_ = false;         // on_start ran: the upstream leg is live
  bool saw_downstream_ = false;  // on_data(downstream -> upstream) ran before on_start
  bool failed_ = false;
  bool inner_ended_[2] = {false, false};
  bool ready_pending_ = false;  // connected, the upstream handshake still going
  void inner_ready(engine::FilterOutput& out);
  bool close_upstream_after_handshake_ = false;  // downstream close_notify came first
  bool close_notify_up_deferred_ = false;        // held back while the inner filter held the upstream's end
  bool upstream_spoke_ = false;                  // plaintext came from the upstream
  bool adopted_ = false;                         // up_ came from a pooled connection
  bool up_pending_ = false;                      // defer_upstream_session: up_ not made yet
  bool upstream_setup_failed_ = false;           // its handshake failed, a retry asked for
};

}  // namespace sluice::tls
