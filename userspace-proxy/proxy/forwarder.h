// What the sidecar and gateway handlers share: carrying out a
// policy::RequestPlan on one connection (local reply, close, or connect to
// the planned endpoints with the planned TLS), waiting for DNS answers,
// picking endpoints through the process-wide Clusters, checking later
// keep-alive requests, and the access log line at the end.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/policy/request_plan.h"
#include "userspace-proxy/engine/connection_handler.h"
#include "userspace-proxy/proxy/circuit_breaker.h"
#include "userspace-proxy/proxy/egress_handler.h"
#include "userspace-proxy/proxy/http_guard.h"
#include "userspace-proxy/proxy/recycled.h"
#include "userspace-proxy/sniff/http_request_head.h"
#include "userspace-proxy/sniff/protocol_detector.h"
#include "userspace-proxy/sniff/sniff_plan.h"
#include "userspace-proxy/sniff/tls_client_hello.h"

namespace sluice::tls {
class TlsClientContext;
class TlsFilter;
struct TlsHandshakeResult;
}

namespace sluice::proxy {

// Handler state of one connection (Connection::context points at it). Its
// storage is reused per worker thread (Recycled): one per connection, larger
// than malloc's per-thread cache takes.
struct ProxyConnection : Recycled<ProxyConnection> {
  std::shared_ptr<ConnectionInfo> info = std::make_shared<ConnectionInfo>();
  bool moved = false;  // on a later upstream (a switch or a retry): see HttpRequestGuard's `moved`
  sniff::SniffMode mode = sniff::SniffMode::kDetect;
  std::unique_ptr<sniff::ProtocolDetector> detector;  // kDetect
  std::unique_ptr<sniff::HttpRequestParser> http;      // kHttp
  std::unique_ptr<sniff::ClientHelloSniffer> tls;      // kTlsClientHello
  size_t fed = 0;  // bytes of `pending` already fed to the sniffer
  // Set once decided; the connection may still wait for DNS.
  bool decided = false;
  policy::Traffic traffic = policy::Traffic::kTcp;
  std::string host;
  policy::RequestPlan plan;
  std::chrono::steady_clock::time_point dns_deadline;
  // A fault delay in progress: the plan is carried out at this time
  // (monotonic ns; 0: none).
  int64_t fault_until_ns = 0;
  // The delayed request is mirrored when its delay ends (Envoy's router,
  // which mirrors, sits after the fault filter).
  bool mirror_after_delay = false;
  // A mirrored copy (a socket the handler spawned): its plan, decided by
  // the request it copies, and the socketpair's other end (closed with it).
  std::shared_ptr<const policy::RequestPlan> mirror_plan;
  int mirror_writer = -1;
  bool dns_started = false;
  // Wakes the connection when a DNS answer it waits for arrives, or a
  // connection slot of its cluster is handed to it.
  engine::Waker waker;
  // Waiting for one of the cluster's connection slots (maxConnections):
  // its place in the queue, since when (monotonic ns; 0: not waiting).
  std::unique_ptr<SlotTicket> ticket;
  int64_t queued_since_ns = 0;
  // The client sent FIN (on_downstream_eof): a request that would wait in
  // a queue is given up instead (Envoy resets it: no HTTP half-close).
  bool downstream_ended = false;
  bool logged = false;  // TCP line or local reply already written
  std::string reply;    // kept alive for Verdict::close / respond
  // The first request's bytes when a local answer to it may keep the
  // connection (local_reply_keeps_connection; not on a later upstream); 0: no.
  size_t answerable = 0;
  bool head_request = false;  // the first request is a HEAD: its answer has no body

  // Gateway role: TLS termination installed before routing.
  tls::TlsFilter* terminator = nullptr;  // installed by need_more(); owned by the engine
};

// Converts a parsed request head for VirtualService matching. `storage`
// holds the header list the returned request points into.
policy::HttpRequest http_request_of(const sniff::HttpRequestHead& head, std::vector<policy::HeaderField>& storage);

class Forwarder : public engine::ConnectionHandler {
 public:
  explicit Forwarder(const EgressOptions& o) : o_(o) {}

