// Credentials, contexts and TlsConnection on their own: loading errors that
// name the file, context options, the session cache, the config mapping and
// scripts/mesh-certs itself.
#include "userspace-proxy/tls/tls_context.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/err.h>

#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/config/model.h"
#include "tests/userspace-proxy/tls/tls_test_util.h"
#include "userspace-proxy/tls/credentials.h"
#include "userspace-proxy/tls/tls_connection.h"
#include "userspace-proxy/tls/tls_settings.h"

namespace sluice::tls {
namespace {

using testing::Certs;
using testing::write_crl;
using ::testing::HasSubstr;
using testing::kGatewayId;
using testing::kSleepId;

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string write_temp(const std::string& name, const std::string& content) {
  const std::string path = Certs::get().path(name);
  std::ofstream(path) << content;
  return path;
}

// Shuttles bytes between two TlsConnections until neither makes progress.
void shuttle(TlsConnection& client, TlsConnection& server) {
  for (int i = 0; i < 20; ++i) {
    client.handshake();
    server.handshake();
    bool moved = false;
    for (auto [from, to] : {std::pair{&client, &server}, std::pair{&server, &client}}) {
      auto out = from->output();
      if (!out.empty()) {
        to->feed(out);
        from->consume_output();
        moved = true;
      }
    }
    // Reads process post-handshake messages (tickets).
    uint8_t buf[256];
    size_t n;
    if (client.state() == HandshakeState::kDone) client.read(buf, &n);
    if (server.state() == HandshakeState::kDone) server.read(buf, &n);
    if (!moved && client.output().empty() && server.output().empty()) return;
  }
}

ServerTlsOptions gateway_server() {
  ServerTlsOptions o;
  o.mode = ServerTlsMode::kIstioMutual;
  o.mesh_identity_dir = Certs::get().path("gateway");
  return o;
}

ClientTlsOptions sleep_client() {
  ClientTlsOptions o;
  o.mode = ClientTlsMode::kIstioMutual;
  o.mesh_identity_dir = Certs::get().path("sleep");
  o.subject_alt_names = {kGatewayId};
  return o;
}

TEST(CredentialsTest, MeshIdentityLayout) {
  const CertificateFiles d = mesh_identity_files();
  EXPECT_EQ(d.cert_chain, "/etc/certs/cert-chain.pem");
  EXPECT_EQ(d.private_key, "/etc/certs/key.pem");
  EXPECT_EQ(d.ca_certificates, "/etc/certs/root-cert.pem");
  const CertificateFiles c = mesh_identity_files("/var/run/sluice/identity/");
  EXPECT_EQ(c.cert_chain, "/var/run/sluice/identity/cert-chain.pem");
  EXPECT_EQ(c.paths().size(), 3u);
  CertificateFiles partial;
  partial.ca_certificates = "/x";
  EXPECT_EQ(partial.paths(), std::vector<std::string>{"/x"});
}

TEST(CredentialsTest, LoadsTheWorkloadIdentity) {
  CertificateChain chain;
  std::string err;
  ASSERT_TRUE(load_certificate_chain(Certs::get().path("sleep/cert-chain.pem"), &chain, &err)) << err;
  EXPECT_EQ(certificate_identity(chain.leaf.get()).uri_sans, std::vector<std::string>{kSleepId});
  EXPECT_TRUE(chain.intermediates.empty());
  EvpPkeyPtr key;
  ASSERT_TRUE(load_private_key(Certs::get().path("sleep/key.pem"), &key, &err)) << err;
  EXPECT_TRUE(key_matches_certificate(chain.leaf.get(), key.get()));
  std::vector<X509Ptr> roots;
  ASSERT_TRUE(load_ca_certificates(Certs::get().path("sleep/root-cert.pem"), &roots, &err)) << err;
  EXPECT_EQ(roots.size(), 1u);

  // A chain file with the key in between and an intermediate after it.
  const std::string bundle = write_temp("bundle.pem", read(Certs::get().path("gateway/cert-chain.pem")) +
                                                          read(Certs::get().path("gateway/key.pem")) +
                                                          read(Certs::get().path("gateway/root-cert.pem")));
  ASSERT_TRUE(load_certificate_chain(bundle, &chain, &err)) << err;
  EXPECT_EQ(chain.intermediates.size(), 1u);
  EXPECT_EQ(certificate_identity(chain.leaf.get()).dns_sans, std::vector<std::string>{"gateway.local"});
}

TEST(CredentialsTest, ErrorsNameTheFileAndTheProblem) {
  std::string err;
  CertificateChain chain;
  EXPECT_FALSE(load_certificate_chain("/nonexistent/cert-chain.pem", &chain, &err));
  EXPECT_EQ(err, "/nonexistent/cert-chain.pem: No such file or directory");

  const std::string garbage = write_temp("garbage.pem", "this is not PEM\n");
  EXPECT_FALSE(load_certificate_chain(garbage, &chain, &err));
  EXPECT_THAT(err, HasSubstr(garbage + ": no PEM certificate"));

  const std::string broken = write_temp("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  EXPECT_FALSE(load_certificate_chain(broken, &chain, &err));
  EXPECT_THAT(err, HasSubstr(broken + ": "));

  EvpPkeyPtr key;
  EXPECT_FALSE(load_private_key(garbage, &key, &err));
  EXPECT_THAT(err, HasSubstr(garbage + ": no usable PEM private key found"));
  // A certificate is not a key.
  EXPECT_FALSE(load_private_key(Certs::get().path("sleep/cert-chain.pem"), &key, &err));
  EXPECT_THAT(err, HasSubstr("cert-chain.pem: no usable PEM private key found"));

  const std::string enc = Certs::get().path("encrypted-key.pem");
  ASSERT_EQ(std::system(("openssl pkey -in '" + Certs::get().path("sleep/key.pem") +
                         "' -aes256 -passout pass:secret -out '" + enc + "' 2>/dev/null")
                            .c_str()),
            0);
  EXPECT_FALSE(load_private_key(enc, &key, &err));
  EXPECT_EQ(err, enc + ": the private key is encrypted; provide an unencrypted key (file mode 0600)");

  std::vector<X509Ptr> roots;
  EXPECT_FALSE(load_ca_certificates(Certs::get().path("sleep/key.pem"), &roots, &err));
  EXPECT_THAT(err, HasSubstr("sleep/key.pem: no PEM certificate"));
}

TEST(TlsContextTest, ServerContextErrors) {
  std::string err;
  ServerTlsOptions o = gateway_server();
  o.mesh_identity_dir = "/nonexistent/certs";
  EXPECT_FALSE(TlsServerContext::create(o, &err));
  EXPECT_EQ(err, "/nonexistent/certs/cert-chain.pem: No such file or directory");

  o = {};
  o.mode = ServerTlsMode::kMutual;
  o.files.cert_chain = Certs::get().path("gateway/cert-chain.pem");
  o.files.private_key = Certs::get().path("gateway/key.pem");
  EXPECT_FALSE(TlsServerContext::create(o, &err));
  EXPECT_THAT(err, HasSubstr("caCertificates is required"));

  o.mode = ServerTlsMode::kSimple;
  o.files.private_key = Certs::get().path("sleep/key.pem");  // someone else's key
  EXPECT_FALSE(TlsServerContext::create(o, &err));
  EXPECT_EQ(err, Certs::get().path("sleep/key.pem") + ": private key does not match the certificate in " +
                     Certs::get().path("gateway/cert-chain.pem"));

  o.files.private_key = Certs::get().path("gateway/key.pem");
  o.cipher_suites = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-FOO"};
  EXPECT_FALSE(TlsServerContext::create(o, &err));
  EXPECT_EQ(err, "unknown TLS 1.2 cipher suite 'ECDHE-FOO'");
  o.cipher_suites = {"ECDHE-ECDSA-AES128-GCM-SHA256:ALL"};
  EXPECT_FALSE(TlsServerContext::create(o, &err));
  o.cipher_suites = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"};
  EXPECT_TRUE(TlsServerContext::create(o, &err)) << err;

  o.min_version = TlsVersion::kTls13;
  o.max_version = TlsVersion::kTls12;
  EXPECT_FALSE(TlsServerContext::create(o, &err));
  EXPECT_EQ(err, "minimum TLS version TLSv1.3 is above the maximum TLSv1.2");

  o = {};
  EXPECT_FALSE(TlsServerContext::create(o, &err));
  EXPECT_THAT(err, HasSubstr("serverCertificate and privateKey are required"));
}

TEST(TlsContextTest, ClientContextErrors) {
  std::string err;
  ClientTlsOptions o;
  o.mode = ClientTlsMode::kMutual;
  EXPECT_FALSE(TlsClientContext::create(o, &err));
  EXPECT_THAT(err, HasSubstr("clientCertificate and privateKey are required"));
  o.mode = ClientTlsMode::kSimple;
  o.files.ca_certificates = "/nonexistent/ca.pem";
  EXPECT_FALSE(TlsClientContext::create(o, &err));
  EXPECT_EQ(err, "/nonexistent/ca.pem: No such file or directory");
  // insecureSkipVerify does not even read the CA.
  o.insecure_skip_verify = true;
  EXPECT_TRUE(TlsClientContext::create(o, &err)) << err;
  // No CA: the system roots.
  o = {};
  auto sys = TlsClientContext::create(o, &err);
  ASSERT_TRUE(sys) << err;
  EXPECT_TRUE(sys->verifies_server());
  o.alpn = {""};
  EXPECT_FALSE(TlsClientContext::create(o, &err));
}

// tls.caCrl (DestinationRule and Gateway): a peer certificate the CRL
// revokes fails verification, as Envoy's crl (every CA of the chain
// checked); an unrelated CRL changes nothing; a file without a CRL is an
// error naming it.
TEST(TlsContextTest, CaCrlRevokesPeerCertificates) {
  Certs& certs = Certs::get();
  const std::string dir = "--dir '" + certs.dir() + "' ";
  std::string err;
  ServerTlsOptions cnn;
  cnn.mode = ServerTlsMode::kSimple;
  cnn.files.cert_chain = certs.path("cnn/cert-chain.pem");
  cnn.files.private_key = certs.path("cnn/key.pem");
  auto cnn_ctx = TlsServerContext::create(cnn, &err);
  ASSERT_TRUE(cnn_ctx) << err;
  // Client side: the upstream's certificate.
  auto cnn_client = [&](const std::string& crl) {
    ClientTlsOptions o;
    o.files.ca_certificates = certs.path("cnn/root-cert.pem");
    o.files.ca_crl = crl;
    std::string e;
    auto ctx = TlsClientContext::create(o, &e);
    EXPECT_TRUE(ctx) << e;
    return ctx;
  };
  auto handshake_to_cnn = [&](const std::string& crl) {
    auto ctx = cnn_client(crl);
    if (!ctx) return std::string("no context");
    std::string e;
    auto c = TlsConnection::client(ctx, {"edition.cnn.com", ""}, &e);
    auto s = TlsConnection::server(cnn_ctx, &e);
    shuttle(*c, *s);
    return c->state() == HandshakeState::kDone ? std::string("ok") : c->failure_reason();
  };
  ASSERT_EQ(certs.run(dir + "crl"), 0);
  EXPECT_EQ(handshake_to_cnn(certs.path("external-ca/crl.pem")), "ok") << "an empty CRL revokes nothing";
  ASSERT_EQ(certs.run(dir + "crl --revoke cnn"), 0);
  EXPECT_THAT(handshake_to_cnn(certs.path("external-ca/crl.pem")), HasSubstr("certificate revoked"));
  EXPECT_EQ(handshake_to_cnn(""), "ok") << "no caCrl, no check";

  // Server side (MUTUAL): the client's certificate.
  auto handshake_from_sleep = [&](const std::string& crl) {
    ServerTlsOptions o;
    o.mode = ServerTlsMode::kMutual;
    o.files.cert_chain = certs.path("gateway/cert-chain.pem");
    o.files.private_key = certs.path("gateway/key.pem");
    o.files.ca_certificates = certs.path("gateway/root-cert.pem");
    o.files.ca_crl = crl;
    std::string e;
    auto ctx = TlsServerContext::create(o, &e);
    EXPECT_TRUE(ctx) << e;
    if (!ctx) return std::string("no context");
    auto client_ctx = TlsClientContext::create(sleep_client(), &e);
    auto c = TlsConnection::client(client_ctx, {"gateway.local", ""}, &e);
    auto s = TlsConnection::server(ctx, &e);
    shuttle(*c, *s);
    return s->state() == HandshakeState::kDone ? std::string("ok") : s->failure_reason();
  };
  ASSERT_EQ(certs.run(dir + "crl --ca mesh-ca --revoke gateway"), 0);
  EXPECT_EQ(handshake_from_sleep(certs.path("mesh-ca/crl.pem")), "ok") << "sleep is not revoked";
  ASSERT_EQ(certs.run(dir + "crl --ca mesh-ca --revoke sleep"), 0);
  EXPECT_THAT(handshake_from_sleep(certs.path("mesh-ca/crl.pem")), HasSubstr("certificate revoked"));

  // A CRL outside its validity fails every check against it; the context
  // says so when it is built (the proxy logs it), a valid one says nothing.
  auto warnings_with = [&](const std::string& crl) {
    auto ctx = cnn_client(crl);
    return ctx ? ctx->warnings() : std::vector<std::string>{};
  };
  EXPECT_TRUE(warnings_with(certs.path("external-ca/crl.pem")).empty());
  const std::string expired = write_crl("external-ca", -2 * 86400, -86400, "expired-crl.pem");
  EXPECT_THAT(handshake_to_cnn(expired), HasSubstr("CRL has expired"));
  std::vector<std::string> w = warnings_with(expired);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_THAT(w[0], HasSubstr("caCrl " + expired + ": the CRL of "));
  EXPECT_THAT(w[0], HasSubstr("expired (nextUpdate "));
  const std::string early = write_crl("external-ca", 86400, 2 * 86400, "early-crl.pem");
  EXPECT_THAT(handshake_to_cnn(early), HasSubstr("CRL is not yet valid"));
  w = warnings_with(early);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_THAT(w[0], HasSubstr("is not valid before "));

  ClientTlsOptions bad;
  bad.files.ca_certificates = certs.path("cnn/root-cert.pem");
  bad.files.ca_crl = certs.path("cnn/root-cert.pem");
  EXPECT_FALSE(TlsClientContext::create(bad, &err));
  EXPECT_EQ(err, certs.path("cnn/root-cert.pem") + ": no PEM CRL (\"-----BEGIN X509 CRL-----\") found");
  EXPECT_EQ(bad.files.paths().back(), bad.files.ca_crl) << "a rotation of the CRL is noticed";
}

TEST(TlsContextTest, ExpectedServerNames) {
  std::string err;
  ClientTlsOptions o;
  o.files.ca_certificates = Certs::get().path("cnn/root-cert.pem");
  auto simple = TlsClientContext::create(o, &err);
  ASSERT_TRUE(simple) << err;
  EXPECT_EQ(simple->expected_server_sans("edition.cnn.com"), std::vector<std::string>{"edition.cnn.com"});
  EXPECT_TRUE(simple->expected_server_sans("").empty());
  o.verify_sni_san = false;
  EXPECT_TRUE(TlsClientContext::create(o, &err)->expected_server_sans("edition.cnn.com").empty());
  o.subject_alt_names = {"spiffe://x/ns/y/sa/z"};
  EXPECT_EQ(TlsClientContext::create(o, &err)->expected_server_sans("edition.cnn.com"), o.subject_alt_names);
  o.insecure_skip_verify = true;
  EXPECT_TRUE(TlsClientContext::create(o, &err)->expected_server_sans("edition.cnn.com").empty());

  // ISTIO_MUTUAL: the SNI is a routing key, never an identity; insecure is ignored.
  ClientTlsOptions istio = sleep_client();
  istio.subject_alt_names.clear();
  istio.insecure_skip_verify = true;
  auto mesh = TlsClientContext::create(istio, &err);
  ASSERT_TRUE(mesh) << err;
  EXPECT_TRUE(mesh->verifies_server());
  EXPECT_TRUE(mesh->expected_server_sans("outbound_.80_.cnn_.istio-egressgateway").empty());
  EXPECT_EQ(mesh->identity().uri_sans, std::vector<std::string>{kSleepId});
}

TEST(TlsConnectionTest, HandshakeAlpnAndVersions) {
  std::string err;
  ServerTlsOptions so = gateway_server();
  so.alpn = {"h2", "http/1.1"};
  auto server_ctx = TlsServerContext::create(so, &err);
  ASSERT_TRUE(server_ctx) << err;
  ClientTlsOptions co = sleep_client();
  co.alpn = {"http/1.1", "h2"};
  auto client_ctx = TlsClientContext::create(co, &err);
  ASSERT_TRUE(client_ctx) << err;

  auto s = TlsConnection::server(server_ctx, &err);
  auto c = TlsConnection::client(client_ctx, {"edition.cnn.com", ""}, &err);
  ASSERT_TRUE(s && c) << err;
  shuttle(*c, *s);
  ASSERT_EQ(c->state(), HandshakeState::kDone) << c->failure_reason();
  ASSERT_EQ(s->state(), HandshakeState::kDone) << s->failure_reason();
  EXPECT_EQ(c->alpn(), "h2");  // the server's preference
  EXPECT_EQ(s->alpn(), "h2");
  EXPECT_EQ(s->sni(), "edition.cnn.com");
  EXPECT_EQ(c->version(), "TLSv1.3");
  EXPECT_FALSE(c->cipher().empty());
  EXPECT_EQ(s->peer().uri_sans, std::vector<std::string>{kSleepId});

  // Data both ways, then close_notify.
  const std::string msg = "ping";
  ASSERT_TRUE(c->write(testing::bytes(msg)));
  s->feed(c->output());
  c->consume_output();
  uint8_t buf[64];
  size_t n = 0;
  ASSERT_EQ(s->read(buf, &n), ReadStatus::kData);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), n), msg);
  c->send_close_notify();
  EXPECT_TRUE(c->close_notify_sent());
  s->feed(c->output());
  c->consume_output();
  EXPECT_EQ(s->read(buf, &n), ReadStatus::kClosed);
  EXPECT_TRUE(s->close_notify_received());
  EXPECT_FALSE(c->write(testing::bytes(msg)));  // after our close_notify

