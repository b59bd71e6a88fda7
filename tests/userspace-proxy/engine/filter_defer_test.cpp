// Filters during sniffing (Verdict::need_more with a filter), held bytes
// (StreamFilter::on_start) and deferred decisions (Verdict::defer + Waker).
// Real engine, real loopback sockets; waits are bounded only to turn a hang
// into a failure.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <random>

#include "tests/userspace-proxy/engine/test_util.h"

namespace sluice::engine::testing {
namespace {

std::string str(std::span<const uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
std::span<const uint8_t> bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

constexpr uint8_t kKey = 0x5a;
std::string xored(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(static_cast<uint8_t>(ch) ^ kKey);
  return out;
}

// Thread-safe event log shared by handlers and filters (which run on worker
// threads) and the test.
class Recorder {
 public:
  void add(std::string e) {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  std::vector<std::string> events() {
    std::lock_guard<std::mutex> l(mu_);
    return events_;
  }
  size_t count(std::string_view prefix) {
    std::lock_guard<std::mutex> l(mu_);
    return count_locked(prefix);
  }
  // Waits until `n` events start with `prefix`; false on hang.
  bool wait_count(std::string_view prefix, size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, kHang, [&] { return count_locked(prefix) >= n; });
  }
  // Waits until the payloads of the events starting with `prefix`, joined,
  // equal `want` (chunking of a stream may vary); false on hang.
  bool wait_joined(std::string_view prefix, std::string_view want) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, kHang, [&] {
      std::string joined;
      for (const auto& e : events_) {
        if (e.starts_with(prefix)) joined += e.substr(prefix.size());
      }
      return joined == want;
    });
  }

 private:
  size_t count_locked(std::string_view prefix) const {
    return static_cast<size_t>(std::count_if(events_.begin(), events_.end(),
                                             [&](const std::string& e) { return e.starts_with(prefix); }));
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

// Wakers handed out by handlers, collected for the test thread.
class WakerBox {
 public:
  void add(Waker w) {
    std::lock_guard<std::mutex> l(mu_);
    wakers_.push_back(std::move(w));
    cv_.notify_all();
  }
  bool wait_for(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, kHang, [&] { return wakers_.size() >= n; });
  }
  std::vector<Waker> all() {
    std::lock_guard<std::mutex> l(mu_);
    return wakers_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Waker> wakers_;
};

// A toy secure channel, shaped like TLS termination: the client opens with
// "HELLO\n", answered at once with "WELCOME\n" and no plaintext; after that
// every byte is XORed with kKey in both directions. Any other opening line
// gets "ALERT\n" and kClose; "RESET\n" gets kReset. At the end of the
// upstream->downstream stream it sends an encrypted "BYE\n" (close_notify).
// With take_held, on_start prefixes the held plaintext with "PRE:".
class XorFilter final : public StreamFilter {
 public:
  explicit XorFilter(std::shared_ptr<Recorder> rec = nullptr, bool take_held = false)
      : rec_(std::move(rec)), take_held_(take_held) {}

  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (dir == Direction::kDownstreamToUpstream && !open_) {
      hello_ += str(chunk);
      size_t eol = hello_.find('\n');
      if (eol == std::string::npos) return FilterStatus::kContinue;
      std::string line = hello_.substr(0, eol);
      std::string rest = hello_.substr(eol + 1);
      if (line == "RESET") return FilterStatus::kReset;
      if (line != "HELLO") {
        out.inject(Direction::kUpstreamToDownstream, bytes("ALERT\n"));
        return FilterStatus::kClose;
      }
      open_ = true;
      if (out.inject(Direction::kUpstreamToDownstream, bytes("WELCOME\n")) < 0) return FilterStatus::kReset;
      std::string plain = xored(rest);
      return out.inject(dir, bytes(plain)) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
    }
    std::string t = xored(str(chunk));
    return out.inject(dir, bytes(t)) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }
  FilterStatus on_end_stream(Direction dir, FilterOutput& out) override {
    if (rec_) rec_->add(dir == Direction::kDownstreamToUpstream ? "filter-end:d2u" : "filter-end:u2d");
    if (dir == Direction::kUpstreamToDownstream) out.inject(dir, bytes(xored("BYE\n")));
    return FilterStatus::kContinue;
  }
  bool takes_held_bytes() const override { return take_held_; }
  FilterStatus on_start(std::span<const uint8_t> held, FilterOutput& out) override {
    if (rec_) rec_->add("filter-start:" + str(held));
    out.inject(Direction::kDownstreamToUpstream, bytes("PRE:"));
    return out.forward(held.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }

 private:
  std::shared_ptr<Recorder> rec_;
  bool take_held_;
  bool open_ = false;
  std::string hello_;
};

// Takes the held bytes and replaces them with "[" + upper(held) + "]"; later
// chunks pass through (zero-copy forward).
class BracketFilter final : public StreamFilter {
 public:
  explicit BracketFilter(std::shared_ptr<Recorder> rec) : rec_(std::move(rec)) {}
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (dir == Direction::kDownstreamToUpstream && rec_->count("filter-data") == 0) rec_->add("filter-data");
    return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }
  FilterStatus on_end_stream(Direction dir, FilterOutput&) override {
    rec_->add(dir == Direction::kDownstreamToUpstream ? "filter-end:d2u" : "filter-end:u2d");
    return FilterStatus::kContinue;
  }
  bool takes_held_bytes() const override { return true; }
  FilterStatus on_start(std::span<const uint8_t> held, FilterOutput& out) override {
    rec_->add("filter-start:" + str(held));
    std::string up = "[" + str(held) + "]";
    for (char& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return out.inject(Direction::kDownstreamToUpstream, bytes(up)) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }

 private:
  std::shared_ptr<Recorder> rec_;
};

// Origination-style: nothing is held (connect at accept), the filter speaks
// first in both directions.
class PreambleFilter final : public StreamFilter {
 public:
  FilterStatus on_data(Direction, std::span<const uint8_t> chunk, FilterOutput& out) override {
    return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }
  bool takes_held_bytes() const override { return true; }
  FilterStatus on_start(std::span<const uint8_t> held, FilterOutput& out) override {
    if (!held.empty()) return FilterStatus::kReset;
    out.inject(Direction::kDownstreamToUpstream, bytes("PREAMBLE\n"));
    out.inject(Direction::kUpstreamToDownstream, bytes("HI\n"));
    return FilterStatus::kContinue;
  }
};

// Refuses at on_start: tells the client why, then closes.
class RefusingFilter final : public StreamFilter {
 public:
  FilterStatus on_data(Direction, std::span<const uint8_t> chunk, FilterOutput& out) override {
    return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }
  bool takes_held_bytes() const override { return true; }
  FilterStatus on_start(std::span<const uint8_t> held, FilterOutput& out) override {
    out.forward(held.size());  // dropped with the connection: no upstream
    out.inject(Direction::kUpstreamToDownstream, bytes("NO\n"));
    return FilterStatus::kClose;
  }
};

// Doubles every byte (hex): plaintext grows faster than what was read.
class HexFilter final : public StreamFilter {
 public:
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    static const char kDigits[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t b : chunk) {
      hex.push_back(kDigits[b >> 4]);
      hex.push_back(kDigits[b & 15]);
    }
    return out.inject(dir, bytes(hex)) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }
};

// Passes everything through and records that it saw bytes / the FIN, so a
// test knows the engine read them while the connection was deferred.
class ObserverFilter final : public StreamFilter {
 public:
  explicit ObserverFilter(std::shared_ptr<Recorder> rec) : rec_(std::move(rec)) {}
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (dir == Direction::kDownstreamToUpstream) rec_->add("filter-data:" + str(chunk));
    return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }
  FilterStatus on_end_stream(Direction dir, FilterOutput&) override {
    rec_->add(dir == Direction::kDownstreamToUpstream ? "filter-end:d2u" : "filter-end:u2d");
    return FilterStatus::kContinue;
  }

