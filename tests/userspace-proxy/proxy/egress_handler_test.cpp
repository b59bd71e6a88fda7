// The sidecar handler's decisions without sockets: a fake Connection, an
// injected SO_ORIGINAL_DST, a fake DNS resolver, and HttpRequestGuard driven
// through a fake FilterOutput.
#include "userspace-proxy/proxy/egress_handler.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <thread>

#include "tests/support/config_fixtures.h"

#include <map>
#include <set>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "core/config/loader.h"
#include "core/policy/load_balancer.h"
#include "userspace-proxy/proxy/clusters.h"
#include "userspace-proxy/proxy/http_guard.h"
#include "tests/userspace-proxy/proxy/handler_fakes.h"
#include "tests/userspace-proxy/sniff/tls_test_util.h"

namespace sluice::proxy {
namespace {

using engine::Verdict;
using test_fakes::bytes;
using test_fakes::FakeConnection;
using test_fakes::FakeDns;
using test_fakes::FakeOutput;
using test_fakes::text;

constexpr const char* kAllowAny = R"(
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy:
      mode: ALLOW_ANY
)";

constexpr const char* kRegistryOnly = R"(
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
)";

using sluice::test_support::kCnnServiceEntry;

constexpr const char* kDb = R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  addresses: [192.0.2.50]
  ports:
  - {number: 5432, name: tcp-pg, protocol: TCP}
  resolution: NONE
)";

// A VirtualService for edition.cnn.com (bound to the mesh) with these
// http[] rules (YAML list items, indented two spaces).
std::string cnn_routes(std::string_view http) {
  return "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: cnn}\n"
         "spec:\n  hosts: [edition.cnn.com]\n  http:\n" +
         std::string(http);
}

// One route for edition.cnn.com whose tries have 1 ms each (perTryTimeout).
std::string retrying_vs(int attempts) {
  return cnn_routes("  - retries: {attempts: " + std::to_string(attempts) +
                    ", perTryTimeout: 0.001s, retryOn: gateway-error}\n"
                    "    route: [{destination: {host: edition.cnn.com}}]\n");
}

// A DestinationRule for HOST with this connectionPool (flow-style YAML).
std::string pool_rule(std::string_view host, std::string_view pool) {
  return "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: pool}\nspec:\n  host: " +
         std::string(host) + "\n  trafficPolicy: {connectionPool: " + std::string(pool) + "}\n";
}

// A local answer's bytes.
std::string response_text(const Verdict& v) {
  return std::string(reinterpret_cast<const char*>(v.response().data()), v.response().size());
}

// Round robin over two endpoints; two consecutive errors eject one.
constexpr const char* kOutlierTwo5xx = R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
)";

// maxRequestsPerConnection 2: an upstream connection carries two requests.
constexpr const char* kMaxRequestsTwo = R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 2}}}
)";

// maxRequestsPerConnection 1: no keep-alive to the upstream, so no pooling.
constexpr const char* kNoPooling = R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}
)";


class EgressHandlerTest : public ::testing::Test {
 protected:
  void load(std::initializer_list<const char*> docs) {
    config::LoadResult r;
    sluice::test_support::load_documents(docs, r);
    ASSERT_FALSE(r.diagnostics.has_errors());
    store_.publish(std::make_shared<const Snapshot>(std::move(r.config), ++generation_));
  }
  engine::ConnectionHandlerPtr handler(std::string original) {
    EgressOptions o;
    o.snapshots = &store_;
    o.dns = &dns_;
    o.access_log = log_.get();
    o.counters = &counters_;
    if (with_clusters_) o.clusters = &clusters_;
    o.dns_wait = std::chrono::milliseconds(60000);
    if (dns_recheck_.count() > 0) o.dns_recheck = dns_recheck_;
    o.lookup_original_dst = [original](int, engine::SocketAddress* out) {
      if (original.empty()) return -ENOENT;
      return engine::SocketAddress::parse(original, out) ? 0 : -EINVAL;
    };
    return make_egress_handler(o);
  }
  // A connect verdict's filter, started with the bytes the handler decided
  // on (as the engine does for a filter that takes them): returns what went
  // upstream.
  std::string start(engine::StreamFilter& f, const std::string& held) {
    if (!f.takes_held_bytes()) return held;
    FakeOutput out(held);
    EXPECT_EQ(f.on_start(bytes(held), out), engine::FilterStatus::kContinue);
    return out.upstream;
  }
  // As the engine does for a new upstream connection: on_start with `held`
  // (when the filter takes it), then the connection is up
  // (on_upstream_ready); `out` sees both (its timer: the last one set).
  void start_ready(engine::StreamFilter& f, const std::string& held, FakeOutput& out) {
    if (f.takes_held_bytes()) {
      EXPECT_EQ(f.on_start(bytes(held), out), engine::FilterStatus::kContinue);
    }
    f.on_upstream_ready(out);
  }
  // The filter's view of a response chunk: its status and what reached the client.
  std::pair<engine::FilterStatus, std::string> respond(engine::StreamFilter& f, const std::string& chunk) {
    FakeOutput out(chunk);
    engine::FilterStatus st = f.on_data(engine::Direction::kUpstreamToDownstream, bytes(chunk), out);
    return {st, out.downstream + out.upstream};  // forward() lands in `upstream` in this fake
  }
  // A new HTTP connection's decision on its first bytes `first` (accepted
  // as `info`, the fixture's by default): expected to be a connect.
  Verdict first_verdict(engine::ConnectionHandler& h, FakeConnection& c, const std::string& first,
                        const engine::AcceptInfo* info = nullptr) {
    EXPECT_EQ(h.on_accept(c, info ? *info : info_).kind(), Verdict::Kind::kNeedMore);
    Verdict v = h.on_downstream_data(c, bytes(first));
    EXPECT_EQ(v.kind(), Verdict::Kind::kConnect);
    return v;
  }
  // An HTTP connection to edition.cnn.com decided on `first`; its filter.
  engine::StreamFilterPtr decided(engine::ConnectionHandler& h, FakeConnection& c, const std::string& first) {
    return first_verdict(h, c, first).take_filter();
  }
  // An HTTP connection decided on `req` and connected: its filter, started
  // with `req`; *upstream: the endpoint it connected to.
  engine::StreamFilterPtr connected(engine::ConnectionHandler& h, FakeConnection& c, const std::string& req,
                                    engine::SocketAddress* upstream) {
    Verdict v = first_verdict(h, c, req);
    if (v.kind() != Verdict::Kind::kConnect || v.upstreams().empty()) return nullptr;
    *upstream = v.upstreams()[0];
    engine::StreamFilterPtr f = v.take_filter();
    if (!f) return f;
    bring_up(h, c, *f, req, *upstream);
    return f;
  }
  // As the engine for a connect verdict's filter: started with `req`, then
  // the handler hears of the connect to `upstream`, then the filter that
  // its upstream is ready.
  void bring_up(engine::ConnectionHandler& h, FakeConnection& c, engine::StreamFilter& f, const std::string& req,
                const engine::SocketAddress& upstream) {
    start(f, req);
    h.on_upstream_connected(c, upstream);
    FakeOutput ready("");
    f.on_upstream_ready(ready);
  }
  // A sidecar for edition.cnn.com (resolved to `ips`, the first the client's
  // original destination) under a DestinationRule with this connectionPool,
  // with the process-wide Clusters (circuit breakers); `extra`: another
  // document (a VirtualService).
  // A sidecar for edition.cnn.com on two endpoints (203.0.113.20, the
  // client's original destination, and .21), under `vs` when given.
  engine::ConnectionHandlerPtr cnn_on_two(const std::string& vs = "") {
    if (vs.empty()) load({kRegistryOnly, kCnnServiceEntry});
    else load({kRegistryOnly, kCnnServiceEntry, vs.c_str()});
    dns_.answer("edition.cnn.com", "203.0.113.20");
    dns_.answer("edition.cnn.com", "203.0.113.21");
    return handler("203.0.113.20:80");
  }
  // A sidecar for edition.cnn.com (203.0.113.20, the client's original
  // destination) under `vs`, with the mirror tests' shadow.example.
  engine::ConnectionHandlerPtr shadowed_cnn(const std::string& vs);
  engine::ConnectionHandlerPtr pooled_cnn(std::string_view pool, std::initializer_list<const char*> ips,
                                          const std::string& extra = "") {
    const std::string dr = pool_rule("edition.cnn.com", pool);
    if (extra.empty()) load({kRegistryOnly, kCnnServiceEntry, dr.c_str()});
    else load({kRegistryOnly, kCnnServiceEntry, dr.c_str(), extra.c_str()});
    for (const char* ip : ips) dns_.answer("edition.cnn.com", ip);
    with_clusters_ = true;
    return handler(std::string(*ips.begin()) + ":80");
  }
  // An HTTP connection decided on `req`, connected to `first`, whose
  // upstream answered 503: the guard asks for a new upstream (a retry).
  engine::StreamFilterPtr answered_503(engine::ConnectionHandler& h, FakeConnection& c, const std::string& req,
                                       engine::SocketAddress* first) {
    engine::StreamFilterPtr f = connected(h, c, req, first);
    if (!f) return f;
    EXPECT_EQ(respond(*f, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").first,
              engine::FilterStatus::kNewUpstream);
    return f;
  }
  // After the guard asked for a new upstream (a retry or a switch): the
  // handler's next connect verdict, past the retry back-off (this fake
  // connection has no waker: a detection timeout stands in for the wake).
  Verdict next_try(engine::ConnectionHandler& h, FakeConnection& c, engine::StreamFilter& f, const std::string& req) {
    FakeOutput held("");
    f.on_new_upstream(held);
    EXPECT_EQ(held.upstream, req);
    Verdict v = h.on_new_upstream(c, bytes(req));
    if (v.kind() == Verdict::Kind::kNeedMore) {
      EXPECT_LE(v.detection_timeout().count(), 250);
      v = h.on_detection_timeout(c, bytes(req));
    }
    EXPECT_EQ(v.kind(), Verdict::Kind::kConnect);
    return v;
  }
  // A POST to `path` whose body ends 5 ms after its head: its route's 1 ms
  // clock (timeout or perTryTimeout) starts only then. And an Upgrade to
  // `path` gets no timer (a tunnel's request never ends).
  void expect_clocks_start_at_the_requests_end(engine::ConnectionHandler& h, const std::string& path) {
    {
      FakeConnection c;
      const std::string head = "POST " + path + " HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 6\r\n\r\nabc";
      auto f = decided(h, c, head);
      ASSERT_NE(f, nullptr);
      FakeOutput out0(head);
      start_ready(*f, head, out0);
      EXPECT_FALSE(out0.timer.has_value() && out0.timer->count() > 0) << path;  // the body is still coming
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      FakeOutput out1("def");
      ASSERT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes("def"), out1), engine::FilterStatus::kContinue);
      EXPECT_EQ(out1.upstream, "def");
      ASSERT_TRUE(out1.timer.has_value()) << path;  // sent whole: the 1 ms starts now
      EXPECT_LE(out1.timer->count(), 1);
      close(h, c, engine::CloseReason::kCompleted);
    }
    FakeConnection c;
    const std::string up = "GET " + path + " HTTP/1.1\r\nHost: edition.cnn.com\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    auto f = decided(h, c, up);
    ASSERT_NE(f, nullptr);
    FakeOutput out0(up);
    start_ready(*f, up, out0);
    EXPECT_FALSE(out0.timer.has_value() && out0.timer->count() > 0) << path;
    EXPECT_EQ(respond(*f, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").first,
              engine::FilterStatus::kContinue);
    close(h, c, engine::CloseReason::kCompleted);
  }
  // `f` (a perTryTimeout of 1 ms) is started with `req`, its try runs out
  // and is retried: the next try's filter, started, its own try running.
  engine::StreamFilterPtr late_try(engine::ConnectionHandler& h, FakeConnection& c, engine::StreamFilter& f,
                                   const std::string& req) {
    FakeOutput out0(req);
    start_ready(f, req, out0);
    EXPECT_TRUE(out0.timer.has_value() && out0.timer->count() <= 1);  // the try's deadline
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    FakeOutput none("");
    EXPECT_EQ(f.on_timer(none), engine::FilterStatus::kNewUpstream);
    EXPECT_EQ(none.downstream, "");
    EXPECT_FALSE(f.upstream_reusable());  // its response is still due there
    Verdict v = next_try(h, c, f, req);
    engine::StreamFilterPtr next = v.take_filter();
    if (!next) return next;
    FakeOutput out1(req);
    start_ready(*next, req, out1);
    EXPECT_TRUE(out1.timer.has_value() && out1.timer->count() <= 1);  // a fresh per-try deadline
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return next;
  }
  // The filter's timer ends the request with Envoy's 504 "upstream request
  // timeout"; the connection closes and the access log has `log_line`.
  void expect_timeout_504(engine::ConnectionHandler& h, FakeConnection& c, engine::StreamFilter& f,
                          const std::string& log_line) {
    FakeOutput out("");
    EXPECT_EQ(f.on_timer(out), engine::FilterStatus::kClose);
    EXPECT_EQ(out.downstream.rfind("HTTP/1.1 504 Gateway Timeout", 0), 0u) << out.downstream;
    close(h, c, engine::CloseReason::kFilterClose);
    EXPECT_NE(log_->lines().find(log_line), std::string::npos) << log_->lines();
  }
  void close(engine::ConnectionHandler& h, engine::Connection& c, engine::CloseReason r) {
    engine::ConnectionStats st;
    st.reason = r;
    h.on_close(c, st);
  }
  // The client resets `c` after `in` bytes from it and `out` to it; the
  // access log line of `request` ("GET /x HTTP/1.1") must count `bytes`
  // received and nothing sent (it got no response).
  void expect_reset_line(engine::ConnectionHandler& h, engine::Connection& c, uint64_t in, uint64_t out,
                         const std::string& request, size_t bytes) {
    engine::ConnectionStats st;
    st.reason = engine::CloseReason::kDownstreamReset;
    st.bytes_from_downstream = in;
    st.bytes_to_downstream = out;
    h.on_close(c, st);
    const std::string lines = log_->lines();
    // "... 0 - - 50 0 ..." (code, flags, details, bytes received and sent).
    const size_t at = lines.find("\"" + request + "\" 0 ");
    ASSERT_NE(at, std::string::npos) << lines;
    const std::string line = lines.substr(at, lines.find('\n', at) - at);
    EXPECT_NE(line.find(" " + std::to_string(bytes) + " 0 "), std::string::npos) << line;
  }
  // REGISTRY_ONLY with edition.cnn.com declared: `c` decided and connected on
  // "GET /a" through `h` (a sidecar's); its filter, with the response to
  // /a relayed when `answered`.
  engine::StreamFilterPtr cnn_keepalive(engine::ConnectionHandlerPtr& h, FakeConnection& c, bool answered) {
    load({kRegistryOnly, kCnnServiceEntry, kDb});
    dns_.answer("edition.cnn.com", "203.0.113.10");
    h = handler("203.0.113.10:80");
    engine::SocketAddress upstream;
    engine::StreamFilterPtr f = connected(*h, c, "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n", &upstream);
    if (f && answered) {
      const std::string ok(kOk2);
      FakeOutput r(ok);
      EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), r), engine::FilterStatus::kContinue);
    }
    return f;
  }
  // `req` decided and connected on `c`, answered by a retriable 503 of which
  // the head and part of the body came: the retry is decided, the rest of
  // the body still to be dropped; its filter.
  engine::StreamFilterPtr dropping_503(engine::ConnectionHandler& h, FakeConnection& c, const std::string& req) {
    auto f = decided(h, c, req);
    if (!f) return f;
    FakeOutput started(req);
    start_ready(*f, req, started);
    h.on_upstream_connected(c, engine::SocketAddress());
    auto [st, shown] = respond(*f, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbu");
    EXPECT_EQ(st, engine::FilterStatus::kContinue);
    EXPECT_EQ(shown, "");
    return f;
  }
  static constexpr std::string_view kOk2 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

  SnapshotStore store_;
  uint64_t generation_ = 0;
  FakeDns dns_;
  std::unique_ptr<AccessLogSink> log_ = AccessLogSink::memory();
  ProxyCounters counters_;
  engine::AcceptInfo info_{-1};
  // Load balancing, maxConnections and outlier detection (off by default:
  // endpoints in plan order).
  bool with_clusters_ = false;
  Clusters clusters_;
  // How often a connection without a waker (these fakes) looks for a DNS
  // answer; longer, its wait shows the whole deadline (the option's
  // default when zero).
  std::chrono::milliseconds dns_recheck_{0};
};

TEST_F(EgressHandlerTest, WithoutOriginalDestinationTheConnectionIsRefused) {
  load({kAllowAny});
  auto h = handler("");
  FakeConnection c;
  Verdict v = h->on_accept(c, info_);
  EXPECT_EQ(v.kind(), Verdict::Kind::kClose);
  EXPECT_TRUE(v.response().empty());
  EXPECT_EQ(counters_.no_original_dst.load(), 1u);
  close(*h, c, engine::CloseReason::kLocalClose);
}

TEST_F(EgressHandlerTest, AllowAnyPassesUnknownHttpToTheOriginalDestination) {
  load({kAllowAny});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);  // port 80 undeclared: detect
  std::string req = "GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  Verdict v = h->on_downstream_data(c, bytes(req));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  // Istio's allow_any route retries a connect failure twice (default
  // retry policy): the one original destination, three attempts.
  ASSERT_EQ(v.upstreams().size(), 3u);
  for (const auto& a : v.upstreams()) EXPECT_EQ(a.to_string(), "203.0.113.10:80");
  EXPECT_NE(v.take_filter(), nullptr);  // later requests are checked
  close(*h, c, engine::CloseReason::kCompleted);
  EXPECT_NE(log_->lines().find("\"GET /politics HTTP/1.1\""), std::string::npos);
  EXPECT_NE(log_->lines().find("PassthroughCluster"), std::string::npos);
}

TEST_F(EgressHandlerTest, RegistryOnlyAnswersUnknownHttpWith502OnAnHttpPort) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  const std::string unknown = "GET / HTTP/1.1\r\nHost: unknown.example.org\r\n\r\n";
  const std::string cnn = "GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  // The 502 answers only its request: the connection stays (Envoy keeps an
  // HTTP/1.1 connection after a local reply to a complete request), and the
  // request pipelined behind it is decided on its own.
  Verdict v = h->on_downstream_data(c, bytes(unknown + cnn));
  ASSERT_EQ(v.kind(), Verdict::Kind::kRespond);
  EXPECT_EQ(v.consumed(), unknown.size());
  std::string reply = text(v.response());
  EXPECT_EQ(reply.rfind("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n", 0), 0u) << reply;
  EXPECT_NE(reply.find("server: sluice\r\n"), std::string::npos);
  EXPECT_EQ(reply.find("connection: close"), std::string::npos) << reply;
  EXPECT_NE(log_->lines().find("502 - direct_response"), std::string::npos) << log_->lines();
  EXPECT_NE(log_->lines().find("block_all"), std::string::npos);
  dns_.answer("edition.cnn.com", "203.0.113.10");
  Verdict next = h->on_downstream_data(c, bytes(cnn));
  ASSERT_EQ(next.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(next.upstreams()[0].to_string(), "203.0.113.10:80");
  close(*h, c, engine::CloseReason::kCompleted);
  EXPECT_NE(log_->lines().find("\"GET /politics HTTP/1.1\" 0 "), std::string::npos) << log_->lines();

  // A client that closes with its request, an HTTP/1.0 one, and one whose
  // body is unread: answered, then closed.
  for (const std::string req : {"GET / HTTP/1.1\r\nHost: unknown.example.org\r\nConnection: close\r\n\r\n",
                                "GET / HTTP/1.0\r\nHost: unknown.example.org\r\n\r\n",
                                "POST / HTTP/1.1\r\nHost: unknown.example.org\r\nContent-Length: 3\r\n\r\nab"}) {
    FakeConnection c2;
    ASSERT_EQ(h->on_accept(c2, info_).kind(), Verdict::Kind::kNeedMore);
    Verdict cv = h->on_downstream_data(c2, bytes(req));
    ASSERT_EQ(cv.kind(), Verdict::Kind::kClose) << req;
    EXPECT_NE(text(cv.response()).find("connection: close\r\n"), std::string::npos) << req;
    close(*h, c2, engine::CloseReason::kLocalClose);
  }
}

TEST_F(EgressHandlerTest, RegistryOnlyBlackholesUnknownSni) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  auto h = handler("203.0.113.10:443");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  using namespace sniff::testing;
  std::string hello =
      record(handshake_message(client_hello_body(extension(0, server_name_data({{0, "www.google.com"}})))));
  Verdict v = h->on_downstream_data(c, bytes(hello));
  ASSERT_EQ(v.kind(), Verdict::Kind::kClose);
  EXPECT_TRUE(v.response().empty());
  close(*h, c, engine::CloseReason::kLocalClose);
  EXPECT_NE(log_->lines().find(" UH "), std::string::npos) << log_->lines();
  EXPECT_NE(log_->lines().find("BlackHoleCluster"), std::string::npos);
  EXPECT_NE(log_->lines().find("www.google.com"), std::string::npos);
}

TEST_F(EgressHandlerTest, RegistryOnlyBlackholesHttpOnAPortWithoutHttpListener) {
  load({kRegistryOnly});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict v = h->on_downstream_data(c, bytes("GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n"));
  ASSERT_EQ(v.kind(), Verdict::Kind::kClose);
  EXPECT_TRUE(v.response().empty());  // nothing sent: curl sees an empty reply
  close(*h, c, engine::CloseReason::kLocalClose);
  // Istio's TCP proxy to BlackHoleCluster logs a TCP line.
  EXPECT_NE(log_->lines().find("\"- - -\" 0 UH "), std::string::npos) << log_->lines();
  EXPECT_NE(log_->lines().find("BlackHoleCluster"), std::string::npos);
}

TEST_F(EgressHandlerTest, KnownHostWaitsForDnsThenConnectsToTheResolvedAddress) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  auto h = handler("203.0.113.99:443");  // the client's IP is never used for resolution DNS
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  using namespace sniff::testing;
  std::string hello =
      record(handshake_message(client_hello_body(extension(0, server_name_data({{0, "edition.cnn.com"}})))));
  Verdict v = h->on_downstream_data(c, bytes(hello));
  ASSERT_EQ(v.kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(dns_.asked, std::vector<std::string>{"edition.cnn.com"});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  v = h->on_detection_timeout(c, bytes(hello));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.upstreams()[0].to_string(), "203.0.113.10:443");
  EXPECT_EQ(v.take_filter(), nullptr);  // TLS: opaque relay
  close(*h, c, engine::CloseReason::kCompleted);
  EXPECT_NE(log_->lines().find("outbound|443||edition.cnn.com"), std::string::npos) << log_->lines();
}

