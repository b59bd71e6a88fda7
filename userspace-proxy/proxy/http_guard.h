// Per-connection state shared by a role's ConnectionHandler and the HTTP
// filter that follows a keep-alive connection after its first request, and
// that filter itself (HttpRequestGuard).
//
// The handler decides the connection on its first request; every later
// request on the same HTTP/1 connection is decided on its own by the role's
// `check_later` (a sidecar re-applies outboundTrafficPolicy and its routes,
// a gateway its Gateway server and routes): forwarded when it goes to the
// connection's upstream, answered locally (502, 404, a redirect...; the
// connection goes on after a complete keep-alive request's answer), or, for
// another upstream, held until the
// responses due from this one are in, then carried there (the engine's
// FilterStatus::kNewUpstream: this upstream is parked or closed and the
// handler connects the next one, as Envoy picks an upstream per request).
// The same move carries route retries: a retriable response (Istio's
// default: 503) or an upstream that ends before any response sends the
// request, kept as received, to another endpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/decision/ip_address.h"
#include "userspace-proxy/admin/istio_metrics.h"
#include "userspace-proxy/engine/connection_handler.h"
#include "userspace-proxy/engine/socket_address.h"
#include "userspace-proxy/engine/stream_filter.h"
#include "userspace-proxy/proxy/access_log.h"
#include "userspace-proxy/proxy/access_log_sink.h"
#include "userspace-proxy/proxy/proxy_counters.h"
#include "userspace-proxy/proxy/recycled.h"
#include "userspace-proxy/proxy/snapshot.h"
#include "userspace-proxy/sniff/body_framer.h"
#include "userspace-proxy/sniff/http_request_head.h"
#include "userspace-proxy/sniff/http_response_head.h"

namespace sluice::proxy {

class Clusters;
class CircuitBreaker;
class ConnectionSlot;

int64_t realtime_ns();
int64_t monotonic_ns();
// Milliseconds of wall clock since `start_realtime_ns` (0 if none passed).
uint64_t ms_since(int64_t start_realtime_ns);
inline std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The body descriptors of one request's mirrored copies (one per mirror
// streamed: a descriptor of each copy's socketpair writer,
// Forwarder::mirror_request). Move-only; what is left when it goes is cut.
class MirrorSinks {
 public:
  MirrorSinks() = default;
  MirrorSinks(MirrorSinks&& o) noexcept : fds_(std::exchange(o.fds_, {})) {}
  MirrorSinks& operator=(MirrorSinks&& o) noexcept;
  MirrorSinks(const MirrorSinks&) = delete;
  MirrorSinks& operator=(const MirrorSinks&) = delete;
  ~MirrorSinks() { end(/*cut=*/true, nullptr); }

  bool empty() const { return fds_.empty(); }
  void add(int fd) { fds_.push_back(fd); }
  // Moves them out, leaving none here.
  MirrorSinks take() { return std::move(*this); }
  // Each copy gets the bytes; one that cannot keep up (its socket buffer
  // full) is cut short, the others go on.
  void feed(std::string_view bytes, ProxyCounters* counters);
  // Every copy ends: complete (closed) or cut (shut down first, so its
  // request ends short), counted as mirror_cut.
  void end(bool cut, ProxyCounters* counters);

