// Upstream connection pooling (Verdict::with_pool, FilterStatus::
// kEndDownstream, StreamFilter::release_upstream/adopt_upstream) through
// real loopback sockets: a downstream ends, its upstream is parked, the next
// connection with the same key takes it instead of connecting; an upstream
// that closes or speaks while idle, or outlives the idle timeout, is dropped.

#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "tests/userspace-proxy/engine/test_util.h"

namespace sluice::engine::testing {
namespace {

// The session a pooled upstream carries from one filter to the next.
struct Session final : public UpstreamState {
  explicit Session(int n) : number(n) {}
  int64_t expires_ns() const override { return expires; }
  int number;
  int64_t expires = INT64_MAX;  // CLOCK_MONOTONIC, as the engine's
};

struct PoolLog {
  std::atomic<int> sessions_made{0};
  std::atomic<int> adopted{0};
  std::atomic<int> last_adopted_session{-1};
  std::atomic<int> drains{0};  // on_drain calls
  std::atomic<int64_t> session_lifetime_ns{0};  // > 0: a session expires this long after it is parked
};

// A line protocol standing in for HTTP: a response ends with "END\n"; the
// client's last one also ends its connection. A response with "CLOSE" in it
// makes the upstream not reusable; a client FIN between responses ends the
// downstream only.
class LineFilter final : public StreamFilter {
 public:
  explicit LineFilter(PoolLog* log) : log_(log) {}
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (out.forward(chunk.size()) != 0) return FilterStatus::kReset;
    std::string_view s(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    if (dir == Direction::kDownstreamToUpstream) {
      waiting_ = true;
      return FilterStatus::kContinue;
    }
    if (s.find("CLOSE") != std::string_view::npos) reusable_ = false;
    if (s.size() >= 4 && s.substr(s.size() - 4) == "END\n") {
      waiting_ = false;
      return FilterStatus::kEndDownstream;
    }
    if (!s.empty() && s.back() == '\n') waiting_ = false;
    return FilterStatus::kContinue;
  }
  FilterStatus on_end_stream(Direction dir, FilterOutput&) override {
    if (dir == Direction::kDownstreamToUpstream && !waiting_) return FilterStatus::kEndDownstream;
    reusable_ = false;
    return FilterStatus::kContinue;
  }
  // Between responses the client ends at once; with one due, after it.
  FilterStatus on_drain(FilterOutput&) override {
    log_->drains++;
    return waiting_ ? FilterStatus::kContinue : FilterStatus::kEndDownstream;
  }
  bool upstream_reusable() const override { return reusable_ && !waiting_; }
  UpstreamStatePtr release_upstream() override {
    if (!session_) session_ = std::make_unique<Session>(log_->sessions_made++);
    if (const int64_t life = log_->session_lifetime_ns.load(); life > 0) {
      session_->expires = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now().time_since_epoch()).count() + life;
    }
    return std::move(session_);
  }
  bool adopt_upstream(UpstreamStatePtr state) override {
    auto* s = dynamic_cast<Session*>(state.get());
    if (s == nullptr) return false;
    log_->adopted++;
    log_->last_adopted_session = s->number;
    session_.reset(static_cast<Session*>(state.release()));
    return true;
  }

 private:
  PoolLog* log_;
  bool waiting_ = false;
  bool reusable_ = true;
  std::unique_ptr<Session> session_;
};

class PoolTest : public LoopbackEngine<> {
 protected:
  void start(std::function<void(EngineConfig&)> tweak = nullptr,
             std::chrono::milliseconds pool_idle = std::chrono::milliseconds(0)) {
    PoolLog* plog = &pool_log_;
    SocketAddress up = SocketAddress::loopback4(upstream_port_);
    start_engine(
        [up, plog, pool_idle](ScriptedHandler& h) {
          h.data_fn = [up, plog, pool_idle](Connection&, std::span<const uint8_t>) {
            return Verdict::connect(up, std::make_unique<LineFilter>(plog))
                .with_pool("line|" + up.to_string())
                .with_pool_idle_timeout(pool_idle);
          };
          h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(std::chrono::seconds(10)); };
        },
        std::move(tweak));
  }
  // One exchange on a fresh client: request out, response back, then the
  // client sees the end of its connection (FIN, no reset).
  void exchange(int up, const std::string& request, const std::string& response) {
    int c = client();
    ASSERT_TRUE(write_all(c, request));
    EXPECT_EQ(read_n(up, request.size()), request);
    ASSERT_TRUE(write_all(up, response));
    int err = 0;
    EXPECT_EQ(read_to_eof(c, &err), response);
    EXPECT_EQ(err, 0);
    close(c);
  }
  // The first client's exchange, which leaves its upstream parked; returns
  // the server's end of it.
  int park_first() {
    int c = client();
    EXPECT_TRUE(write_all(c, "GET 1\n"));
    int up = server();
    EXPECT_EQ(read_n(up, 6), "GET 1\n");
    EXPECT_TRUE(write_all(up, "R 1 END\n"));
    int err = 0;
    EXPECT_EQ(read_to_eof(c, &err), "R 1 END\n");  // the downstream ends with FIN
    EXPECT_EQ(err, 0);
    close(c);
    EXPECT_TRUE(wait_counter(&CounterSnapshot::upstream_pooled, 1));
    return up;
  }

