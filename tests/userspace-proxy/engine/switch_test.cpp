// Switching a connection's upstream at a request boundary
// (FilterStatus::kNewUpstream, StreamFilter::on_new_upstream,
// ConnectionHandler::on_new_upstream) through real loopback sockets: the
// filter holds a request meant for another upstream, the engine parks or
// closes the old one, the handler decides again on the held bytes.

#include <gtest/gtest.h>

#include "tests/userspace-proxy/engine/test_util.h"

namespace sluice::engine::testing {
namespace {

// A line protocol standing in for HTTP: "GET <x>\n" goes to upstream x; a
// response ends with "END\n". A request for another upstream than the
// connection's is held until the responses before it are in, then the filter
// asks for a new upstream.
class SwitchFilter final : public StreamFilter {
 public:
  // Made with the connect verdict: the request it was decided on goes
  // upstream ahead of the filter, so a response is awaited from the start.
  explicit SwitchFilter(char target) : target_(target) {}
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    std::string_view s(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    if (dir == Direction::kUpstreamToDownstream) {
      if (out.forward(chunk.size()) != 0) return FilterStatus::kReset;
      if (s.size() >= 4 && s.substr(s.size() - 4) == "END\n") {
        waiting_ = false;
        if (!held_.empty()) return FilterStatus::kNewUpstream;
      }
      return FilterStatus::kContinue;
    }
    if (!held_.empty()) {  // switching: everything waits for the next upstream
      held_.append(s);
      out.skip(chunk.size());
      return FilterStatus::kContinue;
    }
    if (s.size() >= 5 && s.substr(0, 4) == "GET " && s[4] != target_) {
      held_.assign(s);
      out.skip(chunk.size());
      return waiting_ ? FilterStatus::kContinue : FilterStatus::kNewUpstream;
    }
    waiting_ = true;
    return out.forward(chunk.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  // The upstream's end (FIN or reset) before its response: like a retry,
  // the request goes to B; with `reply_on_end`, a local answer instead.
  FilterStatus on_end_stream(Direction dir, FilterOutput& out) override {
    if (dir != Direction::kUpstreamToDownstream || !waiting_) return FilterStatus::kContinue;
    if (reply_on_end) {
      static const std::string kReply = "503\n";
      out.inject(Direction::kUpstreamToDownstream, {reinterpret_cast<const uint8_t*>(kReply.data()), kReply.size()});
      return FilterStatus::kClose;
    }
    waiting_ = false;
    held_ = "GET B\n";
    return FilterStatus::kNewUpstream;
  }
  bool upstream_reusable() const override { return !waiting_; }
  static inline std::atomic<bool> reply_on_end{false};
  UpstreamStatePtr release_upstream() override { return nullptr; }
  bool adopt_upstream(UpstreamStatePtr state) override { return state == nullptr; }
  bool on_new_upstream(FilterOutput& out) override {
    const std::span<const uint8_t> held(reinterpret_cast<const uint8_t*>(held_.data()), held_.size());
    out.inject(Direction::kDownstreamToUpstream, held);
    held_.clear();
    return false;
  }

 private:
  char target_;
  bool waiting_ = true;
  std::string held_;
};

class SwitchTest : public LoopbackEngine<> {
 protected:
  void SetUp() override {
    LoopbackEngine<>::SetUp();
    second_fd_ = listen_loopback(&second_port_, 128);
    ASSERT_GE(second_fd_, 0);
  }
  void TearDown() override {
    LoopbackEngine<>::TearDown();
    if (second_fd_ >= 0) close(second_fd_);
  }
  // Upstream 'A' is the fixture's listener, 'B' the second one. `pooled`
  // gives connections a pool key per upstream; `refuse_b` closes (with a
  // local response) instead of going to B on a new decision.
  void start(bool pooled, bool refuse_b = false) {
    const SocketAddress a = SocketAddress::loopback4(upstream_port_);
    const SocketAddress b = SocketAddress::loopback4(second_port_);
    std::atomic<int>* decisions = &new_upstream_calls_;
    auto decide = [a, b, pooled](std::span<const uint8_t> pending) {
      std::string_view s(reinterpret_cast<const char*>(pending.data()), pending.size());
      if (s.size() < 6 || s.find('\n') == std::string_view::npos) return Verdict::need_more(10s);
      const char t = s[4];
      const SocketAddress& to = t == 'B' ? b : a;
      Verdict v = Verdict::connect(to, std::make_unique<SwitchFilter>(t));
      if (pooled) return std::move(v).with_pool(std::string("line|") + t);
      return v;
    };
    start_engine([decide, decisions, refuse_b](ScriptedHandler& h) {
      h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
      h.data_fn = [decide](Connection&, std::span<const uint8_t> pending) { return decide(pending); };
      h.new_upstream_fn = [decide, decisions, refuse_b](Connection&, std::span<const uint8_t> pending) {
        ++*decisions;
        static const std::string kNo = "NO\n";
        if (refuse_b) {
          return Verdict::close({reinterpret_cast<const uint8_t*>(kNo.data()), kNo.size()});
        }
        return decide(pending);
      };
    });
  }
  // A client whose first request A answered; returns A's end.
  int answered_a(int c) {
    EXPECT_TRUE(write_all(c, "GET A\n"));
    int a = server();
    EXPECT_EQ(read_n(a, 6), "GET A\n");
    EXPECT_TRUE(write_all(a, "ra END\n"));
    EXPECT_EQ(read_n(c, 7), "ra END\n");
    return a;
  }
  // A client's request A, whose upstream then resets.
  void reset_a(int c) {
    ASSERT_TRUE(write_all(c, "GET A\n"));
    int a = server();
    EXPECT_EQ(read_n(a, 6), "GET A\n");
    linger lg{1, 0};
    setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(a);
  }
  int second() {
    int fd = accept_one(second_fd_);
    EXPECT_GE(fd, 0);
    set_rcvtimeo(fd, kHang);
    return fd;
  }

  uint16_t second_port_ = 0;
  int second_fd_ = -1;
  std::atomic<int> new_upstream_calls_{0};
};

TEST_F(SwitchTest, ALaterRequestGoesToItsOwnUpstreamAndTheFirstIsParked) {
  start(/*pooled=*/true);
  int c = client();
  int a = answered_a(c);

  ASSERT_TRUE(write_all(c, "GET B\n"));
  int b = second();
  EXPECT_EQ(read_n(b, 6), "GET B\n");
  ASSERT_TRUE(write_all(b, "rb END\n"));
  EXPECT_EQ(read_n(c, 7), "rb END\n");
  EXPECT_TRUE(wait_counter(&CounterSnapshot::upstream_pooled, 1));  // A, at the switch

  // Back to A: the parked connection carries it (no new accept on A).
  ASSERT_TRUE(write_all(c, "GET A\n"));
  EXPECT_EQ(read_n(a, 6), "GET A\n");
  EXPECT_FALSE(upstream_has_connection());
  ASSERT_TRUE(write_all(a, "ra2 END\n"));
  EXPECT_EQ(read_n(c, 8), "ra2 END\n");
  EXPECT_EQ(engine_->counters().upstream_reused, 1u);
  EXPECT_EQ(engine_->counters().upstream_switches, 2u);
  EXPECT_EQ(new_upstream_calls_.load(), 2);

  shutdown(c, SHUT_WR);
  int err = 0;
  EXPECT_EQ(read_to_eof(a, &err), "");  // the client's FIN reaches its current upstream
  close(a);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().upstream_switches, 2);
  EXPECT_TRUE(log_.first().upstream_reused);
  close(b);
}

TEST_F(SwitchTest, WithoutAPoolKeyTheOldUpstreamIsClosed) {
  start(/*pooled=*/false);
  int c = client();
  int a = answered_a(c);
  ASSERT_TRUE(write_all(c, "GET B\n"));
  int b = second();
  EXPECT_EQ(read_n(b, 6), "GET B\n");
  int err = 0;
  EXPECT_EQ(read_to_eof(a, &err), "");  // A is closed, without a byte of B's request
  EXPECT_EQ(err, 0);
  ASSERT_TRUE(write_all(b, "rb END\n"));
  EXPECT_EQ(read_n(c, 7), "rb END\n");
  EXPECT_EQ(engine_->counters().upstream_pooled, 0u);
  close(a);
  close(b);
  close(c);
}

TEST_F(SwitchTest, ARequestPipelinedBehindAResponseWaitsForIt) {
  start(/*pooled=*/true);
  int c = client();
  ASSERT_TRUE(write_all(c, "GET A\n"));
  int a = server();
  EXPECT_EQ(read_n(a, 6), "GET A\n");
  // B's request (and bytes after it) arrive before A's response.
  ASSERT_TRUE(write_all(c, "GET B\n"));
  ASSERT_TRUE(write_all(c, "more\n"));
  std::this_thread::sleep_for(50ms);  // not needed for correctness: lets the bytes land first
  pollfd waiting{second_fd_, POLLIN, 0};
  EXPECT_EQ(poll(&waiting, 1, 0), 0);  // B is not connected before A answered
  ASSERT_TRUE(write_all(a, "ra END\n"));
  EXPECT_EQ(read_n(c, 7), "ra END\n");
  int b = second();
  EXPECT_EQ(read_n(b, 11), "GET B\nmore\n");
  ASSERT_TRUE(write_all(b, "rb END\n"));
  EXPECT_EQ(read_n(c, 7), "rb END\n");
  close(a);
  close(b);
  close(c);
}

TEST_F(SwitchTest, AClientFinAfterTheSwitchedRequestReachesTheNewUpstream) {
  start(/*pooled=*/true);
  int c = client();
  int a = answered_a(c);
  ASSERT_TRUE(write_all(c, "GET B\n"));
  shutdown(c, SHUT_WR);
  int b = second();
  int err = 0;
  EXPECT_EQ(read_to_eof(b, &err), "GET B\n");  // the request, then the FIN
  EXPECT_EQ(err, 0);
  ASSERT_TRUE(write_all(b, "rb END\n"));
  close(b);
  EXPECT_EQ(read_to_eof(c, &err), "rb END\n");
  EXPECT_EQ(err, 0);
  close(a);
  close(c);
}

TEST_F(SwitchTest, TheHandlersNewDecisionMayAnswerLocally) {
  start(/*pooled=*/false, /*refuse_b=*/true);
  int c = client();
  int a = answered_a(c);
  ASSERT_TRUE(write_all(c, "GET B\n"));
  shutdown(c, SHUT_WR);  // the local answer's linger ends at the client's FIN
  int err = 0;
  EXPECT_EQ(read_to_eof(c, &err), "NO\n");
  EXPECT_EQ(err, 0);
  EXPECT_EQ(read_to_eof(a, &err), "");
  pollfd p{second_fd_, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);  // nothing went to B
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kLocalClose);
  close(a);
  close(c);
}

// An upstream reset goes to the filter first (Envoy retries a reset or
// answers 503 for it rather than resetting the client).
TEST_F(SwitchTest, AnUpstreamResetReachesTheFilterWhichMayRetryElsewhere) {
  SwitchFilter::reply_on_end = false;
  start(/*pooled=*/true);
  int c = client();
  reset_a(c);
  int b = second();
  EXPECT_EQ(read_n(b, 6), "GET B\n");
  ASSERT_TRUE(write_all(b, "rb END\n"));
  EXPECT_EQ(read_n(c, 7), "rb END\n");
  EXPECT_EQ(engine_->counters().upstream_pooled, 0u);  // the reset one is not kept
  close(b);
  close(c);
}

TEST_F(SwitchTest, AnUpstreamResetAnsweredLocallyReachesTheClientWithoutAReset) {
  SwitchFilter::reply_on_end = true;
  start(/*pooled=*/false);
  int c = client();
  reset_a(c);
  int err = 0;
  EXPECT_EQ(read_to_eof(c, &err), "503\n");
  EXPECT_EQ(err, 0);  // FIN, not ECONNRESET
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kUpstreamReset);
  SwitchFilter::reply_on_end = false;
  close(c);
}

}  // namespace
}  // namespace sluice::engine::testing
