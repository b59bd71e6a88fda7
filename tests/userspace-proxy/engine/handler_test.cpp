// The ConnectionHandler and StreamFilter hooks: sniffing, local responses,
// detection timeouts, L7 filters.

#include <gtest/gtest.h>

#include <cctype>
#include <future>

#include "tests/userspace-proxy/engine/test_util.h"

namespace sluice::engine::testing {
namespace {

class HandlerTest : public LoopbackEngine<> {
 protected:
  void start(std::function<void(ScriptedHandler&)> setup, std::function<void(EngineConfig&)> tweak = nullptr) {
    start_engine(std::move(setup), std::move(tweak));
  }
};

const std::string k502 = "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

TEST_F(HandlerTest, LocalResponseIsDeliveredExactlyThenEof) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
      std::string_view s(reinterpret_cast<const char*>(pending.data()), pending.size());
      if (s.find("\r\n\r\n") == std::string_view::npos) return Verdict::need_more(10s);
      return Verdict::close({reinterpret_cast<const uint8_t*>(k502.data()), k502.size()});
    };
  });
  int c = client();
  // The request arrives in pieces: the handler sees everything read so far.
  ASSERT_TRUE(write_all(c, "GET / HTTP/1.1\r\n"));
  std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(write_all(c, "Host: denied.example\r\n\r\n"));
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), k502);
  EXPECT_EQ(err, 0);  // FIN, not RST: the proxy drained the request first
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kLocalClose);
  EXPECT_EQ(engine_->counters().local_responses, 1u);
}

// Verdict::respond: each complete line is answered locally and dropped from
// the pending bytes; the connection stays undecided, so lines pipelined in
// one write are answered in order, and a later one can still go upstream
// (with only its own bytes).
TEST_F(HandlerTest, LocalAnswerKeepsTheConnectionForTheNextRequest) {
  std::atomic<int> calls{0};
  start([&calls](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [&calls, up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      static thread_local std::string reply;
      ++calls;
      std::string_view s(reinterpret_cast<const char*>(pending.data()), pending.size());
      const size_t nl = s.find('\n');
      if (nl == std::string_view::npos) return Verdict::need_more(10s);
      if (s.substr(0, nl) == "UP") return Verdict::connect(std::span<const SocketAddress>(up));
      reply = "answer " + std::string(s.substr(0, nl)) + "\n";
      return Verdict::respond({reinterpret_cast<const uint8_t*>(reply.data()), reply.size()}, nl + 1, 0ms);
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "one\n"));
  EXPECT_EQ(read_n(c, 11), "answer one\n");
  // Three requests in one write, the last one split.
  ASSERT_TRUE(write_all(c, "two\nthree\nfo"));
  EXPECT_EQ(read_n(c, 24), "answer two\nanswer three\n");
  ASSERT_TRUE(write_all(c, "ur\nUP\nrest"));
  EXPECT_EQ(read_n(c, 12), "answer four\n");
  int s = server();
  shutdown(c, SHUT_WR);
  EXPECT_EQ(read_to_eof(s), "UP\nrest");
  close(s);
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "");
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
  EXPECT_EQ(engine_->counters().local_responses, 4u);
}

// Connection::spawn: a socket the handler made (one end of a socketpair) is
// taken after the callback like an accepted one, with its tag, and relayed
// like any other (here: answered locally through the pair).
TEST_F(HandlerTest, SpawnedSocketIsHandledLikeAnAcceptedOne) {
  std::atomic<int> other_end{-1};
  start([&other_end](ScriptedHandler& h) {
    h.accept_fn = [](Connection& c, const AcceptInfo& info) {
      c.set_context(info.spawn_tag());
      return Verdict::need_more(10s);
    };
    h.data_fn = [&other_end](Connection& c, std::span<const uint8_t> pending) {
      static const std::string ok = "ok";
      static thread_local std::string reply;
      std::string_view s(reinterpret_cast<const char*>(pending.data()), pending.size());
      if (c.context() == 7) {  // the spawned socket: answer what it carried
        reply = "got: " + std::string(s);
        return Verdict::close({reinterpret_cast<const uint8_t*>(reply.data()), reply.size()});
      }
      int sp[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) != 0) return Verdict::close();
      const std::string carried = "spawned request";
      if (write(sp[0], carried.data(), carried.size()) != static_cast<ssize_t>(carried.size())) return Verdict::close();
      other_end = sp[0];
      c.spawn(sp[1], 7);
      return Verdict::close({reinterpret_cast<const uint8_t*>(ok.data()), ok.size()});
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "mirror me"));
  EXPECT_EQ(read_to_eof(c), "ok");
  close(c);
  ASSERT_GE(other_end.load(), 0);
  int fd = other_end.load();
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  set_rcvtimeo(fd, kHang);
  EXPECT_EQ(read_to_eof(fd), "got: spawned request");
  close(fd);
  ASSERT_TRUE(log_.wait_for(2));
  EXPECT_EQ(engine_->counters().spawned, 1u);
  EXPECT_EQ(engine_->counters().accepted, 2u);
}

