// The gateway handler's decisions without a network: the Gateway server's
// port is a bound (not listening) loopback socket, the handler and the
// HttpRequestGuard are driven through the fakes of handler_fakes.h.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/support/config_fixtures.h"
#include "tests/userspace-proxy/proxy/handler_fakes.h"
#include "userspace-proxy/proxy/egress_handler.h"

namespace sluice::proxy {
namespace {

using engine::Verdict;
using test_fakes::bytes;
using test_fakes::FakeConnection;
using test_fakes::FakeDns;
using test_fakes::FakeOutput;

// Two Gateways with plain HTTP servers on one port, each for its own host,
// each with its VirtualService to its ServiceEntry's static endpoint.
std::string two_gateways(uint16_t port) {
  std::string y;
  for (const char* n : {"a", "b"}) {
    std::string host = std::string(n) + ".example.com";
    std::string ip = std::string("192.0.2.") + (n[0] == 'a' ? "1" : "2");
    y += "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: gw-" + std::string(n) +
         "}\nspec:\n  selector: {istio: egressgateway}\n  servers:\n  - port: {number: " + std::to_string(port) +
         ", name: http-" + n + ", protocol: HTTP}\n    hosts: [" + host + "]\n---\n";
    y += "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: se-" + std::string(n) +
         "}\nspec:\n  hosts: [" + host + "]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
         "  resolution: STATIC\n  endpoints: [{address: " + ip + "}]\n---\n";
    y += "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: vs-" + std::string(n) +
         "}\nspec:\n  hosts: [" + host + "]\n  gateways: [gw-" + n + "]\n  http:\n  - route:\n    - destination: {host: " +
         host + ", port: {number: 80}}\n---\n";
  }
  return y;
}

class GatewayHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The listener's address, as the gateway reads it from the accepted socket.
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ASSERT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
  }
  void load(const std::string& yaml) {
    config::LoadResult r;
    std::string doc = yaml;
    sluice::test_support::load_documents({doc.c_str()}, r);
    ASSERT_FALSE(r.diagnostics.has_errors());
    ProxyIdentity id;
    id.gateway = true;
    id.labels = {{"istio", "egressgateway"}};
    store_.publish(std::make_shared<const Snapshot>(std::move(r.config), 1, id));
  }
  // The connect verdict's filter, started with `req` (when it takes the held
  // bytes), its upstream connected and answered 200.
  engine::StreamFilterPtr answered(engine::ConnectionHandler& h, FakeConnection& c, Verdict& v,
                                   const std::string& req) {
    engine::StreamFilterPtr f = v.take_filter();
    EXPECT_NE(f, nullptr);
    if (!f) return f;
    if (f->takes_held_bytes()) {
      FakeOutput out(req);
      EXPECT_EQ(f->on_start(bytes(req), out), engine::FilterStatus::kContinue);
    }
    h.on_upstream_connected(c, v.upstreams()[0]);
    const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    FakeOutput resp(ok);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), resp), engine::FilterStatus::kContinue);
    return f;
  }
  engine::ConnectionHandlerPtr handler() {
    EgressOptions o;
    o.snapshots = &store_;
    o.dns = &dns_;
    o.access_log = log_.get();
    o.counters = &counters_;
    return make_gateway_handler(o);
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  SnapshotStore store_;
  FakeDns dns_;
  std::unique_ptr<AccessLogSink> log_ = AccessLogSink::memory();
  ProxyCounters counters_;
};

// A sidecar's pooled connection to the gateway carries requests for several
// hosts: each request's Host picks its Gateway server (Envoy's http.<port>
// route table is shared by the port's plain HTTP servers), not only the
// connection's first.
TEST_F(GatewayHandlerTest, ALaterRequestIsRoutedByTheServerItsHostSelects) {
  load(two_gateways(port_));
  auto h = handler();
  FakeConnection c;
  engine::AcceptInfo info(fd_);
  ASSERT_EQ(h->on_accept(c, info).kind(), Verdict::Kind::kNeedMore);
  const std::string first = "GET /1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n";
  Verdict v = h->on_downstream_data(c, bytes(first));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.upstreams()[0].to_string(), "192.0.2.1:80");
  auto f = answered(*h, c, v, first);
  ASSERT_NE(f, nullptr);
  // b.example.com on the same connection: gw-b's VirtualService, another
  // upstream (not gw-a's 404 NR).
  const std::string later = "GET /2 HTTP/1.1\r\nHost: b.example.com\r\n\r\n";
  FakeOutput out(later);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), out),
            engine::FilterStatus::kNewUpstream)
      << out.downstream;
  EXPECT_TRUE(out.downstream.empty()) << out.downstream;
  FakeOutput held("");
  f->on_new_upstream(held);
  Verdict v2 = h->on_new_upstream(c, bytes(later));
  ASSERT_EQ(v2.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v2.upstreams()[0].to_string(), "192.0.2.2:80");

  // A Host no server on the port takes: 404 NR, as for a first request.
  auto f2 = answered(*h, c, v2, later);
  ASSERT_NE(f2, nullptr);
  const std::string stray = "GET /3 HTTP/1.1\r\nHost: c.example.com\r\n\r\n";
  FakeOutput o3(stray);
  f2->on_data(engine::Direction::kDownstreamToUpstream, bytes(stray), o3);
  EXPECT_EQ(o3.downstream.rfind("HTTP/1.1 404 Not Found", 0), 0u) << o3.downstream;
  engine::ConnectionStats st;
  st.reason = engine::CloseReason::kCompleted;
  h->on_close(c, st);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET /2 HTTP/1.1\" 200 - via_upstream"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /3 HTTP/1.1\" 404 NR route_not_found"), std::string::npos) << lines;
}

// A first request no server on the port takes is answered 404 NR and the
// connection stays (Envoy keeps it after a local reply): the next request's
// Host picks its server afresh.
TEST_F(GatewayHandlerTest, AFirstRequestAnswered404KeepsTheConnection) {
  load(two_gateways(port_));
  auto h = handler();
  FakeConnection c;
  engine::AcceptInfo info(fd_);
  ASSERT_EQ(h->on_accept(c, info).kind(), Verdict::Kind::kNeedMore);
  const std::string stray = "GET /1 HTTP/1.1\r\nHost: c.example.com\r\n\r\n";
  const std::string next = "GET /2 HTTP/1.1\r\nHost: b.example.com\r\n\r\n";
  Verdict v = h->on_downstream_data(c, bytes(stray + "GET /2 HT"));
  ASSERT_EQ(v.kind(), Verdict::Kind::kRespond);
  EXPECT_EQ(v.consumed(), stray.size());
  const std::string reply(reinterpret_cast<const char*>(v.response().data()), v.response().size());
  EXPECT_EQ(reply.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << reply;
  EXPECT_EQ(reply.find("connection: close"), std::string::npos) << reply;
  // The engine shows the rest: a partial head, then all of it.
  EXPECT_EQ(h->on_downstream_data(c, bytes("GET /2 HT")).kind(), Verdict::Kind::kNeedMore);
  Verdict v2 = h->on_downstream_data(c, bytes(next));
  ASSERT_EQ(v2.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v2.upstreams()[0].to_string(), "192.0.2.2:80");
  auto f = answered(*h, c, v2, next);
  ASSERT_NE(f, nullptr);
  engine::ConnectionStats st;
  st.reason = engine::CloseReason::kCompleted;
  h->on_close(c, st);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET /1 HTTP/1.1\" 404 NR route_not_found"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /2 HTTP/1.1\" 200 - via_upstream"), std::string::npos) << lines;
}

}  // namespace
}  // namespace sluice::proxy
