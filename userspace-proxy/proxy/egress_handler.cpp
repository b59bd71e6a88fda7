#include "userspace-proxy/proxy/egress_handler.h"

#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

#include "core/policy/upstream.h"
#include "userspace-proxy/sniff/body_framer.h"
#include "userspace-proxy/sniff/http_request_head.h"
#include "userspace-proxy/sniff/protocol_detector.h"
#include "userspace-proxy/sniff/sniff_plan.h"
#include "userspace-proxy/sniff/tls_client_hello.h"

namespace sluice::proxy {

namespace {

constexpr int kIp6tSoOriginalDst = 80;  // linux/netfilter_ipv6/ip6_tables.h

using engine::FilterOutput;
using engine::FilterStatus;
using engine::SocketAddress;
using engine::Verdict;
using policy::Action;
using policy::OutboundDecision;
using policy::Traffic;

int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// What identifies "the same upstream" for a later request on a connection:
// the action and cluster, plus the requested host for a DNS entry that
// resolves whatever name the client asked for (a wildcard host).
std::string upstream_key(const OutboundDecision& d, const std::string& host) {
  std::string key = std::string(policy::to_string(d.action)) + "|" + d.cluster;
  if (d.action == Action::kRoute && d.service && !d.service->host.empty() && d.service->host[0] == '*') {
    key += "|" + host;
  }
  return key;
}

// Per-connection facts shared by the handler and the HTTP filter (which may
// outlive on_close by a little: the engine frees it after the connection).
struct ConnectionInfo {
  SnapshotPtr snapshot;
  SocketAddress original_dst;
  decision::IpAddress original_ip;
  SocketAddress peer;
  int64_t start_realtime_ns = 0;
  int64_t start_monotonic_ns = 0;
  AccessLogSink* log = nullptr;
  ProxyCounters* counters = nullptr;
  // The first decision (the connection's upstream).
  OutboundDecision decision;
  std::string upstream_key;
  std::string sni;
  bool http = false;
  std::string upstream_host;  // the address connected to, once known

  // HTTP requests not yet written to the access log (the last one waits for
  // on_close to learn byte counts when it is the only one).
  struct Request {
    AccessLogEntry entry;
    bool first = false;  // the request the connection was decided on
  };
  std::vector<Request> pending_requests;
  uint64_t requests = 0;
  int first_response_code = 0;

  AccessLogEntry base_entry() const {
    AccessLogEntry e;
    e.start_realtime_ns = start_realtime_ns;
    e.downstream_local_address = original_dst.to_string();
    e.downstream_remote_address = peer.to_string();
    e.requested_server_name = sni;
    return e;
  }
  void log_entry(const AccessLogEntry& e) const {
    if (log) log->write(e);
  }
  void flush_requests() {
    for (auto& r : pending_requests) {
      // Responses are relayed, not parsed: the first one's status line is
      // the only one known (HttpRequestGuard reads it).
      if (r.first && r.entry.http && r.entry.http->response_code == 0) {
        r.entry.http->response_code = static_cast<uint32_t>(first_response_code);
      }
      if (r.entry.upstream_host.empty() && r.entry.response_code_details.empty()) {
        r.entry.upstream_host = upstream_host;
      }
      log_entry(r.entry);
    }
    pending_requests.clear();
  }
};

AccessLogEntry request_entry(const ConnectionInfo& info, const sniff::HttpRequestHead& head,
                             const OutboundDecision& d) {
  AccessLogEntry e = info.base_entry();
  e.start_realtime_ns = realtime_ns();
  AccessLogEntry::Http h;
  h.method = std::string(head.method);
  h.path = std::string(head.path);
  h.protocol = head.version == sniff::HttpVersion::kHttp10 ? "HTTP/1.0" : "HTTP/1.1";
  h.authority = head.has_host_header ? std::string(head.host_header) : std::string(head.host);
  if (auto ua = head.find_header("user-agent")) h.user_agent = std::string(*ua);
  if (auto rid = head.find_header("x-request-id")) h.request_id = std::string(*rid);
  e.http = std::move(h);
  e.upstream_cluster = d.cluster;
  e.route_name = d.route_name;
  e.response_flags = d.response_flags == "-" ? "" : d.response_flags;
  return e;
}

OutboundDecision decide(const Snapshot& snap, const decision::IpAddress& ip, uint16_t port, Traffic traffic,
                        std::string host) {
  policy::OutboundRequest req;
  req.original_ip = ip;
  req.original_port = port;
  req.traffic = traffic;
  req.host = std::move(host);
  return policy::decide_outbound(snap.registry, snap.mode(), req);
}

// Checks each request after the first on an HTTP/1 keep-alive connection
// (downstream -> upstream); relays responses untouched. Body framing follows
// Content-Length / chunked; after CONNECT or an Upgrade request the rest of
// the stream is opaque.
class HttpRequestGuard final : public engine::StreamFilter {
 public:
  // `first` are the bytes the handler already saw and decided on (forwarded
  // by the engine unfiltered); the guard resumes framing after them.
  HttpRequestGuard(std::shared_ptr<ConnectionInfo> info, std::span<const uint8_t> first)
      : info_(std::move(info)) {
    advance(first, nullptr);
    // A later request cut off at the end of the first read is already on
    // its way upstream (the engine forwards sniffed bytes as read) and cannot
    // be checked: refuse the connection rather than let it through.
    if (state_ == State::kHead && !held_.empty()) first_ok_ = false;
  }

