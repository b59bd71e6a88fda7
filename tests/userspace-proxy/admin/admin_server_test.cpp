#include "userspace-proxy/admin/admin_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/userspace-proxy/admin/exposition_parser.h"
#include "tests/userspace-proxy/admin/http_client.h"
#include "userspace-proxy/admin/admin_endpoints.h"
#include "userspace-proxy/admin/istio_metrics.h"

namespace sluice::admin {
namespace {

using testing::HttpClient;
using testing::http_get;
using testing::parse_exposition;

// A running admin server on 127.0.0.1 (any free port) with the standard
// endpoints over a registry with Istio's metrics.
class AdminServerTest : public ::testing::Test {
 protected:
  void start(AdminServerOptions options = {}) {
    options.port = 0;
    server_ = std::make_unique<AdminServer>(options);
    AdminEndpoints e;
    e.state = &state_;
    e.metrics = &registry_;
    e.liveness = [this] { return liveness_problem_; };
    e.config_dump = [] { return std::string(R"({"configs":[{"@type":"sluice.Snapshot","generation":1}]})"); };
    e.log_level = &level_;
    ASSERT_TRUE(register_admin_endpoints(*server_, std::move(e)));
    ASSERT_TRUE(server_->add_handler("/throw", kGet, "throws", [](const AdminRequest&) -> AdminResponse {
      throw std::runtime_error("boom");
    }));
    ASSERT_EQ(server_->start(), 0) << server_->error();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->stop();
  }

  MetricsRegistry registry_;
  IstioMetrics istio_{registry_};
  ServerStateCell state_;
  LogLevelSetting level_;
  std::string liveness_problem_;  // read by the admin thread only while tests wait on a response
  std::unique_ptr<AdminServer> server_;
  uint16_t port_ = 0;
};

TEST_F(AdminServerTest, ReadyFollowsTheServerState) {
  start();
  auto r = http_get(port_, "/ready");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "PRE_INITIALIZING\n");
  state_.set(ServerState::kLive);
  r = http_get(port_, "/ready");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, "HTTP/1.1");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "LIVE\n");
  EXPECT_EQ(r->header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(r->header("cache-control"), "no-cache, max-age=0");
  state_.set(ServerState::kDraining);
  r = http_get(port_, "/ready");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "DRAINING\n");
}

TEST_F(AdminServerTest, HealthzReportsTheLivenessCheck) {
  start();
  auto r = http_get(port_, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");
  liveness_problem_ = "worker 1 stopped";
  r = http_get(port_, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "worker 1 stopped\n");
}

TEST_F(AdminServerTest, PrometheusStatsHaveTheRightTypeAndParse) {
  start();
  MetricsShard& shard = registry_.add_shard();
  IstioLabels l;
  l.response_code = "502";
  l.response_flags = "-";
  l.destination_service_name = "block_all";
  istio_.record_request(shard, l, 3);
  auto r = http_get(port_, "/stats/prometheus");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  std::string err;
  auto e = parse_exposition(r->body, &err);
  ASSERT_TRUE(e) << err;
  const auto* f = e->family("istio_requests_total");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->samples.size(), 1u);
  EXPECT_EQ(f->samples[0].labels.at("response_code"), "502");
  EXPECT_EQ(f->samples[0].value, 1.0);
}

TEST_F(AdminServerTest, ConfigDumpIsJson) {
  start();
  auto r = http_get(port_, "/config_dump");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-type"), "application/json");
  EXPECT_EQ(r->body, R"({"configs":[{"@type":"sluice.Snapshot","generation":1}]})");
}

