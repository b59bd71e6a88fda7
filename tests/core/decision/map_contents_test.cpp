#include "core/decision/map_contents.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace sluice::decision {
namespace {

TEST(MapContents, SharedStructLayouts) {
  // The kernel and user space read these through one header; the sizes are
  // part of the pinned maps' identity (an agent upgrade that changes them
  // needs an uninstall, except for sluice_config, sluice_counters and
  // sluice_sk_path, which the agent replaces).
  EXPECT_EQ(sizeof(sluice_config), 48u);
  EXPECT_EQ(sizeof(sluice_lpm_v4), 8u);
  EXPECT_EQ(sizeof(sluice_lpm_v6), 20u);
  EXPECT_EQ(sizeof(sluice_port_key), 2u);
  EXPECT_EQ(sizeof(sluice_orig_dst), 32u);
  EXPECT_EQ(sizeof(sluice_tuple_key), 48u);
  EXPECT_EQ(sizeof(sluice_sk_path), 72u);
  EXPECT_EQ(SLUICE_AF_INET, AF_INET);
  EXPECT_EQ(SLUICE_AF_INET6, AF_INET6);
}

TEST(MapContents, SocketRedirectIsAFlag) {
  config::Diagnostics d;
  ProxySettings proxy;
  EXPECT_EQ(to_map_contents(compile_rules({}, proxy, d)).config.flags & SLUICE_F_SOCKET_REDIRECT, 0u);
  proxy.socket_redirect = true;
  MapContents on = to_map_contents(compile_rules({}, proxy, d));
  EXPECT_NE(on.config.flags & SLUICE_F_SOCKET_REDIRECT, 0u);
  EXPECT_EQ(on.config.sock_queue_limit, 4u << 20);
  proxy.socket_redirect_queue_limit = 1u << 20;
  EXPECT_EQ(to_map_contents(compile_rules({}, proxy, d)).config.sock_queue_limit, 1u << 20);
  EXPECT_FALSE(on == to_map_contents(compile_rules({}, {}, d)));  // the agent rewrites the config
}

TEST(MapContents, DefaultInstall) {
  config::Diagnostics d;
  InterceptionRules rules = compile_rules({}, {}, d);
  MapContents m = to_map_contents(rules);
  EXPECT_EQ(m.config.flags, static_cast<uint32_t>(SLUICE_F_ENABLED | SLUICE_F_PROXY4 |
                                                  SLUICE_F_PROXY6 | SLUICE_F_MATCH_MARK |
                                                  SLUICE_F_MATCH_UID | SLUICE_F_MATCH_GID));
  EXPECT_EQ(m.config.mark, 0x539u);
  EXPECT_EQ(m.config.uid, 1337u);
  EXPECT_EQ(m.config.proxy_port4, 15001);
  EXPECT_EQ(m.config.proxy_ip4[0], 127);
  EXPECT_EQ(m.config.proxy_ip4[3], 1);
  EXPECT_EQ(m.config.proxy_ip6[15], 1);
  // "*" is a /0 in each trie.
  ASSERT_EQ(m.include_v4.size(), 1u);
  EXPECT_EQ(m.include_v4[0].first.prefixlen, 0u);
  ASSERT_EQ(m.include_v6.size(), 1u);
  EXPECT_EQ(m.include_v6[0].first.prefixlen, 0u);
  EXPECT_TRUE(m.exclude_v4.empty());
  EXPECT_TRUE(m.include_ports.empty());
}

TEST(MapContents, RangesPortsAndFlags) {
  config::InstallOptions o;
  o.include_ip_ranges = {"10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.0/120"};
  o.exclude_ip_ranges = {"10.1.0.0/16"};
  o.include_outbound_ports = {"*"};
  o.exclude_outbound_ports = {"22", "3306"};
  ProxySettings proxy;
  proxy.ipv6.reset();
  proxy.mark.reset();
  config::Diagnostics d;
  MapContents m = to_map_contents(compile_rules(o, proxy, d));
  ASSERT_FALSE(d.has_errors());
  EXPECT_TRUE(m.config.flags & SLUICE_F_INCLUDE_ALL_PORTS);
  EXPECT_FALSE(m.config.flags & SLUICE_F_EXCLUDE_ALL_PORTS);
  EXPECT_FALSE(m.config.flags & SLUICE_F_PROXY6);
  EXPECT_FALSE(m.config.flags & SLUICE_F_MATCH_MARK);
  ASSERT_EQ(m.include_v4.size(), 2u);
  EXPECT_EQ(m.include_v4[0].first.prefixlen, 8u);
  EXPECT_EQ(m.include_v4[0].first.addr[0], 10);
  EXPECT_EQ(m.include_v4[1].first.prefixlen, 24u);  // the mapped range
  EXPECT_EQ(m.include_v4[1].first.addr[0], 192);
  EXPECT_EQ(m.include_v4[1].second.index, 2u);
  ASSERT_EQ(m.include_v6.size(), 1u);
  EXPECT_EQ(m.include_v6[0].first.prefixlen, 32u);
  EXPECT_EQ(m.include_v6[0].first.addr[0], 0x20);
  EXPECT_EQ(m.include_v6[0].first.addr[3], 0xb8);
  ASSERT_EQ(m.exclude_v4.size(), 1u);
  EXPECT_EQ(m.exclude_v4[0].first.addr[1], 1);
  ASSERT_EQ(m.exclude_ports.size(), 2u);
  EXPECT_EQ(m.exclude_ports[1].first.port, 3306);
  EXPECT_EQ(m.exclude_ports[1].second.index, 1u);
}

TEST(MapContents, EqualityFollowsContent) {
  config::Diagnostics d;
  config::InstallOptions a;
  config::InstallOptions b;
  b.exclude_ip_ranges = {"10.0.0.0/8"};
  EXPECT_TRUE(to_map_contents(compile_rules(a, {}, d)) == to_map_contents(compile_rules(a, {}, d)));
  EXPECT_FALSE(to_map_contents(compile_rules(a, {}, d)) == to_map_contents(compile_rules(b, {}, d)));
}

}  // namespace
}  // namespace sluice::decision
