// `sluicectl status`: the health of what runs on this host, each part
// independent and degrading on its own (a part that cannot be read says what
// and why; nothing here throws or aborts):
//   - the proxy, from its admin endpoint: GET /ready and GET /config_dump
//     (generation, source files, summary, resources, Gateway servers);
//   - the agent's pins under --pin-dir: maps, programs, and links with the
//     cgroups they attach to;
//   - the mesh identity under --certs: notAfter and days left.
#pragma once

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "ctl/bpf_pins.h"
#include "ctl/cert_expiry.h"
#include "ctl/http_get.h"
#include "ctl/report.h"

namespace sluice::ctl {

struct StatusOptions {
  AdminUrl admin;
  std::string pin_dir = "/sys/fs/bpf/sluice";
  std::string certs = "/etc/certs";
  std::chrono::milliseconds timeout{2000};
};

struct ProxyStatus {
  std::string admin;  // the URL
  std::string error;  // non-empty: /ready could not be fetched
  int ready_status = 0;  // HTTP status of /ready (200: LIVE)
  std::string state;     // /ready's body: LIVE, DRAINING, ...
  nlohmann::json config_dump;  // null when unavailable
  std::string config_error;
  bool ready() const { return error.empty() && ready_status == 200; }
};

struct StatusReport {
  ProxyStatus proxy;
  PinReport pins;
  CertReport certs;
  // 0: the proxy is ready and no certificate has expired; 1 otherwise (the
  // proxy is unreachable or not ready, or a certificate has expired). Missing
  // pins or certificates alone are not failures: a gateway has no pins, a
  // sidecar without ISTIO_MUTUAL needs no certificates.
  int exit_code() const;
};

StatusReport collect_status(const StatusOptions& options, std::time_t now);

void write_status(std::ostream& out, OutputFormat format, const StatusReport& report);

}  // namespace sluice::ctl