  // A request the upstream reads, then an upload it never reads: the
  // proxy's queue to it fills, the proxy pauses reading the client, and the
  // rest waits unread in the proxy's socket. Returns the upstream's end.
  int hold_an_unread_upload(int c) {
    EXPECT_TRUE(write_all(c, "PUT 1\n"));
    int up = server();
    EXPECT_EQ(read_n(up, 6), "PUT 1\n");
    const int flags = fcntl(c, F_GETFL);
    EXPECT_EQ(fcntl(c, F_SETFL, flags | O_NONBLOCK), 0);
    const std::string chunk(65536, 'u');
    size_t uploaded = 0;
    // Until the proxy paused and the client's socket stayed full for 100 ms
    // (at most 10 s).
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (int idle = 0; idle < 20 && std::chrono::steady_clock::now() < deadline;) {
      const ssize_t w = send(c, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (w > 0) {
        uploaded += static_cast<size_t>(w);
        idle = 0;
      } else {
        EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << strerror(errno);
        if (engine_->counters().backpressure_pauses > 0) ++idle;
        std::this_thread::sleep_for(5ms);
      }
    }
    EXPECT_EQ(fcntl(c, F_SETFL, flags), 0);
    EXPECT_GT(uploaded, 1u << 20);
    EXPECT_GT(engine_->counters().backpressure_pauses, 0u);
    return up;
  }

  PoolLog pool_log_;
};

TEST_F(PoolTest, TheNextConnectionTakesTheParkedUpstreamInsteadOfConnecting) {
  start();
  int up = park_first();
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_FALSE(log_.first().upstream_reused);
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);

  // Same key: the same upstream socket, its session handed over.
  exchange(up, "GET 2\n", "R 2 END\n");
  EXPECT_FALSE(upstream_has_connection());
  EXPECT_EQ(engine_->counters().upstream_reused, 1u);
  EXPECT_EQ(pool_log_.adopted.load(), 1);
  EXPECT_EQ(pool_log_.last_adopted_session.load(), 0);
  ASSERT_TRUE(log_.wait_for(2));
  EXPECT_TRUE(log_.all()[1].upstream_reused);
  // And again: the session carries on.
  ASSERT_TRUE(wait_counter(&CounterSnapshot::upstream_pooled, 2));
  exchange(up, "GET 3\n", "R 3 END\n");
  EXPECT_FALSE(upstream_has_connection());
  EXPECT_EQ(pool_log_.last_adopted_session.load(), 0);
  EXPECT_EQ(pool_log_.sessions_made.load(), 1);
  close(up);
}

TEST_F(PoolTest, AClientFinBetweenResponsesParksTheUpstream) {
  start();
  int c1 = client();
  ASSERT_TRUE(write_all(c1, "GET 1\n"));
  int up = server();
  EXPECT_EQ(read_n(up, 6), "GET 1\n");
  ASSERT_TRUE(write_all(up, "R 1\n"));  // not the client's last
  EXPECT_EQ(read_n(c1, 4), "R 1\n");
  shutdown(c1, SHUT_WR);
  int err = 0;
  EXPECT_EQ(read_to_eof(c1, &err), "");
  close(c1);
  ASSERT_TRUE(wait_counter(&CounterSnapshot::upstream_pooled, 1));
  // The upstream never saw a FIN: it serves the next client.
  exchange(up, "GET 2\n", "R 2 END\n");
  EXPECT_FALSE(upstream_has_connection());
  close(up);
}

