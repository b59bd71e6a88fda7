// TlsFilter back to back through a fake engine (tls_test_util.h): the
// sidecar originates mTLS, the gateway terminates it, optionally originating
// again toward an external server.
#include "userspace-proxy/tls/tls_filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/userspace-proxy/tls/tls_test_util.h"

namespace sluice::tls {
namespace {

using engine::Direction;
using engine::FilterOutput;
using engine::FilterStatus;
using testing::bytes;
using testing::Certs;
using testing::FilterChain;
using ::testing::HasSubstr;
using testing::kGatewayId;
using testing::kSleepId;
using testing::RecordingInner;
using testing::RecordingOutput;

const std::string kRequest = "GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
const std::string kResponse = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

std::shared_ptr<const TlsServerContext> make_server(const ServerTlsOptions& o) {
  std::string err;
  auto c = TlsServerContext::create(o, &err);
  EXPECT_TRUE(c) << err;
  return c;
}

std::shared_ptr<const TlsClientContext> make_client(const ClientTlsOptions& o) {
  std::string err;
  auto c = TlsClientContext::create(o, &err);
  EXPECT_TRUE(c) << err;
  return c;
}

// The gateway's Gateway server: ISTIO_MUTUAL, accepting the sleep workload.
ServerTlsOptions gateway_server(std::vector<std::string> allowed = {kSleepId}) {
  ServerTlsOptions o;
  o.mode = ServerTlsMode::kIstioMutual;
  o.mesh_identity_dir = Certs::get().path("gateway");
  o.subject_alt_names = std::move(allowed);
  return o;
}

// The sidecar's DestinationRule for the gateway: ISTIO_MUTUAL, SNI edition.cnn.com.
ClientTlsOptions sidecar_client(std::vector<std::string> expected = {kGatewayId}, std::string identity = "sleep") {
  ClientTlsOptions o;
  o.mode = ClientTlsMode::kIstioMutual;
  o.mesh_identity_dir = Certs::get().path(identity);
  o.sni = "edition.cnn.com";
  o.subject_alt_names = std::move(expected);
  return o;
}

// nginx as edition.cnn.com, with a certificate from the external CA.
ServerTlsOptions cnn_server() {
  ServerTlsOptions o;
  o.mode = ServerTlsMode::kSimple;
  o.files.cert_chain = Certs::get().path("cnn/cert-chain.pem");
  o.files.private_key = Certs::get().path("cnn/key.pem");
  return o;
}

ClientTlsOptions cnn_client(std::string ca = Certs::get().path("cnn/root-cert.pem")) {
  ClientTlsOptions o;
  o.mode = ClientTlsMode::kSimple;
  o.files.ca_certificates = std::move(ca);
  o.sni = "edition.cnn.com";
  return o;
}

struct Recorded {
  std::vector<TlsHandshakeResult> results;
  HandshakeCallback callback() {
    return [this](const TlsHandshakeResult& r) { results.push_back(r); };
  }
};

std::unique_ptr<TlsFilter> make_filter(TlsFilterOptions o) {
  std::string err;
  auto f = TlsFilter::create(std::move(o), &err);
  EXPECT_TRUE(f) << err;
  return f;
}

std::unique_ptr<TlsFilter> originator(std::shared_ptr<const TlsClientContext> ctx, Recorded* rec,
                                      ClientSessionParams params = {}) {
  TlsFilterOptions o;
  o.upstream_tls = std::move(ctx);
  o.upstream_params = std::move(params);
  o.on_handshake = rec->callback();
  return make_filter(std::move(o));
}

std::unique_ptr<TlsFilter> terminator(std::shared_ptr<const TlsServerContext> ctx, Recorded* rec) {
  TlsFilterOptions o;
  o.downstream_tls = std::move(ctx);
  o.on_handshake = rec->callback();
  return make_filter(std::move(o));
}

// The sidecar's ISTIO_MUTUAL origination around a plaintext inner filter.
std::unique_ptr<TlsFilter> sidecar_with(engine::StreamFilterPtr inner, Recorded* rec) {
  TlsFilterOptions o;
  o.upstream_tls = make_client(sidecar_client());
  o.inner = std::move(inner);
  o.on_handshake = rec->callback();
  return make_filter(std::move(o));
}

// The walkthrough's hop 3-4: sidecar ISTIO_MUTUAL origination (filter with
// the connect verdict, the sniffed request held) -> gateway termination
// (filter with need_more: the handler reads plaintext), then the handler's
// connect verdict forwards the plaintext to the backend.
TEST(TlsFilterTest, IstioMutualHandshakeDeliversSniAndChecksSpiffeIds) {
  Recorded side, gw;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});

  chain.sniffed(kRequest);
  chain.connect(0);
  ASSERT_FALSE(chain.closed(0));
  ASSERT_FALSE(chain.closed(1));

  ASSERT_EQ(side.results.size(), 1u);
  const TlsHandshakeResult& up = side.results[0];
  EXPECT_TRUE(up.ok) << up.failure_reason;
  EXPECT_EQ(up.side, TlsSide::kUpstream);
  EXPECT_EQ(up.version, "TLSv1.3");
  EXPECT_EQ(up.sni, "edition.cnn.com");
  EXPECT_EQ(up.peer.uri_sans, std::vector<std::string>{kGatewayId});
  EXPECT_FALSE(up.resumed);

  ASSERT_EQ(gw.results.size(), 1u);
  const TlsHandshakeResult& down = gw.results[0];
  EXPECT_TRUE(down.ok) << down.failure_reason;
  EXPECT_EQ(down.side, TlsSide::kDownstream);
  EXPECT_EQ(down.sni, "edition.cnn.com");
  EXPECT_EQ(down.peer.uri_sans, std::vector<std::string>{kSleepId});
  EXPECT_EQ(gateway->downstream_sni(), "edition.cnn.com");
  ASSERT_NE(gateway->downstream_result(), nullptr);

  // The gateway handler's pending bytes: the decrypted request.
  EXPECT_EQ(chain.held(1), kRequest);
  chain.connect(1);
  EXPECT_EQ(chain.backend_rx, kRequest);

  chain.backend_send(kResponse);
  EXPECT_EQ(chain.client_rx, kResponse);