  // A burst leaves no record-sized buffers behind once processed.
  auto s4 = TlsConnection::server(server_ctx, &err);
  auto c4 = TlsConnection::client(client_ctx, {}, &err);
  shuttle(*c4, *s4);
  ASSERT_EQ(c4->state(), HandshakeState::kDone) << c4->failure_reason();
  const std::string burst(100000, 'b');
  ASSERT_TRUE(c4->write(testing::bytes(burst)));
  EXPECT_GT(c4->bio_bytes(), burst.size());  // the ciphertext, not yet taken
  s4->feed(c4->output());
  c4->consume_output();
  std::string got;
  uint8_t big[16384];
  while (s4->read(big, &n) == ReadStatus::kData) got.append(reinterpret_cast<char*>(big), n);
  EXPECT_EQ(got, burst);
  EXPECT_LE(c4->bio_bytes(), 2u * 4096);
  EXPECT_LE(s4->bio_bytes(), 2u * 4096);

  // TLS 1.2 only: still works, and resumes too.
  co.max_version = TlsVersion::kTls12;
  co.alpn.clear();
  auto c12 = TlsClientContext::create(co, &err);
  ASSERT_TRUE(c12) << err;
  for (int round = 0; round < 2; ++round) {
    auto s2 = TlsConnection::server(server_ctx, &err);
    auto c2 = TlsConnection::client(c12, {"", "k"}, &err);
    shuttle(*c2, *s2);
    ASSERT_EQ(c2->state(), HandshakeState::kDone) << c2->failure_reason();
    EXPECT_EQ(c2->version(), "TLSv1.2");
    EXPECT_EQ(c2->resumed(), round == 1);
    EXPECT_EQ(c2->peer().uri_sans, std::vector<std::string>{kGatewayId});
  }