 private:
  std::shared_ptr<Recorder> rec_;
};

// Arms its timer (20 ms) when the client's bytes go upstream, cancels it on
// the upstream's answer; when it fires, tells the client "LATE" and closes.
class DeadlineFilter final : public StreamFilter {
 public:
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    out.set_timer(dir == Direction::kDownstreamToUpstream ? 20ms : 0ms);
    return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
  }
  FilterStatus on_timer(FilterOutput& out) override {
    out.inject(Direction::kUpstreamToDownstream, bytes("LATE\n"));
    return FilterStatus::kClose;
  }
  FilterStatus on_connect_failed(FilterOutput& out, bool timed_out) override {
    out.inject(Direction::kUpstreamToDownstream, bytes(timed_out ? "NO UPSTREAM (timeout)\n" : "NO UPSTREAM\n"));
    return FilterStatus::kClose;
  }
};


// Holds the client's bytes (and, through upstream_end_held, its FIN) until
// the upstream says "GO", as a tunnel waits for its proxy's answer; "NO"
// closes the connection, still holding.
class HoldUntilGoFilter final : public StreamFilter {
 public:
  bool upstream_end_held() const override { return !open_; }
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (open_) return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
    if (dir == Direction::kDownstreamToUpstream) {
      held_.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
      return FilterStatus::kContinue;
    }
    if (chunk.size() == 2 && chunk[0] == 'N') return FilterStatus::kClose;
    open_ = true;  // the upstream's first bytes: "GO", not for the client
    out.inject(Direction::kDownstreamToUpstream, bytes(held_));
    return FilterStatus::kContinue;
  }

 private:
  bool open_ = false;
  std::string held_;
};

class FilterDeferTest : public LoopbackEngine<> {
 protected:
  void start(std::function<void(ScriptedHandler&)> setup, std::function<void(EngineConfig&)> tweak = nullptr,
             unsigned workers = 1) {
    start_engine(std::move(setup), std::move(tweak), workers);
  }
  // An engine whose only upstream never completes a connect (its listener's
  // accept queue is full: SYNs are dropped) and whose connect timeout is
  // 30 s; each connection gets `make()`'s filter.
  void start_with_hanging_upstream(std::function<StreamFilterPtr()> make) {
    hanging_fd_ = listen_loopback(&hanging_port_, 0);
    hanging_fillers_ = fill_accept_queue(hanging_port_);
    start(
        [port = hanging_port_, make](ScriptedHandler& h) {
          h.upstreams = {SocketAddress::loopback4(port)};
          h.filter_fn = make;
        },
        [](EngineConfig& cfg) { cfg.connect_timeout = 30s; });
  }
  ~FilterDeferTest() override {
    for (int f : hanging_fillers_) close(f);
    if (hanging_fd_ >= 0) close(hanging_fd_);
  }

 private:
  uint16_t hanging_port_ = 0;
  int hanging_fd_ = -1;
  std::vector<int> hanging_fillers_;
};

// ------------------------------------------------------------ sniffing filter

TEST_F(FilterDeferTest, SniffingFilterRepliesAtOnceAndTheHandlerSeesPlaintext) {
  auto rec = std::make_shared<Recorder>();
  start([rec](ScriptedHandler& h) {
    h.accept_fn = [rec](Connection&, const AcceptInfo&) {
      return Verdict::need_more(10s, std::make_unique<XorFilter>(rec));
    };
    h.data_fn = [rec, up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      rec->add("data:" + str(pending));
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      return Verdict::connect(std::span<const SocketAddress>(up));  // no filter: the XorFilter stays
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "HELLO\n"));
  // Injected toward the client while sniffing: no upstream exists yet.
  EXPECT_EQ(read_n(c, 8), "WELCOME\n");
  EXPECT_FALSE(upstream_has_connection());
  ASSERT_TRUE(rec->wait_count("data:", 1));
  EXPECT_EQ(rec->events().front(), "data:");  // a handshake-only chunk is still reported
  ASSERT_TRUE(write_all(c, xored("GET /x")));
  ASSERT_TRUE(write_all(c, xored("\n")));
  int s = server();
  EXPECT_EQ(read_n(s, 7), "GET /x\n");
  EXPECT_EQ(rec->events().back(), "data:GET /x\n");
  // The filter stays for the rest of the connection, both ways.
  ASSERT_TRUE(write_all(s, "OK\n"));
  EXPECT_EQ(read_n(c, 3), xored("OK\n"));
  ASSERT_TRUE(write_all(c, xored("more")));
  EXPECT_EQ(read_n(s, 4), "more");
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "");
  close(s);
  EXPECT_EQ(read_to_eof(c, &err), xored("BYE\n"));
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
  EXPECT_EQ(rec->count("filter-end:d2u"), 1u);
  EXPECT_EQ(rec->count("filter-end:u2d"), 1u);
}

