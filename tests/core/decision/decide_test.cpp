// Every precedence rule of Istio's interception, "*", empty lists,
// overlapping ranges, IPv6 and IPv4-mapped destinations.
#include "core/decision/verdict.h"

#include <gtest/gtest.h>

namespace sluice::decision {
namespace {

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

InterceptionRules rules_for(config::InstallOptions options, ProxySettings proxy = {}) {
  config::Diagnostics diagnostics;
  InterceptionRules rules = compile_rules(options, proxy, diagnostics);
  EXPECT_FALSE(diagnostics.has_errors());
  return rules;
}

SocketContext to(const char* address, uint16_t port) {
  SocketContext s;
  s.destination = ip(address);
  s.port = port;
  return s;
}

Rule rule_of(const InterceptionRules& rules, SocketContext s) { return decide(rules, s).rule; }

TEST(Decide, DefaultIncludesEverythingButLoopback) {
  InterceptionRules rules = rules_for({});  // includeIPRanges defaults to "*"
  Verdict v = decide(rules, to("203.0.113.10", 80));
  EXPECT_EQ(v.action, Action::kRedirect);
  EXPECT_EQ(v.rule, Rule::kIncludedRange);
  EXPECT_EQ(v.proxy_address, ip("127.0.0.1"));
  EXPECT_EQ(v.proxy_port, 15001);
  Verdict v6 = decide(rules, to("2001:db8::10", 443));
  EXPECT_EQ(v6.action, Action::kRedirect);
  EXPECT_EQ(v6.proxy_address, ip("::1"));
  EXPECT_EQ(rule_of(rules, to("127.0.0.1", 80)), Rule::kLoopback);
  EXPECT_EQ(rule_of(rules, to("127.8.9.1", 80)), Rule::kLoopback);
  EXPECT_EQ(rule_of(rules, to("::1", 80)), Rule::kLoopback);
}

TEST(Decide, EmptyIncludeRangesRedirectNothingByRange) {
  config::InstallOptions o;
  o.include_ip_ranges = {};
  InterceptionRules rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("203.0.113.10", 80)), Rule::kNotIncluded);
  EXPECT_EQ(decide(rules, to("203.0.113.10", 80)).action, Action::kPassthrough);
  o.include_outbound_ports = {"80"};
  rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("203.0.113.10", 80)), Rule::kIncludedPort);
  EXPECT_EQ(rule_of(rules, to("203.0.113.10", 81)), Rule::kNotIncluded);
}

TEST(Decide, ExcludedPortBeatsEverything) {
  config::InstallOptions o;
  o.exclude_outbound_ports = {"22"};
  o.include_outbound_ports = {"22"};
  InterceptionRules rules = rules_for(o);
  SocketContext s = to("127.0.0.1", 22);
  EXPECT_EQ(rule_of(rules, s), Rule::kExcludedPort);
  s = to("203.0.113.10", 22);
  s.mark = 0x539;
  Verdict v = decide(rules, s);
  EXPECT_EQ(v.rule, Rule::kExcludedPort);
  ASSERT_TRUE(v.port);
  EXPECT_EQ(v.port->port, 22);
}

TEST(Decide, OwnTrafficBeatsLoopbackAndRanges) {
  InterceptionRules rules = rules_for({});
  SocketContext s = to("203.0.113.10", 80);
  s.mark = 0x539;
  EXPECT_EQ(rule_of(rules, s), Rule::kOwnMark);
  s = to("127.0.0.1", 80);
  s.uid = 1337;
  EXPECT_EQ(rule_of(rules, s), Rule::kOwnUid);
  s = to("2001:db8::1", 80);
  s.gid = 1337;
  EXPECT_EQ(rule_of(rules, s), Rule::kOwnGid);
  s = to("203.0.113.10", 80);
  s.mark = 0x538;
  s.uid = 1000;
  EXPECT_EQ(rule_of(rules, s), Rule::kIncludedRange);
}

TEST(Decide, OwnTrafficMatchersCanBeDisabled) {
  ProxySettings proxy;
  proxy.mark.reset();
  proxy.uid.reset();
  proxy.gid = 2000;
  InterceptionRules rules = rules_for({}, proxy);
  SocketContext s = to("203.0.113.10", 80);
  s.mark = 0x539;
  s.uid = 1337;
  s.gid = 1337;
  EXPECT_EQ(rule_of(rules, s), Rule::kIncludedRange);
  s.gid = 2000;
  EXPECT_EQ(rule_of(rules, s), Rule::kOwnGid);
}

TEST(Decide, LoopbackBeatsIncludedPort) {
  config::InstallOptions o;
  o.include_outbound_ports = {"*"};
  InterceptionRules rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("127.0.0.1", 8080)), Rule::kLoopback);
  EXPECT_EQ(rule_of(rules, to("::ffff:127.0.0.1", 8080)), Rule::kLoopback);
}

