#include "userspace-proxy/proxy/forwarder.h"

#include "userspace-proxy/engine/deadline.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "userspace-proxy/proxy/clusters.h"
#include "userspace-proxy/proxy/tunnel_filter.h"
#include "userspace-proxy/sniff/http_response_head.h"
#include "userspace-proxy/proxy/tls_contexts.h"
#include "userspace-proxy/tls/tls_filter.h"

namespace sluice::proxy {

// Envoy's body for a request its circuit breakers refused (503 UO).
constexpr std::string_view kOverflowBody =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

namespace {

// http2MaxRequests (Envoy's max_requests): the request's count, taken into
// ci.request_token (the one of the request before it given back first);
// false with the reason when the cluster's limit is reached.
bool take_request_token(ConnectionInfo& ci, ProxyCounters* counters, std::string* why) {
  ci.request_token.reset();
  if (ci.max_requests <= 0 || !ci.breaker) return true;
  ci.request_token = ci.breaker->start_request(ci.max_requests);
  if (ci.request_token) return true;
  bump(counters->upstream_overflow);
  *why = "upstream overflow: http2MaxRequests " + std::to_string(ci.max_requests) + " reached";
  return false;
}

// http1MaxPendingRequests counts the request while its upstream connection
// is made too (Envoy's pending requests), with those queued for a slot.
bool take_connect_token(ConnectionInfo& ci, int64_t max_pending, ProxyCounters* counters, std::string* why) {
  ci.connect_token.reset();
  if (max_pending <= 0 || !ci.breaker) return true;
  ci.connect_token = ci.breaker->start_connect(max_pending);
  if (ci.connect_token) return true;
  bump(counters->upstream_overflow);
  *why = "upstream overflow: http1MaxPendingRequests " + std::to_string(max_pending) +
         " reached (requests waiting for a connection)";
  return false;
}

}  // namespace

using engine::SocketAddress;
using engine::Verdict;
using policy::RequestPlan;
using policy::Traffic;

policy::HttpRequest http_request_of(const sniff::HttpRequestHead& head, std::vector<policy::HeaderField>& storage) {
  storage.clear();
  storage.reserve(head.headers.size());
  for (const auto& h : head.headers) storage.push_back(policy::HeaderField{h.name, h.value});
  policy::HttpRequest r;
  r.host = head.host;
  r.authority = head.has_host_header ? head.host_header : head.host;
  r.method = head.method;
  r.path = head.path.empty() ? std::string_view("/") : head.path;
  r.scheme = head.scheme.empty() ? std::string_view("http") : head.scheme;
  r.headers = storage;
  return r;
}

void count_handshake(ProxyCounters* counters, const tls::TlsHandshakeResult& r) {
  if (!counters) return;
  bump(r.ok ? counters->tls_handshakes : counters->tls_handshake_failures);
  if (r.ok && r.resumed) bump(counters->tls_resumed);
}

void append_upstream_key(std::string& key, const RequestPlan& plan, const ConnectionInfo& ci) {
  key.append(policy::to_string(plan.kind)).append("|").append(plan.cluster);
  if (plan.kind != RequestPlan::Kind::kForward) return;
  if (plan.forward.upstream.kind == policy::UpstreamPlan::Kind::kOriginalDestination) {
    key.append("|").append(ci.original_dst_text());
  } else if (plan.forward.upstream.kind == policy::UpstreamPlan::Kind::kDns) {
    for (const auto& ep : plan.forward.upstream.endpoints) key.append("|").append(ep.dns_name);
  }
  if (plan.forward.tls_mode != config::ClientTLSMode::kDisable) key.append("|sni=").append(plan.forward.sni);
}

std::string upstream_key(const RequestPlan& plan, const ConnectionInfo& ci) {
  std::string key;
  append_upstream_key(key, plan, ci);
  return key;
}

bool same_upstream(const RequestPlan& plan, const ConnectionInfo& ci, std::string_view key) {
  // Asked for every later request: built in a buffer the thread keeps.
  thread_local std::string scratch;
  scratch.clear();
  append_upstream_key(scratch, plan, ci);
  return scratch == key;
}

std::unique_ptr<ProxyConnection> Forwarder::new_connection(const engine::AcceptInfo& info) {
  bump(o_.counters->accepted);
  auto c = std::make_unique<ProxyConnection>();
  ConnectionInfo& ci = *c->info;
  ci.start_realtime_ns = realtime_ns();
  ci.start_monotonic_ns = monotonic_ns();
  ci.log = o_.access_log;
  ci.counters = o_.counters;
  ci.metrics = o_.istio_metrics;
  ci.metrics_shard = o_.metrics_shard;
  ci.clusters = o_.clusters;
  // Only the access log shows the client's address: without one, no
  // getpeername per connection (the gateway asks for it: its TLS logs).
  if (o_.access_log) ci.peer = info.peer();
  return c;
}

void Forwarder::note_client_address(ConnectionInfo& ci, const engine::AcceptInfo& info) {
  if (!ci.snapshot || !ci.snapshot->client_address_needed) return;
  if (!ci.peer.valid()) ci.peer = info.peer();
  if (ci.peer.valid()) ci.peer_ip = to_ip_address(ci.peer);
}

policy::PlanRequest Forwarder::plan_request(const ConnectionInfo& ci, Traffic traffic, std::string host,
                                            const policy::HttpRequest* http) {
  policy::PlanRequest pr;
  pr.traffic = traffic;
  pr.original_ip = ci.original_ip;
  pr.port = ci.original_dst.port();
  pr.host = std::move(host);
  pr.http = http;
  pr.pick = next_pick();
  if (ci.peer_ip) {
    pr.source = &*ci.peer_ip;
    pr.source_port = ci.peer.port();
  }
  pr.explain = false;  // the data plane acts on the decision; sluicectl explain shows its steps
  return pr;
}

ProxyConnection* Forwarder::adopt(engine::Connection& conn, std::unique_ptr<ProxyConnection> c) {
  c->waker = conn.waker();
  c->info->conn = &conn;
  ProxyConnection* raw = c.release();
  conn.set_context(reinterpret_cast<uint64_t>(raw));
  return raw;
}

Forwarder::~Forwarder() {
  for (const MirrorJob& j : mirror_jobs_) close(j.writer);
}

namespace {

// Envoy's shadow Host: "-shadow" after the host name, before any port.
std::string shadow_host(std::string_view authority) {
  size_t colon = authority.rfind(':');
  const bool port = colon != std::string_view::npos && colon + 1 < authority.size() &&
                    authority.find(']', colon) == std::string_view::npos &&
                    authority.substr(colon + 1).find_first_not_of("0123456789") == std::string_view::npos;
  if (!port) return std::string(authority) + "-shadow";
  return std::string(authority.substr(0, colon)) + "-shadow" + std::string(authority.substr(colon));
}

// A copy larger than this is not made (it must fit the socketpair's buffer
// in one write: the copy is never blocked on).
constexpr size_t kMaxMirrorBytes = 64 * 1024;

}  // namespace

void Forwarder::mirror_request(ConnectionInfo& ci, const RequestPlan& plan, const sniff::HttpRequestHead& head,
                               std::span<const uint8_t> body, bool may_stream) {
  if (plan.mirrors.empty() || plan.kind != RequestPlan::Kind::kForward || ci.conn == nullptr) return;
  const uint64_t body_length = head.content_length.value_or(0);
  // All of it at hand: copied at once. Else streamed by the guard that
  // forwards the request (Envoy streams the body to the shadow), to every
  // copy.
  const bool whole =
      !head.chunked && body.size() >= body_length && head.head_length + body_length <= kMaxMirrorBytes;
  const bool stream = !whole && may_stream && ci.mirror_sinks.empty();
  if (!head.upgrade.empty() || head.is_connect || (!whole && !stream)) {
    o_.counters->mirror_skipped.fetch_add(plan.mirrors.size(), std::memory_order_relaxed);
    return;
  }
  // As the original goes upstream (the route's rewrite and header
  // operations), then Envoy's shadow Host: one copy for every mirror.
  const RouteEditsPtr edits = route_edits(plan.forward);
  sniff::HeadRewrite rw = edits ? request_rewrite(head, *edits) : sniff::HeadRewrite{};
  if (rw.target.empty() && head.target_form == sniff::TargetForm::kAbsolute) rw.target = head.path;  // origin-form
  const std::string host = shadow_host(!rw.host.empty()          ? rw.host
                                       : head.has_host_header ? head.host_header
                                                              : head.host);
  rw.host = host;
  std::string copy = sniff::rebuild_request_head(head, rw);
  if (whole) copy.append(reinterpret_cast<const char*>(body.data()), body_length);
  for (const auto& mirror : plan.mirrors) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) != 0) {
      bump(o_.counters->mirror_skipped);
      continue;
    }
    int sink = -1;
    if (stream) {
      // A streamed body may run ahead of the copy's connection (it connects
      // to its upstream meanwhile): room for that, up to net.core.wmem_max
      // (the kernel doubles what is asked, within that cap). More than that
      // ahead, the copy is cut short (Envoy resets a shadow past its buffer
      // limit).
      const int want = 4 << 20;
      setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
    }
    if (send(sp[0], copy.data(), copy.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(copy.size()) ||
        (stream && (sink = fcntl(sp[0], F_DUPFD_CLOEXEC, 0)) < 0)) {
      close(sp[0]);
      close(sp[1]);
      bump(o_.counters->mirror_skipped);
      continue;
    }
    // The writer stays open, without a FIN, until the copy's connection
    // closes: an EOF would reach the upstream as a half-close (and cost the
    // pooled connection); the copy's guard ends it after the one response.
    // The sink is a second descriptor of it: closing that one sends nothing;
    // shutting it down (a body cut short) ends the copy's request.
    if (stream) ci.mirror_sinks.add(sink);
    const uint64_t tag = next_mirror_tag_++;
    mirror_jobs_.push_back(MirrorJob{tag, mirror, ci.snapshot, ci.original_dst, sp[0]});
    bump(o_.counters->mirrored);
    ci.conn->spawn(sp[1], tag);
  }
}