TEST_F(FilterDeferTest, FilterCloseWhileSniffingFlushesItsAlertThenFin) {
  auto rec = std::make_shared<Recorder>();
  start([rec](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<XorFilter>()); };
    h.data_fn = [rec](Connection&, std::span<const uint8_t> pending) {
      rec->add("data:" + str(pending));
      return Verdict::need_more(10s);
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "BOGUS\n"));
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "ALERT\n");
  EXPECT_EQ(err, 0);  // FIN after the alert, not RST
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose);
  EXPECT_EQ(rec->count("data:"), 0u);  // the handler was not asked about a closed stream
  EXPECT_FALSE(upstream_has_connection());
}

TEST_F(FilterDeferTest, FilterResetWhileSniffingResets) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<XorFilter>()); };
    h.data_fn = [](Connection&, std::span<const uint8_t>) { return Verdict::need_more(10s); };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "RESET\n"));
  int err = 0;
  EXPECT_EQ(read_to_eof(c, &err), "");
  EXPECT_EQ(err, -ECONNRESET);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose);
}

TEST_F(FilterDeferTest, LocalResponseGoesThroughTheSniffingFilter) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<XorFilter>()); };
    h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      return Verdict::close(bytes("DENIED\n"));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "HELLO\n"));
  EXPECT_EQ(read_n(c, 8), "WELCOME\n");
  ASSERT_TRUE(write_all(c, xored("GET /secret\n")));
  int err = -1;
  // Encrypted by the filter, then its end-of-stream record, then FIN.
  EXPECT_EQ(read_to_eof(c, &err), xored("DENIED\n") + xored("BYE\n"));
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kLocalClose);
  EXPECT_EQ(engine_->counters().local_responses, 1u);
}

// Verdict::respond through the sniffing filter (a TLS server's shape): each
// answer is encrypted without the end-of-stream record, the connection goes
// on (the next request is decided too), and when it ends the record comes.
TEST_F(FilterDeferTest, AKeptLocalAnswerGoesThroughTheSniffingFilter) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<XorFilter>()); };
    h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
      static thread_local std::string reply;
      const std::string p = str(pending);
      const size_t nl = p.find('\n');
      if (nl == std::string::npos) return Verdict::need_more(10s);
      reply = "DENIED " + p.substr(0, nl) + "\n";
      return Verdict::respond(bytes(reply), nl + 1, 0ms);
    };
    h.eof_fn = [](Connection&, std::span<const uint8_t>) { return Verdict::close(); };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "HELLO\n"));
  EXPECT_EQ(read_n(c, 8), "WELCOME\n");
  ASSERT_TRUE(write_all(c, xored("GET /1\n")));
  EXPECT_EQ(read_n(c, 14), xored("DENIED GET /1\n"));
  ASSERT_TRUE(write_all(c, xored("GET /2\n")));
  EXPECT_EQ(read_n(c, 14), xored("DENIED GET /2\n"));
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), xored("BYE\n"));
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(engine_->counters().local_responses, 2u);
}

// A client that sends its request and half-closes while the handler waits
// (deferred): the kept answer goes, then the filter's end-of-stream record
// and a FIN; nothing is cut.
TEST_F(FilterDeferTest, AKeptAnswerToAClientThatLeftWhileDeferredIsFlushedThenFin) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<XorFilter>()); };
    h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      return Verdict::defer(100ms);
    };
    h.timeout_fn = [](Connection&, std::span<const uint8_t> pending) {
      static const std::string reply = "ANSWER\n";
      const size_t nl = str(pending).find('\n');
      return Verdict::respond(bytes(reply), nl + 1, 0ms);
    };
    h.eof_fn = [](Connection&, std::span<const uint8_t>) {
      ADD_FAILURE() << "the FIN came while deferred: the answer ends the connection";
      return Verdict::close();
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "HELLO\n"));
  EXPECT_EQ(read_n(c, 8), "WELCOME\n");
  ASSERT_TRUE(write_all(c, xored("GET /x\n")));
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), xored("ANSWER\n") + xored("BYE\n"));
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kLocalClose);
}

// Verdict::defer(...).ended_by_eof(): a FIN while deferred ends the wait at
// once (a queued request whose client went away gives its place up),
// instead of waiting for the wake or the timeout.
TEST_F(FilterDeferTest, AFinEndsADeferThatAsksForIt) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      return Verdict::defer(10s).ended_by_eof();
    };
    h.timeout_fn = [](Connection&, std::span<const uint8_t>) {
      ADD_FAILURE() << "the FIN should have ended the wait";
      return Verdict::close();
    };
    h.eof_fn = [](Connection&, std::span<const uint8_t> pending) {
      static std::string reply;
      reply = "GONE " + str(pending);
      return Verdict::close(bytes(reply));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "GET /x\n"));
  std::this_thread::sleep_for(50ms);  // deferred by now
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "GONE GET /x\n");
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kLocalClose);
}

// A FIN read during an earlier, plain wait ends a later defer that asks for
// it at once (it would never come again).
TEST_F(FilterDeferTest, AFinReadBeforeADeferThatAsksForItEndsItAtOnce) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      return Verdict::defer(150ms);  // a DNS wait, say: the FIN is remembered
    };
    auto waits = std::make_shared<int>(0);
    h.timeout_fn = [waits](Connection&, std::span<const uint8_t>) {
      static const std::string reply = "TIMED OUT\n";
      if ((*waits)++ == 0) return Verdict::defer(2s).ended_by_eof();  // then a queue
      return Verdict::close(bytes(reply));  // the queue's wait ran out: the FIN was not acted on
    };
    h.eof_fn = [](Connection&, std::span<const uint8_t>) {
      static const std::string reply = "GONE\n";
      return Verdict::close(bytes(reply));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "GET /x\n"));
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "GONE\n");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
}

