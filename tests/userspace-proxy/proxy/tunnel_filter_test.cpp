#include "userspace-proxy/proxy/tunnel_filter.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::proxy {
namespace {

using engine::Direction;
using engine::FilterStatus;

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// What a filter call output, by direction: forwarded bytes go the chunk's
// way, injected ones where they were sent.
class Out final : public engine::FilterOutput {
 public:
  Out(Direction dir, const std::string& chunk) : dir_(dir), chunk_(chunk) {}
  int forward(size_t n) override {
    (dir_ == Direction::kDownstreamToUpstream ? upstream : downstream) += chunk_.substr(pos_, n);
    pos_ += n;
    return 0;
  }
  void skip(size_t n) override { pos_ += n; }
  int inject(Direction dir, std::span<const uint8_t> b) override {
    (dir == Direction::kDownstreamToUpstream ? upstream : downstream)
        .append(reinterpret_cast<const char*>(b.data()), b.size());
    return 0;
  }
  std::string upstream, downstream;

 private:
  Direction dir_;
  std::string chunk_;
  size_t pos_ = 0;
};

struct Fed {
  FilterStatus status;
  std::string upstream, downstream;
};

Fed feed(TunnelFilter& f, Direction dir, const std::string& chunk) {
  Out out(dir, chunk);
  FilterStatus st = f.on_data(dir, bytes(chunk), out);
  return {st, out.upstream, out.downstream};
}

class TunnelFilterTest : public ::testing::Test {
 protected:
  TunnelFilter make(const std::string& host = "external.example.com", uint32_t port = 443) {
    return TunnelFilter(
        host, port,
        [this](const std::string& why, bool proxy_failed) {
          failures.push_back(why);
          proxy_failed_.push_back(proxy_failed);
        },
        [this] { ++opened; });
  }
  std::vector<std::string> failures;
  std::vector<bool> proxy_failed_;
  int opened = 0;
};

// CONNECT goes first; the client's bytes (held and later ones) and its FIN
// wait for the proxy's 2xx; then they go, in order, and both ways relay.
TEST_F(TunnelFilterTest, ConnectThenTheHeldBytesOnceTheProxyAgrees) {
  TunnelFilter f = make();
  EXPECT_TRUE(f.takes_held_bytes());
  Out start(Direction::kDownstreamToUpstream, "hello ");
  ASSERT_EQ(f.on_start(bytes("hello "), start), FilterStatus::kContinue);
  EXPECT_EQ(start.upstream, "CONNECT external.example.com:443 HTTP/1.1\r\nHost: external.example.com:443\r\n\r\n");
  EXPECT_TRUE(f.upstream_end_held());
  Fed more = feed(f, Direction::kDownstreamToUpstream, "world");
  EXPECT_EQ(more.status, FilterStatus::kContinue);
  EXPECT_EQ(more.upstream, "") << "held until the tunnel is open";
  Out fin(Direction::kDownstreamToUpstream, "");
  EXPECT_EQ(f.on_end_stream(Direction::kDownstreamToUpstream, fin), FilterStatus::kContinue);
  EXPECT_TRUE(f.upstream_end_held()) << "the client's FIN waits too";
  // The answer, with the tunnel's first bytes behind its head.
  Fed ok = feed(f, Direction::kUpstreamToDownstream, "HTTP/1.1 200 Connection established\r\nVia: p\r\n\r\nBANNER");
  EXPECT_EQ(ok.status, FilterStatus::kContinue);
  EXPECT_EQ(ok.downstream, "BANNER") << "the head is the proxy's, not the client's";
  EXPECT_EQ(ok.upstream, "hello world");
  EXPECT_TRUE(f.open());
  EXPECT_EQ(opened, 1);
  EXPECT_FALSE(f.upstream_end_held());
  EXPECT_EQ(feed(f, Direction::kDownstreamToUpstream, "more").upstream, "more");
  EXPECT_EQ(feed(f, Direction::kUpstreamToDownstream, "\r\n\r\nraw").downstream, "\r\n\r\nraw");
  EXPECT_TRUE(failures.empty());
}

// The answer's head arrives in pieces, its blank line split too.
TEST_F(TunnelFilterTest, AnAnswerInPiecesOpensAtItsBlankLine) {
  TunnelFilter f = make("192.0.2.7", 5432);
  Out start(Direction::kDownstreamToUpstream, "");
  f.on_start({}, start);
  EXPECT_EQ(start.upstream, "CONNECT 192.0.2.7:5432 HTTP/1.1\r\nHost: 192.0.2.7:5432\r\n\r\n");
  for (const char* piece : {"HTTP/1.0 2", "00 OK\r", "\n\r", "\n"}) {
    Fed r = feed(f, Direction::kUpstreamToDownstream, piece);
    EXPECT_EQ(r.status, FilterStatus::kContinue) << piece;
    EXPECT_EQ(r.downstream, "") << piece;
  }
  EXPECT_TRUE(f.open());
  EXPECT_FALSE(f.upstream_end_held()) << "nothing held: the client's FIN may go";
}

TEST_F(TunnelFilterTest, AnIpv6TargetIsBracketed) {
  EXPECT_EQ(TunnelFilter::authority("2001:db8::7", 443), "[2001:db8::7]:443");
  EXPECT_EQ(TunnelFilter::authority("db.example", 5432), "db.example:5432");
}

// Anything but 2xx: the connection fails (UF upstream), nothing of the
// client's is sent, and the proxy's status line says why.
TEST_F(TunnelFilterTest, ARefusalFailsTheConnection) {
  TunnelFilter f = make();
  Out start(Direction::kDownstreamToUpstream, "secret");
  f.on_start(bytes("secret"), start);
  Fed no = feed(f, Direction::kUpstreamToDownstream, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(no.status, FilterStatus::kClose);
  EXPECT_EQ(no.upstream, "");
  EXPECT_EQ(no.downstream, "");
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0], "tunnel: the proxy answered CONNECT external.example.com:443 with HTTP/1.1 403 Forbidden");
  EXPECT_TRUE(proxy_failed_[0]);
  EXPECT_EQ(opened, 0);
  EXPECT_FALSE(f.upstream_end_held()) << "failed: the engine's FIN to the proxy is not held back";
  EXPECT_EQ(feed(f, Direction::kDownstreamToUpstream, "x").status, FilterStatus::kClose);
  EXPECT_EQ(failures.size(), 1u) << "reported once";
}