void Forwarder::on_spawn_dropped(uint64_t tag) {
  auto it = std::find_if(mirror_jobs_.begin(), mirror_jobs_.end(), [tag](const MirrorJob& j) { return j.tag == tag; });
  if (it == mirror_jobs_.end()) return;
  close(it->writer);
  mirror_jobs_.erase(it);
}

Verdict Forwarder::accept_mirror(engine::Connection& conn, const engine::AcceptInfo& info) {
  // Spawned in this order (usually the front one).
  auto it = std::find_if(mirror_jobs_.begin(), mirror_jobs_.end(),
                         [&info](const MirrorJob& j) { return j.tag == info.spawn_tag(); });
  if (it == mirror_jobs_.end()) return Verdict::close();
  MirrorJob job = std::move(*it);
  mirror_jobs_.erase(it);
  auto c = std::make_unique<ProxyConnection>();
  ConnectionInfo& ci = *c->info;
  ci.start_realtime_ns = realtime_ns();
  ci.start_monotonic_ns = monotonic_ns();
  ci.counters = o_.counters;  // no access log line, no Istio metrics: Envoy's shadows have none
  ci.snapshot = std::move(job.snapshot);
  ci.original_dst = job.original_dst;
  ci.original_ip = to_ip_address(job.original_dst);
  c->mirror_plan = std::move(job.plan);
  c->mirror_writer = job.writer;
  c->mode = sniff::SniffMode::kHttp;
  c->http = std::make_unique<sniff::HttpRequestParser>();
  adopt(conn, std::move(c));
  return Verdict::need_more(o_.detection_timeout);
}

Verdict Forwarder::mirror_data(ProxyConnection& c, std::span<const uint8_t> pending) {
  std::span<const uint8_t> fresh = pending.subspan(std::min(c.fed, pending.size()));
  c.fed = pending.size();
  auto r = c.http->feed(fresh);
  if (r.status == sniff::HttpParseStatus::kNeedMore) return Verdict::need_more(o_.detection_timeout);
  if (r.status != sniff::HttpParseStatus::kDone) return Verdict::close();
  RequestPlan plan = *c.mirror_plan;
  return execute_http(c, c.http->head(), std::move(plan), pending);
}

Verdict Forwarder::on_wake(engine::Connection& conn, std::span<const uint8_t> pending) {
  ProxyConnection& c = state(conn);
  if (!c.decided) return Verdict::close();
  return proceed(c, pending);
}

Verdict Forwarder::proceed(ProxyConnection& c, std::span<const uint8_t> pending, bool timer_fired) {
  if (c.fault_until_ns == 0) return resume(c, pending);
  // The delay's own timer ends it; a wake meant for something else, or
  // bytes (without a waker), can come early: wait out the rest.
  const int64_t left_ns = timer_fired ? 0 : c.fault_until_ns - monotonic_ns();
  if (left_ns > 0) {
    auto left = std::chrono::milliseconds(left_ns / 1'000'000 + 1);
    return c.waker ? Verdict::defer(left) : Verdict::need_more(left);
  }
  c.fault_until_ns = 0;
  if (std::exchange(c.mirror_after_delay, false)) mirror_pending_request(c, pending);
  return carry_out(c, pending);
}

void Forwarder::mirror_pending_request(ProxyConnection& c, std::span<const uint8_t> pending) {
  if (c.plan.mirrors.empty() || c.plan.kind != RequestPlan::Kind::kForward) return;
  sniff::HttpRequestParser parser;
  if (parser.feed(pending).status != sniff::HttpParseStatus::kDone) {
    o_.counters->mirror_skipped.fetch_add(c.plan.mirrors.size(), std::memory_order_relaxed);
    return;
  }
  const sniff::HttpRequestHead& head = parser.head();
  mirror_request(*c.info, c.plan, head, pending.subspan(std::min(head.head_length, pending.size())),
                 /*may_stream=*/true);
}

Verdict Forwarder::fault_delay(ProxyConnection& c) {
  bump(o_.counters->faults_delayed);
  const auto delay = std::exchange(c.plan.fault_delay, std::chrono::milliseconds(0));
  c.fault_until_ns = monotonic_ns() + static_cast<int64_t>(delay.count()) * 1'000'000;
  // Without a waker (unit tests' fake connections) the timeout alone calls back.
  return c.waker ? Verdict::defer(delay) : Verdict::need_more(delay);
}

void Forwarder::on_upstream_connected(engine::Connection& conn, const SocketAddress& upstream) {
  ProxyConnection& c = state(conn);
  c.info->upstream_host = upstream.to_string();
  c.info->upstream_address = upstream;
  c.info->bound_upstream = upstream;
  if (!c.info->http) c.info->record_tcp_open();
  // A connect that works is a success for outlier detection only where it is
  // the final word (TCP proxying: Envoy's LocalOriginConnectSuccessFinal);
  // for HTTP the responses speak (Envoy ignores a mere connect success
  // there, so it does not wipe a run of 5xx and resets).
  // Through a tunnel the final word is the proxy's answer (TunnelFilter).
  if (o_.clusters && c.plan.kind == RequestPlan::Kind::kForward && !c.info->http && !c.plan.forward.policy.tunnel) {
    o_.clusters->report_connect(c.plan.cluster, upstream, true);
  }
}