// Reading stopped at max_sniff_bytes while the handler waited (deferred);
// a kept answer leaves less than that pending: reading resumes, so the rest
// of the next request arrives and is answered.
TEST_F(FilterDeferTest, ReadingResumesAfterAKeptAnswerToADeferredRequest) {
  start(
      [](ScriptedHandler& h) {
        h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
        h.data_fn = [](Connection& c, std::span<const uint8_t> pending) {
          static const std::string reply = "ok\n";
          const std::string p = str(pending);
          const size_t nl = p.find('\n');
          if (nl == std::string::npos) return Verdict::need_more(60s);
          if (c.context() == 0) {
            c.set_context(1);
            return Verdict::defer(300ms);  // the first line waits; more arrives meanwhile
          }
          return Verdict::respond(bytes(reply), nl + 1, 0ms);
        };
        // Only the deferral times out (once): the first line's answer.
        h.timeout_fn = [](Connection& c, std::span<const uint8_t> pending) {
          static const std::string reply = "ok\n";
          EXPECT_EQ(c.context(), 1u);
          c.set_context(2);
          const size_t nl = str(pending).find('\n');
          EXPECT_NE(nl, std::string::npos);
          return nl == std::string::npos ? Verdict::close() : Verdict::respond(bytes(reply), nl + 1, 0ms);
        };
      },
      [](EngineConfig& cfg) { cfg.max_sniff_bytes = 4096; });
  int c = client();
  ASSERT_TRUE(write_all(c, std::string(3000, 'a') + "\n"));
  std::this_thread::sleep_for(20ms);
  // The next line's start, past the limit: the reading pauses.
  ASSERT_TRUE(write_all(c, std::string(3000, 'b')));
  EXPECT_EQ(read_n(c, 3), "ok\n");
  ASSERT_TRUE(write_all(c, "\n"));
  EXPECT_EQ(read_n(c, 3), "ok\n");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(engine_->counters().local_responses, 2u);
}

TEST_F(FilterDeferTest, FilterInstalledAfterSniffingGetsTheBytesAlreadyRead) {
  // The handler looks at the raw opening (as it would at a ClientHello's SNI)
  // and only then installs the filter: the filter must see those bytes, and
  // plaintext they decode to must reach the handler without waiting for more.
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [up = h.upstreams](Connection& c, std::span<const uint8_t> pending) {
      std::string p = str(pending);
      if (c.context() == 0) {
        // Raw: wait for the opening line and the first encrypted line.
        size_t first = p.find('\n');
        if (first == std::string::npos || p.find(xored("\n"), first + 1) == std::string::npos) {
          return Verdict::need_more(10s);
        }
        c.set_context(1);
        return Verdict::need_more(10s, std::make_unique<XorFilter>());
      }
      EXPECT_EQ(p, "GET /x\n");
      return Verdict::connect(std::span<const SocketAddress>(up));
    };
    h.timeout_fn = [](Connection&, std::span<const uint8_t>) { return Verdict::close(); };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "HELLO\n" + xored("GET /x\n")));
  EXPECT_EQ(read_n(c, 8), "WELCOME\n");
  int s = server();
  EXPECT_EQ(read_n(s, 7), "GET /x\n");
  close(s);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(engine_->counters().detection_timeouts, 0u);
}

TEST_F(FilterDeferTest, SniffLimitCountsThePlaintextTheFilterProduces) {
  start(
      [](ScriptedHandler& h) {
        h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<HexFilter>()); };
        h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
          EXPECT_LE(pending.size(), 4096u);
          return Verdict::need_more(10s);
        };
      },
      [](EngineConfig& cfg) { cfg.max_sniff_bytes = 4096; });
  int c = client();
  ASSERT_TRUE(write_all(c, std::string(3000, 'x')));  // under the limit raw, over it as plaintext
  int err = 0;
  read_to_eof(c, &err);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kSniffLimit);
}

TEST_F(FilterDeferTest, ConnectCarryingASecondFilterIsAnInternalError) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<XorFilter>()); };
    h.data_fn = [up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      return Verdict::connect(up.front(), std::make_unique<XorFilter>());
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "HELLO\n"));
  EXPECT_EQ(read_n(c, 8), "WELCOME\n");
  ASSERT_TRUE(write_all(c, xored("GET\n")));
  int err = 0;
  read_to_eof(c, &err);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kInternalError);
  EXPECT_FALSE(upstream_has_connection());
}

TEST_F(FilterDeferTest, NeedMoreCarryingASecondFilterIsAnInternalError) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s, std::make_unique<HexFilter>()); };
    h.data_fn = [](Connection&, std::span<const uint8_t>) { return Verdict::need_more(10s, std::make_unique<HexFilter>()); };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "x"));
  int err = 0;
  read_to_eof(c, &err);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kInternalError);
}

// ------------------------------------------------------------ held bytes

TEST_F(FilterDeferTest, OnStartReplacesTheHeldBytesAheadOfPipelinedWrites) {
  auto rec = std::make_shared<Recorder>();
  auto last_pending = std::make_shared<std::string>();  // written on the worker, read after the relay
  start(
      [rec, last_pending](ScriptedHandler& h) {
        h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
        h.data_fn = [rec, last_pending, up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
          *last_pending = str(pending);
          if (pending.size() < 10) return Verdict::need_more(10s);
          return Verdict::connect(up.front(), std::make_unique<BracketFilter>(rec));
        };
      },
      // Room for any first two reads, so the handler's view is never cut
      // short and must equal the held bytes.
      [](EngineConfig& cfg) { cfg.max_sniff_bytes = 64 * 1024; });
  // A lower-case pattern, so the bracketed (upper-cased) part is visible.
  std::string sent;
  for (int i = 0; sent.size() < 256 * 1024; ++i) sent += "abcdefghijklmnopqrstuvwxyz-" + std::to_string(i) + "\n";
  int c = client();
  // Pipelined: the client never waits, so bytes arrive while sniffing, while
  // connecting and while relaying.
  std::thread writer([c, &sent] {
    write_all(c, sent.substr(0, 4));
    for (size_t off = 4; off < sent.size(); off += 4096) write_all(c, sent.substr(off, 4096));
    shutdown(c, SHUT_WR);
  });
  int s = server();
  int err = -1;
  std::string got = read_to_eof(s, &err);
  writer.join();
  EXPECT_EQ(err, 0);
  close(s);
  EXPECT_EQ(read_to_eof(c, &err), "");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
  auto events = rec->events();
  ASSERT_FALSE(events.empty());
  ASSERT_TRUE(events.front().starts_with("filter-start:"));  // before any on_data
  std::string held = events.front().substr(strlen("filter-start:"));
  EXPECT_EQ(held, *last_pending);  // exactly what the handler decided on
  ASSERT_GE(held.size(), 10u);
  ASSERT_EQ(sent.substr(0, held.size()), held);
  std::string upper = held;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string want = "[" + upper + "]" + sent.substr(held.size());
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "relayed stream differs from the expected replacement + rest";
  EXPECT_EQ(rec->count("filter-start:"), 1u);
}

