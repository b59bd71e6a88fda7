// `sluicectl explain`: what Sluice does with one connection, every decision
// in order, computed by the very functions the data plane runs:
//
//   sidecar  1. the kernel: decision::decide() over the compiled interception
//               rules (cgroup/connect4|6); not intercepted -> direct, stop
//            2. what the proxy sees: the port's declared protocol
//               (Registry::declared_protocol) and what the client sends
//               (HTTP Host, TLS SNI, or opaque bytes) -> HTTP / TLS / TCP
//            3. policy::plan_sidecar(): known or unknown, VirtualService,
//               DestinationRule, endpoints, TLS origination
//   gateway  1. the listener: GatewayServers for the proxy's labels on the
//               destination port; the server chosen by SNI or Host
//            2. TLS termination or passthrough, what is inside
//            3. policy::plan_gateway()
//   then the upstream the plan names (static addresses, or DNS names that the
//   proxy would resolve: explain never resolves names) and the outcome.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/decision/interception_rules.h"
#include "core/decision/ip_address.h"
#include "core/decision/verdict.h"
#include "core/policy/registry.h"
#include "core/policy/request_plan.h"
#include "ctl/config_tables.h"
#include "ctl/report.h"

namespace sluice::ctl {

// What the client does, as the command line describes it.
struct ExplainRequest {
  decision::IpAddress address;  // the destination connect() names (a gateway: its listener address)
  uint16_t port = 0;
  bool gateway = false;
  std::map<std::string, std::string> labels;  // the gateway proxy's labels, or the sidecar's workload's
  // The sidecar's workload's namespace (exportTo, the Sidecar resource that
  // applies), or the gateway's.
  std::string namespace_ = "default";
  // --namespace or --label given: one known workload (source matches apply).
  bool workload_known = false;
  // A sidecar's: which Sidecar resource scopes its view (proxy_view).
  std::string scope;
  // The HTTP Host (authority as sent, may carry ":port"); unset: not HTTP.
  std::optional<std::string> host;
  // The TLS ClientHello's SNI; unset: not TLS.
  std::optional<std::string> sni;
  std::string method = "GET";
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;
};

// The proxy's view of `all`, as sluice-proxy builds it: what its namespace
// is exported (request.namespace_), and for a sidecar what the Sidecar
// resource that applies imports (request.labels; sets request.scope).
// Explain a connection against it (it must outlive the Explanation).
std::unique_ptr<const ConfigTables> proxy_view(const ConfigTables& all, ExplainRequest& request);

// "IP:port" or "[IPv6]:port". Returns a message naming what is wrong.
std::optional<std::string> parse_destination(std::string_view text, decision::IpAddress& address, uint16_t& port);

// A Host or SNI as the proxy's sniffers normalize it: the port (Host only)
// and one trailing dot dropped, ASCII lower case, DNS characters only (or an
// IP literal). nullopt when no sniffer would accept it.
std::optional<std::string> normalize_host(std::string_view text, bool strip_port);

enum class Outcome {
  kDirect,      // not intercepted: the kernel lets connect() through unchanged
  kForward,     // the proxy connects upstream
  kLocalReply,  // the proxy answers (502 block_all, 404 NR, 503 NC, redirects, ...)
  kClosed,      // the proxy closes the connection (UH, NR, DPE)
  kRefused,     // nothing listens (a gateway port without a Gateway server)
};
const char* to_string(Outcome o);

struct ExplainStep {
  // interception | listener | traffic | policy | upstream
  std::string stage;
  std::string text;
};

struct Explanation {
  std::string destination;  // "10.0.0.1:80", "[2001:db8::1]:443"
  std::string role;         // sidecar | gateway
  std::vector<ExplainStep> steps;

  // Sidecar: the kernel's verdict and the install option entry that decided
  // ("includeIPRanges[0] \"10.244.0.0/16\""), empty for non-list rules.
  std::optional<decision::Verdict> interception;
  std::string interception_option;

  // What the proxy saw: "HTTP", "TLS", "TCP"; empty when it never decided
  // (protocol error, no listener). `host` is the Host or SNI the plan used.
  std::string traffic;
  std::string host;
  policy::PortProtocol declared = policy::PortProtocol::kUnspecified;
  std::vector<std::string> declared_by;  // "default/cnn (file:line): port 80 http-port HTTP"

  // Gateway: the selected server ("default/istio-egressgateway server 0 (80/HTTPS)").
  std::string gateway_server;

  // The plan; its EffectivePolicy points into the ConfigTables, which must
  // outlive the Explanation.
  std::optional<policy::RequestPlan> plan;

  Outcome outcome = Outcome::kClosed;
  uint32_t status = 0;                // local replies
  std::string response_flags = "-";  // UH, NR, NC, DPE, ...
  std::string cluster;               // Envoy's name, "-" when none
  std::string summary;               // one line, e.g. "forward to cluster outbound|80||edition.cnn.com"

  // 0: the connection reaches a destination (forwarded, or direct because
  // it is not intercepted); 3: it does not (local reply, closed, refused).
  int exit_code() const;
};

inline constexpr int kExitNotForwarded = 3;

Explanation explain(const ConfigTables& tables, const decision::InterceptionRules& rules,
                    const ExplainRequest& request);

void write_explanation(std::ostream& out, OutputFormat format, const Explanation& e, const ExplainRequest& request);

}  // namespace sluice::ctl
