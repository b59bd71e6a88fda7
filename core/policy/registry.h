// The service registry a sidecar sees: ServiceEntries indexed by port, with
// the lookups Istio's outbound listeners perform. Built once per config
// snapshot and read-only afterwards, so every worker can share it.
//
// How Istio decides that a destination is "known" (see
// shared docs istio-semantics.md, "How a destination counts as known"):
//   - HTTP on a port where some ServiceEntry declares an HTTP-family protocol:
//     the request's Host (port ignored) against the hosts of the ServiceEntries
//     with that port — Envoy's virtual-host domain match, exact before
//     wildcard, longer wildcard before shorter — or against their addresses;
//   - TLS: the SNI against hosts of ServiceEntries with a TLS/HTTPS port;
//   - opaque TCP: the original destination IP:port against ServiceEntry
//     addresses; a TCP-family ServiceEntry port without addresses claims
//     every IP on that port (the reason istioctl warns IST0134).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config/model.h"
#include "core/decision/ip_address.h"

namespace sluice::policy {

// Istio's protocol families, from a ServicePort's protocol string.
enum class PortProtocol { kHttp, kTls, kTcp, kUnspecified };

// HTTP, HTTP2, GRPC, GRPC-WEB -> kHttp; HTTPS, TLS -> kTls; TCP, MONGO, MYSQL,
// REDIS, ... -> kTcp; "" or unknown -> kUnspecified (sniffed, as Istio does).
PortProtocol classify_protocol(std::string_view istio_protocol);
const char* to_string(PortProtocol p);

// One (ServiceEntry, port) pair: what a match hands to upstream selection.
struct ServiceRef {
  const config::ServiceEntry* entry = nullptr;
  const config::ServicePort* port = nullptr;
  // The registry host that matched (may be a wildcard such as "*.wikipedia.org").
  std::string host;

  // Envoy cluster name as Istio spells it: "outbound|80||edition.cnn.com".
  std::string cluster_name() const;
};

class Registry {
 public:
  // Keeps pointers into `config`: the ConfigSet must outlive the Registry
  // (both live in the same immutable snapshot).
  explicit Registry(const config::ConfigSet& config);

  // Does any ServiceEntry declare `port` with an HTTP-family protocol? Istio
  // then has an HTTP listener (0.0.0.0_<port>) that answers unknown hosts
  // with 502 under REGISTRY_ONLY.
  bool has_http_listener(uint32_t port) const;
  // The protocol the registry declares for `port`: HTTP if any entry says
  // HTTP-family, else TLS, else TCP, else kUnspecified (no entry has the port:
  // the proxy sniffs).
  PortProtocol declared_protocol(uint32_t port) const;

  // `host` is a request's Host without port, lower-case.
  std::optional<ServiceRef> find_http(uint32_t port, std::string_view host) const;
  std::optional<ServiceRef> find_tls(uint32_t port, std::string_view sni) const;
  std::optional<ServiceRef> find_tcp(const decision::IpAddress& ip, uint32_t port) const;

 private:
  struct Candidate {
    const config::ServiceEntry* entry;
    const config::ServicePort* port;
    PortProtocol protocol;
  };
  std::optional<ServiceRef> find_by_host(uint32_t port, std::string_view host, bool http) const;

  std::unordered_map<uint32_t, std::vector<Candidate>> by_port_;
};

}  // namespace sluice::policy
