#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <climits>
#include <memory>
#include <span>

namespace sluice::engine {

enum class Direction : uint8_t {
  kDownstreamToUpstream = 0,
  kUpstreamToDownstream = 1,
};

// Where a StreamFilter puts its output. Output is emitted in call order, so a
// filter can edit a stream: forward(10); inject("X-Header: v\r\n"); forward(rest).
class FilterOutput {
 public:
  virtual ~FilterOutput() = default;
  // Passes the next `n` not-yet-consumed bytes of the current chunk through
  // unchanged. A forward() that starts at the beginning of the chunk is
  // zero-copy; later ones are copied. Returns 0 or -EINVAL/-ENOBUFS.
  virtual int forward(size_t n) = 0;
  // Drops the next `n` bytes of the current chunk.
  virtual void skip(size_t n) = 0;
  // Copies bytes into the output of direction `dir` (the filter's own
  // direction or the opposite one: TLS writes handshake records back to the
  // sender). Returns 0, or -ENOBUFS when the worker's local buffer pool is
  // exhausted (the filter should then close).
  virtual int inject(Direction dir, std::span<const uint8_t> bytes) = 0;
  // One timer per connection for the filter (an HTTP route timeout): after
  // `after`, StreamFilter::on_timer is called. A later call replaces the
  // earlier one; zero or less cancels it. It runs while the upstream is
  // being connected too (attempts and the waits between them): on_timer
  // then answering kClose (or kEndDownstream, kNewUpstream) gives up the
  // connect, and what it injected toward the downstream is sent before the
  // FIN; kReset resets the client instead.
  virtual void set_timer(std::chrono::milliseconds after) { (void)after; }
};

enum class FilterStatus : uint8_t {
  kContinue,  // keep relaying
  // The downstream is done (an HTTP response to "Connection: close" was
  // relayed, the client closed between requests, the worker drains): flush
  // what was output toward it, FIN it, stop reading both sides. The
  // upstream gets no FIN: with a pool key (Verdict::with_pool) and
  // upstream_reusable() it is parked for another connection, otherwise (no
  // pool key included) closed; the client gets the graceful end either way.
  // Before the connection relays it is kClose.
  kEndDownstream,
  // The next bytes toward the upstream need another decision (an HTTP
  // request for another upstream, a request to retry elsewhere). The filter
  // answers so only when everything the downstream is owed from the current
  // upstream has been output, and keeps the bytes not yet sent upstream.
  // The engine stops reading the upstream, waits for its in-flight
  // operations, parks it (pool key and upstream_reusable()) or closes it,
  // then calls on_new_upstream(out): the filter's injects toward the
  // upstream become the connection's pending bytes, and the handler's
  // ConnectionHandler::on_new_upstream decides again as for a new
  // connection (connect, defer, close, or an empty respond(): the upstream
  // was only let go, the connection waits undecided for its next request).
  // Downstream bytes read meanwhile
  // still go through on_data (the filter holds them too). Only while
  // relaying; elsewhere it is kClose.
  kNewUpstream,
  kClose,     // flush what was output, then close both sides gracefully
  kReset,     // abort both sides with RST now
};

// What a filter needs to carry on an upstream leg for another connection (a
// TLS session over a pooled connection). Opaque to the engine.
class UpstreamState {
 public:
  virtual ~UpstreamState() = default;
  // The monotonic time after which the pooled connection may carry no
  // further request (the pool closes it then); INT64_MAX: none.
  virtual int64_t expires_ns() const { return INT64_MAX; }
};
using UpstreamStatePtr = std::unique_ptr<UpstreamState>;

// L7 mode: a per-connection object that sees every chunk read from either
// side before it is queued for the other. Bytes of the chunk neither forwarded
// nor skipped when on_data returns are dropped (a filter that needs to buffer
// keeps its own copy, as an OpenSSL memory BIO does). Without a filter the
// engine relays opaquely; the only cost of this hook is one null check per
// chunk.
class StreamFilter {
 public:
  virtual ~StreamFilter() = default;
  virtual FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) = 0;
  // The reading side of `dir` sent FIN. Output may still be injected.
  virtual FilterStatus on_end_stream(Direction /*dir*/, FilterOutput& /*out*/) {
    return FilterStatus::kContinue;
  }
  // The timer set through FilterOutput::set_timer expired. `out` has no
  // chunk: inject() only (a local reply toward the downstream).
  virtual FilterStatus on_timer(FilterOutput& /*out*/) { return FilterStatus::kContinue; }
  // The worker is draining (the proxy stops): told once per filter, as the
  // drain begins or, for a connection decided during it, when it starts
  // relaying. An HTTP filter ends a connection idle between requests
  // (kEndDownstream) and tells the client of one under way, in its next
  // response, that it closes ("connection: close"), as Envoy's drain does;
  // a byte stream goes on until it ends or the drain deadline. `out` has no
  // chunk.
  virtual FilterStatus on_drain(FilterOutput& /*out*/) { return FilterStatus::kContinue; }
  // Every upstream address failed (refused, unreachable, or `timed_out`):
  // the connection closes. `out` has no chunk: what the filter injects
  // toward the downstream (Envoy's 503 for an HTTP request) is sent first.
  virtual FilterStatus on_connect_failed(FilterOutput& /*out*/, bool /*timed_out*/) { return FilterStatus::kClose; }
  // A filter around this one (TLS origination) could not set up the upstream
  // connection on the socket (its handshake failed): kNewUpstream retries on
  // another connection (the filter has output nothing toward the upstream
  // that counts); anything else lets the outer filter answer the failure.
  virtual FilterStatus on_upstream_setup_failed(FilterOutput& /*out*/) { return FilterStatus::kContinue; }
  // A new upstream connection is ready for requests: its connect completed
  // (a filter that originates TLS passes it on to an inner one once the
  // handshake is done too). Not called for a pooled upstream, ready at
  // once. `out` has no chunk: set_timer (Envoy's per-try timer starts at
  // "pool ready" when that comes after the request's end).
  virtual void on_upstream_ready(FilterOutput& /*out*/) {}