namespace {
// The route timeout runs through a retry's back-off (it spans the tries): a
// wait past a retried request's deadline ends just after it (the engine's
// clock may be a loop behind); resume() then answers 504 UT.
std::chrono::milliseconds within_route_deadline(std::chrono::milliseconds backoff, int64_t deadline_ns) {
  if (backoff.count() <= 0 || deadline_ns == INT64_MAX) return backoff;
  const int64_t left_ms = (deadline_ns - monotonic_ns()) / 1'000'000 + 5;
  return std::min(backoff, std::chrono::milliseconds(std::max<int64_t>(1, left_ms)));
}
}  // namespace

// Every failed attempt of the engine's walk over the decision's addresses.
// Outlier detection hears each (Envoy counts every connect failure against
// its host). For an HTTP request the next address is a retry, as Envoy's
// router makes one on connect-failure: within the cluster's maxRetries
// (over it the failure stands, flagged UO) and after the route's jittered
// back-off. A TCP connection walks the balancer's list at once.
std::chrono::milliseconds Forwarder::on_connect_attempt_failed(engine::Connection& conn, const SocketAddress& upstream,
                                                               bool /*timed_out*/, bool another_left) {
  ProxyConnection& c = state(conn);
  ConnectionInfo& ci = *c.info;
  if (o_.clusters && c.plan.kind == RequestPlan::Kind::kForward && upstream.valid()) {
    o_.clusters->report_connect(c.plan.cluster, upstream, false);
  }
  if (!another_left || !ci.http) return std::chrono::milliseconds(0);
  // The request's route timeout passed meanwhile: no retry, Envoy's 504 UT
  // (the guard's on_connect_failed answers it).
  if (ci.connect_deadline_ns != INT64_MAX && monotonic_ns() >= ci.connect_deadline_ns) {
    ci.connect_route_timeout = true;
    return engine::ConnectionHandler::kStopConnecting;
  }
  if (ci.max_retries > 0 && ci.breaker) {
    // One count per request: its earlier retry's goes back first, as
    // Envoy's shouldRetry resets the retry before checking the budget.
    ci.retry_token.reset();
    ci.retry_token = ci.breaker->start_retry(ci.max_retries);
    if (!ci.retry_token) {
      ci.connect_retry_overflow = true;
      bump(o_.counters->retry_overflow);
      return engine::ConnectionHandler::kStopConnecting;
    }
  }
  ++ci.connect_retries;
  bump(o_.counters->retries);
  // The request's retry number (a response retry's walk continues its count).
  return within_route_deadline(c.plan.forward.retry.backoff(ci.first_attempt - 1 + ci.connect_retries, next_pick()),
                               ci.connect_deadline_ns);
}

Verdict Forwarder::protocol_error(ProxyConnection& c, int status) {
  bump(o_.counters->protocol_errors);
  c.logged = true;
  AccessLogEntry e = c.info->base_entry();
  e.response_flags = "DPE";
  e.response_code_details = "protocol_error";
  c.info->log_entry(e);
  if (status == 0) return Verdict::close();
  c.reply = local_reply(status, realtime_ns());
  return Verdict::close(bytes_of(c.reply));
}

Verdict Forwarder::execute_http(ProxyConnection& c, const sniff::HttpRequestHead& head, RequestPlan plan,
                                std::span<const uint8_t> pending) {
  if (!c.mirror_plan) bump(o_.counters->http_requests);  // a copy is counted as `mirrored`
  ConnectionInfo& ci = *c.info;
  ci.http = true;
  ci.requests = 1;
  AccessLogEntry e = request_entry(ci, head);
  // The connection's first request started with it; one after a kept local
  // answer or a released upstream starts now (request_entry's time).
  if (ci.logged_in == 0) e.start_realtime_ns = ci.start_realtime_ns;
  e.upstream_cluster = plan.cluster;
  e.route_name = plan.route_name;
  e.response_flags = plan.response_flags == "-" ? "" : plan.response_flags;
  ci.pending_requests.push_back({std::move(e), true});
  // A local answer to it may keep the connection (Forwarder::answer).
  c.answerable = !c.moved && !c.mirror_plan && local_reply_keeps_connection(head) ? head.head_length : 0;
  c.head_request = head.method == "HEAD";
  c.host = std::string(head.host);
  c.traffic = Traffic::kHttp;
  if (!plan.mirrors.empty() && plan.fault_delay.count() > 0) c.mirror_after_delay = true;
  else if (!plan.mirrors.empty()) {
    mirror_request(ci, plan, head, pending.subspan(std::min(head.head_length, pending.size())), /*may_stream=*/true);
  }
  return execute(c, std::move(plan), pending);
}

Verdict Forwarder::execute(ProxyConnection& c, RequestPlan plan, std::span<const uint8_t> pending) {
  ConnectionInfo& ci = *c.info;
  c.decided = true;
  ci.cluster = plan.cluster;
  ci.outlier_detection = plan.forward.policy.outlier_detection != nullptr;
  ci.route_name = plan.route_name;
  ci.tcp_flags = plan.response_flags == "-" ? "" : plan.response_flags;
  ci.upstream_key = upstream_key(plan, ci);
  c.plan = std::move(plan);
  ci.first_retry = c.plan.forward.retry;
  if (c.plan.fault_delay.count() > 0) return fault_delay(c);
  return carry_out(c, pending);
}

Verdict Forwarder::carry_out(ProxyConnection& c, std::span<const uint8_t> pending) {
  ConnectionInfo& ci = *c.info;
  switch (c.plan.kind) {
    case RequestPlan::Kind::kLocalReply: {
      o_.counters->count(c.plan.status == 502 ? policy::Action::kLocalReply502 : policy::Action::kRoute);
      if (c.plan.response_code_details == "fault_filter_abort") bump(o_.counters->faults_aborted);
      if (!ci.pending_requests.empty()) {
        AccessLogEntry& e = ci.pending_requests.front().entry;
        e.http->response_code = c.plan.status;
        e.response_code_details = c.plan.response_code_details;
      }
      // A request carried on to a later upstream (a fault abort after its
      // delay) is the first of the pending bytes: its answer has a body
      // unless it is a HEAD's.
      if (c.moved) c.head_request = pending.size() >= 5 && std::memcmp(pending.data(), "HEAD ", 5) == 0;
      return answer(c, static_cast<int>(c.plan.status), c.plan.body, c.plan.location, pending);
    }
    case RequestPlan::Kind::kClose:
      o_.counters->count(policy::Action::kBlackhole);
      // Istio has no route for it: its TCP proxy to BlackHoleCluster (or no
      // filter chain) logs a TCP line ("- - -" 0 UH/NR), written in on_close.
      ci.pending_requests.clear();
      ci.http = false;
      return Verdict::close();
    case RequestPlan::Kind::kForward:
      if (!c.mirror_plan) {
        o_.counters->count(c.plan.cluster == "PassthroughCluster" ? policy::Action::kPassthrough
                                                                   : policy::Action::kRoute);
      }
      break;
  }
  c.dns_deadline = std::chrono::steady_clock::now() + o_.dns_wait;
  return resume(c, pending);
}

Verdict Forwarder::route_timed_out(ProxyConnection& c, std::span<const uint8_t> pending) {
  for (auto& r : c.info->pending_requests) {
    r.entry.response_flags = policy::merge_response_flags(r.entry.response_flags, "UT");
    r.entry.http->response_code = 504;
    r.entry.response_code_details = "upstream_response_timeout";
  }
  return answer(c, 504, "upstream request timeout", {}, pending);
}