  // A TLS 1.3-only server and a TLS 1.2-only client have nothing in common.
  so.min_version = TlsVersion::kTls13;
  auto s13 = TlsServerContext::create(so, &err);
  ASSERT_TRUE(s13) << err;
  auto s3 = TlsConnection::server(s13, &err);
  auto c3 = TlsConnection::client(c12, {}, &err);
  shuttle(*c3, *s3);
  EXPECT_EQ(s3->state(), HandshakeState::kFailed);
  EXPECT_THAT(s3->failure_reason(), HasSubstr("unsupported protocol"));
  EXPECT_EQ(c3->state(), HandshakeState::kFailed);
}

TEST(TlsConnectionTest, AnSslWithoutConnectionStateFailsVerificationClosed) {
  std::string err;
  auto server_ctx = TlsServerContext::create(gateway_server(), &err);
  auto client_ctx = TlsClientContext::create(sleep_client(), &err);
  ASSERT_TRUE(server_ctx && client_ctx) << err;
  auto s = TlsConnection::server(server_ctx, &err);
  // Bypassing TlsConnection: the context's verify callback cannot know the
  // expected names, so it refuses instead of skipping the SAN check.
  SslPtr raw(SSL_new(client_ctx->ssl_ctx()));
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(raw.get(), in, out);
  SSL_set_connect_state(raw.get());
  int rc = 0;
  int ssl_error = SSL_ERROR_NONE;
  for (int i = 0; i < 10; ++i) {
    rc = SSL_do_handshake(raw.get());
    ssl_error = SSL_get_error(raw.get(), rc);  // before the BIOs are touched again
    char* p = nullptr;
    long len = BIO_get_mem_data(out, &p);
    if (len > 0) {
      s->feed({reinterpret_cast<uint8_t*>(p), static_cast<size_t>(len)});
      (void)BIO_reset(out);
    }
    s->handshake();
    auto o = s->output();
    if (!o.empty()) {
      BIO_write(in, o.data(), static_cast<int>(o.size()));
      s->consume_output();
    }
    if (rc == 1 || ssl_error != SSL_ERROR_WANT_READ) break;
  }
  EXPECT_NE(rc, 1);
  EXPECT_EQ(ssl_error, SSL_ERROR_SSL);
  EXPECT_EQ(SSL_get_verify_result(raw.get()), X509_V_ERR_APPLICATION_VERIFICATION);
  ERR_clear_error();
}

