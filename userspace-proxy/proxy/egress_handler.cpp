#include "userspace-proxy/proxy/egress_handler.h"

#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "bpf/sluice_maps.h"
#include "userspace-proxy/proxy/forwarder.h"

namespace sluice::proxy {

namespace {

constexpr int kIp6tSoOriginalDst = 80;  // linux/netfilter_ipv6/ip6_tables.h

using engine::SocketAddress;
using engine::Verdict;
using policy::RequestPlan;
using policy::Traffic;

// The sidecar: Istio's outbound listeners for the connections the BPF
// programs redirect (see egress_handler.h).
class SidecarHandler final : public Forwarder {
 public:
  explicit SidecarHandler(const EgressOptions& o) : Forwarder(o) {}

  Verdict on_accept(engine::Connection& conn, const engine::AcceptInfo& info) override {
    if (info.spawn_tag() != 0) return accept_mirror(conn, info);  // a mirrored copy
    std::unique_ptr<ProxyConnection> owned = new_connection(info);
    ConnectionInfo& ci = *owned->info;
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
    note_client_address(ci, info);
    uint16_t port = ci.original_dst.port();
    switch (ci.snapshot->registry.declared_protocol(port)) {
      case policy::PortProtocol::kHttp: owned->mode = sniff::SniffMode::kHttp; break;
      case policy::PortProtocol::kTls: owned->mode = sniff::SniffMode::kTlsClientHello; break;
      case policy::PortProtocol::kTcp: owned->mode = sniff::SniffMode::kNone; break;
      case policy::PortProtocol::kUnspecified: owned->mode = sniff::SniffMode::kDetect; break;
    }
    ProxyConnection* c = adopt(conn, std::move(owned));
    switch (c->mode) {
      case sniff::SniffMode::kHttp: c->http = std::make_unique<sniff::HttpRequestParser>(); break;
      case sniff::SniffMode::kTlsClientHello: c->tls = std::make_unique<sniff::ClientHelloSniffer>(); break;
      case sniff::SniffMode::kNone:
        // Opaque TCP (server-first protocols work): decide on IP:port now.
        return decide(*c, Traffic::kTcp, "", {});
      default: c->detector = std::make_unique<sniff::ProtocolDetector>(); break;
    }
    return Verdict::need_more(o_.detection_timeout);
  }

  Verdict on_downstream_data(engine::Connection& conn, std::span<const uint8_t> pending) override {
    ProxyConnection& c = state(conn);
    if (c.decided) return proceed(c, pending);
    if (c.mirror_plan) return mirror_data(c, pending);
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
          return decide(c, Traffic::kTls, c.info->sni, pending);
        }
        // Not TLS, or malformed: no SNI; by destination IP:port, as Envoy does.
        return decide(c, Traffic::kTcp, "", pending);
      }
      default:
        return on_detection(c, c.detector->feed(fresh), pending);
    }
  }

  Verdict on_detection_timeout(engine::Connection& conn, std::span<const uint8_t> pending) override {
    ProxyConnection& c = state(conn);
    if (c.decided) return proceed(c, pending, /*timer_fired=*/true);
    if (c.detector) return on_detection(c, c.detector->on_timeout(), pending);
    if (c.tls) return decide(c, Traffic::kTcp, "", pending);
    // A declared HTTP port that never sent a complete request head.
    return protocol_error(c, 408);
  }

  Verdict on_downstream_eof(engine::Connection& conn, std::span<const uint8_t> pending) override {
    ProxyConnection& c = state(conn);
    c.downstream_ended = true;
    if (c.decided) return proceed(c, pending);
    if (c.detector) return on_detection(c, c.detector->on_timeout(), pending);
    if (c.tls) return decide(c, Traffic::kTcp, "", pending);
    return Verdict::close();
  }

 protected:
  RequestPlan plan_later(const ConnectionInfo& ci, const sniff::HttpRequestHead& head) override {
    thread_local std::vector<policy::HeaderField> headers;  // per request: the thread's, reused
    policy::HttpRequest hr = http_request_of(head, headers);
    return plan(ci, Traffic::kHttp, std::string(head.host), &hr);
  }

 private:
  RequestPlan plan(const ConnectionInfo& ci, Traffic traffic, std::string host, const policy::HttpRequest* http) {
    return policy::plan_sidecar(ci.snapshot->tables(), plan_request(ci, traffic, std::move(host), http));
  }

  Verdict on_detection(ProxyConnection& c, const sniff::Detection& d, std::span<const uint8_t> pending) {
    switch (d.protocol) {
      case sniff::DetectedProtocol::kNeedMore: return Verdict::need_more(o_.detection_timeout);
      case sniff::DetectedProtocol::kTls:
        c.info->sni = c.detector->tls().client_hello().sni;
        return decide(c, Traffic::kTls, c.info->sni, pending);
      case sniff::DetectedProtocol::kHttp1:
        if (c.detector->http().status() == sniff::HttpParseStatus::kDone) {
          return decide_http(c, c.detector->http().head(), pending);
        }
        return protocol_error(c, c.detector->http().error().status);
      case sniff::DetectedProtocol::kHttp2:  // h2c prior knowledge: no per-request checks yet
      case sniff::DetectedProtocol::kOpaque:
        return decide(c, Traffic::kTcp, "", pending);
    }
    return Verdict::close();
  }

  Verdict decide_http(ProxyConnection& c, const sniff::HttpRequestHead& head, std::span<const uint8_t> pending) {
    std::vector<policy::HeaderField> headers;
    policy::HttpRequest hr = http_request_of(head, headers);
    RequestPlan p = plan(*c.info, Traffic::kHttp, std::string(head.host), &hr);
    return execute_http(c, head, std::move(p), pending);
  }

  Verdict decide(ProxyConnection& c, Traffic traffic, std::string host, std::span<const uint8_t> pending) {
    c.traffic = traffic;
    c.host = host;
    RequestPlan p = plan(*c.info, traffic, std::move(host), nullptr);
    return execute(c, std::move(p), pending);
  }
};

}  // namespace

int original_destination(int fd, engine::SocketAddress* out) {
  // Sluice's own question first: its BPF program answers it for either
  // family, and no kernel code runs before (SO_ORIGINAL_DST costs a
  // conntrack lookup whenever nf_conntrack is loaded).
  // Behind iptables (nothing answers it, SO_ORIGINAL_DST does) it is not
  // asked again in this process.
  static std::atomic<bool> own_answers{true};
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  const bool asked_own = own_answers.load(std::memory_order_relaxed);
  if (asked_own && getsockopt(fd, IPPROTO_TCP, SLUICE_TCP_ORIGINAL_DST, &ss, &len) == 0) {
    *out = SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
    if (out->valid()) return 0;
  }
  // Then SO_ORIGINAL_DST (an iptables REDIRECT's conntrack answers it too):
  // IPv4 first (also an IPv4-mapped client on a v6 listener), IPv6 when that
  // has no answer, without a getsockname to pick.
  len = sizeof(ss);
  int rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len);
  if (rc != 0) {
    const int v4_errno = errno;
    len = sizeof(ss);
    rc = getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &ss, &len);
    if (rc != 0 && errno == ENOPROTOOPT) errno = v4_errno;  // an IPv4-only socket: its own answer
  }
  if (rc != 0) return -errno;
  *out = SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  if (!out->valid()) return -EINVAL;
  if (asked_own) own_answers.store(false, std::memory_order_relaxed);
  return 0;
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
  return std::make_unique<SidecarHandler>(options);
}

}  // namespace sluice::proxy
