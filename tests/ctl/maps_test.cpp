// `sluicectl maps` decoding and rendering, from map contents built the way
// the agent builds them (no kernel needed; tests/ctl/maps_test.sh reads real
// pins as root).
#include "ctl/maps.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "core/decision/interception_rules.h"

namespace sluice::ctl {
namespace {

using decision::Cidr;

Cidr cidr(const char* text) {
  auto r = Cidr::parse(text);
  EXPECT_TRUE(r.cidr.has_value()) << text;
  return r.cidr.value_or(Cidr{});
}

// includeIPRanges "203.0.113.0/24,2001:db8:2::/48,10.0.0.0/8" etc.
MapsReport sample() {
  decision::InterceptionRules rules;
  rules.include_ranges.ranges = {{cidr("203.0.113.0/24"), 0}, {cidr("2001:db8:2::/48"), 1}, {cidr("10.0.0.0/8"), 2}};
  rules.exclude_ranges.ranges = {{cidr("203.0.113.128/25"), 0}};
  rules.include_ports.ports = {{7070, 0}, {8080, 1}};
  rules.exclude_ports.all = true;
  rules.proxy.ipv6.reset();
  rules.proxy.gid.reset();
  MapsReport r;
  r.pin_dir = "/sys/fs/bpf/sluice";
  r.have_config = true;
  r.contents = decision::to_map_contents(rules);
  r.possible_cpus = 2;
  r.counters.assign(SLUICE_CTR_COUNT, 0);
  r.counters[SLUICE_CTR_INTERCEPTED] = 5;
  r.counters[SLUICE_CTR_TUPLE_FAILED] = 1;
  return r;
}

TEST(MapsTest, CounterNamesFollowTheKernelEnum) {
  EXPECT_STREQ(counter_name(SLUICE_CTR_INTERCEPTED), "intercepted");
  EXPECT_STREQ(counter_name(SLUICE_CTR_OWN_TRAFFIC), "own_traffic");
  EXPECT_STREQ(counter_name(SLUICE_CTR_ORIGDST_MISS), "origdst_miss");
  EXPECT_STREQ(counter_name(SLUICE_CTR_TUPLE_FAILED), "tuple_failed");
  EXPECT_STREQ(counter_name(SLUICE_CTR_MSG_REDIRECTED), "msg_redirected");
  EXPECT_EQ(counter_name(SLUICE_CTR_COUNT), nullptr);
}

TEST(MapsTest, RangeTextIsCidrAsStored) {
  sluice_lpm_v4 k4{};
  k4.prefixlen = 25;
  k4.addr[0] = 203; k4.addr[1] = 0; k4.addr[2] = 113; k4.addr[3] = 128;
  EXPECT_EQ(range_text(k4), "203.0.113.128/25");
  sluice_lpm_v6 k6{};
  k6.prefixlen = 48;
  k6.addr[0] = 0x20; k6.addr[1] = 0x01; k6.addr[2] = 0x0d; k6.addr[3] = 0xb8; k6.addr[5] = 0x02;
  EXPECT_EQ(range_text(k6), "2001:db8:2::/48");
}

TEST(MapsTest, JsonListsRangesInConfigurationOrder) {
  std::ostringstream out;
  write_maps(out, OutputFormat::kJson, sample());
  const auto j = nlohmann::json::parse(out.str());
  ASSERT_EQ(j["include_ranges"].size(), 3u);
  EXPECT_EQ(j["include_ranges"][0]["cidr"], "203.0.113.0/24");
  EXPECT_EQ(j["include_ranges"][1]["cidr"], "2001:db8:2::/48");
  EXPECT_EQ(j["include_ranges"][2]["cidr"], "10.0.0.0/8");
  EXPECT_EQ(j["include_ranges"][2]["index"], 2);
  EXPECT_EQ(j["exclude_ranges"][0]["cidr"], "203.0.113.128/25");
  ASSERT_EQ(j["include_ports"].size(), 2u);
  EXPECT_EQ(j["include_ports"][1]["port"], 8080);
  EXPECT_TRUE(j["exclude_ports"].empty());
  const auto& c = j["config"];
  EXPECT_EQ(c["enabled"], true);
  EXPECT_EQ(c["proxy_ipv4"], "127.0.0.1");
  EXPECT_EQ(c["proxy_port4"], 15001);
  EXPECT_TRUE(c["proxy_ipv6"].is_null());
  EXPECT_EQ(c["mark"], 0x539);
  EXPECT_EQ(c["uid"], 1337);
  EXPECT_TRUE(c["gid"].is_null());
  EXPECT_EQ(c["exclude_all_ports"], true);
  EXPECT_EQ(c["include_all_ports"], false);
  EXPECT_EQ(j["counters"]["intercepted"], 5);
  EXPECT_EQ(j["counters"]["tuple_failed"], 1);
  EXPECT_EQ(j["counters"].size(), static_cast<size_t>(SLUICE_CTR_COUNT));
  EXPECT_TRUE(j["errors"].empty());
}

TEST(MapsTest, JsonCountersKeepTheEnumOrder) {
  std::ostringstream out;
  write_maps(out, OutputFormat::kJson, sample());
  const auto j = nlohmann::ordered_json::parse(out.str());
  uint32_t i = 0;
  for (const auto& [name, value] : j["counters"].items()) EXPECT_EQ(name, counter_name(i++));
  EXPECT_EQ(i, static_cast<uint32_t>(SLUICE_CTR_COUNT));
}

TEST(MapsTest, TextShowsEveryPart) {
  std::ostringstream out;
  write_maps(out, OutputFormat::kText, sample());
  const std::string t = out.str();
  EXPECT_NE(t.find("proxy IPv4:  127.0.0.1:15001\n"), std::string::npos) << t;
  EXPECT_NE(t.find("proxy IPv6:  none\n"), std::string::npos) << t;
  EXPECT_NE(t.find("mark:        0x539 (1337)\n"), std::string::npos) << t;
  EXPECT_NE(t.find("gid:         none\n"), std::string::npos) << t;
  EXPECT_NE(t.find("include ranges (sluice_incl_v4, sluice_incl_v6): 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("exclude ports (sluice_excl_pt): 0, and \"*\" (every port)\n"), std::string::npos) << t;
  EXPECT_LT(t.find("203.0.113.0/24"), t.find("2001:db8:2::/48"));
  EXPECT_LT(t.find("2001:db8:2::/48"), t.find("10.0.0.0/8"));
  EXPECT_NE(t.find("  intercepted          5\n"), std::string::npos) << t;
  EXPECT_EQ(t.find("error:"), std::string::npos) << t;
}

TEST(MapsTest, MissingPinDirIsAnErrorWithTheReason) {
  const MapsReport r = read_pinned_maps("/nonexistent/sluice-maps-test");
  EXPECT_EQ(r.exit_code(), kMapsFailed);
  EXPECT_NE(r.error.find("does not exist"), std::string::npos) << r.error;
  std::ostringstream out;
  write_maps(out, OutputFormat::kJson, r);
  EXPECT_EQ(nlohmann::json::parse(out.str())["error"], r.error);
}

TEST(MapsTest, MapErrorsFailTheCommand) {
  MapsReport r = sample();
  r.map_errors.push_back({"sluice_incl_v4", "bpf_obj_get: No such file or directory"});
  EXPECT_EQ(r.exit_code(), kMapsFailed);
  std::ostringstream out;
  write_maps(out, OutputFormat::kText, r);
  EXPECT_NE(out.str().find("error: sluice_incl_v4: bpf_obj_get"), std::string::npos);
}

}  // namespace
}  // namespace sluice::ctl
