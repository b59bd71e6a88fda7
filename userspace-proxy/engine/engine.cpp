#include "userspace-proxy/engine/engine.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "userspace-proxy/engine/worker.h"

namespace sluice::engine {

namespace {

// One listener per worker, all in one SO_REUSEPORT group: the kernel spreads
// new connections across workers with no shared accept queue, no thundering
// herd and no cross-thread hand-off, and a new sluice-proxy process can bind
// the same port before the old one drains (hot restart).
int open_listener(const SocketAddress& addr, int backlog, std::string* error) {
  int fd = socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = "socket: " + std::string(strerror(errno));
    return -errno;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    int err = errno;
    *error = "setsockopt(SO_REUSEPORT): " + std::string(strerror(err));
    close(fd);
    return -err;
  }
  if (addr.family() == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  // Accepted sockets inherit TCP_NODELAY: a relay must not add Nagle delays.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (bind(fd, addr.sa(), addr.len()) != 0) {
    int err = errno;
    *error = "bind " + addr.to_string() + ": " + strerror(err) +
             (err == EADDRINUSE ? " (another process without SO_REUSEPORT holds the port?)" : "");
    close(fd);
    return -err;
  }
  if (listen(fd, backlog) != 0) {
    int err = errno;
    *error = "listen " + addr.to_string() + ": " + strerror(err);
    close(fd);
    return -err;
  }
  return fd;
}

}  // namespace

Engine::Engine(EngineConfig config) : config_(std::move(config)) {}

Engine::~Engine() {
  if (started_ && !joined_) {
    stop(std::chrono::milliseconds(0));
    wait();
  }
}

int Engine::start() {
  if (started_) return -EALREADY;
  if (!config_.handler_factory) {
    error_ = "EngineConfig.handler_factory is not set";
    return -EINVAL;
  }
  if (!config_.listen.valid()) {
    error_ = "EngineConfig.listen is not a valid address";
    return -EINVAL;
  }
  unsigned n = config_.workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  SocketAddress addr = config_.listen;
  std::vector<int> fds;
  for (unsigned i = 0; i < n; ++i) {
    int fd = open_listener(addr, config_.listen_backlog, &error_);
    if (fd < 0) {
      for (int f : fds) close(f);
      return fd;
    }
    if (i == 0) {
      SocketAddress::local_of(fd, &addr);  // resolve port 0 for the rest of the group
      bound_ = addr;
    }
    fds.push_back(fd);
  }
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(config_, i, fds[i]));
  for (unsigned i = 0; i < n; ++i) {
    int rc = workers_[i]->start(&error_);
    if (rc < 0) {
      for (unsigned j = 0; j < i; ++j) workers_[j]->request_stop(std::chrono::milliseconds(0));
      workers_.clear();  // joins
      return rc;
    }
  }
  started_ = true;
  return 0;
}

void Engine::stop(std::chrono::milliseconds drain) {
  for (auto& w : workers_) w->request_stop(drain);
}

void Engine::wait() {
  for (auto& w : workers_) w->join();
  joined_ = true;
}

CounterSnapshot Engine::counters() const {
  CounterSnapshot s;
  for (const auto& w : workers_) {
    const WorkerCounters& c = w->counters();
#define SLUICE_SUM(name) s.name += c.name.get();
    SLUICE_ENGINE_COUNTERS(SLUICE_SUM)
#undef SLUICE_SUM
    // Peaks are per worker; the sum of peaks is still an upper bound, but the
    // max is what a test or an operator wants to compare against a limit.
  }
  uint64_t buf_peak = 0, q_peak = 0;
  for (const auto& w : workers_) {
    buf_peak = std::max(buf_peak, w->counters().buffers_in_use_peak.get());
    q_peak = std::max(q_peak, w->counters().queued_bytes_peak.get());
  }
  s.buffers_in_use_peak = buf_peak;
  s.queued_bytes_peak = q_peak;
  return s;
}

const WorkerCounters& Engine::worker_counters(uint32_t worker) const { return workers_.at(worker)->counters(); }

std::string Engine::ring_mode_name() const {
  return workers_.empty() ? "none" : workers_.front()->ring_mode_name();
}

}  // namespace sluice::engine