TEST_F(AdminServerTest, LoggingChangesTheLevelOnPostOnly) {
  start();
  auto r = http_get(port_, "/logging");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "active level: info\n");

  r = http_get(port_, "/logging?level=debug", "POST");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "active level: debug\n");
  EXPECT_EQ(level_.get(), LogLevel::kDebug);

  r = http_get(port_, "/logging?level=%77arning", "POST");  // percent-encoded "warning"
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(level_.get(), LogLevel::kWarning);

  r = http_get(port_, "/logging?level=loud", "POST");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("trace, debug, info, warning, error, critical, off"), std::string::npos);
  EXPECT_EQ(level_.get(), LogLevel::kWarning);

  r = http_get(port_, "/logging?level=error");  // GET must not change state
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("allow"), "POST");
  EXPECT_EQ(level_.get(), LogLevel::kWarning);

  r = http_get(port_, "/logging?lvl=error", "POST");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);

  r = http_get(port_, "/logging?level=%zz", "POST");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(level_.get(), LogLevel::kWarning);
}

TEST_F(AdminServerTest, UnknownPathsAndMethods) {
  start();
  auto r = http_get(port_, "/nope");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("/stats/prometheus"), std::string::npos) << "404 lists the endpoints";
  r = http_get(port_, "/ready/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = http_get(port_, "/ready", "POST");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("allow"), "GET, HEAD");
  r = http_get(port_, "/stats/prometheus", "DELETE");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
}

TEST_F(AdminServerTest, HeadHasHeadersButNoBody) {
  start();
  state_.set(ServerState::kLive);
  HttpClient c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send_request("HEAD", "/ready"));
  ASSERT_TRUE(c.send_request("GET", "/ready"));
  auto head = c.read_response(/*head_only=*/true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("content-length"), "5");
  // If HEAD had carried a body, it would be read as the next status line.
  auto get = c.read_response();
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "LIVE\n");
}