TEST_F(FilterDeferTest, OnStartWithNothingHeldSpeaksFirstBothWays) {
  start([](ScriptedHandler& h) { h.filter_fn = [] { return std::make_unique<PreambleFilter>(); }; });
  int c = client();
  int s = server();
  EXPECT_EQ(read_n(s, 9), "PREAMBLE\n");  // the client has sent nothing
  EXPECT_EQ(read_n(c, 3), "HI\n");
  ASSERT_TRUE(write_all(c, "x"));
  EXPECT_EQ(read_n(s, 1), "x");
  close(c);
  close(s);
  ASSERT_TRUE(log_.wait_for(1));
}

TEST_F(FilterDeferTest, OnStartCloseFlushesTowardTheClientAndNeverConnects) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [up = h.upstreams](Connection&, std::span<const uint8_t>) {
      return Verdict::connect(up.front(), std::make_unique<RefusingFilter>());
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "hello"));
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "NO\n");
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose);
  EXPECT_EQ(engine_->counters().connect_attempts, 0u);
  EXPECT_FALSE(upstream_has_connection());
}

TEST_F(FilterDeferTest, SniffingFilterThatTakesHeldBytesGetsItsOwnPlaintext) {
  auto rec = std::make_shared<Recorder>();
  start([rec](ScriptedHandler& h) {
    h.accept_fn = [rec](Connection&, const AcceptInfo&) {
      return Verdict::need_more(10s, std::make_unique<XorFilter>(rec, /*take_held=*/true));
    };
    h.data_fn = [up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      return Verdict::connect(std::span<const SocketAddress>(up));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "HELLO\n"));
  EXPECT_EQ(read_n(c, 8), "WELCOME\n");
  ASSERT_TRUE(write_all(c, xored("GET /x\n")));
  int s = server();
  EXPECT_EQ(read_n(s, 11), "PRE:GET /x\n");
  ASSERT_TRUE(write_all(c, xored("later")));
  EXPECT_EQ(read_n(s, 5), "later");
  close(c);
  close(s);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(rec->count("filter-start:GET /x\n"), 1u);
}

TEST_F(FilterDeferTest, FinBeforeTheDecisionReachesTheFilterAfterOnStart) {
  auto rec = std::make_shared<Recorder>();
  start([rec](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [](Connection&, std::span<const uint8_t>) { return Verdict::need_more(10s); };
    h.eof_fn = [rec, up = h.upstreams](Connection&, std::span<const uint8_t>) {
      return Verdict::connect(up.front(), std::make_unique<BracketFilter>(rec));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "abc"));
  shutdown(c, SHUT_WR);
  int s = server();
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "[ABC]");
  close(s);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  auto events = rec->events();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0], "filter-start:abc");
  EXPECT_EQ(events[1], "filter-end:d2u");
  EXPECT_EQ(rec->count("filter-end:d2u"), 1u);
}

// ------------------------------------------------------------ defer / wake

TEST_F(FilterDeferTest, DeferThenWakeFromAnotherThreadConnects) {
  auto box = std::make_shared<WakerBox>();
  auto rec = std::make_shared<Recorder>();
  start([box, rec](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [box](Connection& c, std::span<const uint8_t> pending) {
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      box->add(c.waker());
      return Verdict::defer(30s);
    };
    h.wake_fn = [rec, up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      rec->add("wake:" + str(pending));
      return Verdict::connect(std::span<const SocketAddress>(up));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "GET /\n"));
  ASSERT_TRUE(box->wait_for(1));
  Waker w = box->all().front();
  EXPECT_TRUE(static_cast<bool>(w));
  std::thread([w] { w.wake(); }).join();
  int s = server();
  EXPECT_EQ(read_n(s, 6), "GET /\n");
  ASSERT_TRUE(write_all(s, "reply"));
  EXPECT_EQ(read_n(c, 5), "reply");
  close(c);
  close(s);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(rec->events(), std::vector<std::string>{"wake:GET /\n"});
  auto counters = engine_->counters();
  EXPECT_EQ(counters.defers, 1u);
  EXPECT_EQ(counters.wakes, 1u);
  EXPECT_EQ(counters.wakes_ignored, 0u);
}

TEST_F(FilterDeferTest, WakeIssuedBeforeTheDeferVerdictReturnsIsNotLost) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection& c, const AcceptInfo&) {
      c.waker().wake();  // e.g. an answer already cached by another thread
      return Verdict::defer(30s);
    };
    h.wake_fn = [](Connection&, std::span<const uint8_t>) { return Verdict::close(bytes("woken\n")); };
  });
  int c = client();
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "woken\n");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(engine_->counters().wakes, 1u);
}

TEST_F(FilterDeferTest, BytesAndFinWhileDeferredAreHeldAndReportedAfterTheWake) {
  auto box = std::make_shared<WakerBox>();
  auto rec = std::make_shared<Recorder>();
  start([box, rec](ScriptedHandler& h) {
    h.accept_fn = [rec](Connection&, const AcceptInfo&) {
      return Verdict::need_more(10s, std::make_unique<ObserverFilter>(rec));
    };
    h.data_fn = [box, rec](Connection& c, std::span<const uint8_t> pending) {
      rec->add("data:" + str(pending));
      if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
      box->add(c.waker());
      return Verdict::defer(30s);
    };
    h.wake_fn = [rec](Connection&, std::span<const uint8_t> pending) {
      rec->add("wake:" + str(pending));
      return Verdict::need_more(10s);  // the remembered FIN is reported now
    };
    h.eof_fn = [rec, up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      rec->add("eof:" + str(pending));
      return Verdict::connect(std::span<const SocketAddress>(up));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "GET\n"));
  ASSERT_TRUE(box->wait_for(1));
  ASSERT_TRUE(write_all(c, "body"));
  ASSERT_TRUE(rec->wait_joined("filter-data:", "GET\nbody"));  // read while deferred
  shutdown(c, SHUT_WR);
  ASSERT_TRUE(rec->wait_count("filter-end:d2u", 1));  // FIN read while deferred
  EXPECT_EQ(rec->count("wake:"), 0u);                 // ... and neither reported to the handler
  EXPECT_EQ(rec->count("eof:"), 0u);
  EXPECT_TRUE(rec->events().back() == "filter-end:d2u");
  box->all().front().wake();
  int s = server();
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "GET\nbody");  // and the FIN forwarded
  EXPECT_EQ(err, 0);
  close(s);
  EXPECT_EQ(read_to_eof(c, &err), "");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
  std::vector<std::string> handler_calls;
  for (const auto& e : rec->events()) {
    if (!e.starts_with("filter-")) handler_calls.push_back(e);
  }
  // "GET\n" normally arrives as one chunk; were it split, the handler would
  // have been asked about the first part too.
  ASSERT_GE(handler_calls.size(), 3u);
  std::vector<std::string> tail(handler_calls.end() - 3, handler_calls.end());
  EXPECT_EQ(tail, (std::vector<std::string>{"data:GET\n", "wake:GET\nbody", "eof:GET\nbody"}));
  EXPECT_EQ(rec->count("filter-end:d2u"), 1u);
}

