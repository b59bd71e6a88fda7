// The interception decision for one outbound TCP connect(), evaluated in user
// space exactly as the cgroup/connect4|6 programs evaluate it in the kernel
// (same precedence, same data: see interception_rules.h). Istio's order:
//   excluded ports -> the proxy's own sockets (mark, uid, gid) -> loopback
//   -> excluded ranges -> included ports (any address) -> included ranges.
// An exclude always beats an include, whatever the prefix lengths.
#pragma once

#include <cstdint>
#include <optional>

#include "bpf/sluice_maps.h"
#include "core/decision/interception_rules.h"
#include "core/decision/ip_address.h"

namespace sluice::decision {

enum class Action : uint8_t { kRedirect, kPassthrough };

// Which rule decided. The values are the kernel's enum sluice_rule, so a
// record read from the BPF maps names its rule with the same enum.
enum class Rule : uint32_t {
  kExcludedPort = SLUICE_RULE_EXCLUDED_PORT,
  kOwnMark = SLUICE_RULE_OWN_MARK,
  kOwnUid = SLUICE_RULE_OWN_UID,
  kOwnGid = SLUICE_RULE_OWN_GID,
  kLoopback = SLUICE_RULE_LOOPBACK,
  kProxyAddress = SLUICE_RULE_PROXY_ADDRESS,
  kExcludedRange = SLUICE_RULE_EXCLUDED_RANGE,
  kIncludedPort = SLUICE_RULE_INCLUDED_PORT,
  kIncludedRange = SLUICE_RULE_INCLUDED_RANGE,
  kNotIncluded = SLUICE_RULE_NOT_INCLUDED,
  kNoProxyForFamily = SLUICE_RULE_NO_PROXY_FAMILY,
};

// Stable names for messages and `sluicectl explain`: "excluded-port", ...
const char* to_string(Rule rule);
// One sentence on what the rule means.
const char* describe(Rule rule);
std::optional<Rule> rule_from_kernel(uint32_t value);

struct SocketContext {
  IpAddress destination;  // as passed to connect(); IPv4-mapped allowed
  uint16_t port = 0;
  uint32_t mark = 0;  // SO_MARK of the socket
  uint32_t uid = 0;   // of the process calling connect()
  uint32_t gid = 0;
};

struct Verdict {
  Action action = Action::kPassthrough;
  Rule rule = Rule::kNotIncluded;
  // The range or port entry that decided, when a range or port rule did.
  std::optional<RangeRule> range;
  std::optional<PortRule> port;
  // Where a redirected connection goes.
  std::optional<IpAddress> proxy_address;
  uint16_t proxy_port = 0;
};

Verdict decide(const InterceptionRules& rules, const SocketContext& socket);

}  // namespace sluice::decision
