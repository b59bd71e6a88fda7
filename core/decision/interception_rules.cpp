#include "core/decision/interception_rules.h"

#include <charconv>
#include <string>
#include <string_view>

namespace sluice::decision {

const PortRule* PortSet::find(uint16_t port) const {
  for (const PortRule& rule : ports) {
    if (rule.port == port) return &rule;
  }
  return nullptr;
}

const RangeRule* RangeSet::longest_match(const IpAddress& address) const {
  const RangeRule* best = nullptr;
  for (const RangeRule& rule : ranges) {
    if (rule.cidr.contains(address) &&
        (best == nullptr || rule.cidr.prefix_len() > best->cidr.prefix_len())) {
      best = &rule;
    }
  }
  return best;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

config::SourceLocation where(const config::InstallOptions& options) {
  return {options.file.empty() ? std::string("install options") : options.file, 0, 0};
}

// Istio spells the options in camelCase in values and annotations.
RangeSet compile_ranges(const std::vector<std::string>& values, const char* option,
                        const config::InstallOptions& options, config::Diagnostics& diagnostics) {
  RangeSet set;
  for (size_t i = 0; i < values.size(); ++i) {
    std::string_view text = trim(values[i]);
    if (text.empty()) continue;  // "" and trailing commas: nothing
    const auto index = static_cast<uint32_t>(i);
    std::string at = std::string(option) + "[" + std::to_string(i) + "]";
    if (text == "*") {
      set.ranges.push_back({Cidr(IpAddress::v4({0, 0, 0, 0}), 0), index});
      set.ranges.push_back({Cidr(IpAddress::v6({}), 0), index});
      continue;
    }
    Cidr::ParseResult parsed = Cidr::parse(text);
    if (!parsed.cidr) {
      diagnostics.error(where(options), at + ": \"" + std::string(text) +
                                            "\" is not a CIDR range: " + parsed.error +
                                            " (use e.g. 10.0.0.0/8, 2001:db8::/32 or *)");
      continue;
    }
    if (parsed.had_host_bits) {
      diagnostics.warning(where(options), at + ": \"" + std::string(text) +
                                              "\" has host bits set; using " +
                                              parsed.cidr->str());
    }
    bool duplicate = false;
    for (const RangeRule& r : set.ranges) duplicate = duplicate || r.cidr == *parsed.cidr;
    if (!duplicate) set.ranges.push_back({*parsed.cidr, index});
  }
  return set;
}

PortSet compile_ports(const std::vector<std::string>& values, const char* option,
                      const config::InstallOptions& options, config::Diagnostics& diagnostics) {
  PortSet set;
  for (size_t i = 0; i < values.size(); ++i) {
    std::string_view text = trim(values[i]);
    if (text.empty()) continue;
    std::string at = std::string(option) + "[" + std::to_string(i) + "]";
    if (text == "*") {
      set.all = true;
      continue;
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) {
      diagnostics.error(where(options), at + ": \"" + std::string(text) +
                                            "\" is not a port: use a number from 1 to 65535 or *");
      continue;
    }
    const auto port = static_cast<uint16_t>(value);
    if (set.find(port) == nullptr) set.ports.push_back({port, static_cast<uint32_t>(i)});
  }
  return set;
}

}  // namespace

InterceptionRules compile_rules(const config::InstallOptions& options, const ProxySettings& proxy,
                                config::Diagnostics& diagnostics) {
  InterceptionRules rules;
  rules.include_ranges = compile_ranges(options.include_ip_ranges, "includeIPRanges", options, diagnostics);
  rules.exclude_ranges = compile_ranges(options.exclude_ip_ranges, "excludeIPRanges", options, diagnostics);
  rules.include_ports =
      compile_ports(options.include_outbound_ports, "includeOutboundPorts", options, diagnostics);
  rules.exclude_ports =
      compile_ports(options.exclude_outbound_ports, "excludeOutboundPorts", options, diagnostics);
  rules.proxy = proxy;
  if (rules.proxy.ipv4 && !rules.proxy.ipv4->is_v4()) {
    diagnostics.error(where(options), "proxy IPv4 address " + rules.proxy.ipv4->str() + " is not IPv4");
  }
  if (rules.proxy.ipv6 && !rules.proxy.ipv6->is_v6()) {
    diagnostics.error(where(options), "proxy IPv6 address " + rules.proxy.ipv6->str() + " is not IPv6");
  }
  if (rules.proxy.port == 0) diagnostics.error(where(options), "proxy port 0 is not a port");
  return rules;
}

}  // namespace sluice::decision
