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
// HTTP connections keep an HttpRequestGuard (a StreamFilter) that checks
// every later request of a keep-alive connection on its own: a blocked one
// gets a local 502 and the connection closes after it; one that would go to a
// different upstream than the connection's is not forwarded and the
// connection is closed (the client reconnects and is decided afresh) — Istio
// would route it, which needs per-request upstreams (not built yet).
//
// DNS: a cache miss starts an asynchronous resolve and the connection waits
// with short need_more() timeouts, re-checking the cache (the engine has no
// deferred verdict yet), up to dns_wait.
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

// getsockopt(SOL_IP, SO_ORIGINAL_DST) or (SOL_IPV6, IP6T_SO_ORIGINAL_DST) on
// the accepted socket. Returns 0 or -errno.
int original_destination(int fd, engine::SocketAddress* out);

struct EgressOptions {
  SnapshotStore* snapshots = nullptr;
  DnsResolver* dns = nullptr;        // null: DNS endpoints fail (UH)
  AccessLogSink* access_log = nullptr;  // null: no access log
  ProxyCounters* counters = nullptr;
  std::chrono::milliseconds detection_timeout{5000};
  std::chrono::milliseconds dns_wait{3000};
  std::chrono::milliseconds dns_recheck{5};
  // Injected in unit tests; default original_destination().
  std::function<int(int fd, engine::SocketAddress* out)> lookup_original_dst;
};

// Envoy's local reply, as Istio's sidecar sends it under REGISTRY_ONLY
// (server: sluice instead of envoy).
std::string local_reply(int status, int64_t realtime_ns);

engine::ConnectionHandlerPtr make_egress_handler(const EgressOptions& options);

// Converts between the decision core's and the engine's address types.
engine::SocketAddress to_socket_address(const decision::IpAddress& ip, uint16_t port);
decision::IpAddress to_ip_address(const engine::SocketAddress& a);

}  // namespace sluice::proxy
