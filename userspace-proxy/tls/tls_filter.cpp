#include "userspace-proxy/tls/tls_filter.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

namespace sluice::tls {

using engine::Direction;
using engine::FilterOutput;
using engine::FilterStatus;

namespace {

// One TLS record's worth of plaintext. Per worker thread, not per
// connection: a read is handed on (to the inner filter, or re-encrypted, or
// copied into the engine's buffers) before the next one.
thread_local std::array<uint8_t, 16 * 1024> t_plaintext;

FilterStatus worse(FilterStatus a, FilterStatus b) {
  auto rank = [](FilterStatus s) {
    switch (s) {
      case FilterStatus::kContinue: return 0;
      case FilterStatus::kNewUpstream: return 1;
      case FilterStatus::kEndDownstream: return 2;
      case FilterStatus::kClose: return 3;
      case FilterStatus::kReset: return 4;
    }
    return 4;
  };
  return rank(a) >= rank(b) ? a : b;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

std::string_view to_string(TlsSide side) { return side == TlsSide::kDownstream ? "downstream" : "upstream"; }

std::string upstream_tls_failure_details(std::string_view reason, bool retried) {
  std::string s = std::string("upstream connect error or disconnect/reset before headers. ") +
                  (retried ? "retried and the latest reset reason: " : "reset reason: ") +
                  "connection failure, transport failure reason: TLS error: ";
  s += reason;
  return s;
}

// What the inner filter writes to. Its forward()s and inject()s become
// plaintext for the side they head to (encrypted there if that side is TLS);
// over a chunk the engine gave us unchanged, toward a plaintext side,
// forward() stays the engine's zero-copy forward.
//
// Plaintext toward a TLS side is gathered over the inner filter's call and
// encrypted when the call ends (finish()), up to a record's worth: a
// response head and its body written one after the other go as one TLS
// record, as HAProxy and Envoy send them, not one record each (an
// SSL_write, a record header and tag, and a read at the peer saved per
// response). The order of everything the filter writes is kept: pieces are
// only joined with the ones right before them, toward the same side.
class TlsFilter::InnerOutput final : public FilterOutput {
 public:
  InnerOutput(TlsFilter* filter, FilterOutput* out, Direction dir, std::span<const uint8_t> bytes, bool engine_chunk)
      : filter_(filter), out_(out), dir_(dir), bytes_(bytes), passthrough_(engine_chunk && !filter->encrypts(dir)) {}
  InnerOutput(const InnerOutput&) = delete;
  InnerOutput& operator=(const InnerOutput&) = delete;
  ~InnerOutput() override { flush(); }

  int forward(size_t n) override {
    if (n > bytes_.size() - pos_) return -EINVAL;
    const std::span<const uint8_t> piece = bytes_.subspan(pos_, n);
    pos_ += n;
    if (passthrough_) {
      const int rc = out_->forward(n);
      if (rc != 0) status_ = FilterStatus::kReset;
      return rc;
    }
    // The chunk outlives the call: the piece need not be copied until
    // another joins it.
    return gather(dir_, piece, /*lasts=*/true);
  }
  void skip(size_t n) override {
    n = std::min(n, bytes_.size() - pos_);
    pos_ += n;
    if (passthrough_) out_->skip(n);
  }
  int inject(Direction dir, std::span<const uint8_t> bytes) override { return gather(dir, bytes, /*lasts=*/false); }
  void set_timer(std::chrono::milliseconds after) override { out_->set_timer(after); }

  // Encrypts what was gathered; then the worst outcome of the output calls:
  // a failed encryption or an overflowing handshake buffer closes the
  // connection whatever the inner filter returns.
  FilterStatus finish() {
    flush();
    return status_;
  }

 private:
  // A TLS record's largest plaintext (SSL3_RT_MAX_PLAIN_LENGTH).
  static constexpr size_t kRecordPlaintext = 16 * 1024;

  // Whether the output failed so far. A gathered piece's own failure shows
  // at finish() (the inner filter's later output calls then say -ENOBUFS;
  // finish()'s kReset resets the connection whatever it returns).
  int failed_so_far() const { return status_ == FilterStatus::kReset ? -ENOBUFS : 0; }

  int gather(Direction dir, std::span<const uint8_t> piece, bool lasts) {
    // Toward a plaintext side the engine queues the bytes itself; an empty
    // piece still reports a failed filter; the scratch buffer is one per
    // thread (a nested output, which there is not, would write at once).
    if (piece.empty() || !filter_->encrypts(dir) || (gathering_ == nullptr && t_gather_busy)) {
      flush();
      return record(filter_->emit(dir, piece, *out_));
    }
    if (has_pending_ && dir != pending_dir_) flush();
    // The next piece of the same chunk, right after the pending one (a
    // chunked body's pieces): still one view, no copy (OpenSSL cuts it in
    // full records).
    if (has_pending_ && lasts && !view_.empty() && view_.data() + view_.size() == piece.data()) {
      view_ = std::span<const uint8_t>(view_.data(), view_.size() + piece.size());
      return failed_so_far();
    }
    if (has_pending_ && pending_size() >= kRecordPlaintext) flush();
    if (has_pending_ && pending_size() + piece.size() > kRecordPlaintext) {
      // The pending record filled up with the piece's start; the rest
      // starts the next one.
      const size_t room = kRecordPlaintext - pending_size();
      append(piece.first(room));
      flush();
      piece = piece.subspan(room);
    }
    if (!has_pending_) {
      // Alone, an injected record's worth or more goes at once (nothing
      // could join it in front; copying it would only cost).
      if (!lasts && piece.size() >= kRecordPlaintext) return record(filter_->emit(dir, piece, *out_));
      has_pending_ = true;
      pending_dir_ = dir;
      if (lasts) {
        view_ = piece;
        return failed_so_far();
      }
    }
    // The copy holds at most a record's plaintext.
    append(piece);
    return failed_so_far();
  }

  // Adds to the pending record's copy (the lone view moves into it first).
  void append(std::span<const uint8_t> piece) {
    if (gathering_ == nullptr) {
      gathering_ = &t_gather;
      t_gather_busy = true;
      gathering_->clear();
    }
    if (!view_.empty()) {
      gathering_->append(reinterpret_cast<const char*>(view_.data()), view_.size());
      view_ = {};
    }
    gathering_->append(reinterpret_cast<const char*>(piece.data()), piece.size());
  }

  size_t pending_size() const { return view_.empty() && gathering_ ? gathering_->size() : view_.size(); }

  void flush() {
    if (!has_pending_) return;
    has_pending_ = false;
    if (!view_.empty()) {
      const std::span<const uint8_t> piece = std::exchange(view_, {});
      record(filter_->emit(pending_dir_, piece, *out_));
      return;
    }
    if (gathering_ != nullptr) {
      record(filter_->emit(pending_dir_, bytes_of(*gathering_), *out_));
      gathering_->clear();
      gathering_ = nullptr;
      t_gather_busy = false;
    }
  }

  int record(FilterStatus st) {
    status_ = worse(status_, st);
    // kClose: the connection is ending gracefully (a local reply may be on
    // its way); the inner filter's further output is dropped, and it must
    // not turn that into a reset. kReset: the contract's "cannot output".
    return st == FilterStatus::kReset ? -ENOBUFS : 0;
  }

  static thread_local std::string t_gather;
  static thread_local bool t_gather_busy;

  TlsFilter* filter_;
  FilterOutput* out_;
  Direction dir_;
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  bool passthrough_;
  FilterStatus status_ = FilterStatus::kContinue;
  bool has_pending_ = false;
  Direction pending_dir_ = Direction::kDownstreamToUpstream;
  std::span<const uint8_t> view_;   // the pending piece while it is alone and lasts
  std::string* gathering_ = nullptr;  // the pending pieces, copied
};

thread_local std::string TlsFilter::InnerOutput::t_gather;
thread_local bool TlsFilter::InnerOutput::t_gather_busy = false;

TlsFilter::TlsFilter(TlsFilterOptions options) : options_(std::move(options)) {}

TlsFilter::~TlsFilter() = default;

std::unique_ptr<TlsFilter> TlsFilter::create(TlsFilterOptions options, std::string* error) {
  std::unique_ptr<TlsFilter> f(new TlsFilter(std::move(options)));
  if (f->options_.downstream_tls) {
    f->down_ = TlsConnection::server(f->options_.downstream_tls, error);
    if (!f->down_) return nullptr;
  }
  if (f->options_.upstream_tls && f->options_.defer_upstream_session) {
    f->up_pending_ = true;  // made in on_start, unless a pooled session is adopted first
  } else if (f->options_.upstream_tls) {
    f->up_ = TlsConnection::client(f->options_.upstream_tls, f->options_.upstream_params, error);
    if (!f->up_) return nullptr;
  }
  return f;
}

bool TlsFilter::set_upstream_tls(std::shared_ptr<const TlsClientContext> context, const ClientSessionParams& params,
                                 std::string* error) {
  if (started_) {
    *error = "the upstream TLS settings cannot change after the connection started";
    return false;
  }
  std::unique_ptr<TlsConnection> up = TlsConnection::client(context, params, error);
  if (!up) return false;
  options_.upstream_tls = std::move(context);
  options_.upstream_params = params;
  up_ = std::move(up);
  return true;
}

bool TlsFilter::set_inner(engine::StreamFilterPtr inner) {
  if (started_) return false;
  options_.inner = std::move(inner);
  return true;
}

namespace {

// A pooled upstream's TLS session, between two downstream connections.
// (and the inner filter's own upstream state, e.g. its request count).
class TlsUpstreamState final : public engine::UpstreamState {
 public:
  TlsUpstreamState(std::unique_ptr<TlsConnection> conn, engine::UpstreamStatePtr inner)
      : conn(std::move(conn)), inner(std::move(inner)) {}
  int64_t expires_ns() const override { return inner ? inner->expires_ns() : INT64_MAX; }
  std::unique_ptr<TlsConnection> conn;
  engine::UpstreamStatePtr inner;
};

}  // namespace

bool TlsFilter::upstream_reusable() const {
  if (!started_ || failed_ || upstream_setup_failed_ || down_ != nullptr || !options_.inner || !options_.inner->upstream_reusable()) return false;
  if (up_ == nullptr) return true;
  return up_->state() == HandshakeState::kDone && to_upstream_.empty() && !up_->close_notify_sent() &&
         !up_->close_notify_received() && up_->buffered_input() == 0 && up_->output().empty();
}

engine::UpstreamStatePtr TlsFilter::release_upstream() {
  engine::UpstreamStatePtr inner = options_.inner ? options_.inner->release_upstream() : nullptr;
  if (up_ == nullptr) return inner;
  return std::make_unique<TlsUpstreamState>(std::move(up_), std::move(inner));
}

bool TlsFilter::adopt_upstream(engine::UpstreamStatePtr state) {
  if (started_) return false;
  if (!originates()) {
    // A plaintext upstream: whatever state there is belongs to the inner filter.
    if (options_.inner) return options_.inner->adopt_upstream(std::move(state));
    return state == nullptr;
  }
  auto* tls = dynamic_cast<TlsUpstreamState*>(state.get());
  if (tls == nullptr || !tls->conn || tls->conn->state() != HandshakeState::kDone) return false;
  if (options_.inner && !options_.inner->adopt_upstream(std::move(tls->inner))) return false;
  up_ = std::move(tls->conn);
  up_pending_ = false;
  adopted_ = true;
  upstream_spoke_ = true;  // its errors are stream errors, not a failed handshake
  return true;
}

bool TlsFilter::on_new_upstream(FilterOutput& out) {
  // The upstream leg went with the old socket (its session parked through
  // release_upstream, or closed): nothing encrypts toward the upstream now,
  // so what the inner filter held comes out as plaintext, the pending bytes
  // of the next decision.
  up_.reset();
  up_pending_ = false;
  ready_pending_ = false;
  upstream_setup_failed_ = false;
  started_ = false;
  adopted_ = false;
  upstream_spoke_ = false;
  close_upstream_after_handshake_ = false;
  to_upstream_.clear();
  up_result_.reset();
  options_.upstream_tls.reset();
  options_.upstream_failure_reply = nullptr;
  if (options_.inner) {
    InnerOutput io(this, &out, Direction::kDownstreamToUpstream, {}, /*engine_chunk=*/false);
    options_.inner->on_new_upstream(io);
    io.finish();
  }
  options_.inner.reset();
  inner_ended_[0] = inner_ended_[1] = false;
  if (down_ == nullptr) return false;  // origination only: the next verdict brings its own filter
  // A terminator stays (the downstream session goes on). Records decrypted
  // by OpenSSL but not read yet (the inner filter stopped the read loop
  // when it asked for the new upstream) join the pending bytes.
  if (!failed_ && down_->state() == HandshakeState::kDone) read_plaintext(*down_, out);
  return true;
}

std::string_view TlsFilter::downstream_sni() const { return down_ ? down_->sni() : std::string_view(); }

bool TlsFilter::takes_held_bytes() const {
  return originates() || down_ != nullptr || (options_.inner && options_.inner->takes_held_bytes());
}

bool TlsFilter::encrypts(Direction dir) const {
  return dir == Direction::kDownstreamToUpstream ? (up_ != nullptr && started_) : down_ != nullptr;
}

// ---------------------------------------------------------------- entry points

FilterStatus TlsFilter::on_start(std::span<const uint8_t> held, FilterOutput& out) {
  if (started_) return FilterStatus::kContinue;
  started_ = true;
  if (up_pending_) {
    up_pending_ = false;
    std::string error;
    up_ = TlsConnection::client(options_.upstream_tls, options_.upstream_params, &error);
    if (!up_) {
      out.skip(held.size());
      return fail_upstream_handshake(error, out);
    }
  }
  // An adopted upstream session is past its handshake: nothing to start.
  FilterStatus st = adopted_ ? FilterStatus::kContinue : start_upstream(out);
  if (st != FilterStatus::kContinue) {
    out.skip(held.size());
    return st;
  }
  if (down_ != nullptr && !saw_downstream_) {
    // Installed with the connect verdict: `held` is what the downstream sent
    // so far, i.e. the start of its TLS handshake.
    saw_downstream_ = true;
    out.skip(held.size());
    if (!down_->feed(held)) return fail_stream("out of memory buffering TLS input", FilterStatus::kReset);
    return pump_down(out);
  }
  // `held` is plaintext the handler has seen and decided on.
  if (options_.inner && options_.inner->takes_held_bytes()) {
    InnerOutput io(this, &out, Direction::kDownstreamToUpstream, held, /*engine_chunk=*/true);
    // Sequenced: io.finish() only after the inner filter ran.
    const FilterStatus inner_status = options_.inner->on_start(held, io);
    return close_notify_if_ended(worse(inner_status, io.finish()), out);
  }
  if (!encrypts(Direction::kDownstreamToUpstream)) {
    return out.forward(held.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  out.skip(held.size());
  return emit_up(held, out);
}

FilterStatus TlsFilter::on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) {
  if (failed_) {
    // Bytes still in flight after we asked the engine to close.
    out.skip(chunk.size());
    return FilterStatus::kClose;
  }
  if (dir == Direction::kDownstreamToUpstream) {
    if (!started_) saw_downstream_ = true;
    if (down_ == nullptr) return plain_in(dir, chunk, out, /*engine_chunk=*/true);
    out.skip(chunk.size());
    if (!down_->feed(chunk)) return fail_stream("out of memory buffering TLS input", FilterStatus::kReset);
    return pump_down(out);
  }
  if (up_ == nullptr || !started_) return plain_in(dir, chunk, out, /*engine_chunk=*/true);
  out.skip(chunk.size());
  if (!up_->feed(chunk)) return fail_stream("out of memory buffering TLS input", FilterStatus::kReset);
  return pump_up(out);
}

FilterStatus TlsFilter::on_end_stream(Direction dir, FilterOutput& out) {
  if (failed_) return FilterStatus::kClose;
  if (dir == Direction::kDownstreamToUpstream) {
    if (down_ != nullptr && down_->state() == HandshakeState::kInProgress) {
      report(TlsSide::kDownstream, false, "downstream closed the connection during the TLS handshake");
      return fail_stream(down_result_->failure_reason, FilterStatus::kClose);
    }
    FilterStatus st = end_inner(dir, out);
    // The inner filter keeps the upstream for another downstream (a pooled
    // connection between requests): no close_notify.
    if (st == FilterStatus::kEndDownstream) return st;
    if (up_ != nullptr && started_) {
      if (up_->state() == HandshakeState::kInProgress) {
        // The inner filter holds the upstream's end (a tunnel inside this
        // TLS): the engine waits with its FIN, so the handshake goes on;
        // close_notify follows it.
        if (upstream_end_held()) {
          close_upstream_after_handshake_ = true;
          return st;
        }
        // The engine half-closes the upstream right after this call; the
        // handshake cannot finish without our Finished, so the held
        // plaintext could never be sent: say so instead of losing it.
        return fail_upstream_handshake("downstream closed its side before the upstream TLS handshake finished (" +
                                           std::to_string(to_upstream_.size()) + " bytes not sent)",
                                       out);
      }
      if (up_->state() == HandshakeState::kDone) st = worse(st, close_upstream_tls(out));
    }
    return st;
  }
  if (up_ != nullptr && started_ && up_->state() == HandshakeState::kInProgress) {
    return fail_upstream_handshake("upstream closed the connection during the TLS handshake", out,
                                   /*may_retry=*/dir == Direction::kUpstreamToDownstream);
  }
  FilterStatus st = end_inner(dir, out);
  if (down_ != nullptr && down_->state() == HandshakeState::kDone) {
    down_->send_close_notify();
    st = worse(st, flush(*down_, out));
  }
  return st;
}

// ---------------------------------------------------------------- plaintext

FilterStatus TlsFilter::plain_in(Direction dir, std::span<const uint8_t> bytes, FilterOutput& out, bool engine_chunk) {
  if (options_.inner) {
    InnerOutput io(this, &out, dir, bytes, engine_chunk);
    // Sequenced: io.finish() only after the inner filter ran.
    const FilterStatus inner_status = options_.inner->on_data(dir, bytes, io);
    return close_notify_if_ended(worse(inner_status, io.finish()), out);
  }
  if (engine_chunk && !encrypts(dir)) {
    return out.forward(bytes.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  return emit(dir, bytes, out);
}

FilterStatus TlsFilter::emit(Direction dir, std::span<const uint8_t> bytes, FilterOutput& out) {
  return dir == Direction::kDownstreamToUpstream ? emit_up(bytes, out) : emit_down(bytes, out);
}

FilterStatus TlsFilter::emit_up(std::span<const uint8_t> bytes, FilterOutput& out) {
  if (failed_) return FilterStatus::kClose;  // closing: nothing more goes out
  if (bytes.empty()) return FilterStatus::kContinue;
  if (!encrypts(Direction::kDownstreamToUpstream)) {
    return out.inject(Direction::kDownstreamToUpstream, bytes) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  switch (up_->state()) {
    case HandshakeState::kDone:
      if (!up_->write(bytes))
        return fail_stream("upstream TLS write failed: " + up_->failure_reason(), FilterStatus::kReset);
      return flush(*up_, out);
    case HandshakeState::kInProgress:
      if (to_upstream_.size() + bytes.size() > options_.max_handshake_buffer) {
        return fail_upstream_handshake("more than " + std::to_string(options_.max_handshake_buffer) +
                                           " bytes from the downstream while the upstream TLS handshake was running",
                                       out);
      }
      to_upstream_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      return FilterStatus::kContinue;
    case HandshakeState::kFailed:
      break;
  }
  return FilterStatus::kClose;
}

FilterStatus TlsFilter::emit_down(std::span<const uint8_t> bytes, FilterOutput& out) {
  if (failed_) return FilterStatus::kClose;
  return send_down(bytes, out);
}

FilterStatus TlsFilter::send_down(std::span<const uint8_t> bytes, FilterOutput& out) {
  if (bytes.empty()) return FilterStatus::kContinue;
  if (down_ == nullptr) {
    return out.inject(Direction::kUpstreamToDownstream, bytes) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  switch (down_->state()) {
    case HandshakeState::kDone:
      if (!down_->write(bytes)) {
        return fail_stream("downstream TLS write failed: " + down_->failure_reason(), FilterStatus::kReset);
      }
      return flush(*down_, out);
    case HandshakeState::kInProgress:
      if (to_downstream_.size() + bytes.size() > options_.max_handshake_buffer) {
        return fail_stream("more than " + std::to_string(options_.max_handshake_buffer) +
                               " bytes from the upstream while the downstream TLS handshake was running",
                           FilterStatus::kClose);
      }
      to_downstream_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      return FilterStatus::kContinue;
    case HandshakeState::kFailed:
      break;
  }
  return FilterStatus::kClose;
}

// ---------------------------------------------------------------- TLS legs

FilterStatus TlsFilter::flush(TlsConnection& conn, FilterOutput& out) {
  const std::span<const uint8_t> bytes = conn.output();
  if (bytes.empty()) return FilterStatus::kContinue;
  const Direction toward = conn.is_server() ? Direction::kUpstreamToDownstream : Direction::kDownstreamToUpstream;
  const int rc = out.inject(toward, bytes);
  conn.consume_output();
  if (rc != 0)
    return fail_stream(
        "no buffer for TLS output toward the " + std::string(conn.is_server() ? "downstream" : "upstream"),
        FilterStatus::kReset);
  return FilterStatus::kContinue;
}

FilterStatus TlsFilter::start_upstream(FilterOutput& out) {
  if (up_ == nullptr) return FilterStatus::kContinue;
  const HandshakeState hs = up_->handshake();  // writes the ClientHello
  const FilterStatus st = flush(*up_, out);
  if (hs == HandshakeState::kFailed) return fail_upstream_handshake(up_->failure_reason(), out);
  return st;
}

FilterStatus TlsFilter::pump_down(FilterOutput& out) {
  if (down_->state() == HandshakeState::kInProgress) {
    const HandshakeState hs = down_->handshake();
    FilterStatus st = flush(*down_, out);  // our flight, or the alert
    if (hs == HandshakeState::kFailed) return fail_downstream(down_->failure_reason());
    if (st != FilterStatus::kContinue) return st;
    if (hs == HandshakeState::kInProgress) {
      if (down_->buffered_input() > options_.max_handshake_buffer) {
        report(TlsSide::kDownstream, false,
               "handshake input exceeds " + std::to_string(options_.max_handshake_buffer) + " bytes");
        return fail_stream(down_result_->failure_reason, FilterStatus::kClose);
      }
      return FilterStatus::kContinue;
    }
    report(TlsSide::kDownstream, true, {});
    if (!to_downstream_.empty()) {
      std::string pending = std::move(to_downstream_);
      to_downstream_.clear();
      st = emit_down(bytes_of(pending), out);
      if (st != FilterStatus::kContinue) return st;
    }
  }
  return read_plaintext(*down_, out);
}

FilterStatus TlsFilter::pump_up(FilterOutput& out) {
  if (up_->state() == HandshakeState::kInProgress) {
    const HandshakeState hs = up_->handshake();
    FilterStatus st = flush(*up_, out);
    if (hs == HandshakeState::kFailed) return fail_upstream_handshake(up_->failure_reason(), out, /*may_retry=*/true);
    if (st != FilterStatus::kContinue) return st;
    if (hs == HandshakeState::kInProgress) {
      if (up_->buffered_input() > options_.max_handshake_buffer) {
        return fail_upstream_handshake(
            "handshake input exceeds " + std::to_string(options_.max_handshake_buffer) + " bytes", out);
      }
      return FilterStatus::kContinue;
    }
    report(TlsSide::kUpstream, true, {});
    if (std::exchange(ready_pending_, false)) inner_ready(out);
    if (!to_upstream_.empty()) {
      std::string pending = std::move(to_upstream_);
      to_upstream_.clear();
      st = emit_up(bytes_of(pending), out);
      if (st != FilterStatus::kContinue) return st;
    }
    if (close_upstream_after_handshake_) {
      st = close_upstream_tls(out);
      if (st != FilterStatus::kContinue) return st;
    }
  }
  FilterStatus st = read_plaintext(*up_, out);
  // The inner filter let the upstream's end go (a tunnel's proxy agreed):
  // the close_notify it held back follows what it released.
  if (st == FilterStatus::kContinue && close_notify_up_deferred_ && !upstream_end_held()) {
    close_notify_up_deferred_ = false;
    st = close_upstream_tls(out);
  }
  return st;
}

// close_notify toward the upstream (TLS origination done), unless the inner
// filter still holds bytes for it (a tunnel waiting for its proxy): then
// once it lets them go, after them.
FilterStatus TlsFilter::close_upstream_tls(FilterOutput& out) {
  if (upstream_end_held()) {
    close_notify_up_deferred_ = true;
    return FilterStatus::kContinue;
  }
  if (up_->close_notify_sent()) return FilterStatus::kContinue;
  up_->send_close_notify();
  return flush(*up_, out);
}

// Decrypts everything complete in `conn`'s input and passes it on: from the
// downstream toward the upstream or the other way round.
FilterStatus TlsFilter::read_plaintext(TlsConnection& conn, FilterOutput& out) {
  const Direction dir = conn.is_server() ? Direction::kDownstreamToUpstream : Direction::kUpstreamToDownstream;
  for (;;) {
    size_t n = 0;
    const ReadStatus rs = conn.read(t_plaintext, &n);
    // Reads can produce output too: TLS 1.3 tickets after the server's
    // handshake, KeyUpdate answers, an alert after a bad record.
    FilterStatus st = flush(conn, out);
    if (st != FilterStatus::kContinue) return st;
    switch (rs) {
      case ReadStatus::kData:
        if (!conn.is_server()) upstream_spoke_ = true;
        st = plain_in(dir, {t_plaintext.data(), n}, out, /*engine_chunk=*/false);
        if (st != FilterStatus::kContinue) return st;
        if (failed_) return FilterStatus::kClose;
        continue;
      case ReadStatus::kWantMore:
        return FilterStatus::kContinue;
      case ReadStatus::kClosed:
        return peer_closed(conn, out);
      case ReadStatus::kError:
        // In TLS 1.3 the client side finishes before the server has judged
        // our certificate: a rejection ("certificate required", "bad
        // certificate", an unknown CA) arrives as an alert right after. Until
        // the upstream has sent any data that is still a failed connection
        // attempt, reported (a second time, now failed) and answered as one.
        // (Not retried as a connection failure: the request went out
        // already, as Envoy's pool had the connection up.)
        if (!conn.is_server() && !upstream_spoke_) return fail_upstream_handshake(conn.failure_reason(), out);
        return fail_stream(
            std::string(conn.is_server() ? "downstream" : "upstream") + " TLS error: " + conn.failure_reason(),
            FilterStatus::kClose);
    }
  }
}

// close_notify from one peer ends that direction: tell the other side the
// same way (close_notify if it is TLS; a plaintext side learns it from the
// FIN that follows).
FilterStatus TlsFilter::peer_closed(TlsConnection& conn, FilterOutput& out) {
  const Direction dir = conn.is_server() ? Direction::kDownstreamToUpstream : Direction::kUpstreamToDownstream;
  FilterStatus st = end_inner(dir, out);
  if (conn.is_server()) {
    if (up_ != nullptr && started_) {
      if (up_->state() == HandshakeState::kDone) {
        st = worse(st, close_upstream_tls(out));
      } else {
        close_upstream_after_handshake_ = true;
      }
    }
  } else if (down_ != nullptr && down_->state() == HandshakeState::kDone) {
    down_->send_close_notify();
    st = worse(st, flush(*down_, out));
  }
  return st;
}

// An inner filter callback without a chunk (its timer, the drain, a failed
// connect): its output toward the downstream is encrypted when that side is
// TLS, and a TLS client whose connection it ends hears close_notify.
template <typename Fn>
FilterStatus TlsFilter::call_inner(FilterOutput& out, Fn fn) {
  InnerOutput io(this, &out, Direction::kUpstreamToDownstream, {}, /*engine_chunk=*/false);
  // Sequenced: io.finish() only after the inner filter ran.
  const FilterStatus inner_status = fn(*options_.inner, io);
  return close_notify_if_ended(worse(inner_status, io.finish()), out);
}

FilterStatus TlsFilter::on_timer(FilterOutput& out) {
  if (!options_.inner || failed_) return FilterStatus::kContinue;
  return call_inner(out, [](engine::StreamFilter& f, FilterOutput& io) { return f.on_timer(io); });
}

FilterStatus TlsFilter::on_drain(FilterOutput& out) {
  if (!options_.inner || failed_) return FilterStatus::kContinue;
  return call_inner(out, [](engine::StreamFilter& f, FilterOutput& io) { return f.on_drain(io); });
}

// The inner filter ends the client's connection (kEndDownstream: its last
// response is out; kClose): a TLS client hears close_notify before the FIN.
FilterStatus TlsFilter::close_notify_if_ended(FilterStatus st, FilterOutput& out) {
  if (st != FilterStatus::kEndDownstream && st != FilterStatus::kClose) return st;
  if (down_ == nullptr || down_->state() != HandshakeState::kDone) return st;
  down_->send_close_notify();
  return worse(st, flush(*down_, out));
}

void TlsFilter::on_upstream_ready(FilterOutput& out) {
  if (up_pending_ || (up_ != nullptr && up_->state() != HandshakeState::kDone)) {
    ready_pending_ = true;
    return;
  }
  inner_ready(out);
}

void TlsFilter::inner_ready(FilterOutput& out) {
  if (!options_.inner || failed_) return;
  InnerOutput io(this, &out, Direction::kUpstreamToDownstream, {}, /*engine_chunk=*/false);
  options_.inner->on_upstream_ready(io);
  io.finish();
}

// No upstream connection: the inner filter's answer goes to the downstream
// (encrypted when it is TLS); the upstream TLS never started.
FilterStatus TlsFilter::on_connect_failed(FilterOutput& out, bool timed_out) {
  if (!options_.inner || failed_) return FilterStatus::kClose;
  return call_inner(out, [timed_out](engine::StreamFilter& f, FilterOutput& io) {
    return f.on_connect_failed(io, timed_out);
  });
}

FilterStatus TlsFilter::end_inner(Direction dir, FilterOutput& out) {
  const int i = dir == Direction::kDownstreamToUpstream ? 0 : 1;
  if (!options_.inner || inner_ended_[i]) return FilterStatus::kContinue;
  inner_ended_[i] = true;
  InnerOutput io(this, &out, dir, {}, /*engine_chunk=*/false);
  // Sequenced: io.finish() only after the inner filter ran.
  const FilterStatus inner_status = options_.inner->on_end_stream(dir, io);
  return worse(inner_status, io.finish());
}

// ---------------------------------------------------------------- failures

void TlsFilter::report(TlsSide side, bool ok, const std::string& reason) {
  TlsConnection* conn = side == TlsSide::kDownstream ? down_.get() : up_.get();
  TlsHandshakeResult r;
  r.side = side;
  r.ok = ok;
  if (conn != nullptr) {
    r.peer = conn->peer();
    r.sni = std::string(conn->sni());
    if (ok) {
      r.version = std::string(conn->version());
      r.cipher = std::string(conn->cipher());
      r.alpn = std::string(conn->alpn());
      r.resumed = conn->resumed();
    }
  }
  r.failure_reason = reason;
  std::optional<TlsHandshakeResult>& slot = side == TlsSide::kDownstream ? down_result_ : up_result_;
  slot = std::move(r);
  if (options_.on_handshake) options_.on_handshake(*slot);
}

FilterStatus TlsFilter::fail_downstream(std::string reason) {
  report(TlsSide::kDownstream, false, reason);
  return fail_stream(std::move(reason), FilterStatus::kClose);
}

FilterStatus TlsFilter::fail_upstream_handshake(std::string reason, FilterOutput& out, bool may_retry) {
  if (failed_) return FilterStatus::kClose;
  report(TlsSide::kUpstream, false, reason);
  // Envoy takes a failed upstream handshake for a connection failure: the
  // route's connect-failure retries go on another connection (the inner
  // filter keeps the request; nothing of it was sent in the clear).
  if (may_retry && options_.inner) {
    InnerOutput io(this, &out, Direction::kUpstreamToDownstream, {}, /*engine_chunk=*/false);
    const FilterStatus st = options_.inner->on_upstream_setup_failed(io);
    if (io.finish() == FilterStatus::kContinue && st == FilterStatus::kNewUpstream) {
      to_upstream_.clear();
      upstream_setup_failed_ = true;  // its socket is never pooled
      return FilterStatus::kNewUpstream;
    }
  }
  failed_ = true;
  error_ = reason;
  to_upstream_.clear();
  to_upstream_.shrink_to_fit();
  if (options_.upstream_failure_reply) {
    const std::string reply = options_.upstream_failure_reply(*up_result_);
    // Straight to the downstream (through its TLS if any), not through the
    // inner filter: the request never reached the upstream.
    if (!reply.empty() && send_down(bytes_of(reply), out) == FilterStatus::kReset) return FilterStatus::kReset;
  }
  return FilterStatus::kClose;
}

FilterStatus TlsFilter::fail_stream(std::string reason, FilterStatus status) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(reason);
  }
  to_upstream_.clear();
  to_downstream_.clear();
  return status;
}

}  // namespace sluice::tls
