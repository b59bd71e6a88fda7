#include "core/config/model.h"

namespace sluice::config {

void FieldLocations::set(std::string path, uint32_t line, uint32_t column) {
  positions_.insert_or_assign(std::move(path), Pos{line, column});
}

SourceLocation FieldLocations::find(const std::string& file, const std::string& path) const {
  std::string p = path;
  while (!p.empty()) {
    if (auto it = positions_.find(p); it != positions_.end()) {
      return {file, it->second.line, it->second.column};
    }
    // Strip the last component: "a.b[2]" -> "a.b", "a.b" -> "a".
    size_t cut = p.find_last_of(".[");
    if (cut == std::string::npos) break;
    p.resize(cut);
  }
  if (auto it = positions_.find(""); it != positions_.end()) {
    return {file, it->second.line, it->second.column};
  }
  return {file, 0, 0};
}

std::vector<std::string> VirtualService::effective_gateways() const {
  if (gateways.empty()) return {"mesh"};
  return gateways;
}

const char* to_string(Resolution r) {
  switch (r) {
    case Resolution::kNone: return "NONE";
    case Resolution::kStatic: return "STATIC";
    case Resolution::kDns: return "DNS";
    case Resolution::kDnsRoundRobin: return "DNS_ROUND_ROBIN";
  }
  return "NONE";
}

const char* to_string(ServiceLocation l) {
  return l == ServiceLocation::kMeshInternal ? "MESH_INTERNAL" : "MESH_EXTERNAL";
}

const char* to_string(SimpleLB lb) {
  switch (lb) {
    case SimpleLB::kUnspecified: return "UNSPECIFIED";
    case SimpleLB::kRoundRobin: return "ROUND_ROBIN";
    case SimpleLB::kLeastRequest: return "LEAST_REQUEST";
    case SimpleLB::kLeastConn: return "LEAST_CONN";
    case SimpleLB::kRandom: return "RANDOM";
    case SimpleLB::kPassthrough: return "PASSTHROUGH";
  }
  return "UNSPECIFIED";
}

const char* to_string(ClientTLSMode m) {
  switch (m) {
    case ClientTLSMode::kDisable: return "DISABLE";
    case ClientTLSMode::kSimple: return "SIMPLE";
    case ClientTLSMode::kMutual: return "MUTUAL";
    case ClientTLSMode::kIstioMutual: return "ISTIO_MUTUAL";
  }
  return "DISABLE";
}

const char* to_string(ServerTLSMode m) {
  switch (m) {
    case ServerTLSMode::kPassthrough: return "PASSTHROUGH";
    case ServerTLSMode::kSimple: return "SIMPLE";
    case ServerTLSMode::kMutual: return "MUTUAL";
    case ServerTLSMode::kAutoPassthrough: return "AUTO_PASSTHROUGH";
    case ServerTLSMode::kIstioMutual: return "ISTIO_MUTUAL";
    case ServerTLSMode::kOptionalMutual: return "OPTIONAL_MUTUAL";
  }
  return "PASSTHROUGH";
}

const char* to_string(OutboundTrafficPolicyMode m) {
  return m == OutboundTrafficPolicyMode::kRegistryOnly ? "REGISTRY_ONLY" : "ALLOW_ANY";
}

const char* to_string(StringMatch::Kind k) {
  switch (k) {
    case StringMatch::Kind::kExact: return "exact";
    case StringMatch::Kind::kPrefix: return "prefix";
    case StringMatch::Kind::kRegex: return "regex";
  }
  return "exact";
}

bool exported_to(const std::vector<std::string>& export_to, const std::string& owner_ns, const std::string& ns) {
  if (export_to.empty()) return true;
  for (const auto& e : export_to) {
    if (e == "*" || e == ns || (e == "." && owner_ns == ns)) return true;
  }
  return false;
}

bool labels_match(const Labels& selector, const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace sluice::config
