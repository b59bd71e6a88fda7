// The sidecar's ConnectionHandler: Istio's outboundTrafficPolicy on each
// redirected connection.
//
//   accept   -> SO_ORIGINAL_DST (none: refuse, count no_original_dst: no open relay)
//            -> sniff by the registry's declared protocol for the original port
//               (HTTP head / TLS ClientHello / detection with a timeout / none)
//            -> policy::decide_outbound with the snapshot the connection started with
//   kRoute        -> plan_upstream -> addresses (DNS from the resolver's cache)
//   kPassthrough  -> the original destination
//   kLocalReply502-> "HTTP/1.1 502 Bad Gateway", then close
//   kBlackhole    -> close with nothing forwarded (flag UH)
//
// Known destinations then go through the VirtualServices bound to `mesh`
// and the DestinationRule of the route's destination (policy::plan_sidecar):
// endpoints by ServiceEntry resolution or DNS, load balancing shared by all
// workers (Clusters), TLS origination (SIMPLE, MUTUAL, ISTIO_MUTUAL with the
// mesh identity from --certs) through a tls::TlsFilter.
//
// HTTP connections keep an HttpRequestGuard (a StreamFilter) that checks
// every later request of a keep-alive connection on its own: a blocked one
// gets a local reply and the connection closes after it; one that would go to
// a different upstream than the connection's is not forwarded and the
// connection is closed (the client reconnects and is decided afresh).
//
// DNS: a cache miss starts an asynchronous resolve and the connection waits
// in the engine's deferred state (Verdict::defer) until the resolver's
// callback wakes it (Connection::waker), at most dns_wait.
//
// make_gateway_handler() is the egress gateway role (gateway_handler.cpp):
// the Gateway server on the listener's port takes the connection
// (terminating TLS when its mode says so) and the VirtualServices bound to
// that Gateway route it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/decision/ip_address.h"
#include "core/policy/outbound_policy.h"
#include "userspace-proxy/engine/connection_handler.h"
#include "userspace-proxy/proxy/access_log_sink.h"
#include "userspace-proxy/proxy/dns_resolver.h"
#include "userspace-proxy/proxy/proxy_counters.h"
#include "userspace-proxy/proxy/snapshot.h"

namespace sluice::proxy {

// The accepted socket's original destination: Sluice's own getsockopt
// (IPPROTO_TCP, SLUICE_TCP_ORIGINAL_DST, answered by its BPF program), else
// (SOL_IP, SO_ORIGINAL_DST) or (SOL_IPV6, IP6T_SO_ORIGINAL_DST) as iptables
// REDIRECT's conntrack answers them. Returns 0 or -errno.
int original_destination(int fd, engine::SocketAddress* out);

class TlsContexts;
class Clusters;
}  // namespace sluice::proxy
namespace sluice::admin {
class IstioMetrics;
class MetricsShard;
}  // namespace sluice::admin
namespace sluice::proxy {

struct EgressOptions {
  SnapshotStore* snapshots = nullptr;
  DnsResolver* dns = nullptr;        // null: DNS endpoints fail (UH)
  AccessLogSink* access_log = nullptr;  // null: no access log
  ProxyCounters* counters = nullptr;
  TlsContexts* tls = nullptr;         // null: TLS origination/termination fails the connection
  Clusters* clusters = nullptr;       // null: endpoints in plan order, no load balancing
  // Istio's metrics (null: off); the shard must belong to the handler's
  // worker (one EgressOptions copy per worker).
  admin::IstioMetrics* istio_metrics = nullptr;
  admin::MetricsShard* metrics_shard = nullptr;
  // Warnings about single connections (a failed TLS handshake, an SNI no
  // server accepts); null: not logged.
  std::function<void(const std::string&)> log_warning;
  // The engine's sniffing window (EngineConfig::max_sniff_bytes): what a
  // handler is shown of the bytes held for a decision. A full window may
  // hide more (one read beyond it, or a previous guard's held requests).
  size_t sniff_window = 16 * 1024;
  std::chrono::milliseconds detection_timeout{5000};
  std::chrono::milliseconds dns_wait{3000};
  // Cache re-check interval, only for connections without a waker (tests).
  std::chrono::milliseconds dns_recheck{5};
  // Injected in unit tests; default original_destination().
  std::function<int(int fd, engine::SocketAddress* out)> lookup_original_dst;
};

engine::ConnectionHandlerPtr make_egress_handler(const EgressOptions& options);
engine::ConnectionHandlerPtr make_gateway_handler(const EgressOptions& options);

// Converts between the decision core's and the engine's address types.
engine::SocketAddress to_socket_address(const decision::IpAddress& ip, uint16_t port);
decision::IpAddress to_ip_address(const engine::SocketAddress& a);

}  // namespace sluice::proxy