TEST(Decide, ExcludedRangeBeatsIncludedPortAndRange) {
  config::InstallOptions o;
  o.include_ip_ranges = {"10.0.0.0/8"};
  o.exclude_ip_ranges = {"10.1.0.0/16"};
  o.include_outbound_ports = {"443"};
  InterceptionRules rules = rules_for(o);
  Verdict v = decide(rules, to("10.1.2.3", 443));
  EXPECT_EQ(v.rule, Rule::kExcludedRange);
  ASSERT_TRUE(v.range);
  EXPECT_EQ(v.range->cidr.str(), "10.1.0.0/16");
  EXPECT_EQ(v.range->index, 0u);
  EXPECT_EQ(rule_of(rules, to("10.2.0.1", 80)), Rule::kIncludedRange);
  EXPECT_EQ(rule_of(rules, to("192.0.2.1", 443)), Rule::kIncludedPort);
  EXPECT_EQ(rule_of(rules, to("192.0.2.1", 80)), Rule::kNotIncluded);
}

TEST(Decide, ExcludeWinsRegardlessOfPrefixLength) {
  // An include nested inside an exclude: the exclude still wins (Istio
  // checks excludes first), unlike a single longest-prefix table would.
  config::InstallOptions o;
  o.exclude_ip_ranges = {"10.0.0.0/8"};
  o.include_ip_ranges = {"10.1.2.0/24"};
  InterceptionRules rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("10.1.2.3", 80)), Rule::kExcludedRange);
  // And the reverse nesting: exclude inside include.
  o.exclude_ip_ranges = {"10.1.2.0/24"};
  o.include_ip_ranges = {"10.0.0.0/8"};
  rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("10.1.2.3", 80)), Rule::kExcludedRange);
  EXPECT_EQ(rule_of(rules, to("10.1.3.3", 80)), Rule::kIncludedRange);
}

TEST(Decide, OverlappingIncludesReportLongestPrefix) {
  config::InstallOptions o;
  o.include_ip_ranges = {"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"};
  InterceptionRules rules = rules_for(o);
  Verdict v = decide(rules, to("10.1.2.3", 80));
  ASSERT_TRUE(v.range);
  EXPECT_EQ(v.range->index, 2u);
  v = decide(rules, to("10.1.9.3", 80));
  ASSERT_TRUE(v.range);
  EXPECT_EQ(v.range->index, 1u);
}

TEST(Decide, StarEverywhere) {
  config::InstallOptions o;
  o.include_ip_ranges = {"10.0.0.0/8", "*"};
  InterceptionRules rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("192.0.2.1", 80)), Rule::kIncludedRange);
  EXPECT_EQ(rule_of(rules, to("2001:db8::1", 80)), Rule::kIncludedRange);

  o.exclude_ip_ranges = {"*"};
  o.include_outbound_ports = {"*"};
  rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("192.0.2.1", 80)), Rule::kExcludedRange);
  EXPECT_EQ(rule_of(rules, to("2001:db8::1", 80)), Rule::kExcludedRange);

  o = {};
  o.exclude_outbound_ports = {"*"};
  rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("192.0.2.1", 1)), Rule::kExcludedPort);
  EXPECT_EQ(rule_of(rules, to("2001:db8::1", 65535)), Rule::kExcludedPort);
}

TEST(Decide, Ipv6Ranges) {
  config::InstallOptions o;
  o.include_ip_ranges = {"2001:db8::/32"};
  o.exclude_ip_ranges = {"2001:db8:dead::/48"};
  InterceptionRules rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("2001:db8:1::1", 80)), Rule::kIncludedRange);
  EXPECT_EQ(rule_of(rules, to("2001:db8:dead::1", 80)), Rule::kExcludedRange);
  EXPECT_EQ(rule_of(rules, to("2001:db9::1", 80)), Rule::kNotIncluded);
  // v6 ranges never match IPv4 traffic, v4 ranges never IPv6.
  EXPECT_EQ(rule_of(rules, to("203.0.113.1", 80)), Rule::kNotIncluded);
}