 private:
  std::vector<int> fds_;
};

// What a route changes in its requests and their responses (Istio's
// rewrite and headers, from ForwardPlan); shared by the requests it applies to.
struct RouteEdits {
  std::string path;       // the new path (rewrite.uri applied); empty: unchanged
  std::string authority;  // the new Host (rewrite.authority); empty: unchanged
  policy::HeaderEdits request;
  policy::HeaderEdits response;
  // http[].timeout: the response must end this long after the request went
  // upstream, or the client gets Envoy's 504 (flag UT). Zero: none.
  std::chrono::milliseconds timeout{0};
};
using RouteEditsPtr = std::shared_ptr<const RouteEdits>;
// Null when the route changes nothing.
RouteEditsPtr route_edits(const policy::ForwardPlan& plan);
// How a request head is rebuilt for the upstream under `edits` (origin-form
// target, new Host, header operations); `edits` must outlive the result.
sniff::HeadRewrite request_rewrite(const sniff::HttpRequestHead& head, const RouteEdits& edits);

// What the role decides about a later request on a kept-alive connection.
// kSwitch: it goes to another upstream (its plan is in
// ConnectionInfo::later_plan): the guard holds it until the responses before
// it are in, then the engine moves the connection (FilterStatus::kNewUpstream).
struct LaterRequest {
  enum class Kind { kForward, kLocalReply, kClose, kSwitch };
  Kind kind = Kind::kForward;
  // kLocalReply: the answer (local_reply()'s status, body, Location); the
  // guard builds it, with connection: close or not.
  uint32_t status = 0;
  std::string body;
  std::string location;
  RouteEditsPtr edits;  // kForward: the route's rewrite and header operations
};

// Per-connection facts shared by the handler and the HTTP filter (which may
// outlive on_close by a little: the engine frees it after the connection).
struct ConnectionInfo {
  SnapshotPtr snapshot;
  // The engine's connection, for Connection::spawn (mirrored copies) and
  // draining(); only used from this connection's own callbacks.
  engine::Connection* conn = nullptr;
  engine::SocketAddress original_dst;  // the sidecar's SO_ORIGINAL_DST; the gateway's listener address
  decision::IpAddress original_ip;
  engine::SocketAddress peer;
  // The client's IP, when a consistentHash needs it (Snapshot::client_address_needed).
  std::optional<decision::IpAddress> peer_ip;
  int64_t start_realtime_ns = 0;
  int64_t start_monotonic_ns = 0;
  AccessLogSink* log = nullptr;
  ProxyCounters* counters = nullptr;
  // Istio's metrics, recorded with every access log entry (null: off). The
  // shard belongs to the connection's worker.
  admin::IstioMetrics* metrics = nullptr;
  admin::MetricsShard* metrics_shard = nullptr;
  // connection_security_policy: "mutual_tls" for a downstream that presented
  // a verified client certificate, "none" for plaintext, else "unknown".
  std::string_view security_policy = "unknown";
  // A gateway server terminated the client's TLS: its requests' scheme is
  // https (VirtualService match.scheme, redirects), later ones too.
  bool downstream_tls = false;
  // The connection's upstream, as the role names it for comparisons.
  std::string upstream_key;
  std::string cluster;     // for TCP lines: outbound|80||host, PassthroughCluster, ...
  std::string route_name;
  std::string tcp_flags;   // for TCP lines: "UH" when blackholed
  std::string sni;
  bool http = false;
  std::string upstream_host;  // the address connected to, once known
  // Set when the upstream TLS handshake failed (flag UF, 503).
  std::string upstream_failure;
  // The current upstream's cluster: its circuit breaker and limits when
  // its DestinationRule sets http2MaxRequests or maxRetries (0: none).
  std::shared_ptr<CircuitBreaker> breaker;
  std::string breaker_cluster;  // the cluster `breaker` is of
  int32_t max_requests = 0;
  int32_t max_retries = 0;
  // Taken for the next request the guard sends: its http2MaxRequests count
  // (the handler's, for a first or moved request; check_later's for a later
  // one) and, for a retry, its maxRetries count (the guard's, at the
  // decision).
  std::shared_ptr<void> request_token;
  std::shared_ptr<void> retry_token;
  // Held while the request waits for its upstream connection to be made
  // (http1MaxPendingRequests counts it; CircuitBreaker::start_connect).
  std::shared_ptr<void> connect_token;
  // The upstream cluster's connection slot (DestinationRule maxConnections),
  // released when this connection's state goes, or its upstream does.
  std::shared_ptr<ConnectionSlot> cluster_lease;
  // How long the request waited in the cluster's queue for that slot (its
  // route timeout runs from its end all the same).
  int64_t queued_ns = 0;
  // Gateway role: the Gateway server that took the connection (points into
  // `snapshot`).
  const policy::GatewayServerRef* server = nullptr;
  // A mirrored request's body goes here as it is forwarded (to each of its
  // copies, Forwarder::mirror_request): left by the handler for the guard
  // that forwards that request.
  MirrorSinks mirror_sinks;