// DestinationRule tunnel: a tls[] route to the forward proxy's subset
// connects to the proxy, whose filter asks CONNECT before the ClientHello
// goes; protocol POST is refused (UF), Sluice tunnels with CONNECT only.
TEST_F(EgressHandlerTest, ATunnelRouteConnectsToTheProxyAndAsksConnect) {
  const std::string vs_dr = R"(
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: forward-proxy}
spec:
  hosts: [forward-proxy.corp.example]
  ports: [{number: 3128, name: http-connect, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cnn-via-proxy}
spec:
  hosts: [edition.cnn.com]
  tls:
  - match: [{port: 443, sniHosts: [edition.cnn.com]}]
    route: [{destination: {host: forward-proxy.corp.example, subset: cnn, port: {number: 3128}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: via-proxy}
spec:
  host: forward-proxy.corp.example
  subsets:
  - name: cnn
    trafficPolicy:
      tunnel: {protocol: PROTOCOL, targetHost: edition.cnn.com, targetPort: 443}
)";
  using namespace sniff::testing;
  const std::string hello =
      record(handshake_message(client_hello_body(extension(0, server_name_data({{0, "edition.cnn.com"}})))));
  for (const std::string protocol : {"CONNECT", "POST"}) {
    std::string docs = vs_dr;
    docs.replace(docs.find("PROTOCOL"), 8, protocol);
    load({kRegistryOnly, kCnnServiceEntry, docs.c_str()});
    dns_.answer("edition.cnn.com", "203.0.113.10");
    dns_.answer("forward-proxy.corp.example", "203.0.113.21");
    auto h = handler("203.0.113.10:443");
    FakeConnection c;
    ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
    Verdict v = h->on_downstream_data(c, bytes(hello));
    if (protocol == "POST") {
      EXPECT_EQ(v.kind(), Verdict::Kind::kClose);
      close(*h, c, engine::CloseReason::kLocalClose);
      EXPECT_NE(log_->lines().find(" UF "), std::string::npos) << log_->lines();
      EXPECT_NE(log_->lines().find("tunnel protocol POST is not supported by Sluice"), std::string::npos)
          << log_->lines();
      continue;
    }
    ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
    EXPECT_EQ(v.upstreams()[0].to_string(), "203.0.113.21:3128");
    auto f = v.take_filter();
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(start(*f, hello), "CONNECT edition.cnn.com:443 HTTP/1.1\r\nHost: edition.cnn.com:443\r\n\r\n")
        << "the ClientHello waits for the proxy's answer";
    const std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    FakeOutput opened(ok);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), opened), engine::FilterStatus::kContinue);
    EXPECT_EQ(opened.upstream, hello) << "then it goes, unchanged";
    EXPECT_EQ(opened.downstream, "");
    close(*h, c, engine::CloseReason::kCompleted);
    EXPECT_NE(log_->lines().find("outbound|3128|cnn|forward-proxy.corp.example"), std::string::npos) << log_->lines();
  }
}

TEST_F(EgressHandlerTest, DeclaredTcpPortConnectsAtAcceptWithoutWaitingForBytes) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  auto h = handler("192.0.2.50:5432");
  FakeConnection c;
  Verdict v = h->on_accept(c, info_);
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);  // server-first protocols work
  EXPECT_EQ(v.upstreams()[0].to_string(), "192.0.2.50:5432");
  close(*h, c, engine::CloseReason::kCompleted);
  FakeConnection c2;
  auto h2 = handler("192.0.2.51:5432");
  EXPECT_EQ(h2->on_accept(c2, info_).kind(), Verdict::Kind::kClose);  // not in addresses
  close(*h2, c2, engine::CloseReason::kLocalClose);
}

TEST_F(EgressHandlerTest, OpaqueAfterDetectionTimeout) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  auto h = handler("203.0.113.10:9000");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(h->on_detection_timeout(c, {}).kind(), Verdict::Kind::kClose);  // unknown TCP: blackhole
  close(*h, c, engine::CloseReason::kLocalClose);
  load({kAllowAny});
  auto h2 = handler("203.0.113.10:9000");
  FakeConnection c2;
  ASSERT_EQ(h2->on_accept(c2, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict v = h2->on_detection_timeout(c2, {});
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.upstreams()[0].to_string(), "203.0.113.10:9000");
  close(*h2, c2, engine::CloseReason::kCompleted);
}

TEST_F(EgressHandlerTest, EachKeepAliveRequestIsCheckedOnItsOwn) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  std::string first = "POST /a HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 5\r\n\r\nhel";
  Verdict v = h->on_downstream_data(c, bytes(first));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  engine::StreamFilterPtr f = v.take_filter();
  ASSERT_NE(f, nullptr);
  // HTTP/1.1 upstream connections are pooled: the request the connection
  // was decided on goes through the guard too (its head rebuilt).
  ASSERT_TRUE(f->takes_held_bytes());
  FakeOutput out0(first);
  EXPECT_EQ(f->on_start(bytes(first), out0), engine::FilterStatus::kContinue);
  EXPECT_EQ(out0.upstream, first);

  // The rest of the body, then a second request for the same host (split
  // across chunks): forwarded.
  std::string chunk = "loGET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n";
  FakeOutput out1(chunk);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(chunk), out1), engine::FilterStatus::kContinue);
  EXPECT_EQ(out1.upstream, "lo");  // the incomplete head is held back
  std::string chunk2 = "\r\n";
  FakeOutput out2(chunk2);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(chunk2), out2), engine::FilterStatus::kContinue);
  EXPECT_EQ(out2.upstream, "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");

  // Chunked body, then a request for an unknown host: a local 502, nothing
  // of it forwarded; it waits for the responses due before it (pipelined),
  // and the connection goes on: the upstream is let go and what the client
  // sent meanwhile is decided afresh.
  std::string chunk3 =
      "POST /c HTTP/1.1\r\nHost: edition.cnn.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n";
  FakeOutput out3(chunk3);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(chunk3), out3),
            engine::FilterStatus::kContinue);
  EXPECT_EQ(out3.upstream.find("evil.example"), std::string::npos);
  EXPECT_NE(out3.upstream.find("0\r\n\r\n"), std::string::npos);
  EXPECT_EQ(out3.downstream, "");
  // More from the client meanwhile waits (held, not forwarded).
  std::string more = "GET /more HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput outm(more);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(more), outm), engine::FilterStatus::kContinue);
  EXPECT_EQ(outm.upstream, "");
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  for (int i = 0; i < 3; ++i) {
    FakeOutput r(ok);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), r),
              i < 2 ? engine::FilterStatus::kContinue : engine::FilterStatus::kNewUpstream);
    EXPECT_EQ(r.all.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r.all;
    // The answer follows the last response due, in order.
    if (i == 2) {
      EXPECT_NE(r.all.find("okHTTP/1.1 502 Bad Gateway\r\n"), std::string::npos) << r.all;
    } else {
      EXPECT_EQ(r.all.find("502"), std::string::npos) << r.all;
    }
  }
  // The held request becomes the pending bytes; the handler, told the
  // upstream was let go, leaves the connection undecided (an empty answer)
  // and then decides /more as a first request.
  FakeOutput held("");
  f->on_new_upstream(held);
  EXPECT_EQ(held.upstream, more);
  Verdict rv = h->on_new_upstream(c, bytes(more));
  ASSERT_EQ(rv.kind(), Verdict::Kind::kRespond);
  EXPECT_TRUE(rv.response().empty());
  EXPECT_EQ(rv.consumed(), 0u);
  ASSERT_EQ(h->on_downstream_data(c, bytes(more)).kind(), Verdict::Kind::kConnect);
  close(*h, c, engine::CloseReason::kFilterClose);
  EXPECT_EQ(counters_.http_requests.load(), 5u);
  const std::string lines = log_->lines();
  ASSERT_NE(lines.find("\"GET / HTTP/1.1\" 502"), std::string::npos) << lines;
  EXPECT_LT(lines.find("\"POST /c HTTP/1.1\" 200"), lines.find("\"GET / HTTP/1.1\" 502")) << lines;
}

// A local answer waiting behind a pipelined response keeps the connection
// only if nothing before it told the client the connection closes (the
// upstream's `Connection: close`), and not while the proxy drains: then it
// says `connection: close` and the request held after it never goes.
TEST_F(EgressHandlerTest, ADeferredAnswerClosesWhenTheResponseBeforeItSaidClose) {
  for (int drain = 0; drain < 2; ++drain) {
    engine::ConnectionHandlerPtr h;
    FakeConnection c;
    engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/false);
    ASSERT_NE(f, nullptr);
    const std::string later =
        "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\nPOST /pay HTTP/1.1\r\nHost: edition.cnn.com\r\n"
        "Content-Length: 0\r\n\r\n";
    FakeOutput in(later);
    EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), in), engine::FilterStatus::kContinue);
    EXPECT_TRUE(in.upstream.empty()) << in.upstream;
    if (drain) {
      FakeOutput d("");
      EXPECT_EQ(f->on_drain(d), engine::FilterStatus::kContinue);
    }
    const std::string resp = drain ? std::string(kOk2)
                                   : "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
    FakeOutput r(resp);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(resp), r), engine::FilterStatus::kClose) << drain;
    const size_t at = r.all.find("HTTP/1.1 502 Bad Gateway\r\n");
    ASSERT_NE(at, std::string::npos) << r.all;
    EXPECT_NE(r.all.find("connection: close\r\n", at), std::string::npos) << r.all;
    EXPECT_EQ(r.all.find("/pay"), std::string::npos);
    close(*h, c, engine::CloseReason::kCompleted);
  }
}

// The answer waiting behind a pipelined request whose upstream ends before
// responding: both lines are still written (the 503 UC, then the 502).
TEST_F(EgressHandlerTest, AnAnswerWaitingBehindAResponseIsLoggedWhenTheUpstreamEnds) {
  engine::ConnectionHandlerPtr h;
  FakeConnection c;
  engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/false);
  ASSERT_NE(f, nullptr);
  const std::string denied = "GET /denied HTTP/1.1\r\nHost: evil.example\r\n\r\n";
  FakeOutput out(denied);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(denied), out), engine::FilterStatus::kContinue);
  EXPECT_EQ(out.all, "");
  FakeOutput end("");
  f->on_end_stream(engine::Direction::kUpstreamToDownstream, end);
  close(*h, c, engine::CloseReason::kCompleted);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET /a HTTP/1.1\" 503 UC"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /denied HTTP/1.1\" 502 - "), std::string::npos) << lines;
}

// A later request answered locally that arrived in two reads: nothing of it
// (its head's first part held meanwhile included) reaches the upstream.
TEST_F(EgressHandlerTest, ALaterRequestAnsweredLocallyLeavesNothingOfItsHeadBehind) {
  engine::ConnectionHandlerPtr h;
  FakeConnection c;
  engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/true);
  ASSERT_NE(f, nullptr);
  const std::string ok(kOk2);
  const std::string part1 = "GET /secret HTTP/1.1\r\nHost: evil.ex";
  FakeOutput o1(part1);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(part1), o1), engine::FilterStatus::kContinue);
  const std::string part2 = "ample\r\n\r\nGET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput o2(part2);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(part2), o2), engine::FilterStatus::kContinue);
  EXPECT_EQ(o1.upstream + o2.upstream, "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
  EXPECT_EQ(o2.downstream.rfind("HTTP/1.1 502 Bad Gateway\r\n", 0), 0u) << o2.downstream;
  close(*h, c, engine::CloseReason::kCompleted);
}

// The request after a kept local answer has its own start time and bytes in
// its access log line, also when the connection ends before its response.
TEST_F(EgressHandlerTest, TheRequestAfterAKeptAnswerIsLoggedWithItsOwnBytes) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  const std::string unknown = "GET /u HTTP/1.1\r\nHost: unknown.example.org\r\n\r\n";
  Verdict v = h->on_downstream_data(c, bytes(unknown));
  ASSERT_EQ(v.kind(), Verdict::Kind::kRespond);
  const size_t answer = v.response().size();
  dns_.answer("edition.cnn.com", "203.0.113.10");
  const std::string cnn = "GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  ASSERT_EQ(h->on_downstream_data(c, bytes(cnn)).kind(), Verdict::Kind::kConnect);
  // Only /politics's bytes, not the answered request's.
  expect_reset_line(*h, c, unknown.size() + cnn.size(), answer, "GET /politics HTTP/1.1", cnn.size());
}

// A later request answered locally with nothing due before it keeps the
// connection too: the request after it is decided and forwarded.
TEST_F(EgressHandlerTest, ALaterRequestAnsweredLocallyKeepsTheConnection) {
  engine::ConnectionHandlerPtr h;
  FakeConnection c;
  engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/true);
  ASSERT_NE(f, nullptr);
  const std::string ok(kOk2);
  const std::string two =
      "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\nGET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput out(two);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(two), out), engine::FilterStatus::kContinue);
  EXPECT_EQ(out.downstream.rfind("HTTP/1.1 502 Bad Gateway\r\n", 0), 0u) << out.downstream;
  EXPECT_EQ(out.downstream.find("connection: close"), std::string::npos) << out.downstream;
  EXPECT_EQ(out.upstream, "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
  FakeOutput r2(ok);
  EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), r2), engine::FilterStatus::kContinue);
  EXPECT_EQ(r2.all, ok);
  close(*h, c, engine::CloseReason::kCompleted);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET / HTTP/1.1\" 502 - "), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /b HTTP/1.1\" 200 - "), std::string::npos) << lines;
}

TEST_F(EgressHandlerTest, ALaterRequestForAnotherUpstreamMovesTheConnectionThere) {
  load({kAllowAny, kCnnServiceEntry, kDb});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  const std::string first = "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  Verdict v = h->on_downstream_data(c, bytes(first));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.upstreams()[0].to_string(), "203.0.113.20:80");
  auto f = v.take_filter();
  start(*f, first);
  h->on_upstream_connected(c, v.upstreams()[0]);
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  // Allowed under ALLOW_ANY, but passthrough to the original IP, not the
  // cnn cluster: it must not ride on this upstream. The guard holds it and
  // asks the engine for another upstream (as Envoy picks one per request).
  const std::string later = "GET /x HTTP/1.1\r\nHost: other.example\r\n\r\n";
  FakeOutput out(later);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), out), engine::FilterStatus::kNewUpstream);
  EXPECT_TRUE(out.upstream.empty());
  EXPECT_TRUE(out.downstream.empty());
  FakeOutput held("");
  EXPECT_FALSE(f->on_new_upstream(held));
  EXPECT_EQ(held.upstream, later);
  // The handler goes on with the later request's own plan.
  Verdict v2 = h->on_new_upstream(c, bytes(later));
  ASSERT_EQ(v2.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v2.upstreams()[0].to_string(), "203.0.113.10:80");
  auto f2 = v2.take_filter();
  ASSERT_NE(f2, nullptr);
  EXPECT_EQ(start(*f2, later), later);
  h->on_upstream_connected(c, v2.upstreams()[0]);
  EXPECT_EQ(respond(*f2, "HTTP/1.1 204 No Content\r\n\r\n").first, engine::FilterStatus::kContinue);
  EXPECT_EQ(counters_.upstream_changed.load(), 1u);
  // One decision per request: the first to the cnn cluster, the later one
  // passed through.
  EXPECT_EQ(counters_.actions[static_cast<size_t>(policy::Action::kRoute)].load(), 1u);
  EXPECT_EQ(counters_.actions[static_cast<size_t>(policy::Action::kPassthrough)].load(), 1u);
  close(*h, c, engine::CloseReason::kCompleted);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET / HTTP/1.1\" 200 - via_upstream"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /x HTTP/1.1\" 204 - via_upstream"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"other.example\" \"203.0.113.10:80\" PassthroughCluster"), std::string::npos) << lines;
}

// consistentHash: every request goes to its key's endpoint on the ring —
// new connections, and later requests on a kept-alive one (a request with
// another user's key moves to that user's endpoint; the same key stays).
TEST_F(EgressHandlerTest, ConsistentHashSendsEachKeyToItsEndpointRequestByRequest) {
  load({kRegistryOnly, kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
)"});
  for (const char* ip : {"203.0.113.20", "203.0.113.21", "203.0.113.22"}) dns_.answer("edition.cnn.com", ip);
  with_clusters_ = true;
  auto h = handler("203.0.113.20:80");
  auto request = [](const std::string& user) {
    return "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\nx-user: " + user + "\r\n\r\n";
  };
  // Where each user's first request goes, on a connection of its own.
  auto first_upstream = [&](const std::string& user) {
    FakeConnection n;
    Verdict v = first_verdict(*h, n, request(user));
    std::string to = v.kind() == Verdict::Kind::kConnect ? v.upstreams()[0].to_string() : "";
    close(*h, n, engine::CloseReason::kLocalClose);
    return to;
  };
  std::map<std::string, std::string> home;
  std::set<std::string> used;
  for (int i = 0; i < 12; ++i) {
    std::string user = "user-" + std::to_string(i);
    home[user] = first_upstream(user);
    used.insert(home[user]);
    for (int again = 0; again < 3; ++again) EXPECT_EQ(first_upstream(user), home[user]) << user;
  }
  EXPECT_GE(used.size(), 2u) << "twelve users spread over the endpoints";
  // Two users with different endpoints.
  std::string a = "user-0", b;
  for (const auto& [user, to] : home) {
    if (to != home[a]) b = user;
  }
  ASSERT_FALSE(b.empty());
  FakeConnection c;
  engine::SocketAddress up;
  auto f = connected(*h, c, request(a), &up);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(up.to_string(), home[a]);
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  // The same user again: the same upstream connection.
  FakeOutput same(request(a));
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(request(a)), same),
            engine::FilterStatus::kContinue);
  EXPECT_EQ(same.upstream, request(a));
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  // A user whose key the ring puts on the same endpoint stays too.
  std::string neighbour;
  for (const auto& [user, to] : home) {
    if (user != a && to == home[a]) neighbour = user;
  }
  ASSERT_FALSE(neighbour.empty());
  FakeOutput near(request(neighbour));
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(request(neighbour)), near),
            engine::FilterStatus::kContinue);
  EXPECT_EQ(near.upstream, request(neighbour));
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  // Another user's request moves to that user's endpoint.
  FakeOutput other(request(b));
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(request(b)), other),
            engine::FilterStatus::kNewUpstream);
  EXPECT_TRUE(other.upstream.empty());
  FakeOutput held("");
  f->on_new_upstream(held);
  Verdict moved = h->on_new_upstream(c, bytes(request(b)));
  ASSERT_EQ(moved.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(moved.upstreams()[0].to_string(), home[b]);
  close(*h, c, engine::CloseReason::kCompleted);
  // Pipelined in the first read, before any upstream is up: the second
  // user's request still waits for its own endpoint.
  FakeConnection p;
  const std::string two = request(a) + request(b);
  auto pf = decided(*h, p, two);
  ASSERT_NE(pf, nullptr);
  EXPECT_EQ(start(*pf, two), request(a));
  auto [st, shown] = respond(*pf, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(st, engine::FilterStatus::kNewUpstream);
  FakeOutput held2("");
  pf->on_new_upstream(held2);
  EXPECT_EQ(held2.upstream, request(b));
  close(*h, p, engine::CloseReason::kCompleted);
}

// A real loopback connection from `source` (any 127/8 address): the
// accepted end, whose peer the handler looks up; the caller closes both.
std::pair<int, int> loopback_from(const char* source) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(l, 1), 0);
  EXPECT_EQ(getsockname(l, reinterpret_cast<sockaddr*>(&a), &len), 0);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  EXPECT_EQ(bind(c, reinterpret_cast<sockaddr*>(&from), sizeof(from)), 0);
  EXPECT_EQ(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  int s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  close(l);
  return {c, s};
}

