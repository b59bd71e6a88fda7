#include "core/policy/request_plan.h"

#include <cstdio>

#include <algorithm>
#include <cctype>

#include "core/config/host_match.h"
#include "core/policy/load_balancer.h"

namespace sluice::policy {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void add_edits(const config::HeaderOperations& ops, HeaderEdits& out) {
  for (const auto& name : ops.remove) out.push_back({HeaderEdit::Op::kRemove, lower(name), {}});
  for (const auto& [name, value] : ops.set) out.push_back({HeaderEdit::Op::kSet, lower(name), value});
  for (const auto& [name, value] : ops.add) out.push_back({HeaderEdit::Op::kAdd, lower(name), value});
}

bool same_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

}  // namespace

void apply_header_edits(const HeaderEdits& edits, std::vector<std::pair<std::string, std::string>>& fields) {
  for (const HeaderEdit& e : edits) {
    switch (e.op) {
      case HeaderEdit::Op::kRemove:
        std::erase_if(fields, [&](const auto& f) { return same_name(f.first, e.name); });
        break;
      case HeaderEdit::Op::kSet: {
        // Replaces every value of the name by one, where the first one was.
        bool found = false;
        std::vector<std::pair<std::string, std::string>> out;
        out.reserve(fields.size() + 1);
        for (auto& f : fields) {
          if (!same_name(f.first, e.name)) {
            out.push_back(std::move(f));
          } else if (!found) {
            found = true;
            out.emplace_back(std::move(f.first), e.value);
          }
        }
        if (!found) out.emplace_back(e.name, e.value);
        fields.swap(out);
        break;
      }
      case HeaderEdit::Op::kAdd:
        fields.emplace_back(e.name, e.value);
        break;
    }
  }
}