  // Runs the framing over `first` without output; returns false if `first`
  // holds a later request that would not ride on the first one's decision.
  bool first_bytes_ok() const { return first_ok_; }

  FilterStatus on_data(engine::Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (dir == engine::Direction::kUpstreamToDownstream) {
      if (!response_seen_) {
        response_seen_ = true;
        std::string_view s(reinterpret_cast<const char*>(chunk.data()), std::min<size_t>(chunk.size(), 12));
        if (s.size() == 12 && s.substr(0, 7) == "HTTP/1." && s[8] == ' ') {
          info_->first_response_code = std::atoi(std::string(s.substr(9, 3)).c_str());
        }
      }
      return out.forward(chunk.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
    }
    return advance(chunk, &out);
  }

 private:
  enum class State : uint8_t { kHead, kBody, kOpaque, kStopped };

  // Decides a complete later request head. Returns kContinue to forward it.
  FilterStatus on_later_head(const sniff::HttpRequestHead& head, FilterOutput* out) {
    bump(info_->counters->http_requests);
    ++info_->requests;
    const Snapshot& snap = *info_->snapshot;
    OutboundDecision d = decide(snap, info_->original_ip, info_->original_dst.port(), Traffic::kHttp,
                                std::string(head.host));
    AccessLogEntry e = request_entry(*info_, head, d);
    e.upstream_host = info_->upstream_host;
    info_->flush_requests();
    if (d.action == Action::kLocalReply502 || d.action == Action::kBlackhole) {
      info_->counters->count(d.action);
      e.http->response_code = d.action == Action::kLocalReply502 ? 502 : 0;
      e.response_code_details = d.action == Action::kLocalReply502 ? "direct_response" : "";
      e.upstream_host.clear();
      info_->log_entry(e);
      if (out && d.action == Action::kLocalReply502) {
        std::string reply = local_reply(502, realtime_ns());
        out->inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
      }
      return FilterStatus::kClose;
    }
    if (upstream_key(d, std::string(head.host)) != info_->upstream_key) {
      bump(info_->counters->upstream_changed);
      e.response_code_details = "upstream_changed_connection_closed";
      e.upstream_host.clear();
      info_->log_entry(e);
      return FilterStatus::kClose;
    }
    info_->pending_requests.push_back({std::move(e), false});
    return FilterStatus::kContinue;
  }

  // Walks `chunk` through the framing. With `out` null (the handler's first
  // bytes) nothing is output and a failed check sets first_ok_ = false.
  FilterStatus advance(std::span<const uint8_t> chunk, FilterOutput* out) {
    std::string_view rest(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    auto forward = [&](size_t n) { return out ? out->forward(n) : 0; };
    while (!rest.empty()) {
      switch (state_) {
        case State::kStopped:
          if (out) out->skip(rest.size());
          return FilterStatus::kClose;
        case State::kOpaque:
          if (forward(rest.size()) != 0) return FilterStatus::kReset;
          return FilterStatus::kContinue;
        case State::kBody: {
          sniff::BodyFeedResult r = framer_->feed(rest);
          if (r.status == sniff::BodyStatus::kInvalid) {
            bump(info_->counters->protocol_errors);
            state_ = State::kStopped;
            first_ok_ = false;
            return FilterStatus::kReset;
          }
          if (r.consumed > 0 && forward(r.consumed) != 0) return FilterStatus::kReset;
          rest.remove_prefix(r.consumed);
          if (r.status == sniff::BodyStatus::kDone) {
            framer_.reset();
            state_ = tunnel_after_body_ ? State::kOpaque : State::kHead;
            parser_.reset();
            first_head_ = false;
          } else if (r.consumed == 0) {
            return FilterStatus::kContinue;
          }
          break;
        }
        case State::kHead: {
          sniff::HttpRequestParser::FeedResult r = parser_.feed(rest);
          if (r.status == sniff::HttpParseStatus::kNeedMore) {
            // Hold the partial head until it is complete and decided.
            if (!first_head_) held_.append(rest.substr(0, r.consumed));
            else if (forward(r.consumed) != 0) return FilterStatus::kReset;
            rest.remove_prefix(r.consumed);
            if (r.consumed == 0) return FilterStatus::kContinue;
            break;
          }
          if (r.status != sniff::HttpParseStatus::kDone) {
            // Not HTTP or malformed after a valid first request: stop here.
            bump(info_->counters->protocol_errors);
            state_ = State::kStopped;
            first_ok_ = false;
            if (out) {
              std::string reply = local_reply(parser_.error().status ? parser_.error().status : 400, realtime_ns());
              out->inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
              out->skip(rest.size());
            }
            return FilterStatus::kClose;
          }
          const sniff::HttpRequestHead& head = parser_.head();
          if (first_head_) {
            // The request the connection was decided on: already logged.
            if (forward(r.consumed) != 0) return FilterStatus::kReset;
          } else {
            FilterStatus st = on_later_head(head, out);
            if (st != FilterStatus::kContinue) {
              state_ = State::kStopped;
              first_ok_ = false;
              if (out) out->skip(rest.size());
              return st;
            }
            held_.append(rest.substr(0, r.consumed));
            if (out && out->inject(engine::Direction::kDownstreamToUpstream, bytes_of(held_)) != 0) {
              return FilterStatus::kReset;
            }
            if (out) out->skip(r.consumed);
            held_.clear();
          }
          rest.remove_prefix(r.consumed);
          tunnel_after_body_ = head.is_connect || !head.upgrade.empty();
          framer_ = sniff::make_body_framer(head);
          state_ = State::kBody;
          if (framer_->status() == sniff::BodyStatus::kDone) {
            framer_.reset();
            state_ = tunnel_after_body_ ? State::kOpaque : State::kHead;
            parser_.reset();
            first_head_ = false;
          }
          break;
        }
      }
    }
    return FilterStatus::kContinue;
  }

  std::shared_ptr<ConnectionInfo> info_;
  sniff::HttpRequestParser parser_;
  sniff::BodyFramerPtr framer_;
  State state_ = State::kHead;
  bool first_head_ = true;
  bool tunnel_after_body_ = false;
  bool first_ok_ = true;
  bool response_seen_ = false;
  std::string held_;
};

// Handler state of one connection (Connection::context points at it).
struct EgressConnection {
  std::shared_ptr<ConnectionInfo> info = std::make_shared<ConnectionInfo>();
  sniff::SniffMode mode = sniff::SniffMode::kDetect;
  std::unique_ptr<sniff::ProtocolDetector> detector;      // kDetect
  std::unique_ptr<sniff::HttpRequestParser> http;          // kHttp
  std::unique_ptr<sniff::ClientHelloSniffer> tls;          // kTlsClientHello
  size_t fed = 0;  // bytes of `pending` already fed to the sniffer
  // Set once decided; the connection may still wait for DNS.
  bool decided = false;
  Traffic traffic = Traffic::kTcp;
  std::string host;
  policy::UpstreamPlan plan;
  std::chrono::steady_clock::time_point dns_deadline;
  bool dns_started = false;
  bool logged = false;  // TCP line or local reply already written
  std::string reply;    // kept alive for Verdict::close
};

class EgressHandler final : public engine::ConnectionHandler {
 public:
  explicit EgressHandler(const EgressOptions& o) : o_(o) {}

  Verdict on_accept(engine::Connection& conn, const engine::AcceptInfo& info) override {
    bump(o_.counters->accepted);
    auto c = std::make_unique<EgressConnection>();
    ConnectionInfo& ci = *c->info;
    ci.start_realtime_ns = realtime_ns();
    ci.start_monotonic_ns = monotonic_ns();
    ci.log = o_.access_log;
    ci.counters = o_.counters;
    ci.peer = info.peer();
    int rc = o_.lookup_original_dst ? o_.lookup_original_dst(info.fd(), &ci.original_dst)
                                    : original_destination(info.fd(), &ci.original_dst);
    if (rc != 0 || !ci.original_dst.valid()) {
      // Not redirected by our BPF programs (someone connected to the proxy
      // port directly): never relay it anywhere.
      bump(o_.counters->no_original_dst);
      return Verdict::close();
    }
    ci.original_ip = to_ip_address(ci.original_dst);
    ci.snapshot = o_.snapshots->current();
    uint16_t port = ci.original_dst.port();
    policy::PortProtocol declared = ci.snapshot->registry.declared_protocol(port);
    switch (declared) {
      case policy::PortProtocol::kHttp: c->mode = sniff::SniffMode::kHttp; break;
      case policy::PortProtocol::kTls: c->mode = sniff::SniffMode::kTlsClientHello; break;
      case policy::PortProtocol::kTcp: c->mode = sniff::SniffMode::kNone; break;
      case policy::PortProtocol::kUnspecified: c->mode = sniff::SniffMode::kDetect; break;
    }
    EgressConnection* raw = c.release();
    conn.set_context(reinterpret_cast<uint64_t>(raw));
    switch (raw->mode) {
      case sniff::SniffMode::kHttp: raw->http = std::make_unique<sniff::HttpRequestParser>(); break;
      case sniff::SniffMode::kTlsClientHello: raw->tls = std::make_unique<sniff::ClientHelloSniffer>(); break;
      case sniff::SniffMode::kNone:
        // Opaque TCP (server-first protocols work): decide on IP:port now.
        return decide_and_act(*raw, Traffic::kTcp, "", {});
      default: raw->detector = std::make_unique<sniff::ProtocolDetector>(); break;
    }
    return Verdict::need_more(o_.detection_timeout);
  }

  Verdict on_downstream_data(engine::Connection& conn, std::span<const uint8_t> pending) override {
    EgressConnection& c = state(conn);
    if (c.decided) return resume_dns(c, pending);
    std::span<const uint8_t> fresh = pending.subspan(std::min(c.fed, pending.size()));
    c.fed = pending.size();
    switch (c.mode) {
      case sniff::SniffMode::kHttp: {
        auto r = c.http->feed(fresh);
        if (r.status == sniff::HttpParseStatus::kNeedMore) return Verdict::need_more(o_.detection_timeout);
        if (r.status == sniff::HttpParseStatus::kDone) return decide_http(c, c.http->head(), pending);
        return protocol_error(c, r.status == sniff::HttpParseStatus::kInvalid ? c.http->error().status : 0);
      }
      case sniff::SniffMode::kTlsClientHello: {
        auto st = c.tls->feed(fresh);
        if (st == sniff::TlsSniffStatus::kNeedMore) return Verdict::need_more(o_.detection_timeout);
        if (st == sniff::TlsSniffStatus::kDone) {
          c.info->sni = c.tls->client_hello().sni;
          return decide_and_act(c, Traffic::kTls, c.info->sni, pending);
        }
        // Not TLS, or malformed: no SNI; by destination IP:port, as Envoy does.
        return decide_and_act(c, Traffic::kTcp, "", pending);
      }
      default: {
        sniff::Detection d = c.detector->feed(fresh);
        return on_detection(c, d, pending);
      }
    }
  }

  Verdict on_detection_timeout(engine::Connection& conn, std::span<const uint8_t> pending) override {
    EgressConnection& c = state(conn);
    if (c.decided) return resume_dns(c, pending);
    if (c.detector) return on_detection(c, c.detector->on_timeout(), pending);
    if (c.tls) return decide_and_act(c, Traffic::kTcp, "", pending);
    // A declared HTTP port that never sent a complete request head.
    return protocol_error(c, 408);
  }

  Verdict on_downstream_eof(engine::Connection& conn, std::span<const uint8_t> pending) override {
    EgressConnection& c = state(conn);
    if (c.decided) return resume_dns(c, pending);
    if (c.detector) return on_detection(c, c.detector->on_timeout(), pending);
    if (c.tls) return decide_and_act(c, Traffic::kTcp, "", pending);
    return Verdict::close();
  }

  void on_upstream_connected(engine::Connection& conn, const SocketAddress& upstream) override {
    state(conn).info->upstream_host = upstream.to_string();
  }

  void on_close(engine::Connection& conn, const engine::ConnectionStats& stats) override {
    o_.counters->count(stats.reason);
    auto* c = reinterpret_cast<EgressConnection*>(conn.context());
    if (!c) return;
    conn.set_context(0);
    ConnectionInfo& ci = *c->info;
    uint64_t duration_ms =
        stats.end_monotonic_ns > stats.start_monotonic_ns
            ? static_cast<uint64_t>(stats.end_monotonic_ns - stats.start_monotonic_ns) / 1'000'000
            : 0;
    std::string flags;
    if (stats.reason == engine::CloseReason::kUpstreamConnectFailed) flags = "UF";
    if (stats.reason == engine::CloseReason::kUpstreamConnectTimeout) flags = "UF,UT";
    if (ci.http && !ci.pending_requests.empty()) {
      if (ci.requests == 1) {
        AccessLogEntry& e = ci.pending_requests.front().entry;
        e.bytes_received = stats.bytes_from_downstream;
        e.bytes_sent = stats.bytes_to_downstream;
        e.duration_ms = duration_ms;
      }
      if (!flags.empty()) {
        for (auto& r : ci.pending_requests) {
          r.entry.response_flags = flags;
          if (r.first && ci.first_response_code == 0) r.entry.http->response_code = 503;
        }
      }
      ci.flush_requests();
    } else if (!c->logged && ci.snapshot && c->decided) {
      AccessLogEntry e = ci.base_entry();
      e.upstream_cluster = ci.decision.cluster;
      e.route_name = ci.decision.route_name;
      e.response_flags = !flags.empty() ? flags : (ci.decision.response_flags == "-" ? "" : ci.decision.response_flags);
      e.upstream_host = stats.upstream.valid() ? stats.upstream.to_string() : "";
      e.bytes_received = stats.bytes_from_downstream;
      e.bytes_sent = stats.bytes_to_downstream;
      e.duration_ms = duration_ms;
      e.connection_termination_details = std::string(engine::close_reason_name(stats.reason));
      ci.log_entry(e);
    }
    delete c;
  }

 private:
  static EgressConnection& state(engine::Connection& conn) {
    return *reinterpret_cast<EgressConnection*>(conn.context());
  }

  Verdict on_detection(EgressConnection& c, const sniff::Detection& d, std::span<const uint8_t> pending) {
    switch (d.protocol) {
      case sniff::DetectedProtocol::kNeedMore: return Verdict::need_more(o_.detection_timeout);
      case sniff::DetectedProtocol::kTls:
        c.info->sni = c.detector->tls().client_hello().sni;
        return decide_and_act(c, Traffic::kTls, c.info->sni, pending);
      case sniff::DetectedProtocol::kHttp1:
        if (c.detector->http().status() == sniff::HttpParseStatus::kDone) {
          return decide_http(c, c.detector->http().head(), pending);
        }
        return protocol_error(c, c.detector->http().error().status);
      case sniff::DetectedProtocol::kHttp2:  // h2c prior knowledge: no per-request checks yet
      case sniff::DetectedProtocol::kOpaque:
        return decide_and_act(c, Traffic::kTcp, "", pending);
    }
    return Verdict::close();
  }

  Verdict protocol_error(EgressConnection& c, int status) {
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

  Verdict decide_http(EgressConnection& c, const sniff::HttpRequestHead& head, std::span<const uint8_t> pending) {
    bump(o_.counters->http_requests);
    c.info->http = true;
    c.info->requests = 1;
    OutboundDecision d = decide(*c.info->snapshot, c.info->original_ip, c.info->original_dst.port(), Traffic::kHttp,
                                std::string(head.host));
    AccessLogEntry e = request_entry(*c.info, head, d);
    e.start_realtime_ns = c.info->start_realtime_ns;
    c.info->pending_requests.push_back({std::move(e), true});
    return act(c, std::move(d), Traffic::kHttp, std::string(head.host), pending);
  }

  Verdict decide_and_act(EgressConnection& c, Traffic traffic, std::string host, std::span<const uint8_t> pending) {
    OutboundDecision d = decide(*c.info->snapshot, c.info->original_ip, c.info->original_dst.port(), traffic, host);
    return act(c, std::move(d), traffic, std::move(host), pending);
  }

  Verdict act(EgressConnection& c, OutboundDecision d, Traffic traffic, std::string host,
              std::span<const uint8_t> pending) {
    o_.counters->count(d.action);
    ConnectionInfo& ci = *c.info;
    c.decided = true;
    c.traffic = traffic;
    c.host = host;
    ci.upstream_key = upstream_key(d, host);
    ci.decision = std::move(d);
    switch (ci.decision.action) {
      case Action::kLocalReply502: {
        c.logged = true;
        if (!ci.pending_requests.empty()) {
          AccessLogEntry& e = ci.pending_requests.front().entry;
          e.http->response_code = 502;
          e.response_code_details = "direct_response";
          e.bytes_received = pending.size();
          ci.flush_requests();
        }
        c.reply = local_reply(502, realtime_ns());
        return Verdict::close(bytes_of(c.reply));
      }
      case Action::kBlackhole:
        // Istio has no HTTP listener on this port: its TCP proxy to
        // BlackHoleCluster logs a TCP line ("- - -" 0 UH), written in on_close.
        ci.pending_requests.clear();
        ci.http = false;
        return Verdict::close();
      case Action::kPassthrough:
        c.plan = policy::plan_passthrough(ci.original_ip, ci.original_dst.port());
        break;
      case Action::kRoute:
        c.plan = policy::plan_upstream(*ci.decision.service, ci.original_ip, ci.original_dst.port(), host);
        break;
    }
    c.dns_deadline = std::chrono::steady_clock::now() + o_.dns_wait;
    return resume_dns(c, pending);
  }

  // Turns the plan into addresses, waiting for DNS answers when needed.
  Verdict resume_dns(EgressConnection& c, std::span<const uint8_t> pending) {
    ConnectionInfo& ci = *c.info;
    if (!c.plan.error.empty()) return no_upstream(c, c.plan.error);
    std::vector<SocketAddress> addrs;
    bool waiting = false;
    std::string dns_error;
    for (const auto& ep : c.plan.endpoints) {
      if (ep.address) {
        addrs.push_back(to_socket_address(*ep.address, ep.port));
        continue;
      }
      DnsAnswer answer;
      if (o_.dns && o_.dns->lookup_cached(ep.dns_name, &answer)) {
        if (!answer.ok()) {
          dns_error = ep.dns_name + ": " + answer.error;
          continue;
        }
        size_t take = c.plan.one_answer_at_a_time ? 1 : answer.addresses.size();
        for (size_t i = 0; i < take && i < answer.addresses.size(); ++i) {
          addrs.push_back(to_socket_address(answer.addresses[i], ep.port));
        }
      } else if (o_.dns) {
        waiting = true;
        if (!c.dns_started) o_.dns->resolve(ep.dns_name, [](const DnsAnswer&) {});
      } else {
        dns_error = ep.dns_name + ": no DNS resolver";
      }
    }
    c.dns_started = true;
    if (waiting && std::chrono::steady_clock::now() < c.dns_deadline) return Verdict::need_more(o_.dns_recheck);
    if (addrs.empty()) {
      bump(o_.counters->dns_failures);
      return no_upstream(c, dns_error.empty() ? "DNS answer timed out" : dns_error);
    }
    if (ci.http) {
      auto guard = std::make_unique<HttpRequestGuard>(c.info, pending);
      if (!guard->first_bytes_ok()) {
        // The first read already holds a later request that may not ride on
        // this connection's decision: forward nothing at all.
        ci.flush_requests();
        c.logged = true;
        return Verdict::close();
      }
      return Verdict::connect(std::span<const SocketAddress>(addrs), std::move(guard));
    }
    return Verdict::connect(std::span<const SocketAddress>(addrs));
  }

  // Envoy answers an HTTP request with no healthy upstream 503 UH; other
  // traffic is closed.
  Verdict no_upstream(EgressConnection& c, const std::string& why) {
    ConnectionInfo& ci = *c.info;
    c.logged = true;
    if (ci.http) {
      for (auto& r : ci.pending_requests) {
        r.entry.response_flags = "UH";
        r.entry.http->response_code = 503;
        r.entry.upstream_transport_failure_reason = why;
      }
      ci.flush_requests();
      c.reply = local_reply(503, realtime_ns());
      return Verdict::close(bytes_of(c.reply));
    }
    AccessLogEntry e = ci.base_entry();
    e.upstream_cluster = ci.decision.cluster;
    e.route_name = ci.decision.route_name;
    e.response_flags = "UH";
    e.upstream_transport_failure_reason = why;
    ci.log_entry(e);
    return Verdict::close();
  }

  EgressOptions o_;
};

}  // namespace

int original_destination(int fd, engine::SocketAddress* out) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  SocketAddress local;
  SocketAddress::local_of(fd, &local);
  int rc;
  if (local.valid() && local.family() == AF_INET6) {
    rc = getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &ss, &len);
    if (rc != 0) {
      // An IPv4-mapped client on a v6 listener: asked as IPv4.
      len = sizeof(ss);
      rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len);
    }
  } else {
    rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len);
  }
  if (rc != 0) return -errno;
  *out = SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  return out->valid() ? 0 : -EINVAL;
}

