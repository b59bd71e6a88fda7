// A fixed-upstream TCP relay on the engine, for manual checks and benchmarks:
//   relay_demo LISTEN_ADDR UPSTREAM_ADDR [workers]
//   relay_demo 127.0.0.1:9000 127.0.0.1:8080 1
// Runs until SIGINT/SIGTERM, then drains for 5 s and prints the counters.

#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "userspace-proxy/engine/engine.h"

using namespace sluice::engine;

namespace {

class FixedUpstream final : public ConnectionHandler {
 public:
  explicit FixedUpstream(SocketAddress upstream) : upstream_(upstream) {}
  Verdict on_accept(Connection&, const AcceptInfo&) override { return Verdict::connect(upstream_); }
  Verdict on_downstream_data(Connection&, std::span<const uint8_t>) override { return Verdict::connect(upstream_); }
  void on_close(Connection&, const ConnectionStats&) override {}

 private:
  SocketAddress upstream_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s LISTEN_ADDR UPSTREAM_ADDR [workers]\n", argv[0]);
    return 2;
  }
  EngineConfig cfg;
  SocketAddress upstream;
  if (!SocketAddress::parse(argv[1], &cfg.listen) || !SocketAddress::parse(argv[2], &upstream)) {
    std::fprintf(stderr, "addresses look like 127.0.0.1:9000 or [::1]:9000\n");
    return 2;
  }
  if (argc > 3) cfg.workers = static_cast<unsigned>(std::atoi(argv[3]));
  if (const char* v = std::getenv("SLUICE_BUFFER_COUNT")) cfg.buffer_count = static_cast<uint32_t>(std::atoi(v));
  if (const char* v = std::getenv("SLUICE_BUFFER_SIZE")) cfg.buffer_size = static_cast<uint32_t>(std::atoi(v));
  if (const char* v = std::getenv("SLUICE_MAX_QUEUED")) cfg.max_queued_buffers = static_cast<uint32_t>(std::atoi(v));
  cfg.handler_factory = [upstream](uint32_t) { return std::make_unique<FixedUpstream>(upstream); };

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // workers inherit the mask

  Engine engine(cfg);
  if (engine.start() < 0) {
    std::fprintf(stderr, "relay_demo: %s\n", engine.error().c_str());
    return 1;
  }
  std::printf("listening on %s -> %s, %u workers, ring mode %s\n", engine.listen_address().to_string().c_str(),
              upstream.to_string().c_str(), engine.worker_count(), engine.ring_mode_name().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  engine.stop(std::chrono::seconds(5));
  engine.wait();
  CounterSnapshot c = engine.counters();
#define SLUICE_PRINT(name) std::printf("%-32s %llu\n", #name, static_cast<unsigned long long>(c.name));
  SLUICE_ENGINE_COUNTERS(SLUICE_PRINT)
#undef SLUICE_PRINT
  return 0;
}