  ConnectionInfo() = default;
  ConnectionInfo(const ConnectionInfo&) = delete;
  ConnectionInfo& operator=(const ConnectionInfo&) = delete;
  ~ConnectionInfo();
  void cut_mirror_sink();

  // Decides a later request (see the file comment). Fills `entry` (the
  // request's access log line: cluster, route, flags, response code).
  std::function<LaterRequest(const sniff::HttpRequestHead& head, AccessLogEntry& entry)> check_later;

  // Between the guard and the handler when the connection moves to another
  // upstream (FilterStatus::kNewUpstream): why, and what for.
  enum class NextUpstream : uint8_t {
    kNone,
    kSwitch,  // a later request for another upstream (later_plan)
    kRetry,   // the newest request again, after a retriable response or reset
    // The upstream is done (it carried maxRequestsPerConnection, or a later
    // request was answered locally behind pipelined ones): the client's
    // connection goes on undecided, its next request (held bytes, if any)
    // decided afresh as a first one.
    kRelease,
  };
  NextUpstream next_upstream = NextUpstream::kNone;
  uint32_t retry_status = 0;  // kRetry: the status retried (0: no response, a reset)
  // The newest later request's plan (check_later keeps it: a switch or a
  // retry of that request goes on with it).
  // Allocated on the first later request (most connections never have
  // one: a plan is large), then reused.
  std::unique_ptr<policy::RequestPlan> later_plan;
  // The later request's upstream is another one (not only delayed, or a
  // connection per request): counted as upstream_changed when it moves.
  bool later_moves = false;
  // The retry policy of the request the current upstream was chosen for,
  // and which try of it this is (1: the first).
  policy::RetryPlan first_retry;
  uint32_t first_attempt = 1;
  // Connect-failure retries of the current decision (the engine's walk over
  // its addresses, Forwarder::on_connect_attempt_failed), and whether the
  // cluster's maxRetries stopped one (the failure then stands, flagged UO).
  uint32_t connect_retries = 0;
  bool connect_retry_overflow = false;
  // The current request was retried (a response retry, or its connect).
  bool retried() const { return first_attempt > 1 || connect_retries > 0; }
  // The route deadline (monotonic ns; INT64_MAX: none yet) of the request
  // this connection's upstream is being connected for, and whether it
  // passed between two connect attempts (Envoy's 504 UT, not a retry).
  int64_t connect_deadline_ns = INT64_MAX;
  bool connect_route_timeout = false;
  // A retried request's route deadline (monotonic ns; INT64_MAX: none): the
  // route timeout spans all of its tries.
  int64_t retry_deadline_ns = INT64_MAX;
  // The current upstream, and the ones the current request tried before
  // (a retry prefers another endpoint: Envoy's previous_hosts predicate).
  engine::SocketAddress upstream_address;
  // The upstream this connection's requests go to: the first of the
  // decision's endpoints from the decision on, the connected one once up
  // (consistentHash compares a later request's endpoint with it).
  engine::SocketAddress bound_upstream;
  std::vector<engine::SocketAddress> tried_upstreams;

  // HTTP requests not yet written to the access log (the last one waits for
  // on_close to learn byte counts when it is the only one).
  struct Request {
    AccessLogEntry entry;
    bool first = false;  // the request the connection was decided on
  };
  std::vector<Request> pending_requests;
  uint64_t requests = 0;
  int first_response_code = 0;
  // Outlier detection (consecutive5xxErrors): every response the current
  // upstream gives counts for its endpoint, as Envoy's detector sees them
  // (a retried one through the retry). Null: no clusters (tests, mirrors).
  Clusters* clusters = nullptr;
  bool outlier_detection = false;  // the current plan's DestinationRule has outlierDetection
  bool response_reported = false;  // by report_response, since the upstream was chosen
  void report_response(int status);
  mutable std::string original_dst_text_, peer_text_;

