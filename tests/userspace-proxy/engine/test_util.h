#pragma once

// Loopback helpers for the engine tests: blocking sockets, a recording
// handler and streaming checksums. Waits are bounded only to turn a hang into
// a failure; no assertion depends on timing.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "userspace-proxy/engine/engine.h"

namespace sluice::engine::testing {

using namespace std::chrono_literals;

inline constexpr auto kHang = std::chrono::seconds(60);

inline int listen_loopback(uint16_t* port, int backlog = 128) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, backlog) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// Fills the accept queue of a loopback listener that never accepts (backlog
// 0): further SYNs to it are dropped, so a connect hangs until its timeout.
inline std::vector<int> fill_accept_queue(uint16_t port) {
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int f = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    connect(f, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    fillers.push_back(f);
  }
  return fillers;
}

// A port with a bound but non-listening socket: connects are refused.
inline int reserve_refusing_port(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

inline int connect_to(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

// Accept with a hang guard; returns -ETIMEDOUT after kHang.
inline int accept_one(int lfd) {
  pollfd p{lfd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kHang).count())) != 1) return -ETIMEDOUT;
  return accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
}

inline void set_rcvtimeo(int fd, std::chrono::seconds s) {
  timeval tv{static_cast<time_t>(s.count()), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

inline bool write_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

inline bool write_all(int fd, std::string_view s) { return write_all(fd, s.data(), s.size()); }

// Reads until EOF. Returns the bytes, and -errno in *err on error (0 on EOF).
inline std::string read_to_eof(int fd, int* err = nullptr) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      if (err) *err = -errno;
      return out;
    }
    if (r == 0) {
      if (err) *err = 0;
      return out;
    }
    out.append(buf, static_cast<size_t>(r));
  }
}

inline bool read_exact(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Deterministic pseudo-random stream (splitmix64) and an order-sensitive hash.
class ByteStream {
 public:
  explicit ByteStream(uint64_t seed) : s_(seed) {}
  void fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (avail_ == 0) {
        uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        word_ = z ^ (z >> 31);
        avail_ = 8;
      }
      p[i] = static_cast<uint8_t>(word_);
      word_ >>= 8;
      --avail_;
    }
  }

 private:
  uint64_t s_;
  uint64_t word_ = 0;
  int avail_ = 0;
};

struct Hash {
  uint64_t h = 1469598103934665603ull;
  uint64_t n = 0;
  void update(const uint8_t* p, size_t len) {
    for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 1099511628211ull;
    n += len;
  }
};

// Sends `total` bytes of ByteStream(seed) and returns their hash.
inline Hash send_stream(int fd, uint64_t seed, size_t total, size_t chunk = 65536) {
  ByteStream bs(seed);
  Hash h;
  std::vector<uint8_t> buf(chunk);
  while (total > 0) {
    size_t n = std::min(total, chunk);
    bs.fill(buf.data(), n);
    h.update(buf.data(), n);
    if (!write_all(fd, buf.data(), n)) break;
    total -= n;
  }
  return h;
}

// Reads to EOF hashing; `per_read` lets a test slow the reader down.
inline Hash recv_stream(int fd, int* err = nullptr, size_t read_size = 65536,
                        const std::function<void()>& per_read = nullptr) {
  Hash h;
  std::vector<uint8_t> buf(read_size);
  for (;;) {
    ssize_t r = recv(fd, buf.data(), buf.size(), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (err) *err = r < 0 ? -errno : 0;
      return h;
    }
    h.update(buf.data(), static_cast<size_t>(r));
    if (per_read) per_read();
  }
}

// Raises the soft fd limit to the hard one; returns the new soft limit.
inline rlim_t raise_nofile() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

inline long rss_kib() {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  while (fgets(line, sizeof(line), f)) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) v = std::strtol(line + 6, nullptr, 10);
  }
  fclose(f);
  return v;
}

// Records every on_close, across workers.
class CloseLog {
 public:
  void add(const ConnectionStats& s) {
    std::lock_guard<std::mutex> l(mu_);
    stats_.push_back(s);
    cv_.notify_all();
  }
  // Waits until `n` connections closed; false on hang.
  bool wait_for(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, kHang, [&] { return stats_.size() >= n; });
  }
  std::vector<ConnectionStats> all() {
    std::lock_guard<std::mutex> l(mu_);
    return stats_;
  }
  ConnectionStats first() {
    std::lock_guard<std::mutex> l(mu_);
    return stats_.empty() ? ConnectionStats{} : stats_.front();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ConnectionStats> stats_;
};