TEST_F(HandlerTest, DenyAtAcceptClosesWithFin) {
  start([](ScriptedHandler& h) { h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::close(); }; });
  int c = client();
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "");
  EXPECT_EQ(err, 0);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kLocalClose);
}

TEST_F(HandlerTest, SniffedBytesAreSentUpstreamFirst) {
  std::atomic<int> calls{0};
  start([&calls](ScriptedHandler& h) {
    h.accept_fn = [](Connection& c, const AcceptInfo& info) {
      c.set_context(info.peer().port());  // addresses resolve lazily
      return Verdict::need_more(10s);
    };
    h.data_fn = [&calls, up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      ++calls;
      if (pending.size() < 10) return Verdict::need_more(10s);
      return Verdict::connect(std::span<const SocketAddress>(up));
    };
  });
  int c = client();
  ASSERT_TRUE(write_all(c, "01234"));
  std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(write_all(c, "56789-and-the-rest"));
  int s = server();
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "0123456789-and-the-rest");
  close(s);
  EXPECT_EQ(read_to_eof(c, &err), "");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_GE(calls.load(), 1);
  EXPECT_EQ(log_.first().reason, CloseReason::kCompleted);
}

TEST_F(HandlerTest, DetectionTimeoutLetsServerFirstProtocolsThrough) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(50ms); };
    h.timeout_fn = [up = h.upstreams](Connection&, std::span<const uint8_t> pending) {
      EXPECT_TRUE(pending.empty());
      return Verdict::connect(std::span<const SocketAddress>(up));
    };
  });
  int c = client();
  int s = server();  // only after the detection timeout
  ASSERT_TRUE(write_all(s, "220 smtp.example ESMTP\r\n"));
  char buf[24];
  ASSERT_TRUE(read_exact(c, buf, sizeof(buf)));
  EXPECT_EQ(std::string(buf, sizeof(buf)), "220 smtp.example ESMTP\r\n");
  close(c);
  close(s);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(engine_->counters().detection_timeouts, 1u);
}

TEST_F(HandlerTest, DetectionTimeoutWithoutDecisionCloses) {
  start([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(30ms); };
  });
  int c = client();
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kDetectionTimeout);
}

TEST_F(HandlerTest, HandlerThatNeverDecidesHitsTheSniffLimit) {
  start(
      [](ScriptedHandler& h) {
        h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
        h.data_fn = [](Connection&, std::span<const uint8_t> pending) {
          EXPECT_LE(pending.size(), 4096u);
          return Verdict::need_more(10s);
        };
      },
      [](EngineConfig& cfg) { cfg.max_sniff_bytes = 4096; });
  int c = client();
  std::string junk(64 * 1024, 'j');
  write_all(c, junk);  // may fail once the proxy gives up
  int err = 0;
  read_to_eof(c, &err);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kSniffLimit);
}

// L7 mode: uppercases downstream->upstream bytes by injecting a copy.
class UppercaseFilter final : public StreamFilter {
 public:
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (dir == Direction::kUpstreamToDownstream) {
      out.forward(chunk.size());
      return FilterStatus::kContinue;
    }
    std::string up(chunk.begin(), chunk.end());
    for (char& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    out.inject(dir, {reinterpret_cast<const uint8_t*>(up.data()), up.size()});
    return FilterStatus::kContinue;
  }
};

TEST_F(HandlerTest, StreamFilterTransformsBytes) {
  start([](ScriptedHandler& h) { h.filter_fn = [] { return std::make_unique<UppercaseFilter>(); }; });
  int c = client();
  int s = server();
  ASSERT_TRUE(write_all(c, "hello, filter"));
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "HELLO, FILTER");
  ASSERT_TRUE(write_all(s, "untouched"));
  close(s);
  EXPECT_EQ(read_to_eof(c, &err), "untouched");
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
}

// Counts on_upstream_ready; passes bytes through.
class ReadyFilter final : public StreamFilter {
 public:
  explicit ReadyFilter(std::atomic<int>* ready) : ready_(ready) {}
  FilterStatus on_data(Direction, std::span<const uint8_t> chunk, FilterOutput& out) override {
    out.forward(chunk.size());
    return FilterStatus::kContinue;
  }
  void on_upstream_ready(FilterOutput&) override { ++*ready_; }

 private:
  std::atomic<int>* ready_;
};

