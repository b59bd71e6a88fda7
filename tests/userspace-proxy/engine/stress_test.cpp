// Many concurrent connections through one worker and through two.

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <future>

#include "tests/userspace-proxy/engine/test_util.h"

namespace sluice::engine::testing {
namespace {

// An epoll echo server on its own thread.
class EchoServer {
 public:
  EchoServer() {
    lfd_ = listen_loopback(&port_, 4096);
    efd_ = epoll_create1(EPOLL_CLOEXEC);
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    add(lfd_);
    add(stop_fd_);
    thread_ = std::thread([this] { run(); });
  }
  ~EchoServer() {
    uint64_t one = 1;
    ssize_t n = write(stop_fd_, &one, sizeof(one));
    (void)n;
    thread_.join();
    close(lfd_);
    close(efd_);
    close(stop_fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void add(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(efd_, EPOLL_CTL_ADD, fd, &ev);
  }
  void run() {
    std::vector<epoll_event> evs(256);
    char buf[65536];
    for (;;) {
      int n = epoll_wait(efd_, evs.data(), static_cast<int>(evs.size()), -1);
      for (int i = 0; i < n; ++i) {
        int fd = evs[static_cast<size_t>(i)].data.fd;
        if (fd == stop_fd_) {
          for (int f : open_) close(f);
          return;
        }
        if (fd == lfd_) {
          int c = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (c >= 0) {
            add(c);
            open_.push_back(c);
          }
          continue;
        }
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r > 0) {
          write_all(fd, buf, static_cast<size_t>(r));  // small messages: blocking write is fine
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          epoll_ctl(efd_, EPOLL_CTL_DEL, fd, nullptr);
          shutdown(fd, SHUT_WR);
        }
      }
    }
  }

  uint16_t port_ = 0;
  int lfd_, efd_, stop_fd_;
  std::vector<int> open_;
  std::thread thread_;
};

class StressTest : public ::testing::TestWithParam<unsigned> {};

TEST_P(StressTest, ThousandConcurrentConnectionsEcho) {
  signal(SIGPIPE, SIG_IGN);
  constexpr int kConns = 1000;
  // Client, proxy (both sides) and server ends all live in this process.
  if (raise_nofile() < 4 * kConns + 256) GTEST_SKIP() << "needs RLIMIT_NOFILE >= 4256 (ulimit -Hn)";
  EchoServer echo;
  CloseLog log;
  SocketAddress up = SocketAddress::loopback4(echo.port());
  EngineConfig cfg = test_config([up, &log](ScriptedHandler& h) {
    h.upstreams = {up};
    h.log = &log;
  }, GetParam());
  cfg.buffer_count = 1024;
  Engine engine(cfg);
  ASSERT_EQ(engine.start(), 0) << engine.error();

  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    int fd = connect_to(engine.listen_address().port());
    ASSERT_GE(fd, 0) << "connect #" << i << ": " << strerror(-fd);
    set_rcvtimeo(fd, kHang);
    fds.push_back(fd);
  }
  // All open at once; each sends a distinct message and expects it back.
  for (int i = 0; i < kConns; ++i) {
    std::string msg = "connection " + std::to_string(i) + " " + std::string(static_cast<size_t>(i % 97), 'x');
    ASSERT_TRUE(write_all(fds[static_cast<size_t>(i)], msg));
  }
  for (int i = 0; i < kConns; ++i) {
    std::string msg = "connection " + std::to_string(i) + " " + std::string(static_cast<size_t>(i % 97), 'x');
    std::string got(msg.size(), '\0');
    ASSERT_TRUE(read_exact(fds[static_cast<size_t>(i)], got.data(), got.size())) << i;
    EXPECT_EQ(got, msg);
  }
  for (int fd : fds) shutdown(fd, SHUT_WR);
  for (int fd : fds) {
    int err = -1;
    EXPECT_EQ(read_to_eof(fd, &err), "");
    EXPECT_EQ(err, 0);
    close(fd);
  }
  ASSERT_TRUE(log.wait_for(kConns));
  for (const auto& st : log.all()) EXPECT_EQ(st.reason, CloseReason::kCompleted) << close_reason_name(st.reason);
  engine.stop(0ms);
  engine.wait();
  CounterSnapshot k = engine.counters();
  EXPECT_EQ(k.accepted, static_cast<uint64_t>(kConns));
  EXPECT_EQ(k.closed, static_cast<uint64_t>(kConns));
  EXPECT_EQ(k.active_connections, 0u);
  EXPECT_EQ(k.buffers_in_use, 0u);
}

TEST_P(StressTest, BufferRingExhaustionRecoversWithoutLosingBytes) {
  // Far fewer buffers than connections x watermark: recvs hit -ENOBUFS and
  // must be re-armed as buffers come back.
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  constexpr int kConns = 64;
  constexpr size_t kBytes = 1u << 20;
  EchoServer echo;
  CloseLog log;
  SocketAddress up = SocketAddress::loopback4(echo.port());
  EngineConfig cfg = test_config([up, &log](ScriptedHandler& h) {
    h.upstreams = {up};
    h.log = &log;
  }, GetParam());
  cfg.buffer_count = 16;
  cfg.buffer_size = 4096;
  Engine engine(cfg);
  ASSERT_EQ(engine.start(), 0) << engine.error();
  std::vector<std::future<bool>> results;
  for (int i = 0; i < kConns; ++i) {
    results.push_back(std::async(std::launch::async, [&engine, i] {
      int fd = connect_to(engine.listen_address().port());
      if (fd < 0) return false;
      set_rcvtimeo(fd, kHang);
      auto sender = std::async(std::launch::async, [fd, i] {
        Hash h = send_stream(fd, static_cast<uint64_t>(100 + i), kBytes, 8192);
        shutdown(fd, SHUT_WR);
        return h;
      });
      int err = -1;
      Hash got = recv_stream(fd, &err);
      Hash sent = sender.get();
      close(fd);
      return err == 0 && got.n == kBytes && got.h == sent.h;
    }));
  }
  for (auto& r : results) EXPECT_TRUE(r.get());
  ASSERT_TRUE(log.wait_for(kConns));
  CounterSnapshot k = engine.counters();
  EXPECT_LE(k.buffers_in_use_peak, 16u);
  std::printf("[ info ] enobufs=%llu pauses=%llu rearms=%llu\n", static_cast<unsigned long long>(k.recv_enobufs),
              static_cast<unsigned long long>(k.backpressure_pauses), static_cast<unsigned long long>(k.recv_rearms));
}

INSTANTIATE_TEST_SUITE_P(Workers, StressTest, ::testing::Values(1u, 2u),
                         [](const auto& info) { return std::to_string(info.param) + "Workers"; });

}  // namespace
}  // namespace sluice::engine::testing
