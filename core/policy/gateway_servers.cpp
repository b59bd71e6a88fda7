#include "core/policy/gateway_servers.h"

#include <algorithm>
#include <cctype>

namespace sluice::policy {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Strips "ns/" from "ns/host" ("./host", "*/host" too).
std::string_view host_part(std::string_view h) {
  size_t slash = h.find('/');
  return slash == std::string_view::npos ? h : h.substr(slash + 1);
}

// Specificity of a pattern for precedence: exact names beat every wildcard;
// among wildcards the longer suffix wins; "*" is last.
size_t specificity(std::string_view pattern) {
  if (pattern.empty() || pattern[0] != '*') return SIZE_MAX;
  return pattern.size();
}

}  // namespace

const char* to_string(ServerKind k) {
  switch (k) {
    case ServerKind::kHttp: return "HTTP";
    case ServerKind::kTlsTerminate: return "TLS-terminate";
    case ServerKind::kTlsPassthrough: return "TLS-passthrough";
    case ServerKind::kTcp: return "TCP";
  }
  return "?";
}

ServerKind classify_server(const config::Server& server) {
  const std::string& p = server.port.protocol;
  if (p == "HTTP" || p == "HTTP2" || p == "GRPC" || p == "GRPC-WEB") return ServerKind::kHttp;
  if (p == "HTTPS" || p == "TLS") {
    if (server.tls && (server.tls->mode == config::ServerTLSMode::kPassthrough ||
                       server.tls->mode == config::ServerTLSMode::kAutoPassthrough)) {
      // HTTPS + PASSTHROUGH is how istio.io routes SNI through a gateway too.
      return ServerKind::kTlsPassthrough;
    }
    if (!server.tls) return ServerKind::kTlsPassthrough;  // validation rejects this; be safe
    return ServerKind::kTlsTerminate;
  }
  return ServerKind::kTcp;
}

std::string GatewayServerRef::describe() const {
  size_t index = 0;
  for (size_t i = 0; i < gateway->servers.size(); ++i) {
    if (&gateway->servers[i] == server) index = i;
  }
  return gateway_key + " server " + std::to_string(index) + " (" + std::to_string(server->port.number) + "/" +
         server->port.protocol + ")";
}

GatewayServers::GatewayServers(const config::ConfigSet& config,
                               const std::map<std::string, std::string>& proxy_labels) {
  for (const config::Gateway& gw : config.gateways) {
    if (!config::labels_match(gw.selector, proxy_labels)) continue;
    for (const config::Server& s : gw.servers) {
      GatewayServerRef ref;
      ref.gateway = &gw;
      ref.server = &s;
      ref.kind = classify_server(s);
      ref.gateway_key = gw.meta.key();
      for (const std::string& h : s.hosts) ref.hosts.push_back(lower(host_part(h)));
      by_port_[s.port.number].push_back(std::move(ref));
    }
  }
}

std::vector<uint32_t> GatewayServers::ports() const {
  std::vector<uint32_t> out;
  for (const auto& [port, servers] : by_port_) out.push_back(port);
  return out;
}

const std::vector<GatewayServerRef>& GatewayServers::on_port(uint32_t port) const {
  static const std::vector<GatewayServerRef> kNone;
  auto it = by_port_.find(port);
  return it == by_port_.end() ? kNone : it->second;
}

bool GatewayServers::port_wants_sni(uint32_t port) const {
  for (const auto& s : on_port(port)) {
    if (s.kind == ServerKind::kTlsTerminate || s.kind == ServerKind::kTlsPassthrough) return true;
  }
  return false;
}

bool GatewayServers::host_matches(std::string_view pattern, std::string_view name) {
  if (pattern == "*") return true;
  if (name.empty()) return false;
  if (pattern.size() > 1 && pattern[0] == '*') {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  }
  return pattern == name;
}

const GatewayServerRef* GatewayServers::select(uint32_t port, std::string_view name, bool tls) const {
  std::string n = lower(name);
  const GatewayServerRef* best = nullptr;
  size_t best_rank = 0;
  for (const auto& s : on_port(port)) {
    bool is_tls = s.kind == ServerKind::kTlsTerminate || s.kind == ServerKind::kTlsPassthrough;
    if (is_tls != tls) continue;
    for (const std::string& h : s.hosts) {
      if (!host_matches(h, n)) continue;
      size_t rank = specificity(h);
      if (!best || rank > best_rank) {
        best = &s;
        best_rank = rank;
      }
    }
  }
  return best;
}

const GatewayServerRef* GatewayServers::select_by_sni(uint32_t port, std::string_view sni) const {
  return select(port, sni, true);
}

const GatewayServerRef* GatewayServers::select_by_host(uint32_t port, std::string_view host) const {
  return select(port, host, false);
}

const GatewayServerRef* GatewayServers::select_tcp(uint32_t port) const {
  for (const auto& s : on_port(port)) {
    if (s.kind == ServerKind::kTcp) return &s;
  }
  return nullptr;
}

}  // namespace sluice::policy