namespace {

// "10", "12.5" (explain's percentages).
std::string format_percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// One draw per use from the request's random number (independent bits for
// the delay and the abort): splitmix64's finaliser.
uint64_t draw(uint64_t pick, uint64_t salt) {
  uint64_t x = pick + salt * 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Envoy's FractionalPercent per million, as Istio translates Percent
// (value * 10000); no percentage: no request.
bool selected(const std::optional<config::Percent>& p, uint64_t random) {
  if (!p || p->value <= 0) return false;
  const auto per_million = static_cast<uint64_t>(std::min(p->value, 100.0) * 10000);
  return random % 1000000 < per_million;
}

// The flags Envoy prints, in its order (ResponseFlagUtils).
constexpr std::string_view kFlagOrder[] = {"LH", "UH",   "UT",   "LR",  "UR", "UF",  "UC",   "UO",
                                           "NR", "DI",   "FI",   "RL",  "UAEX", "RLSE", "DC", "URX",
                                           "SI", "IH",   "DPE",  "UMSDR", "RFCF", "NFCF", "DT", "UPE",
                                           "NC", "OM",   "DF",   "DO",  "DR", "UDO"};

void split_flags(std::string_view s, std::vector<std::string_view>& out) {
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view f = s.substr(0, comma);
    if (!f.empty() && f != "-" && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
}

size_t flag_rank(std::string_view f) {
  const auto* it = std::find(std::begin(kFlagOrder), std::end(kFlagOrder), f);
  return static_cast<size_t>(it - std::begin(kFlagOrder));  // unknown ones last, in their order
}

}  // namespace

FaultDecision sample_fault(const config::HTTPFaultInjection& fault, uint64_t pick) {
  FaultDecision d;
  if (fault.delay && fault.delay->fixed_delay && fault.delay->fixed_delay->count() > 0 &&
      selected(fault.delay->percentage, draw(pick, 1))) {
    d.delay = *fault.delay->fixed_delay;
  }
  if (fault.abort && fault.abort->http_status != 0 && selected(fault.abort->percentage, draw(pick, 2))) {
    d.abort_status = fault.abort->http_status;
  }
  return d;
}

std::string merge_response_flags(std::string_view a, std::string_view b) {
  std::vector<std::string_view> flags;
  split_flags(a, flags);
  split_flags(b, flags);
  std::stable_sort(flags.begin(), flags.end(),
                   [](std::string_view x, std::string_view y) { return flag_rank(x) < flag_rank(y); });
  std::string out;
  for (std::string_view f : flags) {
    if (!out.empty()) out += ',';
    out += f;
  }
  return out;
}

bool RetryPlan::retries_status(uint32_t status) const {
  if (on_5xx && status >= 500 && status <= 599) return true;
  if (on_gateway_error && (status == 502 || status == 503 || status == 504)) return true;
  if (on_retriable_4xx && status == 409) return true;
  return status < status_codes.size() && status_codes.test(status);
}

RetryPlan retry_plan(const RetryPolicy* policy) {
  RetryPlan r;
  if (policy == nullptr) return r;
  r.attempts = 1 + policy->num_retries;
  bool status_codes = false;
  std::string_view all = policy->retry_on;
  while (!all.empty()) {
    const size_t comma = all.find(',');
    std::string_view part = all.substr(0, comma);
    all = comma == std::string_view::npos ? std::string_view() : all.substr(comma + 1);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (part == "5xx") r.on_5xx = true;
    else if (part == "gateway-error") r.on_gateway_error = true;
    else if (part == "reset") r.on_reset = true;
    else if (part == "connect-failure") r.on_connect_failure = true;
    else if (part == "retriable-4xx") r.on_retriable_4xx = true;
    else if (part == "retriable-status-codes") status_codes = true;
    // connect-failure also sets ForwardPlan::connect_attempts; refused-stream
    // and the gRPC conditions (cancelled, unavailable, ...) never occur on
    // HTTP/1.
  }
  if (status_codes) {
    for (uint32_t code : policy->retriable_status_codes) {
      if (code < r.status_codes.size()) r.status_codes.set(code);
    }
  }
  if (policy->per_try_timeout) r.per_try_timeout = *policy->per_try_timeout;
  if (policy->backoff) r.backoff_base = *policy->backoff;
  return r;
}

std::chrono::milliseconds RetryPlan::backoff(uint32_t retry, uint64_t pick) const {
  // Envoy's JitteredExponentialBackOffStrategy: retry n waits
  // random % min(base x 2^(n-1), max_interval), max_interval ten times
  // base. Bounded at a day (a config's 300 years would overflow later sums).
  constexpr uint64_t kDayMs = 24ull * 3600 * 1000;
  const uint64_t base = std::min<uint64_t>(static_cast<uint64_t>(std::max<int64_t>(0, backoff_base.count())), kDayMs);
  if (retry == 0 || base == 0) return std::chrono::milliseconds(0);
  const uint64_t interval = std::min(base << std::min<uint32_t>(retry - 1, 8), base * 10);
  return std::chrono::milliseconds(static_cast<int64_t>(pick % interval));
}

const char* to_string(RequestPlan::Kind k) {
  switch (k) {
    case RequestPlan::Kind::kForward: return "forward";
    case RequestPlan::Kind::kLocalReply: return "local-reply";
    case RequestPlan::Kind::kClose: return "close";
  }
  return "?";
}

std::string expected_service_identity(std::string_view host, std::string_view trust_domain) {
  std::string name, ns;
  if (!config::split_kubernetes_fqdn(host, &name, &ns)) return {};
  // Istio's installer gives the egress gateway its own service account; other
  // services' accounts are only known to a control plane watching pods.
  if (name == "istio-egressgateway") {
    return "spiffe://" + std::string(trust_domain) + "/ns/" + ns + "/sa/istio-egressgateway-service-account";
  }
  return {};
}

namespace {

// The ServiceEntry declaring `host` on `port`, if any (HTTP-family first,
// then TLS-family ports), for a route's destination.
std::optional<ServiceRef> find_service(const Registry& registry, std::string_view host, uint32_t port) {
  if (auto s = registry.find_http(port, host)) return s;
  if (auto s = registry.find_tls(port, host)) return s;
  return std::nullopt;
}

class Planner {
 public:
  Planner(const PlanTables& t, const PlanRequest& r) : t_(t), r_(r) {}

  RequestPlan sidecar() {
    OutboundRequest oreq;
    oreq.original_ip = r_.original_ip;
    oreq.original_port = r_.port;
    oreq.traffic = r_.traffic;
    oreq.host = r_.host;
    oreq.explain = r_.explain;
    OutboundDecision d = decide_outbound(*t_.registry, t_.mode, oreq);
    if (r_.explain) p_.steps.push_back("outboundTrafficPolicy " + std::string(config::to_string(t_.mode)) + ": " + d.reason);
    p_.cluster = std::move(d.cluster);
    p_.route_name = std::move(d.route_name);
    switch (d.action) {
      case Action::kLocalReply502:
        p_.kind = RequestPlan::Kind::kLocalReply;
        p_.status = 502;
        p_.response_code_details = "direct_response";
        return std::move(p_);
      case Action::kBlackhole:
        p_.kind = RequestPlan::Kind::kClose;
        p_.response_flags = d.response_flags;
        return std::move(p_);
      case Action::kPassthrough:
        // The workload's Sidecar names an egress proxy (ALLOW_ANY): what
        // would pass through goes there, as Istio's passthrough route and
        // filter chain then point at its cluster.
        if (const auto& so = t_.config->sidecar_outbound; so && so->egress_proxy) {
          if (r_.explain) {
            p_.steps.push_back("egress proxy of Sidecar " + t_.config->sidecar_source + ": " + so->egress_proxy->host +
                               (so->egress_proxy->port ? ":" + std::to_string(so->egress_proxy->port->number) : ""));
          }
          RouteTarget t;
          t.host = so->egress_proxy->host;
          t.subset = so->egress_proxy->subset;
          if (so->egress_proxy->port) {
            t.port = so->egress_proxy->port->number;
            t.port_source = RouteTarget::PortSource::kDestination;
          }
          return to_target(t);
        }
        p_.kind = RequestPlan::Kind::kForward;
        p_.forward.upstream = plan_passthrough(r_.original_ip, r_.port);
        p_.forward.port = r_.port;
        // PassthroughCluster has no DestinationRule: the mesh's defaults.
        p_.forward.connection = connection_settings(t_.config->mesh, p_.forward.policy);
        explain_connection_settings();
        // Istio's allow_any route carries the default retry policy.
        if (r_.traffic == Traffic::kHttp) {
          static const RetryPolicy defaults;
          p_.forward.connect_attempts = 1 + defaults.num_retries;
          p_.forward.retry = retry_plan(&defaults);
        }
        if (r_.explain) p_.steps.push_back("passthrough to the original destination " + r_.original_ip.str() + ":" +
                           std::to_string(r_.port));
        return std::move(p_);
      case Action::kRoute:
        break;
    }
    service_ = d.service;
    // A proxy that serves one known workload matches sourceNamespace and
    // sourceLabels against it; else (a node's proxy, a whole tree) the
    // source is unknown and they never match.
    RouteScope scope = RouteScope::sidecar();
    if (t_.config->view_source) scope.with_source(t_.config->view_labels, t_.config->view_namespace);
    return route(scope, /*gateway=*/false);
  }

  RequestPlan gateway(const GatewayServerRef& server) {
    if (r_.explain) p_.steps.push_back("Gateway server " + server.describe() + " (" + to_string(server.kind) + ")");
    p_.cluster = "-";
    // Istio matches sourceLabels / sourceNamespace at a gateway against the
    // gateway's own labels and namespace.
    RouteScope scope = RouteScope::gateway(server.gateway->meta.name, server.gateway->meta.namespace_);
    if (t_.config->view_source) scope.with_source(t_.config->view_labels, t_.config->view_namespace);
    return route(scope, true);
  }

 private:
  RequestPlan route(const RouteScope& scope, bool gateway) {
    switch (r_.traffic) {
      case Traffic::kHttp: {
        HttpRequest hr;
        if (r_.http) hr = *r_.http;
        hr.host = r_.host;
        hr.port = r_.port;
        hr.pick = r_.pick;
        HttpRouteDecision rd = t_.routes->route_http(scope, hr, nullptr, r_.explain);
        // Every HTTP route has Istio's default retry policy unless its
        // VirtualService rule says otherwise (attempts 0: none).
        {
          static const RetryPolicy defaults;
          p_.forward.connect_attempts = 1 + defaults.num_retries;
          p_.forward.retry = retry_plan(&defaults);
        }
        if (r_.explain) p_.steps.push_back("VirtualService (" + scope.describe() + "): " + rd.reason.str());
        if (!rd.route_name.empty()) p_.route_name = std::string(rd.route_name);
        switch (rd.outcome) {
          case RouteOutcome::kNoVirtualService:
            if (gateway) return not_found();
            return to_default_service();
          case RouteOutcome::kRoute:
            if (!rd.authority_rewrite.empty()) p_.forward.authority_rewrite = std::string(rd.authority_rewrite);
            if (rd.has_path_rewrite()) p_.forward.path_rewrite = rd.rewritten_path(hr.path);
            for (const config::Headers* h : {rd.destination_headers, rd.route_headers}) {
              if (h == nullptr) continue;
              if (h->request) add_edits(*h->request, p_.forward.request_headers);
              if (h->response) add_edits(*h->response, p_.forward.response_headers);
            }
            if (r_.explain && (p_.forward.rewrites_request() || !p_.forward.response_headers.empty())) {
              p_.steps.push_back("request rewrite:" +
                                 (p_.forward.path_rewrite.empty() ? "" : " path " + p_.forward.path_rewrite) +
                                 (p_.forward.authority_rewrite.empty() ? "" : " authority " + p_.forward.authority_rewrite) +
                                 " " + std::to_string(p_.forward.request_headers.size()) + " request and " +
                                 std::to_string(p_.forward.response_headers.size()) + " response header operations");
            }
            p_.forward.timeout = rd.timeout;
            p_.forward.retry = retry_plan(rd.retries);
            // Envoy retries a failed connect (a reset before any response)
            // under connect-failure, and under 5xx, gateway-error and reset,
            // which take no response as theirs (wouldRetryFromReset).
            p_.forward.connect_attempts = rd.retries && p_.forward.retry.retries_connect() ? 1 + rd.retries->num_retries : 1;
            if (r_.explain) {
              p_.steps.push_back("connect attempts " + std::to_string(p_.forward.connect_attempts) +
                                 (rd.retries ? " (retries " + std::to_string(rd.retries->num_retries) + " on " +
                                                   rd.retries->retry_on +
                                                   (rd.retries->backoff ? ", back-off base " +
                                                                              std::to_string(rd.retries->backoff->count()) + " ms"
                                                                        : std::string()) +
                                                   ")"
                                             : " (retries off)") +
                                 (rd.timeout ? ", route timeout " + std::to_string(rd.timeout->count()) + " ms"
                                             : ", no route timeout"));
            }
            {
              RequestPlan planned = to_target(rd.target);
              if (!rd.mirrors.empty()) {
                const uint64_t drawn = draw(r_.pick, 3);  // one for all the mirrors
                for (size_t i = 0; i < rd.mirrors.size(); ++i) {
                  add_mirror(planned, rd.mirrors[i], i, rd.mirrors.size(), drawn);
                }
              }
              if (rd.fault) inject_fault(planned, *rd.fault);
              return planned;
            }
          case RouteOutcome::kRedirect:
            p_.kind = RequestPlan::Kind::kLocalReply;
            p_.status = rd.status;
            p_.location = rd.location;
            p_.response_code_details = "direct_response";
            return std::move(p_);
          case RouteOutcome::kDirectResponse:
            p_.kind = RequestPlan::Kind::kLocalReply;
            p_.status = rd.status;
            if (rd.body) p_.body = std::string(*rd.body);
            p_.response_code_details = "direct_response";
            return std::move(p_);
          case RouteOutcome::kNoRouteMatched:
            return not_found();
        }
        return not_found();
      }
      case Traffic::kTls:
      case Traffic::kTcp: {
        L4RouteDecision ld = r_.traffic == Traffic::kTls
                                 ? t_.routes->route_tls(scope, r_.host, r_.port, r_.original_ip, r_.pick)
                                 : t_.routes->route_tcp(scope, r_.port, r_.original_ip, r_.pick,
                                                        service_ ? std::string_view(service_->host) : "");
        if (r_.explain) p_.steps.push_back("VirtualService (" + scope.describe() + "): " + ld.reason.str());
        switch (ld.outcome) {
          case RouteOutcome::kRoute:
            return to_target(ld.target);
          case RouteOutcome::kNoVirtualService:
            if (!gateway) return to_default_service();
            [[fallthrough]];
          default:
            p_.kind = RequestPlan::Kind::kClose;
            p_.response_flags = "NR";
            if (r_.explain) p_.steps.push_back("no route: the connection is closed (flag NR)");
            return std::move(p_);
        }
      }
    }
    return std::move(p_);
  }

  // Envoy's request mirror policy: a copy of the request to the mirror's
  // cluster, planned like a route to it. Every mirror of the route tests
  // its percentage against the same draw, as Envoy's router tests each
  // shadow policy against the stream's one random value: a request a 10 %
  // mirror copies, a 30 % one copies too.
  void add_mirror(RequestPlan& p, const HttpRouteDecision::Mirror& mirror, size_t i, size_t n, uint64_t drawn) const {
    const config::Percent share = mirror.percentage ? *mirror.percentage : config::Percent{100};
    // Named for explain only (the data path plans without it).
    auto which = [&] {
      return "mirror" + (n > 1 ? " " + std::to_string(i + 1) + "/" + std::to_string(n) : std::string()) + " (" +
             std::string(mirror.target.host) + ", " + format_percent(share.value) + " %)";
    };
    if (!selected(share, drawn)) {
      if (r_.explain) p.steps.push_back(which() + ": configured, not selected for this request");
      return;
    }
    Planner planner(t_, r_);
    RequestPlan m = planner.to_target(mirror.target);
    if (r_.explain) {
      p.steps.push_back(which() + ": a copy (Host \"...-shadow\", response dropped) to " + m.cluster +
                        (m.kind == RequestPlan::Kind::kForward ? "" : ": not sent, " + m.response_flags));
    }
    if (m.kind == RequestPlan::Kind::kForward) p.mirrors.push_back(std::make_shared<const RequestPlan>(std::move(m)));
  }

  // Envoy's fault filter runs before the router: an abort answers instead
  // of whatever the route would have done (a missing cluster included), a
  // delay comes before it.
  void inject_fault(RequestPlan& p, const config::HTTPFaultInjection& fault) const {
    const FaultDecision f = sample_fault(fault, r_.pick);
    if (f.delay.count() > 0) {
      p.fault_delay = f.delay;
      p.response_flags = merge_response_flags(p.response_flags, "DI");
      if (r_.explain) p.steps.push_back("fault: delay " + std::to_string(f.delay.count()) + " ms (flag DI)");
    }
    if (f.abort_status != 0) {
      p.kind = RequestPlan::Kind::kLocalReply;
      p.status = f.abort_status;
      p.body = "fault filter abort";
      p.location.clear();
      // Only the fault's own flags: the route was never carried out.
      p.response_flags = f.delay.count() > 0 ? "DI,FI" : "FI";
      p.response_code_details = "fault_filter_abort";
      if (r_.explain) p.steps.push_back("fault: abort " + std::to_string(f.abort_status) + " (flag FI)");
    }
    if (r_.explain && f.delay.count() == 0 && f.abort_status == 0) {
      p.steps.push_back("fault: configured, not selected for this request");
    }
  }

  RequestPlan not_found() {
    p_.kind = RequestPlan::Kind::kLocalReply;
    p_.status = 404;
    p_.response_flags = "NR";
    p_.response_code_details = "route_not_found";
    if (r_.explain) p_.steps.push_back("no route matched: 404 (flag NR)");
    return std::move(p_);
  }

  // The ServiceEntry's own cluster, without a VirtualService.
  RequestPlan to_default_service() {
    std::string host = service_->host;
    RouteTarget t;
    t.host = host;
    t.port = r_.port;
    return to_target(t);
  }

  void explain_connection_settings() {
    if (!r_.explain) return;
    const std::string c = p_.forward.connection.describe(r_.traffic == Traffic::kHttp);
    if (!c.empty()) p_.steps.push_back("upstream connections: " + c);
  }

  RequestPlan to_target(const RouteTarget& target) {
    ForwardPlan& f = p_.forward;
    f.host = std::string(target.host);
    f.subset = std::string(target.subset);
    f.port = target.port != 0 ? target.port : r_.port;
    f.policy = t_.destinations->resolve_policy(f.host, f.subset, f.port, r_.explain);
    if (r_.explain) p_.steps.push_back("DestinationRule: " + f.policy.reason.str());
    p_.cluster = f.policy.cluster_name;
    if (!f.policy.ok()) {
      p_.response_flags = "NC";
      p_.response_code_details = "cluster_not_found";
      if (r_.traffic == Traffic::kHttp) {
        p_.kind = RequestPlan::Kind::kLocalReply;
        p_.status = 503;
      } else {
        p_.kind = RequestPlan::Kind::kClose;
      }
      return std::move(p_);
    }
    p_.kind = RequestPlan::Kind::kForward;
    f.connection = connection_settings(t_.config->mesh, f.policy);
    explain_connection_settings();

    // Endpoints: the ServiceEntry that matched at the sidecar (same host and
    // port), else whichever declares the destination host on its port, else
    // the name itself through DNS (a Kubernetes service).
    std::optional<ServiceRef> svc;
    if (service_ && service_->host == f.host && f.port == r_.port) svc = service_;
    else svc = find_service(*t_.registry, f.host, f.port);
    if (svc) {
      // A wildcard entry resolves the name the client asked for.
      std::string requested = r_.host.empty() ? f.host : r_.host;
      f.upstream = plan_upstream(*svc, r_.original_ip, static_cast<uint16_t>(f.port), requested);
      if (f.policy.subset_labels && !f.policy.subset_labels->empty() &&
          f.upstream.kind == UpstreamPlan::Kind::kStatic && svc->entry->endpoints.size() == f.upstream.endpoints.size()) {
        std::vector<size_t> keep;
        select_endpoints(*svc->entry, f.policy.subset_labels, keep);
        std::vector<UpstreamEndpoint> kept;
        for (size_t i : keep) kept.push_back(f.upstream.endpoints[i]);
        f.upstream.endpoints = std::move(kept);
      }
      if (r_.explain) p_.steps.push_back("endpoints: ServiceEntry " + svc->entry->meta.key() + " resolution " +
                         config::to_string(svc->entry->resolution) + " (" + to_string(f.upstream.kind) + ", " +
                         std::to_string(f.upstream.endpoints.size()) + " endpoint(s))");
    } else {
      f.upstream.kind = UpstreamPlan::Kind::kDns;
      f.upstream.endpoints.push_back(UpstreamEndpoint{std::nullopt, f.host, static_cast<uint16_t>(f.port), 1});
      if (r_.explain) p_.steps.push_back("endpoints: no ServiceEntry declares " + f.host + ":" + std::to_string(f.port) +
                         "; resolved by DNS (a Kubernetes service)");
    }

    f.tls_mode = f.policy.tls_mode;
    switch (f.tls_mode) {
      case config::ClientTLSMode::kDisable:
        break;
      case config::ClientTLSMode::kIstioMutual: {
        f.sni = f.policy.sni;
        if (f.policy.tls && !f.policy.tls->subject_alt_names.empty()) {
          f.expected_sans = f.policy.tls->subject_alt_names;
        } else if (std::string id = expected_service_identity(f.host, t_.config->mesh.trust_domain); !id.empty()) {
          f.expected_sans.push_back(std::move(id));
        }
        break;
      }
      case config::ClientTLSMode::kSimple:
      case config::ClientTLSMode::kMutual:
        f.sni = !f.policy.sni.empty() ? f.policy.sni
                : (f.policy.auto_sni && r_.traffic == Traffic::kHttp && !r_.host.empty()) ? r_.host
                                                                                           : f.host;
        if (f.policy.tls) f.expected_sans = f.policy.tls->subject_alt_names;
        break;
    }
    if (r_.explain && f.tls_mode != config::ClientTLSMode::kDisable) {
      std::string sans;
      for (const auto& s : f.expected_sans) sans += (sans.empty() ? "" : ", ") + s;
      p_.steps.push_back(std::string("TLS origination ") + config::to_string(f.tls_mode) + ", SNI " +
                         (f.sni.empty() ? "(none)" : f.sni) + ", server identity " +
                         (sans.empty() ? "any from the trusted roots" : sans));
    }
    // consistentHash: Envoy's hash policy, which Istio puts on the route
    // (and on the TCP proxy for useSourceIp).
    if (f.policy.load_balancer && f.policy.load_balancer->consistent_hash) {
      const HttpRequest* http = r_.traffic == Traffic::kHttp ? r_.http : nullptr;
      std::string set_cookie;
      f.hash_key = consistent_hash_key(*f.policy.load_balancer->consistent_hash,
                                       HashInput{http, r_.source, r_.source_port}, &set_cookie);
      if (!set_cookie.empty()) f.response_headers.push_back(HeaderEdit{HeaderEdit::Op::kAdd, "set-cookie", set_cookie});
      if (r_.explain) {
        const bool by_client = hashes_on_client_address(*f.policy.load_balancer->consistent_hash);
        p_.steps.push_back(
            f.hash_key ? "consistentHash: the request's key hashes to " + hex64(*f.hash_key) +
                             (set_cookie.empty() ? "" : " (cookie made up: Set-Cookie " + set_cookie + ")")
            : by_client && !r_.source
                ? std::string("consistentHash: the key comes from the client's address, which is not known here")
                : std::string("consistentHash: the request has no key: a random point on the ring"));
      }
    }
    return std::move(p_);
  }

  const PlanTables& t_;
  const PlanRequest& r_;
  std::optional<ServiceRef> service_;
  RequestPlan p_;
};

}  // namespace

RequestPlan plan_sidecar(const PlanTables& tables, const PlanRequest& request) {
  return Planner(tables, request).sidecar();
}

RequestPlan plan_gateway(const PlanTables& tables, const GatewayServerRef& server, const PlanRequest& request) {
  return Planner(tables, request).gateway(server);
}

}  // namespace sluice::policy