TEST_F(FilterDeferTest, FinWhileDeferredIsForwardedWhenTheWakeConnects) {
  auto box = std::make_shared<WakerBox>();
  auto rec = std::make_shared<Recorder>();
  start([box, rec](ScriptedHandler& h) {
    h.accept_fn = [rec](Connection&, const AcceptInfo&) {
      return Verdict::need_more(10s, std::make_unique<ObserverFilter>(rec));
    };
    h.data_fn = [box](Connection& c, std::span<const uint8_t>) {
      box->add(c.waker());
      return Verdict::defer(30s);
    };
    h.wake_fn = [up = h.upstreams](Connection&, std::span<const uint8_t>) {
      return Verdict::connect(std::span<const SocketAddress>(up));
    };
    h.eof_fn = [rec](Connection&, std::span<const uint8_t>) {
      rec->add("eof");
      return Verdict::close();
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "ping"));
  ASSERT_TRUE(box->wait_for(1));
  shutdown(c, SHUT_WR);
  ASSERT_TRUE(rec->wait_count("filter-end:d2u", 1));
  box->all().front().wake();
  int s = server();
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "ping");
  EXPECT_EQ(err, 0);
  close(s);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(rec->count("eof"), 0u);  // a decision was made: nothing to report
  EXPECT_EQ(rec->count("filter-end:d2u"), 1u);
}

TEST_F(FilterDeferTest, DeferTimeoutCallsOnDetectionTimeoutAndALateWakeIsIgnored) {
  auto box = std::make_shared<WakerBox>();
  auto rec = std::make_shared<Recorder>();
  start([box, rec](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [box](Connection& c, std::span<const uint8_t>) {
      box->add(c.waker());
      return Verdict::defer(30ms);
    };
    h.timeout_fn = [rec](Connection&, std::span<const uint8_t> pending) {
      rec->add("timeout:" + str(pending));
      return Verdict::close(bytes("TIMEOUT\n"));
    };
    h.wake_fn = [rec](Connection&, std::span<const uint8_t>) {
      rec->add("wake");
      return Verdict::close();
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "q"));
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "TIMEOUT\n");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kDetectionTimeout);
  ASSERT_TRUE(box->wait_for(1));
  box->all().front().wake();
  ASSERT_TRUE(wait_counter(&CounterSnapshot::wakes_ignored, 1));
  EXPECT_EQ(rec->events(), std::vector<std::string>{"timeout:q"});
  EXPECT_EQ(engine_->counters().detection_timeouts, 1u);
  EXPECT_EQ(engine_->counters().wakes, 0u);
}

TEST_F(FilterDeferTest, WakeOfAClosedConnectionOrAStaleIdInAReusedSlotIsIgnored) {
  struct Seen {
    std::mutex mu;
    std::vector<std::pair<const void*, uint64_t>> conns;  // slot address, id
    std::vector<uint64_t> woken;
  };
  auto seen = std::make_shared<Seen>();
  auto box = std::make_shared<WakerBox>();
  start([seen, box](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [seen, box](Connection& c, std::span<const uint8_t>) {
      {
        std::lock_guard<std::mutex> l(seen->mu);
        seen->conns.emplace_back(&c, c.id());
      }
      box->add(c.waker());
      return Verdict::defer(60s);
    };
    h.wake_fn = [seen](Connection& c, std::span<const uint8_t> pending) {
      {
        std::lock_guard<std::mutex> l(seen->mu);
        seen->woken.push_back(c.id());
      }
      static thread_local std::string reply;
      reply = "woken:" + str(pending);
      return Verdict::close(bytes(reply));
    };
  });
  // A: deferred, then reset by the client (the connection closes, its slot is freed).
  int a = client();
  ASSERT_TRUE(write_all(a, "a"));
  ASSERT_TRUE(box->wait_for(1));
  linger lg{1, 0};
  setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(a);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kDownstreamReset);
  // B: reuses A's slot (one worker, LIFO free list) and is deferred too.
  int b = client();
  ASSERT_TRUE(write_all(b, "b"));
  ASSERT_TRUE(box->wait_for(2));
  std::vector<std::pair<const void*, uint64_t>> conns;
  {
    std::lock_guard<std::mutex> l(seen->mu);
    conns = seen->conns;
  }
  ASSERT_EQ(conns.size(), 2u);
  EXPECT_EQ(conns[0].first, conns[1].first) << "expected the slot to be reused";
  EXPECT_NE(conns[0].second, conns[1].second);
  auto wakers = box->all();
  // A's waker now names a dead connection whose slot holds a deferred one.
  std::thread([w = wakers[0]] { w.wake(); }).join();
  ASSERT_TRUE(wait_counter(&CounterSnapshot::wakes_ignored, 1));
  {
    std::lock_guard<std::mutex> l(seen->mu);
    EXPECT_TRUE(seen->woken.empty());
  }
  std::thread([w = wakers[1]] { w.wake(); }).join();
  int err = -1;
  EXPECT_EQ(read_to_eof(b, &err), "woken:b");
  close(b);
  ASSERT_TRUE(log_.wait_for(2));
  {
    std::lock_guard<std::mutex> l(seen->mu);
    EXPECT_EQ(seen->woken, std::vector<uint64_t>{conns[1].second});
  }
  EXPECT_EQ(engine_->counters().wakes, 1u);
  EXPECT_EQ(engine_->counters().wakes_ignored, 1u);
}