  AccessLogEntry base_entry() const;
  // original_dst / peer as text, made once per connection (every request's
  // log entry carries them).
  const std::string& original_dst_text() const;
  const std::string& peer_text() const;
  // Writes the access log line and records the entry in Istio's metrics
  // (istio_requests_total for HTTP, istio_tcp_* for a TCP connection).
  void log_entry(const AccessLogEntry& e);
  // The bytes of the HTTP requests logged so far (received from and sent
  // to the client): a request the connection's end finds unanswered is
  // given the connection's bytes less these.
  uint64_t logged_in = 0;
  uint64_t logged_out = 0;
  // istio_tcp_connections_opened_total, when a TCP connection is relayed.
  void record_tcp_open() const;
  void flush_requests();
  // The oldest pending request's response ended: its line is written now,
  // with that response's status and byte counts.
  void complete_request(int status, uint64_t bytes_received, uint64_t bytes_sent, std::string_view flags = {},
                        std::string_view details = {});
};

// An access log entry for an HTTP request head (method, path, authority, ...).
AccessLogEntry request_entry(const ConnectionInfo& info, const sniff::HttpRequestHead& head);

// Envoy's local reply, as Istio's proxies send it (server: sluice instead of
// envoy): status line, content-length, date, server, and connection: close
// unless `keep_alive` (the connection goes on with the client's next
// request). `body` is sent as text/plain when not empty (with its length
// only, for a `head_request`; neither for 204 and 304); `location` adds a
// Location header (redirects).
std::string local_reply(int status, int64_t realtime_ns, std::string_view body = {},
                        std::string_view location = {}, bool keep_alive = false, bool head_request = false);
// Whether a request may be answered locally with the connection kept, as
// Envoy does: HTTP/1.1 keep-alive, and nothing of it left unread (no body,
// no CONNECT or Upgrade).
bool local_reply_keeps_connection(const sniff::HttpRequestHead& head);

// Checks each request after the first on an HTTP/1 keep-alive connection
// (downstream -> upstream) through ConnectionInfo::check_later; relays
// responses, framing each (RFC 9112 §6.3) to log its request when it ends
// (status, bytes, duration). Request body framing follows
// Content-Length / chunked; after CONNECT or an Upgrade request the rest of
// the stream is opaque.
//
// Pooled (the upstream connection may serve other downstream connections,
// as Envoy's HTTP/1 connection pool does): every request head, the first
// included, is rebuilt for the upstream hop without hop-by-hop fields, so a
// client's "Connection: close" ends only its own connection; responses are
// framed (RFC 9112 §6.3) and their heads rebuilt ("connection: close" added
// for a client that asked for it or an upstream that will close). After the
// response to a client's last request (or its FIN between requests) the
// guard answers kEndDownstream and reports the upstream reusable when it
// sits at a message boundary and kept the connection alive. HTTP/1.0
// requests are forwarded unchanged and make the upstream non-reusable.
class HttpRequestGuard final : public engine::StreamFilter, public Recycled<HttpRequestGuard> {
 public:
  // `first` are the bytes the handler already saw and decided on (forwarded
  // by the engine unfiltered); the guard resumes framing after them. A
  // pooled guard takes them through on_start instead (and rewrites them),
  // as does one whose `first` goes on past the first request (rerun_).
  // `first_edits`: what the first request's route changes in it (its head
  // is then rebuilt too, and the held bytes come through on_start).
  // `moved`: the held bytes may be more than `first` (the engine's sniffing
  // window): on a connection's later upstream (a switch, a retry: what the
  // previous guard held back, up to its limit), or when `first` fills the
  // window (a deferred decision reads on). They all come through on_start,
  // framed and checked, never forwarded unread.
  HttpRequestGuard(std::shared_ptr<ConnectionInfo> info, std::span<const uint8_t> first, bool pooled = false,
                   RouteEditsPtr first_edits = nullptr, bool moved = false);
  ~HttpRequestGuard() override;