TEST(ClientSessionCacheTest, BoundedLruWithExpiry) {
  // Real resumable sessions from handshakes.
  std::string err;
  auto server_ctx = TlsServerContext::create(gateway_server(), &err);
  ClientTlsOptions co = sleep_client();
  co.session_cache_size = 0;  // keep the context's own cache out of it
  auto client_ctx = TlsClientContext::create(co, &err);
  ASSERT_TRUE(server_ctx && client_ctx) << err;
  auto session = [&] {
    auto s = TlsConnection::server(server_ctx, &err);
    auto c = TlsConnection::client(client_ctx, {}, &err);
    shuttle(*c, *s);
    // A copy: freeing `c` without close_notify marks its own session unresumable.
    return SslSessionPtr(SSL_SESSION_dup(SSL_get0_session(c->ssl())));
  };
  ClientSessionCache cache(2);
  const int64_t now = time(nullptr);
  cache.put("a", session());
  cache.put("b", session());
  ASSERT_EQ(cache.size(), 2u);
  EXPECT_TRUE(cache.get("a", now));  // a is now the most recent
  cache.put("c", session());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(cache.get("b", now));  // evicted
  EXPECT_TRUE(cache.get("a", now));
  EXPECT_TRUE(cache.get("c", now));
  // Past the session's lifetime it is gone.
  EXPECT_FALSE(cache.get("c", now + 30 * 24 * 3600));
  EXPECT_EQ(cache.size(), 1u);
  cache.remove("a");
  EXPECT_EQ(cache.size(), 0u);
  // Unresumable sessions are not kept.
  cache.put("d", SslSessionPtr(SSL_SESSION_new()));
  EXPECT_EQ(cache.size(), 0u);
  ClientSessionCache off(0);
  off.put("a", session());
  EXPECT_EQ(off.size(), 0u);
}

