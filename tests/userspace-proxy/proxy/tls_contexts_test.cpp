// The proxy's TLS context cache: one context per setting, shared; rebuilt
// when a certificate file rotates (new connections get the new one, old
// ones keep theirs); a broken file is an error for that setting only.
#include "userspace-proxy/proxy/tls_contexts.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/userspace-proxy/tls/tls_test_util.h"

namespace sluice::proxy {
namespace {

using tls::testing::Certs;

config::ServerTLSSettings mutual(const std::string& dir) {
  config::ServerTLSSettings s;
  s.mode = config::ServerTLSMode::kMutual;
  s.server_certificate = dir + "/cert-chain.pem";
  s.private_key = dir + "/key.pem";
  s.ca_certificates = dir + "/root-cert.pem";
  return s;
}

// A private copy of the gateway identity the test may rotate.
std::string copy_identity(const std::string& name) {
  std::string dir = Certs::get().path("rot-" + name);
  std::filesystem::create_directories(dir);
  for (const char* f : {"cert-chain.pem", "key.pem", "root-cert.pem"}) {
    std::filesystem::copy_file(Certs::get().path(std::string("gateway/") + f), dir + "/" + f,
                               std::filesystem::copy_options::overwrite_existing);
  }
  return dir;
}

TEST(TlsContextsTest, OneContextPerSettingShared) {
  TlsContexts contexts(Certs::get().path("sleep"));
  std::string err;
  auto a = contexts.server(mutual(Certs::get().path("gateway")), &err);
  ASSERT_NE(a, nullptr) << err;
  auto b = contexts.server(mutual(Certs::get().path("gateway")), &err);
  EXPECT_EQ(a, b);
  EXPECT_EQ(contexts.builds(), 1u);
  config::ClientTLSSettings c;
  c.mode = config::ClientTLSMode::kIstioMutual;
  c.sni = "edition.cnn.com";
  auto client = contexts.client(c, {tls::testing::kGatewayId}, &err);
  ASSERT_NE(client, nullptr) << err;
  EXPECT_EQ(client->options().subject_alt_names, std::vector<std::string>{tls::testing::kGatewayId});
  EXPECT_EQ(contexts.builds(), 2u);
  // The DestinationRule's own subjectAltNames win over the expected identity.
  c.subject_alt_names = {"spiffe://cluster.local/ns/x/sa/y"};
  auto other = contexts.client(c, {tls::testing::kGatewayId}, &err);
  ASSERT_NE(other, nullptr) << err;
  EXPECT_NE(other, client);
  EXPECT_EQ(other->options().subject_alt_names, c.subject_alt_names);
}

TEST(TlsContextsTest, RotatedFilesBuildANewContextOldOneStaysUsable) {
  std::string dir = copy_identity("a");
  TlsContexts contexts(dir, std::chrono::milliseconds(0));
  std::string err;
  auto before = contexts.server(mutual(dir), &err);
  ASSERT_NE(before, nullptr) << err;
  EXPECT_EQ(contexts.server(mutual(dir), &err), before) << "unchanged files: same context";
  // Rotation: a new certificate and key for the same identity.
  ASSERT_EQ(Certs::get().run("--dir '" + Certs::get().dir() +
                             "' --force workload gateway2 --ns istio-system --sa istio-egressgateway-service-account"),
            0);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // a distinct mtime
  for (const char* f : {"cert-chain.pem", "key.pem"}) {
    std::filesystem::copy_file(Certs::get().path(std::string("gateway2/") + f), dir + "/" + f,
                               std::filesystem::copy_options::overwrite_existing);
  }
  auto after = contexts.server(mutual(dir), &err);
  ASSERT_NE(after, nullptr) << err;
  EXPECT_NE(after, before);
  EXPECT_EQ(contexts.builds(), 2u);
  EXPECT_NE(before->ssl_ctx(), nullptr) << "connections holding the old context keep it";
}

TEST(TlsContextsTest, BrokenFileIsAnErrorNamingTheFile) {
  std::string dir = copy_identity("b");
  { std::ofstream(dir + "/key.pem", std::ios::trunc) << "not a key\n"; }
  TlsContexts contexts(dir, std::chrono::milliseconds(0));
  std::string err;
  EXPECT_EQ(contexts.server(mutual(dir), &err), nullptr);
  EXPECT_NE(err.find(dir + "/key.pem"), std::string::npos) << err;
  // Fixed: the next connection gets a context.
  std::filesystem::copy_file(Certs::get().path("gateway/key.pem"), dir + "/key.pem",
                             std::filesystem::copy_options::overwrite_existing);
  err.clear();
  EXPECT_NE(contexts.server(mutual(dir), &err), nullptr) << err;
}

// A context whose caCrl is past its nextUpdate is built (Envoy's is too:
// each handshake then fails, "CRL has expired"), and its warning reaches the
// log once per build.
TEST(TlsContextsTest, AnExpiredCrlIsLoggedWhenTheContextIsBuilt) {
  TlsContexts contexts(Certs::get().path("sleep"), std::chrono::hours(1));
  std::vector<std::string> logged;
  contexts.set_warning_log([&](const std::string& w) { logged.push_back(w); });
  config::ServerTLSSettings s = mutual(Certs::get().path("gateway"));
  s.ca_crl = tls::testing::write_crl("mesh-ca", -2 * 86400, -86400, "mesh-expired-crl.pem");
  std::string err;
  ASSERT_NE(contexts.server(s, &err), nullptr) << err;
  ASSERT_NE(contexts.server(s, &err), nullptr) << err;
  // Another setting over the same files: its own context, no second line.
  s.subject_alt_names = {"spiffe://cluster.local/ns/default/sa/other"};
  ASSERT_NE(contexts.server(s, &err), nullptr) << err;
  EXPECT_EQ(contexts.builds(), 2u);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_NE(logged[0].find("caCrl " + s.ca_crl + ": the CRL of "), std::string::npos) << logged[0];
}

TEST(TlsContextsTest, PassthroughAndDisableHaveNoContext) {
  TlsContexts contexts(Certs::get().path("sleep"));
  std::string err;
  config::ServerTLSSettings pass;
  pass.mode = config::ServerTLSMode::kPassthrough;
  EXPECT_EQ(contexts.server(pass, &err), nullptr);
  EXPECT_FALSE(err.empty());
  config::ClientTLSSettings off;
  off.mode = config::ClientTLSMode::kDisable;
  err.clear();
  EXPECT_EQ(contexts.client(off, {}, &err), nullptr);
  EXPECT_FALSE(err.empty());
}

}  // namespace
}  // namespace sluice::proxy
