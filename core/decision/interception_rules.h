// The interception rules of one install: Istio's includeIPRanges /
// excludeIPRanges / includeOutboundPorts / excludeOutboundPorts parsed once,
// plus where the proxy listens and how its own sockets are recognised.
// decide() (verdict.h) evaluates them in user space; to_map_contents()
// (map_contents.h) turns the very same value into the BPF maps, so the
// kernel and `sluicectl explain` cannot disagree.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/model.h"
#include "core/decision/ip_address.h"

namespace sluice::decision {

// Where redirected connections go and which sockets are the proxy's own.
struct ProxySettings {
  // The proxy's address per family; no address: that family is not
  // redirected. Sidecar placement: loopback; node placement: an address of
  // the node that the workload's namespace can reach.
  std::optional<IpAddress> ipv4 = IpAddress::v4({127, 0, 0, 1});
  std::optional<IpAddress> ipv6 = IpAddress::v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  uint16_t port = 15001;
  std::optional<uint32_t> mark = 0x539;  // SO_MARK of the proxy's sockets
  std::optional<uint32_t> uid = 1337;
  std::optional<uint32_t> gid = 1337;
  // The workload <-> proxy hop skips loopback TCP/IP: sk_msg socket-to-socket
  // redirection (SLUICE_F_SOCKET_REDIRECT). Needs both ends on this host,
  // which the redirect guarantees.
  bool socket_redirect = false;
  // With socket_redirect: a sender leaves the shortcut for TCP (for good)
  // once its peer has this many bytes handed over and not yet read; the
  // redirect itself has no flow control (sluice_config.sock_queue_limit).
  uint32_t socket_redirect_queue_limit = kDefaultSocketRedirectQueueLimit;
  static constexpr uint32_t kDefaultSocketRedirectQueueLimit = 4u << 20;
};

// A configured range and its position in the option's list (for explaining).
struct RangeRule {
  Cidr cidr;
  uint32_t index = 0;
};

struct PortRule {
  uint16_t port = 0;
  uint32_t index = 0;
};

struct PortSet {
  bool all = false;  // "*"
  std::vector<PortRule> ports;

  const PortRule* find(uint16_t port) const;
  bool matches(uint16_t port) const { return all || find(port) != nullptr; }
};

struct RangeSet {
  // "*" becomes 0.0.0.0/0 and ::/0: the LPM tries need no special case.
  std::vector<RangeRule> ranges;

  // Longest matching prefix, as the kernel's LPM trie answers. The address
  // must already be unmapped.
  const RangeRule* longest_match(const IpAddress& address) const;
};

struct InterceptionRules {
  RangeSet include_ranges;
  RangeSet exclude_ranges;
  PortSet include_ports;
  PortSet exclude_ports;
  ProxySettings proxy;
};

// Parses the install options. Problems are reported into `diagnostics`
// (errors for values that cannot be understood, warnings for values that are
// accepted with a change); with errors the result must not be installed.
InterceptionRules compile_rules(const config::InstallOptions& options, const ProxySettings& proxy,
                                config::Diagnostics& diagnostics);

}  // namespace sluice::decision