Verdict Forwarder::resume(ProxyConnection& c, std::span<const uint8_t> pending) {
  // A request that waited for a connection slot, its client gone since:
  // given up before anything else (a DNS lookup) is started for it.
  if (c.downstream_ended && c.queued_since_ns != 0) return give_up_waiting(c);
  // A retry whose route timeout ran out during its back-off (or its DNS
  // wait): Envoy's 504 UT at the deadline, without a connect.
  if (c.info->http && c.info->first_attempt > 1 && monotonic_ns() >= c.info->retry_deadline_ns) {
    return route_timed_out(c, pending);
  }
  const policy::UpstreamPlan& up = c.plan.forward.upstream;
  if (!up.error.empty()) return no_upstream(c, "UH", up.error, 503, pending);
  std::vector<SocketAddress> addrs;
  std::vector<uint32_t> weights;
  bool waiting = false;
  std::string dns_error;
  for (const auto& ep : up.endpoints) {
    if (ep.address) {
      addrs.push_back(to_socket_address(*ep.address, ep.port));
      weights.push_back(ep.weight);
      continue;
    }
    DnsAnswer answer;
    if (o_.dns && o_.dns->lookup_cached(ep.dns_name, &answer)) {
      if (!answer.ok()) {
        dns_error = ep.dns_name + ": " + answer.error;
        continue;
      }
      size_t take = up.one_answer_at_a_time ? 1 : answer.addresses.size();
      for (size_t i = 0; i < take && i < answer.addresses.size(); ++i) {
        addrs.push_back(to_socket_address(answer.addresses[i], ep.port));
        weights.push_back(ep.weight);
      }
    } else if (o_.dns) {
      waiting = true;
      if (!c.dns_started) {
        // The answer arrives on the resolver's thread: it wakes this
        // connection's worker, which calls on_wake -> resume (a wake for a
        // connection that is gone by then is ignored by the engine).
        engine::Waker waker = c.waker;
        o_.dns->resolve(ep.dns_name, [waker](const DnsAnswer&) { waker.wake(); });
      }
    } else {
      dns_error = ep.dns_name + ": no DNS resolver";
    }
  }
  c.dns_started = true;
  if (waiting) {
    auto now = std::chrono::steady_clock::now();
    if (now < c.dns_deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.dns_deadline - now);
      // A retry waits for the answer no longer than its route deadline:
      // then the 504 UT above (an answer arriving first wakes it sooner).
      if (c.info->http && c.info->first_attempt > 1) left = within_route_deadline(left, c.info->retry_deadline_ns);
      // Without a waker (unit tests' fake connections) poll the cache.
      if (!c.waker) return Verdict::need_more(std::min(left + std::chrono::milliseconds(1), o_.dns_recheck));
      return Verdict::defer(left + std::chrono::milliseconds(1));
    }
  }
  if (addrs.empty()) {
    bump(o_.counters->dns_failures);
    return no_upstream(c, "UH", dns_error.empty() ? "DNS answer timed out" : dns_error, 503, pending);
  }

  // A connection going again (a retry, a later request moved or delayed)
  // leaves the upstream its lease was for: give it back before taking one,
  // or maxConnections would count the connection against itself (and a
  // move to passthrough would keep the old cluster's slot taken).
  c.info->cluster_lease.reset();
  // Passthrough (and NONE resolution) goes to the one original destination;
  // clusters balance over their endpoints.
  // Envoy's circuit breaker first (per cluster, an ORIGINAL_DST one of
  // resolution NONE too): a slot of maxConnections, or the cluster's queue.
  std::shared_ptr<ConnectionSlot> slot;
  if (o_.clusters) {
    if (std::optional<Verdict> wait = admit(c, pending, &slot)) return std::move(*wait);
    // http2MaxRequests: this request counts while under way (a retry or a
    // move gives its earlier count back first).
    if (c.info->http) {
      if (std::string why; !take_request_token(*c.info, o_.counters, &why)) return no_upstream(c, "UO", why, 503, pending);
    }
  }
  std::vector<SocketAddress> order;
  if (up.kind == policy::UpstreamPlan::Kind::kOriginalDestination || !o_.clusters) {
    order = std::move(addrs);
  } else {
    Clusters::Choice choice =
        o_.clusters->pick(c.plan.cluster, c.plan.forward.policy, addrs, weights, c.plan.forward.hash_key,
                          c.info->snapshot ? c.info->snapshot->generation : 0);
    if (choice.original_destination) {
      order.push_back(c.info->original_dst);
    } else if (choice.no_healthy) {
      return no_upstream(c, "UH", "no healthy upstream (" + choice.reason + ")", 503, pending);
    } else {
      order = std::move(choice.order);
    }
  }
  c.info->cluster_lease = std::move(slot);

  // A retry goes elsewhere when it can (Envoy's previous_hosts predicate,
  // as Istio configures it): the endpoints tried before go last.
  if (!c.info->tried_upstreams.empty() && order.size() > 1) {
    const auto& tried = c.info->tried_upstreams;
    std::stable_partition(order.begin(), order.end(), [&tried](const SocketAddress& a) {
      return std::find(tried.begin(), tried.end(), a) == tried.end();
    });
  }
  // HTTP: the route's connect-failure retries, over the endpoints in the
  // balancer's order (the same one again when there are fewer); each after
  // the back-off, within maxRetries (on_connect_attempt_failed).
  c.info->connect_retries = 0;
  c.info->connect_retry_overflow = false;
  c.info->connect_route_timeout = false;
  if (c.info->http && !order.empty()) {
    // One count of tries for the request, as Envoy's retries_remaining_: a
    // response retry's walk has only the tries left.
    const uint32_t planned = c.plan.forward.connect_attempts;
    const uint32_t spent = c.info->first_attempt - 1;
    const size_t attempts = std::min<size_t>(engine::Verdict::kMaxUpstreams, planned > spent ? planned - spent : 1);
    std::vector<SocketAddress> tries;
    tries.reserve(attempts);
    for (size_t i = 0; i < attempts; ++i) tries.push_back(order[i % order.size()]);
    order = std::move(tries);
  }
  // Requests held behind this one are checked against it before the
  // connection is up (consistentHash: hashes_here).
  if (!order.empty()) c.info->bound_upstream = order.front();
  bool ok = true;
  std::string error;
  std::string pool_key;
  engine::StreamFilterPtr filter = build_filter(c, pending, &ok, &error, &pool_key);
  if (!ok) {
    if (!error.empty()) return no_upstream(c, "UF", error, 503, pending);
    // The first request's body, as far as the first read holds it, is
    // malformed (chunked framing): forward nothing at all.
    c.info->flush_requests();
    c.logged = true;
    return Verdict::close();
  }
  // Pooled upstream connections are interchangeable when they share the
  // cluster, endpoint and TLS settings (build_filter's key names the latter).
  if (!pool_key.empty() && !order.empty()) pool_key = c.plan.cluster + "|" + order.front().to_string() + pool_key;
  // The plan's connection settings (policy::connection_settings: the mesh
  // config's connectTimeout and tcpKeepalive under the DestinationRule's
  // connectionPool): connect timeout per attempt (none: the engine's),
  // keep-alive on the upstream socket, how long a pooled upstream waits idle.
  const policy::ConnectionSettings& cs = c.plan.forward.connection;
  const std::chrono::milliseconds connect_timeout = cs.connect_timeout.value_or(std::chrono::milliseconds(0));
  // (kNoTimeout when the rule turns it off: ConnectionSettings::kNoTimeout.)
  static_assert(policy::ConnectionSettings::kNoTimeout == engine::Verdict::kNoTimeout);
  const std::chrono::milliseconds pool_idle = cs.idle_timeout.value_or(std::chrono::milliseconds(0));
  engine::TcpKeepalive keepalive;
  keepalive.enabled = cs.keepalive;
  keepalive.probes = cs.keepalive_probes;
  keepalive.time_s = cs.keepalive_time_s;
  keepalive.interval_s = cs.keepalive_interval_s;
  // A socket is opened with its keep-alive: only one opened alike serves.
  if (keepalive.enabled && !pool_key.empty()) {
    pool_key += "|ka=" + std::to_string(keepalive.probes) + "/" + std::to_string(keepalive.time_s) + "/" +
                std::to_string(keepalive.interval_s);
  }
  // http1MaxPendingRequests: pending while a new connection is made, not
  // when an idle pooled one serves it at once (Envoy checks only without a
  // ready one). Without maxConnections the count is taken here; with it
  // admit() took it (an adopted upstream ends it in the guard's
  // adopt_upstream, at once).
  if (c.info->http && cs.max_connections <= 0 && cs.max_pending_requests > 0 &&
      !(!pool_key.empty() && c.info->conn != nullptr && c.info->conn->pool_has_idle(pool_key))) {
    if (std::string why; !take_connect_token(*c.info, cs.max_pending_requests, o_.counters, &why)) {
      return no_upstream(c, "UO", why, 503, pending);
    }
  }
  Verdict v = Verdict::connect(std::span<const SocketAddress>(order), std::move(filter))
                  .with_pool(std::move(pool_key))
                  .with_pool_idle_timeout(pool_idle)
                  .with_connect_timeout(connect_timeout)
                  .with_tcp_keepalive(keepalive);
  // A TCP proxy connection (opaque TCP, TLS passed through): Envoy's
  // tcp_proxy idle_timeout and max_downstream_connection_duration from
  // connectionPool.tcp. An HTTP connection keeps the proxy's idle timeout
  // (its connection manager's); the rule's apply to its upstreams above.
  if (!c.info->http) {
    if (cs.tcp_idle_timeout) v = std::move(v).with_idle_timeout(*cs.tcp_idle_timeout);
    if (cs.max_connection_duration) v = std::move(v).with_max_duration(*cs.max_connection_duration);
  }
  return v;
}

