// sluice-proxy: the io_uring egress proxy. Accepts the connections the BPF
// programs redirect to it, finds each one's original destination, and applies
// Istio's outboundTrafficPolicy with the ServiceEntries from --config.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "userspace-proxy/engine/engine.h"
#include "userspace-proxy/proxy/access_log_sink.h"
#include "userspace-proxy/proxy/config_watch.h"
#include "userspace-proxy/proxy/dns_resolver.h"
#include "userspace-proxy/proxy/egress_handler.h"
#include "userspace-proxy/proxy/proxy_counters.h"
#include "userspace-proxy/proxy/snapshot.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

void log_line(const char* level, const std::string& message) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  char when[32];
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &utc);
  std::string line = std::string(when) + "." + std::to_string(ts.tv_nsec / 1'000'000 + 1000).substr(1) +
                     "Z sluice-proxy " + level + ": " + message + "\n";
  (void)!write(STDERR_FILENO, line.data(), line.size());
}
void log_info(const std::string& m) { log_line("info", m); }
void log_error(const std::string& m) { log_line("error", m); }

struct Flags {
  std::vector<std::string> config;
  std::vector<std::string> listen{"127.0.0.1:15001", "[::1]:15001"};
  unsigned workers = 0;
  std::string mark = "0x539";
  std::optional<std::string> access_log;
  bool access_log_json = false;
  std::string dns_servers;
  std::string dns_lookups = "fb";
  uint32_t connect_timeout_ms = 10000;
  uint32_t detection_timeout_ms = 5000;
  uint32_t poll_ms = 250;
  std::string role = "sidecar";
};

std::optional<uint32_t> parse_u32(const std::string& text) {
  try {
    size_t used = 0;
    unsigned long v = std::stoul(text, &used, 0);
    if (used != text.size() || v > UINT32_MAX) return std::nullopt;
    return static_cast<uint32_t>(v);
  } catch (...) {
    return std::nullopt;
  }
}