// A handler built from lambdas; unset callbacks connect to `upstreams`.
struct ScriptedHandler final : public ConnectionHandler {
  std::vector<SocketAddress> upstreams;
  CloseLog* log = nullptr;
  std::function<Verdict(Connection&, const AcceptInfo&)> accept_fn;
  std::function<Verdict(Connection&, std::span<const uint8_t>)> data_fn;
  std::function<Verdict(Connection&, std::span<const uint8_t>)> timeout_fn;
  std::function<Verdict(Connection&, std::span<const uint8_t>)> eof_fn;
  std::function<Verdict(Connection&, std::span<const uint8_t>)> wake_fn;
  std::function<Verdict(Connection&, std::span<const uint8_t>)> new_upstream_fn;
  std::function<StreamFilterPtr()> filter_fn;
  // A failed connect attempt (on the worker's thread): the wait before the
  // next address (unset: at once).
  std::function<std::chrono::milliseconds(const SocketAddress&, bool, bool)> connect_failed_fn;

  Verdict connect_verdict() {
    return Verdict::connect(std::span<const SocketAddress>(upstreams), filter_fn ? filter_fn() : nullptr);
  }
  Verdict on_accept(Connection& c, const AcceptInfo& info) override {
    return accept_fn ? accept_fn(c, info) : connect_verdict();
  }
  Verdict on_downstream_data(Connection& c, std::span<const uint8_t> pending) override {
    return data_fn ? data_fn(c, pending) : connect_verdict();
  }
  Verdict on_detection_timeout(Connection& c, std::span<const uint8_t> pending) override {
    return timeout_fn ? timeout_fn(c, pending) : Verdict::close();
  }
  Verdict on_downstream_eof(Connection& c, std::span<const uint8_t> pending) override {
    return eof_fn ? eof_fn(c, pending) : Verdict::close();
  }
  Verdict on_wake(Connection& c, std::span<const uint8_t> pending) override {
    return wake_fn ? wake_fn(c, pending) : Verdict::close();
  }
  Verdict on_new_upstream(Connection& c, std::span<const uint8_t> pending) override {
    return new_upstream_fn ? new_upstream_fn(c, pending) : Verdict::close();
  }
  std::chrono::milliseconds on_connect_attempt_failed(Connection&, const SocketAddress& upstream, bool timed_out,
                                                      bool another_left) override {
    return connect_failed_fn ? connect_failed_fn(upstream, timed_out, another_left) : std::chrono::milliseconds(0);
  }
  void on_close(Connection&, const ConnectionStats& s) override {
    if (log) log->add(s);
  }
};

// Engine config for tests: one worker unless said otherwise, small limits.
inline EngineConfig test_config(std::function<void(ScriptedHandler&)> setup, unsigned workers = 1) {
  EngineConfig cfg;
  cfg.workers = workers;
  cfg.buffer_count = 256;
  cfg.handler_factory = [setup](uint32_t) {
    auto h = std::make_unique<ScriptedHandler>();
    setup(*h);
    return h;
  };
  return cfg;
}

// Fixture base for tests through real sockets: an upstream listener on
// loopback, an engine whose ScriptedHandler connects there unless told
// otherwise, and the two ends (client(), server()). `Base` is
// ::testing::Test or a TestWithParam<>.
template <typename Base = ::testing::Test>
class LoopbackEngine : public Base {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    upstream_fd_ = listen_loopback(&upstream_port_, 1024);
    ASSERT_GE(upstream_fd_, 0);
  }
  void TearDown() override {
    if (engine_) {
      engine_->stop(0ms);
      engine_->wait();
    }
    if (upstream_fd_ >= 0) close(upstream_fd_);
  }
  void start_engine(std::function<void(ScriptedHandler&)> setup, std::function<void(EngineConfig&)> tweak = nullptr,
                    unsigned workers = 1) {
    SocketAddress up = SocketAddress::loopback4(upstream_port_);
    CloseLog* log = &log_;
    EngineConfig cfg = test_config(
        [up, log, setup](ScriptedHandler& h) {
          h.upstreams = {up};
          h.log = log;
          if (setup) setup(h);
        },
        workers);
    if (tweak) tweak(cfg);
    engine_ = std::make_unique<Engine>(cfg);
    ASSERT_EQ(engine_->start(), 0) << engine_->error();
    port_ = engine_->listen_address().port();
  }
  int client() {
    int fd = connect_to(port_);
    EXPECT_GE(fd, 0);
    set_rcvtimeo(fd, kHang);
    return fd;
  }
  int server() {
    int fd = accept_one(upstream_fd_);
    EXPECT_GE(fd, 0);
    set_rcvtimeo(fd, kHang);
    return fd;
  }
  // Whether the upstream listener has a connection waiting (non-blocking).
  bool upstream_has_connection() {
    pollfd p{upstream_fd_, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }
  std::string read_n(int fd, size_t n) {
    std::string s(n, '\0');
    if (!read_exact(fd, s.data(), n)) s.clear();
    return s;
  }
  // Counters are written by the worker thread; wait for one to reach `n`.
  bool wait_counter(uint64_t CounterSnapshot::*field, uint64_t n) {
    auto deadline = std::chrono::steady_clock::now() + kHang;
    while (engine_->counters().*field < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  uint16_t upstream_port_ = 0;
  int upstream_fd_ = -1;
  uint16_t port_ = 0;
  std::unique_ptr<Engine> engine_;
  CloseLog log_;
};

}  // namespace sluice::engine::testing