Verdict Forwarder::give_up_waiting(ProxyConnection& c) {
  ConnectionInfo& ci = *c.info;
  if (c.ticket) c.ticket->leave();
  c.queued_since_ns = 0;
  for (auto& r : ci.pending_requests) {
    r.entry.response_flags = policy::merge_response_flags(r.entry.response_flags, "DC");
    r.entry.response_code_details = "downstream_remote_disconnect";
  }
  ci.flush_requests();
  c.logged = true;
  return Verdict::close();
}

std::optional<Verdict> Forwarder::admit(ProxyConnection& c, std::span<const uint8_t> pending,
                                        std::shared_ptr<ConnectionSlot>* slot) {
  ConnectionInfo& ci = *c.info;
  const policy::ConnectionSettings& cs = c.plan.forward.connection;
  const int64_t max_connections = cs.max_connections;
  // The guard's limits for this upstream (http2MaxRequests, maxRetries).
  ci.max_requests = cs.max_requests;
  ci.max_retries = cs.max_retries;
  // The cluster's breaker: looked up (a lock and a map) only when the
  // connection's cluster changes.
  if (!cs.has_circuit_breakers()) {
    ci.breaker.reset();
  } else if (!ci.breaker || ci.breaker_cluster != c.plan.cluster) {
    ci.breaker = o_.clusters->breaker(c.plan.cluster);
    ci.breaker_cluster = c.plan.cluster;
  }
  ci.queued_ns = 0;
  ci.connect_token.reset();
  if (max_connections <= 0) {
    c.ticket.reset();
    c.queued_since_ns = 0;
    return std::nullopt;
  }
  CircuitBreaker::Limits limits;
  limits.max_connections = max_connections;
  // http1MaxPendingRequests bounds the queue (0: Istio's default, none).
  limits.max_pending = cs.max_pending_requests;
  // Envoy's TCP proxy does not queue for a connection (one that ends may be
  // a long way off): 503 UO's TCP form, closed at once.
  limits.may_wait = ci.http;
  limits.counts_connect = ci.http && cs.max_pending_requests > 0;
  limits.generation = ci.snapshot ? ci.snapshot->generation : 0;
  if (!c.ticket) c.ticket = std::make_unique<SlotTicket>();
  CircuitBreaker::Admission a = ci.breaker->admit(limits, c.waker, *c.ticket);
  const int64_t now = monotonic_ns();
  switch (a.kind) {
    case CircuitBreaker::Admission::Kind::kAdmitted:
      if (c.queued_since_ns != 0) ci.queued_ns = now - std::exchange(c.queued_since_ns, 0);
      *slot = std::move(a.slot);
      ci.connect_token = std::move(a.connect_token);
      return std::nullopt;
    case CircuitBreaker::Admission::Kind::kOverflow:
      // Envoy's upstream_rq_pending_overflow: 503 UO.
      bump(o_.counters->upstream_overflow);
      c.queued_since_ns = 0;
      return no_upstream(c, "UO", "upstream overflow: " + a.reason, 503, pending);
    case CircuitBreaker::Admission::Kind::kQueued:
      break;
  }
  if (c.downstream_ended) return give_up_waiting(c);
  if (c.queued_since_ns == 0) {
    c.queued_since_ns = now;
    bump(o_.counters->upstream_queued);
  }
  // The DNS answer this plan resolved may expire while it waits: looked
  // up (and, if need be, asked for) afresh when it is woken.
  c.dns_started = false;
  c.dns_deadline = std::chrono::steady_clock::now() + o_.dns_wait;
  // An HTTP request's route timeout runs while it waits (Envoy's runs from
  // the request's end; a retry's from its first try's): past it, 504 UT as
  // for an upstream too slow.
  int64_t left_ns = 0;  // 0: no deadline
  if (ci.http && c.plan.forward.timeout && c.plan.forward.timeout->count() > 0) {
    int64_t deadline = c.queued_since_ns + static_cast<int64_t>(c.plan.forward.timeout->count()) * 1'000'000;
    if (ci.first_attempt > 1) deadline = std::min(deadline, ci.retry_deadline_ns);
    left_ns = deadline - now;
    if (left_ns <= 0) {
      c.ticket->leave();
      c.queued_since_ns = 0;
      return route_timed_out(c, pending);
    }
  }
  const auto left = std::chrono::milliseconds(left_ns / 1'000'000 + 1);
  // Without a waker (unit tests' fake connections) the queue is polled.
  if (!c.waker) return Verdict::need_more(left_ns > 0 ? std::min(left, o_.dns_recheck) : o_.dns_recheck);
  // A FIN from the client ends the wait (on_downstream_eof: given up above).
  return Verdict::defer(left_ns > 0 ? left : std::chrono::milliseconds(0)).ended_by_eof();
}

bool Forwarder::hashes_here(const RequestPlan& plan, const ConnectionInfo& ci) const {
  // consistentHash: a later request whose key the ring puts on another
  // endpoint moves there; one that lands here (or has no key) stays.
  if (!plan.forward.hash_key || !o_.clusters || !ci.bound_upstream.valid()) return true;
  std::optional<SocketAddress> home = o_.clusters->ring_endpoint(plan.cluster, *plan.forward.hash_key);
  return !home || *home == ci.bound_upstream;
}