TEST_F(PoolTest, AnUpstreamThatCannotBeReusedIsClosed) {
  start();
  int c1 = client();
  ASSERT_TRUE(write_all(c1, "GET 1\n"));
  int up = server();
  EXPECT_EQ(read_n(up, 6), "GET 1\n");
  ASSERT_TRUE(write_all(up, "R 1 CLOSE END\n"));
  EXPECT_EQ(read_to_eof(c1), "R 1 CLOSE END\n");
  close(c1);
  EXPECT_EQ(read_to_eof(up), "");  // closed, not parked
  close(up);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(engine_->counters().upstream_pooled, 0u);
  // The next client gets a new upstream connection.
  int c2 = client();
  ASSERT_TRUE(write_all(c2, "GET 2\n"));
  int up2 = server();
  EXPECT_EQ(read_n(up2, 6), "GET 2\n");
  close(c2);
  close(up2);
}

TEST_F(PoolTest, AnUpstreamThatClosesWhileIdleIsDroppedAndTheNextClientConnects) {
  start();
  int up = park_first();
  close(up);  // the server times the idle connection out
  ASSERT_TRUE(wait_counter(&CounterSnapshot::upstream_pool_dropped, 1));
  EXPECT_EQ(engine_->counters().upstream_pool_idle, 0u);
  int c2 = client();
  ASSERT_TRUE(write_all(c2, "GET 2\n"));
  int up2 = server();
  EXPECT_EQ(read_n(up2, 6), "GET 2\n");
  EXPECT_EQ(engine_->counters().upstream_reused, 0u);
  close(c2);
  close(up2);
}

// A client whose request the upstream holds, then an upload the upstream
// never reads: the proxy's queue to it fills, it pauses reading the client,
// and the rest waits unread in the proxy's socket. Returns the upstream's end.
// The client's last response goes with MSG_MORE so the FIN rides on its
// final segment, while bytes the client sent are still unread, where a
// close() resets and drops unsent bytes: the FIN goes out first, and the
// client is drained until its own FIN: the response arrives whole, then EOF.
TEST_F(PoolTest, AResponseEndingTheClientArrivesWholeWhenItsUploadWasNotRead) {
  start();
  int c = client();
  int up = hold_an_unread_upload(c);
  // The upstream answers without reading it (an early 413, say): that ends
  // the client's connection.
  ASSERT_TRUE(write_all(up, "R 1 END\n"));
  int err = 0;
  EXPECT_EQ(read_to_eof(c, &err), "R 1 END\n");
  EXPECT_EQ(err, 0);
  close(c);
  close(up);
  ASSERT_TRUE(log_.wait_for(1));
}

// As above with a response larger than the client's socket takes at once:
// after the FIN the client is drained (read and discarded) like a local
// reply's until its own FIN, so nothing still unsent is lost to a reset, not
// even when the upstream then closes with the upload unread (its reset fails
// the proxy's send to it while the client is draining).
TEST_F(PoolTest, ALargeResponseEndingTheClientArrivesWholeWhenItsUploadWasNotRead) {
  start();
  int c = client();
  int up = hold_an_unread_upload(c);
  const std::string response = std::string(16 << 20, 'r') + "END\n";
  std::thread answer([&] { EXPECT_TRUE(write_all(up, response)); });
  // Read until the proxy has written the whole answer to the client's
  // socket (and so lingers), then stop reading with part of it unsent.
  std::string got;
  char buf[65536];
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (engine_->counters().lingered_after_end == 0 && std::chrono::steady_clock::now() < deadline) {
    const ssize_t r = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
    if (r > 0) got.append(buf, static_cast<size_t>(r));
    else std::this_thread::sleep_for(1ms);
  }
  answer.join();
  ASSERT_EQ(engine_->counters().lingered_after_end, 1u);
  close(up);  // the upload unread: the upstream's kernel resets
  std::this_thread::sleep_for(300ms);
  int err = 0;
  got += read_to_eof(c, &err);
  EXPECT_EQ(got.size(), response.size());
  EXPECT_TRUE(got == response);
  EXPECT_EQ(err, 0);  // FIN: neither the unread upload nor the upstream's reset reset it
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
  EXPECT_EQ(engine_->counters().upstream_pooled, 0u);  // its upload was cut short
}