  void on_upstream_connected(engine::Connection& conn, const engine::SocketAddress& upstream) override;
  std::chrono::milliseconds on_connect_attempt_failed(engine::Connection& conn, const engine::SocketAddress& upstream,
                                                      bool timed_out, bool another_left) override;
  // The HTTP guard moved the connection off its upstream: a later request
  // for another one (ConnectionInfo::later_plan), or a retry of the newest
  // request after a retriable response or reset (after Envoy's back-off,
  // preferring endpoints not tried yet).
  engine::Verdict on_new_upstream(engine::Connection& conn, std::span<const uint8_t> pending) override;
  // A DNS answer this connection waited for arrived (Verdict::defer).
  engine::Verdict on_wake(engine::Connection& conn, std::span<const uint8_t> pending) override;
  void on_close(engine::Connection& conn, const engine::ConnectionStats& stats) override;

 protected:
  static ProxyConnection& state(engine::Connection& conn) {
    return *reinterpret_cast<ProxyConnection*>(conn.context());
  }
  // A connection's state with what every role records at accept (clocks,
  // peer, log and metrics sinks); counts it as accepted.
  std::unique_ptr<ProxyConnection> new_connection(const engine::AcceptInfo& info);
  // What the policy core needs to plan for this connection.
  // Looks up the client's address when the connection's snapshot hashes
  // on it (consistentHash useSourceIp or a made-up cookie).
  void note_client_address(ConnectionInfo& ci, const engine::AcceptInfo& info);
  policy::PlanRequest plan_request(const ConnectionInfo& ci, policy::Traffic traffic, std::string host,
                                   const policy::HttpRequest* http);
  // Hands `c` to the connection (context) and keeps its waker.
  ProxyConnection* adopt(engine::Connection& conn, std::unique_ptr<ProxyConnection> c);

  // Records the first HTTP request's access log entry and carries out `plan`.
  engine::Verdict execute_http(ProxyConnection& c, const sniff::HttpRequestHead& head, policy::RequestPlan plan,
                               std::span<const uint8_t> pending);
  // Carries out `plan` for TLS/TCP traffic (one TCP access log line at close).
  engine::Verdict execute(ProxyConnection& c, policy::RequestPlan plan, std::span<const uint8_t> pending);
  // Turns the plan into addresses (waiting for DNS when needed) and connects.
  engine::Verdict resume(ProxyConnection& c, std::span<const uint8_t> pending);
  // A decided connection is called again (a DNS answer, more bytes, or
  // `timer_fired`: the timeout its last verdict asked for): goes on with a
  // fault delay that is over, else resume().
  engine::Verdict proceed(ProxyConnection& c, std::span<const uint8_t> pending, bool timer_fired = false);
  engine::Verdict protocol_error(ProxyConnection& c, int status);
  // Envoy's route timeout before any response: 504 "upstream request
  // timeout", flag UT, for the requests pending on the connection.
  engine::Verdict route_timed_out(ProxyConnection& c, std::span<const uint8_t> pending);

  // Envoy's request mirroring (VirtualService http[].mirror or mirrors[]):
  // for each of plan.mirrors, a copy of the request (its head rebuilt with
  // Host "<host>-shadow", then its body) goes over a socketpair to a
  // connection this worker spawns, which forwards it by that mirror's plan
  // and drops the response. `body`: the bytes after the head that arrived
  // with it. A body not all at hand (or chunked, or larger than
  // kMaxMirrorBytes) is streamed, as Envoy does: when `may_stream`, the
  // heads go now and ci.mirror_sinks is left for the HTTP guard that
  // forwards the request, which copies its body to each as it forwards it;
  // else nothing is copied.
  void mirror_request(ConnectionInfo& ci, const policy::RequestPlan& plan, const sniff::HttpRequestHead& head,
                      std::span<const uint8_t> body, bool may_stream);
  void on_spawn_dropped(uint64_t tag) override;
  // on_accept of a spawned copy (info.spawn_tag() != 0).
  engine::Verdict accept_mirror(engine::Connection& conn, const engine::AcceptInfo& info);
  // A spawned copy's bytes until its head is complete; then its plan.
  engine::Verdict mirror_data(ProxyConnection& c, std::span<const uint8_t> pending);
  // mirror_request for the request at the start of `pending` (a delayed
  // one, once its delay ends).
  void mirror_pending_request(ProxyConnection& c, std::span<const uint8_t> pending);
  // The role's plan for a later request on a kept-alive connection.
  virtual policy::RequestPlan plan_later(const ConnectionInfo& ci, const sniff::HttpRequestHead& head) = 0;

  uint64_t next_pick() { return rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL; }

  EgressOptions o_;