void Forwarder::install_check_later(ProxyConnection& c) {
  ConnectionInfo* ci = c.info.get();
  ProxyCounters* counters = o_.counters;
  // The filter (and this function object) may outlive the handler state by
  // a little; the plan it compares with is copied into the closure.
  std::string key = ci->upstream_key;
  ci->check_later = [this, ci, counters, key](const sniff::HttpRequestHead& head, AccessLogEntry& e) {
    RequestPlan plan = plan_later(*ci, head);
    e.upstream_cluster = plan.cluster;
    e.route_name = plan.route_name;
    e.response_flags = plan.response_flags == "-" ? "" : plan.response_flags;
    LaterRequest out;
    // A fault delay holds the request, so it goes the way of a move to
    // another upstream (on_new_upstream waits, then carries the plan out).
    const bool delayed = plan.fault_delay.count() > 0;
    // A copy for the route's mirror, as it is decided (its body, not at
    // hand here, is streamed by the guard, which decides later requests as
    // it forwards them); a delayed one when its delay ends.
    if (!plan.mirrors.empty() && !delayed) mirror_request(*ci, plan, head, {}, /*may_stream=*/true);
    switch (delayed ? RequestPlan::Kind::kForward : plan.kind) {
      case RequestPlan::Kind::kLocalReply:
        counters->count(plan.status == 502 ? policy::Action::kLocalReply502 : policy::Action::kRoute);
        if (plan.response_code_details == "fault_filter_abort") bump(counters->faults_aborted);
        e.http->response_code = plan.status;
        e.response_code_details = plan.response_code_details.empty() ? "direct_response" : plan.response_code_details;
        out.kind = LaterRequest::Kind::kLocalReply;
        out.status = plan.status;
        out.body = std::move(plan.body);
        out.location = std::move(plan.location);
        return out;
      case RequestPlan::Kind::kClose:
        counters->count(policy::Action::kBlackhole);
        out.kind = LaterRequest::Kind::kClose;
        return out;
      case RequestPlan::Kind::kForward:
        // Counted as a first request's is (a delayed one when carried out).
        if (!delayed) {
          counters->count(plan.cluster == "PassthroughCluster" ? policy::Action::kPassthrough : policy::Action::kRoute);
        }
        break;
    }
    // Another upstream: the connection moves there once the responses due
    // from this one are in (Forwarder::on_new_upstream goes on with the plan).
    // maxRequestsPerConnection 1: an upstream connection carries one request
    // (Envoy closes it after the response), so every later request gets a
    // connection of its own, balanced on its own.
    const bool one_request = plan.forward.connection.max_requests_per_connection == 1;
    ci->later_moves = !same_upstream(plan, *ci, key) || !hashes_here(plan, *ci);
    out.kind = delayed || one_request || ci->later_moves ? LaterRequest::Kind::kSwitch : LaterRequest::Kind::kForward;
    if (out.kind == LaterRequest::Kind::kForward) out.edits = route_edits(plan.forward);
    // http2MaxRequests: on the same upstream, the request counts while
    // under way; with the cluster's limit reached, Envoy's 503 UO.
    if (out.kind == LaterRequest::Kind::kForward) {
      if (std::string why; !take_request_token(*ci, counters, &why)) {
        e.response_flags = policy::merge_response_flags(e.response_flags, "UO");
        e.http->response_code = 503;
        e.response_code_details = "upstream_reset_before_response_started{overflow}";
        e.upstream_transport_failure_reason = std::move(why);
        out = LaterRequest{};
        out.kind = LaterRequest::Kind::kLocalReply;
        out.status = 503;
        out.body = kOverflowBody;
        return out;
      }
    } else {
      ci->request_token.reset();
    }
    // A retry of this request (or the move to its upstream) goes on with it.
    if (ci->later_plan) *ci->later_plan = std::move(plan);
    else ci->later_plan = std::make_unique<RequestPlan>(std::move(plan));
    return out;
  };
}

Verdict Forwarder::on_new_upstream(engine::Connection& conn, std::span<const uint8_t> pending) {
  ProxyConnection& c = state(conn);
  ConnectionInfo& ci = *c.info;
  const ConnectionInfo::NextUpstream why = std::exchange(ci.next_upstream, ConnectionInfo::NextUpstream::kNone);
  c.moved = true;
  std::chrono::milliseconds backoff{0};
  switch (why) {
    case ConnectionInfo::NextUpstream::kNone:
      return Verdict::close();
    case ConnectionInfo::NextUpstream::kRelease:
      // The upstream is done with; the client's connection goes on. Held
      // bytes beyond the engine's window (a large upload pipelined behind
      // the last request) go through the next guard whole, as after a move.
      c.moved = pending.size() >= o_.sniff_window;
      await_next_request(c);
      return Verdict::respond({}, 0, std::chrono::milliseconds(0));
    case ConnectionInfo::NextUpstream::kSwitch:
      if (!ci.later_plan) return Verdict::close();
      // A later request with a fault comes this way even for the same
      // upstream (the delay holds the connection; an abort answers it).
      c.plan = std::move(*ci.later_plan);
      if (ci.later_moves) bump(o_.counters->upstream_changed);
      ci.later_plan.reset();
      ci.first_attempt = 1;
      ci.tried_upstreams.clear();
      break;
    case ConnectionInfo::NextUpstream::kRetry: {
      bump(o_.counters->retries);
      // The response (or reset) counts against the endpoint that gave it
      // (outlier detection's consecutive 5xx).
      if (o_.clusters && ci.upstream_address.valid()) {
        o_.clusters->report_response(c.plan.cluster, ci.upstream_address, ci.retry_status == 0 ? 503 : ci.retry_status);
      }
      // previous_hosts is per request: a first retry starts the list afresh
      // (an earlier request's tries on this connection do not count).
      if (ci.first_attempt == 2) ci.tried_upstreams.clear();
      ci.tried_upstreams.push_back(ci.upstream_address);
      // A later request's retry goes on with its own plan; the first
      // request's is c.plan already.
      if (ci.later_plan) {
        c.plan = std::move(*ci.later_plan);
        ci.later_plan.reset();
      }
      // Envoy's back-off between tries (retries.backoff its base).
      backoff = c.plan.forward.retry.backoff(ci.first_attempt - 1, next_pick());
      break;
    }
  }
  // The request to carry on is the first of the new upstream's: its log
  // entry is the newest pending one.
  if (!ci.pending_requests.empty()) ci.pending_requests.back().first = true;
  ci.first_response_code = 0;
  ci.response_reported = false;
  ci.first_retry = c.plan.forward.retry;
  ci.cluster = c.plan.cluster;
  ci.outlier_detection = c.plan.forward.policy.outlier_detection != nullptr;
  ci.route_name = c.plan.route_name;
  ci.upstream_key = upstream_key(c.plan, ci);
  ci.upstream_host.clear();
  ci.upstream_failure.clear();
  c.decided = true;
  c.dns_started = false;
  backoff = within_route_deadline(backoff, ci.retry_deadline_ns);
  c.dns_deadline = std::chrono::steady_clock::now() + o_.dns_wait + backoff;
  // A later request's fault: its delay first (carry_out then starts the
  // DNS wait afresh), or its abort's answer.
  if (c.plan.fault_delay.count() > 0) {
    c.mirror_after_delay = !c.plan.mirrors.empty();
    return fault_delay(c);
  }
  if (c.plan.kind != RequestPlan::Kind::kForward) return carry_out(c, pending);
  if (backoff.count() > 0) {
    // on_detection_timeout (or a stray wake) resumes: both call resume().
    return c.waker ? Verdict::defer(backoff) : Verdict::need_more(backoff);
  }
  return resume(c, pending);
}

