#include "ctl/explain.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "core/config/model.h"
#include "core/policy/destination.h"
#include "core/policy/gateway_servers.h"
#include "core/policy/load_balancer.h"
#include "core/policy/routing.h"
#include "core/policy/sidecar_scope.h"
#include "core/policy/upstream.h"

namespace sluice::ctl {

namespace {

using decision::IpAddress;
using policy::GatewayServerRef;
using policy::PortProtocol;
using policy::RequestPlan;
using policy::ServerKind;
using policy::Traffic;
using policy::UpstreamPlan;

std::string endpoint_text(const IpAddress& a, uint32_t port) {
  return (a.is_v6() ? "[" + a.str() + "]" : a.str()) + ":" + std::to_string(port);
}

std::string labels_text(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out.empty() ? "(none)" : out;
}

std::string where(const config::ObjectMeta& meta) {
  return meta.file.empty() ? meta.key() : meta.key() + " (" + meta.file + ":" + std::to_string(meta.line) + ")";
}

const char* traffic_name(Traffic t) {
  switch (t) {
    case Traffic::kHttp: return "HTTP";
    case Traffic::kTls: return "TLS";
    case Traffic::kTcp: return "TCP";
  }
  return "?";
}

// The install option list and entry a range/port rule came from.
std::string option_entry(const config::InstallOptions& install, const decision::Verdict& v) {
  auto entry = [](const char* name, const std::vector<std::string>& list, uint32_t index) {
    std::string out = std::string(name) + "[" + std::to_string(index) + "]";
    if (index < list.size()) out += " \"" + list[index] + "\"";
    return out;
  };
  switch (v.rule) {
    case decision::Rule::kExcludedRange:
      if (v.range) return entry("excludeIPRanges", install.exclude_ip_ranges, v.range->index);
      break;
    case decision::Rule::kIncludedRange:
      if (v.range) return entry("includeIPRanges", install.include_ip_ranges, v.range->index);
      break;
    case decision::Rule::kExcludedPort:
      return v.port ? entry("excludeOutboundPorts", install.exclude_outbound_ports, v.port->index)
                    : std::string("excludeOutboundPorts \"*\"");
    case decision::Rule::kIncludedPort:
      return v.port ? entry("includeOutboundPorts", install.include_outbound_ports, v.port->index)
                    : std::string("includeOutboundPorts \"*\"");
    default:
      break;
  }
  return {};
}

// The ServiceEntry ports that make up Registry::declared_protocol(port).
std::vector<std::string> declaring_entries(const config::ConfigSet& config, uint32_t port) {
  std::vector<std::string> out;
  for (const config::ServiceEntry& se : config.service_entries) {
    for (const config::ServicePort& p : se.ports) {
      if (p.number != port) continue;
      out.push_back(where(se.meta) + ": port " + std::to_string(p.number) + (p.name.empty() ? "" : " " + p.name) +
                    " " + (p.protocol.empty() ? std::string("(no protocol)") : p.protocol));
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

const char* server_tls_what(config::ServerTLSMode mode) {
  switch (mode) {
    case config::ServerTLSMode::kSimple: return "server certificate only";
    case config::ServerTLSMode::kMutual: return "client certificate required and verified";
    case config::ServerTLSMode::kOptionalMutual: return "client certificate verified when presented";
    case config::ServerTLSMode::kIstioMutual:
      return "the gateway's mesh identity from --certs; a mesh client certificate is required";
    case config::ServerTLSMode::kPassthrough:
    case config::ServerTLSMode::kAutoPassthrough: return "not terminated";
  }
  return "?";
}

std::string termination_text(const config::ServerTLSSettings& tls) {
  std::string out = std::string("terminates TLS ") + config::to_string(tls.mode) + " (" + server_tls_what(tls.mode);
  if (!tls.credential_name.empty()) out += "; credentialName " + tls.credential_name;
  if (!tls.server_certificate.empty()) out += "; certificate " + tls.server_certificate;
  if (!tls.ca_certificates.empty() && tls.mode != config::ServerTLSMode::kSimple) {
    out += "; client CA " + tls.ca_certificates;
  }
  return out + ")";
}

class Explainer {
 public:
  Explainer(const ConfigTables& t, const decision::InterceptionRules& rules, const ExplainRequest& r)
      : t_(t), rules_(rules), r_(r) {
    e_.destination = endpoint_text(r.address, r.port);
    e_.role = r.gateway ? "gateway" : "sidecar";
    if (r.host) http_host_ = normalize_host(*r.host, /*strip_port=*/true).value_or("");
    if (r.sni) sni_ = normalize_host(*r.sni, /*strip_port=*/false).value_or("");
  }

  Explanation run() {
    if (r_.gateway) {
      gateway();
    } else {
      sidecar();
    }
    return std::move(e_);
  }

 private:
  void step(const char* stage, std::string text) { e_.steps.push_back({stage, std::move(text)}); }

  void finish(Outcome o, std::string summary, std::string flags = "-", uint32_t status = 0) {
    e_.outcome = o;
    e_.summary = std::move(summary);
    e_.response_flags = std::move(flags);
    e_.status = status;
    if (e_.cluster.empty()) e_.cluster = "-";
  }

  // ---- sidecar ---------------------------------------------------------

  void sidecar() {
    if (!intercept()) return;

    enum class Offered { kHttp, kTls, kOpaque };
    const Offered offered = r_.sni ? Offered::kTls : r_.host ? Offered::kHttp : Offered::kOpaque;
    const std::string what = offered == Offered::kTls    ? "a TLS ClientHello with SNI \"" + sni_ + "\""
                             : offered == Offered::kHttp ? "an HTTP request (Host \"" + http_host_ + "\", " +
                                                               r_.method + " " + r_.path + ")"
                                                         : "opaque bytes (no --host, no --sni)";
    e_.declared = t_.registry.declared_protocol(r_.port);
    e_.declared_by = declaring_entries(t_.config, r_.port);
    const std::string port = std::to_string(r_.port);
    std::string text;
    if (e_.declared == PortProtocol::kUnspecified) {
      text = "no ServiceEntry declares port " + port +
             ": the proxy detects the protocol from the client's first bytes (Istio's protocol sniffing); "
             "the client sends " + what;
    } else {
      text = "the registry declares port " + port + " " + policy::to_string(e_.declared) + " (" +
             join(e_.declared_by, "; ") + "); the client sends " + what;
    }
    if (r_.sni && r_.host) text += "; the Host inside the TLS is invisible to the sidecar";

    Traffic traffic = Traffic::kTcp;
    std::string host;
    switch (e_.declared) {
      case PortProtocol::kHttp:
        if (offered != Offered::kHttp) {
          step("traffic", text + ". The proxy parses every connection on this port as HTTP; this is not an HTTP "
                                 "request: protocol error, the connection is closed (flag DPE)");
          finish(Outcome::kClosed, "closed: not HTTP on a port declared HTTP (flag DPE)", "DPE");
          return;
        }
        traffic = Traffic::kHttp;
        host = http_host_;
        break;
      case PortProtocol::kTls:
        if (offered == Offered::kTls) {
          traffic = Traffic::kTls;
          host = sni_;
        } else {
          text += ". The proxy reads a ClientHello on this port; without one there is no SNI and it decides by "
                  "destination IP:port as opaque TCP";
        }
        break;
      case PortProtocol::kTcp:
        text += ". The proxy does not look at the bytes of a TCP port: it decides by destination IP:port";
        break;
      case PortProtocol::kUnspecified:
        if (offered == Offered::kHttp) {
          traffic = Traffic::kHttp;
          host = http_host_;
        } else if (offered == Offered::kTls) {
          traffic = Traffic::kTls;
          host = sni_;
        }
        break;
    }
    e_.traffic = traffic_name(traffic);
    e_.host = host;
    step("traffic", text + " => " + e_.traffic + (host.empty() ? std::string() : " \"" + host + "\""));

    HttpParts http;
    policy::PlanRequest pr = plan_request(traffic, host, "http", http);
    if (!r_.scope.empty()) step("policy", "Sidecar resource (namespace " + r_.namespace_ + "): " + r_.scope);
    plan(policy::plan_sidecar(t_.tables(), pr), traffic);
  }

  // The kernel's decision. Returns whether the connection reaches the proxy.
  bool intercept() {
    decision::SocketContext socket;
    socket.destination = r_.address;
    socket.port = r_.port;
    // An application's socket: no SO_MARK, and not the proxy's uid/gid
    // (load_config compiles the rules with the agent's defaults, 1337).
    socket.mark = 0;
    socket.uid = 0;
    socket.gid = 0;
    const decision::Verdict v = decision::decide(rules_, socket);
    e_.interception = v;
    e_.interception_option = option_entry(t_.config.install, v);

    const bool mapped = r_.address.is_v4_mapped();
    std::string hook = r_.address.is_v4() ? "cgroup/connect4" : "cgroup/connect6";
    if (mapped) hook += " (IPv4-mapped: decided by the IPv4 rules)";
    std::string why = std::string(decision::to_string(v.rule)) + ": " + decision::describe(v.rule);
    if (!e_.interception_option.empty()) why += " (" + e_.interception_option + ")";
    if (v.action == decision::Action::kRedirect) {
      step("interception", hook + " intercepts the connection, rule " + why + "; connect() is redirected to the proxy at " +
                               endpoint_text(*v.proxy_address, v.proxy_port));
      return true;
    }
    step("interception", hook + " does not intercept the connection, rule " + why +
                             ". The connection goes directly to " + e_.destination + "; the proxy never sees it");
    e_.cluster = "-";
    finish(Outcome::kDirect, "direct: not intercepted (" + std::string(decision::to_string(v.rule)) +
                                 "), the connection goes to " + e_.destination + " without the proxy");
    return false;
  }

  // ---- gateway ---------------------------------------------------------

  void gateway() {
    const policy::GatewayServers servers(t_.config, r_.labels);
    const std::string port = std::to_string(r_.port);
    std::vector<std::string> ports;
    for (uint32_t p : servers.ports()) ports.push_back(std::to_string(p));
    const auto& here = servers.on_port(r_.port);
    if (here.empty()) {
      step("listener", "no Gateway server selecting the gateway's labels " + labels_text(r_.labels) + " is on port " +
                           port + (ports.empty() ? std::string(" (no Gateway selects these labels at all)")
                                                 : " (its server ports: " + join(ports, ", ") + ")") +
                           ": the gateway does not listen on it and the connection is refused");
      finish(Outcome::kRefused, "refused: the gateway has no listener on port " + port);
      return;
    }
    std::vector<std::string> listed;
    for (const GatewayServerRef& s : here) {
      listed.push_back(s.describe() + " " + policy::to_string(s.kind) + " hosts " + join(s.hosts, ","));
    }
    step("listener", "gateway proxy with labels " + labels_text(r_.labels) + " listens on port " + port +
                         " for: " + join(listed, "; "));

    const std::string inner_http =
        r_.host ? "Host \"" + http_host_ + "\", " + r_.method + " " + r_.path : std::string();
    if (servers.port_wants_sni(r_.port)) {
      if (!r_.sni) {
        step("traffic", "port " + port + " has TLS servers: the gateway reads a TLS ClientHello first; the client "
                        "sends " + (r_.host ? "a plain HTTP request" : std::string("opaque bytes")) +
                        " (no --sni): protocol error, the connection is closed (flag DPE)");
        finish(Outcome::kClosed, "closed: no TLS ClientHello on a TLS port (flag DPE)", "DPE");
        return;
      }
      const GatewayServerRef* server = servers.select_by_sni(r_.port, sni_);
      if (!server) {
        step("traffic", "TLS ClientHello with SNI \"" + sni_ + "\": no server on port " + port +
                            " matches it (no filter chain): the connection is closed (flag NR)");
        finish(Outcome::kClosed, "closed: no Gateway server for SNI \"" + sni_ + "\" (flag NR)", "NR");
        return;
      }
      e_.gateway_server = server->describe();
      if (server->kind == ServerKind::kTlsPassthrough) {
        e_.traffic = "TLS";
        e_.host = sni_;
        step("traffic", "SNI \"" + sni_ + "\" selects " + server->describe() +
                            ", TLS PASSTHROUGH: routed by SNI without terminating => TLS \"" + sni_ + "\"");
        gateway_plan(*server, Traffic::kTls, sni_, "https");
        return;
      }
      std::string text = "SNI \"" + sni_ + "\" selects " + server->describe() + ", which " +
                         (server->server->tls ? termination_text(*server->server->tls) : std::string("terminates TLS"));
      if (server->server->port.protocol != "HTTPS") {
        e_.traffic = "TCP";
        step("traffic", text + "; inside, opaque bytes routed by port => TCP");
        gateway_plan(*server, Traffic::kTcp, "", "https");
        return;
      }
      // An HTTPS server: an HTTP request inside the TLS. Without --host the
      // client is taken to send the Host it named in the SNI (as a sidecar
      // originating ISTIO_MUTUAL with `sni: <host>` does).
      std::string host = r_.host ? http_host_ : sni_;
      e_.traffic = "HTTP";
      e_.host = host;
      step("traffic", text + "; inside, an HTTP request: " +
                          (r_.host ? inner_http
                                   : "Host \"" + host + "\" (no --host: taken from the SNI), " + r_.method + " " +
                                         r_.path) +
                          " => HTTP \"" + host + "\"");
      gateway_plan(*server, Traffic::kHttp, host, "https");
      return;
    }

    bool has_http = false;
    for (const GatewayServerRef& s : here) has_http = has_http || s.kind == ServerKind::kHttp;
    if (const GatewayServerRef* tcp = servers.select_tcp(r_.port); tcp && !has_http) {
      e_.gateway_server = tcp->describe();
      e_.traffic = "TCP";
      step("traffic", "a TCP server takes every connection on port " + port + ": " + tcp->describe() +
                          "; the gateway does not look at the bytes => TCP");
      gateway_plan(*tcp, Traffic::kTcp, "", "http");
      return;
    }

    if (!r_.host) {
      step("traffic", "port " + port + " serves plain HTTP: the gateway parses an HTTP request; the client sends " +
                          (r_.sni ? std::string("a TLS ClientHello") : std::string("opaque bytes (no --host)")) +
                          ": protocol error, the connection is closed (flag DPE)");
      finish(Outcome::kClosed, "closed: not HTTP on a plain HTTP port (flag DPE)", "DPE");
      return;
    }
    const GatewayServerRef* server = servers.select_by_host(r_.port, http_host_);
    if (!server) {
      step("traffic", "HTTP request " + inner_http + ": no server on port " + port +
                          " has a matching host (no virtual host): 404 (flag NR)");
      e_.traffic = "HTTP";
      e_.host = http_host_;
      finish(Outcome::kLocalReply, "local reply 404: no Gateway server for Host \"" + http_host_ + "\" (flag NR)",
             "NR", 404);
      return;
    }
    e_.gateway_server = server->describe();
    e_.traffic = "HTTP";
    e_.host = http_host_;
    step("traffic", "HTTP request " + inner_http + ": Host selects " + server->describe() + " => HTTP \"" +
                        http_host_ + "\"");
    gateway_plan(*server, Traffic::kHttp, http_host_, "http");
  }

  void gateway_plan(const GatewayServerRef& server, Traffic traffic, const std::string& host, const char* scheme) {
    HttpParts http;
    policy::PlanRequest pr = plan_request(traffic, host, scheme, http);
    plan(policy::plan_gateway(t_.tables(), server, pr), traffic);
  }

  // ---- the plan ---------------------------------------------------------

  // Storage the PlanRequest's views point into.
  struct HttpParts {
    std::vector<policy::HeaderField> headers;
    policy::HttpRequest request;
  };

  policy::PlanRequest plan_request(Traffic traffic, const std::string& host, const char* scheme, HttpParts& http) {
    policy::PlanRequest pr;
    pr.traffic = traffic;
    pr.original_ip = r_.address.unmapped();
    pr.port = r_.port;
    pr.host = host;
    // Weighted routes pick by a random number in the proxy; explain fixes it
    // at 0, so the first destination with weight is shown.
    pr.pick = 0;
    if (traffic == Traffic::kHttp) {
      const std::string_view authority = r_.host ? std::string_view(*r_.host) : std::string_view(host);
      bool has_host = false;
      for (const auto& [name, value] : r_.headers) {
        has_host = has_host || (name.size() == 4 && std::equal(name.begin(), name.end(), "host", [](char a, char b) {
                                  return std::tolower(static_cast<unsigned char>(a)) == b;
                                }));
      }
      if (!has_host) http.headers.push_back({"host", authority});
      for (const auto& [name, value] : r_.headers) http.headers.push_back({name, value});
      http.request.host = host;
      http.request.authority = authority;
      http.request.method = r_.method;
      http.request.path = r_.path;
      http.request.scheme = scheme;
      http.request.headers = http.headers;
      pr.http = &http.request;
    }
    return pr;
  }

  void plan(RequestPlan p, Traffic traffic) {
    for (const std::string& s : p.steps) step("policy", s);
    e_.cluster = p.cluster.empty() ? "-" : p.cluster;
    const bool http = traffic == Traffic::kHttp;
    switch (p.kind) {
      case RequestPlan::Kind::kLocalReply: {
        std::string s = "local reply " + std::to_string(p.status);
        if (!p.location.empty()) s += " to " + p.location;
        if (!p.route_name.empty()) s += " (route " + p.route_name + ")";
        if (p.response_flags != "-") s += " (flag " + p.response_flags + ")";
        finish(Outcome::kLocalReply, s, p.response_flags, p.status);
        break;
      }
      case RequestPlan::Kind::kClose: {
        std::string s = "closed";
        if (e_.cluster != "-") s += " (" + e_.cluster + ")";
        if (p.response_flags != "-") s += " (flag " + p.response_flags + ")";
        finish(Outcome::kClosed, s, p.response_flags);
        break;
      }
      case RequestPlan::Kind::kForward:
        forward(p, http);
        break;
    }
    e_.plan = std::move(p);
  }

  void forward(const RequestPlan& p, bool http) {
    const policy::ForwardPlan& f = p.forward;
    const UpstreamPlan& up = f.upstream;

    // Endpoints: addresses, or names the proxy resolves when the connection
    // arrives (DNS answers change; explain does not pretend to know them).
    std::vector<std::string> eps;
    for (const policy::UpstreamEndpoint& ep : up.endpoints) {
      std::string s = ep.address ? endpoint_text(*ep.address, ep.port) : ep.dns_name + ":" + std::to_string(ep.port);
      if (up.endpoints.size() > 1) s += " weight " + std::to_string(ep.weight);
      eps.push_back(std::move(s));
    }
    std::string text;
    switch (up.kind) {
      case UpstreamPlan::Kind::kOriginalDestination:
        text = "the original destination " + join(eps, ", ");
        break;
      case UpstreamPlan::Kind::kStatic:
        text = "static endpoint(s) " + (eps.empty() ? std::string("(none)") : join(eps, ", "));
        break;
      case UpstreamPlan::Kind::kDns:
        text = "DNS name " + join(eps, ", ") +
               " - resolved by the proxy when the connection arrives (not resolved here); " +
               (up.one_answer_at_a_time ? "it uses one answer at a time (DNS_ROUND_ROBIN)"
                                        : "it balances over every answer");
        break;
    }
    if (!f.host.empty()) {
      const policy::EffectivePolicy& pol = f.policy;
      text += "; load balancing " + std::string(pol.consistent_hash ? policy::to_string(policy::LbAlgorithm::kRingHash) : config::to_string(pol.lb)) + (pol.consistent_hash ? " (consistentHash)" : "") +
              " (" + policy::to_string(pol.load_balancer_source) + ")";
      if (pol.rule) text += "; DestinationRule " + where(pol.rule->meta);
      // With TLS origination the plan's own step names mode, SNI and peer identity.
      if (f.tls_mode == config::ClientTLSMode::kDisable) text += "; no TLS origination";
    } else {
      text += "; no load balancing, no TLS origination: the bytes go on as they came";
    }
    if (!f.authority_rewrite.empty()) text += "; Host rewritten to " + f.authority_rewrite;
    if (f.timeout) text += "; route timeout " + std::to_string(f.timeout->count()) + " ms";
    step("upstream", text);

    if (!up.error.empty() || up.endpoints.empty()) {
      const std::string why = !up.error.empty() ? up.error : "no endpoint left for the subset";
      step("upstream", "no usable upstream (" + why + "): " +
                           (http ? std::string("503 (flag UH)") : std::string("the connection is closed (flag UH)")));
      if (http) {
        finish(Outcome::kLocalReply, "local reply 503: no usable upstream in " + e_.cluster + " (flag UH)", "UH", 503);
      } else {
        finish(Outcome::kClosed, "closed: no usable upstream in " + e_.cluster + " (flag UH)", "UH");
      }
      return;
    }
    std::string s = "forward to cluster " + e_.cluster;
    if (!p.route_name.empty()) s += " (route " + p.route_name + ")";
    if (f.tls_mode != config::ClientTLSMode::kDisable) {
      s += std::string(", TLS ") + config::to_string(f.tls_mode) + (f.sni.empty() ? "" : " SNI " + f.sni);
    }
    finish(Outcome::kForward, s);
  }

  const ConfigTables& t_;
  const decision::InterceptionRules& rules_;
  const ExplainRequest& r_;
  std::string http_host_;
  std::string sni_;
  Explanation e_;
};

nlohmann::json plan_json(const RequestPlan& p) {
  nlohmann::json j;
  j["kind"] = policy::to_string(p.kind);
  j["cluster"] = p.cluster;
  j["route_name"] = p.route_name;
  j["response_flags"] = p.response_flags;
  if (!p.response_code_details.empty()) j["response_code_details"] = p.response_code_details;
  if (p.kind == RequestPlan::Kind::kLocalReply) {
    j["status"] = p.status;
    if (!p.location.empty()) j["location"] = p.location;
    if (!p.body.empty()) j["body"] = p.body;
  }
  if (p.kind == RequestPlan::Kind::kForward) {
    const policy::ForwardPlan& f = p.forward;
    nlohmann::json fj;
    fj["host"] = f.host;
    fj["subset"] = f.subset;
    fj["port"] = f.port;
    nlohmann::json up;
    up["kind"] = policy::to_string(f.upstream.kind);
    up["one_answer_at_a_time"] = f.upstream.one_answer_at_a_time;
    if (!f.upstream.error.empty()) up["error"] = f.upstream.error;
    up["endpoints"] = nlohmann::json::array();
    for (const auto& ep : f.upstream.endpoints) {
      nlohmann::json e;
      if (ep.address) {
        e["address"] = ep.address->str();
      } else {
        e["dns_name"] = ep.dns_name;
        e["resolved"] = false;  // explain never resolves names
      }
      e["port"] = ep.port;
      e["weight"] = ep.weight;
      up["endpoints"].push_back(std::move(e));
    }
    fj["upstream"] = std::move(up);
    if (!f.host.empty()) {
      const policy::EffectivePolicy& pol = f.policy;
      nlohmann::json pj;
      pj["cluster_name"] = pol.cluster_name;
      if (pol.rule) {
        pj["destination_rule"] = {{"name", pol.rule->meta.key()}, {"file", pol.rule->meta.file},
                                  {"line", pol.rule->meta.line}};
      } else {
        pj["destination_rule"] = nullptr;
      }
      pj["load_balancer"] = pol.consistent_hash ? policy::to_string(policy::LbAlgorithm::kRingHash) : config::to_string(pol.lb);
      if (f.hash_key) pj["hash_key"] = policy::hex64(*f.hash_key);  // a string: JSON readers take numbers as doubles
      pj["load_balancer_source"] = policy::to_string(pol.load_balancer_source);
      pj["consistent_hash"] = pol.consistent_hash;
      pj["tls_source"] = policy::to_string(pol.tls_source);
      fj["policy"] = std::move(pj);
    }
    fj["tls_mode"] = config::to_string(f.tls_mode);
    fj["sni"] = f.sni;
    fj["expected_sans"] = f.expected_sans;
    if (!f.authority_rewrite.empty()) fj["authority_rewrite"] = f.authority_rewrite;
    if (f.timeout) fj["timeout_ms"] = f.timeout->count();
    j["forward"] = std::move(fj);
  }
  j["steps"] = p.steps;
  return j;
}

bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

}  // namespace

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::kDirect: return "direct";
    case Outcome::kForward: return "forward";
    case Outcome::kLocalReply: return "local-reply";
    case Outcome::kClosed: return "closed";
    case Outcome::kRefused: return "refused";
  }
  return "?";
}

int Explanation::exit_code() const {
  return outcome == Outcome::kDirect || outcome == Outcome::kForward ? 0 : kExitNotForwarded;
}

std::optional<std::string> parse_destination(std::string_view text, IpAddress& address, uint16_t& port) {
  std::string_view host, port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("]:");
    if (close == std::string_view::npos) return "\"" + std::string(text) + "\": expected [IPv6]:PORT";
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return "\"" + std::string(text) + "\": expected IP:PORT (e.g. 151.101.1.67:80)";
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return "\"" + std::string(text) + "\": an IPv6 destination needs brackets, e.g. [2001:db8::1]:443";
    }
  }
  std::optional<IpAddress> parsed = IpAddress::parse(host);
  if (!parsed) return "\"" + std::string(host) + "\" is not an IP address (explain takes the address connect() uses)";
  if (text.front() == '[' && !parsed->is_v6()) return "\"" + std::string(host) + "\" in brackets is not IPv6";
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
      value > 65535) {
    return "\"" + std::string(port_text) + "\" is not a port (1-65535)";
  }
  address = *parsed;
  port = static_cast<uint16_t>(value);
  return std::nullopt;
}