std::string local_reply(int status, int64_t realtime_ns) {
  const char* reason = "Error";
  switch (status) {
    case 400: reason = "Bad Request"; break;
    case 408: reason = "Request Timeout"; break;
    case 413: reason = "Payload Too Large"; break;
    case 414: reason = "URI Too Long"; break;
    case 431: reason = "Request Header Fields Too Large"; break;
    case 501: reason = "Not Implemented"; break;
    case 502: reason = "Bad Gateway"; break;
    case 503: reason = "Service Unavailable"; break;
    case 505: reason = "HTTP Version Not Supported"; break;
    default: break;
  }
  time_t secs = static_cast<time_t>(realtime_ns / 1'000'000'000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char date[64];
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &utc);
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\ncontent-length: 0\r\ndate: " + date +
         "\r\nserver: sluice\r\nconnection: close\r\n\r\n";
}

engine::SocketAddress to_socket_address(const decision::IpAddress& ip, uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len;
  if (ip.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.bytes().data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, ip.bytes().data(), 16);
    len = sizeof(sockaddr_in6);
  }
  return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

decision::IpAddress to_ip_address(const engine::SocketAddress& a) {
  if (a.family() == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(a.sa());
    std::array<uint8_t, 4> b{};
    std::memcpy(b.data(), &sin->sin_addr, 4);
    return decision::IpAddress::v4(b);
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a.sa());
  std::array<uint8_t, 16> b{};
  std::memcpy(b.data(), &sin6->sin6_addr, 16);
  return decision::IpAddress::v6(b).unmapped();
}

engine::ConnectionHandlerPtr make_egress_handler(const EgressOptions& options) {
  return std::make_unique<EgressHandler>(options);
}

}  // namespace sluice::proxy