engine::StreamFilterPtr Forwarder::build_filter(ProxyConnection& c, std::span<const uint8_t> pending, bool* ok,
                                                std::string* error, std::string* pool_key) {
  ConnectionInfo& ci = *c.info;
  engine::StreamFilterPtr inner;
  const int32_t max_requests_per_connection = c.plan.forward.connection.max_requests_per_connection;
  // Envoy pools HTTP/1.1 upstream connections across downstream ones;
  // maxRequestsPerConnection 1 turns keep-alive to the upstream off.
  const bool pooled = ci.http && !c.terminator && max_requests_per_connection != 1;
  if (ci.http) {
    install_check_later(c);
    // Held bytes beyond what the handler was shown (a later upstream's, or a
    // full window) all go through the guard, never forwarded unread.
    const bool more_held = c.moved || pending.size() >= o_.sniff_window;
    auto guard = std::make_unique<HttpRequestGuard>(c.info, pending, pooled, route_edits(c.plan.forward), more_held);
    if (c.mirror_plan) guard->discard_responses();
    // Pooled or not (a TLS-terminating gateway's upstream is its client's
    // own): the upstream connection's limit.
    if (max_requests_per_connection >= 1) {
      guard->set_max_requests_per_connection(static_cast<uint32_t>(max_requests_per_connection));
    }
    // connectionPool.tcp.maxConnectionDuration: Envoy's
    // max_connection_duration of an HTTP cluster's upstream connections.
    if (const auto& d = c.plan.forward.connection.max_connection_duration; d && d->count() > 0) {
      guard->set_max_connection_duration(engine::saturating_ns(*d));
    }
    if (!guard->first_bytes_ok()) {
      *ok = false;
      return nullptr;
    }
    inner = std::move(guard);
  }
  const policy::ForwardPlan& f = c.plan.forward;
  // DestinationRule trafficPolicy.tunnel: a TCP-proxied connection goes
  // through the proxy the rule's host names (Istio tunnels tcp[] and tls[]
  // routes, never HTTP ones).
  if (!ci.http && f.policy.tunnel) {
    const config::TunnelSettings& t = *f.policy.tunnel;
    if (t.protocol == "POST") {
      *ok = false;
      *error = "tunnel protocol POST is not supported by Sluice (HTTP/1.1 CONNECT only)";
      return nullptr;
    }
    std::weak_ptr<ConnectionInfo> info_of = c.info;
    Clusters* clusters = o_.clusters;
    // The tunnel's outcome is the connection's for outlier detection (Envoy
    // reports a tunneled connect's success only at the proxy's 2xx; see
    // on_upstream_connected): a refusal or the proxy closing first is a
    // failed connect to that proxy (UF), a client that sends too much
    // meanwhile is not the proxy's fault.
    auto report = [info_of, clusters](bool ok) {
      auto info = info_of.lock();
      if (info && clusters && info->upstream_address.valid()) {
        clusters->report_connect(info->cluster, info->upstream_address, ok);
      }
    };
    inner = std::make_unique<TunnelFilter>(
        t.target_host, t.target_port,
        [info_of, report](const std::string& why, bool proxy_failed) {
          if (auto info = info_of.lock()) info->upstream_failure = why;
          if (proxy_failed) report(false);
        },
        [report] { report(true); });
  }
  std::shared_ptr<const tls::TlsClientContext> client;
  tls::ClientSessionParams params;
  if (f.tls_mode != config::ClientTLSMode::kDisable) {
    if (!o_.tls) {
      *ok = false;
      *error = "TLS origination needs the proxy's TLS contexts";
      return nullptr;
    }
    client = client_context(ci, f, error);
    if (!client) {
      *ok = false;
      return nullptr;
    }
    params.sni = f.sni;
    params.session_key = c.plan.cluster;
  }

  // Envoy's answer when the upstream TLS handshake fails: 503 (flag UF in
  // the access log, OpenSSL's reason as the transport failure reason).
  std::weak_ptr<ConnectionInfo> weak = c.info;
  bool http = ci.http;
  auto failure_reply = [weak, http](const tls::TlsHandshakeResult& r) -> std::string {
    auto info = weak.lock();
    if (info) {
      info->upstream_failure = r.failure_reason;
      if (http) info->first_response_code = 503;
    }
    if (!http) return {};
    std::string body = tls::upstream_tls_failure_details(r.failure_reason, info && info->retried());
    return local_reply(503, realtime_ns(), body);
  };

  // Termination installed at the gateway before routing: add the rest to it.
  if (c.terminator) {
    if (client) {
      if (!c.terminator->set_upstream_tls(client, params, error)) {
        *ok = false;
        return nullptr;
      }
      c.terminator->set_upstream_failure_reply(failure_reply);
    }
    if (inner) c.terminator->set_inner(std::move(inner));
    return nullptr;  // the engine keeps the installed filter
  }
  if (pooled) *pool_key = "|plain";
  if (!client) return inner;
  if (pooled) {
    // The context (one per TLS setting and certificate generation), SNI and
    // session key: what the pooled session was made with.
    char ctx[32];
    snprintf(ctx, sizeof(ctx), "%p", static_cast<const void*>(client.get()));
    *pool_key = std::string("|tls|") + ctx + "|" + params.sni + "|" + params.session_key;
  }

  tls::TlsFilterOptions to;
  to.upstream_tls = client;
  to.upstream_params = params;
  to.inner = std::move(inner);
  ProxyCounters* counters = o_.counters;
  to.on_handshake = [weak, counters](const tls::TlsHandshakeResult& r) {
    count_handshake(counters, r);
    auto info = weak.lock();
    if (!info || r.ok) return;
    info->upstream_failure = r.failure_reason;
  };
  to.upstream_failure_reply = failure_reply;
  to.defer_upstream_session = pooled;  // a pooled session may be adopted instead
  std::unique_ptr<tls::TlsFilter> filter = tls::TlsFilter::create(std::move(to), error);
  if (!filter) {
    *ok = false;
    return nullptr;
  }
  return filter;
}

// Envoy answers an HTTP request with no usable upstream 503 (UH, or UF when
// the upstream TLS setup failed); other traffic is closed.
Verdict Forwarder::no_upstream(ProxyConnection& c, const std::string& flags, const std::string& why, int status,
                               std::span<const uint8_t> pending) {
  ConnectionInfo& ci = *c.info;
  // A circuit breaker's refusal: Envoy's answer to a pool overflow.
  const bool overflow = flags == "UO";
  if (ci.http) {
    for (auto& r : ci.pending_requests) {
      r.entry.response_flags = policy::merge_response_flags(r.entry.response_flags, flags);
      r.entry.http->response_code = static_cast<uint32_t>(status);
      r.entry.upstream_transport_failure_reason = why;
      if (overflow) r.entry.response_code_details = "upstream_reset_before_response_started{overflow}";
    }
    return answer(c, status, overflow ? kOverflowBody : std::string_view(), {}, pending);
  }
  c.logged = true;
  AccessLogEntry e = ci.base_entry();
  e.upstream_cluster = ci.cluster;
  e.route_name = ci.route_name;
  e.response_flags = flags;
  e.upstream_transport_failure_reason = why;
  ci.log_entry(e);
  return Verdict::close();
}

Verdict Forwarder::answer(ProxyConnection& c, int status, std::string_view body, std::string_view location,
                          std::span<const uint8_t> pending) {
  ConnectionInfo& ci = *c.info;
  const size_t consumed = c.answerable;
  // Not while the proxy drains: the answer says "connection: close", and
  // the connection ends after it.
  const bool keep = consumed > 0 && !c.moved && consumed <= pending.size() && !(ci.conn != nullptr && ci.conn->draining());
  c.reply = local_reply(status, realtime_ns(), body, location, keep, c.head_request);
  if (!ci.pending_requests.empty()) {
    AccessLogEntry& e = ci.pending_requests.front().entry;
    e.bytes_received = keep ? consumed : pending.size();
    e.bytes_sent = c.reply.size();
  }
  ci.flush_requests();
  if (!keep) {
    c.logged = true;
    return Verdict::close(bytes_of(c.reply));
  }
  await_next_request(c);
  // Between requests only the engine's idle timeout applies.
  return Verdict::respond(bytes_of(c.reply), consumed, std::chrono::milliseconds(0));
}

