#include "core/decision/verdict.h"

namespace sluice::decision {

const char* to_string(Rule rule) {
  switch (rule) {
    case Rule::kExcludedPort: return "excluded-port";
    case Rule::kOwnMark: return "own-mark";
    case Rule::kOwnUid: return "own-uid";
    case Rule::kOwnGid: return "own-gid";
    case Rule::kLoopback: return "loopback";
    case Rule::kProxyAddress: return "proxy-address";
    case Rule::kExcludedRange: return "excluded-range";
    case Rule::kIncludedPort: return "included-port";
    case Rule::kIncludedRange: return "included-range";
    case Rule::kNotIncluded: return "not-included";
    case Rule::kNoProxyForFamily: return "no-proxy-for-family";
  }
  return "unknown";
}

const char* describe(Rule rule) {
  switch (rule) {
    case Rule::kExcludedPort: return "the destination port is in excludeOutboundPorts";
    case Rule::kOwnMark: return "the socket carries the proxy's SO_MARK";
    case Rule::kOwnUid: return "the connecting process runs as the proxy's uid";
    case Rule::kOwnGid: return "the connecting process runs as the proxy's gid";
    case Rule::kLoopback: return "loopback destinations (127.0.0.0/8, ::1) are never redirected";
    case Rule::kProxyAddress: return "the destination is the proxy's own listener";
    case Rule::kExcludedRange: return "the destination address is in excludeIPRanges";
    case Rule::kIncludedPort: return "the destination port is in includeOutboundPorts";
    case Rule::kIncludedRange: return "the destination address is in includeIPRanges";
    case Rule::kNotIncluded: return "neither includeIPRanges nor includeOutboundPorts covers it";
    case Rule::kNoProxyForFamily:
      return "it would be redirected, but no proxy address of its family is configured";
  }
  return "unknown rule";
}

std::optional<Rule> rule_from_kernel(uint32_t value) {
  if (value >= SLUICE_RULE_COUNT) return std::nullopt;
  return static_cast<Rule>(value);
}

namespace {

Verdict pass(Rule rule) {
  Verdict v;
  v.action = Action::kPassthrough;
  v.rule = rule;
  return v;
}

}  // namespace

Verdict decide(const InterceptionRules& rules, const SocketContext& socket) {
  const ProxySettings& proxy = rules.proxy;
  const IpAddress destination = socket.destination.unmapped();

  if (rules.exclude_ports.matches(socket.port)) {
    Verdict v = pass(Rule::kExcludedPort);
    if (const PortRule* p = rules.exclude_ports.find(socket.port)) v.port = *p;
    return v;
  }
  if (proxy.mark && socket.mark == *proxy.mark) return pass(Rule::kOwnMark);
  if (proxy.uid && socket.uid == *proxy.uid) return pass(Rule::kOwnUid);
  if (proxy.gid && socket.gid == *proxy.gid) return pass(Rule::kOwnGid);
  if (destination.is_loopback()) return pass(Rule::kLoopback);

  const std::optional<IpAddress>& proxy_address = destination.is_v4() ? proxy.ipv4 : proxy.ipv6;
  if (proxy_address && *proxy_address == destination && socket.port == proxy.port) {
    return pass(Rule::kProxyAddress);
  }
  if (const RangeRule* r = rules.exclude_ranges.longest_match(destination)) {
    Verdict v = pass(Rule::kExcludedRange);
    v.range = *r;
    return v;
  }

  Verdict v;
  if (rules.include_ports.matches(socket.port)) {
    v.rule = Rule::kIncludedPort;
    if (const PortRule* p = rules.include_ports.find(socket.port)) v.port = *p;
  } else if (const RangeRule* r = rules.include_ranges.longest_match(destination)) {
    v.rule = Rule::kIncludedRange;
    v.range = *r;
  } else {
    return pass(Rule::kNotIncluded);
  }
  if (!proxy_address) return pass(Rule::kNoProxyForFamily);
  v.action = Action::kRedirect;
  v.proxy_address = *proxy_address;
  if (socket.destination.is_v4_mapped()) {
    // The kernel rewrites the mapped address: the socket stays IPv6.
    std::array<uint8_t, 16> mapped{};
    mapped[10] = mapped[11] = 0xff;
    for (int i = 0; i < 4; ++i) mapped[12 + i] = proxy_address->bytes()[i];
    v.proxy_address = IpAddress::v6(mapped);
  }
  v.proxy_port = proxy.port;
  return v;
}

}  // namespace sluice::decision