  // Runs the framing over `first` without output; false if the first
  // request's body in `first` is malformed (nothing is to be forwarded).
  // Later requests in `first` are decided in on_start, one by one.
  bool first_bytes_ok() const { return first_ok_; }

  engine::FilterStatus on_data(engine::Direction dir, std::span<const uint8_t> chunk,
                               engine::FilterOutput& out) override;
  engine::FilterStatus on_end_stream(engine::Direction dir, engine::FilterOutput& out) override;
  // A mirrored first request's body is copied from the held bytes too.
  bool takes_held_bytes() const override {
    return pooled_ || first_edits_ != nullptr || rerun_ || mirror_rerun_ || moved_;
  }
  engine::FilterStatus on_start(std::span<const uint8_t> held, engine::FilterOutput& out) override;
  bool upstream_reusable() const override;
  // The upstream's request count travels with it through the pool
  // (DestinationRule connectionPool.http.maxRequestsPerConnection).
  engine::UpstreamStatePtr release_upstream() override;
  bool adopt_upstream(engine::UpstreamStatePtr state) override;
  // 0: unlimited. At the limit, the request that reaches it is the
  // upstream connection's last: it is let go after its response (kRelease),
  // as Envoy's pool closes such a connection, and the client's next request
  // goes to a new upstream connection (a switch when it came before that
  // response). Unpooled too (a TLS-terminating gateway's upstream serves
  // one client connection).
  void set_max_requests_per_connection(uint32_t n) { max_requests_ = n; }
  // Nanoseconds; 0: unlimited. An upstream connection this old (from its
  // connect, earlier clients' time included) carries no further request:
  // it is let go at the response end, the client's next request goes to a
  // new one, and the pool neither keeps nor hands out one this old (Envoy's
  // max_connection_duration, connectionPool.tcp.maxConnectionDuration).
  void set_max_connection_duration(int64_t ns) { max_age_ns_ = ns; }
  engine::FilterStatus on_timer(engine::FilterOutput& out) override;
  engine::FilterStatus on_drain(engine::FilterOutput& out) override;
  // Each try's clock (perTryTimeout) starts at its request's end or when
  // its upstream connection is ready, whichever is later, as Envoy's.
  void on_upstream_ready(engine::FilterOutput& out) override;
  // Envoy's answer when no upstream connection could be made: 503
  // "upstream connect error or disconnect/reset before headers" (flag UF in
  // the access log); a mirrored copy answers nobody.
  engine::FilterStatus on_connect_failed(engine::FilterOutput& out, bool timed_out) override;
  // TLS origination's handshake failed: the route's connect-failure retry
  // (kNewUpstream) when its policy, tries and maxRetries allow.
  engine::FilterStatus on_upstream_setup_failed(engine::FilterOutput& out) override;
  // The held request (a switch or a retry) becomes the pending bytes.
  bool on_new_upstream(engine::FilterOutput& out) override;
  // A mirrored copy's guard: responses (and local answers such as a 504)
  // are framed as usual, then dropped instead of sent downstream.
  void discard_responses() { discard_ = true; }

  // Retries replay the request as received: at most this much of it (head
  // and body) is kept (the engine's default sniff limit, so a deferred
  // decision can hold it); a longer one is not retried.
  static constexpr size_t kMaxReplayBytes = 16 * 1024;
  // A request waiting for another upstream behind responses still due
  // (pipelining) is held up to this much; more resets the connection.
  static constexpr size_t kMaxHeldBytes = 1024 * 1024;

