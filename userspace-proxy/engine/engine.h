#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "userspace-proxy/engine/engine_config.h"
#include "userspace-proxy/engine/worker_counters.h"

namespace sluice::engine {

class Worker;

// The data plane: N workers, each a thread with its own io_uring, buffer ring,
// connection pool and SO_REUSEPORT listener.
//
//   Engine e(config);
//   if (int rc = e.start(); rc < 0) { log(e.error()); }
//   ... e.stop(std::chrono::seconds(5)); e.wait();
class Engine {
 public:
  explicit Engine(EngineConfig config);
  ~Engine();  // stops with a zero drain deadline and joins
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Binds listeners and starts workers; returns once every worker accepts.
  // Returns 0 or -errno; error() then says what failed.
  int start();
  // The bound listening address (port resolved when the config said 0).
  const SocketAddress& listen_address() const { return bound_; }
  // Stop accepting (close listeners); let established connections finish
  // until `drain` passes, then abort the rest. Returns immediately.
  void stop(std::chrono::milliseconds drain);
  // Joins the workers (after stop()).
  void wait();

  CounterSnapshot counters() const;
  const WorkerCounters& worker_counters(uint32_t worker) const;
  uint32_t worker_count() const { return static_cast<uint32_t>(workers_.size()); }
  // The io_uring setup flags each worker ended up with, e.g. "defer_taskrun".
  std::string ring_mode_name() const;
  const std::string& error() const { return error_; }

 private:
  EngineConfig config_;
  SocketAddress bound_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::string error_;
  bool started_ = false;
  bool joined_ = false;
};

}  // namespace sluice::engine
