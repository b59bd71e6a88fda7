// The egress gateway role: Istio's gateway listeners for the Gateway
// servers that select this proxy.
//
//   accept on a server port
//     -> TLS servers (terminate or passthrough) on the port: sniff the
//        ClientHello, pick the server by SNI against its hosts
//          passthrough -> tls[] routes bound to the Gateway (sniHosts)
//          terminate   -> a tls::TlsFilter with the server's certificate
//                         (MUTUAL: client certificate required and verified,
//                         ISTIO_MUTUAL: the mesh identity), installed before
//                         routing: the handler reads the decrypted request
//     -> plain HTTP servers: the request's Host picks the server
//     -> TCP servers: tcp[] routes by port
//   HTTP inside (plain or terminated): http[] routes bound to the Gateway;
//   none bound or none matching -> 404 NR.
//   The destination's endpoints come from its ServiceEntry (DNS resolution
//   for edition.cnn.com) and the connection leaves from the gateway's own
//   address; a DestinationRule with tls SIMPLE/MUTUAL originates TLS on the
//   way out (TLS origination at the gateway).
#include "userspace-proxy/proxy/egress_handler.h"

#include "userspace-proxy/proxy/forwarder.h"
#include "userspace-proxy/proxy/tls_contexts.h"
#include "userspace-proxy/tls/tls_filter.h"

namespace sluice::proxy {
namespace {

using engine::Verdict;
using policy::RequestPlan;
using policy::ServerKind;
using policy::Traffic;

class GatewayHandler final : public Forwarder {
 public:
  explicit GatewayHandler(const EgressOptions& o) : Forwarder(o) {}

  Verdict on_accept(engine::Connection& conn, const engine::AcceptInfo& info) override {
    if (info.spawn_tag() != 0) return accept_mirror(conn, info);  // a mirrored copy
    std::unique_ptr<ProxyConnection> owned = new_connection(info);
    ConnectionInfo& ci = *owned->info;
    if (!ci.peer.valid()) ci.peer = info.peer();  // named in handshake failure logs
    ci.original_dst = info.local();
    ci.original_ip = to_ip_address(ci.original_dst);
    ci.snapshot = o_.snapshots->current();
    note_client_address(ci, info);
    uint16_t port = ci.original_dst.port();
    const policy::GatewayServers& servers = ci.snapshot->gateway_servers;
    ProxyConnection* c = adopt(conn, std::move(owned));
    if (servers.on_port(port).empty()) {
      // The listener outlived its last server (a config reload removed it):
      // nothing may be served here any more.
      c->decided = true;
      ci.cluster = "-";
      ci.tcp_flags = "NR";
      return Verdict::close();
    }
    if (servers.port_wants_sni(port)) {
      c->mode = sniff::SniffMode::kTlsClientHello;
      c->tls = std::make_unique<sniff::ClientHelloSniffer>();
      return Verdict::need_more(o_.detection_timeout);
    }
    if (const policy::GatewayServerRef* tcp = servers.select_tcp(port);
        tcp && !has_kind(servers, port, ServerKind::kHttp)) {
      ci.server = tcp;
      return decide(*c, Traffic::kTcp, "", {});
    }
    c->mode = sniff::SniffMode::kHttp;
    c->http = std::make_unique<sniff::HttpRequestParser>();
    ci.security_policy = "none";
    return Verdict::need_more(o_.detection_timeout);
  }

  Verdict on_downstream_data(engine::Connection& conn, std::span<const uint8_t> pending) override {
    ProxyConnection& c = state(conn);
    if (c.decided) return proceed(c, pending);
    if (c.mirror_plan) return mirror_data(c, pending);
    if (c.terminator) return after_termination(c, pending);
    std::span<const uint8_t> fresh = pending.subspan(std::min(c.fed, pending.size()));
    c.fed = pending.size();
    if (c.mode == sniff::SniffMode::kTlsClientHello) {
      auto st = c.tls->feed(fresh);
      if (st == sniff::TlsSniffStatus::kNeedMore) return Verdict::need_more(o_.detection_timeout);
      if (st != sniff::TlsSniffStatus::kDone) return protocol_error(c, 0);
      c.info->sni = c.tls->client_hello().sni;
      return on_client_hello(c, pending);
    }
    auto r = c.http->feed(fresh);
    if (r.status == sniff::HttpParseStatus::kNeedMore) return Verdict::need_more(o_.detection_timeout);
    if (r.status != sniff::HttpParseStatus::kDone) {
      return protocol_error(c, r.status == sniff::HttpParseStatus::kInvalid ? c.http->error().status : 0);
    }
    const sniff::HttpRequestHead& head = c.http->head();
    ConnectionInfo& ci = *c.info;
    ci.server = ci.snapshot->gateway_servers.select_by_host(ci.original_dst.port(), head.host);
    if (!ci.server) return no_server_http(c, head, pending);
    return decide_http(c, head, pending);
  }