// The same, but the upstream then closes with the upload unread (its kernel
// resets): its answer was complete, so the client still gets all of it and a
// FIN, not a reset (the held tail too); the upstream is only not parked.
TEST_F(PoolTest, AResponseEndingTheClientArrivesWholeWhenItsUpstreamThenResets) {
  start();
  int c = client();
  int up = hold_an_unread_upload(c);
  const std::string response = std::string(3000, 'r') + "END\n";
  ASSERT_TRUE(write_all(up, response));
  close(up);
  int err = 0;
  EXPECT_EQ(read_to_eof(c, &err), response);
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
  EXPECT_EQ(engine_->counters().upstream_pooled, 0u);
}

TEST_F(PoolTest, AnIdleUpstreamIsClosedAfterTheIdleTimeout) {
  start([](EngineConfig& cfg) { cfg.upstream_pool_idle_timeout = 20ms; });
  int up = park_first();
  // The proxy closes it: the server reads EOF.
  int err = 0;
  EXPECT_EQ(read_to_eof(up, &err), "");
  EXPECT_EQ(err, 0);
  EXPECT_EQ(engine_->counters().upstream_pool_expired, 1u);
  close(up);
}

// A filter's state may end a pooled upstream's stay sooner than the idle
// timeout (an HTTP upstream's maxConnectionDuration): closed then.
TEST_F(PoolTest, AStateThatExpiresEndsThePooledUpstreamAtItsTime) {
  pool_log_.session_lifetime_ns = 30'000'000;
  start([](EngineConfig& cfg) { cfg.upstream_pool_idle_timeout = std::chrono::seconds(600); });
  int up = park_first();
  int err = 0;
  EXPECT_EQ(read_to_eof(up, &err), "") << "closed at the state's expiry, not after 10 minutes";
  EXPECT_EQ(err, 0);
  EXPECT_EQ(engine_->counters().upstream_pool_expired, 1u);
  close(up);
}

// The verdict's own idle timeout (a DestinationRule's
// connectionPool.http.idleTimeout) beats the engine's, shorter or longer.
TEST_F(PoolTest, TheVerdictsIdleTimeoutIsTheOneThatCounts) {
  start([](EngineConfig& cfg) { cfg.upstream_pool_idle_timeout = std::chrono::seconds(600); },
        std::chrono::milliseconds(30));
  int up = park_first();
  int err = 0;
  EXPECT_EQ(read_to_eof(up, &err), "") << "closed after 30 ms, not 10 minutes";
  EXPECT_EQ(err, 0);
  EXPECT_EQ(engine_->counters().upstream_pool_expired, 1u);
  close(up);
}

// A drain tells each relaying connection's filter: one whose client is idle
// between responses ends it now with a FIN (not the deadline's reset), and
// its upstream is closed rather than parked.
TEST_F(PoolTest, StoppingEndsAClientIdleBetweenResponsesAtOnce) {
  start();
  int c = client();
  ASSERT_TRUE(write_all(c, "GET 1\n"));
  int up = server();
  EXPECT_EQ(read_n(up, 6), "GET 1\n");
  ASSERT_TRUE(write_all(up, "R 1\n"));  // a response that keeps the client
  EXPECT_EQ(read_n(c, 4), "R 1\n");
  const auto t0 = std::chrono::steady_clock::now();
  engine_->stop(5000ms);
  int err = 0;
  EXPECT_EQ(read_to_eof(c, &err), "");
  EXPECT_EQ(err, 0);  // a FIN
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);  // not at the deadline
  EXPECT_EQ(read_to_eof(up), "");
  engine_->wait();
  EXPECT_EQ(pool_log_.drains.load(), 1);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
  EXPECT_EQ(engine_->counters().upstream_pooled, 0u);
  engine_.reset();
  close(c);
  close(up);
}

TEST_F(PoolTest, StoppingClosesPooledUpstreams) {
  start();
  int up = park_first();
  engine_->stop(5000ms);
  EXPECT_EQ(read_to_eof(up), "");
  engine_->wait();
  engine_.reset();
  close(up);
}

}  // namespace
}  // namespace sluice::engine::testing