 private:
  // Carries out c.plan (local reply, close, or resume() towards the upstream).
  engine::Verdict carry_out(ProxyConnection& c, std::span<const uint8_t> pending);
  // Holds c.plan for its fault delay (once: a retry of the request is not
  // delayed again), then proceed() carries it out.
  engine::Verdict fault_delay(ProxyConnection& c);
  engine::Verdict no_upstream(ProxyConnection& c, const std::string& flags, const std::string& why, int status,
                              std::span<const uint8_t> pending);
  // Envoy's circuit breaker on the cluster's connections (DestinationRule
  // connectionPool.tcp.maxConnections): the slot, taken or handed to the
  // connection's ticket, in `slot` (nullopt); or the verdict meanwhile:
  // the queue's wait (deferred until the slot comes; an HTTP request's
  // route timeout bounds it: 504 UT), or 503 UO beyond
  // http1MaxPendingRequests.
  std::optional<engine::Verdict> admit(ProxyConnection& c, std::span<const uint8_t> pending,
                                       std::shared_ptr<ConnectionSlot>* slot);
  // A waiting request whose client sent FIN: out of the queue, logged DC
  // (Envoy resets it: no HTTP half-close), the connection closed.
  engine::Verdict give_up_waiting(ProxyConnection& c);
  // A local answer to the connection's first request (its log line is
  // written now). Envoy keeps an HTTP/1.1 connection after answering a
  // complete request itself (a 502 of REGISTRY_ONLY, 404 NR, a redirect, a
  // direct response, a fault abort, 503 UH/UO/NC): when c.answerable, only
  // the request's bytes are answered and the next request is decided afresh
  // (Verdict::respond); else the answer closes the connection.
  engine::Verdict answer(ProxyConnection& c, int status, std::string_view body, std::string_view location,
                         std::span<const uint8_t> pending);
  // Back to undecided: the connection's next request is decided as a first
  // one (after a kept local answer, or an upstream let go: kRelease).
  void await_next_request(ProxyConnection& c);
  // `pool_key` is set when the upstream connection may be pooled (HTTP/1.1
  // forwarding without TLS termination here; not with a DestinationRule's
  // http.maxRequestsPerConnection 1).
  engine::StreamFilterPtr build_filter(ProxyConnection& c, std::span<const uint8_t> pending, bool* ok,
                                       std::string* error, std::string* pool_key);
  void install_check_later(ProxyConnection& c);
  // Whether a later request's consistentHash key belongs to the endpoint
  // the connection is on (true when there is no key or no ring).
  bool hashes_here(const policy::RequestPlan& plan, const ConnectionInfo& ci) const;
  // The TLS client context for a plan's origination. Remembered per worker
  // for up to a second (TlsContexts rechecks the files no more often), so a
  // connection does not rebuild the shared cache's key or take its lock.
  std::shared_ptr<const tls::TlsClientContext> client_context(const ConnectionInfo& ci,
                                                              const policy::ForwardPlan& f, std::string* error);

  struct TlsClientMemo {
    // The config generation `settings` points into (compared, never
    // dereferenced: the memo holds no snapshot alive after a reload).
    uint64_t generation = 0;
    const config::ClientTLSSettings* settings = nullptr;
    config::ClientTLSMode mode = config::ClientTLSMode::kDisable;
    std::vector<std::string> expected_sans;
    std::shared_ptr<const tls::TlsClientContext> context;
    int64_t until_ns = 0;
  };
  std::array<TlsClientMemo, 4> tls_memo_;
  // Copies handed to Connection::spawn, taken by accept_mirror in order
  // (the worker takes spawned sockets after the callback, first in first
  // out; one it closed instead is dropped when a later one is taken).
  struct MirrorJob {
    uint64_t tag = 0;
    std::shared_ptr<const policy::RequestPlan> plan;
    SnapshotPtr snapshot;
    engine::SocketAddress original_dst;
    int writer = -1;
  };
  std::deque<MirrorJob> mirror_jobs_;
  uint64_t next_mirror_tag_ = 1;
 public:
  ~Forwarder() override;

 private:
  size_t tls_memo_next_ = 0;
  uint64_t rng_ = 0x2545F4914F6CDD1DULL;
};

// Counts a finished TLS handshake (either side) in the proxy's counters.
void count_handshake(ProxyCounters* counters, const tls::TlsHandshakeResult& r);

// Identifies "the same upstream" for a later request: the cluster, plus the
// original destination for passthrough and the requested host for DNS
// resolution of a wildcard entry.
std::string upstream_key(const policy::RequestPlan& plan, const ConnectionInfo& ci);
// Whether `plan` goes to the upstream `key` names (upstream_key's text),
// without allocating.
bool same_upstream(const policy::RequestPlan& plan, const ConnectionInfo& ci, std::string_view key);

}  // namespace sluice::proxy
