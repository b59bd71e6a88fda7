// sluice-agent: installs Sluice's BPF interception into a cgroup, keeps the
// maps in sync with the configuration, and leaves everything pinned when it
// exits so that interception outlives the agent (restart = re-adopt).
//
//   sluice-agent [run] [--cgroup PATH]... [--config PATH]... [--set k=v]...
//   sluice-agent uninstall [--pin-dir DIR]
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <memory>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "agent/config_source.h"
#include "agent/installation.h"
#include "agent/log.h"
#include "agent/proxy_supervisor.h"
#include "agent/system_mounts.h"
#include "core/decision/map_contents.h"

namespace sluice::agent {
namespace {

struct Flags {
  std::string pin_dir = "/sys/fs/bpf/sluice";
  std::vector<std::string> cgroups;
  ConfigInputs config;
  uint16_t proxy_port = SLUICE_DEFAULT_PROXY_PORT;
  std::string proxy_ipv4 = "127.0.0.1";
  std::string proxy_ipv6 = "::1";
  std::string mark = "0x539";
  std::string uid = "1337";
  std::string gid = "1337";
  bool socket_redirect = false;
  uint32_t socket_redirect_queue_limit = decision::ProxySettings::kDefaultSocketRedirectQueueLimit;
  bool once = false;
  unsigned poll_ms = 1000;
  std::string proxy_binary;             // empty: the proxy is started by someone else
  std::vector<std::string> proxy_args;
  std::string proxy_cgroup;             // where the supervised proxy runs
  bool verbose = false;
};

int libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG && !log_enabled(LogLevel::kDebug)) return 0;
  if (level == LIBBPF_INFO && !log_enabled(LogLevel::kDebug)) return 0;
  std::fputs("libbpf: ", stderr);
  return std::vfprintf(stderr, format, args);
}

// "none" (or empty) disables; numbers may be decimal or 0x-hex.
bool parse_optional_u32(const std::string& text, std::optional<uint32_t>& out) {
  if (text.empty() || text == "none") {
    out.reset();
    return true;
  }
  int base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  if (ec != std::errc() || end != digits.data() + digits.size()) return false;
  out = value;
  return true;
}

bool parse_proxy_address(const std::string& text, decision::Family family,
                         std::optional<decision::IpAddress>& out) {
  if (text.empty() || text == "none") {
    out.reset();
    return true;
  }
  auto address = decision::IpAddress::parse(text);
  if (!address || address->family() != family || address->is_unspecified() ||
      address->is_v4_mapped()) {
    return false;
  }
  out = address;
  return true;
}

std::optional<std::string> proxy_settings(const Flags& flags, decision::ProxySettings& proxy) {
  if (!parse_proxy_address(flags.proxy_ipv4, decision::Family::kV4, proxy.ipv4)) {
    return "--proxy-ipv4 " + flags.proxy_ipv4 + ": not an IPv4 address (or \"none\")";
  }
  if (!parse_proxy_address(flags.proxy_ipv6, decision::Family::kV6, proxy.ipv6)) {
    return "--proxy-ipv6 " + flags.proxy_ipv6 + ": not an IPv6 address (or \"none\")";
  }
  if (!proxy.ipv4 && !proxy.ipv6) return "--proxy-ipv4 and --proxy-ipv6 are both none: nothing to redirect to";
  if (flags.proxy_port == 0) return "--proxy-port 0 is not a port";
  proxy.port = flags.proxy_port;
  if (!parse_optional_u32(flags.mark, proxy.mark)) return "--mark " + flags.mark + ": not a number";
  if (proxy.mark && *proxy.mark == 0) proxy.mark.reset();  // every socket has mark 0
  if (!parse_optional_u32(flags.uid, proxy.uid)) return "--uid " + flags.uid + ": not a number";
  if (!parse_optional_u32(flags.gid, proxy.gid)) return "--gid " + flags.gid + ": not a number";
  proxy.socket_redirect = flags.socket_redirect;
  proxy.socket_redirect_queue_limit = flags.socket_redirect_queue_limit;
  return std::nullopt;
}

