#include "core/decision/map_contents.h"

#include <cstring>

namespace sluice::decision {

namespace {

template <typename T>
bool same_bytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename K, typename V>
bool same_entries(const std::vector<std::pair<K, V>>& a, const std::vector<std::pair<K, V>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!same_bytes(a[i].first, b[i].first) || !same_bytes(a[i].second, b[i].second)) return false;
  }
  return true;
}

void add_ranges(const RangeSet& set, std::vector<std::pair<sluice_lpm_v4, sluice_rule_ref>>& v4,
                std::vector<std::pair<sluice_lpm_v6, sluice_rule_ref>>& v6) {
  for (const RangeRule& rule : set.ranges) {
    sluice_rule_ref ref{};
    ref.index = rule.index;
    if (rule.cidr.family() == Family::kV4) {
      sluice_lpm_v4 key{};
      key.prefixlen = rule.cidr.prefix_len();
      std::memcpy(key.addr, rule.cidr.base().bytes().data(), 4);
      v4.emplace_back(key, ref);
    } else {
      sluice_lpm_v6 key{};
      key.prefixlen = rule.cidr.prefix_len();
      std::memcpy(key.addr, rule.cidr.base().bytes().data(), 16);
      v6.emplace_back(key, ref);
    }
  }
}

void add_ports(const PortSet& set, std::vector<std::pair<sluice_port_key, sluice_rule_ref>>& out) {
  for (const PortRule& rule : set.ports) {
    sluice_port_key key{};
    key.port = rule.port;
    sluice_rule_ref ref{};
    ref.index = rule.index;
    out.emplace_back(key, ref);
  }
}

}  // namespace

MapContents to_map_contents(const InterceptionRules& rules) {
  MapContents m;
  const ProxySettings& proxy = rules.proxy;
  uint32_t flags = SLUICE_F_ENABLED;
  if (proxy.ipv4) {
    flags |= SLUICE_F_PROXY4;
    std::memcpy(m.config.proxy_ip4, proxy.ipv4->bytes().data(), 4);
    m.config.proxy_port4 = proxy.port;
  }
  if (proxy.ipv6) {
    flags |= SLUICE_F_PROXY6;
    std::memcpy(m.config.proxy_ip6, proxy.ipv6->bytes().data(), 16);
    m.config.proxy_port6 = proxy.port;
  }
  if (rules.include_ports.all) flags |= SLUICE_F_INCLUDE_ALL_PORTS;
  if (rules.exclude_ports.all) flags |= SLUICE_F_EXCLUDE_ALL_PORTS;
  if (proxy.mark) {
    flags |= SLUICE_F_MATCH_MARK;
    m.config.mark = *proxy.mark;
  }
  if (proxy.uid) {
    flags |= SLUICE_F_MATCH_UID;
    m.config.uid = *proxy.uid;
  }
  if (proxy.gid) {
    flags |= SLUICE_F_MATCH_GID;
    m.config.gid = *proxy.gid;
  }
  if (proxy.socket_redirect) {
    flags |= SLUICE_F_SOCKET_REDIRECT;
    m.config.sock_queue_limit = proxy.socket_redirect_queue_limit;
  }
  m.config.flags = flags;
  add_ranges(rules.include_ranges, m.include_v4, m.include_v6);
  add_ranges(rules.exclude_ranges, m.exclude_v4, m.exclude_v6);
  add_ports(rules.include_ports, m.include_ports);
  add_ports(rules.exclude_ports, m.exclude_ports);
  return m;
}

bool operator==(const MapContents& a, const MapContents& b) {
  return same_bytes(a.config, b.config) && same_entries(a.include_v4, b.include_v4) &&
         same_entries(a.exclude_v4, b.exclude_v4) && same_entries(a.include_v6, b.include_v6) &&
         same_entries(a.exclude_v6, b.exclude_v6) &&
         same_entries(a.include_ports, b.include_ports) &&
         same_entries(a.exclude_ports, b.exclude_ports);
}

}  // namespace sluice::decision