 private:
  // A request forwarded upstream whose response has not been relayed yet.
  struct Outstanding {
    bool head = false;         // HEAD: the response has no body
    bool connect = false;      // CONNECT: a 2xx response starts a tunnel
    bool close_after = false;  // the connection's last request (no keep-alive, or the proxy drains)
    uint64_t bytes_in = 0;     // request head and body, as received
    uint64_t bytes_out = 0;    // response head and body, as sent to the client
    RouteEditsPtr edits;       // its route's response header operations
    int64_t deadline_ns = INT64_MAX;  // monotonic: its route's timeout (across tries)
    int64_t try_deadline_ns = INT64_MAX;  // monotonic: this try's (perTryTimeout)
    // perTryTimeout (ns; 0: none), started when the request has been sent
    // whole, as Envoy does: at once without a body, at the body's end with
    // one; never for CONNECT/Upgrade (a tunnel's request never ends).
    int64_t try_timeout_ns = 0;
    int64_t route_timeout_ns = 0;  // the route's timeout, started likewise (0: none)
    bool sent = false;             // the request has been sent whole (its clocks may run)
    int64_t next_deadline() const { return std::min(deadline_ns, try_deadline_ns); }
    bool first = false;        // the request the upstream was chosen for
    uint32_t attempt = 1;      // which try this is
    bool retry_exhausted = false;  // its response was retriable, no tries left (flag URX)
    bool retry_overflow = false;   // a retry the cluster's maxRetries held back (flag UO)
    // Envoy's circuit breakers: the cluster counts it while it is under way
    // (http2MaxRequests), and, a retry, until its response head (maxRetries).
    std::shared_ptr<void> request_token{};
    std::shared_ptr<void> retry_token{};
    // `flags` ("UC", "UT" or empty) with URX or UO when its retries ran out.
    std::string flags_with_retry(std::string_view flags) const {
      const char* r = retry_overflow ? "UO" : retry_exhausted ? "URX" : "";
      if (*r == 0) return std::string(flags);
      return flags.empty() ? std::string(r) : std::string(flags) + "," + r;
    }
    // A later request's retry policy, from its own plan (the connection's
    // later_plan is the newest later request's); the first request's is
    // ConnectionInfo::first_retry.
    std::optional<policy::RetryPlan> retry{};
  };
  // kDiscard: a response being retried, read to its end and dropped.
  enum class ResponseState : uint8_t { kHead, kBody, kOpaque, kDiscard };
  engine::FilterStatus forward_head(const sniff::HttpRequestHead& head, size_t consumed, engine::FilterOutput* out,
                                    const RouteEdits* edits);
  engine::FilterStatus on_response(std::span<const uint8_t> chunk, engine::FilterOutput& out);
  engine::FilterStatus end_stream(engine::Direction dir, engine::FilterOutput& out);
  engine::FilterStatus timer(engine::FilterOutput& out);
  engine::FilterStatus response_done(engine::FilterOutput& out);
  void arm_timer(engine::FilterOutput& out);
  // `head_bytes`: the head's bytes in the current chunk (held_ has any
  // before them), kept for a retry.
  // `retry`: a later request's own retry policy (from its plan).
  void note_request(const sniff::HttpRequestHead& head, RouteEditsPtr edits, bool first, std::string_view head_bytes,
                    std::optional<policy::RetryPlan> retry = std::nullopt);
  // The newest request's body has been forwarded whole: its route and try
  // clocks start.
  void request_sent(engine::FilterOutput* out);
  // Starts `o`'s try clock if it may run now (sent whole, upstream ready);
  // true if it started.
  bool start_try(Outstanding& o, int64_t now) const;

  // The retry policy of the outstanding request `r` (null: none known).
  const policy::RetryPlan* retry_policy(const Outstanding& r) const;
  // Whether the only outstanding request can be sent again now.
  bool can_retry() const;
  // Envoy's maxRetries: whether the cluster lets `r` go again now (a retry
  // token taken for its next try); false marks it UO. Its own try's token,
  // if a retry, is given back first (its outcome is known).
  bool retry_allowed(Outstanding& r);
  // Hands the held request to the next upstream (kNewUpstream).
  engine::FilterStatus retry_now(uint32_t status);
  engine::FilterStatus hold_for_switch(std::string_view rest, engine::FilterOutput& out);
  engine::FilterStatus hold_back(std::string& into, std::string_view rest, engine::FilterOutput& out);

  // kSwitching: a request for another upstream (or a retry) is held, with
  // everything after it, for the next upstream.
  enum class State : uint8_t { kHead, kBody, kOpaque, kStopped, kSwitching };
  engine::FilterStatus on_later_head(const sniff::HttpRequestHead& head, engine::FilterOutput& out);
  bool flush_response_prefix(engine::FilterOutput& out);
  engine::FilterStatus advance(std::span<const uint8_t> chunk, engine::FilterOutput* out);