void print_diagnostics(const config::Diagnostics& diagnostics) {
  for (const config::Diagnostic& d : diagnostics.items()) {
    log(d.severity == config::Severity::kError ? LogLevel::kError : LogLevel::kWarning, d.format());
  }
}

std::string summary(const decision::MapContents& m) {
  return std::to_string(m.include_v4.size() + m.include_v6.size()) + " include ranges, " +
         std::to_string(m.exclude_v4.size() + m.exclude_v6.size()) + " exclude ranges, " +
         std::to_string(m.include_ports.size()) +
         ((m.config.flags & SLUICE_F_INCLUDE_ALL_PORTS) ? "+*" : "") + " include ports, " +
         std::to_string(m.exclude_ports.size()) +
         ((m.config.flags & SLUICE_F_EXCLUDE_ALL_PORTS) ? "+*" : "") + " exclude ports";
}

int run(const Flags& flags) {
  decision::ProxySettings proxy;
  if (auto err = proxy_settings(flags, proxy)) {
    log_error(*err);
    return kExitUsage;
  }
  if (proxy.socket_redirect) {
    if (auto f = Installation::check_socket_redirect()) {
      log_error(f->message);
      return f->exit_code;
    }
  }

  CompiledConfig compiled = load_and_compile(flags.config, proxy);
  print_diagnostics(compiled.diagnostics);

  std::optional<std::string> cgroup2 = find_cgroup2_mount();
  if (!cgroup2) {
    log_error("no cgroup v2 hierarchy is mounted (no cgroup2 entry in /proc/self/mounts): "
              "Sluice attaches to cgroup v2 only. Boot with systemd.unified_cgroup_hierarchy=1 "
              "or mount one: mount -t cgroup2 none /sys/fs/cgroup/unified");
    return kExitEnvironment;
  }
  std::vector<CgroupTarget> targets;
  std::vector<std::string> wanted = flags.cgroups;
  if (wanted.empty()) wanted.push_back(*cgroup2);  // a node: every workload
  for (const std::string& path : wanted) {
    CgroupTarget t;
    if (auto err = resolve_cgroup(*cgroup2, path, t)) {
      log_error(*err);
      return kExitUsage;
    }
    targets.push_back(t);
  }
  // A fresh install with a bad config creates nothing at all; a restart
  // keeps serving the rules already in the pinned maps.
  if (!compiled.ok() && access((flags.pin_dir + "/sluice_config").c_str(), F_OK) != 0) {
    log_error("the configuration has errors (above): nothing installed");
    return kExitUsage;
  }
  if (auto f = Installation::check_kernel()) {
    log_error(f->message);
    return f->exit_code;
  }
  if (auto err = prepare_pin_dir(flags.pin_dir)) {
    log_error(*err);
    return kExitEnvironment;
  }

  Failure failure;
  std::unique_ptr<Installation> inst = Installation::load(flags.pin_dir, failure);
  if (!inst) {
    log_error(failure.message);
    return failure.exit_code;
  }
  if (inst->adopted()) log_info("adopting the maps pinned under " + flags.pin_dir);

  std::optional<decision::MapContents> applied;
  if (compiled.ok()) {
    decision::MapContents contents = decision::to_map_contents(compiled.rules);
    SyncStats stats;
    if (auto err = inst->apply(contents, stats)) {
      log_error(*err);
      return kExitFailure;
    }
    applied = contents;
    log_info("maps written: " + summary(contents) + " (" + std::to_string(stats.upserted) +
             " written, " + std::to_string(stats.deleted) + " stale removed)");
  } else if (inst->adopted()) {
    log_error("the configuration has errors (above): keeping the rules already in the maps");
  } else {
    log_error("the configuration has errors (above): nothing installed");
    return kExitUsage;
  }

  if (auto f = inst->attach(targets)) {
    log_error(f->message);
    return f->exit_code;
  }
  if (flags.once) return kExitOk;

  // Supervised proxy: started once interception is attached, restarted with
  // backoff when it dies, stopped (SIGTERM, 5 s drain) when the agent stops.
  std::unique_ptr<ProxySupervisor> proxy_child;
  if (!flags.proxy_binary.empty()) {
    SupervisorOptions so;
    so.binary = flags.proxy_binary;
    so.args = flags.proxy_args;
    if (!flags.proxy_cgroup.empty()) {
      CgroupTarget t;
      if (auto err = resolve_cgroup(*cgroup2, flags.proxy_cgroup, t)) {
        log_error(*err);
        return kExitUsage;
      }
      so.cgroup_dir = t.path;
    }
    proxy_child = std::make_unique<ProxySupervisor>(so);
  }

  // Watch: poll the files' fingerprint; SIGHUP forces a reload; SIGTERM and
  // SIGINT end the agent and leave interception running.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) {
    log_error(std::string("signalfd: ") + std::strerror(errno));
    return kExitFailure;
  }
  log_info("watching " + std::to_string(flags.config.paths.size()) + " config paths every " +
           std::to_string(flags.poll_ms) + " ms; interception stays installed when the agent exits");

  if (proxy_child) {
    if (std::string err = proxy_child->start(); !err.empty()) {
      log_error(err);
      close(sfd);
      return kExitUsage;
    }
  }
  std::string seen = fingerprint(flags.config.paths);
  std::string settling = seen;
  std::string last_errors;
  for (;;) {
    pollfd p{sfd, POLLIN, 0};
    int timeout_ms = static_cast<int>(flags.poll_ms);
    if (proxy_child) timeout_ms = static_cast<int>(proxy_child->until_due(std::chrono::milliseconds(flags.poll_ms)).count());
    int n = poll(&p, 1, timeout_ms);
    bool force = false;
    if (n > 0) {
      signalfd_siginfo si{};
      if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
          if (proxy_child) proxy_child->reap();
          else while (waitpid(-1, nullptr, WNOHANG) > 0) {}
        } else if (si.ssi_signo == SIGHUP) {
          force = true;
        } else {
          if (proxy_child) {
            log_info("stopping the proxy (pid " + std::to_string(proxy_child->pid()) + ")");
            proxy_child->stop(std::chrono::seconds(6));
          }
          log_info("exiting on signal " + std::to_string(si.ssi_signo) + "; pins under " +
                   flags.pin_dir + " keep interception running");
          close(sfd);
          return kExitOk;
        }
      }
    }
    if (proxy_child) proxy_child->tick();
    std::string now = fingerprint(flags.config.paths);
    if (!force) {
      if (now == seen) continue;
      // Changed: wait until it stays the same for one interval, so that a
      // file caught half-written (truncated by `>`, an editor's save) is
      // never loaded — an empty values file is a valid config (defaults).
      if (now != settling) {
        settling = now;
        continue;
      }
    }
    seen = now;
    settling = now;
    CompiledConfig next = load_and_compile(flags.config, proxy);
    if (!next.ok()) {
      std::string errors;
      for (const auto& d : next.diagnostics.items()) errors += d.format() + "\n";
      if (errors != last_errors) {
        print_diagnostics(next.diagnostics);
        log_error("the new configuration has errors: the maps keep the last good one");
        last_errors = errors;
      }
      continue;
    }
    last_errors.clear();
    print_diagnostics(next.diagnostics);
    decision::MapContents contents = decision::to_map_contents(next.rules);
    if (applied && *applied == contents) {
      log_debug("configuration changed, interception rules did not");
      continue;
    }
    SyncStats stats;
    if (auto err = inst->apply(contents, stats)) {
      log_error(*err + "; will retry on the next change (SIGHUP to retry now)");
      continue;
    }
    applied = contents;
    log_info("maps updated: " + summary(contents) + " (" + std::to_string(stats.upserted) +
             " written, " + std::to_string(stats.deleted) + " stale removed)");
  }
}

}  // namespace
}  // namespace sluice::agent