TEST_F(FilterDeferTest, ManyDefersWokenInRandomOrderFromSeveralThreads) {
  constexpr size_t kConns = 500;
  if (raise_nofile() < 3 * kConns + 64) GTEST_SKIP() << "fd limit too low";
  auto box = std::make_shared<WakerBox>();
  start(
      [box](ScriptedHandler& h) {
        h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
        h.data_fn = [box](Connection& c, std::span<const uint8_t> pending) {
          if (str(pending).find('\n') == std::string::npos) return Verdict::need_more(10s);
          box->add(c.waker());
          return Verdict::defer(60s);
        };
        h.wake_fn = [](Connection&, std::span<const uint8_t> pending) {
          static thread_local std::string reply;
          reply = "woken:" + str(pending);
          return Verdict::close(bytes(reply));
        };
      },
      // Every undecided connection pins the ring buffer its pending bytes
      // are in, and each local response takes a local buffer until sent (a
      // batch of wakes answers hundreds at once): size both pools for all
      // connections landing on one worker.
      [](EngineConfig& cfg) {
        cfg.buffer_size = 4096;
        cfg.buffer_count = 2048;
        cfg.local_buffer_count = 2 * kConns;
      },
      /*workers=*/2);
  std::vector<int> clients;
  for (size_t i = 0; i < kConns; ++i) {
    int c = client();
    ASSERT_GE(c, 0);
    ASSERT_TRUE(write_all(c, "conn-" + std::to_string(i) + "\n"));
    clients.push_back(c);
  }
  ASSERT_TRUE(box->wait_for(kConns));
  auto wakers = box->all();
  std::mt19937 rng(12345);
  std::shuffle(wakers.begin(), wakers.end(), rng);
  // Every waker is used twice, by different threads: the second wake finds
  // the connection no longer deferred and is ignored.
  constexpr size_t kThreads = 4;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&wakers, t] {
      for (size_t i = t; i < wakers.size(); i += kThreads) wakers[i].wake();
      for (size_t i = (t + 1) % kThreads; i < wakers.size(); i += kThreads) wakers[i].wake();
    });
  }
  for (auto& th : threads) th.join();
  for (size_t i = 0; i < kConns; ++i) {
    int err = -1;
    EXPECT_EQ(read_to_eof(clients[i], &err), "woken:conn-" + std::to_string(i) + "\n");
    close(clients[i]);
  }
  ASSERT_TRUE(log_.wait_for(kConns));
  for (const auto& st : log_.all()) EXPECT_EQ(st.reason, CloseReason::kLocalClose);
  ASSERT_TRUE(wait_counter(&CounterSnapshot::wakes_ignored, kConns));
  auto counters = engine_->counters();
  EXPECT_EQ(counters.defers, kConns);
  EXPECT_EQ(counters.wakes, kConns);
  EXPECT_EQ(counters.wakes_ignored, kConns);
}

// More than max_sniff_bytes while deferred: the reading stops (the client's
// TCP holds the rest) instead of closing, and everything goes upstream once
// the handler connects (a request body arriving while its decision waits).
TEST_F(FilterDeferTest, BytesPastTheSniffLimitWhileDeferredAreHeldBackNotCut) {
  start(
      [](ScriptedHandler& h) {
        h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
        h.data_fn = [](Connection&, std::span<const uint8_t>) { return Verdict::defer(300ms); };
        h.wake_fn = [](Connection&, std::span<const uint8_t>) {
          ADD_FAILURE() << "nobody woke this connection";
          return Verdict::close();
        };
        // The deferral runs out: connect (h.upstreams), as after a fault delay.
        h.timeout_fn = [&h](Connection&, std::span<const uint8_t>) { return h.connect_verdict(); };
      },
      [](EngineConfig& cfg) { cfg.max_sniff_bytes = 4096; });
  int c = client();
  const std::string body(256 * 1024, 'd');
  std::thread writer([c, &body] { write_all(c, body); shutdown(c, SHUT_WR); });
  int s = server();
  EXPECT_EQ(read_to_eof(s), body);
  writer.join();
  close(s);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_NE(log_.first().reason, CloseReason::kSniffLimit);
  EXPECT_GE(engine_->counters().backpressure_pauses, 1u);
}

TEST_F(FilterDeferTest, WakerOutlivingTheEngineIsHarmless) {
  auto box = std::make_shared<WakerBox>();
  start([box](ScriptedHandler& h) {
    h.accept_fn = [box](Connection& c, const AcceptInfo&) {
      box->add(c.waker());
      return Verdict::defer(60s);
    };
  });
  int c = client();
  ASSERT_TRUE(box->wait_for(1));
  Waker w = box->all().front();
  engine_->stop(0ms);
  engine_->wait();
  engine_.reset();  // workers, rings and eventfds are gone
  w.wake();
  std::thread([w] { w.wake(); }).join();
  Waker none;
  EXPECT_FALSE(static_cast<bool>(none));
  none.wake();
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kDrainDeadline);
  close(c);
}

TEST_F(FilterDeferTest, AFilterTimerFiresUnlessCancelled) {
  start([](ScriptedHandler& h) { h.filter_fn = [] { return std::make_unique<DeadlineFilter>(); }; });
  // Answered in time: the timer is cancelled, the connection carries on.
  int c = client();
  ASSERT_TRUE(write_all(c, "q1"));
  int s = server();
  EXPECT_EQ(read_n(s, 2), "q1");
  ASSERT_TRUE(write_all(s, "a1"));
  EXPECT_EQ(read_n(c, 2), "a1");
  std::this_thread::sleep_for(50ms);  // well past the cancelled deadline
  ASSERT_TRUE(write_all(c, "q2"));
  EXPECT_EQ(read_n(s, 2), "q2");
  // Not answered: the filter's reply, then the end of both connections.
  EXPECT_EQ(read_to_eof(c), "LATE\n");
  EXPECT_EQ(read_to_eof(s), "");
  close(c);
  close(s);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose);
}