  Verdict on_detection_timeout(engine::Connection& conn, std::span<const uint8_t> pending) override {
    ProxyConnection& c = state(conn);
    if (c.decided) return proceed(c, pending, /*timer_fired=*/true);
    if (c.terminator) {
      // Inside a finished handshake, an HTTP request that never completed:
      // 408, logged, as on a plain port.
      const tls::TlsHandshakeResult* hs = c.terminator->downstream_result();
      if (hs && hs->ok && c.mode == sniff::SniffMode::kHttp) return protocol_error(c, 408);
      return handshake_stalled(c);
    }
    if (c.tls) return protocol_error(c, 0);
    return protocol_error(c, 408);
  }

  Verdict on_downstream_eof(engine::Connection& conn, std::span<const uint8_t> pending) override {
    ProxyConnection& c = state(conn);
    c.downstream_ended = true;
    if (c.decided) return proceed(c, pending);
    return Verdict::close();
  }

 protected:
  RequestPlan plan_later(const ConnectionInfo& ci, const sniff::HttpRequestHead& head) override {
    thread_local std::vector<policy::HeaderField> headers;  // per request: the thread's, reused
    policy::HttpRequest hr = http_request_of(head, headers);
    if (ci.downstream_tls) hr.scheme = "https";
    // Plain HTTP servers on a port share one route table in Envoy (Istio's
    // http.<port>): each request's Host picks its server, as the first
    // request's did — a sidecar's pooled connection carries requests for
    // several hosts. A terminated TLS server stays the one its SNI chose.
    const policy::GatewayServerRef* server = ci.server;
    if (!ci.downstream_tls && server && server->kind == ServerKind::kHttp) {
      server = ci.snapshot->gateway_servers.select_by_host(ci.original_dst.port(), head.host);
      if (!server) return no_route_plan();
    }
    return policy::plan_gateway(ci.snapshot->tables(), *server,
                                plan_request(ci, Traffic::kHttp, std::string(head.host), &hr));
  }

 private:
  static bool has_kind(const policy::GatewayServers& servers, uint32_t port, ServerKind kind) {
    for (const auto& s : servers.on_port(port)) {
      if (s.kind == kind) return true;
    }
    return false;
  }

  RequestPlan plan(const ConnectionInfo& ci, Traffic traffic, std::string host, const policy::HttpRequest* http) {
    return policy::plan_gateway(ci.snapshot->tables(), *ci.server, plan_request(ci, traffic, std::move(host), http));
  }

  Verdict decide(ProxyConnection& c, Traffic traffic, std::string host, std::span<const uint8_t> pending) {
    c.traffic = traffic;
    c.host = host;
    RequestPlan p = plan(*c.info, traffic, std::move(host), nullptr);
    return execute(c, std::move(p), pending);
  }

  Verdict decide_http(ProxyConnection& c, const sniff::HttpRequestHead& head, std::span<const uint8_t> pending) {
    std::vector<policy::HeaderField> headers;
    policy::HttpRequest hr = http_request_of(head, headers);
    if (c.info->downstream_tls) hr.scheme = "https";
    RequestPlan p = plan(*c.info, Traffic::kHttp, std::string(head.host), &hr);
    return execute_http(c, head, std::move(p), pending);
  }

  // An HTTP request no server on the port accepts (its Host is not among
  // any server's hosts): Envoy has no virtual host for it, 404 NR.
  Verdict no_server_http(ProxyConnection& c, const sniff::HttpRequestHead& head, std::span<const uint8_t> pending) {
    return execute_http(c, head, no_route_plan(), pending);
  }
  static RequestPlan no_route_plan() {
    RequestPlan p;
    p.kind = RequestPlan::Kind::kLocalReply;
    p.status = 404;
    p.cluster = "-";
    p.response_flags = "NR";
    p.response_code_details = "route_not_found";
    return p;
  }