int main(int argc, char** argv) {
  using namespace sluice::agent;
  Flags flags;
  CLI::App app{
      "sluice-agent: redirects outbound TCP of a cgroup to the Sluice proxy with BPF.\n"
      "Exit codes: 0 ok, 1 failure, 2 bad flags or configuration, 3 environment\n"
      "(no cgroup v2, no BPF permission, kernel lacks a hook)."};
  app.set_help_all_flag("--help-all");
  app.option_defaults()->always_capture_default();
  app.add_option("--pin-dir", flags.pin_dir, "bpffs directory for Sluice's maps, programs and links");
  app.add_option("--cgroup", flags.cgroups,
                 "cgroup v2 directory to attach to, absolute or relative to the cgroup2 mount "
                 "(repeatable; default: the cgroup2 root, i.e. the whole node). The proxy's "
                 "cgroup must be one of them (or below one) for SO_ORIGINAL_DST to work");
  app.add_option("--config", flags.config.paths,
                 "config file or directory (repeatable), watched for changes");
  app.add_option("--set", flags.config.sets,
                 "install option as istioctl takes it, e.g. "
                 "values.global.proxy.excludeIPRanges=10.0.0.0/8 (repeatable)");
  app.add_option("--proxy-port", flags.proxy_port, "port the proxy listens on for redirected connections");
  app.add_option("--proxy-ipv4", flags.proxy_ipv4, "proxy address for IPv4 connections, or none");
  app.add_option("--proxy-ipv6", flags.proxy_ipv6, "proxy address for IPv6 connections, or none");
  app.add_option("--mark", flags.mark, "SO_MARK of the proxy's own sockets (never redirected), or none");
  app.add_option("--uid", flags.uid, "uid of the proxy (its connections are never redirected), or none");
  app.add_option("--gid", flags.gid, "gid of the proxy, or none");
  app.add_option("--socket-redirect", flags.socket_redirect,
                 "true: the workload <-> proxy hop skips loopback TCP/IP (sockops puts both sockets "
                 "of a redirected connection in a SOCKHASH, an sk_msg program hands each send to "
                 "the peer socket). Faster; a reader that falls --socket-redirect-queue-limit bytes "
                 "behind moves its sender to TCP. Linux with sk_psock.msg_tot_len; see the README")
      ->capture_default_str();
  app.add_option("--socket-redirect-queue-limit", flags.socket_redirect_queue_limit,
                 "with --socket-redirect: bytes a reader may fall behind on the shortcut before its "
                 "sender moves to TCP for that connection (the redirect itself has no flow control; "
                 "TCP's socket buffers then hold the sender back)")
      ->check(CLI::Range(65536u, 1u << 30))
      ->capture_default_str();
  app.add_flag("--once", flags.once, "install or update, then exit (leaving everything pinned)");
  app.add_option("--proxy-binary", flags.proxy_binary,
                 "start and supervise this sluice-proxy (restarted with backoff if it dies; stopped "
                 "when the agent stops)");
  app.add_option("--proxy-arg", flags.proxy_args,
                 "one argument for the supervised proxy (repeatable, in order), e.g. "
                 "--proxy-arg=--config --proxy-arg=/etc/istio/config")
      ->allow_extra_args(false);
  app.add_option("--proxy-cgroup", flags.proxy_cgroup,
                 "cgroup v2 directory to run the supervised proxy in (one of the --cgroup ones, so "
                 "SO_ORIGINAL_DST answers it)");
  app.add_option("--poll-interval-ms", flags.poll_ms, "how often to check the config files")
      ->check(CLI::Range(50u, 3600000u));
  app.add_flag("-v,--verbose", flags.verbose, "debug logging (also libbpf's)");
  CLI::App* run_cmd = app.add_subcommand("run", "install/adopt, then keep the maps in sync (default)");
  CLI::App* uninstall_cmd =
      app.add_subcommand("uninstall", "detach Sluice's links and remove its pins and pin directory");
  run_cmd->fallthrough();
  uninstall_cmd->fallthrough();
  app.require_subcommand(0, 1);
  CLI11_PARSE(app, argc, argv);

  if (flags.verbose) set_log_level(LogLevel::kDebug);
  if (flags.once && !flags.proxy_binary.empty()) {
    log_error("--once and --proxy-binary do not go together: --once exits, nobody would supervise the proxy");
    return kExitUsage;
  }
  libbpf_set_print(libbpf_log);

  if (uninstall_cmd->parsed()) {
    if (auto f = Installation::uninstall(flags.pin_dir)) {
      log_error(f->message);
      return f->exit_code;
    }
    return kExitOk;
  }
  return run(flags);
}