TEST(Decide, V4MappedDestinationsUseV4Rules) {
  config::InstallOptions o;
  o.include_ip_ranges = {"203.0.113.0/24"};
  o.exclude_ip_ranges = {"203.0.113.128/25"};
  InterceptionRules rules = rules_for(o);
  Verdict v = decide(rules, to("::ffff:203.0.113.7", 80));
  EXPECT_EQ(v.rule, Rule::kIncludedRange);
  EXPECT_EQ(v.action, Action::kRedirect);
  // The socket is IPv6: the proxy's IPv4 address, mapped.
  EXPECT_EQ(v.proxy_address, ip("::ffff:127.0.0.1"));
  EXPECT_EQ(rule_of(rules, to("::ffff:203.0.113.200", 80)), Rule::kExcludedRange);
  // ::/0 is IPv6 only: mapped traffic is IPv4 on the wire.
  o.include_ip_ranges = {"::/0"};
  o.exclude_ip_ranges = {};
  rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("::ffff:203.0.113.7", 80)), Rule::kNotIncluded);
  // A mapped range in the config is an IPv4 range.
  o.include_ip_ranges = {"::ffff:203.0.113.0/120"};
  rules = rules_for(o);
  EXPECT_EQ(rule_of(rules, to("203.0.113.7", 80)), Rule::kIncludedRange);
  EXPECT_EQ(rule_of(rules, to("::ffff:203.0.113.7", 80)), Rule::kIncludedRange);
}

TEST(Decide, ProxyAddressIsNeverRedirected) {
  ProxySettings proxy;
  proxy.ipv4 = ip("198.51.100.1");
  InterceptionRules rules = rules_for({}, proxy);
  EXPECT_EQ(rule_of(rules, to("198.51.100.1", 15001)), Rule::kProxyAddress);
  EXPECT_EQ(rule_of(rules, to("198.51.100.1", 80)), Rule::kIncludedRange);
  Verdict v = decide(rules, to("203.0.113.9", 80));
  EXPECT_EQ(v.proxy_address, ip("198.51.100.1"));
}

TEST(Decide, NoProxyForFamily) {
  ProxySettings proxy;
  proxy.ipv6.reset();
  InterceptionRules rules = rules_for({}, proxy);
  Verdict v = decide(rules, to("2001:db8::1", 80));
  EXPECT_EQ(v.rule, Rule::kNoProxyForFamily);
  EXPECT_EQ(v.action, Action::kPassthrough);
  EXPECT_EQ(decide(rules, to("::ffff:203.0.113.1", 80)).action, Action::kRedirect);
  // Only when it would have been redirected.
  config::InstallOptions o;
  o.exclude_ip_ranges = {"2001:db8::/32"};
  rules = rules_for(o, proxy);
  EXPECT_EQ(rule_of(rules, to("2001:db8::1", 80)), Rule::kExcludedRange);
}

TEST(CompileRules, ReportsBadValuesWithOptionAndIndex) {
  config::InstallOptions o;
  o.file = "values.yaml";
  o.include_ip_ranges = {"10.0.0.0/8", "10.0.0.0/33", "bogus"};
  o.exclude_outbound_ports = {"22", "0", "65536", "ssh", " 80 "};
  config::Diagnostics d;
  InterceptionRules rules = compile_rules(o, {}, d);
  ASSERT_EQ(d.error_count(), 5u);
  EXPECT_NE(d.items()[0].message.find("includeIPRanges[1]"), std::string::npos);
  EXPECT_NE(d.items()[0].message.find("larger than 32"), std::string::npos);
  EXPECT_EQ(d.items()[0].location.file, "values.yaml");
  EXPECT_NE(d.items()[1].message.find("includeIPRanges[2]"), std::string::npos);
  EXPECT_NE(d.items()[2].message.find("excludeOutboundPorts[1]"), std::string::npos);
  ASSERT_EQ(rules.exclude_ports.ports.size(), 2u);  // 22 and the trimmed 80
  EXPECT_EQ(rules.exclude_ports.ports[1].port, 80);
  EXPECT_EQ(rules.exclude_ports.ports[1].index, 4u);
}

TEST(CompileRules, WarnsOnHostBitsAndIgnoresEmptyEntries) {
  config::InstallOptions o;
  o.include_ip_ranges = {"", "10.1.2.3/8", " "};
  config::Diagnostics d;
  InterceptionRules rules = compile_rules(o, {}, d);
  EXPECT_FALSE(d.has_errors());
  EXPECT_EQ(d.warning_count(), 1u);
  ASSERT_EQ(rules.include_ranges.ranges.size(), 1u);
  EXPECT_EQ(rules.include_ranges.ranges[0].cidr.str(), "10.0.0.0/8");
  EXPECT_EQ(rules.include_ranges.ranges[0].index, 1u);
}

TEST(Rule, NamesAndKernelValues) {
  EXPECT_STREQ(to_string(Rule::kExcludedPort), "excluded-port");
  EXPECT_STREQ(to_string(Rule::kIncludedRange), "included-range");
  EXPECT_EQ(rule_from_kernel(SLUICE_RULE_OWN_MARK), Rule::kOwnMark);
  EXPECT_FALSE(rule_from_kernel(SLUICE_RULE_COUNT));
  for (uint32_t r = 0; r < SLUICE_RULE_COUNT; ++r) {
    EXPECT_STRNE(to_string(static_cast<Rule>(r)), "unknown");
  }
}

}  // namespace
}  // namespace sluice::decision
