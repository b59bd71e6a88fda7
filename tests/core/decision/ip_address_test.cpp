#include "core/decision/ip_address.h"

#include <gtest/gtest.h>

namespace sluice::decision {
namespace {

IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

TEST(IpAddress, ParsesBothFamilies) {
  EXPECT_TRUE(ip("10.1.2.3").is_v4());
  EXPECT_EQ(ip("10.1.2.3").str(), "10.1.2.3");
  EXPECT_TRUE(ip("2001:db8::1").is_v6());
  EXPECT_EQ(ip("2001:db8::1").str(), "2001:db8::1");
  EXPECT_FALSE(IpAddress::parse("10.1.2"));
  EXPECT_FALSE(IpAddress::parse("10.1.2.256"));
  EXPECT_FALSE(IpAddress::parse("[::1]"));
  EXPECT_FALSE(IpAddress::parse(""));
  EXPECT_FALSE(IpAddress::parse("example.com"));
}

TEST(IpAddress, MappedFoldsToV4) {
  IpAddress mapped = ip("::ffff:203.0.113.7");
  EXPECT_TRUE(mapped.is_v6());
  EXPECT_TRUE(mapped.is_v4_mapped());
  EXPECT_EQ(mapped.unmapped(), ip("203.0.113.7"));
  EXPECT_FALSE(ip("::203.0.113.7").is_v4_mapped());  // deprecated v4-compatible: not mapped
  EXPECT_EQ(ip("2001:db8::1").unmapped(), ip("2001:db8::1"));
}

TEST(IpAddress, Loopback) {
  EXPECT_TRUE(ip("127.0.0.1").is_loopback());
  EXPECT_TRUE(ip("127.255.0.9").is_loopback());
  EXPECT_TRUE(ip("::1").is_loopback());
  EXPECT_TRUE(ip("::ffff:127.0.0.1").is_loopback());
  EXPECT_FALSE(ip("128.0.0.1").is_loopback());
  EXPECT_FALSE(ip("::2").is_loopback());
}

TEST(Cidr, ParsesAndContains) {
  auto r = Cidr::parse("10.0.0.0/8");
  ASSERT_TRUE(r.cidr);
  EXPECT_TRUE(r.cidr->contains(ip("10.255.1.1")));
  EXPECT_FALSE(r.cidr->contains(ip("11.0.0.1")));
  EXPECT_FALSE(r.cidr->contains(ip("::ffff:10.0.0.1")));  // callers unmap first

  auto v6 = Cidr::parse("2001:db8::/32");
  ASSERT_TRUE(v6.cidr);
  EXPECT_TRUE(v6.cidr->contains(ip("2001:db8:ffff::1")));
  EXPECT_FALSE(v6.cidr->contains(ip("2001:db9::1")));
}

TEST(Cidr, BareAddressIsHostRange) {
  auto r = Cidr::parse("198.51.100.7");
  ASSERT_TRUE(r.cidr);
  EXPECT_EQ(r.cidr->str(), "198.51.100.7/32");
  auto v6 = Cidr::parse("2001:db8::7");
  ASSERT_TRUE(v6.cidr);
  EXPECT_EQ(v6.cidr->prefix_len(), 128);
}

TEST(Cidr, HostBitsAreMaskedAndReported) {
  auto r = Cidr::parse("10.1.2.3/8");
  ASSERT_TRUE(r.cidr);
  EXPECT_TRUE(r.had_host_bits);
  EXPECT_EQ(r.cidr->str(), "10.0.0.0/8");
  auto odd = Cidr::parse("192.168.1.255/23");
  ASSERT_TRUE(odd.cidr);
  EXPECT_EQ(odd.cidr->str(), "192.168.0.0/23");
  EXPECT_FALSE(Cidr::parse("10.0.0.0/8").had_host_bits);
}

TEST(Cidr, MappedRangeBecomesV4) {
  auto r = Cidr::parse("::ffff:10.0.0.0/104");
  ASSERT_TRUE(r.cidr);
  EXPECT_TRUE(r.cidr->family() == Family::kV4);
  EXPECT_EQ(r.cidr->str(), "10.0.0.0/8");
  auto all = Cidr::parse("::ffff:0:0/96");
  ASSERT_TRUE(all.cidr);
  EXPECT_EQ(all.cidr->str(), "0.0.0.0/0");
  EXPECT_FALSE(Cidr::parse("::ffff:0:0/80").cidr);
}

TEST(Cidr, RejectsMalformed) {
  EXPECT_FALSE(Cidr::parse("10.0.0.0/33").cidr);
  EXPECT_NE(Cidr::parse("10.0.0.0/33").error.find("larger than 32"), std::string::npos);
  EXPECT_FALSE(Cidr::parse("2001:db8::/129").cidr);
  EXPECT_FALSE(Cidr::parse("10.0.0.0/").cidr);
  EXPECT_FALSE(Cidr::parse("10.0.0.0/x").cidr);
  EXPECT_FALSE(Cidr::parse("10.0.0.0/-1").cidr);
  EXPECT_FALSE(Cidr::parse("foo/8").cidr);
  EXPECT_FALSE(Cidr::parse("*").cidr);
}

TEST(Cidr, ZeroPrefixContainsEverythingOfItsFamily) {
  auto r = Cidr::parse("0.0.0.0/0");
  ASSERT_TRUE(r.cidr);
  EXPECT_TRUE(r.cidr->contains(ip("203.0.113.1")));
  EXPECT_FALSE(r.cidr->contains(ip("2001:db8::1")));
}

}  // namespace
}  // namespace sluice::decision