// The filter's timer runs while the upstream is being connected (an HTTP
// route timeout spans the connect, as Envoy's does): a connect that hangs
// (its SYN dropped; the connect timeout 30 s) is given up when the timer
// fires, the filter's reply reaches the client, and nothing reaches the
// upstream.
TEST_F(FilterDeferTest, AFilterTimerEndsAHangingConnect) {
  start_with_hanging_upstream([] { return std::make_unique<DeadlineFilter>(); });
  int c = client();
  ASSERT_TRUE(write_all(c, "request"));
  const auto t0 = std::chrono::steady_clock::now();
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "LATE\n");
  EXPECT_EQ(err, 0);  // a FIN after the reply, not a reset
  // Not a timing threshold on speed: 30 s would mean the connect ran out.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose) << close_reason_name(log_.first().reason);
  EXPECT_EQ(log_.first().bytes_to_upstream, 0u);
  EXPECT_EQ(engine_->counters().local_responses, 1u);
}

// A timer answered kContinue while connecting (set again) keeps the
// connect going; the next firing that gives up still ends it; kReset
// resets the client.
TEST_F(FilterDeferTest, AFilterTimerWhileConnectingCanWaitAgainOrReset) {
  class Patient final : public StreamFilter {
   public:
    explicit Patient(bool reset) : reset_(reset) {}
    FilterStatus on_data(Direction, std::span<const uint8_t> chunk, FilterOutput& out) override {
      if (!armed_) out.set_timer(20ms);
      armed_ = true;
      return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
    }
    FilterStatus on_timer(FilterOutput& out) override {
      if (++fired_ == 1) {
        out.set_timer(20ms);  // not yet
        return FilterStatus::kContinue;
      }
      if (reset_) return FilterStatus::kReset;
      out.inject(Direction::kUpstreamToDownstream, bytes("LATE TWICE\n"));
      return FilterStatus::kClose;
    }

   private:
    bool reset_;
    bool armed_ = false;
    int fired_ = 0;
  };
  auto reset = std::make_shared<std::atomic<bool>>(false);
  start_with_hanging_upstream([reset] { return std::make_unique<Patient>(reset->load()); });
  int c = client();
  ASSERT_TRUE(write_all(c, "request"));
  const auto t0 = std::chrono::steady_clock::now();
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "LATE TWICE\n");
  EXPECT_EQ(err, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
  close(c);
  reset->store(true);
  int r = client();
  ASSERT_TRUE(write_all(r, "request"));
  EXPECT_EQ(read_to_eof(r, &err), "");
  EXPECT_EQ(err, -ECONNRESET);
  close(r);
  ASSERT_TRUE(log_.wait_for(2));
}

// The same during the handler's wait between two connect attempts (a
// retry's back-off): the timer ends the wait, the next attempt never starts.
TEST_F(FilterDeferTest, AFilterTimerEndsTheWaitBetweenConnectAttempts) {
  uint16_t refusing = 0;
  int hold = reserve_refusing_port(&refusing);
  const uint16_t good = upstream_port_;
  start([refusing, good](ScriptedHandler& h) {
    h.upstreams = {SocketAddress::loopback4(refusing), SocketAddress::loopback4(good)};
    h.filter_fn = [] { return std::make_unique<DeadlineFilter>(); };
    h.connect_failed_fn = [](const SocketAddress&, bool, bool) { return std::chrono::milliseconds(30'000); };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "request"));
  const auto t0 = std::chrono::steady_clock::now();
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "LATE\n");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);  // not at the 30 s wait's end
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose) << close_reason_name(log_.first().reason);
  EXPECT_EQ(log_.first().connect_attempts, 1);
  EXPECT_FALSE(upstream_has_connection());
  close(hold);
}

// upstream_end_held: a client's FIN read while the filter still holds its
// bytes waits; the upstream gets the bytes, then the FIN, once the filter
// lets go (here with nothing else left to send).
TEST_F(FilterDeferTest, AHeldUpstreamEndWaitsForTheFilter) {
  start([](ScriptedHandler& h) { h.filter_fn = [] { return std::make_unique<HoldUntilGoFilter>(); }; });
  // With bytes held (the FIN follows their send), and with none (the FIN
  // goes as the filter lets go).
  for (const std::string held : {"held", ""}) {
    int c = client();
    if (!held.empty()) {
      ASSERT_TRUE(write_all(c, held));
    }
    shutdown(c, SHUT_WR);
    int s = server();
    std::this_thread::sleep_for(100ms);  // the client's FIN has been read by now
    pollfd p{s, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 0), 0) << "neither bytes nor the FIN before the filter lets go (" << held << ")";
    ASSERT_TRUE(write_all(s, "GO"));
    int err = -1;
    EXPECT_EQ(read_to_eof(s, &err), held);
    EXPECT_EQ(err, 0) << "then the FIN (" << held << ")";
    close(s);
    EXPECT_EQ(read_to_eof(c), "");
    close(c);
  }
  ASSERT_TRUE(log_.wait_for(2));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted) << close_reason_name(log_.first().reason);
}

// A filter that closes the connection while it holds the upstream's end
// (a tunnel the proxy refused) does not keep it open: both sides get their
// FIN at once, not at the idle timeout.
TEST_F(FilterDeferTest, AFilterCloseReleasesAHeldUpstreamEnd) {
  start([](ScriptedHandler& h) { h.filter_fn = [] { return std::make_unique<HoldUntilGoFilter>(); }; });
  int c = client();
  ASSERT_TRUE(write_all(c, "held"));
  int s = server();
  ASSERT_TRUE(write_all(s, "NO"));
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "") << "the client's held bytes never go";
  EXPECT_EQ(err, 0);
  EXPECT_EQ(read_to_eof(c, &err), "");
  EXPECT_EQ(err, 0);
  close(s);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose) << close_reason_name(log_.first().reason);
}

// Every upstream address refused: the filter answers the client before the
// connection closes (an HTTP filter's 503), and the close still says why.
TEST_F(FilterDeferTest, AFilterAnswersWhenNoUpstreamConnects) {
  uint16_t refusing = 0;
  int hold = reserve_refusing_port(&refusing);
  start([refusing](ScriptedHandler& h) {
    h.upstreams = {SocketAddress::loopback4(refusing)};
    h.filter_fn = [] { return std::make_unique<DeadlineFilter>(); };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "request"));
  EXPECT_EQ(read_to_eof(c), "NO UPSTREAM\n");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kUpstreamConnectFailed);
  EXPECT_EQ(log_.first().error, ECONNREFUSED);
  EXPECT_EQ(engine_->counters().local_responses, 1u);
  close(hold);
}

}  // namespace
}  // namespace sluice::engine::testing