std::optional<std::string> normalize_host(std::string_view text, bool strip_port) {
  if (strip_port) {
    if (!text.empty() && text.front() == '[') {
      const size_t close = text.find(']');
      if (close == std::string_view::npos) return std::nullopt;
      std::string_view inner = text.substr(1, close - 1);
      std::string_view rest = text.substr(close + 1);
      if (!rest.empty() && rest.front() != ':') return std::nullopt;
      auto a = IpAddress::parse(inner);
      if (!a || !a->is_v6()) return std::nullopt;
      return a->str();
    }
    const size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) return std::nullopt;  // unbracketed IPv6
      std::string_view p = text.substr(colon + 1);
      if (!std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
      text = text.substr(0, colon);
    }
  }
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(text.size());
  size_t label = 0;
  for (char c : text) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!is_host_char(c)) return std::nullopt;
    if (c == '.') {
      if (label == 0) return std::nullopt;
      label = 0;
    } else if (++label > 63) {
      return std::nullopt;
    }
    out.push_back(c);
  }
  if (!out.empty() && label == 0) return std::nullopt;
  return out;
}

Explanation explain(const ConfigTables& tables, const decision::InterceptionRules& rules,
                    const ExplainRequest& request) {
  return Explainer(tables, rules, request).run();
}

std::unique_ptr<const ConfigTables> proxy_view(const ConfigTables& all, ExplainRequest& request) {
  policy::WorkloadIdentity workload;
  workload.namespace_ = request.namespace_;
  workload.labels = request.labels;
  workload.source = request.workload_known || request.gateway;
  policy::ProxyView view = policy::proxy_view(all.config, workload, request.gateway);
  request.scope = !view.scope.empty() ? std::move(view.scope)
                  : request.gateway   ? std::string()
                                      : "no Sidecar applies to the workload: every service exported to its "
                                        "namespace is visible";
  return std::make_unique<const ConfigTables>(std::move(view.config));
}