  Verdict on_client_hello(ProxyConnection& c, std::span<const uint8_t> pending) {
    ConnectionInfo& ci = *c.info;
    uint16_t port = ci.original_dst.port();
    ci.server = ci.snapshot->gateway_servers.select_by_sni(port, ci.sni);
    if (!ci.server) {
      // No filter chain for this SNI: Envoy closes the connection.
      c.decided = true;
      ci.cluster = "-";
      ci.tcp_flags = "NR";
      warn("no Gateway server on port " + std::to_string(port) + " for SNI \"" + ci.sni + "\" from " +
           ci.peer.to_string() + ": closed");
      return Verdict::close();
    }
    if (ci.server->kind == ServerKind::kTlsPassthrough) return decide(c, Traffic::kTls, ci.sni, pending);

    std::string error;
    std::shared_ptr<const tls::TlsServerContext> ctx =
        o_.tls ? o_.tls->server(*ci.server->server->tls, &error) : nullptr;
    if (!ctx) {
      if (!o_.tls) error = "no TLS contexts";
      warn("cannot terminate TLS for " + ci.server->describe() + ": " + error);
      c.decided = true;
      ci.cluster = "-";
      ci.tcp_flags = "DPE";
      return Verdict::close();
    }
    tls::TlsFilterOptions to;
    to.downstream_tls = ctx;
    std::weak_ptr<ConnectionInfo> weak = c.info;
    auto log = o_.log_warning;
    std::string server = ci.server->describe();
    ProxyCounters* counters = o_.counters;
    to.on_handshake = [weak, log, server, counters](const tls::TlsHandshakeResult& r) {
      count_handshake(counters, r);
      if (r.ok || r.side != tls::TlsSide::kDownstream) return;
      auto info = weak.lock();
      if (log) {
        log("TLS handshake with downstream " + (info ? info->peer.to_string() : std::string("?")) + " failed on " +
            server + ": " + r.failure_reason);
      }
    };
    std::unique_ptr<tls::TlsFilter> filter = tls::TlsFilter::create(std::move(to), &error);
    if (!filter) {
      warn("cannot terminate TLS for " + ci.server->describe() + ": " + error);
      return Verdict::close();
    }
    c.terminator = filter.get();
    ci.downstream_tls = true;
    auto mode = ci.server->server->tls->mode;
    ci.security_policy = mode == config::ServerTLSMode::kMutual || mode == config::ServerTLSMode::kIstioMutual
                             ? "mutual_tls"
                             : "none";
    c.fed = 0;  // from now on `pending` is plaintext
    if (ci.server->server->port.protocol == "HTTPS") {
      c.mode = sniff::SniffMode::kHttp;
      c.http = std::make_unique<sniff::HttpRequestParser>();
    } else {
      c.mode = sniff::SniffMode::kNone;
    }
    return Verdict::need_more(o_.detection_timeout, std::move(filter));
  }

  // Decrypted bytes from a terminated TLS server.
  Verdict after_termination(ProxyConnection& c, std::span<const uint8_t> pending) {
    const tls::TlsHandshakeResult* hs = c.terminator->downstream_result();
    if (!hs || !hs->ok) return Verdict::need_more(o_.detection_timeout);
    std::span<const uint8_t> fresh = pending.subspan(std::min(c.fed, pending.size()));
    c.fed = pending.size();
    if (c.mode != sniff::SniffMode::kHttp) {
      // TLS terminated, opaque inside: tcp[] routes.
      return decide(c, Traffic::kTcp, "", pending);
    }
    auto r = c.http->feed(fresh);
    if (r.status == sniff::HttpParseStatus::kNeedMore) return Verdict::need_more(o_.detection_timeout);
    if (r.status != sniff::HttpParseStatus::kDone) {
      return protocol_error(c, r.status == sniff::HttpParseStatus::kInvalid ? c.http->error().status : 0);
    }
    return decide_http(c, c.http->head(), pending);
  }

  Verdict handshake_stalled(ProxyConnection& c) {
    c.decided = true;
    c.info->cluster = "-";
    c.info->tcp_flags = "DPE";
    return Verdict::close();
  }

  void warn(const std::string& line) {
    if (o_.log_warning) o_.log_warning(line);
  }
};

}  // namespace

engine::ConnectionHandlerPtr make_gateway_handler(const EgressOptions& options) {
  return std::make_unique<GatewayHandler>(options);
}

}  // namespace sluice::proxy