// consistentHash useSourceIp: the handler looks the client's address up
// (only because a rule hashes on it) and every connection from one client
// goes to that address's endpoint on the ring.
TEST_F(EgressHandlerTest, UseSourceIpSendsEachClientToItsEndpoint) {
  load({kRegistryOnly, kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
)"});
  for (const char* ip : {"203.0.113.20", "203.0.113.21", "203.0.113.22"}) dns_.answer("edition.cnn.com", ip);
  with_clusters_ = true;
  auto h = handler("203.0.113.20:80");
  for (const char* client : {"127.0.0.1", "127.0.0.2", "127.0.0.3"}) {
    for (int i = 0; i < 3; ++i) {
      auto [cfd, sfd] = loopback_from(client);
      engine::AcceptInfo info(sfd);
      FakeConnection c;
      Verdict v = first_verdict(*h, c, "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n", &info);
      ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
      std::optional<engine::SocketAddress> home =
          clusters_.ring_endpoint("outbound|80||edition.cnn.com", policy::stable_hash(client));
      ASSERT_TRUE(home.has_value());
      EXPECT_EQ(v.upstreams()[0], *home) << client << " connection " << i;
      close(*h, c, engine::CloseReason::kLocalClose);
      ::close(cfd);
      ::close(sfd);
    }
  }
}

// connectionPool: tcp.connectTimeout, tcp.tcpKeepalive (whole seconds, as
// Istio gives them to Envoy) and http.idleTimeout reach the engine with the
// connect verdict.
TEST_F(EgressHandlerTest, TcpSettingsOfTheDestinationRuleGoWithTheConnect) {
  load({kRegistryOnly, kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy:
    connectionPool:
      tcp:
        connectTimeout: 250ms
        tcpKeepalive: {probes: 3, time: 90s, interval: 7500ms}
      http: {idleTimeout: 4s}
)"});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  Verdict v = first_verdict(*h, c, "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.connect_timeout(), std::chrono::milliseconds(250));
  EXPECT_TRUE(v.tcp_keepalive().enabled);
  EXPECT_EQ(v.tcp_keepalive().probes, 3u);
  EXPECT_EQ(v.tcp_keepalive().time_s, 90u);
  EXPECT_EQ(v.tcp_keepalive().interval_s, 7u);
  EXPECT_EQ(v.pool_idle_timeout(), std::chrono::milliseconds(4000));
  close(*h, c, engine::CloseReason::kLocalClose);
  // Without the setting: no keep-alive, the engine's connect timeout.
  load({kRegistryOnly, kCnnServiceEntry});
  FakeConnection d;
  Verdict w = first_verdict(*h, d, "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
  ASSERT_EQ(w.kind(), Verdict::Kind::kConnect);
  EXPECT_FALSE(w.tcp_keepalive().enabled);
  EXPECT_EQ(w.connect_timeout(), std::chrono::milliseconds(0));
  EXPECT_EQ(w.pool_idle_timeout(), std::chrono::milliseconds(0));
  close(*h, d, engine::CloseReason::kLocalClose);
  // The mesh config's connectTimeout and tcpKeepalive are the defaults; a
  // DestinationRule's keep-alive replaces them field by field.
  load({R"(
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    connectTimeout: 2s
    tcpKeepalive: {probes: 5, time: 300s, interval: 30s}
)", kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 750ms, tcpKeepalive: {time: 60s}}}}
)"});
  FakeConnection m;
  Verdict mv = first_verdict(*h, m, "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
  ASSERT_EQ(mv.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(mv.connect_timeout(), std::chrono::milliseconds(750)) << "the DestinationRule's";
  EXPECT_TRUE(mv.tcp_keepalive().enabled);
  EXPECT_EQ(mv.tcp_keepalive().probes, 5u);
  EXPECT_EQ(mv.tcp_keepalive().time_s, 60u) << "the DestinationRule's";
  EXPECT_EQ(mv.tcp_keepalive().interval_s, 30u);
  close(*h, m, engine::CloseReason::kLocalClose);
  // Passthrough (no DestinationRule, ALLOW_ANY): the mesh's alone.
  load({R"(
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    connectTimeout: 2s
    tcpKeepalive: {probes: 5, time: 300s, interval: 30s}
)"});
  FakeConnection pt;
  Verdict pv = first_verdict(*h, pt, "GET / HTTP/1.1\r\nHost: other.example\r\n\r\n");
  ASSERT_EQ(pv.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(pv.connect_timeout(), std::chrono::milliseconds(2000));
  EXPECT_EQ(pv.tcp_keepalive().time_s, 300u);
  EXPECT_EQ(pv.tcp_keepalive().probes, 5u);
  close(*h, pt, engine::CloseReason::kLocalClose);
}

TEST_F(EgressHandlerTest, ARequestForAnotherUpstreamWaitsForTheResponsesBeforeIt) {
  load({kAllowAny, kCnnServiceEntry});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  // Pipelined in the first read: the second request is held from the start.
  const std::string two = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n"
                          "GET /b HTTP/1.1\r\nHost: other.example\r\n\r\n";
  auto f = decided(*h, c, two);
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->takes_held_bytes());
  EXPECT_EQ(start(*f, two), "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
  // More from the client meanwhile waits too.
  const std::string more = "GET /c HTTP/1.1\r\nHost: other.example\r\n\r\n";
  FakeOutput o(more);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(more), o), engine::FilterStatus::kContinue);
  EXPECT_TRUE(o.upstream.empty());
  // The first response ends: now the connection moves.
  auto [st, shown] = respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(st, engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(shown, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  FakeOutput held("");
  f->on_new_upstream(held);
  EXPECT_EQ(held.upstream, "GET /b HTTP/1.1\r\nHost: other.example\r\n\r\n" + more);
  close(*h, c, engine::CloseReason::kCompleted);
}

// Route retries (Istio's default policy: a 503 twice, elsewhere when there
// is an elsewhere): the guard drops the retriable response, the request goes
// again to another endpoint after Envoy's back-off, one log line in the end.
TEST_F(EgressHandlerTest, A503IsRetriedOnAnotherEndpoint) {
  auto h = cnn_on_two();
  FakeConnection c;
  const std::string req = "POST /p HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 4\r\n\r\nbody";
  engine::SocketAddress first;
  auto f = connected(*h, c, req, &first);
  ASSERT_NE(f, nullptr);
  auto [st, shown] = respond(*f, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
  EXPECT_EQ(st, engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(shown, "");  // the client never sees the retried response
  // The request again, as received (body included), after the back-off.
  Verdict again = next_try(*h, c, *f, req);
  ASSERT_EQ(again.kind(), Verdict::Kind::kConnect);
  EXPECT_NE(again.upstreams()[0], first);  // previous_hosts: the other endpoint first
  auto f2 = again.take_filter();
  ASSERT_NE(f2, nullptr);
  EXPECT_EQ(start(*f2, req), req);
  h->on_upstream_connected(c, again.upstreams()[0]);
  auto [st2, shown2] = respond(*f2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(st2, engine::FilterStatus::kContinue);
  EXPECT_EQ(shown2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(counters_.retries.load(), 1u);
  close(*h, c, engine::CloseReason::kCompleted);
  const std::string lines = log_->lines();
  EXPECT_EQ(lines.find(" 503 "), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"POST /p HTTP/1.1\" 200 - via_upstream"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"" + again.upstreams()[0].to_string() + "\""), std::string::npos) << lines;

  // A later request on the same connection is retried with its own plan.
  const std::string later = "GET /q HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection c2;
  auto g = decided(*h, c2, req);
  start(*g, req);
  h->on_upstream_connected(c2, first);
  EXPECT_EQ(respond(*g, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  FakeOutput lo(later);
  EXPECT_EQ(g->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), lo), engine::FilterStatus::kContinue);
  EXPECT_EQ(respond(*g, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").first,
            engine::FilterStatus::kNewUpstream);
  Verdict lv = next_try(*h, c2, *g, later);
  ASSERT_EQ(lv.kind(), Verdict::Kind::kConnect);
  EXPECT_NE(lv.upstreams()[0], first);
  EXPECT_EQ(counters_.retries.load(), 2u);
  close(*h, c2, engine::CloseReason::kCompleted);
}

// The route timeout spans the tries, back-off included: a retry whose
// back-off (retries.backoff) would outlast it waits only until it, then is
// answered 504 UT without another connect.
TEST_F(EgressHandlerTest, TheRouteTimeoutRunsThroughARetrysBackoff) {
  auto h = cnn_on_two(cnn_routes(R"(
  - timeout: 200ms
    retries: {attempts: 2, retryOn: 503, backoff: 1h}
    route: [{destination: {host: edition.cnn.com}}]
)"));
  FakeConnection c;
  const std::string req = "GET /slow HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  engine::SocketAddress first;
  auto f = answered_503(*h, c, req, &first);
  ASSERT_NE(f, nullptr);
  FakeOutput held("");
  f->on_new_upstream(held);
  Verdict wait = h->on_new_upstream(c, bytes(req));
  ASSERT_EQ(wait.kind(), Verdict::Kind::kNeedMore);
  EXPECT_LE(wait.detection_timeout().count(), 205) << "not the hour of back-off: the route timeout's rest";
  std::this_thread::sleep_for(std::chrono::milliseconds(wait.detection_timeout().count() + 5));
  Verdict late = h->on_detection_timeout(c, bytes(req));
  EXPECT_NE(late.kind(), Verdict::Kind::kConnect);
  EXPECT_NE(text(late.response()).find("upstream request timeout"), std::string::npos) << text(late.response());
  close(*h, c, engine::CloseReason::kLocalClose);
  EXPECT_NE(log_->lines().find("\"GET /slow HTTP/1.1\" 504 UT"), std::string::npos) << log_->lines();
}

// The route timeout runs out while a retry's connection is still being set
// up (the engine calls the filter's timer while connecting): 504 UT, and
// outlier detection charges no endpoint for it. The try had no host yet,
// as in Envoy; before, the earlier try's endpoint took the 504 too, and
// with its own 503 that was consecutive5xxErrors 2: ejected.
TEST_F(EgressHandlerTest, ARouteTimeoutWhileConnectingChargesNoEndpoint) {
  const std::string vs = cnn_routes(R"(
  - timeout: 200ms
    retries: {attempts: 2, retryOn: 503}
    route: [{destination: {host: edition.cnn.com}}]
)");
  load({kRegistryOnly, kCnnServiceEntry, kOutlierTwo5xx, vs.c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  dns_.answer("edition.cnn.com", "203.0.113.21");
  with_clusters_ = true;
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /hang HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  engine::SocketAddress first;
  auto f = answered_503(*h, c, req, &first);
  ASSERT_NE(f, nullptr);
  Verdict again = next_try(*h, c, *f, req);
  ASSERT_EQ(again.kind(), Verdict::Kind::kConnect);
  auto f2 = again.take_filter();
  ASSERT_NE(f2, nullptr);
  start(*f2, req);  // its connect hangs: never connected, never ready
  std::this_thread::sleep_for(std::chrono::milliseconds(210));
  FakeOutput late("");
  EXPECT_EQ(f2->on_timer(late), engine::FilterStatus::kClose);
  EXPECT_EQ(late.downstream.rfind("HTTP/1.1 504 Gateway Timeout\r\n", 0), 0u) << late.downstream;
  close(*h, c, engine::CloseReason::kFilterClose);
  EXPECT_NE(log_->lines().find("\"GET /hang HTTP/1.1\" 504 UT"), std::string::npos) << log_->lines();
  // One 5xx on `first` (its 503): not ejected, round robin still reaches it.
  int to_first = 0;
  for (int i = 0; i < 4; ++i) {
    FakeConnection n;
    Verdict nv = first_verdict(*h, n, req);
    ASSERT_FALSE(nv.upstreams().empty());
    if (nv.upstreams()[0] == first) ++to_first;
    close(*h, n, engine::CloseReason::kLocalClose);
  }
  EXPECT_GE(to_first, 1);
}

// A retry whose endpoints' DNS answer has expired waits for a new one no
// longer than its route deadline (before: the whole DNS wait, 60 s here),
// then is answered 504 UT without a connect.
TEST_F(EgressHandlerTest, ARetrysDnsWaitEndsAtTheRouteDeadline) {
  dns_recheck_ = std::chrono::hours(1);  // the verdict's wait is the whole wait
  auto h = cnn_on_two(cnn_routes(R"(
  - timeout: 200ms
    retries: {attempts: 2, retryOn: 503, backoff: 1ms}
    route: [{destination: {host: edition.cnn.com}}]
)"));
  FakeConnection c;
  const std::string req = "GET /dns HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  engine::SocketAddress first;
  auto f = answered_503(*h, c, req, &first);
  ASSERT_NE(f, nullptr);
  dns_.expire("edition.cnn.com");  // no answer will come
  FakeOutput held("");
  f->on_new_upstream(held);
  Verdict wait = h->on_new_upstream(c, bytes(req));
  while (wait.kind() == Verdict::Kind::kNeedMore && wait.detection_timeout().count() <= 2) {
    std::this_thread::sleep_for(wait.detection_timeout());  // the back-off
    wait = h->on_detection_timeout(c, bytes(req));
  }
  ASSERT_EQ(wait.kind(), Verdict::Kind::kNeedMore);
  EXPECT_LE(wait.detection_timeout().count(), 210) << "the route timeout's rest, not the DNS wait";
  std::this_thread::sleep_for(std::min(wait.detection_timeout(), std::chrono::milliseconds(250)));
  Verdict late = h->on_detection_timeout(c, bytes(req));
  EXPECT_NE(late.kind(), Verdict::Kind::kConnect);
  EXPECT_NE(text(late.response()).find("upstream request timeout"), std::string::npos) << text(late.response());
  close(*h, c, engine::CloseReason::kLocalClose);
  EXPECT_NE(log_->lines().find("\"GET /dns HTTP/1.1\" 504 UT"), std::string::npos) << log_->lines();
}

// maxConnections counts connections to the cluster: a request that goes
// again (a retry; a later request moved or delayed) gives up its connection's
// slot before it takes one, or maxConnections 1 would hold it back for the
// connection it is itself leaving. Other requests wait for the slot, first
// come first served (Envoy's pending requests), up to
// http1MaxPendingRequests; an upstream is let go at its response end while
// they wait.
TEST_F(EgressHandlerTest, MaxConnectionsOneQueuesRequestsAndARetryTakesTheSlotItGaveUp) {
  auto h = pooled_cnn("{tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}", {"203.0.113.20", "203.0.113.21"});
  FakeConnection c;
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  start(*f, req);
  engine::SocketAddress first;
  ASSERT_TRUE(engine::SocketAddress::parse("203.0.113.20:80", &first));
  h->on_upstream_connected(c, first);
  FakeOutput ready("");
  f->on_upstream_ready(ready);
  EXPECT_EQ(respond(*f, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").first,
            engine::FilterStatus::kNewUpstream);
  Verdict again = next_try(*h, c, *f, req);
  ASSERT_EQ(again.kind(), Verdict::Kind::kConnect) << log_->lines();
  auto f2 = again.take_filter();
  ASSERT_NE(f2, nullptr);
  start(*f2, req);
  h->on_upstream_connected(c, again.upstreams()[0]);
  f2->on_upstream_ready(ready);

  // The one connection is still counted: another client's request waits
  // for it (Envoy's pending queue); with http1MaxPendingRequests 1 a third
  // is refused, 503 UO.
  FakeConnection other;
  ASSERT_EQ(h->on_accept(other, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict queued = h->on_downstream_data(other, bytes(req));
  EXPECT_EQ(queued.kind(), Verdict::Kind::kNeedMore) << "waits (polled without a waker)";
  FakeConnection third;
  ASSERT_EQ(h->on_accept(third, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict refused = h->on_downstream_data(third, bytes(req));
  EXPECT_NE(refused.kind(), Verdict::Kind::kConnect);
  close(*h, third, engine::CloseReason::kLocalClose);
  EXPECT_NE(log_->lines().find(" 503 UO "), std::string::npos) << log_->lines();
  EXPECT_NE(log_->lines().find("http1MaxPendingRequests 1 reached"), std::string::npos) << log_->lines();
  EXPECT_EQ(h->on_detection_timeout(other, bytes(req)).kind(), Verdict::Kind::kNeedMore) << "still waiting";

  // The response ends: the upstream is let go (a request waits for the
  // slot), the client's connection goes on undecided.
  EXPECT_EQ(respond(*f2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(h->on_new_upstream(c, {}).kind(), Verdict::Kind::kRespond);
  EXPECT_NE(log_->lines().find("\"GET /p HTTP/1.1\" 200 - via_upstream"), std::string::npos) << log_->lines();
  Verdict go = h->on_detection_timeout(other, bytes(req));
  ASSERT_EQ(go.kind(), Verdict::Kind::kConnect) << log_->lines();
  auto g = go.take_filter();
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->adopt_upstream(f2->release_upstream())) << "the pooled upstream, ready at once";
  // The first client's next request now waits behind it.
  EXPECT_EQ(h->on_downstream_data(c, bytes(req)).kind(), Verdict::Kind::kNeedMore);
  close(*h, other, engine::CloseReason::kCompleted);
  EXPECT_EQ(h->on_detection_timeout(c, bytes(req)).kind(), Verdict::Kind::kConnect) << "its turn: the slot came back";
  close(*h, c, engine::CloseReason::kCompleted);
}

// http1MaxPendingRequests without maxConnections: requests waiting for
// their upstream connection to be made are pending (Envoy's), so beyond
// the limit one is refused 503 UO; once connected, room again.
TEST_F(EgressHandlerTest, PendingRequestsBoundConnectsInProgress) {
  auto h = pooled_cnn("{http: {http1MaxPendingRequests: 1}}", {"203.0.113.20"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection a, b, c;
  Verdict va = first_verdict(*h, a, req);
  ASSERT_EQ(va.kind(), Verdict::Kind::kConnect);
  ASSERT_EQ(h->on_accept(b, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict vb = h->on_downstream_data(b, bytes(req));
  EXPECT_NE(vb.kind(), Verdict::Kind::kConnect) << "a's connect is still pending";
  close(*h, b, engine::CloseReason::kLocalClose);
  EXPECT_NE(log_->lines().find(" 503 UO "), std::string::npos) << log_->lines();
  EXPECT_NE(log_->lines().find("http1MaxPendingRequests 1 reached (requests waiting for a connection)"),
            std::string::npos)
      << log_->lines();
  auto fa = va.take_filter();
  ASSERT_NE(fa, nullptr);
  bring_up(*h, a, *fa, req, va.upstreams()[0]);
  EXPECT_EQ(first_verdict(*h, c, req).kind(), Verdict::Kind::kConnect) << "a is connected: no longer pending";
  close(*h, c, engine::CloseReason::kCompleted);
  close(*h, a, engine::CloseReason::kCompleted);
  EXPECT_EQ(counters_.upstream_overflow.load(), 1u);
}

// A request whose route timeout ran out while its connection was still
// being made waits for no connection any more: its http1MaxPendingRequests
// place is free at once (the next request connects), not only when the
// client's connection closes after the 504.
TEST_F(EgressHandlerTest, ARouteTimeoutWhileConnectingFreesThePendingPlace) {
  const std::string vs = cnn_routes("  - timeout: 0.01s\n    route: [{destination: {host: edition.cnn.com}}]\n");
  auto h = pooled_cnn("{http: {http1MaxPendingRequests: 1}}", {"203.0.113.20"}, vs);
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection a, b;
  Verdict va = first_verdict(*h, a, req);
  ASSERT_EQ(va.kind(), Verdict::Kind::kConnect);
  auto fa = va.take_filter();
  ASSERT_NE(fa, nullptr);
  start(*fa, req);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  FakeOutput late("");
  EXPECT_EQ(fa->on_timer(late), engine::FilterStatus::kClose);
  EXPECT_EQ(late.downstream.rfind("HTTP/1.1 504 Gateway Timeout\r\n", 0), 0u) << late.downstream;
  EXPECT_EQ(first_verdict(*h, b, req).kind(), Verdict::Kind::kConnect) << "a no longer waits for a connection";
  close(*h, b, engine::CloseReason::kCompleted);
  close(*h, a, engine::CloseReason::kFilterClose);
  EXPECT_EQ(counters_.upstream_overflow.load(), 0u);
}

// A TCP connection over maxConnections is closed at once, UO (Envoy's TCP
// proxy does not queue for a connection), in a cluster of resolution NONE
// as well; once the holder closes, the next one connects.
TEST_F(EgressHandlerTest, ATcpConnectionOverMaxConnectionsIsClosedUO) {
  const std::string dr = pool_rule("db.internal", "{tcp: {maxConnections: 1}}");
  load({kRegistryOnly, kCnnServiceEntry, kDb, dr.c_str()});
  with_clusters_ = true;
  auto h = handler("192.0.2.50:5432");
  FakeConnection a, b, c;
  ASSERT_EQ(h->on_accept(a, info_).kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(h->on_accept(b, info_).kind(), Verdict::Kind::kClose);
  close(*h, b, engine::CloseReason::kLocalClose);
  EXPECT_NE(log_->lines().find(" UO "), std::string::npos) << log_->lines();
  EXPECT_NE(log_->lines().find("maxConnections 1 reached"), std::string::npos) << log_->lines();
  EXPECT_EQ(counters_.upstream_overflow.load(), 1u);
  EXPECT_EQ(counters_.upstream_queued.load(), 0u);
  close(*h, a, engine::CloseReason::kCompleted);
  Verdict v = h->on_accept(c, info_);
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.upstreams()[0].to_string(), "192.0.2.50:5432");
  close(*h, c, engine::CloseReason::kCompleted);
}

// connectionPool.tcp.idleTimeout and maxConnectionDuration: a TCP
// connection gets them as its own idle timeout (0s: none) and lifetime
// (Envoy's tcp_proxy idle_timeout, max_downstream_connection_duration),
// logged DT when the lifetime ends it. An HTTP connection keeps the proxy's
// idle timeout and lifetime: the rule's apply to its upstreams.
TEST_F(EgressHandlerTest, TcpIdleTimeoutAndMaxConnectionDurationBoundATcpConnection) {
  const std::string dr = pool_rule("db.internal", "{tcp: {idleTimeout: 0s, maxConnectionDuration: 2s}}");
  load({kRegistryOnly, kCnnServiceEntry, kDb, dr.c_str()});
  auto h = handler("192.0.2.50:5432");
  FakeConnection a;
  Verdict v = h->on_accept(a, info_);
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.idle_timeout(), Verdict::kNoTimeout);
  EXPECT_EQ(v.max_duration(), std::chrono::milliseconds(2000));
  close(*h, a, engine::CloseReason::kMaxDuration);
  EXPECT_NE(log_->lines().find(" DT "), std::string::npos) << log_->lines();

  auto hh = pooled_cnn("{tcp: {idleTimeout: 5s, maxConnectionDuration: 2s}}", {"203.0.113.20"});
  FakeConnection c;
  Verdict hv = first_verdict(*hh, c, "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
  ASSERT_EQ(hv.kind(), Verdict::Kind::kConnect);
  EXPECT_LT(hv.idle_timeout().count(), 0) << "the proxy's own";
  EXPECT_EQ(hv.max_duration().count(), 0);
  EXPECT_EQ(hv.pool_idle_timeout(), std::chrono::milliseconds(5000)) << "tcp.idleTimeout: the pool's too";
  close(*hh, c, engine::CloseReason::kCompleted);
}

// maxConnectionDuration on an HTTP upstream (Envoy's max_connection_duration):
// once that old it carries no further request. A client's next request moves
// to a new upstream connection; an idle client's upstream is let go at its
// deadline (the guard's timer), not parked; a pooled one that old is refused
// by the next connection's guard (the engine then connects anew); a young
// one's pool entry expires at its deadline.
TEST_F(EgressHandlerTest, AnHttpUpstreamPastMaxConnectionDurationCarriesNoFurtherRequest) {
  auto h = pooled_cnn("{tcp: {maxConnectionDuration: 1s}}", {"203.0.113.20"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  FakeConnection busy, idle;
  engine::SocketAddress up;
  auto f = connected(*h, busy, req, &up);
  auto g = connected(*h, idle, req, &up);
  ASSERT_NE(f, nullptr);
  ASSERT_NE(g, nullptr);
  FakeOutput ready("");
  f->on_upstream_ready(ready);
  g->on_upstream_ready(ready);
  // Young: the responses end, the upstreams stay with their clients; the
  // idle one's timer is set for its deadline.
  EXPECT_EQ(respond(*f, ok).first, engine::FilterStatus::kContinue);
  FakeOutput answered(ok);
  EXPECT_EQ(g->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), answered), engine::FilterStatus::kContinue);
  ASSERT_TRUE(answered.timer.has_value()) << "the upstream's deadline";
  EXPECT_GT(answered.timer->count(), 0);
  EXPECT_LE(answered.timer->count(), 1000);
  EXPECT_TRUE(f->upstream_reusable());
  engine::UpstreamStatePtr young = f->release_upstream();
  ASSERT_NE(young, nullptr);
  EXPECT_NE(young->expires_ns(), INT64_MAX) << "the pool drops it at its deadline";
  std::this_thread::sleep_for(std::chrono::milliseconds(1050));
  EXPECT_FALSE(f->upstream_reusable()) << "too old to park";
  // The next request on it moves to a new upstream connection.
  FakeOutput later(req);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(req), later), engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(later.upstream, "") << "not sent on the old upstream";
  // The idle client's upstream is let go at its deadline.
  FakeOutput fired("");
  EXPECT_EQ(g->on_timer(fired), engine::FilterStatus::kNewUpstream);
  EXPECT_FALSE(g->upstream_reusable()) << "closed, not parked";
  EXPECT_EQ(h->on_new_upstream(idle, {}).kind(), Verdict::Kind::kRespond) << "the client's connection goes on";
  // A new connection's guard refuses the old pooled state.
  FakeConnection d;
  Verdict v = first_verdict(*h, d, req);
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  auto n = v.take_filter();
  ASSERT_NE(n, nullptr);
  EXPECT_FALSE(n->adopt_upstream(std::move(young)));
  close(*h, d, engine::CloseReason::kCompleted);
  close(*h, idle, engine::CloseReason::kCompleted);
  close(*h, busy, engine::CloseReason::kCompleted);
}

// A keep-alive client holds no slot between requests: its upstream is let
// go at each response end (Envoy's pool takes the connection back), so a
// request that comes later is admitted at once, and the first client's
// next request is admitted afresh (the pooled upstream serves it again).
TEST_F(EgressHandlerTest, AnIdleKeepAliveClientHoldsNoMaxConnectionsSlot) {
  auto h = pooled_cnn("{tcp: {maxConnections: 1}}", {"203.0.113.20"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection idle, later;
  engine::SocketAddress up;
  auto f = connected(*h, idle, req, &up);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(f->upstream_reusable(), true) << "parked in the pool";
  // A request read before the engine let the upstream go: held for the
  // next decision, never sent to the upstream being let go.
  FakeOutput racing(req);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(req), racing), engine::FilterStatus::kContinue);
  EXPECT_EQ(racing.upstream, "");
  FakeOutput held("");
  f->on_new_upstream(held);
  EXPECT_EQ(held.upstream, req) << "handed back as the connection's pending bytes";
  EXPECT_EQ(h->on_new_upstream(idle, bytes(held.upstream)).kind(), Verdict::Kind::kRespond);
  Verdict v = first_verdict(*h, later, req);
  EXPECT_EQ(v.kind(), Verdict::Kind::kConnect) << "no wait behind the idle client";
  EXPECT_EQ(h->on_downstream_data(idle, bytes(req)).kind(), Verdict::Kind::kNeedMore) << "its next request waits";
  close(*h, later, engine::CloseReason::kCompleted);
  EXPECT_EQ(h->on_detection_timeout(idle, bytes(req)).kind(), Verdict::Kind::kConnect);
  close(*h, idle, engine::CloseReason::kCompleted);
}

// A client that sends FIN while its request waits gives its place up (Envoy
// resets a request whose client went away: DC); one whose slot comes later
// finds no dead entries ahead of it. A DNS answer that expired during the
// wait is asked for again.
TEST_F(EgressHandlerTest, AWaitingRequestGivesItsPlaceUpOnFinAndResolvesAgain) {
  auto h = pooled_cnn("{tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}", {"203.0.113.20"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection holder, gone, next;
  engine::SocketAddress up;
  auto f = connected(*h, holder, req, &up);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(h->on_accept(gone, info_).kind(), Verdict::Kind::kNeedMore);
  ASSERT_EQ(h->on_downstream_data(gone, bytes(req)).kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(clusters_.breaker("outbound|80||edition.cnn.com")->queue_size(), 1u);
  EXPECT_EQ(h->on_downstream_eof(gone, bytes(req)).kind(), Verdict::Kind::kClose);
  EXPECT_EQ(clusters_.breaker("outbound|80||edition.cnn.com")->queue_size(), 0u);
  close(*h, gone, engine::CloseReason::kLocalClose);
  EXPECT_NE(log_->lines().find("\"GET /p HTTP/1.1\" 0 DC downstream_remote_disconnect "), std::string::npos)
      << log_->lines();
  // The queue has room again (http1MaxPendingRequests 1).
  ASSERT_EQ(h->on_accept(next, info_).kind(), Verdict::Kind::kNeedMore);
  ASSERT_EQ(h->on_downstream_data(next, bytes(req)).kind(), Verdict::Kind::kNeedMore);
  dns_.expire("edition.cnn.com");
  const size_t asked = dns_.asked.size();
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(h->on_new_upstream(holder, {}).kind(), Verdict::Kind::kRespond);  // the upstream parked, the slot free
  EXPECT_EQ(h->on_detection_timeout(next, bytes(req)).kind(), Verdict::Kind::kNeedMore) << "waits for DNS now";
  EXPECT_EQ(dns_.asked.size(), asked + 1) << "asked again";
  dns_.answer("edition.cnn.com", "203.0.113.20");
  EXPECT_EQ(h->on_detection_timeout(next, bytes(req)).kind(), Verdict::Kind::kConnect);
  close(*h, next, engine::CloseReason::kCompleted);
  close(*h, holder, engine::CloseReason::kCompleted);
}

// The route timeout runs while a request waits for a slot: past it, the
// client gets Envoy's 504 "upstream request timeout" (UT), and the queue
// is left.
TEST_F(EgressHandlerTest, ARouteTimeoutEndsTheWaitForASlot) {
  const std::string vs = cnn_routes("  - timeout: 0.02s\n    route: [{destination: {host: edition.cnn.com}}]\n");
  auto h = pooled_cnn("{tcp: {maxConnections: 1}}", {"203.0.113.20"}, vs);
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection holder, waiter;
  engine::SocketAddress up;
  auto f = connected(*h, holder, req, &up);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(h->on_accept(waiter, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict w = h->on_downstream_data(waiter, bytes(req));
  ASSERT_EQ(w.kind(), Verdict::Kind::kNeedMore);
  EXPECT_LE(w.detection_timeout().count(), 21) << "polled no later than its deadline";
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  Verdict late = h->on_detection_timeout(waiter, bytes(req));
  ASSERT_EQ(late.kind(), Verdict::Kind::kRespond);
  EXPECT_NE(response_text(late).find("504 Gateway Timeout"), std::string::npos);
  EXPECT_NE(log_->lines().find("\" 504 UT upstream_response_timeout "), std::string::npos) << log_->lines();
  // The waiter left the queue: the slot freed at the holder's response end
  // stays free.
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(h->on_new_upstream(holder, {}).kind(), Verdict::Kind::kRespond);
  EXPECT_EQ(clusters_.breaker("outbound|80||edition.cnn.com")->active(), 0);
  close(*h, waiter, engine::CloseReason::kCompleted);
  close(*h, holder, engine::CloseReason::kCompleted);
}

// http2MaxRequests (Envoy's max_requests, HTTP/1.1 too): requests under way
// to the cluster, first and later ones alike; beyond it, 503 UO at once
// with Envoy's overflow body. A response's end gives its count back.
TEST_F(EgressHandlerTest, Http2MaxRequestsCountsRequestsUnderWay) {
  auto h = pooled_cnn("{http: {http2MaxRequests: 1}}", {"203.0.113.20"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  FakeConnection a;
  engine::SocketAddress up;
  auto f = connected(*h, a, req, &up);
  ASSERT_NE(f, nullptr);
  FakeConnection b;
  ASSERT_EQ(h->on_accept(b, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict refused = h->on_downstream_data(b, bytes(req));
  ASSERT_EQ(refused.kind(), Verdict::Kind::kRespond) << "answered; the connection stays (a complete request)";
  const std::string reply = response_text(refused);
  EXPECT_NE(reply.find("503 Service Unavailable"), std::string::npos) << reply;
  EXPECT_NE(reply.find("reset reason: overflow"), std::string::npos) << reply;
  EXPECT_NE(log_->lines().find("\" 503 UO upstream_reset_before_response_started{overflow} "), std::string::npos)
      << log_->lines();
  EXPECT_NE(log_->lines().find("http2MaxRequests 1 reached"), std::string::npos) << log_->lines();
  EXPECT_EQ(counters_.upstream_overflow.load(), 1u);

  // The response ends: the count is back. A later request on `a` takes it,
  // so `b`'s next request is refused again, until that response ends.
  EXPECT_EQ(respond(*f, ok).first, engine::FilterStatus::kContinue);
  FakeOutput later(req);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(req), later), engine::FilterStatus::kContinue);
  EXPECT_EQ(later.upstream, req) << "forwarded";
  EXPECT_EQ(h->on_downstream_data(b, bytes(req)).kind(), Verdict::Kind::kRespond);
  EXPECT_EQ(counters_.upstream_overflow.load(), 2u);
  EXPECT_EQ(respond(*f, ok).first, engine::FilterStatus::kContinue);
  EXPECT_EQ(h->on_downstream_data(b, bytes(req)).kind(), Verdict::Kind::kConnect) << "free again";
  close(*h, b, engine::CloseReason::kCompleted);
  close(*h, a, engine::CloseReason::kCompleted);
}

// maxRetries (Envoy's max_retries): retries under way in the cluster, from
// the decision to the retried try's response head. Beyond it the response
// that would have been retried stands, flagged UO.
TEST_F(EgressHandlerTest, MaxRetriesBoundsRetriesUnderWay) {
  auto h = pooled_cnn("{http: {maxRetries: 1}}", {"203.0.113.20", "203.0.113.21"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string unavailable = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
  FakeConnection a, b, c;
  engine::SocketAddress up;
  auto fa = connected(*h, a, req, &up);
  auto fb = connected(*h, b, req, &up);
  ASSERT_TRUE(fa && fb);
  // a's 503 is retried (Istio's default retry policy): one retry under way.
  EXPECT_EQ(respond(*fa, unavailable).first, engine::FilterStatus::kNewUpstream);
  // b's is not: the response stands, logged UO.
  auto [st, shown] = respond(*fb, unavailable);
  EXPECT_EQ(st, engine::FilterStatus::kContinue);
  EXPECT_EQ(shown, unavailable);
  EXPECT_EQ(counters_.retry_overflow.load(), 1u);
  EXPECT_NE(log_->lines().find("\"GET /p HTTP/1.1\" 503 UO via_upstream"), std::string::npos) << log_->lines();
  // a's retry gets its response head: no longer under way.
  Verdict again = next_try(*h, a, *fa, req);
  ASSERT_EQ(again.kind(), Verdict::Kind::kConnect);
  auto fa2 = again.take_filter();
  ASSERT_NE(fa2, nullptr);
  bring_up(*h, a, *fa2, req, again.upstreams()[0]);
  // Its head, not all its body: the retry counts no more from here.
  EXPECT_EQ(respond(*fa2, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").first, engine::FilterStatus::kContinue);
  auto fc = connected(*h, c, req, &up);
  ASSERT_NE(fc, nullptr);
  EXPECT_EQ(respond(*fc, unavailable).first, engine::FilterStatus::kNewUpstream) << "retried: the budget is back";
  EXPECT_EQ(counters_.retries.load(), 1u);
  close(*h, a, engine::CloseReason::kCompleted);
  close(*h, b, engine::CloseReason::kCompleted);
  close(*h, c, engine::CloseReason::kCompleted);
}

// Outlier detection counts every response an endpoint gives, as Envoy's
// detector does: two 500s on one kept-alive connection eject the endpoint
// (consecutive5xxErrors 2) while the connection is still open; new
// connections then go to the other one. (Before, only a connection's first
// response was counted, at its close.)
TEST_F(EgressHandlerTest, OutlierDetectionCountsEveryResponseOfAKeptAliveConnection) {
  load({kRegistryOnly, kCnnServiceEntry, kOutlierTwo5xx});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  dns_.answer("edition.cnn.com", "203.0.113.21");
  with_clusters_ = true;
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  engine::SocketAddress bad;
  auto f = connected(*h, c, req, &bad);
  ASSERT_NE(f, nullptr);
  const std::string err = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(respond(*f, err).first, engine::FilterStatus::kContinue);  // 500: not retried by default
  FakeOutput again(req);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(req), again), engine::FilterStatus::kContinue);
  EXPECT_EQ(respond(*f, err).first, engine::FilterStatus::kContinue);
  // `bad` is ejected now: every new connection goes to the other endpoint.
  for (int i = 0; i < 4; ++i) {
    FakeConnection n;
    ASSERT_EQ(h->on_accept(n, info_).kind(), Verdict::Kind::kNeedMore);
    Verdict nv = h->on_downstream_data(n, bytes(req));
    ASSERT_EQ(nv.kind(), Verdict::Kind::kConnect);
    EXPECT_NE(nv.upstreams()[0], bad) << "connection " << i;
    close(*h, n, engine::CloseReason::kLocalClose);
  }
  close(*h, c, engine::CloseReason::kCompleted);
}

// A failed connect counts once for outlier detection (it was counted as a
// local failure and again as a 503 at the close), and a reset before any
// response counts as a 503.
TEST_F(EgressHandlerTest, OutlierDetectionCountsAFailedConnectOnceAndAResetAsA503) {
  load({kRegistryOnly, kCnnServiceEntry, kOutlierTwo5xx});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  dns_.answer("edition.cnn.com", "203.0.113.21");
  with_clusters_ = true;
  auto h = handler("203.0.113.20:80");
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  // The endpoint each new connection is sent to first.
  auto next_first = [&](engine::StreamFilterPtr* filter, FakeConnection& n) {
    EXPECT_EQ(h->on_accept(n, info_).kind(), Verdict::Kind::kNeedMore);
    Verdict v = h->on_downstream_data(n, bytes(req));
    EXPECT_EQ(v.kind(), Verdict::Kind::kConnect);
    if (filter) *filter = v.take_filter();
    return v.upstreams().empty() ? engine::SocketAddress{} : v.upstreams()[0];
  };
  // One failed connect to `bad`: the engine tells the handler, then tries
  // the other endpoint; here the connection just ends with the failure.
  FakeConnection c;
  engine::StreamFilterPtr f;
  const engine::SocketAddress bad = next_first(&f, c);
  h->on_connect_attempt_failed(c, bad, false, /*another_left=*/false);
  FakeOutput failed("");
  f->on_connect_failed(failed, false);
  engine::ConnectionStats st;
  st.reason = engine::CloseReason::kUpstreamConnectFailed;
  st.upstream = bad;
  h->on_close(c, st);
  // One error: not ejected, round robin still reaches it.
  int to_bad = 0;
  for (int i = 0; i < 4; ++i) {
    FakeConnection n;
    if (next_first(nullptr, n) == bad) ++to_bad;
    close(*h, n, engine::CloseReason::kLocalClose);
  }
  EXPECT_GE(to_bad, 1);
  // A reset before the response on `bad`: the second error, ejected.
  FakeConnection r;
  engine::StreamFilterPtr g;
  engine::SocketAddress got = next_first(&g, r);
  for (int i = 0; got != bad && i < 4; ++i) {  // round robin: one of the next goes there
    close(*h, r, engine::CloseReason::kLocalClose);
    r = FakeConnection();
    got = next_first(&g, r);
  }
  ASSERT_EQ(got, bad);
  start(*g, req);
  h->on_upstream_connected(r, bad);
  FakeOutput eof("");
  EXPECT_EQ(g->on_end_stream(engine::Direction::kUpstreamToDownstream, eof), engine::FilterStatus::kClose);
  EXPECT_NE(eof.downstream.find("503"), std::string::npos) << eof.downstream;
  close(*h, r, engine::CloseReason::kFilterClose);
  for (int i = 0; i < 4; ++i) {
    FakeConnection n;
    EXPECT_NE(next_first(nullptr, n), bad) << "connection " << i;
    close(*h, n, engine::CloseReason::kLocalClose);
  }
}

// Pipelined later requests of different routes: each response is judged by
// its own request's retry policy, not by the newest request's.
TEST_F(EgressHandlerTest, APipelinedRequestKeepsItsOwnRetryPolicy) {
  load({kRegistryOnly, kCnnServiceEntry, cnn_routes(R"(
  - match: [{uri: {prefix: /none}}]
    retries: {attempts: 0}
    route: [{destination: {host: edition.cnn.com}}]
  - route: [{destination: {host: edition.cnn.com}}]
)").c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string first = "GET /none/1 HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, first);
  ASSERT_NE(f, nullptr);
  start(*f, first);
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(respond(*f, ok).first, engine::FilterStatus::kContinue);
  // /r (Istio's default policy: a 503 is retriable) then /none/2 (no
  // retries), both outstanding: /r's 503 cannot go again (a request is
  // behind it) and is passed on flagged URX, by /r's own policy.
  const std::string two = "GET /r HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n"
                          "GET /none/2 HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput out(two);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(two), out), engine::FilterStatus::kContinue);
  EXPECT_EQ(respond(*f, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").first,
            engine::FilterStatus::kContinue);
  EXPECT_EQ(respond(*f, ok).first, engine::FilterStatus::kContinue);
  close(*h, c, engine::CloseReason::kCompleted);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET /r HTTP/1.1\" 503 URX via_upstream"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /none/2 HTTP/1.1\" 200 - via_upstream"), std::string::npos) << lines;

  // The same three requests in the connection's first read: decided before
  // the guard starts, each keeps its own policy through on_start.
  FakeConnection c2;
  const std::string three = first + two;
  auto g = decided(*h, c2, three);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(start(*g, three).size(), three.size());
  EXPECT_EQ(respond(*g, ok).first, engine::FilterStatus::kContinue);
  EXPECT_EQ(respond(*g, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").first,
            engine::FilterStatus::kContinue);
  EXPECT_EQ(respond(*g, ok).first, engine::FilterStatus::kContinue);
  close(*h, c2, engine::CloseReason::kCompleted);
  const std::string all = log_->lines();
  EXPECT_EQ(all.find("\"GET /r HTTP/1.1\" 503 - via_upstream"), std::string::npos) << all;
  EXPECT_NE(all.find("\"GET /r HTTP/1.1\" 503 URX via_upstream", lines.size()), std::string::npos) << all;
}

// After a move to another upstream, the engine shows the handler only its
// sniffing window (16 KiB) of what the previous guard held back (up to 1
// MiB): the new guard must take all of it through on_start, or a request
// behind a large body would go upstream unchecked and unlogged.
TEST_F(EgressHandlerTest, ARequestBehindALargeBodyHeldAcrossAMoveIsStillChecked) {
  load({kRegistryOnly, kCnnServiceEntry, kNoPooling});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string first = "GET /slow HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, first);
  ASSERT_NE(f, nullptr);
  start(*f, first);
  // Pipelined behind it: an upload with a 100 KB body, then a request for a
  // host REGISTRY_ONLY refuses.
  const std::string post = "POST /up HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 100000\r\n\r\n" +
                           std::string(100000, 'x');
  const std::string denied = "GET /denied HTTP/1.1\r\nHost: other.example\r\n\r\n";
  const std::string held_bytes = post + denied;
  FakeOutput out(held_bytes);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(held_bytes), out),
            engine::FilterStatus::kContinue);
  EXPECT_TRUE(out.upstream.empty());  // held: the upload goes on a connection of its own
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kNewUpstream);
  FakeOutput held("");
  f->on_new_upstream(held);
  ASSERT_EQ(held.upstream, held_bytes);
  // The handler sees the first 16 KiB, as from the engine.
  Verdict v = h->on_new_upstream(c, bytes(held_bytes.substr(0, 16384)));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  auto f2 = v.take_filter();
  ASSERT_NE(f2, nullptr);
  ASSERT_TRUE(f2->takes_held_bytes());
  FakeOutput all(held_bytes);
  f2->on_start(bytes(held_bytes), all);
  EXPECT_EQ(all.upstream.find("GET /denied"), std::string::npos) << "an unchecked request went upstream";
  EXPECT_EQ(all.upstream.size(), post.size());
  close(*h, c, engine::CloseReason::kCompleted);
}

// The same on a connection's first upstream: a decision taken on a full
// sniffing window (a deferred one reads on meanwhile) may leave more held
// than the guard was shown: the guard takes them all.
TEST_F(EgressHandlerTest, AFullSniffingWindowMakesTheGuardTakeTheHeldBytes) {
  load({kRegistryOnly, kCnnServiceEntry, kNoPooling});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  const std::string head = "POST /up HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 20000\r\n\r\n";
  FakeConnection c;
  auto f = decided(*h, c, head + std::string(16 * 1024 - head.size(), 'x'));
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->takes_held_bytes());
  close(*h, c, engine::CloseReason::kCompleted);
  // A smaller first read: as received, the engine forwards it.
  FakeConnection small;
  auto g = decided(*h, small, head + "abc");
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(g->takes_held_bytes());
  close(*h, small, engine::CloseReason::kCompleted);
}

// VirtualService fault injection, as Envoy's fault filter does it before
// the router: a delay holds the request (first or later on a kept-alive
// connection) then carries it out, flag DI; an abort answers it locally
// with "fault filter abort", flag FI; both: the answer after the delay.
TEST_F(EgressHandlerTest, FaultDelayHoldsARequestAndAbortAnswersIt) {
  const std::string vs = cnn_routes(R"(
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 2s, percentage: {value: 100}}}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /both}}]
    fault:
      delay: {fixedDelay: 250ms, percentage: {value: 100}}
      abort: {httpStatus: 503, percentage: {value: 100}}
    route: [{destination: {host: edition.cnn.com}}]
  - route: [{destination: {host: edition.cnn.com}}]
)");
  load({kRegistryOnly, kCnnServiceEntry, vs.c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");

  // A first request with a delay: held (this fake connection has no waker,
  // so the detection timeout is the timer), then connected.
  FakeConnection c;
  const std::string delayed = "GET /delay HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict held = h->on_downstream_data(c, bytes(delayed));
  ASSERT_EQ(held.kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(held.detection_timeout().count(), 2000);
  EXPECT_EQ(counters_.faults_delayed.load(), 1u);
  Verdict v = h->on_detection_timeout(c, bytes(delayed));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.upstreams()[0].to_string(), "203.0.113.20:80");
  auto f = v.take_filter();
  EXPECT_EQ(start(*f, delayed), delayed);
  h->on_upstream_connected(c, v.upstreams()[0]);
  EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);

  // A later request with a delay on the same kept-alive connection: the
  // guard hands it over, the handler holds it, then the same upstream.
  const std::string later = "GET /delay/2 HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput lo(later);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), lo), engine::FilterStatus::kNewUpstream);
  EXPECT_TRUE(lo.upstream.empty());
  FakeOutput handed("");
  f->on_new_upstream(handed);
  EXPECT_EQ(handed.upstream, later);
  Verdict lh = h->on_new_upstream(c, bytes(later));
  ASSERT_EQ(lh.kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(lh.detection_timeout().count(), 2000);
  Verdict lv = h->on_detection_timeout(c, bytes(later));
  ASSERT_EQ(lv.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(lv.upstreams()[0].to_string(), "203.0.113.20:80");
  auto f2 = lv.take_filter();
  EXPECT_EQ(start(*f2, later), later);
  h->on_upstream_connected(c, lv.upstreams()[0]);
  EXPECT_EQ(respond(*f2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  EXPECT_EQ(counters_.faults_delayed.load(), 2u);
  EXPECT_EQ(counters_.upstream_changed.load(), 0u);

  // Then delay and abort: after 250 ms the local 503, and the connection ends.
  const std::string both = "GET /both HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput bo(both);
  EXPECT_EQ(f2->on_data(engine::Direction::kDownstreamToUpstream, bytes(both), bo), engine::FilterStatus::kNewUpstream);
  FakeOutput bh("");
  f2->on_new_upstream(bh);
  Verdict bv = h->on_new_upstream(c, bytes(both));
  ASSERT_EQ(bv.kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(bv.detection_timeout().count(), 250);
  Verdict reply = h->on_detection_timeout(c, bytes(both));
  ASSERT_EQ(reply.kind(), Verdict::Kind::kClose);
  EXPECT_EQ(text(reply.response()).rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << text(reply.response());
  EXPECT_NE(text(reply.response()).find("\r\n\r\nfault filter abort"), std::string::npos) << text(reply.response());
  close(*h, c, engine::CloseReason::kCompleted);

  // An abort alone answers the first request at once, nothing upstream.
  FakeConnection c2;
  ASSERT_EQ(h->on_accept(c2, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict av = h->on_downstream_data(c2, bytes("GET /abort HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n"));
  ASSERT_EQ(av.kind(), Verdict::Kind::kRespond);  // the connection stays for the next request
  EXPECT_EQ(text(av.response()).rfind("HTTP/1.1 418 ", 0), 0u) << text(av.response());
  // A HEAD's answer has the body's length but not the body (on a kept
  // connection it would be read as the start of the next response), for a
  // first request and a later one alike.
  Verdict hv = h->on_downstream_data(c2, bytes("HEAD /abort HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n"));
  ASSERT_EQ(hv.kind(), Verdict::Kind::kRespond);
  const std::string head_reply = text(hv.response());
  EXPECT_NE(head_reply.find("content-length: 18\r\n"), std::string::npos) << head_reply;
  EXPECT_EQ(head_reply.substr(head_reply.size() - 4), "\r\n\r\n") << head_reply;
  close(*h, c2, engine::CloseReason::kCompleted);
  EXPECT_EQ(counters_.faults_aborted.load(), 3u);
  FakeConnection c3;
  engine::SocketAddress up3;
  auto f3 = connected(*h, c3, "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n", &up3);
  ASSERT_NE(f3, nullptr);
  EXPECT_EQ(respond(*f3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  const std::string later_head = "HEAD /abort HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput ho(later_head);
  EXPECT_EQ(f3->on_data(engine::Direction::kDownstreamToUpstream, bytes(later_head), ho),
            engine::FilterStatus::kContinue);
  EXPECT_NE(ho.downstream.find("content-length: 18\r\n"), std::string::npos) << ho.downstream;
  EXPECT_EQ(ho.downstream.substr(ho.downstream.size() - 4), "\r\n\r\n") << ho.downstream;
  close(*h, c3, engine::CloseReason::kCompleted);
  // A HEAD first, then a GET delayed and aborted (it moves off the upstream
  // for its delay): the GET's answer has its body.
  FakeConnection c4;
  engine::SocketAddress up4;
  auto f4 = connected(*h, c4, "HEAD / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n", &up4);
  ASSERT_NE(f4, nullptr);
  EXPECT_EQ(respond(*f4, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").first, engine::FilterStatus::kContinue);
  const std::string get_both = "GET /both HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput g4(get_both);
  EXPECT_EQ(f4->on_data(engine::Direction::kDownstreamToUpstream, bytes(get_both), g4),
            engine::FilterStatus::kNewUpstream);
  FakeOutput h4("");
  f4->on_new_upstream(h4);
  ASSERT_EQ(h->on_new_upstream(c4, bytes(get_both)).kind(), Verdict::Kind::kNeedMore);  // the delay
  Verdict r4 = h->on_detection_timeout(c4, bytes(get_both));
  ASSERT_EQ(r4.kind(), Verdict::Kind::kClose);
  EXPECT_NE(text(r4.response()).find("\r\n\r\nfault filter abort"), std::string::npos) << text(r4.response());
  close(*h, c4, engine::CloseReason::kCompleted);

  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET /delay HTTP/1.1\" 200 DI via_upstream"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /delay/2 HTTP/1.1\" 200 DI via_upstream"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /both HTTP/1.1\" 503 DI,FI fault_filter_abort"), std::string::npos) << lines;
  EXPECT_NE(lines.find("\"GET /abort HTTP/1.1\" 418 FI fault_filter_abort"), std::string::npos) << lines;
}

// The mirror's cluster in the mirror tests.
constexpr const char* kShadowServiceEntry = R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: shadow}
spec:
  hosts: [shadow.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.40}]
)";

engine::ConnectionHandlerPtr EgressHandlerTest::shadowed_cnn(const std::string& vs) {
  load({kRegistryOnly, kCnnServiceEntry, kShadowServiceEntry, vs.c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  return handler("203.0.113.20:80");
}

// Everything a mirrored copy's socket holds (its writer is not closed: the
// reads end at EAGAIN).
std::string read_copy(int fd) {
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) got.append(buf, static_cast<size_t>(n));
  return got;
}

// VirtualService mirror (Envoy's shadow): a copy of each request, Host
// "<host>-shadow", goes over a socketpair to a connection the worker
// spawns; that one is forwarded to the mirror's cluster and its response
// dropped; only the original is logged.
TEST_F(EgressHandlerTest, MirrorSendsACopyWithAShadowHostAndDropsItsResponse) {
  const std::string vs = cnn_routes(R"(
  - match: [{uri: {prefix: /never}}]
    mirror: {host: shadow.example}
    mirrorPercentage: {value: 0}
    route: [{destination: {host: edition.cnn.com}}]
  - mirror: {host: shadow.example}
    headers: {request: {set: {x-route: a}}}
    route: [{destination: {host: edition.cnn.com}}]
)");
  auto h = shadowed_cnn(vs);

  FakeConnection c;
  const std::string post = "POST /m HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 4\r\n\r\nbody";
  auto f = decided(*h, c, post);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(c.spawned.size(), 1u);
  auto [fd, tag] = c.spawned[0];
  EXPECT_NE(tag, 0u);
  const std::string copy = read_copy(fd);
  // As the original goes upstream (the route's header operations), Host
  // "-shadow".
  EXPECT_EQ(copy, "POST /m HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\nContent-Length: 4\r\nx-route: a\r\n\r\nbody");

  // The worker hands the spawned socket back: it goes to the mirror's
  // cluster, its response goes nowhere.
  FakeConnection m;
  engine::AcceptInfo spawned_info(fd, tag);
  ASSERT_EQ(h->on_accept(m, spawned_info).kind(), Verdict::Kind::kNeedMore);
  Verdict mv = h->on_downstream_data(m, bytes(copy));
  ASSERT_EQ(mv.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(mv.upstreams()[0].to_string(), "203.0.113.40:80");
  auto mf = mv.take_filter();
  ASSERT_NE(mf, nullptr);
  EXPECT_EQ(start(*mf, copy), copy);
  h->on_upstream_connected(m, mv.upstreams()[0]);
  auto [mst, mshown] = respond(*mf, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nshadow");
  // One request, its response dropped: done, the upstream parked for reuse.
  EXPECT_EQ(mst, engine::FilterStatus::kEndDownstream);
  EXPECT_TRUE(mf->upstream_reusable());
  EXPECT_EQ(mshown, "");
  close(*h, m, engine::CloseReason::kCompleted);
  ::close(fd);

  // The original: answered as usual.
  start(*f, post);
  h->on_upstream_connected(c, engine::SocketAddress());
  EXPECT_EQ(respond(*f, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").second,
            "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  // A later request on the same connection is copied too; one at 0 % is not.
  const std::string later = "GET /x HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput lo(later);
  f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), lo);
  ASSERT_EQ(c.spawned.size(), 2u);
  EXPECT_EQ(read_copy(c.spawned[1].first), "GET /x HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\nx-route: a\r\n\r\n");
  respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  const std::string never = "GET /never HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput no(never);
  f->on_data(engine::Direction::kDownstreamToUpstream, bytes(never), no);
  EXPECT_EQ(c.spawned.size(), 2u);
  close(*h, c, engine::CloseReason::kCompleted);
  for (size_t i = 1; i < c.spawned.size(); ++i) ::close(c.spawned[i].first);

  // A body still on its way is streamed to the copy as it is forwarded
  // (Envoy streams it to the shadow): the head at once, the body's bytes
  // from the held ones on, the copy's descriptor closed without a FIN at
  // its end.
  FakeConnection p;
  const std::string big = "POST /big HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 12\r\n\r\npart";
  auto pf = decided(*h, p, big);
  ASSERT_EQ(p.spawned.size(), 1u);
  const int pfd = p.spawned[0].first;
  EXPECT_EQ(read_copy(pfd),
            "POST /big HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\nContent-Length: 12\r\nx-route: a\r\n\r\n");
  ASSERT_TRUE(pf->takes_held_bytes());
  start(*pf, big);
  EXPECT_EQ(read_copy(pfd), "part");
  FakeOutput po("-of-");
  pf->on_data(engine::Direction::kDownstreamToUpstream, bytes("-of-"), po);
  FakeOutput po2("body");
  pf->on_data(engine::Direction::kDownstreamToUpstream, bytes("body"), po2);
  EXPECT_EQ(po.upstream + po2.upstream, "-of-body");  // the original, as ever
  EXPECT_EQ(read_copy(pfd), "-of-body");
  // The copy's own connection: its upstream answers 413 before the body is
  // all there; the copy ends once the body has gone (not at the idle
  // timeout: its writer never sends a FIN).
  FakeConnection pm;
  engine::AcceptInfo pinfo(pfd, p.spawned[0].second);
  ASSERT_EQ(h->on_accept(pm, pinfo).kind(), Verdict::Kind::kNeedMore);
  const std::string copy_head =
      "POST /big HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\nContent-Length: 12\r\nx-route: a\r\n\r\n";
  Verdict pv = h->on_downstream_data(pm, bytes(copy_head + "part"));
  ASSERT_EQ(pv.kind(), Verdict::Kind::kConnect);
  auto pmf = pv.take_filter();
  start(*pmf, copy_head + "part");
  h->on_upstream_connected(pm, pv.upstreams()[0]);
  EXPECT_EQ(respond(*pmf, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n").first,
            engine::FilterStatus::kContinue);
  FakeOutput pmo("-of-body");
  EXPECT_EQ(pmf->on_data(engine::Direction::kDownstreamToUpstream, bytes("-of-body"), pmo),
            engine::FilterStatus::kEndDownstream);
  EXPECT_EQ(pmo.upstream, "-of-body");
  close(*h, pm, engine::CloseReason::kCompleted);
  h->on_upstream_connected(p, engine::SocketAddress());
  respond(*pf, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  // A later request's body too, chunked; the client goes away in the middle
  // of it: the copy is cut short (shut down), not left waiting.
  const std::string chunked = "POST /up HTTP/1.1\r\nHost: edition.cnn.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
  FakeOutput co(chunked);
  pf->on_data(engine::Direction::kDownstreamToUpstream, bytes(chunked), co);
  ASSERT_EQ(p.spawned.size(), 2u);
  const int cfd = p.spawned[1].first;
  EXPECT_EQ(read_copy(cfd),
            "POST /up HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\nTransfer-Encoding: chunked\r\nx-route: a\r\n\r\n"
            "5\r\nhel");
  close(*h, p, engine::CloseReason::kDownstreamReset);
  pf.reset();  // the engine frees the filter after the connection
  char c1;
  EXPECT_EQ(read(cfd, &c1, 1), 0);  // EOF: the copy's request ends short
  EXPECT_EQ(counters_.mirror_cut.load(), 1u);
  ::close(pfd);
  ::close(cfd);

  // A copy that falls behind by more than its socket holds (nobody reads it
  // here) is cut short; the original goes on whole.
  FakeConnection q;
  const std::string huge_head = "PUT /huge HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 16777216\r\n\r\n";
  auto qf = decided(*h, q, huge_head);
  ASSERT_EQ(q.spawned.size(), 1u);
  start(*qf, huge_head);
  const std::string chunk(1 << 20, 'z');
  size_t forwarded = 0;
  for (int i = 0; i < 16; ++i) {
    FakeOutput qo(chunk);
    qf->on_data(engine::Direction::kDownstreamToUpstream, bytes(chunk), qo);
    forwarded += qo.upstream.size();
  }
  EXPECT_EQ(forwarded, 16u << 20);
  EXPECT_EQ(counters_.mirror_cut.load(), 2u);
  std::string copied = read_copy(q.spawned[0].first);
  EXPECT_LT(copied.size(), 16u << 20);
  EXPECT_EQ(read(q.spawned[0].first, &c1, 1), 0);  // then EOF
  close(*h, q, engine::CloseReason::kCompleted);
  ::close(q.spawned[0].first);
  EXPECT_EQ(counters_.mirrored.load(), 5u);
  EXPECT_EQ(counters_.mirror_skipped.load(), 0u);

  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"POST /m HTTP/1.1\" 201 -"), std::string::npos) << lines;
  EXPECT_EQ(lines.find("-shadow"), std::string::npos) << lines;
  EXPECT_EQ(lines.find("shadow.example"), std::string::npos) << lines;
}

// VirtualService mirrors[] (Istio 1.18+): a copy to each chosen mirror, in
// order; a streamed body goes to every copy as it is forwarded, and one
// that falls behind is cut short while the others go on.
TEST_F(EgressHandlerTest, MirrorsSendACopyToEachAndStreamTheBodyToAll) {
  const std::string vs = cnn_routes(R"(
  - mirrors:
    - destination: {host: shadow.example}
    - destination: {host: edition.cnn.com}
    - destination: {host: shadow.example}
      percentage: {value: 0}
    route: [{destination: {host: edition.cnn.com}}]
)");
  auto h = shadowed_cnn(vs);

  FakeConnection c;
  const std::string get = "GET /g HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, get);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(c.spawned.size(), 2u) << "the 0 % one is not copied";
  const std::string shadow_get = "GET /g HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\n\r\n";
  EXPECT_EQ(read_copy(c.spawned[0].first), shadow_get);
  EXPECT_EQ(read_copy(c.spawned[1].first), shadow_get);
  // Each copy goes to its own mirror's cluster.
  const char* clusters[] = {"203.0.113.40:80", "203.0.113.20:80"};
  for (size_t i = 0; i < 2; ++i) {
    FakeConnection m;
    engine::AcceptInfo info(c.spawned[i].first, c.spawned[i].second);
    ASSERT_EQ(h->on_accept(m, info).kind(), Verdict::Kind::kNeedMore);
    Verdict mv = h->on_downstream_data(m, bytes(shadow_get));
    ASSERT_EQ(mv.kind(), Verdict::Kind::kConnect);
    EXPECT_EQ(mv.upstreams()[0].to_string(), clusters[i]);
    close(*h, m, engine::CloseReason::kCompleted);
  }
  close(*h, c, engine::CloseReason::kCompleted);
  for (const auto& [fd, tag] : c.spawned) ::close(fd);

  // A body on its way goes to both copies as it is forwarded. One copy
  // that nobody reads falls behind and is cut; the other, drained as it
  // goes, gets the whole body.
  FakeConnection p;
  const std::string head = "PUT /up HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 16777216\r\n\r\n";
  auto pf = decided(*h, p, head);
  ASSERT_EQ(p.spawned.size(), 2u);
  const int drained = p.spawned[0].first, stuck = p.spawned[1].first;
  read_copy(drained);
  start(*pf, head);
  // Chunks well within a socket buffer of the default size
  // (net.core.wmem_default), so the drained copy never falls behind.
  const std::string chunk(64 << 10, 'z');
  size_t got = 0;
  for (int i = 0; i < 256; ++i) {
    FakeOutput po(chunk);
    pf->on_data(engine::Direction::kDownstreamToUpstream, bytes(chunk), po);
    EXPECT_EQ(po.upstream.size(), chunk.size()) << "the original goes on whole";
    got += read_copy(drained).size();
  }
  EXPECT_EQ(got, 16u << 20) << "the copy that kept up got all of it";
  EXPECT_EQ(counters_.mirror_cut.load(), 1u) << "the one that fell behind was cut";
  char ch;
  EXPECT_LT(read_copy(stuck).size(), 16u << 20);
  EXPECT_EQ(read(stuck, &ch, 1), 0) << "then EOF: its request ends short";
  close(*h, p, engine::CloseReason::kCompleted);
  ::close(drained);
  ::close(stuck);
  EXPECT_EQ(counters_.mirrored.load(), 4u);
}

// A delayed request is copied when its delay ends, as Envoy's router (which
// mirrors) comes after the fault filter: first requests and later ones.
TEST_F(EgressHandlerTest, ADelayedRequestIsMirroredWhenItsDelayEnds) {
  const std::string vs = cnn_routes(R"(
  - fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    mirror: {host: shadow.example}
    route: [{destination: {host: edition.cnn.com}}]
)");
  auto h = shadowed_cnn(vs);

  FakeConnection c;
  const std::string first = "POST /a HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 2\r\n\r\nhi";
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  ASSERT_EQ(h->on_downstream_data(c, bytes(first)).kind(), Verdict::Kind::kNeedMore);
  EXPECT_TRUE(c.spawned.empty());  // held: not copied yet
  Verdict v = h->on_detection_timeout(c, bytes(first));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  ASSERT_EQ(c.spawned.size(), 1u);
  EXPECT_EQ(read_copy(c.spawned[0].first),
            "POST /a HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\nContent-Length: 2\r\n\r\nhi");
  auto f = v.take_filter();
  start(*f, first);
  h->on_upstream_connected(c, v.upstreams()[0]);
  respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");

  // A later one: handed over, held, copied at the end of its delay.
  const std::string later = "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput lo(later);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), lo), engine::FilterStatus::kNewUpstream);
  FakeOutput handed("");
  f->on_new_upstream(handed);
  ASSERT_EQ(h->on_new_upstream(c, bytes(later)).kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(c.spawned.size(), 1u);
  ASSERT_EQ(h->on_detection_timeout(c, bytes(later)).kind(), Verdict::Kind::kConnect);
  ASSERT_EQ(c.spawned.size(), 2u);
  EXPECT_EQ(read_copy(c.spawned[1].first), "GET /b HTTP/1.1\r\nHost: edition.cnn.com-shadow\r\n\r\n");
  close(*h, c, engine::CloseReason::kCompleted);
  for (const auto& [fd, tag] : c.spawned) ::close(fd);
  EXPECT_EQ(counters_.mirrored.load(), 2u);
  EXPECT_EQ(counters_.faults_delayed.load(), 2u);
}

// A request the client pipelines while a retriable response is being
// dropped waits, unread, and goes after the retried request (deciding it
// then would let it overtake, or lose it).
TEST_F(EgressHandlerTest, ARequestSentDuringARetryFollowsTheRetriedOne) {
  load({kRegistryOnly, kCnnServiceEntry});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  dns_.answer("edition.cnn.com", "203.0.113.21");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = dropping_503(*h, c, req);
  const std::string later = "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput lo(later);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), lo), engine::FilterStatus::kContinue);
  EXPECT_TRUE(lo.upstream.empty());  // not forwarded ahead of the retried request
  EXPECT_EQ(respond(*f, "sy").first, engine::FilterStatus::kNewUpstream);
  // Handed to the next upstream: the retried request, then the later one.
  Verdict again = next_try(*h, c, *f, req + later);
  ASSERT_EQ(again.kind(), Verdict::Kind::kConnect);
  auto f2 = again.take_filter();
  EXPECT_EQ(start(*f2, req + later), req + later);
  EXPECT_EQ(counters_.retries.load(), 1u);
  close(*h, c, engine::CloseReason::kCompleted);
}

// The route timeout runs out while a retriable 503 is being dropped for a
// retry: nothing of it reached the client, which gets Envoy's 504 (not a
// reset), logged UT.
TEST_F(EgressHandlerTest, ARouteTimeoutDuringADroppedResponseIsAnswered504) {
  load({kRegistryOnly, kCnnServiceEntry, cnn_routes(R"(
  - timeout: 0.001s
    route: [{destination: {host: edition.cnn.com}}]
)").c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = dropping_503(*h, c, req);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the 1 ms route timeout
  FakeOutput none("");
  EXPECT_EQ(f->on_timer(none), engine::FilterStatus::kClose);
  EXPECT_EQ(none.downstream.rfind("HTTP/1.1 504 Gateway Timeout", 0), 0u) << none.downstream;
  close(*h, c, engine::CloseReason::kFilterClose);
  EXPECT_NE(log_->lines().find("\"GET /a HTTP/1.1\" 504 UT upstream_response_timeout"), std::string::npos)
      << log_->lines();
}

// A try whose retriable response is being dropped for a retry already
// decided is not cut by its per-try timeout (Envoy resets that try when it
// decides the retry: its timer is gone); the retry goes on.
TEST_F(EgressHandlerTest, APerTryTimeoutDuringADroppedResponseLetsTheRetryGoOn) {
  load({kRegistryOnly, kCnnServiceEntry, cnn_routes(R"(
  - retries: {attempts: 2, perTryTimeout: 0.001s, retryOn: "503"}
    route: [{destination: {host: edition.cnn.com}}]
)").c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = dropping_503(*h, c, req);
  ASSERT_NE(f, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the 1 ms try
  FakeOutput t("");
  EXPECT_EQ(f->on_timer(t), engine::FilterStatus::kContinue);
  EXPECT_EQ(t.downstream, "");
  EXPECT_EQ(respond(*f, "sy").first, engine::FilterStatus::kNewUpstream);
  close(*h, c, engine::CloseReason::kCompleted);
}

// maxRequestsPerConnection 2 reached: the spent upstream is let go after
// its last response (Envoy closes it), not held until the client's next
// request or close; the client's connection goes on undecided.
TEST_F(EgressHandlerTest, ASpentUpstreamIsLetGoAfterItsLastResponse) {
  load({kRegistryOnly, kCnnServiceEntry, kMaxRequestsTwo});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  engine::SocketAddress up;
  auto f = connected(*h, c, "GET /1 HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n", &up);
  ASSERT_NE(f, nullptr);
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(respond(*f, resp).first, engine::FilterStatus::kContinue);
  const std::string second = "GET /2 HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeOutput o(second);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(second), o), engine::FilterStatus::kContinue);
  EXPECT_EQ(respond(*f, resp).first, engine::FilterStatus::kNewUpstream);
  EXPECT_FALSE(f->upstream_reusable());  // 2 of 2: closed, not parked
  FakeOutput held("");
  f->on_new_upstream(held);
  EXPECT_EQ(held.upstream, "");
  Verdict rv = h->on_new_upstream(c, {});
  ASSERT_EQ(rv.kind(), Verdict::Kind::kRespond);
  EXPECT_TRUE(rv.response().empty());
  // The next request: a first one again, on a new upstream connection, with
  // its own start time and bytes in its access log line.
  const std::string third = "GET /3 HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  Verdict v3 = h->on_downstream_data(c, bytes(third));
  ASSERT_EQ(v3.kind(), Verdict::Kind::kConnect);
  // /1 and /2 are as long as /3; only /3's bytes count.
  expect_reset_line(*h, c, 2 * second.size() + third.size(), 2 * resp.size(), "GET /3 HTTP/1.1", third.size());
}

// A 503 UF decided after the guard was built (here: TLS origination without
// the proxy's TLS contexts), with a later request pipelined in the first
// read: the answer keeps the connection (Envoy's local reply to a complete
// keep-alive request), the later request is decided on its own, and each
// request is logged and counted once.
TEST_F(EgressHandlerTest, A503UFWithAPipelinedRequestAnswersEachOnce) {
  load({kRegistryOnly, kCnnServiceEntry, R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  trafficPolicy: {tls: {mode: SIMPLE}}
)"});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  const std::string a = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string b = "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string two = a + b;
  Verdict v = h->on_downstream_data(c, bytes(two));
  ASSERT_EQ(v.kind(), Verdict::Kind::kRespond);
  EXPECT_EQ(v.consumed(), a.size());
  EXPECT_EQ(text(v.response()).rfind("HTTP/1.1 503 ", 0), 0u) << text(v.response());
  EXPECT_EQ(text(v.response()).find("connection: close\r\n"), std::string::npos) << text(v.response());
  // The engine asks again with what is left: /b, answered the same way.
  Verdict vb = h->on_downstream_data(c, bytes(b));
  ASSERT_EQ(vb.kind(), Verdict::Kind::kRespond);
  EXPECT_EQ(vb.consumed(), b.size());
  close(*h, c, engine::CloseReason::kCompleted);
  const std::string lines = log_->lines();
  for (const char* path : {"/a", "/b"}) {
    const std::string want = std::string("\"GET ") + path + " HTTP/1.1\" 503 UF";
    const size_t at = lines.find(want);
    ASSERT_NE(at, std::string::npos) << lines;
    EXPECT_EQ(lines.find(std::string("\"GET ") + path + " ", at + 1), std::string::npos) << lines;
  }
  EXPECT_EQ(counters_.http_requests.load(), 2u);
}

// No endpoint accepts the connection: Envoy's 503 "upstream connect error
// or disconnect/reset before headers" reaches the client (not an empty
// reply), logged with flag UF.
TEST_F(EgressHandlerTest, AnUpstreamConnectFailureIsAnswered503UF) {
  load({kRegistryOnly, kCnnServiceEntry});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /x HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  FakeOutput out("");
  EXPECT_EQ(f->on_connect_failed(out, /*timed_out=*/false), engine::FilterStatus::kClose);
  EXPECT_EQ(out.downstream.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << out.downstream;
  EXPECT_NE(out.downstream.find("\r\n\r\nupstream connect error or disconnect/reset before headers. reset reason: "
                                "connection failure"),
            std::string::npos)
      << out.downstream;
  close(*h, c, engine::CloseReason::kUpstreamConnectFailed);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET /x HTTP/1.1\" 503 UF "), std::string::npos) << lines;
}

// Istio's default retry policy retries connect-failure twice: of the three
// attempts the engine makes, each failure but the last is a retry, after
// Envoy's jittered back-off (25 ms base: the first within 25 ms, the second
// within 50); the last failure is answered as a retried one, flagged URX.
TEST_F(EgressHandlerTest, ConnectFailureRetriesBackOffAndEndFlaggedURX) {
  load({kRegistryOnly, kCnnServiceEntry});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  const std::string req = "GET /x HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  std::chrono::milliseconds waited{0};
  for (int i = 0; i < 8; ++i) {
    FakeConnection c;
    Verdict v = first_verdict(*h, c, req);
    ASSERT_EQ(v.upstreams().size(), 3u);
    auto f = v.take_filter();
    start(*f, req);
    for (int retry = 0; retry < 2; ++retry) {
      const std::chrono::milliseconds wait = h->on_connect_attempt_failed(c, v.upstreams()[retry], false, true);
      EXPECT_GE(wait.count(), 0);
      EXPECT_LT(wait.count(), 25 << retry);
      waited += wait;
    }
    EXPECT_EQ(h->on_connect_attempt_failed(c, v.upstreams()[2], false, false).count(), 0);
    FakeOutput out("");
    EXPECT_EQ(f->on_connect_failed(out, /*timed_out=*/false), engine::FilterStatus::kClose);
    EXPECT_NE(out.downstream.find("before headers. retried and the latest reset reason: connection failure"),
              std::string::npos)
        << out.downstream;
    close(*h, c, engine::CloseReason::kUpstreamConnectFailed);
  }
  EXPECT_GT(waited.count(), 0) << "jittered, not always at once";
  EXPECT_EQ(counters_.retries.load(), 16u);
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET /x HTTP/1.1\" 503 UF,URX "), std::string::npos) << lines;
}

// A response retry whose connect fails goes on under maxRetries 1: one
// count per request (the connect-failure retry replaces the response
// retry's), given back with the retried request's response.
TEST_F(EgressHandlerTest, AResponseRetrysConnectFailureTakesNoSecondRetryCount) {
  auto h = pooled_cnn("{http: {maxRetries: 1}}", {"203.0.113.20", "203.0.113.21"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection a, b;
  engine::SocketAddress up;
  auto fa = connected(*h, a, req, &up);
  ASSERT_NE(fa, nullptr);
  EXPECT_EQ(respond(*fa, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").first,
            engine::FilterStatus::kNewUpstream);
  Verdict again = next_try(*h, a, *fa, req);
  ASSERT_GE(again.upstreams().size(), 2u);
  auto fa2 = again.take_filter();
  start(*fa2, req);
  EXPECT_GE(h->on_connect_attempt_failed(a, again.upstreams()[0], false, true).count(), 0);
  EXPECT_EQ(counters_.retry_overflow.load(), 0u);
  h->on_upstream_connected(a, again.upstreams()[1]);
  FakeOutput ready("");
  fa2->on_upstream_ready(ready);
  EXPECT_EQ(respond(*fa2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  // The count came back: another request's connect failure is retried.
  Verdict vb = first_verdict(*h, b, req);
  auto fb = vb.take_filter();
  start(*fb, req);
  EXPECT_GE(h->on_connect_attempt_failed(b, vb.upstreams()[0], false, true).count(), 0);
  EXPECT_EQ(counters_.retry_overflow.load(), 0u);
  for (FakeConnection* x : {&a, &b}) close(*h, *x, engine::CloseReason::kCompleted);
}

// A request's tries are counted once, connect failures and responses alike
// (Envoy's retries_remaining_): with Istio's default policy (two retries), a
// request whose first connect failed has one retry left for its 503, whose
// connect walk then has that one try only; a second 503 stands, URX, as
// does that try's failed connect (UF,URX).
TEST_F(EgressHandlerTest, ConnectFailureRetriesAndResponseRetriesShareTheTries) {
  auto h = cnn_on_two();
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string unavailable = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
  for (const bool last_connect_fails : {false, true}) {
    FakeConnection c;
    Verdict v = first_verdict(*h, c, req);
    ASSERT_EQ(v.upstreams().size(), 3u);
    auto f = v.take_filter();
    start(*f, req);
    EXPECT_GE(h->on_connect_attempt_failed(c, v.upstreams()[0], false, true).count(), 0);
    h->on_upstream_connected(c, v.upstreams()[1]);
    FakeOutput ready("");
    f->on_upstream_ready(ready);
    EXPECT_EQ(respond(*f, unavailable).first, engine::FilterStatus::kNewUpstream);  // the second retry
    Verdict again = next_try(*h, c, *f, req);
    EXPECT_EQ(again.upstreams().size(), 1u) << "no connect-failure retry left";
    auto f2 = again.take_filter();
    ASSERT_NE(f2, nullptr);
    if (last_connect_fails) {
      start(*f2, req);
      EXPECT_EQ(h->on_connect_attempt_failed(c, again.upstreams()[0], false, false).count(), 0);
      FakeOutput failed("");
      f2->on_connect_failed(failed, false);
      close(*h, c, engine::CloseReason::kUpstreamConnectFailed);
      EXPECT_NE(log_->lines().find("\"GET /p HTTP/1.1\" 503 UF,URX "), std::string::npos) << log_->lines();
      continue;
    }
    bring_up(*h, c, *f2, req, again.upstreams()[0]);
    auto [st, shown] = respond(*f2, unavailable);
    EXPECT_EQ(st, engine::FilterStatus::kContinue);
    EXPECT_EQ(shown, unavailable);
    EXPECT_NE(log_->lines().find("\"GET /p HTTP/1.1\" 503 URX via_upstream"), std::string::npos) << log_->lines();
    EXPECT_EQ(counters_.retries.load(), 2u);
    close(*h, c, engine::CloseReason::kCompleted);
  }
}

// The route timeout spans the connect attempts too: one that passed while
// the connect failed ends the request with Envoy's 504 UT instead of a
// retry; the back-off before an attempt never runs past it.
TEST_F(EgressHandlerTest, TheRouteTimeoutEndsConnectFailureRetries) {
  const std::string vs = cnn_routes("  - timeout: 0.05s\n    route: [{destination: {host: edition.cnn.com}}]\n");
  auto h = cnn_on_two(vs);
  const std::string req = "GET /t HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection c;
  Verdict v = first_verdict(*h, c, req);
  ASSERT_EQ(v.upstreams().size(), 3u);
  auto f = v.take_filter();
  start(*f, req);
  EXPECT_LE(h->on_connect_attempt_failed(c, v.upstreams()[0], false, true).count(), 55);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_EQ(h->on_connect_attempt_failed(c, v.upstreams()[1], false, true), engine::ConnectionHandler::kStopConnecting);
  FakeOutput out("");
  EXPECT_EQ(f->on_connect_failed(out, false), engine::FilterStatus::kClose);
  EXPECT_EQ(out.downstream.rfind("HTTP/1.1 504 Gateway Timeout\r\n", 0), 0u) << out.downstream;
  EXPECT_NE(out.downstream.find("upstream request timeout"), std::string::npos) << out.downstream;
  close(*h, c, engine::CloseReason::kUpstreamConnectFailed);
  EXPECT_NE(log_->lines().find("\"GET /t HTTP/1.1\" 504 UT "), std::string::npos) << log_->lines();
  EXPECT_EQ(counters_.retries.load(), 1u);
}

// Outlier detection hears every failed attempt of a connect walk, not only
// the last: one request whose walk fails twice on an endpoint
// (consecutive5xxErrors 2) ejects it; later connections go elsewhere.
TEST_F(EgressHandlerTest, EveryFailedConnectAttemptCountsForOutlierDetection) {
  load({kRegistryOnly, kCnnServiceEntry, kOutlierTwo5xx});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  dns_.answer("edition.cnn.com", "203.0.113.21");
  with_clusters_ = true;
  auto h = handler("203.0.113.20:80");
  const std::string req = "GET /o HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection c;
  Verdict v = first_verdict(*h, c, req);
  ASSERT_EQ(v.upstreams().size(), 3u);
  const engine::SocketAddress bad = v.upstreams()[0];
  ASSERT_EQ(v.upstreams()[2], bad);  // two endpoints, three attempts
  auto f = v.take_filter();
  start(*f, req);
  for (size_t i = 0; i < 3; ++i) h->on_connect_attempt_failed(c, v.upstreams()[i], false, i < 2);
  FakeOutput failed("");
  f->on_connect_failed(failed, false);
  close(*h, c, engine::CloseReason::kUpstreamConnectFailed);
  for (int i = 0; i < 4; ++i) {
    FakeConnection n;
    Verdict nv = first_verdict(*h, n, req);
    ASSERT_FALSE(nv.upstreams().empty());
    EXPECT_NE(nv.upstreams()[0], bad) << "connection " << i;
    close(*h, n, engine::CloseReason::kLocalClose);
  }
}

// A failed upstream TLS handshake is a connection failure to Envoy: the
// guard (asked by the TLS filter around it) retries it while Istio's default
// policy has tries left, replaying the request it kept; the last one stands.
// A route whose retries are off does not retry it.
TEST_F(EgressHandlerTest, AFailedUpstreamTlsHandshakeIsRetriedAsAConnectFailure) {
  auto h = cnn_on_two();
  const std::string req = "GET /h HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection c;
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  start(*f, req);
  FakeOutput failed("");
  EXPECT_EQ(f->on_upstream_setup_failed(failed), engine::FilterStatus::kNewUpstream);
  Verdict second = next_try(*h, c, *f, req);  // the request replayed
  auto f2 = second.take_filter();
  start(*f2, req);
  EXPECT_EQ(f2->on_upstream_setup_failed(failed), engine::FilterStatus::kNewUpstream);
  Verdict third = next_try(*h, c, *f2, req);
  auto f3 = third.take_filter();
  start(*f3, req);
  EXPECT_EQ(f3->on_upstream_setup_failed(failed), engine::FilterStatus::kContinue) << "no try left";
  EXPECT_EQ(counters_.retries.load(), 2u);
  close(*h, c, engine::CloseReason::kFilterClose);

  // A refused connect then a failed handshake are two of the three tries:
  // one retry left, then the failure stands (retried: URX).
  FakeConnection r;
  Verdict v = first_verdict(*h, r, req);
  auto g1 = v.take_filter();
  start(*g1, req);
  EXPECT_GE(h->on_connect_attempt_failed(r, v.upstreams()[0], false, true).count(), 0);
  EXPECT_EQ(g1->on_upstream_setup_failed(failed), engine::FilterStatus::kNewUpstream);
  Verdict again = next_try(*h, r, *g1, req);
  EXPECT_EQ(again.upstreams().size(), 1u);
  auto g2 = again.take_filter();
  start(*g2, req);
  EXPECT_EQ(g2->on_upstream_setup_failed(failed), engine::FilterStatus::kContinue) << "three tries made";
  close(*h, r, engine::CloseReason::kFilterClose);

  auto off = cnn_on_two(cnn_routes("  - retries: {attempts: 0}\n    route: [{destination: {host: edition.cnn.com}}]\n"));
  FakeConnection d;
  auto g = decided(*off, d, req);
  start(*g, req);
  EXPECT_EQ(g->on_upstream_setup_failed(failed), engine::FilterStatus::kContinue);
  close(*off, d, engine::CloseReason::kFilterClose);

  // connect-failure alone (no response is retried): the request is kept for
  // the retry all the same while its upstream is being set up.
  auto only = cnn_on_two(
      cnn_routes("  - retries: {attempts: 1, retryOn: connect-failure}\n    route: [{destination: {host: edition.cnn.com}}]\n"));
  FakeConnection e;
  auto k = decided(*only, e, req);
  start(*k, req);
  EXPECT_EQ(k->on_upstream_setup_failed(failed), engine::FilterStatus::kNewUpstream);
  next_try(*only, e, *k, req);  // the request replayed
  close(*only, e, engine::CloseReason::kFilterClose);
}

// A connect-failure retry counts against the cluster's maxRetries until its
// request's response, as a response retry does; over it the engine stops
// and the failure stands, flagged UO.
TEST_F(EgressHandlerTest, MaxRetriesBoundsConnectFailureRetries) {
  auto h = pooled_cnn("{http: {maxRetries: 1}}", {"203.0.113.20", "203.0.113.21"});
  const std::string req = "GET /p HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  FakeConnection a, b, c;
  Verdict va = first_verdict(*h, a, req);
  Verdict vb = first_verdict(*h, b, req);
  auto fa = va.take_filter();
  auto fb = vb.take_filter();
  ASSERT_TRUE(fa && fb);
  start(*fa, req);
  start(*fb, req);
  // a's first attempt fails: retried (the one retry under way); its second
  // too: its own earlier retry does not count against it.
  EXPECT_GE(h->on_connect_attempt_failed(a, va.upstreams()[0], false, true).count(), 0);
  EXPECT_GE(h->on_connect_attempt_failed(a, va.upstreams()[1], false, true).count(), 0);
  // b's: over maxRetries, the attempts stop.
  EXPECT_EQ(h->on_connect_attempt_failed(b, vb.upstreams()[0], false, true), engine::ConnectionHandler::kStopConnecting);
  EXPECT_EQ(counters_.retry_overflow.load(), 1u);
  FakeOutput failed("");
  fb->on_connect_failed(failed, false);
  close(*h, b, engine::CloseReason::kUpstreamConnectFailed);
  EXPECT_NE(log_->lines().find("\"GET /p HTTP/1.1\" 503 UF,UO "), std::string::npos) << log_->lines();
  // a's retry connects: its request carries the count to its response.
  h->on_upstream_connected(a, va.upstreams()[1]);
  FakeOutput ready("");
  fa->on_upstream_ready(ready);
  Verdict vc = first_verdict(*h, c, req);
  auto fc = vc.take_filter();
  start(*fc, req);
  EXPECT_EQ(h->on_connect_attempt_failed(c, vc.upstreams()[0], false, true), engine::ConnectionHandler::kStopConnecting)
      << "a's request is still under way";
  EXPECT_EQ(respond(*fa, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kContinue);
  FakeConnection d;
  Verdict vd = first_verdict(*h, d, req);
  auto fd = vd.take_filter();
  start(*fd, req);
  EXPECT_GE(h->on_connect_attempt_failed(d, vd.upstreams()[0], false, true).count(), 0) << "the budget is back";
  for (FakeConnection* x : {&a, &c, &d}) close(*h, *x, engine::CloseReason::kCompleted);
}

TEST_F(EgressHandlerTest, RetriesEndWithTheLastTriesResponseFlaggedURX) {
  const std::string vs = cnn_routes(R"(
  - match: [{uri: {prefix: /none}}]
    retries: {attempts: 0}
    route: [{destination: {host: edition.cnn.com}}]
  - retries: {attempts: 1, retryOn: "gateway-error,reset"}
    route: [{destination: {host: edition.cnn.com}}]
)");
  load({kRegistryOnly, kCnnServiceEntry, vs.c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  {
    // 502 (gateway-error) retried once; the second try's upstream closes
    // before answering (reset): no tries left, Envoy's 503 UC with URX.
    FakeConnection c;
    const std::string req = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    start(*f, req);
    EXPECT_EQ(respond(*f, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").first,
              engine::FilterStatus::kNewUpstream);
    Verdict v = next_try(*h, c, *f, req);
    ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
    EXPECT_EQ(v.upstreams()[0].to_string(), "203.0.113.20:80");  // the only endpoint: the same again
    auto f2 = v.take_filter();
    start(*f2, req);
    FakeOutput none("");
    EXPECT_EQ(f2->on_end_stream(engine::Direction::kUpstreamToDownstream, none), engine::FilterStatus::kClose);
    EXPECT_EQ(none.downstream.rfind("HTTP/1.1 503 Service Unavailable", 0), 0u) << none.downstream;
    close(*h, c, engine::CloseReason::kFilterClose);
    EXPECT_NE(log_->lines().find("\"GET /a HTTP/1.1\" 503 UC,URX upstream_reset_before_response_started"),
              std::string::npos)
        << log_->lines();
  }
  {
    // The first try's reset is retried (retryOn reset), its 502 then
    // passed on with URX.
    FakeConnection c;
    const std::string req = "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    start(*f, req);
    FakeOutput none("");
    EXPECT_EQ(f->on_end_stream(engine::Direction::kUpstreamToDownstream, none), engine::FilterStatus::kNewUpstream);
    EXPECT_EQ(none.downstream, "");
    Verdict v = next_try(*h, c, *f, req);
    ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
    auto f2 = v.take_filter();
    start(*f2, req);
    auto [st, shown] = respond(*f2, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(st, engine::FilterStatus::kContinue);
    EXPECT_EQ(shown.rfind("HTTP/1.1 502", 0), 0u);
    close(*h, c, engine::CloseReason::kCompleted);
    EXPECT_NE(log_->lines().find("\"GET /b HTTP/1.1\" 502 URX via_upstream"), std::string::npos) << log_->lines();
  }
  {
    // retries.attempts 0: a 502 goes to the client as it is.
    FakeConnection c;
    const std::string req = "GET /none HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    start(*f, req);
    auto [st, shown] = respond(*f, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(st, engine::FilterStatus::kContinue);
    EXPECT_EQ(shown.rfind("HTTP/1.1 502", 0), 0u);
    close(*h, c, engine::CloseReason::kCompleted);
  }
  {
    // A body longer than the guard keeps for a retry: not retried.
    FakeConnection c;
    const std::string body(HttpRequestGuard::kMaxReplayBytes + 1, 'x');
    const std::string head =
        "PUT /big HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    auto f = decided(*h, c, head);
    start(*f, head);
    FakeOutput o(body);
    EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(body), o), engine::FilterStatus::kContinue);
    auto [st, shown] = respond(*f, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(st, engine::FilterStatus::kContinue);
    EXPECT_EQ(shown.rfind("HTTP/1.1 502", 0), 0u);
    close(*h, c, engine::CloseReason::kCompleted);
  }
  EXPECT_EQ(counters_.retries.load(), 2u);
}

// Requests pipelined behind the first one in the connection's first read
// are decided one by one as the guard forwards them (on_start), never sent
// unchecked: one for the same upstream goes; one for a host REGISTRY_ONLY
// refuses is answered 502 after the first one's response, and nothing of it
// goes upstream; an incomplete one waits until it is complete.
TEST_F(EgressHandlerTest, PipelinedRequestsInTheFirstReadAreEachChecked) {
  load({kRegistryOnly, kCnnServiceEntry, kDb});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  const std::string ok = "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string evil = "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n";
  const std::string partial = "GET / HTTP/1.1\r\nHost: edition.c";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  struct Case {
    std::string later;
    std::string upstream;  // what on_start sends
  } cases[] = {{ok, ok + ok}, {evil, ok}, {partial, ok}};
  for (const Case& k : cases) {
    auto h = handler("203.0.113.10:80");
    FakeConnection conn;
    ASSERT_EQ(h->on_accept(conn, info_).kind(), Verdict::Kind::kNeedMore);
    const std::string first = ok + k.later;
    Verdict v = h->on_downstream_data(conn, bytes(first));
    ASSERT_EQ(v.kind(), Verdict::Kind::kConnect) << k.later;
    EXPECT_TRUE(v.response().empty());
    auto f = v.take_filter();
    ASSERT_TRUE(f->takes_held_bytes());
    FakeOutput o(first);
    EXPECT_EQ(f->on_start(bytes(first), o), engine::FilterStatus::kContinue) << k.later;
    EXPECT_EQ(o.upstream, k.upstream) << k.later;
    EXPECT_TRUE(o.downstream.empty()) << k.later;  // nothing ahead of the first response
    FakeOutput r(resp);
    const engine::FilterStatus st = f->on_data(engine::Direction::kUpstreamToDownstream, bytes(resp), r);
    if (k.later == evil) {
      // The 502 follows the first response; the connection goes on (the
      // upstream let go, the client's next request decided afresh).
      EXPECT_EQ(st, engine::FilterStatus::kNewUpstream);
      EXPECT_EQ(r.all.rfind(resp, 0), 0u) << r.all;
      EXPECT_EQ(r.all.find("HTTP/1.1 502 Bad Gateway\r\n"), resp.size()) << r.all;
      EXPECT_EQ(r.all.find("connection: close"), std::string::npos) << r.all;
    } else {
      EXPECT_EQ(st, engine::FilterStatus::kContinue) << k.later;
      EXPECT_EQ(r.all, resp);
    }
    close(*h, conn, engine::CloseReason::kLocalClose);
  }
  const std::string lines = log_->lines();
  EXPECT_NE(lines.find("\"GET / HTTP/1.1\" 502 - direct_response"), std::string::npos) << lines;
}

// A first read that holds a `Connection: close` request and requests after
// it: only that request goes upstream, and nothing after it is decided,
// answered or logged (Envoy reads no request after it), pooled or not (the
// engine would otherwise send an unpooled first read as it is).
TEST_F(EgressHandlerTest, NothingAfterAClosingRequestInTheFirstReadIsForwarded) {
  const std::string last = "GET /last HTTP/1.1\r\nHost: edition.cnn.com\r\nConnection: close\r\n\r\n";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  for (bool pooled : {true, false}) {
    if (pooled) load({kRegistryOnly, kCnnServiceEntry});
    else load({kRegistryOnly, kCnnServiceEntry, kNoPooling});
    dns_.answer("edition.cnn.com", "203.0.113.10");
    for (const char* host : {"edition.cnn.com", "evil.example"}) {
      auto h = handler("203.0.113.10:80");
      FakeConnection conn;
      const std::string first = last + "GET /after HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
      auto f = decided(*h, conn, first);
      ASSERT_NE(f, nullptr);
      const std::string sent = start(*f, first);
      EXPECT_EQ(sent.find("/after"), std::string::npos) << sent;
      FakeOutput r(resp);
      f->on_data(engine::Direction::kUpstreamToDownstream, bytes(resp), r);
      EXPECT_EQ(r.all.find("HTTP/1.1", 1), std::string::npos) << r.all;  // one response only
      close(*h, conn, engine::CloseReason::kCompleted);
    }
  }
  EXPECT_EQ(log_->lines().find("/after"), std::string::npos) << log_->lines();
  EXPECT_EQ(counters_.http_requests.load(), 4u);
}

// A malformed request pipelined behind one whose response is due: its 400
// follows that response (it is not sent ahead of it).
TEST_F(EgressHandlerTest, APipelinedMalformedRequestIsAnsweredAfterTheResponseBeforeIt) {
  load({kRegistryOnly, kCnnServiceEntry});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  FakeConnection conn;
  const std::string ok = "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, conn, ok);
  ASSERT_NE(f, nullptr);
  start(*f, ok);
  const std::string bad = "GET / HTTP/1.1\r\nHost edition.cnn.com\r\n\r\n";
  FakeOutput in(bad);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(bad), in), engine::FilterStatus::kContinue);
  EXPECT_TRUE(in.all.empty()) << in.all;
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  FakeOutput r(resp);
  EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(resp), r), engine::FilterStatus::kClose);
  EXPECT_EQ(r.all.rfind(resp, 0), 0u) << r.all;
  EXPECT_EQ(r.all.find("HTTP/1.1 400 Bad Request\r\n"), resp.size()) << r.all;
  close(*h, conn, engine::CloseReason::kCompleted);
}

// The proxy drains (Envoy's drain of an HTTP/1 connection): a client idle
// between requests is ended at once; with a request under way, its response
// says "connection: close" and ends the connection, and what the client
// pipelines meanwhile is not forwarded; a head arriving after the drain
// began becomes the last request.
TEST_F(EgressHandlerTest, ADrainClosesEachKeepAliveConnectionAtAResponseBoundary) {
  const std::string ok(kOk2);
  {
    engine::ConnectionHandlerPtr h;
    FakeConnection c;
    engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/true);
    ASSERT_NE(f, nullptr);
    FakeOutput d("");
    EXPECT_EQ(f->on_drain(d), engine::FilterStatus::kEndDownstream);
    EXPECT_TRUE(d.all.empty());
    close(*h, c, engine::CloseReason::kCompleted);
  }
  {
    engine::ConnectionHandlerPtr h;
    FakeConnection c;
    engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/false);
    ASSERT_NE(f, nullptr);
    FakeOutput d("");
    EXPECT_EQ(f->on_drain(d), engine::FilterStatus::kContinue);
    const std::string next = "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    FakeOutput in(next);
    EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(next), in), engine::FilterStatus::kContinue);
    EXPECT_TRUE(in.upstream.empty()) << in.upstream;  // not forwarded
    FakeOutput r(ok);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), r), engine::FilterStatus::kEndDownstream);
    EXPECT_NE(r.all.find("connection: close\r\n"), std::string::npos) << r.all;
    EXPECT_EQ(r.all.substr(r.all.size() - 6), "\r\n\r\nok") << r.all;
    close(*h, c, engine::CloseReason::kCompleted);
  }
  {
    // Unpooled (the response head is relayed as received otherwise).
    load({kRegistryOnly, kCnnServiceEntry, kNoPooling});
    dns_.answer("edition.cnn.com", "203.0.113.10");
    auto h = handler("203.0.113.10:80");
    FakeConnection c;
    const std::string req = "GET /u HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    ASSERT_NE(f, nullptr);
    start(*f, req);
    FakeOutput d("");
    EXPECT_EQ(f->on_drain(d), engine::FilterStatus::kContinue);
    FakeOutput r(ok);
    EXPECT_NE(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), r), engine::FilterStatus::kContinue);
    EXPECT_NE(r.all.find("connection: close\r\n"), std::string::npos) << r.all;
    close(*h, c, engine::CloseReason::kCompleted);
  }
  // A head on its way when the drain began: forwarded as the last one, or
  // answered locally, closing and saying so.
  for (const char* host : {"edition.cnn.com", "evil.example"}) {
    engine::ConnectionHandlerPtr h;
    FakeConnection c;
    engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/true);
    ASSERT_NE(f, nullptr);
    const std::string part1 = "GET /c HTTP/1.1\r\nHost: ";
    const std::string part2 = std::string(host) + "\r\n\r\n";
    FakeOutput in1(part1);
    EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(part1), in1), engine::FilterStatus::kContinue);
    FakeOutput d("");
    EXPECT_EQ(f->on_drain(d), engine::FilterStatus::kContinue);
    FakeOutput in2(part2);
    const engine::FilterStatus st = f->on_data(engine::Direction::kDownstreamToUpstream, bytes(part2), in2);
    if (std::string_view(host) == "evil.example") {
      EXPECT_EQ(st, engine::FilterStatus::kClose);
      EXPECT_NE(in2.downstream.find("connection: close\r\n"), std::string::npos) << in2.downstream;
    } else {
      EXPECT_EQ(st, engine::FilterStatus::kContinue);
      EXPECT_EQ(in2.all, part1 + part2);
      FakeOutput r(ok);
      EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok), r), engine::FilterStatus::kEndDownstream);
      EXPECT_NE(r.all.find("connection: close\r\n"), std::string::npos) << r.all;
    }
    close(*h, c, engine::CloseReason::kCompleted);
  }
}

// Draining, an upload answered before its body ended (its response gone
// without "connection: close", the drain told before or after it) ends the
// connection with the body, rather than leave it idle until the deadline.
TEST_F(EgressHandlerTest, ADrainEndsAnUploadAnsweredEarlyWithItsBody) {
  for (bool drain_first : {true, false}) {
    engine::ConnectionHandlerPtr h;
    FakeConnection c;
    engine::StreamFilterPtr f = cnn_keepalive(h, c, /*answered=*/true);
    ASSERT_NE(f, nullptr);
    const std::string head = "POST /up HTTP/1.1\r\nHost: edition.cnn.com\r\nContent-Length: 10\r\n\r\n01234";
    FakeOutput in(head);
    EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(head), in), engine::FilterStatus::kContinue);
    FakeOutput d("");
    if (drain_first) {
      EXPECT_EQ(f->on_drain(d), engine::FilterStatus::kContinue);
    }
    const std::string early = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
    FakeOutput r(early);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(early), r), engine::FilterStatus::kContinue);
    if (!drain_first) {
      EXPECT_EQ(f->on_drain(d), engine::FilterStatus::kContinue);
    }
    const std::string rest = "56789";
    FakeOutput in2(rest);
    EXPECT_NE(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(rest), in2), engine::FilterStatus::kContinue)
        << drain_first;
    EXPECT_EQ(in2.upstream, rest);
    close(*h, c, engine::CloseReason::kCompleted);
  }
}

// A local answer to a first request while the proxy drains says
// "connection: close" (the engine ends the connection after it).
TEST_F(EgressHandlerTest, ALocalAnswerWhileDrainingClosesTheConnection) {
  load({kRegistryOnly, kCnnServiceEntry});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  c.drain = true;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict v = h->on_downstream_data(c, bytes("GET / HTTP/1.1\r\nHost: unknown.example.org\r\n\r\n"));
  ASSERT_EQ(v.kind(), Verdict::Kind::kClose);
  EXPECT_EQ(text(v.response()).rfind("HTTP/1.1 502 Bad Gateway\r\n", 0), 0u) << text(v.response());
  EXPECT_NE(text(v.response()).find("connection: close\r\n"), std::string::npos) << text(v.response());
  close(*h, c, engine::CloseReason::kLocalClose);
}

// A response head held back while its request could still be retried,
// then relayed as it comes once it cannot (the client started another
// request): the client gets the head's bytes in order.
TEST_F(EgressHandlerTest, AHeldBackResponseHeadIsRelayedInOrder) {
  load({kRegistryOnly, kCnnServiceEntry, kNoPooling});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  const std::string req = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  FakeOutput started(req);
  start_ready(*f, req, started);
  std::string shown;
  auto piece = [&](const std::string& p) {
    FakeOutput o(p);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(p), o), engine::FilterStatus::kContinue);
    shown += o.all;
  };
  piece("HTTP/1.1 200");  // held: a retriable status may follow
  const std::string later = "GET /b HTTP/1.1\r\nHo";
  FakeOutput in(later);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), in), engine::FilterStatus::kContinue);
  piece(" OK\r\nContent-Len");
  piece("gth: 2\r\n\r\nok");
  EXPECT_EQ(shown, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  close(*h, c, engine::CloseReason::kCompleted);
}

// The per-request check, as a property: random sequences of pipelined
// requests (GETs, bodies framed by Content-Length or chunked, some for a
// host REGISTRY_ONLY refuses, some closing), cut into random reads, run
// through the handler and its guard as the engine would (the upstream
// answering each request it gets; a move to another upstream ends the
// run), pooled or not: no request for the refused host ever
// reaches the upstream, and the client never gets more answers than it
// asked for.
TEST_F(EgressHandlerTest, NoRequestForAnUndeclaredHostReachesTheUpstreamWhateverTheReads) {
  std::mt19937 rng(20261127);
  auto pick = [&rng](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  const std::string ok_response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  const std::regex host_line("\r\nHost: ([^\r]*)\r\n");
  for (int run = 0; run < 400; ++run) {
    // Pooled, and without pooling (maxRequestsPerConnection 1: the engine
    // would send a first read as it is unless the guard takes it).
    if (run % 2 == 0) load({kRegistryOnly, kCnnServiceEntry});
    else load({kRegistryOnly, kCnnServiceEntry, kNoPooling});
    dns_.answer("edition.cnn.com", "203.0.113.10");
    std::string stream;
    std::string expected;  // the status each request should get, in order
    const uint32_t n = 1 + pick(5);
    uint32_t last = n;  // the first request that says `Connection: close`
    for (uint32_t i = 0; i < n; ++i) {
      const std::string host = pick(3) == 0 ? "evil.example" : "edition.cnn.com";
      expected += host == "evil.example" ? "502 " : "200 ";
      const std::string body(pick(4) == 0 ? 0 : pick(40), 'b');
      std::string req;
      switch (pick(3)) {
        case 0: req = "GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: " + host + "\r\n"; break;
        case 1:
          req = "POST /" + std::to_string(i) + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n";
          break;
        default:
          req = "POST /" + std::to_string(i) + " HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\n";
          break;
      }
      if (pick(8) == 0) {
        req += "Connection: close\r\n";
        last = std::min(last, i);
      }
      req += "\r\n";
      if (req.rfind("POST", 0) == 0 && req.find("chunked") != std::string::npos) {
        char size[16];
        snprintf(size, sizeof(size), "%zx", body.size());
        req += body.empty() ? "0\r\n\r\n" : std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n";
      } else if (req.rfind("POST", 0) == 0) {
        req += body;
      }
      stream += req;
    }
    std::vector<std::string> reads;
    for (size_t at = 0; at < stream.size();) {
      const size_t len = std::min<size_t>(stream.size() - at, 1 + pick(pick(2) ? 8 : 200));
      reads.push_back(stream.substr(at, len));
      at += len;
    }
    auto h = handler("203.0.113.10:80");
    FakeConnection c;
    ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
    std::string up, down, pending;
    engine::StreamFilterPtr f;
    bool ended = false;
    size_t next = 0;
    // The handler, until it connects (local answers keep the connection:
    // the engine asks again with what is left).
    while (!f && !ended && next < reads.size()) {
      pending += reads[next++];
      Verdict v = h->on_downstream_data(c, bytes(pending));
      while (v.kind() == Verdict::Kind::kRespond) {
        down += text(v.response());
        pending.erase(0, v.consumed());
        if (pending.empty()) break;
        v = h->on_downstream_data(c, bytes(pending));
      }
      if (v.kind() == Verdict::Kind::kConnect) {
        f = v.take_filter();
        ASSERT_NE(f, nullptr);
        if (f->takes_held_bytes()) {
          FakeOutput o(pending);
          ended = f->on_start(bytes(pending), o) != engine::FilterStatus::kContinue;
          up += o.upstream;
          down += o.downstream;
        } else {
          up += pending;
        }
        FakeOutput ready("");
        f->on_upstream_ready(ready);
      } else if (v.kind() == Verdict::Kind::kClose) {
        down += text(v.response());
        ended = true;
      }
    }
    // The guard: the rest of the reads, the upstream answering each
    // request head it gets.
    size_t answered = 0;
    auto answer_new = [&] {
      size_t got = 0;
      for (size_t at = up.find(" HTTP/1.1\r\n"); at != std::string::npos; at = up.find(" HTTP/1.1\r\n", at + 1)) ++got;
      while (!ended && answered < got) {
        FakeOutput o(ok_response);
        const engine::FilterStatus st = f->on_data(engine::Direction::kUpstreamToDownstream, bytes(ok_response), o);
        down += o.all;
        ++answered;
        if (st != engine::FilterStatus::kContinue) ended = true;
      }
    };
    while (f && !ended && next < reads.size()) {
      FakeOutput o(reads[next]);
      const engine::FilterStatus st = f->on_data(engine::Direction::kDownstreamToUpstream, bytes(reads[next]), o);
      ++next;
      up += o.upstream;
      down += o.downstream;
      if (st != engine::FilterStatus::kContinue) {
        ended = true;  // the engine stops reading
        break;
      }
      if (pick(2) == 0) answer_new();  // else responses pile up behind later requests
    }
    if (f) answer_new();
    for (std::sregex_iterator it(up.begin(), up.end(), host_line), end; it != end; ++it) {
      ASSERT_EQ((*it)[1].str(), "edition.cnn.com") << "run " << run << ", upstream got:\n" << up;
    }
    // Nothing after a `Connection: close` request is forwarded.
    for (uint32_t j = last + 1; j < n; ++j) {
      ASSERT_EQ(up.find(" /" + std::to_string(j) + " HTTP/1.1"), std::string::npos) << "run " << run << ":\n" << up;
    }
    // Answers in the requests' order (a prefix: the connection may end
    // before the last ones, e.g. after a `Connection: close`).
    std::string statuses;
    for (size_t at = down.find("HTTP/1.1 "); at != std::string::npos; at = down.find("HTTP/1.1 ", at + 1)) {
      statuses += down.substr(at + 9, 4);
    }
    EXPECT_EQ(expected.rfind(statuses, 0), 0u) << "run " << run << ": " << statuses << "vs " << expected << "\n"
                                               << stream << "\n---\n" << down;
    close(*h, c, engine::CloseReason::kCompleted);
  }
}

// An unpooled guard (a TLS-terminating gateway's: its upstream serves one
// client connection) keeps maxRequestsPerConnection too: a request
// pipelined past the limit moves to a new upstream connection; without
// one, the spent upstream is let go after its last response.
TEST_F(EgressHandlerTest, AnUnpooledGuardMovesOnAtMaxRequestsPerConnection) {
  auto info = std::make_shared<ConnectionInfo>();
  info->counters = &counters_;
  info->log = log_.get();
  info->http = true;
  int decided = 0;
  info->check_later = [&decided](const sniff::HttpRequestHead&, AccessLogEntry&) {
    ++decided;
    LaterRequest r;
    r.kind = LaterRequest::Kind::kForward;
    return r;
  };
  const std::string req = "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  for (bool pipelined : {true, false}) {
    info->next_upstream = ConnectionInfo::NextUpstream::kNone;
    HttpRequestGuard g(info, bytes(req), /*pooled=*/false);
    g.set_max_requests_per_connection(2);
    ASSERT_FALSE(g.takes_held_bytes());  // the engine sends the first request as read
    auto respond = [&](engine::FilterStatus want) {
      FakeOutput r(resp);
      EXPECT_EQ(g.on_data(engine::Direction::kUpstreamToDownstream, bytes(resp), r), want) << pipelined;
      EXPECT_EQ(r.all, resp);
    };
    respond(engine::FilterStatus::kContinue);
    FakeOutput second(req);
    EXPECT_EQ(g.on_data(engine::Direction::kDownstreamToUpstream, bytes(req), second), engine::FilterStatus::kContinue);
    EXPECT_EQ(second.upstream, req);  // the upstream connection's second
    if (pipelined) {
      FakeOutput third(req);
      EXPECT_EQ(g.on_data(engine::Direction::kDownstreamToUpstream, bytes(req), third), engine::FilterStatus::kContinue);
      EXPECT_TRUE(third.upstream.empty());  // held for the next upstream
    }
    respond(engine::FilterStatus::kNewUpstream);
    FakeOutput held("");
    g.on_new_upstream(held);
    EXPECT_EQ(held.upstream, pipelined ? req : "");
    EXPECT_EQ(info->next_upstream,
              pipelined ? ConnectionInfo::NextUpstream::kSwitch : ConnectionInfo::NextUpstream::kRelease);
  }
  EXPECT_EQ(decided, 3);
}

TEST_F(EgressHandlerTest, UpgradeSwitchesToOpaque) {
  load({kAllowAny});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  Verdict v = h->on_downstream_data(
      c, bytes("GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  auto f = v.take_filter();
  // The upgrade request keeps what makes it one.
  EXPECT_EQ(start(*f, "GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n");
  EXPECT_EQ(respond(*f, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nxyz").second,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\nxyz");
  EXPECT_FALSE(f->upstream_reusable());  // a tunnel now
  std::string frames = "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n";  // websocket payload, not a request
  FakeOutput out(frames);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(frames), out), engine::FilterStatus::kContinue);
  EXPECT_EQ(out.upstream, frames);
  close(*h, c, engine::CloseReason::kCompleted);
}

TEST_F(EgressHandlerTest, AConnectionKeepsTheSnapshotItStartedWith) {
  load({kAllowAny});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  ASSERT_EQ(h->on_accept(c, info_).kind(), Verdict::Kind::kNeedMore);
  load({kRegistryOnly});  // switched while the connection is sniffing
  EXPECT_EQ(h->on_downstream_data(c, bytes("GET / HTTP/1.1\r\nHost: x.example\r\n\r\n")).kind(),
            Verdict::Kind::kConnect);
  close(*h, c, engine::CloseReason::kCompleted);
  FakeConnection c2;
  ASSERT_EQ(h->on_accept(c2, info_).kind(), Verdict::Kind::kNeedMore);
  EXPECT_EQ(h->on_downstream_data(c2, bytes("GET / HTTP/1.1\r\nHost: x.example\r\n\r\n")).kind(),
            Verdict::Kind::kClose);
  close(*h, c2, engine::CloseReason::kLocalClose);
}


// Envoy's HTTP/1 connection pool: the client's "Connection: close" ends its
// own connection only; the upstream one stays for the next client.
TEST_F(EgressHandlerTest, PooledConnectionCloseEndsOnlyTheDownstream) {
  load({kRegistryOnly, kCnnServiceEntry});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  const std::string req = "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\nConnection: close\r\nUser-Agent: wrk\r\n\r\n";
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(start(*f, req), "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\nUser-Agent: wrk\r\n\r\n");
  EXPECT_FALSE(f->upstream_reusable());  // the response is outstanding
  // Split anywhere: the head is rebuilt once complete, the body relayed.
  auto [st1, out1] = respond(*f, "HTTP/1.1 200 OK\r\nContent-Le");
  EXPECT_EQ(st1, engine::FilterStatus::kContinue);
  EXPECT_EQ(out1, "");
  auto [st2, out2] = respond(*f, "ngth: 5\r\nConnection: keep-alive\r\n\r\nhel");
  EXPECT_EQ(st2, engine::FilterStatus::kContinue);
  EXPECT_EQ(out2, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nconnection: close\r\n\r\nhel");
  auto [st3, out3] = respond(*f, "lo");
  EXPECT_EQ(st3, engine::FilterStatus::kEndDownstream);
  EXPECT_EQ(out3, "lo");
  EXPECT_TRUE(f->upstream_reusable());
  close(*h, c, engine::CloseReason::kCompleted);
  EXPECT_NE(log_->lines().find("\"GET / HTTP/1.1\" 200"), std::string::npos) << log_->lines();
}

TEST_F(EgressHandlerTest, PooledPipelinedResponsesAreFramedOneByOne) {
  load({kAllowAny});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  const std::string reqs =
      "HEAD /a HTTP/1.1\r\nHost: a.example\r\n\r\nGET /b HTTP/1.1\r\nHost: a.example\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n";
  auto f = decided(*h, c, reqs);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(start(*f, reqs),
            "HEAD /a HTTP/1.1\r\nHost: a.example\r\n\r\nGET /b HTTP/1.1\r\nHost: a.example\r\n\r\n"
            "GET /c HTTP/1.1\r\nHost: a.example\r\n\r\n");
  // HEAD: a Content-Length but no body; then chunked; then 100 Continue
  // before the last one. Byte by byte: the framing must not care.
  const std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
  std::string seen;
  engine::FilterStatus last = engine::FilterStatus::kContinue;
  for (size_t i = 0; i < resp.size(); ++i) {
    ASSERT_EQ(last, engine::FilterStatus::kContinue) << "ended early at byte " << i;
    auto [st, out] = respond(*f, resp.substr(i, 1));
    last = st;
    seen += out;
  }
  EXPECT_EQ(last, engine::FilterStatus::kEndDownstream);
  EXPECT_EQ(seen,
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nconnection: close\r\n\r\nno");
  EXPECT_TRUE(f->upstream_reusable());
  close(*h, c, engine::CloseReason::kCompleted);
}

TEST_F(EgressHandlerTest, PooledUpstreamThatClosesIsNotReused) {
  load({kAllowAny});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  const std::string req = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
  auto f = decided(*h, c, req);
  start(*f, req);
  // The upstream will close: the client is told so, the connection is not pooled.
  auto [st, out] = respond(*f, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(st, engine::FilterStatus::kContinue);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nconnection: close\r\n\r\n");
  EXPECT_FALSE(f->upstream_reusable());
  // A body delimited by the close: not reusable either.
  FakeConnection c2;
  auto f2 = decided(*h, c2, req);
  start(*f2, req);
  EXPECT_EQ(respond(*f2, "HTTP/1.1 200 OK\r\n\r\nuntil close").second, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil close");
  EXPECT_FALSE(f2->upstream_reusable());
  // Garbage from the upstream: 502 to the client.
  FakeConnection c3;
  auto f3 = decided(*h, c3, req);
  start(*f3, req);
  auto [st3, out3] = respond(*f3, "SSH-2.0-OpenSSH\r\n");
  EXPECT_EQ(st3, engine::FilterStatus::kClose);
  EXPECT_EQ(out3.rfind("HTTP/1.1 502 Bad Gateway", 0), 0u);
  close(*h, c, engine::CloseReason::kCompleted);
  close(*h, c2, engine::CloseReason::kCompleted);
  close(*h, c3, engine::CloseReason::kFilterClose);
}

TEST_F(EgressHandlerTest, PooledClientFinBetweenRequestsKeepsTheUpstream) {
  load({kAllowAny});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  const std::string req = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
  auto f = decided(*h, c, req);
  start(*f, req);
  FakeOutput none("");
  // FIN with the response still to come: forwarded, and the upstream is spent.
  FakeConnection c2;
  auto f2 = decided(*h, c2, req);
  start(*f2, req);
  EXPECT_EQ(f2->on_end_stream(engine::Direction::kDownstreamToUpstream, none), engine::FilterStatus::kContinue);
  EXPECT_FALSE(f2->upstream_reusable());
  // FIN after the response: the downstream ends, the upstream is kept.
  EXPECT_EQ(respond(*f, "HTTP/1.1 204 No Content\r\n\r\n").first, engine::FilterStatus::kContinue);
  EXPECT_EQ(f->on_end_stream(engine::Direction::kDownstreamToUpstream, none), engine::FilterStatus::kEndDownstream);
  EXPECT_TRUE(f->upstream_reusable());
  // HTTP/1.0 goes unchanged and its connection is not shared.
  FakeConnection c3;
  const std::string old = "GET / HTTP/1.0\r\nHost: a.example\r\n\r\n";
  auto f3 = decided(*h, c3, old);
  EXPECT_EQ(start(*f3, old), old);
  EXPECT_EQ(respond(*f3, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kClose);
  EXPECT_FALSE(f3->upstream_reusable());
  close(*h, c, engine::CloseReason::kCompleted);
  close(*h, c2, engine::CloseReason::kCompleted);
  close(*h, c3, engine::CloseReason::kCompleted);
}

TEST_F(EgressHandlerTest, MaxRequestsPerConnectionOneTurnsPoolingOff) {
  load({kRegistryOnly, kCnnServiceEntry, kNoPooling});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  const std::string req = "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\nConnection: close\r\n\r\n";
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(f->takes_held_bytes());  // relayed as it came, Connection: close included
  EXPECT_FALSE(f->upstream_reusable());
  close(*h, c, engine::CloseReason::kCompleted);
}

// Istio's rewrite and headers, applied to every request of the route and
// its response; also without pooling (maxRequestsPerConnection 1).
TEST_F(EgressHandlerTest, RouteRewriteAndHeaderOperationsAreApplied) {
  const std::string vs = cnn_routes(R"(
  - match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/, authority: www.cnn.com}
    headers:
      request: {set: {x-env: prod}, remove: [x-debug]}
      response: {add: {x-served-by: sluice}, remove: [server]}
    route: [{destination: {host: edition.cnn.com}}]
  - route: [{destination: {host: edition.cnn.com}}]
)");
  for (bool pooled : {true, false}) {
    if (pooled) load({kRegistryOnly, kCnnServiceEntry, vs.c_str()});
    else load({kRegistryOnly, kCnnServiceEntry, vs.c_str(), kNoPooling});
    dns_.answer("edition.cnn.com", "203.0.113.10");
    auto h = handler("203.0.113.10:80");
    FakeConnection c;
    const std::string req = "GET /old/a?q=1 HTTP/1.1\r\nHost: edition.cnn.com\r\nX-Debug: 1\r\nX-Env: dev\r\n\r\n";
    auto f = decided(*h, c, req);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(start(*f, req), "GET /new/a?q=1 HTTP/1.1\r\nHost: www.cnn.com\r\nX-Env: prod\r\n\r\n") << pooled;
    // A response; without pooling each request has an upstream connection
    // of its own (as Envoy with maxRequestsPerConnection 1): it is let go
    // after the response (kRelease), the next request decided afresh.
    auto answered = [&](const std::string& response) {
      auto [st, shown] = respond(*f, response);
      if (!pooled) {
        EXPECT_EQ(st, engine::FilterStatus::kNewUpstream);
        FakeOutput held("");
        f->on_new_upstream(held);
        EXPECT_EQ(h->on_new_upstream(c, bytes(held.upstream)).kind(), Verdict::Kind::kRespond);
      }
      return shown;
    };
    EXPECT_EQ(answered("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n"),
              "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-served-by: sluice\r\n\r\n")
        << pooled;
    // A later request: on the same upstream connection when pooled, else on
    // a new one.
    auto send_later = [&](const std::string& later) {
      if (pooled) {
        FakeOutput out(later);
        EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(later), out),
                  engine::FilterStatus::kContinue);
        return out.upstream;
      }
      Verdict v = h->on_downstream_data(c, bytes(later));
      EXPECT_EQ(v.kind(), Verdict::Kind::kConnect);
      f = v.take_filter();
      return f ? start(*f, later) : std::string();
    };
    // Of the other rule: nothing changed, head as received (rebuilt only
    // when pooled, without hop-by-hop fields).
    const std::string later = "GET /other HTTP/1.1\r\nHost: edition.cnn.com\r\nX-Debug: 1\r\n\r\n";
    EXPECT_EQ(send_later(later), later) << pooled;
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(answered("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n"),
              "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n")
        << pooled;
    // Of the first rule: edited again.
    const std::string again = "GET /old/b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    EXPECT_EQ(send_later(again), "GET /new/b HTTP/1.1\r\nHost: www.cnn.com\r\nx-env: prod\r\n\r\n") << pooled;
    close(*h, c, engine::CloseReason::kCompleted);
  }
}

// http[].timeout: Envoy's 504 "upstream request timeout" (UT) when the
// response has not started in time; the timer follows the oldest request.
TEST_F(EgressHandlerTest, RouteTimeoutAnswers504WhenTheResponseIsLate) {
  load({kRegistryOnly, kCnnServiceEntry, cnn_routes(R"(
  - match: [{uri: {prefix: /slow}}]
    timeout: 0.001s
    route: [{destination: {host: edition.cnn.com}}]
  - route: [{destination: {host: edition.cnn.com}}]
)").c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  // A quick answer cancels the timer.
  {
    FakeConnection c;
    const std::string req = "GET /slow HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    FakeOutput out0(req);
    ASSERT_EQ(f->on_start(bytes(req), out0), engine::FilterStatus::kContinue);
    ASSERT_TRUE(out0.timer.has_value());
    EXPECT_GT(out0.timer->count(), 0);
    const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    FakeOutput out1(resp);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(resp), out1), engine::FilterStatus::kContinue);
    ASSERT_TRUE(out1.timer.has_value());
    EXPECT_EQ(out1.timer->count(), 0);  // cancelled
    close(*h, c, engine::CloseReason::kCompleted);
  }
  // No answer: the timer fires after the deadline.
  FakeConnection c;
  const std::string req = "GET /slow HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, req);
  start(*f, req);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the 1 ms deadline
  FakeOutput none("");
  EXPECT_EQ(f->on_timer(none), engine::FilterStatus::kClose);
  EXPECT_EQ(none.downstream.rfind("HTTP/1.1 504 Gateway Timeout", 0), 0u) << none.downstream;
  EXPECT_NE(none.downstream.find("upstream request timeout"), std::string::npos);
  EXPECT_FALSE(f->upstream_reusable());
  close(*h, c, engine::CloseReason::kFilterClose);
  EXPECT_NE(log_->lines().find("\"GET /slow HTTP/1.1\" 504 UT upstream_response_timeout"), std::string::npos)
      << log_->lines();
  // A route without timeout sets no timer.
  FakeConnection c2;
  const std::string fast = "GET /other HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f2 = decided(*h, c2, fast);
  FakeOutput out2(fast);
  f2->on_start(bytes(fast), out2);
  EXPECT_FALSE(out2.timer.has_value());
  close(*h, c2, engine::CloseReason::kCompleted);
}

// retries.perTryTimeout: a try whose response is late goes again (retryOn
// reset, 5xx or gateway-error) while the route timeout spans every try;
// out of tries, 504 UT,URX; without a retryOn that covers it, 504 UT.
// perTryTimeout alone (no route timeout, no edits) on a connection that is
// not pooled (maxRequestsPerConnection 1): the first request's try still
// runs out and is retried (before, no timer was set: a hung upstream held
// the request forever).
TEST_F(EgressHandlerTest, PerTryTimeoutAloneAppliesToAnUnpooledFirstRequest) {
  const std::string vs = retrying_vs(1);
  load({kRegistryOnly, kCnnServiceEntry, kNoPooling, vs.c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  dns_.answer("edition.cnn.com", "203.0.113.21");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /late HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  auto f2 = late_try(*h, c, *f, req);
  ASSERT_NE(f2, nullptr);
  expect_timeout_504(*h, c, *f2, "\"GET /late HTTP/1.1\" 504 UT,URX upstream_response_timeout");
}

// A try's clock starts when its request has been sent whole (Envoy starts
// the per-try timer at the end of the downstream request): an upload slower
// than perTryTimeout is not cut while it is being sent; a tunnel's request
// never ends, so an Upgrade gets no per-try timer at all.
TEST_F(EgressHandlerTest, PerTryTimeoutStartsWhenTheRequestIsSentWhole) {
  const std::string vs = retrying_vs(2);
  load({kRegistryOnly, kCnnServiceEntry, vs.c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  expect_clocks_start_at_the_requests_end(*h, "/up");
}

// A try's clock starts again when its upstream connection is ready (Envoy:
// at "pool ready" when that comes after the request's end): the time a
// connect takes is not the try's.
TEST_F(EgressHandlerTest, PerTryTimeoutStartsWhenTheUpstreamConnectionIsReady) {
  const std::string vs = cnn_routes(
      "  - retries: {attempts: 2, perTryTimeout: 1s, retryOn: gateway-error}\n"
      "    route: [{destination: {host: edition.cnn.com}}]\n");
  load({kRegistryOnly, kCnnServiceEntry, vs.c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  FakeConnection c;
  const std::string req = "GET /slow-connect HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f = decided(*h, c, req);
  ASSERT_NE(f, nullptr);
  FakeOutput started(req);
  if (f->takes_held_bytes()) {
    ASSERT_EQ(f->on_start(bytes(req), started), engine::FilterStatus::kContinue);
  }
  EXPECT_FALSE(started.timer.has_value());  // the request is whole, but not on its way yet
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the connect takes a while
  FakeOutput ready("");
  f->on_upstream_ready(ready);
  ASSERT_TRUE(ready.timer.has_value());
  EXPECT_GT(ready.timer->count(), 950);  // a full second from now, not what would be left (~900 ms)
  close(*h, c, engine::CloseReason::kCompleted);
}

// The route timeout, like a try's, runs from the end of the request (an
// upload slower than it is not cut; a tunnel gets none), and a try that
// runs out after its response began reaching the client is let be (Envoy
// cannot retry it then; the route timeout governs).
TEST_F(EgressHandlerTest, RouteTimeoutStartsAtTheRequestsEndAndAnAnsweredTryIsNotCut) {
  load({kRegistryOnly, kCnnServiceEntry, cnn_routes(R"(
  - match: [{uri: {prefix: /route}}]
    timeout: 0.001s
    route: [{destination: {host: edition.cnn.com}}]
  - retries: {attempts: 2, perTryTimeout: 0.001s, retryOn: gateway-error}
    route: [{destination: {host: edition.cnn.com}}]
)").c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  auto h = handler("203.0.113.20:80");
  expect_clocks_start_at_the_requests_end(*h, "/route");
  {
    FakeConnection c;
    const std::string req = "GET /stream HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    ASSERT_NE(f, nullptr);
    FakeOutput out0(req);
    start_ready(*f, req, out0);
    ASSERT_TRUE(out0.timer.has_value());
    auto [st, shown] = respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc");
    EXPECT_EQ(st, engine::FilterStatus::kContinue);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    FakeOutput t("");
    EXPECT_EQ(f->on_timer(t), engine::FilterStatus::kContinue);  // the try ran out, the response goes on
    EXPECT_EQ(t.downstream, "");
    EXPECT_EQ(respond(*f, "def").second, "def");
    close(*h, c, engine::CloseReason::kCompleted);
    EXPECT_NE(log_->lines().find("\"GET /stream HTTP/1.1\" 200 - via_upstream"), std::string::npos) << log_->lines();
  }
}

TEST_F(EgressHandlerTest, PerTryTimeoutRetriesALateTryWithinTheRouteTimeout) {
  load({kRegistryOnly, kCnnServiceEntry, cnn_routes(R"(
  - match: [{uri: {prefix: /late}}]
    timeout: 10s
    retries: {attempts: 1, perTryTimeout: 0.001s, retryOn: gateway-error}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /span}}]
    timeout: 0.02s
    retries: {attempts: 2, retryOn: "503"}
    route: [{destination: {host: edition.cnn.com}}]
  - match: [{uri: {prefix: /noretry}}]
    retries: {attempts: 2, perTryTimeout: 0.001s, retryOn: "503"}
    route: [{destination: {host: edition.cnn.com}}]
)").c_str()});
  dns_.answer("edition.cnn.com", "203.0.113.20");
  dns_.answer("edition.cnn.com", "203.0.113.21");
  auto h = handler("203.0.113.20:80");
  {
    FakeConnection c;
    const std::string req = "GET /late HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    auto f2 = late_try(*h, c, *f, req);
    ASSERT_NE(f2, nullptr);
    // No tries left.
    expect_timeout_504(*h, c, *f2, "\"GET /late HTTP/1.1\" 504 UT,URX upstream_response_timeout");
  }
  {
    // A 503 retried: the second try keeps the first try's route deadline.
    FakeConnection c;
    const std::string req = "GET /span HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    start(*f, req);
    EXPECT_EQ(respond(*f, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").first,
              engine::FilterStatus::kNewUpstream);
    std::this_thread::sleep_for(std::chrono::milliseconds(25));  // past the 20 ms route timeout
    // Not a fresh 20 ms: the retry, due past the deadline, is answered 504
    // without another connect.
    FakeOutput held("");
    f->on_new_upstream(held);
    Verdict v = h->on_new_upstream(c, bytes(req));
    if (v.kind() == Verdict::Kind::kNeedMore) v = h->on_detection_timeout(c, bytes(req));
    EXPECT_NE(v.kind(), Verdict::Kind::kConnect);
    EXPECT_NE(text(v.response()).find("upstream request timeout"), std::string::npos) << text(v.response());
    close(*h, c, engine::CloseReason::kLocalClose);
    EXPECT_NE(log_->lines().find("\"GET /span HTTP/1.1\" 504 UT upstream_response_timeout"), std::string::npos)
        << log_->lines();
  }
  {
    // perTryTimeout without a retryOn that covers a timeout: 504 UT.
    FakeConnection c;
    const std::string req = "GET /noretry HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    FakeOutput o(req);
    start_ready(*f, req, o);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    expect_timeout_504(*h, c, *f, "\"GET /noretry HTTP/1.1\" 504 UT upstream_response_timeout");
  }
  EXPECT_EQ(counters_.retries.load(), 2u);
}

// Review findings: edits on a later request in the first read; the URL's
// authority when an absolute-form target becomes origin-form; a late timer
// after part of a response head; an upstream that closes before answering.
TEST_F(EgressHandlerTest, EditsAbsoluteFormPartialHeadsAndEarlyUpstreamClose) {
  const std::string vs = cnn_routes(R"(
  - match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/}
    timeout: 0.001s
    retries: {attempts: 0}
    headers: {request: {remove: [x-secret]}}
    route: [{destination: {host: edition.cnn.com}}]
  - route: [{destination: {host: edition.cnn.com}}]
)");
  load({kRegistryOnly, kCnnServiceEntry, vs.c_str(), kNoPooling});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  {
    // Not pooled, the first request unedited: the second one, in the same
    // read, waits for its own upstream connection (maxRequestsPerConnection
    // 1), and is rewritten there.
    FakeConnection c;
    const std::string first = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    const std::string second = "GET /old/b HTTP/1.1\r\nHost: edition.cnn.com\r\nX-Secret: 1\r\n\r\n";
    auto f = decided(*h, c, first + second);
    ASSERT_NE(f, nullptr);
    ASSERT_TRUE(f->takes_held_bytes());
    EXPECT_EQ(start(*f, first + second), first);
    EXPECT_EQ(respond(*f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").first, engine::FilterStatus::kNewUpstream);
    Verdict v = next_try(*h, c, *f, second);
    auto f2 = v.take_filter();
    ASSERT_NE(f2, nullptr);
    EXPECT_EQ(start(*f2, second), "GET /new/b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
    close(*h, c, engine::CloseReason::kCompleted);
  }
  {
    // Absolute form: the origin-form request names the URL's host.
    FakeConnection c;
    const std::string abs = "GET http://edition.cnn.com/old/x HTTP/1.1\r\nHost: internal.example\r\n\r\n";
    auto f = decided(*h, c, abs);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(start(*f, abs), "GET /new/x HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n");
    // Part of a response head reached the client before the deadline: the
    // timer resets rather than append a 504 to it.
    const std::string part = "HTTP/1.1 200 OK\r\nContent-Le";
    FakeOutput o(part);
    EXPECT_EQ(f->on_data(engine::Direction::kUpstreamToDownstream, bytes(part), o), engine::FilterStatus::kContinue);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    FakeOutput none("");
    EXPECT_EQ(f->on_timer(none), engine::FilterStatus::kReset);
    EXPECT_EQ(none.downstream, "");
    close(*h, c, engine::CloseReason::kFilterClose);
  }
  {
    // The upstream closes before any of the response: 503 UC.
    FakeConnection c;
    const std::string req = "GET /a HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
    auto f = decided(*h, c, req);
    start(*f, req);
    FakeOutput none("");
    EXPECT_EQ(f->on_end_stream(engine::Direction::kUpstreamToDownstream, none), engine::FilterStatus::kClose);
    EXPECT_EQ(none.downstream.rfind("HTTP/1.1 503 Service Unavailable", 0), 0u) << none.downstream;
    close(*h, c, engine::CloseReason::kFilterClose);
    EXPECT_NE(log_->lines().find("\"GET /a HTTP/1.1\" 503 UC upstream_reset_before_response_started"),
              std::string::npos)
        << log_->lines();
  }
}

// An early response to an upload (the body still coming) does not end the
// client's connection under it: relaying goes on, the upstream is not reused.
TEST_F(EgressHandlerTest, PooledEarlyResponseToAnUploadKeepsRelaying) {
  load({kAllowAny});
  auto h = handler("203.0.113.10:80");
  FakeConnection c;
  const std::string head = "PUT /up HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\nContent-Length: 10\r\n\r\nabc";
  auto f = decided(*h, c, head);
  EXPECT_EQ(start(*f, head), "PUT /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 10\r\n\r\nabc");
  auto [st, out] = respond(*f, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(st, engine::FilterStatus::kContinue);
  EXPECT_EQ(out, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nconnection: close\r\n\r\n");
  const std::string rest = "defghij";
  FakeOutput o(rest);
  EXPECT_EQ(f->on_data(engine::Direction::kDownstreamToUpstream, bytes(rest), o), engine::FilterStatus::kContinue);
  EXPECT_EQ(o.upstream, rest);  // the body goes on
  EXPECT_FALSE(f->upstream_reusable());
  close(*h, c, engine::CloseReason::kCompleted);
}

// maxRequestsPerConnection 2: the count travels with the pooled upstream;
// the request that reaches it is the upstream connection's last: it is not
// parked again, and the client's next request goes to a new upstream
// connection while the client's own connection goes on (Envoy's pool
// closes a connection at its limit; the client is not told to close).
TEST_F(EgressHandlerTest, MaxRequestsPerConnectionCountsAcrossPooledClients) {
  load({kRegistryOnly, kCnnServiceEntry, kMaxRequestsTwo});
  dns_.answer("edition.cnn.com", "203.0.113.10");
  auto h = handler("203.0.113.10:80");
  const std::string req = "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\nConnection: close\r\n\r\n";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  FakeConnection c1;
  auto f1 = decided(*h, c1, req);
  start(*f1, req);
  EXPECT_EQ(respond(*f1, resp).first, engine::FilterStatus::kEndDownstream);
  ASSERT_TRUE(f1->upstream_reusable());  // 1 of 2
  engine::UpstreamStatePtr state = f1->release_upstream();
  close(*h, c1, engine::CloseReason::kCompleted);
  // The next client adopts it: its request is the upstream's second.
  FakeConnection c2;
  const std::string keep = "GET /b HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  auto f2 = decided(*h, c2, keep);
  ASSERT_TRUE(f2->adopt_upstream(std::move(state)));
  start(*f2, keep);
  // Its last: the spent upstream is let go after the response.
  auto [st, out] = respond(*f2, resp);
  EXPECT_EQ(st, engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(out, resp);
  EXPECT_FALSE(f2->upstream_reusable());
  FakeOutput released("");
  f2->on_new_upstream(released);
  EXPECT_EQ(released.upstream, "");
  ASSERT_EQ(h->on_new_upstream(c2, {}).kind(), Verdict::Kind::kRespond);
  // The client's next request: a first one again, on a new upstream
  // connection to the same endpoint.
  const std::string next = "GET /c HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  Verdict v = h->on_downstream_data(c2, bytes(next));
  ASSERT_EQ(v.kind(), Verdict::Kind::kConnect);
  EXPECT_EQ(v.upstreams()[0].to_string(), "203.0.113.10:80");
  auto f3 = v.take_filter();
  ASSERT_NE(f3, nullptr);
  start(*f3, next);
  EXPECT_EQ(respond(*f3, resp).first, engine::FilterStatus::kContinue);
  EXPECT_TRUE(f3->upstream_reusable());  // 1 of 2 on the new connection
  close(*h, c2, engine::CloseReason::kCompleted);
  EXPECT_EQ(counters_.upstream_changed.load(), 0u);  // the same upstream, a new connection

  // The same with the client's two requests in its first read, on an adopted
  // upstream with one request left: the second waits for a new connection
  // (it was told `connection: close` before).
  FakeConnection c3;
  const std::string two = keep + next;
  auto g = decided(*h, c3, two);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(f3->upstream_reusable());
  ASSERT_TRUE(g->adopt_upstream(f3->release_upstream()));
  EXPECT_EQ(start(*g, two), keep);
  FakeOutput r(resp);
  EXPECT_EQ(g->on_data(engine::Direction::kUpstreamToDownstream, bytes(resp), r), engine::FilterStatus::kNewUpstream);
  EXPECT_EQ(r.all, resp);  // no `connection: close`
  FakeOutput held2("");
  g->on_new_upstream(held2);
  EXPECT_EQ(held2.upstream, next);
  close(*h, c3, engine::CloseReason::kCompleted);
}

}  // namespace
}  // namespace sluice::proxy