// A filter hears once that its new upstream connection is ready (after the
// connect, with the bytes read before it already queued).
TEST_F(HandlerTest, AFilterIsToldWhenItsUpstreamConnectionIsReady) {
  std::atomic<int> ready{0};
  start([&ready](ScriptedHandler& h) { h.filter_fn = [&ready] { return std::make_unique<ReadyFilter>(&ready); }; });
  int c = client();
  ASSERT_TRUE(write_all(c, "ping"));
  int s = server();
  EXPECT_EQ(read_n(s, 4), "ping");
  EXPECT_EQ(ready.load(), 1);
  ASSERT_TRUE(write_all(s, "pong"));
  EXPECT_EQ(read_n(c, 4), "pong");
  close(s);
  close(c);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(ready.load(), 1);
}

// Inserts a header after the request line: forward (zero-copy), inject, forward (copied).
class HeaderInsertFilter final : public StreamFilter {
 public:
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    if (dir == Direction::kDownstreamToUpstream && !done_) {
      std::string_view s(reinterpret_cast<const char*>(chunk.data()), chunk.size());
      size_t eol = s.find("\r\n");
      if (eol != std::string_view::npos) {
        done_ = true;
        out.forward(eol + 2);
        static const std::string h = "x-sluice: 1\r\n";
        out.inject(dir, {reinterpret_cast<const uint8_t*>(h.data()), h.size()});
        out.forward(chunk.size() - eol - 2);
        return FilterStatus::kContinue;
      }
    }
    out.forward(chunk.size());
    return FilterStatus::kContinue;
  }
  FilterStatus on_end_stream(Direction dir, FilterOutput&) override {
    return dir == Direction::kUpstreamToDownstream ? FilterStatus::kClose : FilterStatus::kContinue;
  }

 private:
  bool done_ = false;
};