// The next request is sniffed and decided afresh, as a new connection's
// first one (its bytes may be pending already: the engine asks again).
void Forwarder::await_next_request(ProxyConnection& c) {
  ConnectionInfo& ci = *c.info;
  // A slot taken for the last one (a pick before a 503 UF) is not held
  // while idle, nor a place in the queue.
  ci.cluster_lease.reset();
  c.ticket.reset();
  c.queued_since_ns = 0;
  // Circuit-breaker counts taken for a request that was answered here.
  ci.request_token.reset();
  ci.retry_token.reset();
  ci.connect_token.reset();
  c.decided = false;
  c.fed = 0;
  c.answerable = 0;
  c.mode = sniff::SniffMode::kHttp;
  c.detector.reset();
  if (c.http) c.http->reset();
  else c.http = std::make_unique<sniff::HttpRequestParser>();
  c.plan = policy::RequestPlan{};
  c.dns_started = false;
  c.fault_until_ns = 0;
  c.mirror_after_delay = false;
  ci.requests = 0;
  ci.first_response_code = 0;
  ci.response_reported = false;
  ci.later_plan.reset();
  ci.first_attempt = 1;
  ci.connect_retries = 0;
  ci.connect_retry_overflow = false;
  ci.connect_route_timeout = false;
  ci.connect_deadline_ns = INT64_MAX;
  ci.retry_deadline_ns = INT64_MAX;
  ci.tried_upstreams.clear();
  ci.upstream_host.clear();
  ci.upstream_failure.clear();
}

void Forwarder::on_close(engine::Connection& conn, const engine::ConnectionStats& stats) {
  o_.counters->count(stats.reason);
  auto* c = reinterpret_cast<ProxyConnection*>(conn.context());
  if (!c) return;
  conn.set_context(0);
  c->info->conn = nullptr;
  if (c->mirror_writer >= 0) close(c->mirror_writer);
  ConnectionInfo& ci = *c->info;
  uint64_t duration_ms = stats.end_monotonic_ns > stats.start_monotonic_ns
                             ? static_cast<uint64_t>(stats.end_monotonic_ns - stats.start_monotonic_ns) / 1'000'000
                             : 0;
  std::string flags;
  if (stats.reason == engine::CloseReason::kUpstreamConnectFailed) flags = "UF";
  if (stats.reason == engine::CloseReason::kUpstreamConnectTimeout) flags = "UF,UT";
  // connectionPool.tcp.maxConnectionDuration ended it (Envoy's DT).
  if (stats.reason == engine::CloseReason::kMaxDuration) flags = policy::merge_response_flags(ci.tcp_flags, "DT");
  const bool connect_failed = stats.reason == engine::CloseReason::kUpstreamConnectFailed ||
                              stats.reason == engine::CloseReason::kUpstreamConnectTimeout;
  if (!ci.upstream_failure.empty()) flags = "UF";  // a failed upstream TLS handshake
  // An HTTP request's connection failure (refused, timed out, a failed TLS
  // handshake): the route timeout passed between attempts (UT alone),
  // maxRetries allowed no retry (UO), or retried with no try left (URX,
  // Envoy's retry limit exceeded; a response retry's walk may have had no
  // try to spend, its failure exhausted the tries all the same).
  if (ci.http && (connect_failed || !ci.upstream_failure.empty())) {
    if (ci.connect_route_timeout) {
      flags = "UT";
    } else if (ci.connect_retry_overflow) {
      flags = policy::merge_response_flags(flags, "UO");
    } else if (ci.retried() && c->plan.forward.retry.retries_connect()) {
      flags = policy::merge_response_flags(flags, "URX");
    }
  }
  // Outlier detection: responses, resets and timeouts were reported as they
  // came (ConnectionInfo::report_response), each failed connect attempt by
  // on_connect_attempt_failed;
  // otherwise (no outlier detection for the cluster, or a path that reported
  // nothing, such as a malformed response head: 502) the status the
  // connection ended with counts, as before.
  if (o_.clusters && ci.http && !ci.response_reported && !connect_failed && ci.first_response_code >= 200 &&
      stats.upstream.valid() && c->plan.kind == policy::RequestPlan::Kind::kForward) {
    o_.clusters->report_response(c->plan.cluster, stats.upstream, static_cast<uint32_t>(ci.first_response_code));
  }
  // The connection's bytes and time less those of the requests logged
  // before (answered locally or by an upstream let go since: the line is
  // the connection's last request's).
  const uint64_t bytes_received =
      stats.bytes_from_downstream - std::min(stats.bytes_from_downstream, ci.logged_in);
  const uint64_t bytes_sent = stats.bytes_to_downstream - std::min(stats.bytes_to_downstream, ci.logged_out);
  if (ci.http) {
    // Requests whose response ended are logged already (complete_request);
    // what is left did not get one before the connection closed.
    if (ci.pending_requests.empty()) {
      delete c;
      return;
    }
    if (ci.requests == 1) {
      AccessLogEntry& e = ci.pending_requests.front().entry;
      e.bytes_received = bytes_received;
      e.bytes_sent = bytes_sent;
      e.duration_ms = ci.logged_in > 0 ? ms_since(e.start_realtime_ns) : duration_ms;
    }
    if (!flags.empty()) {
      for (auto& r : ci.pending_requests) {
        r.entry.response_flags = policy::merge_response_flags(r.entry.response_flags, flags);
        if (!ci.upstream_failure.empty()) {
          r.entry.upstream_transport_failure_reason = ci.upstream_failure;
          r.entry.response_code_details = "upstream_reset_before_response_started{connection_failure,TLS_error}";
        }
        if (r.first && ci.first_response_code == 0) r.entry.http->response_code = 503;
      }
    }
    ci.flush_requests();
  } else if (!c->logged && ci.snapshot && c->decided) {
    AccessLogEntry e = ci.base_entry();
    e.upstream_cluster = ci.cluster;
    e.route_name = ci.route_name;
    e.response_flags = !flags.empty() ? flags : ci.tcp_flags;
    e.upstream_host = stats.upstream.valid() ? stats.upstream.to_string() : "";
    e.upstream_transport_failure_reason = ci.upstream_failure;
    e.bytes_received = bytes_received;
    e.bytes_sent = bytes_sent;
    e.duration_ms = duration_ms;
    e.connection_termination_details = std::string(engine::close_reason_name(stats.reason));
    ci.log_entry(e);
  }
  // The cluster's connection slot is free now (the filter, which shares
  // the state, may go a little later), and nothing waits for a connect.
  ci.cluster_lease.reset();
  ci.connect_token.reset();
  delete c;
}

std::shared_ptr<const tls::TlsClientContext> Forwarder::client_context(const ConnectionInfo& ci,
                                                                       const policy::ForwardPlan& f,
                                                                       std::string* error) {
  const int64_t now = monotonic_ns();
  for (const TlsClientMemo& m : tls_memo_) {
    if (m.context && m.until_ns > now && m.generation == ci.snapshot->generation && m.settings == f.policy.tls &&
        m.mode == f.tls_mode && m.expected_sans == f.expected_sans) {
      return m.context;
    }
  }
  config::ClientTLSSettings settings;
  if (f.policy.tls) settings = *f.policy.tls;
  settings.mode = f.tls_mode;
  auto ctx = o_.tls->client(settings, f.expected_sans, error);
  if (!ctx) return nullptr;
  TlsClientMemo& m = tls_memo_[tls_memo_next_++ % tls_memo_.size()];
  m = TlsClientMemo{ci.snapshot->generation, f.policy.tls, f.tls_mode, f.expected_sans, ctx, now + 1'000'000'000};
  return ctx;
}

}  // namespace sluice::proxy