TEST(TlsSettingsTest, GatewayServerTls) {
  config::ServerTLSSettings tls;
  tls.mode = config::ServerTLSMode::kMutual;
  tls.server_certificate = "/etc/certs/cert-chain.pem";
  tls.private_key = "/etc/certs/key.pem";
  tls.ca_certificates = "/etc/certs/root-cert.pem";
  tls.ca_crl = "/etc/certs/crl.pem";
  tls.subject_alt_names = {kSleepId};
  tls.min_protocol_version = "TLSV1_0";
  ServerTlsOptions o;
  std::string err;
  ASSERT_TRUE(server_tls_options(tls, "", &o, &err)) << err;
  EXPECT_EQ(o.mode, ServerTlsMode::kMutual);
  EXPECT_EQ(o.files.ca_certificates, "/etc/certs/root-cert.pem");
  EXPECT_EQ(o.files.ca_crl, "/etc/certs/crl.pem");
  EXPECT_EQ(o.min_version, TlsVersion::kTls12);  // raised to the floor
  EXPECT_EQ(o.max_version, TlsVersion::kTls13);
  EXPECT_EQ(o.subject_alt_names, tls.subject_alt_names);
  EXPECT_EQ(o.mesh_identity_dir, "/etc/certs");

  tls.min_protocol_version = "TLSV1_3";
  ASSERT_TRUE(server_tls_options(tls, "/run/identity", &o, &err)) << err;
  EXPECT_EQ(o.min_version, TlsVersion::kTls13);
  EXPECT_EQ(o.mesh_identity_dir, "/run/identity");
  tls.max_protocol_version = "TLSV1_1";
  EXPECT_FALSE(server_tls_options(tls, "", &o, &err));
  EXPECT_THAT(err, HasSubstr("maxProtocolVersion TLSV1_1 is not supported"));
  tls.max_protocol_version.clear();
  tls.mode = config::ServerTLSMode::kPassthrough;
  EXPECT_FALSE(server_tls_options(tls, "", &o, &err));
  tls.mode = config::ServerTLSMode::kSimple;
  tls.credential_name = "cnn-secret";
  EXPECT_FALSE(server_tls_options(tls, "", &o, &err));
  EXPECT_THAT(err, HasSubstr("credentialName"));
}

