#include "userspace-proxy/sniff/host_name.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::sniff {
namespace {

std::string normalize(std::string_view in, HostKind* kind = nullptr) {
  std::string out(in.size(), '\0');
  HostKind k = HostKind::kNone;
  out.resize(normalize_host_name(in, out.data(), &k));
  if (kind != nullptr) *kind = k;
  return out;
}

TEST(HostName, Normalizes) {
  HostKind kind;
  EXPECT_EQ(normalize("Edition.CNN.com", &kind), "edition.cnn.com");
  EXPECT_EQ(kind, HostKind::kName);
  EXPECT_EQ(normalize("example.com."), "example.com");
  EXPECT_EQ(normalize("_srv.x-y.example"), "_srv.x-y.example");
  EXPECT_EQ(normalize("localhost"), "localhost");
  EXPECT_EQ(normalize("10.0.0.1", &kind), "10.0.0.1");
  EXPECT_EQ(kind, HostKind::kIpv4);
  EXPECT_EQ(normalize("1a.2"), "");     // numeric last label, not an address
  EXPECT_EQ(normalize("a.1e"), "a.1e");  // hex-looking but alphabetic: a name
  const std::string label63(63, 'a');
  EXPECT_EQ(normalize(label63 + ".com"), label63 + ".com");
  std::string long_name;
  while (long_name.size() < 253) long_name += "a.";
  long_name.resize(253);
  if (long_name.back() == '.') long_name.back() = 'b';
  EXPECT_EQ(normalize(long_name).size(), 253u);
  EXPECT_EQ(normalize(long_name + "c"), "");
}

TEST(HostName, Refuses) {
  for (std::string_view bad : {"", ".", "..", ".a", "a..b", "a b", "a/b", "a:b", "a*b", "*.example.com",
                               "01.2.3.4", "1.2.3", "256.1.1.1", "\xc3\xa9.com"}) {
    EXPECT_EQ(normalize(bad), "") << bad;
  }
  EXPECT_EQ(normalize(std::string("a\0b", 3)), "");
  EXPECT_EQ(normalize(std::string(64, 'a') + ".com"), "");
}

TEST(HostName, Ipv6Literal) {
  EXPECT_TRUE(is_ipv6_literal("::1"));
  EXPECT_TRUE(is_ipv6_literal("2001:db8::1"));
  EXPECT_TRUE(is_ipv6_literal("::ffff:10.0.0.1"));
  EXPECT_FALSE(is_ipv6_literal("fe80::1%eth0"));
  EXPECT_FALSE(is_ipv6_literal("[::1]"));
  EXPECT_FALSE(is_ipv6_literal(""));
  EXPECT_FALSE(is_ipv6_literal(std::string(100, '1')));
}

}  // namespace
}  // namespace sluice::sniff
