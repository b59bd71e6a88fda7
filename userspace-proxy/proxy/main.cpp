// sluice-proxy: the io_uring egress proxy. Accepts the connections the BPF
// programs redirect to it, finds each one's original destination, and applies
// Istio's outboundTrafficPolicy with the ServiceEntries from --config.
#include <poll.h>
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
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "userspace-proxy/admin/admin_endpoints.h"
#include "userspace-proxy/admin/admin_server.h"
#include "userspace-proxy/admin/istio_metrics.h"
#include "userspace-proxy/admin/log_level.h"
#include "userspace-proxy/admin/metrics_registry.h"
#include "userspace-proxy/engine/engine.h"
#include "userspace-proxy/proxy/access_log_sink.h"
#include "userspace-proxy/proxy/clusters.h"
#include "userspace-proxy/proxy/config_watch.h"
#include "userspace-proxy/proxy/dns_resolver.h"
#include "userspace-proxy/proxy/egress_handler.h"
#include "userspace-proxy/proxy/proxy_counters.h"
#include "userspace-proxy/proxy/snapshot.h"
#include "userspace-proxy/proxy/tls_contexts.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// POST /logging?level=... changes it at run time.
sluice::admin::LogLevelSetting g_log_level;

void log_line(const char* level, const std::string& message) {
  sluice::admin::LogLevel l = sluice::admin::parse_log_level(level).value_or(sluice::admin::LogLevel::kInfo);
  if (!g_log_level.enabled(l)) return;
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
void log_warning(const std::string& m) { log_line("warning", m); }
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
  // Istio's terminationDrainDuration: how long established connections may
  // finish after SIGTERM/SIGINT before the rest are aborted.
  uint32_t drain_seconds = 5;
  uint32_t local_buffers = 4096;
  uint32_t bulk_buffers = 64;
  uint16_t admin_port = 15000;
  std::string admin_address = "127.0.0.1";
  std::string role = "sidecar";
  // Gateway role.
  std::string namespace_;  // empty: istio-system for a gateway, default for a sidecar
  std::vector<std::string> labels;
  std::string listen_address = "0.0.0.0";
  std::string certs = "/etc/certs";
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
  if (flags.role != "sidecar" && flags.role != "gateway") {
    log_error("--role " + flags.role + ": sidecar or gateway");
    return kExitUsage;
  }
  const bool gateway = flags.role == "gateway";
  proxy::ProxyIdentity identity;
  identity.gateway = gateway;
  identity.namespace_ = !flags.namespace_.empty() ? flags.namespace_ : gateway ? "istio-system" : "default";
  identity.workload_known = !flags.namespace_.empty() || !flags.labels.empty();
  for (const std::string& l : flags.labels) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      log_error("--label " + l + ": not KEY=VALUE (e.g. istio=egressgateway)");
      return kExitUsage;
    }
    identity.labels[l.substr(0, eq)] = l.substr(eq + 1);
  }
  if (gateway && identity.labels.empty()) identity.labels["istio"] = "egressgateway";
  engine::SocketAddress gateway_address;
  if (gateway && !engine::SocketAddress::parse(
                     (flags.listen_address.find(':') != std::string::npos ? "[" + flags.listen_address + "]"
                                                                          : flags.listen_address) + ":0",
                     &gateway_address)) {
    log_error("--listen-address " + flags.listen_address + ": not an IP address");
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
  proxy::SnapshotLoad first = proxy::load_snapshot(flags.config, 1, identity);
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
  proxy::TlsContexts tls_contexts(flags.certs);
  tls_contexts.set_warning_log(log_warning);
  proxy::Clusters clusters;
  // Admin endpoint (loopback): /ready, /healthz, /stats/prometheus with
  // Istio's metrics, /config_dump, /logging.
  admin::MetricsRegistry metrics;
  admin::IstioMetrics istio_metrics(metrics);
  admin::ServerStateCell server_state;
  std::mutex engines_mu;  // engines are added/removed on reloads while scrapes read them
  std::map<std::string, std::unique_ptr<engine::Engine>> engines;
  metrics.add_callback("sluice_proxy_events_total", "sluice-proxy events by kind (see --help: SIGUSR1 counters).",
                       admin::MetricType::kCounter, {"event"}, [&counters](admin::SampleWriter& w) {
                         auto v = [](const std::atomic<uint64_t>& c) { return double(c.load(std::memory_order_relaxed)); };
                         w.sample({"accepted"}, v(counters.accepted));
                         w.sample({"no_original_dst"}, v(counters.no_original_dst));
                         w.sample({"http_requests"}, v(counters.http_requests));
                         w.sample({"upstream_changed"}, v(counters.upstream_changed));
                         w.sample({"upstream_queued"}, v(counters.upstream_queued));
                         w.sample({"upstream_overflow"}, v(counters.upstream_overflow));
                         w.sample({"retry_overflow"}, v(counters.retry_overflow));
                         w.sample({"retries"}, v(counters.retries));
                         w.sample({"faults_delayed"}, v(counters.faults_delayed));
                         w.sample({"faults_aborted"}, v(counters.faults_aborted));
                         w.sample({"mirrored"}, v(counters.mirrored));
                         w.sample({"mirror_skipped"}, v(counters.mirror_skipped));
                         w.sample({"mirror_cut"}, v(counters.mirror_cut));
                         w.sample({"dns_failures"}, v(counters.dns_failures));
                         w.sample({"protocol_errors"}, v(counters.protocol_errors));
                         w.sample({"tls_handshakes"}, v(counters.tls_handshakes));
                         w.sample({"tls_handshake_failures"}, v(counters.tls_handshake_failures));
                         w.sample({"tls_resumed"}, v(counters.tls_resumed));
                       });
  metrics.add_callback("sluice_engine_active_connections", "Connections open, per listener.",
                       admin::MetricType::kGauge, {"listener"}, [&](admin::SampleWriter& w) {
                         std::lock_guard<std::mutex> lock(engines_mu);
                         for (auto& [name, e] : engines) {
                           w.sample({std::string_view(name)}, double(e->counters().active_connections));
                         }
                       });
  metrics.add_callback("sluice_engine_accepted_total", "Connections accepted, per listener.",
                       admin::MetricType::kCounter, {"listener"}, [&](admin::SampleWriter& w) {
                         std::lock_guard<std::mutex> lock(engines_mu);
                         for (auto& [name, e] : engines) {
                           w.sample({std::string_view(name)}, double(e->counters().accepted));
                         }
                       });
  metrics.add_callback("sluice_engine_upstream_pool_total",
                       "Pooled upstream connections, per listener: parked for reuse, reused by a later "
                       "connection, dropped (the upstream closed or spoke while idle), expired (idle timeout, "
                       "overflow, drain).",
                       admin::MetricType::kCounter, {"listener", "event"}, [&](admin::SampleWriter& w) {
                         std::lock_guard<std::mutex> lock(engines_mu);
                         for (auto& [name, e] : engines) {
                           const engine::CounterSnapshot c = e->counters();
                           w.sample({std::string_view(name), "pooled"}, double(c.upstream_pooled));
                           w.sample({std::string_view(name), "reused"}, double(c.upstream_reused));
                           w.sample({std::string_view(name), "dropped"}, double(c.upstream_pool_dropped));
                           w.sample({std::string_view(name), "expired"}, double(c.upstream_pool_expired));
                         }
                       });
  metrics.add_callback("sluice_engine_upstream_pool_idle", "Idle upstream connections in the pool, per listener.",
                       admin::MetricType::kGauge, {"listener"}, [&](admin::SampleWriter& w) {
                         std::lock_guard<std::mutex> lock(engines_mu);
                         for (auto& [name, e] : engines) {
                           w.sample({std::string_view(name)}, double(e->counters().upstream_pool_idle));
                         }
                       });
  metrics.add_callback("sluice_engine_stat",
                       "The io_uring engine's own counters and gauges per listener, summed over workers (peaks: the "
                       "largest worker's): loop iterations, SQEs, buffers in use, bulk-buffer promotions, "
                       "backpressure pauses, ... (userspace-proxy/engine/worker_counters.h says what each counts).",
                       admin::MetricType::kGauge, {"listener", "stat"}, [&](admin::SampleWriter& w) {
                         std::lock_guard<std::mutex> lock(engines_mu);
                         for (auto& [name, e] : engines) {
                           const engine::CounterSnapshot c = e->counters();
#define SLUICE_ENGINE_SAMPLE(field) w.sample({std::string_view(name), #field}, double(c.field));
                           SLUICE_ENGINE_COUNTERS(SLUICE_ENGINE_SAMPLE)
#undef SLUICE_ENGINE_SAMPLE
                         }
                       });
  // SIGUSR1's line: the proxy's counters and the engines' pools.
  auto summary = [&] {
    engine::CounterSnapshot sum;
    {
      std::lock_guard<std::mutex> lock(engines_mu);
      for (auto& [name, e] : engines) {
        const engine::CounterSnapshot c = e->counters();
        sum.upstream_pooled += c.upstream_pooled;
        sum.upstream_reused += c.upstream_reused;
        sum.upstream_pool_idle += c.upstream_pool_idle;
      }
    }
    return counters.summary() + " upstream_pooled=" + std::to_string(sum.upstream_pooled) +
           " upstream_reused=" + std::to_string(sum.upstream_reused) +
           " upstream_pool_idle=" + std::to_string(sum.upstream_pool_idle);
  };
  std::unique_ptr<admin::AdminServer> admin_server;
  if (flags.admin_port != 0) {
    admin::AdminServerOptions ao;
    ao.address = flags.admin_address;
    ao.port = flags.admin_port;
    admin_server = std::make_unique<admin::AdminServer>(ao);
    admin::AdminEndpoints ep;
    ep.state = &server_state;
    ep.metrics = &metrics;
    ep.log_level = &g_log_level;
    ep.config_dump = [&store, &flags]() {
      proxy::SnapshotPtr snap = store.current();
      nlohmann::json j;
      j["role"] = flags.role;
      if (!snap) return j.dump(2);
      j["generation"] = snap->generation;
      j["summary"] = proxy::describe(*snap);
      j["source_files"] = snap->config.source_files;
      j["outbound_traffic_policy"] = config::to_string(snap->mode());
      auto names = [](const auto& list) {
        nlohmann::json a = nlohmann::json::array();
        for (const auto& r : list) a.push_back(r.meta.key());
        return a;
      };
      j["service_entries"] = names(snap->config.service_entries);
      j["virtual_services"] = names(snap->config.virtual_services);
      j["destination_rules"] = names(snap->config.destination_rules);
      j["gateways"] = names(snap->config.gateways);
      nlohmann::json servers = nlohmann::json::array();
      for (uint32_t port : snap->gateway_servers.ports()) {
        for (const auto& s : snap->gateway_servers.on_port(port)) servers.push_back(s.describe());
      }
      j["gateway_servers"] = servers;
      return j.dump(2);
    };
    if (!admin::register_admin_endpoints(*admin_server, ep) || admin_server->start() < 0) {
      log_error("admin endpoint on " + flags.admin_address + ":" + std::to_string(flags.admin_port) + ": " +
                admin_server->error());
      close(sfd);
      return kExitUsage;
    }
    log_info("admin endpoint on " + flags.admin_address + ":" + std::to_string(flags.admin_port));
  }

  proxy::EgressOptions eo;
  eo.tls = &tls_contexts;
  eo.istio_metrics = &istio_metrics;
  eo.clusters = &clusters;
  eo.log_warning = log_warning;
  eo.snapshots = &store;
  eo.dns = dns.get();
  eo.access_log = access_log.get();
  eo.counters = &counters;
  eo.detection_timeout = std::chrono::milliseconds(flags.detection_timeout_ms);
  eo.dns_wait = std::chrono::milliseconds(3000);

  // Listeners: the sidecar's --listen addresses; a gateway's Gateway server
  // ports on --listen-address, reconciled whenever the config changes.
  auto start_engine = [&](const engine::SocketAddress& addr) -> bool {
    engine::EngineConfig ec;
    ec.max_sniff_bytes = static_cast<uint32_t>(eo.sniff_window);
    ec.listen = addr;
    ec.workers = flags.workers;
    ec.upstream_mark = *mark;
    ec.connect_timeout = std::chrono::milliseconds(flags.connect_timeout_ms);
    // TLS output and local replies are copied into engine-owned buffers
    // (the ring's provided buffers hold only what the kernel read). Mapped
    // lazily: only buffers in use cost memory.
    ec.local_buffer_count = flags.local_buffers;
    ec.bulk_buffer_count = flags.bulk_buffers;
    ec.handler_factory = [eo, gateway, &metrics](uint32_t) {
      proxy::EgressOptions w = eo;
      w.metrics_shard = &metrics.add_shard();  // one per worker thread
      return gateway ? proxy::make_gateway_handler(w) : proxy::make_egress_handler(w);
    };
    auto e = std::make_unique<engine::Engine>(std::move(ec));
    if (int rc = e->start(); rc < 0) {
      log_error("cannot listen on " + addr.to_string() + ": " + e->error());
      return false;
    }
    log_info("listening on " + e->listen_address().to_string() + " (" + std::to_string(e->worker_count()) +
             " workers, " + e->ring_mode_name() + ")");
    std::lock_guard<std::mutex> lock(engines_mu);
    engines[addr.to_string()] = std::move(e);
    return true;
  };
  auto gateway_listens = [&](const proxy::Snapshot& snap) {
    std::vector<engine::SocketAddress> out;
    for (uint32_t port : snap.gateway_servers.ports()) {
      engine::SocketAddress a = gateway_address;
      a.set_port(static_cast<uint16_t>(port));
      out.push_back(a);
    }
    return out;
  };
  // Starts listeners for new server ports, drains those whose servers are gone.
  auto reconcile = [&](const proxy::Snapshot& snap) {
    std::set<std::string> want;
    for (const auto& a : gateway_listens(snap)) {
      want.insert(a.to_string());
      if (!engines.count(a.to_string())) start_engine(a);
    }
    for (auto it = engines.begin(); it != engines.end();) {
      if (want.count(it->first)) {
        ++it;
        continue;
      }
      log_info("no Gateway server on " + it->first + " any more: closing the listener, draining its connections");
      it->second->stop(std::chrono::seconds(5));
      it->second->wait();
      std::lock_guard<std::mutex> lock(engines_mu);
      it = engines.erase(it);
    }
  };
  if (gateway) {
    if (first.snapshot->gateway_servers.empty()) {
      log_info("no Gateway selects this proxy's labels yet; listeners start when one does");
    }
    for (const auto& a : gateway_listens(*first.snapshot)) {
      if (!start_engine(a)) {
        close(sfd);
        return kExitFailure;
      }
    }
  } else {
    for (const auto& addr : listens) {
      if (!start_engine(addr)) {
        close(sfd);
        return kExitFailure;
      }
    }
  }

  proxy::ConfigWatch watch(flags.config, store, log_info, log_error, std::chrono::milliseconds(flags.poll_ms),
                           identity);
  if (!flags.config.empty()) watch.start();

  // Upgrades: when this process later closes its listeners, connections
  // still queued on them are reset unless the kernel migrates them to the
  // successor's SO_REUSEPORT listener (per network namespace, CAP_NET_ADMIN:
  // the deployment's job, not this unprivileged process's).
  if (FILE* f = fopen("/proc/sys/net/ipv4/tcp_migrate_req", "r")) {
    int v = 1;
    if (fscanf(f, "%d", &v) == 1 && v == 0) {
      log_warning("net.ipv4.tcp_migrate_req is 0 in this network namespace: on an upgrade (a new proxy on the same "
                  "port, then SIGTERM to this one) connections still in this process's accept queues are reset; "
                  "set it to 1 for upgrades without loss");
    }
    fclose(f);
  }
  server_state.set(admin::ServerState::kLive);
  uint64_t reconciled = first.snapshot->generation;
  for (;;) {
    if (gateway) {
      if (proxy::SnapshotPtr snap = store.current(); snap && snap->generation != reconciled) {
        reconciled = snap->generation;
        reconcile(*snap);
      }
    }
    pollfd pfd{sfd, POLLIN, 0};
    int pr = poll(&pfd, 1, static_cast<int>(flags.poll_ms));
    if (pr == 0) continue;
    if (pr < 0 && errno == EINTR) continue;
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
      log_info("counters: " + summary());
      continue;
    }
    log_info("exiting on signal " + std::to_string(si.ssi_signo) + "; draining for up to " +
             std::to_string(flags.drain_seconds) + " s");
    break;
  }
  server_state.set(admin::ServerState::kDraining);
  // Hand the admin port to a successor (an upgrade started it next to us):
  // probes from now on reach the new process only.
  if (admin_server) admin_server->stop();
  watch.stop();
  for (auto& [name, e] : engines) e->stop(std::chrono::seconds(flags.drain_seconds));
  for (auto& [name, e] : engines) e->wait();
  log_info("counters: " + summary());
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
      "Known destinations go through the VirtualServices bound to `mesh` and their DestinationRules\n"
      "(subsets, load balancing, TLS origination incl. ISTIO_MUTUAL with the mesh identity in --certs).\n\n"
      "With --role gateway it is an egress gateway: it listens on the ports of the Gateway servers whose\n"
      "selector matches --label, terminates TLS per the server (SIMPLE, MUTUAL, ISTIO_MUTUAL) or routes\n"
      "by SNI (PASSTHROUGH), and sends the traffic out from its own address per the VirtualServices bound\n"
      "to that Gateway.\n\n"
      "Examples:\n"
      "  sluice-proxy --config /etc/istio/config --config /etc/sluice/service-entries --access-log /dev/stdout\n"
      "  sluice-proxy --role gateway --label istio=egressgateway --config /etc/istio/config --certs /etc/certs\n",
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
  app.add_option("--connect-timeout", flags.connect_timeout_ms, "upstream connect timeout in ms (Istio: 10 s) when neither the mesh config's connectTimeout nor a DestinationRule's sets one")
      ->capture_default_str();
  app.add_option("--detection-timeout", flags.detection_timeout_ms,
                 "ms to wait for a client's first bytes on a port of undeclared protocol before treating the "
                 "connection as opaque TCP (server-first protocols; Istio: 5 s)")
      ->capture_default_str();
  app.add_option("--poll-interval-ms", flags.poll_ms, "how often to check the config files")->capture_default_str();
  app.add_option("--drain-seconds", flags.drain_seconds,
                 "on SIGTERM/SIGINT: close the listeners, then let established connections finish for up to this "
                 "long before aborting them (Istio's terminationDrainDuration); HTTP/1 keep-alive clients are "
                 "closed at their next response boundary (idle ones at once, busy ones told 'connection: close'); "
                 "a replacement proxy started on the same --listen (SO_REUSEPORT) takes the new connections "
                 "meanwhile")
      ->capture_default_str();
  app.add_option("--admin-port", flags.admin_port,
                 "admin endpoint port (Envoy's 15000): /ready /healthz /stats/prometheus /config_dump /logging; 0 = off")
      ->capture_default_str();
  app.add_option("--admin-address", flags.admin_address,
                 "admin endpoint address; loopback only (127.0.0.1 or ::1)")
      ->capture_default_str();
  app.add_option("--local-buffers", flags.local_buffers,
                 "per-worker buffers (16 KiB, touched only when used) for TLS records and local replies; a "
                 "connection that finds none is reset")
      ->capture_default_str();
  app.add_option("--bulk-buffers", flags.bulk_buffers,
                 "per-worker 64 KiB buffers (touched only when used) for directions that move bulk data: after "
                 "two full 16 KiB reads in a row a direction reads these, with a quarter of the completions per "
                 "byte; a power of two, 0 = off")
      ->check(CLI::IsMember({0u, 1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u, 256u, 512u, 1024u, 2048u, 4096u}))
      ->capture_default_str();
  app.add_option("--role", flags.role, "sidecar (redirected connections) or gateway (Gateway servers)")
      ->capture_default_str();
  app.add_option("--certs", flags.certs,
                 "mesh identity directory: cert-chain.pem, key.pem, root-cert.pem (ISTIO_MUTUAL both ways)")
      ->capture_default_str();
  app.add_option("--namespace", flags.namespace_,
                 "the proxy's namespace: a sidecar's workload's (exportTo and the Sidecar resource that applies; "
                 "default: default; given, or with --label, the proxy serves that one workload and VirtualService "
                 "sourceNamespace/sourceLabels match it), a gateway's own (default: istio-system)");
  app.add_option("--label", flags.labels,
                 "KEY=VALUE label of the proxy (repeatable): a gateway's, matched against Gateway selectors "
                 "(default: istio=egressgateway); a sidecar's workload's, matched against Sidecar workloadSelectors");
  app.add_option("--listen-address", flags.listen_address,
                 "gateway role: the address the Gateway server ports are bound on")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  return run(flags);
}