int run(const Flags& flags) {
  using namespace sluice;
  if (flags.role != "sidecar") {
    log_error("--role " + flags.role +
              ": only \"sidecar\" is supported so far (the egress gateway role is not built yet)");
    return kExitUsage;
  }
  std::optional<uint32_t> mark = parse_u32(flags.mark);
  if (!mark) {
    log_error("--mark " + flags.mark + ": not a number (e.g. 0x539, Istio's mark; 0 = none)");
    return kExitUsage;
  }
  std::vector<engine::SocketAddress> listens;
  for (const std::string& l : flags.listen) {
    engine::SocketAddress a;
    if (!engine::SocketAddress::parse(l, &a)) {
      log_error("--listen " + l + ": not ADDRESS:PORT (e.g. 127.0.0.1:15001 or [::1]:15001)");
      return kExitUsage;
    }
    listens.push_back(a);
  }

  // Signals: block before any thread starts (the DNS resolver's, the workers') so only signalfd sees them.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGUSR1);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) {
    log_error(std::string("signalfd: ") + std::strerror(errno));
    return kExitFailure;
  }

  // First configuration: must be valid, or there is nothing to serve with.
  proxy::SnapshotStore store;
  proxy::SnapshotLoad first = proxy::load_snapshot(flags.config, 1);
  for (const auto& d : first.diagnostics.items()) {
    (d.severity == config::Severity::kError ? log_error : log_info)(d.format());
  }
  if (!first.snapshot) {
    log_error("the configuration has errors (above); fix them and start again");
    return kExitUsage;
  }
  store.publish(first.snapshot);
  log_info(proxy::describe(*first.snapshot));

  // Access log: --access-log wins; otherwise the mesh config's accessLogFile.
  std::string log_path = flags.access_log ? *flags.access_log : first.snapshot->config.mesh.access_log_file;
  bool json = flags.access_log_json || first.snapshot->config.mesh.access_log_encoding == "JSON";
  std::unique_ptr<proxy::AccessLogSink> access_log;
  if (!log_path.empty()) {
    std::string err;
    access_log = proxy::AccessLogSink::open(log_path, json, &err);
    if (!access_log) {
      log_error(err);
      return kExitUsage;
    }
    log_info("access log: " + log_path + (json ? " (JSON)" : ""));
  }

  proxy::DnsResolverOptions dns_options;
  dns_options.servers = flags.dns_servers;
  dns_options.lookups = flags.dns_lookups;
  std::string dns_error;
  std::unique_ptr<proxy::DnsResolver> dns = proxy::DnsResolver::create(dns_options, &dns_error);
  if (!dns) log_error("DNS resolver unavailable (" + dns_error + "): resolution DNS entries will fail with UH");

  proxy::ProxyCounters counters;
  proxy::EgressOptions eo;
  eo.snapshots = &store;
  eo.dns = dns.get();
  eo.access_log = access_log.get();
  eo.counters = &counters;
  eo.detection_timeout = std::chrono::milliseconds(flags.detection_timeout_ms);
  eo.dns_wait = std::chrono::milliseconds(3000);

  std::vector<std::unique_ptr<engine::Engine>> engines;
  for (const auto& addr : listens) {
    engine::EngineConfig ec;
    ec.listen = addr;
    ec.workers = flags.workers;
    ec.upstream_mark = *mark;
    ec.connect_timeout = std::chrono::milliseconds(flags.connect_timeout_ms);
    ec.handler_factory = [eo](uint32_t) { return proxy::make_egress_handler(eo); };
    auto e = std::make_unique<engine::Engine>(std::move(ec));
    if (int rc = e->start(); rc < 0) {
      log_error("cannot listen on " + addr.to_string() + ": " + e->error());
      close(sfd);
      return kExitFailure;
    }
    log_info("listening on " + e->listen_address().to_string() + " (" + std::to_string(e->worker_count()) +
             " workers, " + e->ring_mode_name() + ")");
    engines.push_back(std::move(e));
  }

  proxy::ConfigWatch watch(flags.config, store, log_info, log_error, std::chrono::milliseconds(flags.poll_ms));
  if (!flags.config.empty()) watch.start();

  for (;;) {
    signalfd_siginfo si{};
    ssize_t n = read(sfd, &si, sizeof(si));
    if (n != sizeof(si)) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    if (si.ssi_signo == SIGHUP) {
      log_info("SIGHUP: reloading the configuration");
      watch.poll(true);
      continue;
    }
    if (si.ssi_signo == SIGUSR1) {
      log_info("counters: " + counters.summary());
      continue;
    }
    log_info("exiting on signal " + std::to_string(si.ssi_signo) + "; draining for up to 5 s");
    break;
  }
  watch.stop();
  for (auto& e : engines) e->stop(std::chrono::seconds(5));
  for (auto& e : engines) e->wait();
  log_info("counters: " + counters.summary());
  close(sfd);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{
      "sluice-proxy: the egress proxy. It accepts the outbound TCP connections that sluice-agent's BPF\n"
      "programs redirect to it, reads each one's original destination (SO_ORIGINAL_DST), looks at the\n"
      "first bytes (HTTP Host, TLS SNI) and applies Istio's outboundTrafficPolicy: ALLOW_ANY passes\n"
      "unknown destinations through, REGISTRY_ONLY blocks them (HTTP: 502; anything else: closed).\n"
      "Known destinations (ServiceEntry) go to their resolved endpoints. Config files are watched and\n"
      "reloaded live; a bad file is reported and the last good config keeps serving.\n\n"
      "Example:\n"
      "  sluice-proxy --config /etc/istio/config --config /etc/sluice/service-entries --access-log /dev/stdout\n",
      "sluice-proxy"};
  app.add_option("--config", flags.config,
                 "Istio YAML file or directory (ServiceEntry, the `istio` ConfigMap with the mesh config, ...); "
                 "repeatable, watched for changes")
      ->check(CLI::ExistingPath);
  app.add_option("--listen", flags.listen, "ADDRESS:PORT to accept redirected connections on (repeatable)")
      ->capture_default_str();
  app.add_option("--workers", flags.workers, "worker threads per listener (0 = one per CPU)")->capture_default_str();
  app.add_option("--mark", flags.mark,
                 "SO_MARK for upstream sockets, so interception skips the proxy's own traffic (0 = none)")
      ->capture_default_str();
  app.add_option("--access-log", flags.access_log,
                 "access log file (\"/dev/stdout\" works; \"\" = off); default: the mesh config's accessLogFile");
  app.add_flag("--access-log-json", flags.access_log_json, "JSON access log lines (also: accessLogEncoding: JSON)");
  app.add_option("--dns-servers", flags.dns_servers,
                 "DNS servers for resolution: DNS entries, e.g. 127.0.0.1:5353 (default: /etc/resolv.conf)");
  app.add_option("--dns-lookups", flags.dns_lookups, "c-ares lookup order: fb = /etc/hosts then DNS, f = hosts only")
      ->capture_default_str();
  app.add_option("--connect-timeout", flags.connect_timeout_ms, "upstream connect timeout in ms (Istio: 10 s)")
      ->capture_default_str();
  app.add_option("--detection-timeout", flags.detection_timeout_ms,
                 "ms to wait for a client's first bytes on a port of undeclared protocol before treating the "
                 "connection as opaque TCP (server-first protocols; Istio: 5 s)")
      ->capture_default_str();
  app.add_option("--poll-interval-ms", flags.poll_ms, "how often to check the config files")->capture_default_str();
  app.add_option("--role", flags.role, "sidecar (gateway: not yet)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  return run(flags);
}