TEST_F(HandlerTest, StreamFilterEditsTheStreamInPlace) {
  start([](ScriptedHandler& h) { h.filter_fn = [] { return std::make_unique<HeaderInsertFilter>(); }; });
  int c = client();
  int s = server();
  ASSERT_TRUE(write_all(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  std::string got;
  char buf[256];
  while (got.find("\r\n\r\n") == std::string::npos) {
    ssize_t r = recv(s, buf, sizeof(buf), 0);
    ASSERT_GT(r, 0);
    got.append(buf, static_cast<size_t>(r));
  }
  EXPECT_EQ(got, "GET / HTTP/1.1\r\nx-sluice: 1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(write_all(s, "HTTP/1.1 200 OK\r\n\r\n"));
  shutdown(s, SHUT_WR);  // the filter answers end of stream with kClose
  int err = -1;
  EXPECT_EQ(read_to_eof(c, &err), "HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(read_to_eof(s, &err), "");  // and the upstream got FIN too
  close(c);
  close(s);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(log_.first().reason, CloseReason::kFilterClose);
}

TEST_F(HandlerTest, UpstreamSocketsGetTheMarkOrCountEperm) {
  // Whether SO_MARK is allowed depends on CAP_NET_ADMIN, not on uid: probe.
  int probe = socket(AF_INET, SOCK_STREAM, 0);
  uint32_t mark = 0x539;
  bool allowed = setsockopt(probe, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == 0;
  close(probe);
  start([](ScriptedHandler&) {});
  int c = client();
  int s = server();
  close(c);
  close(s);
  ASSERT_TRUE(log_.wait_for(1));
  EXPECT_EQ(engine_->counters().so_mark_eperm, allowed ? 0u : 1u);
}

TEST(EngineIpv6, RelaysOverLoopbackV6) {
  int up = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  SocketAddress up_addr;
  ASSERT_TRUE(SocketAddress::parse("[::1]:0", &up_addr));
  if (bind(up, up_addr.sa(), up_addr.len()) != 0) {
    close(up);
    GTEST_SKIP() << "no IPv6 loopback here";
  }
  listen(up, 16);
  SocketAddress::local_of(up, &up_addr);
  CloseLog log;
  EngineConfig cfg = test_config([up_addr, &log](ScriptedHandler& h) {
    h.upstreams = {up_addr};
    h.log = &log;
  });
  ASSERT_TRUE(SocketAddress::parse("[::1]:0", &cfg.listen));
  Engine e(cfg);
  ASSERT_EQ(e.start(), 0) << e.error();
  EXPECT_EQ(e.listen_address().family(), AF_INET6);
  int c = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(c, e.listen_address().sa(), e.listen_address().len()), 0);
  set_rcvtimeo(c, kHang);
  int s = accept_one(up);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(write_all(c, "v6"));
  shutdown(c, SHUT_WR);
  int err = -1;
  EXPECT_EQ(read_to_eof(s, &err), "v6");
  close(s);
  EXPECT_EQ(read_to_eof(c, &err), "");
  close(c);
  ASSERT_TRUE(log.wait_for(1));
  EXPECT_EQ(log.first().reason, CloseReason::kCompleted);
  EXPECT_EQ(log.first().upstream, up_addr);
  e.stop(0ms);
  e.wait();
  close(up);
}

TEST(SocketAddressTest, ParsesAndPrints) {
  SocketAddress a;
  ASSERT_TRUE(SocketAddress::parse("10.1.2.3:8080", &a));
  EXPECT_EQ(a.to_string(), "10.1.2.3:8080");
  EXPECT_EQ(a.port(), 8080);
  ASSERT_TRUE(SocketAddress::parse("[2001:db8::1]:443", &a));
  EXPECT_EQ(a.to_string(), "[2001:db8::1]:443");
  EXPECT_FALSE(SocketAddress::parse("10.1.2.3", &a));
  EXPECT_FALSE(SocketAddress::parse("10.1.2.3:70000", &a));
  EXPECT_FALSE(SocketAddress::parse("[::1]443", &a));
  EXPECT_FALSE(SocketAddress::parse("host:80", &a));
}

TEST(EngineStart, RejectsBadBufferCountWithAMessage) {
  EngineConfig cfg = test_config([](ScriptedHandler&) {});
  cfg.buffer_count = 1000;  // not a power of two
  Engine e(cfg);
  EXPECT_EQ(e.start(), -EINVAL);
  EXPECT_NE(e.error().find("power of two"), std::string::npos) << e.error();
}

TEST(EngineStart, TwoEnginesShareAPortThroughReuseport) {
  CloseLog log;
  EngineConfig cfg = test_config([](ScriptedHandler& h) {
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::close(); };
  }, 2);
  Engine a(cfg);
  ASSERT_EQ(a.start(), 0) << a.error();
  cfg.listen = a.listen_address();
  Engine b(cfg);  // a new process taking over the port would do the same
  ASSERT_EQ(b.start(), 0) << b.error();
  EXPECT_EQ(a.worker_count(), 2u);
  a.stop(0ms);
  a.wait();
  int c = connect_to(b.listen_address().port());
  ASSERT_GE(c, 0);
  int err = -1;
  set_rcvtimeo(c, kHang);
  read_to_eof(c, &err);
  EXPECT_EQ(err, 0);
  close(c);
  b.stop(0ms);
  b.wait();
}


// Bytes that arrive after the verdict but before the upstream connect
// completes must pass through the filter like later ones (an L7 policy
// filter would otherwise miss a pipelined request). The upstream's accept
// queue is kept full so the proxy's connect stays pending (its SYN is dropped
// and retried after about a second) while the client sends more.
TEST(HandlerFilterWhileConnecting, BytesReadDuringConnectAreFiltered) {
  signal(SIGPIPE, SIG_IGN);
  uint16_t port = 0;
  int lfd = listen_loopback(&port, 0);
  ASSERT_GE(lfd, 0);
  std::vector<int> fillers = fill_accept_queue(port);
  std::this_thread::sleep_for(50ms);
  std::atomic<int> connects{0};
  SocketAddress up = SocketAddress::loopback4(port);
  CloseLog log;
  EngineConfig cfg = test_config([up, &log, &connects](ScriptedHandler& h) {
    h.upstreams = {up};
    h.log = &log;
    h.accept_fn = [](Connection&, const AcceptInfo&) { return Verdict::need_more(10s); };
    h.data_fn = [up, &connects](Connection&, std::span<const uint8_t>) {
      ++connects;
      return Verdict::connect(up, std::make_unique<UppercaseFilter>());
    };
  });
  cfg.connect_timeout = 10s;
  Engine engine(cfg);
  ASSERT_EQ(engine.start(), 0) << engine.error();
  int c = connect_to(engine.listen_address().port());
  ASSERT_GE(c, 0);
  set_rcvtimeo(c, kHang);
  ASSERT_TRUE(write_all(c, "abc"));  // sniffed: forwarded as read
  for (int i = 0; i < 200 && connects.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(write_all(c, "def"));  // read while the connect is pending
  std::this_thread::sleep_for(50ms);
  // Free the queue: accept every connection; the proxy's is the one that
  // carries bytes.
  std::string got;
  shutdown(c, SHUT_WR);
  for (int i = 0; i < 6 && got.empty(); ++i) {
    int s = accept_one(lfd);
    ASSERT_GE(s, 0);
    timeval tv{0, 300000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[64];
    ssize_t n;
    std::string mine;
    while ((n = read(s, buf, sizeof(buf))) > 0) mine.append(buf, static_cast<size_t>(n));
    if (!mine.empty()) got = mine;
    close(s);
  }
  EXPECT_EQ(got, "abcDEF");
  close(c);
  for (int fd : fillers) close(fd);
  close(lfd);
  engine.stop(0ms);
  engine.wait();
}

}  // namespace
}  // namespace sluice::engine::testing