  std::shared_ptr<ConnectionInfo> info_;
  sniff::HttpRequestParser parser_;
  std::optional<sniff::RequestBodyFramer> framer_;  // in place: one per request, no allocation
  State state_ = State::kHead;
  bool first_head_ = true;
  bool tunnel_after_body_ = false;
  bool first_ok_ = true;
  bool response_seen_ = false;
  std::string held_;
  // Responses are framed in both modes (each request is logged when its
  // response ends); pooling also rewrites heads and reuses the upstream.
  bool pooled_ = false;
  bool discard_ = false;  // discard_responses()
  // Mirroring: the sinks for this guard's first request's body (taken from
  // ConnectionInfo::mirror_sinks when built), and those the body being
  // forwarded is copied to (empty: none).
  MirrorSinks mirror_first_;
  bool mirror_rerun_ = false;
  MirrorSinks mirror_body_;
  void mirror_take(MirrorSinks sinks);
  void mirror_end(bool cut);
  RouteEditsPtr first_edits_;
  // The handler's bytes hold (the start of) a later request: they all go
  // through on_start, where that request is decided (else the engine would
  // send them as received, unchecked).
  bool rerun_ = false;
  bool moved_ = false;  // see the constructor
  RouteEditsPtr later_edits_;  // of the later request being forwarded (from check_later)
  bool reusable_ = true;         // nothing seen so far rules out reuse
  bool close_requested_ = false; // the connection's last request was forwarded (close_after)
  bool draining_ = false;        // on_drain: the last request forwarded is the connection's last
  std::deque<Outstanding> outstanding_;
  std::unique_ptr<sniff::HttpResponseParser> response_parser_;
  std::optional<sniff::ResponseBodyFramer> response_framer_;
  ResponseState response_state_ = ResponseState::kHead;
  int response_status_ = 0;
  bool timer_armed_ = false;  // the engine's timer is set for the front request
  uint32_t upstream_requests_ = 0;  // sent on this upstream connection, earlier clients' included
  uint32_t max_requests_ = 0;
  int64_t max_age_ns_ = 0;
  int64_t upstream_born_ns_ = 0;  // when the upstream connection was ready (0: not yet)
  // The upstream connection carried max_requests_, or is max_age_ns_ old.
  bool spent() const;
  // When the upstream turns max_age_ns_ old; INT64_MAX: no limit (or not
  // connected yet).
  int64_t age_deadline_ns() const;
  engine::FilterStatus let_upstream_go();
  // No request or response under way on the upstream (held bytes, when
  // switching, are the next upstream's).
  bool at_boundary() const;
  // The upstream connection is up (on_upstream_ready, or adopted from the
  // pool): try clocks may start.
  bool upstream_ready_ = false;
  // Retries: the newest request as received while it may be sent again
  // (replay_ok_: retriable so far; replay_done_: all of it is in).
  std::string replay_;
  bool replay_ok_ = false;
  bool replay_done_ = false;
  bool switch_signalled_ = false;  // kNewUpstream returned once already
  bool retrying_ = false;          // the front response is being discarded for a retry
  std::string behind_retry_;       // what the client sent meanwhile: follows the retried request
  uint32_t retry_status_ = 0;
  // on_later_head answered the request locally and kept the connection.
  bool answered_ = false;
  // A later request's local answer waiting for the responses due before it
  // (pipelining; its access log line is the last pending one).
  struct DeferredAnswer {
    int status = 0;
    std::string body, location;
    bool head = false;   // to a HEAD: no body
    bool keeps = false;  // the connection goes on after it (kRelease)
    bool logged = false; // its access log line is the last pending one
  };
  std::optional<DeferredAnswer> deferred_;
  void drop_deferred_keep();
  std::string response_prefix_;  // a response head's bytes held back (unpooled) while a retry is possible
};

}  // namespace sluice::proxy