  // Held bytes: what is queued toward the upstream when the connect verdict
  // is applied — the sniffed bytes the handler decided on or, for a filter
  // installed by Verdict::need_more(timeout, filter), this filter's own
  // downstream->upstream output so far (e.g. decrypted plaintext).
  //
  // A filter that returns false (the default) leaves them alone: the engine
  // sends them as they are (zero-copy), ahead of later filtered bytes.
  // A filter that returns true gets on_start(held, out) once, when the
  // connect verdict is applied and before the connect is issued; its output
  // (forward/skip over `held`, inject in either direction) replaces the held
  // bytes, in order, ahead of anything read later. TLS origination encrypts
  // them there (and starts its handshake even when `held` is empty). A
  // downstream FIN read before the decision reaches on_end_stream after
  // on_start. kClose/kReset from on_start closes before any connect
  // (kFilterClose; kClose flushes what it wrote toward the downstream).
  virtual bool takes_held_bytes() const { return false; }

  // The filter still holds bytes the upstream is to get (a tunnel waiting
  // for its proxy's answer): the client's FIN is not passed on to the
  // upstream until this turns false. The engine asks again after each
  // chunk the upstream sends; a kClose from the filter ends the hold.
  virtual bool upstream_end_held() const { return false; }

  // Upstream connection pooling (Verdict::with_pool). When a connection
  // with a pool key ends after kEndDownstream, the engine asks whether the
  // upstream sits at a message boundary with nothing in flight; if so it
  // takes release_upstream()'s state with the socket into the worker's
  // pool. A later connect verdict with the same key gets the socket, and
  // its filter adopt_upstream(state) before on_start (false: refused, the
  // socket is closed and a new connection made).
  virtual bool upstream_reusable() const { return false; }
  virtual UpstreamStatePtr release_upstream() { return nullptr; }
  virtual bool adopt_upstream(UpstreamStatePtr state) { return state == nullptr; }
  virtual FilterStatus on_start(std::span<const uint8_t> /*held*/, FilterOutput& /*out*/) {
    return FilterStatus::kContinue;
  }

  // After kNewUpstream, once the old upstream is parked (release_upstream()
  // came first) or closed: inject toward the upstream the downstream bytes
  // held for the next decision (as the handler is to see them: plaintext),
  // drop every upstream-side state. Return true to stay installed (a TLS
  // terminator: the downstream session goes on and later downstream bytes
  // go through it as after Verdict::need_more(timeout, filter); the next
  // connect verdict must then carry no filter), false to be destroyed (the
  // next verdict may bring another). The default holds nothing and leaves.
  virtual bool on_new_upstream(FilterOutput& /*out*/) { return false; }
};

using StreamFilterPtr = std::unique_ptr<StreamFilter>;

}  // namespace sluice::engine
