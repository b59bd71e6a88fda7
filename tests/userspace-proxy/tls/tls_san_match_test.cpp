// SAN matching is a pure function: the cases Envoy's dnsNameMatch and
// Istio's SPIFFE checks care about.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "userspace-proxy/tls/san_match.h"

namespace sluice::tls {
namespace {

TEST(DnsSanMatchTest, ExactNamesIgnoreCaseAndOneTrailingDot) {
  EXPECT_TRUE(dns_san_matches("edition.cnn.com", "edition.cnn.com"));
  EXPECT_TRUE(dns_san_matches("Edition.CNN.com", "edition.cnn.COM"));
  EXPECT_TRUE(dns_san_matches("edition.cnn.com.", "edition.cnn.com"));
  EXPECT_TRUE(dns_san_matches("edition.cnn.com", "edition.cnn.com."));
  EXPECT_FALSE(dns_san_matches("edition.cnn.com", "edition.cnn.co"));
  EXPECT_FALSE(dns_san_matches("edition.cnn.com", "xedition.cnn.com"));
  EXPECT_FALSE(dns_san_matches("", ""));
  EXPECT_FALSE(dns_san_matches("a.com", ""));
}

TEST(DnsSanMatchTest, WildcardCoversExactlyOneLeftmostLabel) {
  EXPECT_TRUE(dns_san_matches("*.cnn.com", "edition.cnn.com"));
  EXPECT_TRUE(dns_san_matches("*.cnn.com", "WWW.CNN.COM"));
  EXPECT_TRUE(dns_san_matches("*.cnn.com.", "www.cnn.com"));
  EXPECT_FALSE(dns_san_matches("*.cnn.com", "cnn.com"));
  EXPECT_FALSE(dns_san_matches("*.cnn.com", ".cnn.com"));
  EXPECT_FALSE(dns_san_matches("*.cnn.com", "a.b.cnn.com"));
  EXPECT_FALSE(dns_san_matches("*.cnn.com", "edition.cnn.com.evil"));
  EXPECT_FALSE(dns_san_matches("*.cnn.com", "editioncnn.com"));
}

TEST(DnsSanMatchTest, OnlyALeadingWholeLabelWildcardIsAWildcard) {
  EXPECT_FALSE(dns_san_matches("*", "anything"));
  EXPECT_FALSE(dns_san_matches("*.com", "cnn.com"));  // too broad
  EXPECT_FALSE(dns_san_matches("ed*.cnn.com", "edition.cnn.com"));
  EXPECT_FALSE(dns_san_matches("edition.*.com", "edition.cnn.com"));
  EXPECT_FALSE(dns_san_matches("*.*.com", "a.cnn.com"));
  // Literal equality still holds.
  EXPECT_TRUE(dns_san_matches("*.cnn.com", "*.cnn.com"));
  EXPECT_TRUE(dns_san_matches("ed*.cnn.com", "ed*.cnn.com"));
}

TEST(SanMatchTest, SpiffeIdsCompareExactly) {
  PeerIdentity peer;
  peer.uri_sans = {"spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"};
  const std::vector<std::string> ok = {"spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"};
  EXPECT_TRUE(san_matches(peer, ok));
  for (const char* bad : {"spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway",
                          "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account/",
                          "SPIFFE://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account",
                          "spiffe://other.local/ns/istio-system/sa/istio-egressgateway-service-account",
                          "spiffe://cluster.local/ns/istio-system/sa/*"}) {
    EXPECT_FALSE(san_matches(peer, std::vector<std::string>{bad})) << bad;
  }
}

TEST(SanMatchTest, AnyExpectedNameAgainstAnyPeerName) {
  PeerIdentity peer;
  peer.uri_sans = {"spiffe://cluster.local/ns/default/sa/sleep"};
  peer.dns_sans = {"sleep.default.svc", "*.cnn.com"};
  EXPECT_TRUE(san_matches(peer, std::vector<std::string>{"nope", "spiffe://cluster.local/ns/default/sa/sleep"}));
  EXPECT_TRUE(san_matches(peer, std::vector<std::string>{"sleep.default.svc"}));
  EXPECT_TRUE(san_matches(peer, std::vector<std::string>{"edition.cnn.com"}));
  EXPECT_FALSE(san_matches(peer, std::vector<std::string>{"cnn.com", "sleep.default"}));
  // A URI expectation never matches a DNS SAN with the same text, and the
  // other way round: "sleep.default.svc" as a URI SAN is not a DNS name.
  PeerIdentity uri_only;
  uri_only.uri_sans = {"sleep.default.svc"};
  EXPECT_TRUE(san_matches(uri_only, std::vector<std::string>{"sleep.default.svc"}));  // exact URI
  PeerIdentity dns_only;
  dns_only.dns_sans = {"*.cnn.com"};
  EXPECT_FALSE(san_matches(dns_only, std::vector<std::string>{"spiffe://x.cnn.com"}));
}

TEST(SanMatchTest, NothingExpectedMatchesEveryoneButAPeerWithoutNamesMatchesNothing) {
  PeerIdentity none;
  EXPECT_TRUE(san_matches(none, {}));
  EXPECT_FALSE(san_matches(none, std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/sleep"}));
  EXPECT_EQ(none.to_string(), "");
  PeerIdentity p;
  p.uri_sans = {"spiffe://a/ns/b/sa/c"};
  p.dns_sans = {"x.example.com"};
  EXPECT_EQ(p.to_string(), "spiffe://a/ns/b/sa/c,DNS:x.example.com");
}

}  // namespace
}  // namespace sluice::tls