  // More in both directions once established.
  chain.client_send("second");
  EXPECT_EQ(chain.backend_rx, kRequest + "second");
  chain.backend_send("reply");
  EXPECT_EQ(chain.client_rx, kResponse + "reply");
  EXPECT_TRUE(sidecar->error().empty());
  EXPECT_TRUE(gateway->error().empty());
}

TEST(TlsFilterTest, OriginationStartsTheHandshakeWithNothingHeld) {
  Recorded side, gw;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  ASSERT_TRUE(sidecar->takes_held_bytes());
  FilterChain chain({sidecar.get(), gateway.get()});

  // A server-first protocol: nothing sniffed, the ClientHello still goes.
  chain.connect(0);
  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_TRUE(side.results[0].ok) << side.results[0].failure_reason;
  chain.connect(1);
  chain.backend_send("220 smtp ready\r\n");
  EXPECT_EQ(chain.client_rx, "220 smtp ready\r\n");
}

TEST(TlsFilterTest, WrongSpiffeIdIsRefusedWithReasonAndLocalReply) {
  Recorded side, gw;
  auto sidecar =
      originator(make_client(sidecar_client({"spiffe://cluster.local/ns/istio-system/sa/someone-else"})), &side);
  sidecar->set_upstream_failure_reply([](const TlsHandshakeResult& r) {
    const std::string body = upstream_tls_failure_details(r.failure_reason);
    return "HTTP/1.1 503 Service Unavailable\r\ncontent-length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  });
  auto gateway = terminator(make_server(gateway_server()), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect(0);

  ASSERT_EQ(side.results.size(), 1u);
  const TlsHandshakeResult& up = side.results[0];
  EXPECT_FALSE(up.ok);
  EXPECT_THAT(up.failure_reason, HasSubstr("certificate verify failed"));
  EXPECT_THAT(up.failure_reason, HasSubstr("matches none of [spiffe://cluster.local/ns/istio-system/sa/someone-else]"));
  EXPECT_THAT(up.failure_reason, HasSubstr(kGatewayId));  // what the peer presented
  EXPECT_EQ(chain.status(0), FilterStatus::kClose);
  EXPECT_EQ(sidecar->error(), up.failure_reason);

  // The client got Envoy's 503 and a FIN; the request never left in clear.
  EXPECT_THAT(chain.client_rx, HasSubstr("HTTP/1.1 503 Service Unavailable"));
  EXPECT_THAT(chain.client_rx,
              HasSubstr("upstream connect error or disconnect/reset before headers. reset reason: connection failure, "
                        "transport failure reason: TLS error: "));
  EXPECT_TRUE(chain.client_got_fin);
  EXPECT_TRUE(chain.backend_rx.empty());

  // The gateway saw our alert.
  ASSERT_EQ(gw.results.size(), 1u);
  EXPECT_FALSE(gw.results[0].ok);
  EXPECT_FALSE(gw.results[0].failure_reason.empty());
}

// An inner filter that asks for another upstream when the TLS handshake
// fails (the HTTP guard's connect-failure retry) gets it: no local reply,
// kNewUpstream, the failure still reported; one that does not, the reply.
TEST(TlsFilterTest, AFailedUpstreamHandshakeCanBeRetriedByTheInnerFilter) {
  class RetryingInner final : public engine::StreamFilter {
   public:
    FilterStatus status = FilterStatus::kNewUpstream;
    int asked = 0;
    FilterStatus on_data(Direction, std::span<const uint8_t> chunk, FilterOutput& out) override {
      return out.forward(chunk.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
    }
    FilterStatus on_upstream_setup_failed(FilterOutput&) override {
      ++asked;
      return status;
    }
  };
  for (const FilterStatus answer : {FilterStatus::kNewUpstream, FilterStatus::kContinue}) {
    Recorded side, gw;
    auto inner = std::make_unique<RetryingInner>();
    RetryingInner* rec = inner.get();
    rec->status = answer;
    TlsFilterOptions o;
    o.upstream_tls = make_client(sidecar_client({"spiffe://cluster.local/ns/istio-system/sa/someone-else"}));
    o.inner = std::move(inner);
    o.on_handshake = side.callback();
    o.upstream_failure_reply = [](const TlsHandshakeResult&) { return std::string("HTTP/1.1 503 X\r\n\r\n"); };
    auto sidecar = make_filter(std::move(o));
    auto gateway = terminator(make_server(gateway_server()), &gw);
    FilterChain chain({sidecar.get(), gateway.get()});
    chain.connect_all();
    EXPECT_EQ(rec->asked, 1);
    ASSERT_EQ(side.results.size(), 1u);
    EXPECT_FALSE(side.results[0].ok);
    if (answer == FilterStatus::kNewUpstream) {
      EXPECT_EQ(chain.status(0), FilterStatus::kNewUpstream);
      EXPECT_TRUE(chain.client_rx.empty()) << chain.client_rx;
      EXPECT_TRUE(sidecar->error().empty());
    } else {
      EXPECT_EQ(chain.status(0), FilterStatus::kClose);
      EXPECT_EQ(chain.client_rx, "HTTP/1.1 503 X\r\n\r\n");
    }
  }
}

TEST(TlsFilterTest, GatewayRefusesAClientIdentityNotAllowed) {
  Recorded side, gw;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto gateway = terminator(make_server(gateway_server({"spiffe://cluster.local/ns/prod/sa/billing"})), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect(0);

  ASSERT_EQ(gw.results.size(), 1u);
  EXPECT_FALSE(gw.results[0].ok);
  EXPECT_THAT(gw.results[0].failure_reason, HasSubstr(std::string("peer certificate ") + kSleepId));
  EXPECT_THAT(gw.results[0].failure_reason, HasSubstr("spiffe://cluster.local/ns/prod/sa/billing"));
  EXPECT_EQ(chain.status(1), FilterStatus::kClose);
  EXPECT_TRUE(chain.held(1).empty());  // nothing decrypted reached the handler
  // In TLS 1.3 the client finishes before the server judges its
  // certificate; the sidecar learns from the alert and reports the failure.
  ASSERT_FALSE(side.results.empty());
  EXPECT_FALSE(side.results.back().ok);
  EXPECT_EQ(chain.status(0), FilterStatus::kClose);
}

TEST(TlsFilterTest, MutualServerRefusesAClientWithoutCertificate) {
  Recorded side, gw;
  ServerTlsOptions so;
  so.mode = ServerTlsMode::kMutual;
  so.files = mesh_identity_files(Certs::get().path("gateway"));
  ClientTlsOptions co;  // SIMPLE: no client certificate
  co.files.ca_certificates = Certs::get().path("gateway/root-cert.pem");
  co.sni = "gateway.local";
  auto sidecar = originator(make_client(co), &side);
  auto gateway = terminator(make_server(so), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect(0);

  ASSERT_EQ(gw.results.size(), 1u);
  EXPECT_FALSE(gw.results[0].ok);
  EXPECT_THAT(gw.results[0].failure_reason, HasSubstr("peer did not return a certificate"));
  EXPECT_TRUE(chain.held(1).empty());
  ASSERT_FALSE(side.results.empty());
  EXPECT_FALSE(side.results.back().ok);
  EXPECT_THAT(side.results.back().failure_reason, HasSubstr("certificate required"));
}

TEST(TlsFilterTest, ServerFromAnUntrustedCaIsRefused) {
  Recorded side, gw;
  // The "rogue" workload claims the gateway's trust domain under another root.
  ServerTlsOptions so;
  so.mode = ServerTlsMode::kSimple;
  so.files = mesh_identity_files(Certs::get().other_dir() + "/rogue");
  auto sidecar = originator(make_client(sidecar_client({kSleepId})), &side);
  auto gateway = terminator(make_server(so), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.connect(0);

  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_FALSE(side.results[0].ok);
  EXPECT_THAT(side.results[0].failure_reason, HasSubstr("certificate verify failed"));
  EXPECT_THAT(side.results[0].failure_reason, HasSubstr("unable to get local issuer certificate"));
  EXPECT_EQ(chain.status(0), FilterStatus::kClose);
}

TEST(TlsFilterTest, ClientFromAnUntrustedCaIsRefusedByTheGateway) {
  Recorded side, gw;
  // A client certificate with the right SPIFFE id from the wrong root: it
  // trusts the gateway (mesh root) but the gateway does not trust it.
  ClientTlsOptions co;
  co.mode = ClientTlsMode::kMutual;
  co.files.cert_chain = Certs::get().other_dir() + "/rogue/cert-chain.pem";
  co.files.private_key = Certs::get().other_dir() + "/rogue/key.pem";
  co.files.ca_certificates = Certs::get().path("gateway/root-cert.pem");
  co.subject_alt_names = {kGatewayId};
  auto sidecar = originator(make_client(co), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect(0);

  ASSERT_EQ(gw.results.size(), 1u);
  EXPECT_FALSE(gw.results[0].ok);
  EXPECT_THAT(gw.results[0].failure_reason, HasSubstr("certificate verify failed"));
  EXPECT_TRUE(chain.held(1).empty());
}

TEST(TlsFilterTest, InsecureSkipVerifyAcceptsAnyServer) {
  Recorded side, gw;
  ClientTlsOptions co = cnn_client(Certs::get().path("sleep/root-cert.pem"));  // wrong CA on purpose
  co.insecure_skip_verify = true;
  co.sni = "not-the-name-in-the-cert.example";
  auto sidecar = originator(make_client(co), &side);
  auto server = terminator(make_server(cnn_server()), &gw);
  FilterChain chain({sidecar.get(), server.get()});
  chain.sniffed(kRequest);
  chain.connect(0);
  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_TRUE(side.results[0].ok) << side.results[0].failure_reason;
  EXPECT_EQ(chain.held(1), kRequest);

  // Without the flag the same setup fails.
  Recorded side2, gw2;
  co.insecure_skip_verify = false;
  auto strict = originator(make_client(co), &side2);
  auto server2 = terminator(make_server(cnn_server()), &gw2);
  FilterChain chain2({strict.get(), server2.get()});
  chain2.connect(0);
  ASSERT_EQ(side2.results.size(), 1u);
  EXPECT_FALSE(side2.results[0].ok);
}

TEST(TlsFilterTest, SimpleOriginationChecksTheSniAgainstDnsSans) {
  // *.cnn.com in the certificate covers www.cnn.com; foo.example does not.
  for (const auto& [sni, ok] : std::vector<std::pair<std::string, bool>>{
           {"edition.cnn.com", true}, {"www.cnn.com", true}, {"foo.example", false}, {"a.b.cnn.com", false}}) {
    Recorded side, gw;
    ClientTlsOptions co = cnn_client();
    co.sni = sni;
    auto sidecar = originator(make_client(co), &side);
    auto server = terminator(make_server(cnn_server()), &gw);
    FilterChain chain({sidecar.get(), server.get()});
    chain.connect(0);
    ASSERT_EQ(side.results.size(), 1u) << sni;
    EXPECT_EQ(side.results[0].ok, ok) << sni << ": " << side.results[0].failure_reason;
    if (!ok) {
      EXPECT_THAT(side.results[0].failure_reason, HasSubstr("matches none of [" + sni + "]"));
    }
  }
}

TEST(TlsFilterTest, ByteByByteDeliveryOfEveryRecord) {
  Recorded side, gw;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.fragment = 1;
  chain.sniffed(kRequest);
  chain.connect(0);
  ASSERT_EQ(side.results.size(), 1u);
  ASSERT_TRUE(side.results[0].ok) << side.results[0].failure_reason;
  ASSERT_EQ(gw.results.size(), 1u);
  ASSERT_TRUE(gw.results[0].ok) << gw.results[0].failure_reason;
  EXPECT_EQ(chain.held(1), kRequest);
  chain.connect(1);

  std::string big(100000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  chain.backend_send(big);
  EXPECT_EQ(chain.client_rx, big);
  chain.client_send(big);
  EXPECT_EQ(chain.backend_rx, kRequest + big);
  EXPECT_GT(chain.on_data_calls, 200000u);  // really one byte at a time
}

TEST(TlsFilterTest, GarbageInsteadOfAClientHelloFailsCleanly) {
  const std::vector<std::string> garbage = {
      kRequest,                                                     // plain HTTP to a TLS port
      std::string("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10),  // truncated hello
      std::string(64, '\xff'), std::string("\x16\x03\x01\x40\x00", 5) + std::string(20000, 'A'),  // oversized record
  };
  for (const std::string& g : garbage) {
    Recorded gw;
    auto gateway = terminator(make_server(gateway_server()), &gw);
    std::string up, down;
    RecordingOutput out(engine::Direction::kDownstreamToUpstream, bytes(g), &up, &down);
    const FilterStatus st = gateway->on_data(engine::Direction::kDownstreamToUpstream, bytes(g), out);
    EXPECT_EQ(st, FilterStatus::kClose) << g.size();
    EXPECT_TRUE(up.empty());
    ASSERT_EQ(gw.results.size(), 1u);
    EXPECT_FALSE(gw.results[0].ok);
    EXPECT_FALSE(gw.results[0].failure_reason.empty());
    EXPECT_FALSE(gateway->error().empty());
    // More bytes after the failure are dropped, not buffered.
    const std::string more(1 << 20, 'x');
    std::string up2, down2;
    RecordingOutput out2(engine::Direction::kDownstreamToUpstream, bytes(more), &up2, &down2);
    EXPECT_EQ(gateway->on_data(engine::Direction::kDownstreamToUpstream, bytes(more), out2), FilterStatus::kClose);
    EXPECT_TRUE(up2.empty());
    EXPECT_TRUE(down2.empty());
  }
  // Plain HTTP is named as such.
  Recorded gw;
  auto gateway = terminator(make_server(gateway_server()), &gw);
  std::string up, down;
  RecordingOutput out(engine::Direction::kDownstreamToUpstream, bytes(kRequest), &up, &down);
  gateway->on_data(engine::Direction::kDownstreamToUpstream, bytes(kRequest), out);
  ASSERT_EQ(gw.results.size(), 1u);
  EXPECT_THAT(gw.results[0].failure_reason, HasSubstr("http request"));
}

TEST(TlsFilterTest, GarbageFromTheUpstreamFailsTheOrigination) {
  Recorded side;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  sidecar->set_upstream_failure_reply([](const TlsHandshakeResult&) { return std::string("HTTP/1.1 503\r\n\r\n"); });
  std::string up, down;
  RecordingOutput start(engine::Direction::kDownstreamToUpstream, bytes(kRequest), &up, &down);
  ASSERT_EQ(sidecar->on_start(bytes(kRequest), start), FilterStatus::kContinue);
  EXPECT_EQ(up.substr(0, 1), "\x16");  // the ClientHello
  EXPECT_EQ(up.find("GET"), std::string::npos);
  const std::string reply = "HTTP/1.1 400 Bad Request\r\n\r\n";  // a plaintext server
  std::string up2, down2;
  RecordingOutput out(engine::Direction::kUpstreamToDownstream, bytes(reply), &up2, &down2);
  EXPECT_EQ(sidecar->on_data(engine::Direction::kUpstreamToDownstream, bytes(reply), out), FilterStatus::kClose);
  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_FALSE(side.results[0].ok);
  EXPECT_THAT(side.results[0].failure_reason, HasSubstr("wrong version number"));
  EXPECT_EQ(down2, "HTTP/1.1 503\r\n\r\n");
}

TEST(TlsFilterTest, PlaintextHeldDuringTheHandshakeIsBounded) {
  Recorded side;
  TlsFilterOptions o;
  o.upstream_tls = make_client(sidecar_client());
  o.max_handshake_buffer = 1000;
  o.on_handshake = side.callback();
  auto sidecar = make_filter(std::move(o));
  std::string up, down;
  RecordingOutput start(engine::Direction::kDownstreamToUpstream, {}, &up, &down);
  ASSERT_EQ(sidecar->on_start({}, start), FilterStatus::kContinue);

  // The upstream has not answered; the client keeps writing.
  const std::string chunk(400, 'p');
  FilterStatus st = FilterStatus::kContinue;
  int calls = 0;
  while (st == FilterStatus::kContinue && calls < 10) {
    std::string u, d;
    RecordingOutput out(engine::Direction::kDownstreamToUpstream, bytes(chunk), &u, &d);
    st = sidecar->on_data(engine::Direction::kDownstreamToUpstream, bytes(chunk), out);
    EXPECT_TRUE(u.empty());  // nothing leaves unencrypted
    ++calls;
  }
  EXPECT_EQ(st, FilterStatus::kClose);
  EXPECT_EQ(calls, 3);  // 800 fit, 1200 do not
  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_FALSE(side.results[0].ok);
  EXPECT_THAT(side.results[0].failure_reason, HasSubstr("more than 1000 bytes"));
}

TEST(TlsFilterTest, OverflowWithAnInnerFilterStillClosesWithTheLocalReply) {
  // The inner filter (like the HTTP guard) resets when its output fails; an
  // overflowing handshake buffer must still end in the 503 and a clean close.
  Recorded side;
  TlsFilterOptions o;
  o.upstream_tls = make_client(sidecar_client());
  o.max_handshake_buffer = 100;
  o.inner = std::make_unique<RecordingInner>();
  o.on_handshake = side.callback();
  o.upstream_failure_reply = [](const TlsHandshakeResult&) { return std::string("HTTP/1.1 503\r\n\r\n"); };
  auto sidecar = make_filter(std::move(o));
  std::string up, down;
  RecordingOutput start(engine::Direction::kDownstreamToUpstream, {}, &up, &down);
  ASSERT_EQ(sidecar->on_start({}, start), FilterStatus::kContinue);
  const std::string body(300, 'b');
  std::string u, d;
  RecordingOutput out(engine::Direction::kDownstreamToUpstream, bytes(body), &u, &d);
  EXPECT_EQ(sidecar->on_data(engine::Direction::kDownstreamToUpstream, bytes(body), out), FilterStatus::kClose);
  EXPECT_EQ(d, "HTTP/1.1 503\r\n\r\n");
  EXPECT_TRUE(u.empty());
  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_FALSE(side.results[0].ok);
}

TEST(TlsFilterTest, SecondConnectionResumesTheSession) {
  auto client_ctx = make_client(sidecar_client());
  auto server_ctx = make_server(gateway_server());
  ClientSessionParams params;
  params.session_key = "10.0.0.7:443";
  for (int round = 0; round < 3; ++round) {
    Recorded side, gw;
    auto sidecar = originator(client_ctx, &side, params);
    auto gateway = terminator(server_ctx, &gw);
    FilterChain chain({sidecar.get(), gateway.get()});
    chain.sniffed(kRequest);
    chain.connect(0);
    chain.connect(1);
    // The ticket arrives after the handshake, with the first response bytes.
    chain.backend_send(kResponse);
    ASSERT_EQ(chain.client_rx, kResponse);
    ASSERT_EQ(side.results.size(), 1u);
    ASSERT_TRUE(side.results[0].ok) << side.results[0].failure_reason;
    EXPECT_EQ(side.results[0].resumed, round > 0) << round;
    ASSERT_EQ(gw.results.size(), 1u);
    EXPECT_EQ(gw.results[0].resumed, round > 0) << round;
    // The resumed session still carries the gateway's identity.
    EXPECT_EQ(side.results[0].peer.uri_sans, std::vector<std::string>{kGatewayId});
    EXPECT_EQ(gw.results[0].peer.uri_sans, std::vector<std::string>{kSleepId});
  }
  EXPECT_EQ(client_ctx->session_cache().size(), 1u);

  // Another upstream key, or a new context generation, starts afresh.
  params.session_key = "10.0.0.8:443";
  Recorded side, gw;
  auto sidecar = originator(client_ctx, &side, params);
  auto gateway = terminator(server_ctx, &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.connect(0);
  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_FALSE(side.results[0].resumed);

  Recorded side2, gw2;
  auto fresh = originator(make_client(sidecar_client()), &side2, ClientSessionParams{"", "10.0.0.7:443"});
  auto gateway2 = terminator(server_ctx, &gw2);
  FilterChain chain2({fresh.get(), gateway2.get()});
  chain2.connect(0);
  ASSERT_EQ(side2.results.size(), 1u);
  EXPECT_FALSE(side2.results[0].resumed);
}

TEST(TlsFilterTest, ServerContextGenerationChangeRefusesOldTickets) {
  auto client_ctx = make_client(sidecar_client());
  auto run = [&](std::shared_ptr<const TlsServerContext> server_ctx) {
    Recorded side, gw;
    auto sidecar = originator(client_ctx, &side);
    auto gateway = terminator(server_ctx, &gw);
    FilterChain chain({sidecar.get(), gateway.get()});
    chain.connect(0);
    chain.connect(1);
    chain.backend_send("x");
    EXPECT_EQ(side.results.size(), 1u);
    return !side.results.empty() && side.results[0].ok && side.results[0].resumed;
  };
  auto gen1 = make_server(gateway_server());
  EXPECT_FALSE(run(gen1));
  EXPECT_TRUE(run(gen1));
  auto gen2 = make_server(gateway_server());  // rebuilt after a config change
  EXPECT_FALSE(run(gen2));
}

// Gateway origination (the istio.io "TLS origination at the gateway"
// variant, with the mesh hop in front): app -> sidecar (ISTIO_MUTUAL) ->
// gateway (terminates, reads the request, then originates SIMPLE) ->
// edition.cnn.com (SIMPLE server) -> backend.
TEST(TlsFilterTest, GatewayTerminatesThenOriginatesTheDecryptedRequest) {
  Recorded side, gw, cnn;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto inner = std::make_unique<RecordingInner>();
  RecordingInner* guard = inner.get();
  auto gateway = terminator(make_server(gateway_server()), &gw);
  auto external = terminator(make_server(cnn_server()), &cnn);
  FilterChain chain({sidecar.get(), gateway.get(), external.get()});

  chain.sniffed(kRequest);
  chain.connect(0);
  ASSERT_EQ(chain.held(1), kRequest);  // the gateway handler decides on this

  std::string err;
  ASSERT_TRUE(gateway->set_upstream_tls(make_client(cnn_client()), {"edition.cnn.com", "edition.cnn.com:443"}, &err))
      << err;
  ASSERT_TRUE(gateway->set_inner(std::move(inner)));
  chain.connect(1);  // on_start: ClientHello, request held until the handshake completes
  chain.connect(2);

  ASSERT_EQ(gw.results.size(), 2u);
  EXPECT_EQ(gw.results[1].side, TlsSide::kUpstream);
  EXPECT_TRUE(gw.results[1].ok) << gw.results[1].failure_reason;
  EXPECT_EQ(gw.results[1].peer.dns_sans, (std::vector<std::string>{"edition.cnn.com", "*.cnn.com"}));
  EXPECT_EQ(chain.backend_rx, kRequest);
  EXPECT_TRUE(guard->seen_up.empty());  // the handler already saw the first request

  chain.backend_send(kResponse);
  EXPECT_EQ(chain.client_rx, kResponse);
  EXPECT_EQ(guard->seen_down, kResponse);
  chain.client_send("GET /next HTTP/1.1\r\n\r\n");
  EXPECT_EQ(guard->seen_up, "GET /next HTTP/1.1\r\n\r\n");
  EXPECT_EQ(chain.backend_rx, kRequest + "GET /next HTTP/1.1\r\n\r\n");

  EXPECT_FALSE(gateway->set_upstream_tls(make_client(cnn_client()), {}, &err));  // too late
}

// Stands in for the HTTP guard when a request needs another upstream: holds
// it and asks for the move (FilterStatus::kNewUpstream).
class SwitchingInner final : public engine::StreamFilter {
 public:
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    std::string_view s(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    if (dir == Direction::kDownstreamToUpstream && s.find("/other") != std::string_view::npos) {
      held.append(s);
      out.skip(chunk.size());
      return FilterStatus::kNewUpstream;
    }
    return out.forward(chunk.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  bool on_new_upstream(FilterOutput& out) override {
    out.inject(Direction::kDownstreamToUpstream, {reinterpret_cast<const uint8_t*>(held.data()), held.size()});
    return false;
  }
  std::string held;
};

// At a terminating gateway the downstream's TLS session outlives the
// upstream: the inner filter's held request comes out as plaintext (the
// handler's pending bytes), the upstream leg goes, and the next upstream's
// TLS settings can be given again.
TEST(TlsFilterTest, AGatewayTerminatorStaysAcrossANewUpstream) {
  Recorded side, gw, cnn;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  auto external = terminator(make_server(cnn_server()), &cnn);
  FilterChain chain({sidecar.get(), gateway.get(), external.get()});
  chain.sniffed(kRequest);
  chain.connect(0);
  ASSERT_EQ(chain.held(1), kRequest);
  std::string err;
  ASSERT_TRUE(gateway->set_upstream_tls(make_client(cnn_client()), {"edition.cnn.com", "edition.cnn.com:443"}, &err))
      << err;
  ASSERT_TRUE(gateway->set_inner(std::make_unique<SwitchingInner>()));
  chain.connect(1);
  chain.connect(2);
  EXPECT_EQ(chain.backend_rx, kRequest);
  chain.backend_send(kResponse);
  EXPECT_EQ(chain.client_rx, kResponse);

  const std::string other = "GET /other HTTP/1.1\r\nHost: other.example\r\n\r\n";
  chain.client_send(other);
  EXPECT_EQ(chain.status(1), FilterStatus::kNewUpstream);
  EXPECT_EQ(chain.backend_rx, kRequest);  // nothing of it reached the old upstream

  std::string up, down;
  RecordingOutput out(Direction::kDownstreamToUpstream, {}, &up, &down);
  EXPECT_TRUE(gateway->on_new_upstream(out));  // stays installed
  EXPECT_EQ(up, other);                        // plaintext, for the handler
  EXPECT_TRUE(down.empty());
  EXPECT_TRUE(gateway->terminates());
  EXPECT_FALSE(gateway->originates());
  EXPECT_TRUE(gateway->set_upstream_tls(make_client(cnn_client()), {"edition.cnn.com", "edition.cnn.com:443"}, &err))
      << err;
  EXPECT_TRUE(gateway->set_inner(std::make_unique<SwitchingInner>()));
}

TEST(TlsFilterTest, GatewayOriginationFailureRepliesThroughTheDownstreamTls) {
  Recorded side, gw, cnn;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  auto external = terminator(make_server(cnn_server()), &cnn);
  FilterChain chain({sidecar.get(), gateway.get(), external.get()});
  chain.sniffed(kRequest);
  chain.connect(0);

  std::string err;
  // Trusting the mesh root, not the external CA: verification fails.
  ASSERT_TRUE(gateway->set_upstream_tls(make_client(cnn_client(Certs::get().path("sleep/root-cert.pem"))), {}, &err));
  gateway->set_upstream_failure_reply([](const TlsHandshakeResult& r) {
    return "HTTP/1.1 503 Service Unavailable\r\n\r\n" + upstream_tls_failure_details(r.failure_reason);
  });
  chain.connect(1);
  chain.connect(2);

  ASSERT_EQ(gw.results.size(), 2u);
  EXPECT_FALSE(gw.results[1].ok);
  EXPECT_EQ(chain.status(1), FilterStatus::kClose);
  // Decrypted by the sidecar: the reply went through the mTLS leg.
  EXPECT_THAT(chain.client_rx, HasSubstr("HTTP/1.1 503 Service Unavailable"));
  EXPECT_THAT(chain.client_rx, HasSubstr("TLS error: error:0A000086:SSL routines::certificate verify failed"));
  EXPECT_TRUE(chain.backend_rx.empty());
}

TEST(TlsFilterTest, TerminationInstalledWithTheConnectVerdictDecryptsTheHeldHello) {
  Recorded side, gw;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  using engine::Direction;
  // The sidecar's ClientHello (and the encrypted request it holds).
  std::string hello, unused;
  RecordingOutput s1(Direction::kDownstreamToUpstream, bytes(kRequest), &hello, &unused);
  ASSERT_EQ(sidecar->on_start(bytes(kRequest), s1), FilterStatus::kContinue);
  // The gateway's handler picked the upstream from the sniffed SNI, before
  // any byte was decrypted: the raw ClientHello is the held data.
  std::string to_backend, to_sidecar;
  RecordingOutput g1(Direction::kDownstreamToUpstream, bytes(hello), &to_backend, &to_sidecar);
  ASSERT_EQ(gateway->on_start(bytes(hello), g1), FilterStatus::kContinue);
  EXPECT_TRUE(to_backend.empty());
  ASSERT_FALSE(to_sidecar.empty());  // ServerHello .. Finished
  std::string to_gateway, to_client;
  RecordingOutput s2(Direction::kUpstreamToDownstream, bytes(to_sidecar), &to_gateway, &to_client);
  ASSERT_EQ(sidecar->on_data(Direction::kUpstreamToDownstream, bytes(to_sidecar), s2), FilterStatus::kContinue);
  std::string to_sidecar2;
  RecordingOutput g2(Direction::kDownstreamToUpstream, bytes(to_gateway), &to_backend, &to_sidecar2);
  ASSERT_EQ(gateway->on_data(Direction::kDownstreamToUpstream, bytes(to_gateway), g2), FilterStatus::kContinue);
  ASSERT_EQ(gw.results.size(), 1u);
  EXPECT_TRUE(gw.results[0].ok) << gw.results[0].failure_reason;
  EXPECT_EQ(to_backend, kRequest);
}

TEST(TlsFilterTest, InnerFilterSeesPlaintextAndItsOutputIsEncrypted) {
  Recorded side, gw;
  auto inner = std::make_unique<RecordingInner>();
  RecordingInner* rec = inner.get();
  rec->tag = "[tag]";
  rec->take_held = true;
  auto sidecar = sidecar_with(std::move(inner), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect(0);
  chain.connect(1);
  EXPECT_EQ(rec->seen_held, kRequest);
  chain.client_send("body");
  EXPECT_EQ(rec->seen_up, "body");
  EXPECT_EQ(chain.backend_rx, kRequest + "[tag]body");
  chain.backend_send(kResponse);
  EXPECT_EQ(rec->seen_down, kResponse);
  EXPECT_EQ(chain.client_rx, kResponse);
}

// The lengths of the TLS records in `wire` (5-byte headers: type, version,
// length), which must hold whole records only.
std::vector<size_t> record_lengths(std::string_view wire) {
  std::vector<size_t> lengths;
  while (wire.size() >= 5) {
    const size_t len = (static_cast<uint8_t>(wire[3]) << 8) | static_cast<uint8_t>(wire[4]);
    if (wire.size() < 5 + len) break;
    lengths.push_back(len);
    wire.remove_prefix(5 + len);
  }
  EXPECT_TRUE(wire.empty()) << wire.size() << " bytes are not a whole record";
  return lengths;
}

// An inner filter that answers each client chunk with a script: "<" + text
// injects the text, ">" forwards the rest of the chunk, "+N" its next N bytes.
class ScriptedInner final : public engine::StreamFilter {
 public:
  explicit ScriptedInner(std::vector<std::string> script) : script_(std::move(script)) {}
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (dir != Direction::kDownstreamToUpstream) {
      return out.forward(chunk.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
    }
    size_t forwarded = 0;
    for (const std::string& step : script_) {
      int rc = 0;
      if (step[0] == '<') {
        rc = out.inject(dir, bytes(step.substr(1)));
      } else {
        // ">": the rest of the chunk; "+N": its next N bytes.
        const size_t n = step[0] == '>' ? chunk.size() - forwarded : std::stoul(step.substr(1));
        rc = out.forward(n);
        forwarded += n;
      }
      if (rc != 0) return FilterStatus::kReset;
    }
    return FilterStatus::kContinue;
  }
  FilterStatus on_end_stream(Direction, FilterOutput&) override { return FilterStatus::kContinue; }

 private:
  std::vector<std::string> script_;
};

// Sends `chunk` from the client through a sidecar whose inner filter runs
// `script`; returns the TLS records' lengths that went to the gateway.
std::vector<size_t> records_for(std::vector<std::string> script, const std::string& chunk, std::string* backend) {
  Recorded side, gw;
  auto sidecar = sidecar_with(std::make_unique<ScriptedInner>(std::move(script)), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.connect_all();
  const size_t before = chain.first_link_up.size();
  chain.client_send(chunk);
  *backend = chain.backend_rx;
  return record_lengths(std::string_view(chain.first_link_up).substr(before));
}

// What the inner filter writes in one call toward a TLS side goes as one
// TLS record (a response head injected and its body forwarded, say), in the
// order written; a record's plaintext is filled before the next starts.
TEST(TlsFilterTest, GatheredOutputKeepsItsOrderAndFillsRecords) {
  std::string backend;
  // An injected piece, then the chunk forwarded: one record.
  EXPECT_EQ(records_for({"<[tag]", ">"}, "body", &backend).size(), 1u);
  EXPECT_EQ(backend, "[tag]body");
  // A forwarded chunk, then an injected piece: one record.
  EXPECT_EQ(records_for({">", "<[end]"}, "body", &backend).size(), 1u);
  EXPECT_EQ(backend, "body[end]");
  // A forwarded record's worth and more, then a piece: the forwarded bytes
  // as OpenSSL splits them (16 KiB, the rest), then the piece.
  const std::string big(20000, 'x');
  EXPECT_EQ(records_for({">", "<[end]"}, big, &backend).size(), 3u);
  EXPECT_EQ(backend, big + "[end]");
  // 10,000 injected bytes, then 10,000 forwarded: the first record is
  // filled (16 KiB of plaintext), the second holds the rest (3,616 bytes).
  const std::string a(10000, 'a'), b(10000, 'b');
  const std::vector<size_t> lengths = records_for({"<" + a, ">"}, b, &backend);
  ASSERT_EQ(lengths.size(), 2u);
  EXPECT_EQ(lengths[0] - lengths[1], 16384u - 3616u);  // the same overhead per record
  EXPECT_EQ(backend, a + b);
  // An injected piece larger than a record, between small ones: the first
  // record filled, the rest joined with what follows.
  EXPECT_EQ(records_for({"<[", "<" + big, "<]", ">"}, "z", &backend).size(), 2u);
  EXPECT_EQ(backend, "[" + big + "]z");
  // Pieces of the chunk forwarded one after the other (kept as one view),
  // with a piece injected between two of them.
  EXPECT_EQ(records_for({"+2", "+2", "<X", "+1", ">"}, "abcdef", &backend).size(), 1u);
  EXPECT_EQ(backend, "abcdXef");
}

// The worker drains: a terminating filter passes it to its inner filter,
// and when that ends the client's connection the client's TLS session gets
// close_notify before the FIN (not a bare FIN: an "unexpected EOF").
TEST(TlsFilterTest, ADrainEndingTheClientSendsCloseNotify) {
  Recorded side, gw;
  auto sidecar_inner = std::make_unique<RecordingInner>();
  RecordingInner* rec = sidecar_inner.get();
  auto sidecar = sidecar_with(std::move(sidecar_inner), &side);
  auto gateway = terminator(make_server(gateway_server()), &gw);
  auto gw_inner = std::make_unique<RecordingInner>();
  RecordingInner* g = gw_inner.get();
  g->drain_status = FilterStatus::kEndDownstream;
  ASSERT_TRUE(gateway->set_inner(std::move(gw_inner)));
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect_all();
  chain.backend_send(kResponse);
  ASSERT_EQ(chain.client_rx, kResponse);
  const std::string alert = chain.drain(1);
  EXPECT_EQ(g->drains, 1);
  EXPECT_EQ(chain.status(1), FilterStatus::kEndDownstream);
  EXPECT_FALSE(alert.empty());  // close_notify, a TLS record
  EXPECT_EQ(rec->end_down, 1);  // the sidecar's session ended
}

// TLS origination: the inner filter hears that the upstream connection is
// ready once the handshake is done, not at the TCP connect (Envoy's pool
// ready: a per-try timer does not pay for the handshake).
TEST(TlsFilterTest, TheInnerFilterIsToldTheUpstreamIsReadyAfterTheHandshake) {
  Recorded gw;
  auto inner = std::make_unique<RecordingInner>();
  RecordingInner* rec = inner.get();
  TlsFilterOptions o;
  o.upstream_tls = make_client(sidecar_client());
  o.inner = std::move(inner);
  auto sidecar = make_filter(std::move(o));
  rec->tls = sidecar.get();
  auto gateway = terminator(make_server(gateway_server()), &gw);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect(0);
  chain.connect(1);
  EXPECT_EQ(rec->ready, 1);
  EXPECT_TRUE(rec->ready_after_handshake);
  EXPECT_EQ(chain.backend_rx, kRequest);
  // Without a TLS leg toward the upstream: at once.
  auto plain_inner = std::make_unique<RecordingInner>();
  RecordingInner* plain = plain_inner.get();
  TlsFilterOptions po;
  po.inner = std::move(plain_inner);
  auto f = make_filter(std::move(po));
  std::string up, down;
  RecordingOutput out(engine::Direction::kUpstreamToDownstream, {}, &up, &down);
  f->on_upstream_ready(out);
  EXPECT_EQ(plain->ready, 1);
}

TEST(TlsFilterTest, WithoutTlsLegsTheInnerFilterKeepsZeroCopyForwarding) {
  auto inner = std::make_unique<RecordingInner>();
  RecordingInner* rec = inner.get();
  TlsFilterOptions o;
  o.inner = std::move(inner);
  auto f = make_filter(std::move(o));
  EXPECT_FALSE(f->takes_held_bytes());
  std::string up, down;
  RecordingOutput out(engine::Direction::kDownstreamToUpstream, bytes(kRequest), &up, &down);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(kRequest), out), FilterStatus::kContinue);
  EXPECT_EQ(up, kRequest);
  EXPECT_EQ(out.forwards, 1);
  EXPECT_EQ(out.injects, 0);
  EXPECT_EQ(rec->seen_up, kRequest);
}

TEST(TlsFilterTest, EndOfStreamSendsCloseNotifyBothWays) {
  Recorded side, gw;
  auto inner = std::make_unique<RecordingInner>();
  RecordingInner* rec = inner.get();
  TlsFilterOptions o;
  o.downstream_tls = make_server(gateway_server());
  o.inner = std::move(inner);
  o.on_handshake = gw.callback();
  auto gateway = make_filter(std::move(o));
  auto sidecar = originator(make_client(sidecar_client()), &side);
  FilterChain chain({sidecar.get(), gateway.get()});
  chain.sniffed(kRequest);
  chain.connect(0);
  chain.connect(1);
  ASSERT_EQ(chain.backend_rx, kRequest);

  // Client half-closes: the sidecar sends close_notify; the gateway reads it
  // as the end of the downstream stream (inner filter told once, even though
  // the FIN follows), and the backend gets its FIN.
  chain.client_fin();
  EXPECT_EQ(rec->end_up, 1);
  EXPECT_TRUE(chain.backend_got_fin);
  EXPECT_FALSE(chain.closed(0));
  EXPECT_FALSE(chain.closed(1));

  // The response still flows on the half-open connection, then the backend
  // closes: close_notify to the sidecar, FIN to the client.
  chain.backend_send(kResponse);
  EXPECT_EQ(chain.client_rx, kResponse);
  chain.backend_fin();
  EXPECT_EQ(rec->end_down, 1);
  EXPECT_TRUE(chain.client_got_fin);
}

TEST(TlsFilterTest, DownstreamFinBeforeTheUpstreamHandshakeEndsIsReported) {
  Recorded side;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  std::string up, down;
  RecordingOutput start(engine::Direction::kDownstreamToUpstream, bytes(kRequest), &up, &down);
  ASSERT_EQ(sidecar->on_start(bytes(kRequest), start), FilterStatus::kContinue);
  RecordingOutput fin(engine::Direction::kDownstreamToUpstream, {}, &up, &down);
  EXPECT_EQ(sidecar->on_end_stream(engine::Direction::kDownstreamToUpstream, fin), FilterStatus::kClose);
  ASSERT_EQ(side.results.size(), 1u);
  EXPECT_FALSE(side.results[0].ok);
  EXPECT_THAT(side.results[0].failure_reason, HasSubstr("bytes not sent"));
}

// An inner filter that holds the upstream's end (a tunnel waiting for its
// proxy, inside TLS origination to that proxy): a client FIN during the
// upstream handshake is no failure (the engine holds the FIN back, so the
// handshake can finish); the hold is asked of the inner filter, and a
// failed TLS filter holds nothing (its close must not wait).
TEST(TlsFilterTest, AnInnerFilterHoldingTheUpstreamEndKeepsTheHandshakeThroughAClientFin) {
  class HoldingInner final : public engine::StreamFilter {
   public:
    bool upstream_end_held() const override { return true; }
    FilterStatus on_data(Direction, std::span<const uint8_t>, FilterOutput&) override {
      return FilterStatus::kContinue;  // held
    }
  };
  for (const bool holding : {true, false}) {
    Recorded side;
    TlsFilterOptions o;
    o.upstream_tls = make_client(sidecar_client());
    if (holding) o.inner = std::make_unique<HoldingInner>();
    o.on_handshake = side.callback();
    auto sidecar = make_filter(std::move(o));
    EXPECT_EQ(sidecar->upstream_end_held(), holding);
    std::string up, down;
    RecordingOutput start(engine::Direction::kDownstreamToUpstream, bytes(kRequest), &up, &down);
    ASSERT_EQ(sidecar->on_start(bytes(kRequest), start), FilterStatus::kContinue);
    RecordingOutput fin(engine::Direction::kDownstreamToUpstream, {}, &up, &down);
    const FilterStatus st = sidecar->on_end_stream(engine::Direction::kDownstreamToUpstream, fin);
    if (holding) {
      EXPECT_EQ(st, FilterStatus::kContinue);
      EXPECT_TRUE(side.results.empty()) << side.results[0].failure_reason;
      // A failure (garbage from the upstream) ends the hold.
      const std::string garbage = "HTTP/1.1 400 Bad Request\r\n\r\n";
      RecordingOutput bad(engine::Direction::kUpstreamToDownstream, bytes(garbage), &up, &down);
      EXPECT_NE(sidecar->on_data(engine::Direction::kUpstreamToDownstream, bytes(garbage), bad), FilterStatus::kContinue);
      EXPECT_FALSE(sidecar->upstream_end_held());
    } else {
      EXPECT_EQ(st, FilterStatus::kClose);  // as before: the held plaintext could never go
    }
  }
}

TEST(TlsFilterTest, InjectFailureResets) {
  Recorded side;
  auto sidecar = originator(make_client(sidecar_client()), &side);
  std::string up, down;
  RecordingOutput start(engine::Direction::kDownstreamToUpstream, {}, &up, &down);
  start.fail_injects = true;  // the worker's buffer pool is exhausted
  EXPECT_EQ(sidecar->on_start({}, start), FilterStatus::kReset);
  EXPECT_FALSE(sidecar->error().empty());
}

}  // namespace
}  // namespace sluice::tls
