// Which Gateway servers a gateway proxy serves, and which one takes a
// connection: Istio's gateway listener semantics as pure code.
//
//   - A Gateway applies to a proxy when its `selector` labels are all among
//     the proxy's labels (an empty selector selects every gateway proxy).
//   - Each server becomes a listener on its port. Servers of TLS-terminating
//     protocols (HTTPS, TLS with a mode other than PASSTHROUGH /
//     AUTO_PASSTHROUGH) and passthrough TLS servers are chosen by SNI against
//     `hosts`; plain HTTP servers by the request's Host; TCP servers by port.
//   - Server hosts are "[namespace/]host" ("./host" = the Gateway's own
//     namespace, "*/host" = any); the namespace part scopes which
//     VirtualServices may bind and does not take part in SNI matching.
//   - SNI and Host match exact names before wildcards, longer wildcards
//     before shorter ("*" last), as Envoy's filter-chain and virtual-host
//     matching do.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/model.h"

namespace sluice::policy {

enum class ServerKind {
  kHttp,            // plain HTTP (HTTP, HTTP2, GRPC)
  kTlsTerminate,    // HTTPS, or TLS with SIMPLE/MUTUAL/ISTIO_MUTUAL/OPTIONAL_MUTUAL
  kTlsPassthrough,  // TLS (or HTTPS) with PASSTHROUGH/AUTO_PASSTHROUGH
  kTcp,             // TCP, MONGO, ...
};
const char* to_string(ServerKind k);

struct GatewayServerRef {
  const config::Gateway* gateway = nullptr;
  const config::Server* server = nullptr;
  ServerKind kind = ServerKind::kTcp;
  // "namespace/name" of the Gateway, the name VirtualServices bind to.
  std::string gateway_key;
  // Server hosts without their namespace part, lower case.
  std::vector<std::string> hosts;

  uint32_t port() const { return server->port.number; }
  // "istio-system/istio-egressgateway server 0 (80/HTTPS)": for logs and explain.
  std::string describe() const;
};

ServerKind classify_server(const config::Server& server);

// The server set of one gateway proxy, built once per config snapshot (keeps
// pointers into the ConfigSet, which must outlive it).
class GatewayServers {
 public:
  GatewayServers() = default;  // no servers (a sidecar)
  GatewayServers(const config::ConfigSet& config, const std::map<std::string, std::string>& proxy_labels);

  // Every port with at least one server, ascending.
  std::vector<uint32_t> ports() const;
  const std::vector<GatewayServerRef>& on_port(uint32_t port) const;
  bool empty() const { return by_port_.empty(); }

  // Does any server on `port` need the ClientHello before anything else
  // (TLS terminate or passthrough)? Then the connection is sniffed for SNI.
  bool port_wants_sni(uint32_t port) const;

  // Server for a TLS connection by SNI (empty SNI matches only "*").
  const GatewayServerRef* select_by_sni(uint32_t port, std::string_view sni) const;
  // Server for a plain HTTP request by Host (lower case, no port).
  const GatewayServerRef* select_by_host(uint32_t port, std::string_view host) const;
  // First TCP server on the port.
  const GatewayServerRef* select_tcp(uint32_t port) const;

  // Does a host name (SNI or Host) match a server host pattern?
  static bool host_matches(std::string_view pattern, std::string_view name);

 private:
  const GatewayServerRef* select(uint32_t port, std::string_view name, bool tls) const;
  std::map<uint32_t, std::vector<GatewayServerRef>> by_port_;
};

}  // namespace sluice::policy