TEST_F(AdminServerTest, KeepAlivePipeliningAndClose) {
  start();
  state_.set(ServerState::kLive);
  HttpClient c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send_request("GET", "/ready"));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 200);
  EXPECT_EQ(r1->header("connection"), "");
  // Three pipelined requests in one write: answered in order.
  ASSERT_TRUE(c.send_raw(
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
      "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
      "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
  auto a = c.read_response();
  auto b = c.read_response();
  auto d = c.read_response();
  ASSERT_TRUE(a && b && d);
  EXPECT_EQ(a->body, "ok\n");
  EXPECT_EQ(b->status, 404);
  EXPECT_EQ(d->status, 200);
  EXPECT_EQ(d->header("connection"), "close");
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(AdminServerTest, Http10ClosesUnlessKeepAlive) {
  start();
  HttpClient c(port_);
  ASSERT_TRUE(c.send_raw("GET /healthz HTTP/1.0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(AdminServerTest, ClientHalfCloseStillGetsTheAnswer) {
  start();
  HttpClient c(port_);
  ASSERT_TRUE(c.send_request("GET", "/healthz"));
  c.shutdown_write();
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(c.closed_by_peer());
}

struct BadRequestCase {
  const char* name;
  std::string bytes;
  int status;
};

TEST_F(AdminServerTest, MalformedRequestsGet4xxOrNot5xxAndAreClosed) {
  start();
  std::vector<BadRequestCase> cases = {
      {"not http", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n", 400},
      {"missing Host", "GET /ready HTTP/1.1\r\n\r\n", 400},
      {"HTTP/2 version", "GET /ready HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505},
      {"space before colon", "GET /ready HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n", 400},
      {"bare LF", "GET /ready HTTP/1.1\nHost: 127.0.0.1\n\n", 400},
      {"obs-fold", "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\r\n b\r\n\r\n", 400},
      {"two Content-Lengths", "POST /logging HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"chunked body", "POST /logging HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
      {"authority form", "CONNECT 127.0.0.1:15000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400},
      {"DNS name Host (rebinding)", "GET /ready HTTP/1.1\r\nHost: attacker.example:15000\r\n\r\n", 403},
  };
  for (const auto& tc : cases) {
    HttpClient c(port_);
    ASSERT_TRUE(c.connected()) << tc.name;
    ASSERT_TRUE(c.send_raw(tc.bytes)) << tc.name;
    auto r = c.read_response();
    ASSERT_TRUE(r) << tc.name;
    EXPECT_EQ(r->status, tc.status) << tc.name << ": " << r->body;
    if (tc.status != 403) {
      EXPECT_EQ(r->header("connection"), "close") << tc.name;
      EXPECT_TRUE(c.closed_by_peer()) << tc.name;
    }
  }
  // The server is still fine.
  auto r = http_get(port_, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(AdminServerTest, HostHeaderForms) {
  start();
  for (std::string host : {"127.0.0.1", "127.0.0.1:15000", "localhost", "localhost:15000", "[::1]:15000"}) {
    HttpClient c(port_);
    ASSERT_TRUE(c.send_raw("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r) << host;
    EXPECT_EQ(r->status, 200) << host;
  }
}

TEST_F(AdminServerTest, OversizedRequestsAreRefused) {
  AdminServerOptions o;
  o.max_request_head_bytes = 2048;
  o.max_request_body_bytes = 64;
  start(o);
  {
    HttpClient c(port_);
    std::string big(4096, 'a');
    ASSERT_TRUE(c.send_raw("GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + big + "\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    HttpClient c(port_);
    std::string big_target = "/ready?" + std::string(8192, 'q');
    ASSERT_TRUE(c.send_raw("GET " + big_target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->status == 414 || r->status == 431) << r->status;
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    HttpClient c(port_);
    ASSERT_TRUE(c.send_raw("POST /logging?level=debug HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_EQ(level_.get(), LogLevel::kInfo);
  }
  {
    // A body within the limit is read and the request served.
    HttpClient c(port_);
    ASSERT_TRUE(c.send_raw("POST /logging?level=debug HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n0123456789"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(level_.get(), LogLevel::kDebug);
  }
}

TEST_F(AdminServerTest, ExpectContinueGetsA100First) {
  start();
  HttpClient c(port_);
  ASSERT_TRUE(c.send_raw(
      "POST /logging?level=error HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"));
  auto cont = c.read_response();
  ASSERT_TRUE(cont);
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(c.send_raw("abc"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(level_.get(), LogLevel::kError);
}

TEST_F(AdminServerTest, AThrowingHandlerGets500AndTheServerGoesOn) {
  start();
  auto r = http_get(port_, "/throw");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("boom"), std::string::npos);
  r = http_get(port_, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// One thread serves everyone: a client that sends half a request must not
// hold up the others.
TEST_F(AdminServerTest, ASlowClientDoesNotBlockOthers) {
  start();
  HttpClient slow(port_);
  ASSERT_TRUE(slow.send_raw("GET /hea"));
  for (int i = 0; i < 3; ++i) {
    auto r = http_get(port_, "/healthz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  ASSERT_TRUE(slow.send_raw("lthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  auto r = slow.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(AdminServerTest, IdlePartialRequestGets408) {
  AdminServerOptions o;
  o.idle_timeout = std::chrono::milliseconds(50);
  start(o);
  HttpClient c(port_);
  ASSERT_TRUE(c.send_raw("GET /ready HTTP/1.1\r\n"));
  auto r = c.read_response();  // blocks until the server gives up on us
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 408);
  EXPECT_TRUE(c.closed_by_peer());
  // An idle keep-alive connection is closed without a response.
  HttpClient idle(port_);
  ASSERT_TRUE(idle.connected());
  EXPECT_TRUE(idle.closed_by_peer());
}

TEST_F(AdminServerTest, ConnectionLimit) {
  AdminServerOptions o;
  o.max_connections = 2;
  start(o);
  HttpClient a(port_), b(port_);
  // Make sure both are accepted (served) before the third arrives.
  ASSERT_TRUE(a.send_request("GET", "/healthz"));
  ASSERT_TRUE(a.read_response());
  ASSERT_TRUE(b.send_request("GET", "/healthz"));
  ASSERT_TRUE(b.read_response());
  HttpClient c(port_);
  ASSERT_TRUE(c.connected());
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(server_->connections_refused(), 1u);
}

TEST_F(AdminServerTest, LargeScrapesAreWrittenCompletely) {
  start();
  auto fam = registry_.add_counter("many_total", "Many series.", {"id"});
  ASSERT_TRUE(fam);
  MetricsShard& s = registry_.add_shard();
  for (int i = 0; i < 30000; ++i) s.add(s.series(*fam, {std::to_string(i)}), static_cast<uint64_t>(i));
  HttpClient c(port_);
  for (int round = 0; round < 2; ++round) {  // twice on one connection: the first was framed exactly
    ASSERT_TRUE(c.send_request("GET", "/stats/prometheus"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_GT(r->body.size(), 600000u);
    std::string err;
    auto e = parse_exposition(r->body, &err);
    ASSERT_TRUE(e) << err;
    EXPECT_EQ(e->family("many_total")->samples.size(), 30000u);
    EXPECT_EQ(e->value("many_total", {{"id", "29999"}}), 29999.0);
  }
}

// Real scrapes over HTTP while workers update their shards: every scrape
// parses, values never go backwards, and the final scrape has exact totals.
TEST_F(AdminServerTest, ConcurrentScrapesWhileWorkersIncrement) {
  start();
  constexpr int kWorkers = 3;
  constexpr int kRequests = 20000;
  std::vector<MetricsShard*> shards;
  for (int i = 0; i < kWorkers; ++i) shards.push_back(&registry_.add_shard());
  std::atomic<bool> done{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      IstioLabels l;
      l.destination_service = "edition.cnn.com";
      for (int i = 0; i < kRequests; ++i) {
        l.response_code = i % 2 ? "200" : "301";
        istio_.record_request(*shards[w], l, static_cast<double>(i % 100));
        istio_.record_tcp_open(*shards[w], l);
      }
    });
  }
  std::vector<std::string> errors(3);
  std::vector<int> scrapes(3, 0);
  std::vector<std::thread> scrapers;
  for (int k = 0; k < 3; ++k) {
    scrapers.emplace_back([&, k] {
      HttpClient c(port_);
      double last = 0;
      while (!done.load() || scrapes[k] == 0) {
        if (!c.send_request("GET", "/stats/prometheus")) {
          errors[k] = "send failed";
          return;
        }
        auto r = c.read_response();
        if (!r || r->status != 200) {
          errors[k] = "bad response";
          return;
        }
        std::string err;
        auto e = parse_exposition(r->body, &err);
        if (!e) {
          errors[k] = err;
          return;
        }
        double total = 0;
        if (const auto* f = e->family("istio_requests_total")) {
          for (const auto& smp : f->samples) total += smp.value;
        }
        if (total < last) {
          errors[k] = "istio_requests_total went backwards";
          return;
        }
        last = total;
        ++scrapes[k];
      }
    });
  }
  for (auto& t : workers) t.join();
  done = true;
  for (auto& t : scrapers) t.join();
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(errors[k], "") << "scraper " << k;
    EXPECT_GE(scrapes[k], 1);
  }
  auto r = http_get(port_, "/stats/prometheus");
  ASSERT_TRUE(r);
  std::string err;
  auto e = parse_exposition(r->body, &err);
  ASSERT_TRUE(e) << err;
  double total = 0, opened = 0;
  for (const auto& smp : e->family("istio_requests_total")->samples) total += smp.value;
  for (const auto& smp : e->family("istio_tcp_connections_opened_total")->samples) opened += smp.value;
  EXPECT_EQ(total, kWorkers * kRequests);
  EXPECT_EQ(opened, kWorkers * kRequests);
}

TEST(AdminServerBind, RefusesNonLoopbackUnlessAllowed) {
  for (const char* addr : {"0.0.0.0", "10.1.2.3", "::", "2001:db8::1", "::ffff:10.0.0.1"}) {
    AdminServer s(AdminServerOptions{.address = addr, .port = 0});
    EXPECT_EQ(s.start(), -EACCES) << addr;
    EXPECT_NE(s.error().find("not a loopback address"), std::string::npos) << s.error();
  }
  AdminServer bad(AdminServerOptions{.address = "localhost", .port = 0});
  EXPECT_EQ(bad.start(), -EINVAL);
  // Allowed explicitly, a non-loopback address gets past the check (the bind
  // itself then fails here: 192.0.2.1, TEST-NET-1, is on no interface).
  AdminServer allowed(AdminServerOptions{.address = "192.0.2.1", .port = 0, .allow_non_loopback = true});
  EXPECT_EQ(allowed.start(), -EADDRNOTAVAIL) << allowed.error();
}

TEST(AdminServerBind, LoopbackAddresses) {
  EXPECT_EQ(is_loopback_address("127.0.0.1"), true);
  EXPECT_EQ(is_loopback_address("127.255.0.9"), true);
  EXPECT_EQ(is_loopback_address("::1"), true);
  EXPECT_EQ(is_loopback_address("[::1]"), true);
  EXPECT_EQ(is_loopback_address("::ffff:127.0.0.1"), true);
  EXPECT_EQ(is_loopback_address("128.0.0.1"), false);
  EXPECT_EQ(is_loopback_address("::"), false);
  EXPECT_FALSE(is_loopback_address("localhost").has_value());

  AdminServer v4(AdminServerOptions{.address = "127.0.0.2", .port = 0});
  ASSERT_EQ(v4.start(), 0) << v4.error();
  // Handlers cannot be added to a running server.
  EXPECT_FALSE(v4.add_handler("/x", kGet, "x", [](const AdminRequest&) { return AdminResponse::text(200, ""); }));
  HttpClient c(v4.port(), "127.0.0.2");
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send_request("GET", "/ready"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);  // nothing registered

  AdminServer v6(AdminServerOptions{.address = "::1", .port = 0});
  int rc = v6.start();
  if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) GTEST_SKIP() << "no IPv6 loopback here: " << v6.error();
  ASSERT_EQ(rc, 0) << v6.error();
  HttpClient c6(v6.port(), "::1");
  ASSERT_TRUE(c6.connected());
  ASSERT_TRUE(c6.send_request("GET", "/"));
  auto r6 = c6.read_response();
  ASSERT_TRUE(r6);
  EXPECT_EQ(r6->status, 404);
}

TEST(AdminServerHandlers, RegistrationRules) {
  AdminServer s(AdminServerOptions{.port = 0});
  auto h = [](const AdminRequest&) { return AdminResponse::text(200, ""); };
  EXPECT_TRUE(s.add_handler("/a", kGet, "a", h));
  EXPECT_FALSE(s.add_handler("/a", kPost, "again", h));
  EXPECT_FALSE(s.add_handler("b", kGet, "no slash", h));
  EXPECT_FALSE(s.add_handler("/c", kGet, "no handler", nullptr));
  ServerStateCell st;
  MetricsRegistry reg;
  EXPECT_FALSE(register_admin_endpoints(s, AdminEndpoints{}));  // state and metrics are required
  EXPECT_TRUE(register_admin_endpoints(s, AdminEndpoints{.state = &st, .metrics = &reg}));
  std::string list = s.describe_handlers();
  EXPECT_NE(list.find("/ready"), std::string::npos);
  EXPECT_NE(list.find("/healthz"), std::string::npos);
  EXPECT_EQ(list.find("/logging"), std::string::npos);  // not configured
}

TEST(AdminServerHelpers, PercentDecode) {
  EXPECT_EQ(percent_decode("a%20b+c"), "a b c");
  EXPECT_EQ(percent_decode("%41%6a"), "Aj");
  EXPECT_FALSE(percent_decode("%4").has_value());
  EXPECT_FALSE(percent_decode("%").has_value());
  EXPECT_FALSE(percent_decode("%g0").has_value());
}

}  // namespace
}  // namespace sluice::admin