void write_explanation(std::ostream& out, OutputFormat format, const Explanation& e, const ExplainRequest& r) {
  if (format == OutputFormat::kJson) {
    nlohmann::json j;
    j["destination"] = e.destination;
    j["role"] = e.role;
    nlohmann::json req;
    req["host"] = r.host ? nlohmann::json(*r.host) : nlohmann::json(nullptr);
    req["sni"] = r.sni ? nlohmann::json(*r.sni) : nlohmann::json(nullptr);
    req["method"] = r.method;
    req["path"] = r.path;
    req["headers"] = nlohmann::json::array();
    for (const auto& [k, v] : r.headers) req["headers"].push_back({{"name", k}, {"value", v}});
    if (r.gateway) req["labels"] = r.labels;
    j["request"] = std::move(req);
    if (e.interception) {
      const decision::Verdict& v = *e.interception;
      nlohmann::json ij;
      ij["intercepted"] = v.action == decision::Action::kRedirect;
      ij["rule"] = decision::to_string(v.rule);
      ij["description"] = decision::describe(v.rule);
      if (!e.interception_option.empty()) ij["option"] = e.interception_option;
      if (v.range) ij["range"] = v.range->cidr.str();
      if (v.proxy_address) ij["proxy"] = endpoint_text(*v.proxy_address, v.proxy_port);
      j["interception"] = std::move(ij);
    } else {
      j["interception"] = nullptr;
    }
    nlohmann::json tj;
    tj["type"] = e.traffic.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.traffic);
    tj["host"] = e.host;
    if (e.role == "sidecar" && e.outcome != Outcome::kDirect) {
      tj["declared_protocol"] = policy::to_string(e.declared);
      tj["declared_by"] = e.declared_by;
    }
    j["traffic"] = std::move(tj);
    if (e.role == "gateway") {
      j["gateway_server"] = e.gateway_server.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.gateway_server);
    }
    j["plan"] = e.plan ? plan_json(*e.plan) : nlohmann::json(nullptr);
    j["steps"] = nlohmann::json::array();
    for (const ExplainStep& s : e.steps) j["steps"].push_back({{"stage", s.stage}, {"text", s.text}});
    nlohmann::json oj;
    oj["result"] = to_string(e.outcome);
    oj["summary"] = e.summary;
    oj["cluster"] = e.cluster;
    oj["response_flags"] = e.response_flags;
    if (e.status != 0) oj["status"] = e.status;
    j["outcome"] = std::move(oj);
    j["exit_code"] = e.exit_code();
    out << j.dump(2) << "\n";
    return;
  }

  out << "explain " << e.destination << " as the " << e.role;
  if (r.gateway) out << " (labels " << labels_text(r.labels) << ")";
  if (r.sni) out << ", TLS SNI \"" << *r.sni << "\"";
  if (r.host) out << ", HTTP " << r.method << " " << r.path << " Host \"" << *r.host << "\"";
  if (!r.sni && !r.host) out << ", opaque TCP";
  out << ":\n";
  const size_t width = std::to_string(e.steps.size()).size();
  for (size_t i = 0; i < e.steps.size(); ++i) {
    std::string n = std::to_string(i + 1);
    out << std::string(width - n.size() + 2, ' ') << n << ". [" << e.steps[i].stage << "] " << e.steps[i].text << "\n";
  }
  out << "=> " << e.summary << "\n";
}

}  // namespace sluice::ctl