TEST_F(TunnelFilterTest, NotAnHttpAnswerFailsTheConnection) {
  for (const std::string answer : {"SSH-2.0-OpenSSH_9.2\r\n\r\n", "HTTP/2 200\r\n\r\n", "HTTP/1.1 2000 x\r\n\r\n"}) {
    failures.clear();
    TunnelFilter f = make();
    Out start(Direction::kDownstreamToUpstream, "");
    f.on_start({}, start);
    EXPECT_EQ(feed(f, Direction::kUpstreamToDownstream, answer).status, FilterStatus::kClose) << answer;
    EXPECT_EQ(failures.size(), 1u) << answer;
  }
}

TEST_F(TunnelFilterTest, TheProxyClosingFirstFailsTheConnection) {
  TunnelFilter f = make();
  Out start(Direction::kDownstreamToUpstream, "");
  f.on_start({}, start);
  feed(f, Direction::kUpstreamToDownstream, "HTTP/1.1 200 OK\r\n");  // no blank line yet
  Out end(Direction::kUpstreamToDownstream, "");
  EXPECT_EQ(f.on_end_stream(Direction::kUpstreamToDownstream, end), FilterStatus::kClose);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0], "tunnel: the proxy closed the connection before answering CONNECT external.example.com:443");
}

// Bounded: the client's bytes while it waits, the proxy's head.
TEST_F(TunnelFilterTest, WhatIsHeldIsBounded) {
  TunnelFilter f = make();
  Out start(Direction::kDownstreamToUpstream, "");
  f.on_start({}, start);
  const std::string block(64 << 10, 'x');
  FilterStatus st = FilterStatus::kContinue;
  size_t sent = 0;
  while (st == FilterStatus::kContinue && sent <= TunnelFilter::kMaxHeld) {
    st = feed(f, Direction::kDownstreamToUpstream, block).status;
    sent += block.size();
  }
  EXPECT_EQ(st, FilterStatus::kClose);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_FALSE(proxy_failed_[0]) << "the client's excess is not the proxy's failure";

  TunnelFilter g = make();
  Out start2(Direction::kDownstreamToUpstream, "");
  g.on_start({}, start2);
  EXPECT_EQ(feed(g, Direction::kUpstreamToDownstream, "HTTP/1.1 200 OK\r\nX: " + std::string(20 << 10, 'y')).status,
            FilterStatus::kClose);
  EXPECT_EQ(failures.size(), 2u);
}

}  // namespace
}  // namespace sluice::proxy