TEST(TlsSettingsTest, DestinationRuleClientTls) {
  config::ClientTLSSettings tls;
  tls.mode = config::ClientTLSMode::kIstioMutual;
  tls.sni = "edition.cnn.com";
  tls.client_certificate = "/ignored.pem";
  ClientTlsOptions o;
  std::string err;
  ASSERT_TRUE(client_tls_options(tls, Certs::get().path("sleep"), &o, &err)) << err;
  EXPECT_EQ(o.mode, ClientTlsMode::kIstioMutual);
  EXPECT_EQ(o.sni, "edition.cnn.com");
  EXPECT_TRUE(o.files.cert_chain.empty());
  EXPECT_TRUE(TlsClientContext::create(o, &err)) << err;

  tls.mode = config::ClientTLSMode::kMutual;
  tls.client_certificate = "/etc/certs/cert-chain.pem";
  tls.private_key = "/etc/certs/key.pem";
  tls.insecure_skip_verify = true;
  tls.ca_crl = "/etc/certs/crl.pem";
  ASSERT_TRUE(client_tls_options(tls, "", &o, &err)) << err;
  EXPECT_EQ(o.files.cert_chain, "/etc/certs/cert-chain.pem");
  EXPECT_EQ(o.files.ca_crl, "/etc/certs/crl.pem");
  EXPECT_TRUE(o.insecure_skip_verify);
  tls.mode = config::ClientTLSMode::kDisable;
  EXPECT_FALSE(client_tls_options(tls, "", &o, &err));
}

TEST(MeshCertsScriptTest, IdempotentAndRemakesWhatChanged) {
  char tmpl[] = "/tmp/sluice-mesh-certs.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const Certs& certs = Certs::get();
  const std::string base = "--dir '" + dir + "' ";
  ASSERT_EQ(certs.run(base + "workload sleep --ns default --sa sleep --dns sleep.local"), 0);
  const std::string cert1 = read(dir + "/sleep/cert-chain.pem");
  const std::string key1 = read(dir + "/sleep/key.pem");
  const std::string root1 = read(dir + "/mesh-ca/root-cert.pem");
  ASSERT_FALSE(cert1.empty());
  ASSERT_EQ(certs.run(base + "workload sleep --ns default --sa sleep --dns sleep.local"), 0);
  EXPECT_EQ(read(dir + "/sleep/cert-chain.pem"), cert1);
  EXPECT_EQ(read(dir + "/sleep/key.pem"), key1);
  EXPECT_EQ(read(dir + "/sleep/root-cert.pem"), root1);

  // Another service account: a new leaf under the same root.
  ASSERT_EQ(certs.run(base + "workload sleep --ns default --sa other"), 0);
  EXPECT_NE(read(dir + "/sleep/cert-chain.pem"), cert1);
  EXPECT_EQ(read(dir + "/mesh-ca/root-cert.pem"), root1);
  CertificateChain chain;
  std::string err;
  ASSERT_TRUE(load_certificate_chain(dir + "/sleep/cert-chain.pem", &chain, &err)) << err;
  EXPECT_EQ(certificate_identity(chain.leaf.get()).uri_sans,
            std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/other"});

  // Trust domain option and a server certificate of the external CA.
  ASSERT_EQ(certs.run(base + "--trust-domain example.org workload w --ns a --sa b"), 0);
  ASSERT_TRUE(load_certificate_chain(dir + "/w/cert-chain.pem", &chain, &err)) << err;
  EXPECT_EQ(certificate_identity(chain.leaf.get()).uri_sans,
            std::vector<std::string>{"spiffe://example.org/ns/a/sa/b"});
  ASSERT_EQ(certs.run(base + "server web --dns edition.cnn.com"), 0);
  EXPECT_NE(read(dir + "/web/root-cert.pem"), root1);

  EXPECT_EQ(certs.run("--help"), 0);
  EXPECT_NE(certs.run(base + "workload sleep --ns default"), 0);       // no --sa
  EXPECT_NE(certs.run(base + "workload ../escape --ns a --sa b"), 0);  // unsafe name
  EXPECT_NE(certs.run(base + "server web --dns 'a,b'"), 0);
  EXPECT_NE(certs.run(base + "frobnicate"), 0);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace sluice::tls
