#include "core/policy/routing.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <functional>
#include <regex>

#include "core/config/host_match.h"

namespace sluice::policy {

// ---------------------------------------------------------------------------
// ReasonText

ReasonText::ReasonText(const ReasonText& other)
    : len_(other.len_), truncated_(other.truncated_), off_(other.off_) {
  std::memcpy(buf_, other.buf_, len_);
}

ReasonText& ReasonText::operator=(const ReasonText& other) {
  if (this != &other) {
    len_ = other.len_;
    truncated_ = other.truncated_;
    off_ = other.off_;
    std::memcpy(buf_, other.buf_, len_);
  }
  return *this;
}

void ReasonText::mark_truncated() {
  truncated_ = true;
  static constexpr std::string_view kEllipsis = "...";
  len_ = static_cast<uint16_t>(kCapacity - kEllipsis.size());
  std::memcpy(buf_ + len_, kEllipsis.data(), kEllipsis.size());
  len_ = static_cast<uint16_t>(kCapacity);
}

ReasonText& ReasonText::append(std::string_view text) {
  if (truncated_ || off_) return *this;
  const size_t room = kCapacity - len_;
  if (text.size() > room) {
    std::memcpy(buf_ + len_, text.data(), room);
    len_ = static_cast<uint16_t>(kCapacity);
    mark_truncated();
    return *this;
  }
  std::memcpy(buf_ + len_, text.data(), text.size());
  len_ = static_cast<uint16_t>(len_ + text.size());
  return *this;
}

ReasonText& ReasonText::append(uint64_t number) {
  if (truncated_ || off_) return *this;
  char digits[24];
  int n = std::snprintf(digits, sizeof(digits), "%llu", static_cast<unsigned long long>(number));
  return append(std::string_view(digits, n > 0 ? static_cast<size_t>(n) : 0));
}

ReasonText& ReasonText::appendf(const char* format, ...) {
  if (truncated_ || off_) return *this;
  const size_t room = kCapacity - len_;
  va_list args;
  va_start(args, format);
  // buf_ has kCapacity + 1 bytes, so the terminating NUL always fits.
  int n = std::vsnprintf(buf_ + len_, room + 1, format, args);
  va_end(args);
  if (n < 0) return *this;
  if (static_cast<size_t>(n) > room) {
    len_ = static_cast<uint16_t>(kCapacity);
    mark_truncated();
  } else {
    len_ = static_cast<uint16_t>(len_ + n);
  }
  return *this;
}

// ---------------------------------------------------------------------------
// Small helpers

namespace {

constexpr std::string_view kMesh = "mesh";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool starts_with(std::string_view s, std::string_view prefix, bool ignore_case) {
  if (s.size() < prefix.size()) return false;
  return ignore_case ? iequals(s.substr(0, prefix.size()), prefix) : s.substr(0, prefix.size()) == prefix;
}

std::string_view path_only(std::string_view path) {
  size_t end = path.find_first_of("?#");
  return end == std::string_view::npos ? path : path.substr(0, end);
}

// Istio's resolveGatewayName: "mesh", "ns/name", "./name", "name" (in the
// VirtualService's namespace) and the legacy "name.ns[.svc.cluster.local]".
std::string resolve_gateway_ref(std::string_view ref, std::string_view vs_namespace) {
  if (ref == kMesh) return std::string(kMesh);
  size_t slash = ref.find('/');
  std::string out;
  if (slash == std::string_view::npos) {
    size_t dot = ref.find('.');
    if (dot == std::string_view::npos) {
      out.append(vs_namespace).append("/").append(ref);
      return out;
    }
    std::string_view rest = ref.substr(dot + 1);
    out.append(rest.substr(0, rest.find('.'))).append("/").append(ref.substr(0, dot));
    return out;
  }
  if (ref.substr(0, slash) == ".") {
    out.append(vs_namespace).append("/").append(ref.substr(slash + 1));
    return out;
  }
  return std::string(ref);
}

bool contains_key(const std::vector<std::string>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

bool labels_subset(const config::Labels& wanted, const config::Labels* have) {
  if (wanted.empty()) return true;
  if (!have) return false;
  for (const auto& [k, v] : wanted) {
    auto it = have->find(k);
    if (it == have->end() || it->second != v) return false;
  }
  return true;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ",";
    out += s;
  }
  return out;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// ---------------------------------------------------------------------------
// Compiled match conditions

enum class MatchKind { kExact, kPrefix, kRegex, kPresent };

struct CompiledString {
  MatchKind kind = MatchKind::kPresent;
  std::string value;
  std::shared_ptr<const std::regex> regex;  // kRegex; null when it failed to compile
  std::string regex_error;

  std::string describe() const {
    switch (kind) {
      case MatchKind::kExact: return "exact \"" + value + "\"";
      case MatchKind::kPrefix: return "prefix \"" + value + "\"";
      case MatchKind::kRegex: return "regex \"" + value + "\"";
      case MatchKind::kPresent: return "present";
    }
    return "?";
  }
};

// An RE2-style pattern on std::regex: ECMAScript, a leading "(?i)" as
// icase; null (and `error` set) when it does not compile.
std::shared_ptr<const std::regex> compile_regex(std::string_view pattern, std::string* error) {
#if defined(__GLIBCXX__)
  // The breadth-first executor: bounded stack and polynomial time on any
  // subject (back-references, which RE2 refuses too, do not compile).
  auto flags = std::regex::ECMAScript | std::regex_constants::__polynomial;
#else
  auto flags = std::regex::ECMAScript;
#endif
  // RE2's inline case-insensitivity flag, common in Istio configs.
  if (pattern.substr(0, 4) == "(?i)") {
    pattern.remove_prefix(4);
    flags |= std::regex::icase;
  }
  try {
    return std::make_shared<const std::regex>(std::string(pattern), flags);
  } catch (const std::regex_error& e) {
    // Config compilation, not the data path.
    if (error) *error = e.what();
    return nullptr;
  }
}

// The highest capture group RE2's rewrite string names (\N), 0 for none
// (RE2::MaxSubmatch).
unsigned max_submatch(std::string_view rewrite) {
  unsigned n = 0;
  for (size_t i = 0; i + 1 < rewrite.size(); ++i) {
    if (rewrite[i] != '\\') continue;
    const char next = rewrite[++i];
    if (next >= '0' && next <= '9') n = std::max<unsigned>(n, static_cast<unsigned>(next - '0'));
  }
  return n;
}

// Appends RE2's Rewrite of one match: \N the group (empty when it took no
// part), \\ a backslash; any other escape, or a trailing backslash, is
// invalid and ends this replacement there, as RE2's Rewrite returns.
void append_rewrite(std::string& out, std::string_view rewrite,
                    const std::match_results<std::string_view::const_iterator>& m) {
  for (size_t i = 0; i < rewrite.size(); ++i) {
    const char ch = rewrite[i];
    if (ch != '\\') {
      out += ch;
      continue;
    }
    if (i + 1 == rewrite.size()) return;
    const char next = rewrite[++i];
    if (next >= '0' && next <= '9') {
      const auto& g = m[static_cast<size_t>(next - '0')];
      if (g.matched) out.append(g.first, g.second);
    } else if (next == '\\') {
      out += '\\';
    } else {
      return;
    }
  }
}

// `header`: Istio turns an empty StringMatch (the decoder's prefix "") and
// regex "*" into Envoy's present_match for headers, query parameters and the
// method/scheme/authority pseudo-headers (canBeConvertedToPresentMatch).
CompiledString compile_string_match(const config::StringMatch& m, bool header) {
  CompiledString out;
  out.value = m.value;
  switch (m.kind) {
    case config::StringMatch::Kind::kExact:
      out.kind = MatchKind::kExact;
      break;
    case config::StringMatch::Kind::kPrefix:
      out.kind = (header && m.value.empty()) ? MatchKind::kPresent : MatchKind::kPrefix;
      break;
    case config::StringMatch::Kind::kRegex: {
      if (header && m.value == "*") {
        out.kind = MatchKind::kPresent;
        break;
      }
      out.kind = MatchKind::kRegex;
      // One that does not compile never matches.
      out.regex = compile_regex(m.value, &out.regex_error);
      break;
    }
  }
  return out;
}

enum class StringVerdict { kMatch, kNoMatch, kTooLong, kBadRegex };

StringVerdict match_string(const CompiledString& m, std::string_view subject, bool ignore_case) {
  switch (m.kind) {
    case MatchKind::kPresent:
      return StringVerdict::kMatch;
    case MatchKind::kExact:
      return (ignore_case ? iequals(subject, m.value) : subject == m.value) ? StringVerdict::kMatch
                                                                             : StringVerdict::kNoMatch;
    case MatchKind::kPrefix:
      return starts_with(subject, m.value, ignore_case) ? StringVerdict::kMatch : StringVerdict::kNoMatch;
    case MatchKind::kRegex:
      if (!m.regex) return StringVerdict::kBadRegex;
      if (subject.size() > RouteTable::kMaxRegexSubjectBytes) return StringVerdict::kTooLong;
      try {
        return std::regex_match(subject.begin(), subject.end(), *m.regex) ? StringVerdict::kMatch
                                                                          : StringVerdict::kNoMatch;
      } catch (const std::regex_error&) {
        // error_complexity / error_stack: treat as no match rather than let an
        // exception cross the event loop.
        return StringVerdict::kTooLong;
      }
  }
  return StringVerdict::kNoMatch;
}

struct NamedCondition {
  std::string name;  // header names lower-cased; query parameter names as written
  CompiledString match;
};

struct CompiledHttpMatch {
  const config::HTTPMatchRequest* source = nullptr;  // nullptr: a rule without match blocks
  std::optional<CompiledString> uri, scheme, method, authority;
  std::vector<NamedCondition> headers, without_headers, query_params;
  bool ignore_uri_case = false;
  uint32_t port = 0;
  std::vector<std::string> gateways;  // resolved keys
  bool catch_all = false;             // Istio's isCatchAllRoute
  std::string route_name;
};

struct CompiledDestination {
  std::string host;  // qualified, lower case
  std::string_view subset;
  uint32_t port = 0;  // 0: the listener port
  RouteTarget::PortSource port_source = RouteTarget::PortSource::kRequest;
  int32_t weight = 0;
  size_t index = 0;  // in route[]
};

struct CompiledHttpRule {
  const config::HTTPRoute* source = nullptr;
  std::vector<CompiledHttpMatch> matches;  // never empty
  std::vector<CompiledDestination> destinations;
  uint64_t total_weight = 0;
  std::optional<RetryPolicy> retries;  // nullopt: disabled
  std::string_view authority_rewrite;
  // rewrite.uriRegexRewrite: the pattern (null: none, or unusable, when the
  // path goes unchanged and uri_regex_error says why) and RE2's rewrite.
  std::shared_ptr<const std::regex> uri_regex;
  std::string_view uri_regex_rewrite;
  std::string uri_regex_error;
  // http[].mirror (with mirrorPercentage, or the deprecated mirror_percent)
  // or http[].mirrors[], in order; a percentage unset is 100 %.
  struct Mirror {
    CompiledDestination destination;
    std::optional<config::Percent> percentage;
  };
  std::vector<Mirror> mirrors;
};

struct CompiledL4Match {
  std::vector<std::string> sni_hosts;  // TLS only; lower case
  std::vector<decision::Cidr> subnets;
  std::vector<std::string> bad_subnets;
  uint32_t port = 0;
  std::vector<std::string> gateways;
  const config::Labels* source_labels = nullptr;
  std::string_view source_namespace;
};

struct CompiledL4Rule {
  std::vector<CompiledL4Match> matches;  // empty: matches everything
  std::vector<CompiledDestination> destinations;
  uint64_t total_weight = 0;
};

struct CompiledVirtualService {
  const config::VirtualService* source = nullptr;
  std::string key;  // ns/name, for reasons
  std::vector<std::string> gateways;
  std::vector<std::string> hosts;
  std::vector<CompiledHttpRule> http;
  std::vector<CompiledL4Rule> tls;
  std::vector<CompiledL4Rule> tcp;
};

// One VirtualService reachable through a domain, on some ports (gateways:
// the servers whose hosts produced the domain) or all (sidecar).
struct Binding {
  uint32_t vs = 0;
  std::vector<uint32_t> ports;  // empty: any port
  bool on_port(uint32_t port) const {
    return ports.empty() || std::find(ports.begin(), ports.end(), port) != ports.end();
  }
};

struct Domain {
  std::string name;
  bool alias = false;  // "name.ns" / "name.ns.svc" of a Kubernetes FQDN
  std::vector<Binding> bindings;  // load order
};

struct ScopeIndex {
  bool gateway_found = true;
  std::vector<Domain> domains;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> exact;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> aliases;
  std::vector<uint32_t> wildcards;  // most specific first
  std::vector<Binding> bound;       // every bound VirtualService, load order

  Domain& domain(const std::string& name, bool alias) {
    auto& map = alias ? aliases : exact;
    if (!alias && config::host_is_wildcard(name)) {
      for (uint32_t i : wildcards) {
        if (domains[i].name == name) return domains[i];
      }
      wildcards.push_back(static_cast<uint32_t>(domains.size()));
      domains.push_back(Domain{name, false, {}});
      return domains.back();
    }
    auto it = map.find(name);
    if (it != map.end()) return domains[it->second];
    map.emplace(name, static_cast<uint32_t>(domains.size()));
    domains.push_back(Domain{name, alias, {}});
    return domains.back();
  }
};

void add_binding(std::vector<Binding>& bindings, uint32_t vs, std::optional<uint32_t> port) {
  Binding* b = nullptr;
  for (auto& existing : bindings) {
    if (existing.vs == vs) b = &existing;
  }
  if (!b) {
    bindings.push_back(Binding{vs, {}});
    b = &bindings.back();
    if (port) b->ports.push_back(*port);
    return;
  }
  if (!port) {
    b->ports.clear();
  } else if (!b->ports.empty() && !b->on_port(*port)) {
    b->ports.push_back(*port);
  }
}

void add_domain(ScopeIndex& index, const std::string& name, uint32_t vs, std::optional<uint32_t> port) {
  add_binding(index.domain(name, false).bindings, vs, port);
  // Kubernetes service FQDNs are reachable by their short aliases too.
  std::string svc, ns;
  if (config::split_kubernetes_fqdn(name, &svc, &ns)) {
    add_binding(index.domain(svc + "." + ns, true).bindings, vs, port);
    add_binding(index.domain(svc + "." + ns + ".svc", true).bindings, vs, port);
  }
  add_binding(index.bound, vs, port);
}

// The server hosts a VirtualService of namespace `vs_ns` may bind to
// (Istio's NamesForNamespace; "./h" was rewritten to the gateway namespace).
std::vector<std::string> server_hosts_for(const config::Server& server, std::string_view gateway_ns,
                                          std::string_view vs_ns) {
  std::vector<std::string> out;
  for (const auto& h : server.hosts) {
    size_t slash = h.find('/');
    if (slash == std::string::npos) {
      out.push_back(to_lower(h));
      continue;
    }
    std::string_view ns = std::string_view(h).substr(0, slash);
    if (ns == ".") ns = gateway_ns;
    if (ns != "*" && ns != vs_ns) continue;
    out.push_back(to_lower(std::string_view(h).substr(slash + 1)));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// The compiled table

struct RouteTable::Compiled {
  std::vector<CompiledVirtualService> vs;
  std::unordered_map<std::string, ScopeIndex, StringHash, std::equal_to<>> scopes;
  // Host -> ServiceEntry, for "destination port unset" on single-port services.
  std::unordered_map<std::string, const config::ServiceEntry*, StringHash, std::equal_to<>> services;
};

namespace {

using Compiled = RouteTable::Compiled;

RetryPolicy convert_retries(const config::HTTPRetry& in) {
  RetryPolicy out;
  out.is_default = false;
  out.num_retries = static_cast<uint32_t>(in.attempts);
  if (!in.retry_on.empty()) {
    out.retry_on.clear();
    out.retriable_status_codes.clear();
    size_t start = 0;
    std::string_view all = in.retry_on;
    while (start <= all.size()) {
      size_t comma = all.find(',', start);
      std::string_view part = all.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
      while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
      bool numeric = !part.empty() && part.size() <= 3 &&
                     std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (numeric) {
        uint32_t code = 0;
        for (char c : part) code = code * 10 + static_cast<uint32_t>(c - '0');
        // Istio keeps the parts Go's http.StatusText knows (registered codes,
        // all within 100..599); any code in that range is taken here.
        numeric = code >= 100 && code <= 599;
        if (numeric) out.retriable_status_codes.push_back(code);
      }
      if (!numeric && !part.empty()) {
        if (!out.retry_on.empty()) out.retry_on += ",";
        out.retry_on.append(part);
      }
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    if (!out.retriable_status_codes.empty() && out.retry_on.find("retriable-status-codes") == std::string::npos) {
      if (!out.retry_on.empty()) out.retry_on += ",";
      out.retry_on += "retriable-status-codes";
    }
  }
  out.per_try_timeout = in.per_try_timeout;
  out.backoff = in.backoff;
  return out;
}

CompiledDestination compile_destination(const Compiled& c, const config::Destination& d, int32_t weight,
                                         size_t index, std::string_view vs_ns) {
  CompiledDestination out;
  out.host = to_lower(config::qualify_host(d.host, vs_ns));
  out.subset = d.subset;
  out.weight = weight;
  out.index = index;
  if (d.port && d.port->number != 0) {
    out.port = d.port->number;
    out.port_source = RouteTarget::PortSource::kDestination;
  } else if (auto it = c.services.find(out.host); it != c.services.end() && it->second->ports.size() == 1) {
    // Istio's GetDestinationCluster: a service with a single port needs no
    // port in the destination.
    out.port = it->second->ports[0].number;
    out.port_source = RouteTarget::PortSource::kServiceSinglePort;
  }
  return out;
}

template <typename Dest>
void compile_destinations(const Compiled& c, const std::vector<Dest>& in, std::string_view vs_ns,
                          std::vector<CompiledDestination>& out, uint64_t& total) {
  for (size_t i = 0; i < in.size(); ++i) {
    // A lone destination takes all traffic whatever its weight; among several,
    // weight 0 gets none (Istio leaves such clusters out).
    int32_t w = in.size() == 1 ? 1 : std::max<int32_t>(in[i].weight, 0);
    out.push_back(compile_destination(c, in[i].destination, w, i, vs_ns));
    total += static_cast<uint64_t>(w);
  }
}

std::string_view authority_from_headers(const std::optional<config::Headers>& headers) {
  if (!headers || !headers->request) return {};
  for (const auto& [name, value] : headers->request->set) {
    if (iequals(name, "host") || iequals(name, ":authority")) return value;
  }
  return {};
}

CompiledHttpMatch compile_http_match(const config::HTTPMatchRequest* m, const config::HTTPRoute& rule,
                                     std::string_view vs_ns) {
  CompiledHttpMatch out;
  out.source = m;
  out.route_name = rule.name;
  if (!m) {
    out.catch_all = true;
    return out;
  }
  if (!m->name.empty()) out.route_name += "." + m->name;
  if (m->uri) out.uri = compile_string_match(*m->uri, /*header=*/false);
  if (m->scheme) out.scheme = compile_string_match(*m->scheme, true);
  if (m->method) out.method = compile_string_match(*m->method, true);
  if (m->authority) out.authority = compile_string_match(*m->authority, true);
  for (const auto& [name, sm] : m->headers) out.headers.push_back({to_lower(name), compile_string_match(sm, true)});
  for (const auto& [name, sm] : m->without_headers) {
    out.without_headers.push_back({to_lower(name), compile_string_match(sm, true)});
  }
  for (const auto& [name, sm] : m->query_params) out.query_params.push_back({name, compile_string_match(sm, true)});
  out.ignore_uri_case = m->ignore_uri_case;
  out.port = m->port;
  for (const auto& g : m->gateways) out.gateways.push_back(resolve_gateway_ref(g, vs_ns));
  const bool uri_catch_all = !out.uri || (out.uri->kind == MatchKind::kPrefix && out.uri->value == "/");
  out.catch_all = uri_catch_all && !out.scheme && !out.method && !out.authority && out.headers.empty() &&
                  out.without_headers.empty() && out.query_params.empty();
  return out;
}

template <typename Attr>
CompiledL4Match compile_l4_match(const Attr& m, const std::vector<std::string>* sni_hosts, std::string_view vs_ns) {
  CompiledL4Match out;
  if (sni_hosts) {
    for (const auto& h : *sni_hosts) out.sni_hosts.push_back(to_lower(config::qualify_host(h, vs_ns)));
  }
  for (const auto& s : m.destination_subnets) {
    auto parsed = decision::Cidr::parse(s);
    if (parsed.cidr) {
      out.subnets.push_back(*parsed.cidr);
    } else {
      out.bad_subnets.push_back(s);
    }
  }
  out.port = m.port;
  for (const auto& g : m.gateways) out.gateways.push_back(resolve_gateway_ref(g, vs_ns));
  out.source_labels = &m.source_labels;
  out.source_namespace = m.source_namespace;
  return out;
}

void compile_virtual_service(Compiled& c, const config::VirtualService& vs) {
  CompiledVirtualService out;
  out.source = &vs;
  out.key = vs.meta.key();
  const std::string& ns = vs.meta.namespace_;
  for (const auto& g : vs.effective_gateways()) out.gateways.push_back(resolve_gateway_ref(g, ns));
  for (const auto& h : vs.hosts) out.hosts.push_back(to_lower(config::qualify_host(h, ns)));

  for (const auto& rule : vs.http) {
    CompiledHttpRule r;
    r.source = &rule;
    if (rule.match.empty()) {
      r.matches.push_back(compile_http_match(nullptr, rule, ns));
    } else {
      for (const auto& m : rule.match) r.matches.push_back(compile_http_match(&m, rule, ns));
    }
    compile_destinations(c, rule.route, ns, r.destinations, r.total_weight);
    if (rule.mirror) {
      // Istio: mirrorPercentage when set, else the deprecated mirror_percent.
      std::optional<config::Percent> share = rule.mirror_percentage;
      if (!share && rule.mirror_percent) share = config::Percent{static_cast<double>(*rule.mirror_percent)};
      r.mirrors.push_back({compile_destination(c, *rule.mirror, 0, 0, ns), share});
    }
    for (const config::HTTPMirrorPolicy& m : rule.mirrors) {
      if (m.destination) r.mirrors.push_back({compile_destination(c, *m.destination, 0, 0, ns), m.percentage});
    }
    if (!rule.retries) {
      r.retries = RetryPolicy{};
    } else if (rule.retries->attempts > 0) {
      r.retries = convert_retries(*rule.retries);
    }
    if (rule.rewrite && rule.rewrite->uri_regex_rewrite && rule.rewrite->uri.empty()) {
      const config::HTTPRewrite::RegexRewrite& rr = *rule.rewrite->uri_regex_rewrite;
      r.uri_regex = compile_regex(rr.match, &r.uri_regex_error);
      r.uri_regex_rewrite = rr.rewrite;
      // RE2::GlobalReplace changes nothing when the rewrite names a group
      // the pattern lacks.
      if (r.uri_regex && max_submatch(rr.rewrite) > r.uri_regex->mark_count()) {
        r.uri_regex_error = "the rewrite names group \\" + std::to_string(max_submatch(rr.rewrite)) +
                            ", the pattern has " + std::to_string(r.uri_regex->mark_count());
        r.uri_regex.reset();
      }
    }
    if (rule.rewrite && !rule.rewrite->authority.empty()) {
      r.authority_rewrite = rule.rewrite->authority;
    } else {
      r.authority_rewrite = authority_from_headers(rule.headers);
    }
    out.http.push_back(std::move(r));
  }
  for (const auto& rule : vs.tls) {
    CompiledL4Rule r;
    for (const auto& m : rule.match) r.matches.push_back(compile_l4_match(m, &m.sni_hosts, ns));
    compile_destinations(c, rule.route, ns, r.destinations, r.total_weight);
    out.tls.push_back(std::move(r));
  }
  for (const auto& rule : vs.tcp) {
    CompiledL4Rule r;
    for (const auto& m : rule.match) r.matches.push_back(compile_l4_match(m, nullptr, ns));
    compile_destinations(c, rule.route, ns, r.destinations, r.total_weight);
    out.tcp.push_back(std::move(r));
  }
  c.vs.push_back(std::move(out));
}

void sort_wildcards(ScopeIndex& index) {
  // Longer suffix first; "*" (length 1) last. Stable: equal lengths keep
  // their first-seen order.
  std::stable_sort(index.wildcards.begin(), index.wildcards.end(), [&](uint32_t a, uint32_t b) {
    return index.domains[a].name.size() > index.domains[b].name.size();
  });
}

void build_sidecar_index(Compiled& c) {
  ScopeIndex& index = c.scopes[std::string(kMesh)];
  for (uint32_t i = 0; i < c.vs.size(); ++i) {
    const auto& vs = c.vs[i];
    if (!contains_key(vs.gateways, kMesh)) continue;
    for (const auto& h : vs.hosts) add_domain(index, h, i, std::nullopt);
  }
  sort_wildcards(index);
}

void build_gateway_indexes(Compiled& c, const config::ConfigSet& config) {
  for (const auto& gw : config.gateways) {
    const std::string key = gw.meta.key();
    ScopeIndex& index = c.scopes[key];
    for (uint32_t i = 0; i < c.vs.size(); ++i) {
      const auto& vs = c.vs[i];
      if (!contains_key(vs.gateways, key)) continue;
      for (const auto& server : gw.servers) {
        const auto server_hosts = server_hosts_for(server, gw.meta.namespace_, vs.source->meta.namespace_);
        for (const auto& vh : vs.hosts) {
          for (const auto& sh : server_hosts) {
            // Istio's Names.Intersection keeps the more specific of the two.
            if (config::host_subset_of(vh, sh)) {
              add_domain(index, vh, i, server.port.number);
            } else if (config::host_subset_of(sh, vh)) {
              add_domain(index, sh, i, server.port.number);
            }
          }
        }
      }
    }
  }
  for (auto& [key, index] : c.scopes) {
    if (key != kMesh) sort_wildcards(index);
  }
}

// ---------------------------------------------------------------------------
// Evaluation

enum class Protocol { kHttp, kTls, kTcp };

const char* protocol_name(Protocol p) {
  switch (p) {
    case Protocol::kHttp: return "http";
    case Protocol::kTls: return "tls";
    case Protocol::kTcp: return "tcp";
  }
  return "?";
}

// Static applicability of an HTTP match block to a scope and port: Istio
// decides these when it builds the route table (translateRoute).
bool http_match_applies(const CompiledHttpMatch& m, const RouteScope& scope, uint32_t port,
                        std::string* why = nullptr) {
  if (!m.source) return true;
  if (m.port != 0 && m.port != port) {
    if (why) *why = "port " + std::to_string(m.port) + " != " + std::to_string(port);
    return false;
  }
  if (!m.gateways.empty()) {
    if (contains_key(m.gateways, scope.key())) return true;
    if (why) *why = "gateways [" + join(m.gateways) + "] do not include " + scope.key();
    return false;
  }
  if (!labels_subset(m.source->source_labels, scope.source_labels())) {
    if (why) *why = scope.source_labels() ? "sourceLabels do not match the source workload"
                                          : "sourceLabels given but the source workload is unknown";
    return false;
  }
  if (!m.source->source_namespace.empty() && m.source->source_namespace != scope.source_namespace()) {
    if (why) *why = "sourceNamespace " + m.source->source_namespace + " is not the source's";
    return false;
  }
  return true;
}

// Istio's matchTLS / matchTCP: every condition ANDs.
bool l4_match_applies(const CompiledL4Match& m, const RouteScope& scope, uint32_t port, std::string* why = nullptr) {
  if (!m.gateways.empty() && !contains_key(m.gateways, scope.key())) {
    if (why) *why = "gateways [" + join(m.gateways) + "] do not include " + scope.key();
    return false;
  }
  if (m.port != 0 && m.port != port) {
    if (why) *why = "port " + std::to_string(m.port) + " != " + std::to_string(port);
    return false;
  }
  if (!labels_subset(*m.source_labels, scope.source_labels())) {
    if (why) *why = "sourceLabels do not match the source workload";
    return false;
  }
  if (!m.source_namespace.empty() && m.source_namespace != scope.source_namespace()) {
    if (why) *why = "sourceNamespace " + std::string(m.source_namespace) + " is not the source's";
    return false;
  }
  return true;
}

bool has_applicable_routes(const CompiledVirtualService& vs, Protocol p, const RouteScope& scope, uint32_t port) {
  switch (p) {
    case Protocol::kHttp:
      for (const auto& r : vs.http) {
        for (const auto& m : r.matches) {
          if (http_match_applies(m, scope, port)) return true;
        }
      }
      return false;
    case Protocol::kTls:
    case Protocol::kTcp: {
      const auto& rules = p == Protocol::kTls ? vs.tls : vs.tcp;
      for (const auto& r : rules) {
        if (r.matches.empty()) return true;
        for (const auto& m : r.matches) {
          if (l4_match_applies(m, scope, port)) return true;
        }
      }
      return false;
    }
  }
  return false;
}

bool binding_eligible(const Compiled& c, const Binding& b, Protocol p, const RouteScope& scope, uint32_t port) {
  return b.on_port(port) && has_applicable_routes(c.vs[b.vs], p, scope, port);
}

// Envoy's virtual-host choice: the most specific domain matching `host` that
// has at least one VirtualService with applicable routes.
const Domain* select_domain(const Compiled& c, const ScopeIndex& index, std::string_view host, Protocol p,
                            const RouteScope& scope, uint32_t port, RouteTrace* trace) {
  auto eligible = [&](const Domain& d) {
    for (const auto& b : d.bindings) {
      if (binding_eligible(c, b, p, scope, port)) return true;
    }
    if (trace) {
      std::string names;
      for (const auto& b : d.bindings) names += (names.empty() ? "" : ", ") + c.vs[b.vs].key;
      trace->push_back("domain " + d.name + " (VirtualService " + names + ") has no " + protocol_name(p) +
                       " route for " + scope.key() + " on port " + std::to_string(port) + ": skipped");
    }
    return false;
  };
  if (auto it = index.exact.find(host); it != index.exact.end() && eligible(index.domains[it->second])) {
    return &index.domains[it->second];
  }
  if (auto it = index.aliases.find(host); it != index.aliases.end() && eligible(index.domains[it->second])) {
    return &index.domains[it->second];
  }
  for (uint32_t i : index.wildcards) {
    const Domain& d = index.domains[i];
    if (config::host_subset_of(host, d.name) && eligible(d)) return &d;
  }
  return nullptr;
}

// The VirtualServices a chosen domain yields, in evaluation order: the first
// eligible one at a sidecar, all eligible ones (load order) at a gateway.
template <typename Fn>
void for_each_domain_vs(const Compiled& c, const Domain& d, Protocol p, const RouteScope& scope, uint32_t port,
                        Fn&& fn) {
  for (const auto& b : d.bindings) {
    if (!binding_eligible(c, b, p, scope, port)) continue;
    if (!fn(b.vs)) return;
    if (scope.is_sidecar()) return;
  }
}

std::optional<std::string_view> find_header(const HttpRequest& req, std::string_view name, std::string& joined) {
  if (name == ":authority" || name == "host") return req.authority.empty() ? req.host : req.authority;
  if (name == ":method") return req.method;
  if (name == ":path") return req.path;
  if (name == ":scheme") return req.scheme;
  std::optional<std::string_view> found;
  bool several = false;
  for (const auto& h : req.headers) {
    if (!iequals(h.name, name)) continue;
    if (!found) {
      found = h.value;
    } else {
      // Envoy matches several fields of one name as their comma-joined value.
      if (!several) joined.assign(found->data(), found->size());
      several = true;
      joined += ",";
      joined.append(h.value);
    }
  }
  if (several) return std::string_view(joined);
  return found;
}

// First value of query parameter `name`, raw (not percent-decoded), as
// Envoy's route matcher reads it; "" for a key without '='.
std::optional<std::string_view> find_query_param(std::string_view path, std::string_view name) {
  size_t q = path.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = path.substr(q + 1);
  if (size_t hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key == name) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

const char* verdict_note(StringVerdict v) {
  switch (v) {
    case StringVerdict::kTooLong: return " (subject too long for regex matching)";
    case StringVerdict::kBadRegex: return " (regex does not compile)";
    default: return "";
  }
}

// Request-time conditions of one match block. On failure `why` (when given)
// names the first condition that failed; without it nothing is allocated.
bool http_match_matches(const CompiledHttpMatch& m, const HttpRequest& req, std::string* why) {
  if (!m.source) return true;
  // `describe` runs only when the caller wants the explanation.
  auto fail = [&](auto&& describe, StringVerdict v) {
    if (why) *why = describe() + verdict_note(v);
    return false;
  };
  if (m.uri) {
    // Envoy: prefix against the whole :path, exact and regex against the
    // path without its query string; ignoreUriCase does not apply to regex.
    std::string_view subject = m.uri->kind == MatchKind::kPrefix ? req.path : path_only(req.path);
    StringVerdict v = match_string(*m.uri, subject, m.ignore_uri_case && m.uri->kind != MatchKind::kRegex);
    if (v != StringVerdict::kMatch) {
      return fail([&] { return "uri " + m.uri->describe() + " does not match"; }, v);
    }
  }
  std::string joined;  // only for repeated headers
  auto check_pseudo = [&](const std::optional<CompiledString>& cond, std::string_view value, const char* what) {
    if (!cond) return true;
    StringVerdict v = match_string(*cond, value, false);
    if (v == StringVerdict::kMatch) return true;
    return fail([&] { return std::string(what) + " " + cond->describe() + " does not match"; }, v);
  };
  if (!check_pseudo(m.scheme, req.scheme, "scheme")) return false;
  if (!check_pseudo(m.method, req.method, "method")) return false;
  if (!check_pseudo(m.authority, req.authority.empty() ? req.host : req.authority, "authority")) return false;
  for (const auto& h : m.headers) {
    auto value = find_header(req, h.name, joined);
    if (!value) return fail([&] { return "header " + h.name + " is absent"; }, StringVerdict::kNoMatch);
    StringVerdict v = match_string(h.match, *value, false);
    if (v != StringVerdict::kMatch) {
      return fail([&] { return "header " + h.name + " " + h.match.describe() + " does not match"; }, v);
    }
  }
  for (const auto& h : m.without_headers) {
    // Envoy's invert_match: an absent header satisfies withoutHeaders.
    auto value = find_header(req, h.name, joined);
    if (value && match_string(h.match, *value, false) == StringVerdict::kMatch) {
      return fail([&] { return "withoutHeaders " + h.name + " " + h.match.describe() + " matches"; },
                  StringVerdict::kNoMatch);
    }
  }
  for (const auto& q : m.query_params) {
    auto value = find_query_param(req.path, q.name);
    if (!value) return fail([&] { return "query parameter " + q.name + " is absent"; }, StringVerdict::kNoMatch);
    StringVerdict v = match_string(q.match, *value, false);
    if (v != StringVerdict::kMatch) {
      return fail([&] { return "query parameter " + q.name + " " + q.match.describe() + " does not match"; }, v);
    }
  }
  return true;
}

bool l4_match_matches(const CompiledL4Match& m, std::string_view sni, bool tls, const decision::IpAddress& ip,
                      std::string* why) {
  if (tls) {
    bool sni_ok = false;
    for (const auto& h : m.sni_hosts) {
      if (!sni.empty() && config::host_subset_of(sni, h)) sni_ok = true;
    }
    if (!sni_ok) {
      if (why) *why = "sniHosts [" + join(m.sni_hosts) + "] do not match \"" + std::string(sni) + "\"";
      return false;
    }
  }
  if (!m.subnets.empty() || !m.bad_subnets.empty()) {
    const decision::IpAddress unmapped = ip.unmapped();
    bool in = false;
    for (const auto& s : m.subnets) {
      if (s.family() == unmapped.family() && s.contains(unmapped)) in = true;
    }
    if (!in) {
      if (why) {
        *why = "destination " + unmapped.str() + " is not in destinationSubnets";
        if (!m.bad_subnets.empty()) *why += " (unparsable: " + join(m.bad_subnets) + ")";
      }
      return false;
    }
  }
  return true;
}

// Weighted choice: `pick % total` walks the cumulative weights, as Envoy's
// weighted_clusters do with its random value.
const CompiledDestination* choose_destination(const std::vector<CompiledDestination>& dests, uint64_t total,
                                              uint64_t pick) {
  if (dests.empty()) return nullptr;
  if (total == 0) return &dests.front();
  uint64_t r = pick % total;
  uint64_t cumulative = 0;
  for (const auto& d : dests) {
    cumulative += static_cast<uint64_t>(d.weight);
    if (r < cumulative) return &d;
  }
  return &dests.back();
}

RouteTarget make_target(const CompiledDestination& d, uint32_t request_port) {
  RouteTarget t;
  t.host = d.host;
  t.subset = d.subset;
  t.port = d.port_source == RouteTarget::PortSource::kRequest ? request_port : d.port;
  t.port_source = d.port_source;
  return t;
}

void append_target(ReasonText& r, const RouteTarget& t) {
  r.append(t.host);
  if (!t.subset.empty()) r.append(" subset ").append(t.subset);
  r.appendf(" port %u", t.port);
  if (t.port_source == RouteTarget::PortSource::kRequest) r.append(" (request port)");
  if (t.port_source == RouteTarget::PortSource::kServiceSinglePort) r.append(" (the service's only port)");
}

void append_weight(ReasonText& r, const CompiledDestination& d, size_t count, uint64_t total) {
  if (count > 1) {
    r.appendf(", destination %zu of %zu (weight %d of %llu)", d.index, count, d.weight,
              static_cast<unsigned long long>(total));
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Public API

const char* to_string(RouteOutcome o) {
  switch (o) {
    case RouteOutcome::kNoVirtualService: return "no_virtual_service";
    case RouteOutcome::kRoute: return "route";
    case RouteOutcome::kRedirect: return "redirect";
    case RouteOutcome::kDirectResponse: return "direct_response";
    case RouteOutcome::kNoRouteMatched: return "no_route_matched";
  }
  return "?";
}

const char* to_string(RouteTarget::PortSource s) {
  switch (s) {
    case RouteTarget::PortSource::kDestination: return "destination";
    case RouteTarget::PortSource::kServiceSinglePort: return "service_single_port";
    case RouteTarget::PortSource::kRequest: return "request";
  }
  return "?";
}

std::string RouteTarget::cluster_name() const {
  std::string out = "outbound|";
  out += std::to_string(port);
  out += "|";
  out.append(subset);
  out += "|";
  out.append(host);
  return out;
}

RouteScope RouteScope::sidecar() {
  RouteScope s;
  s.key_ = std::string(kMesh);
  return s;
}

RouteScope RouteScope::gateway(std::string name, std::string ns) {
  RouteScope s;
  s.key_ = ns + "/" + name;
  s.name_ = std::move(name);
  s.namespace_ = std::move(ns);
  return s;
}

RouteScope& RouteScope::with_source(const config::Labels& labels, std::string_view ns) {
  source_labels_ = &labels;
  source_namespace_ = ns;
  return *this;
}

std::string RouteScope::describe() const {
  return is_sidecar() ? "sidecar (gateway mesh)" : "gateway " + key_;
}

std::string HttpRouteDecision::rewritten_path(std::string_view request_path) const {
  if (uri_regex != nullptr) {
    // Envoy's regex_rewrite, RE2::GlobalReplace over the path (the query
    // string kept): every match replaced, an empty match right where the
    // previous one ended skipped over one character.
    const std::string_view path = path_only(request_path);
    if (path.size() > RouteTable::kMaxRegexSubjectBytes) return std::string(request_path);
    using It = std::string_view::const_iterator;
    const It begin = path.begin(), end = path.end();
    std::string out;
    It p = begin;
    It lastend = end;
    bool matched = false;
    try {
      std::match_results<It> m;
      while (p <= end) {
        const auto flags = p == begin ? std::regex_constants::match_default : std::regex_constants::match_prev_avail;
        if (!std::regex_search(p, end, m, *uri_regex, flags)) break;
        out.append(p, m[0].first);
        if (m[0].first == lastend && m[0].length() == 0) {
          if (p == end) break;
          out += *p;
          ++p;
          continue;
        }
        append_rewrite(out, uri_regex_rewrite, m);
        matched = true;
        p = m[0].second;
        lastend = p;
      }
    } catch (const std::regex_error&) {
      return std::string(request_path);  // error_complexity: unchanged rather than an exception in the loop
    }
    if (!matched) return std::string(request_path);
    out.append(p, end);
    out.append(request_path.substr(path.size()));
    return out;
  }
  if (uri_prefix_rewrite.empty()) return std::string(request_path);
  std::string out(request_path);
  out.replace(0, std::min(rewrite_replaces, out.size()), uri_prefix_rewrite);
  return out;
}

std::string build_redirect_location(const config::HTTPRedirect& redirect, const HttpRequest& request) {
  const std::string_view scheme = redirect.scheme.empty() ? request.scheme : std::string_view(redirect.scheme);
  // Istio leaves out a port that is the scheme's default.
  uint32_t port = redirect.port;
  if ((port == 80 && scheme == "http") || (port == 443 && scheme == "https")) port = 0;

  std::string host;
  if (!redirect.authority.empty()) {
    host = redirect.authority;  // verbatim: any request port is dropped
  } else {
    std::string_view authority = request.authority.empty() ? request.host : request.authority;
    size_t colon = std::string_view::npos;
    if (!authority.empty() && authority.front() == '[') {
      size_t close = authority.rfind("]:");
      if (close != std::string_view::npos) colon = close + 1;
    } else {
      colon = authority.rfind(':');
    }
    if (colon != std::string_view::npos) {
      std::string_view request_port = authority.substr(colon);
      bool remove = port != 0;
      // Envoy compares with x-forwarded-proto, which it sets to the request's
      // scheme: a scheme change drops the old scheme's default port.
      if (scheme != request.scheme) {
        remove |= request.scheme == "https" && request_port == ":443";
        remove |= request.scheme == "http" && request_port == ":80";
      }
      if (remove) authority = authority.substr(0, colon);
    }
    host = std::string(authority);
  }

  std::string path;
  if (!redirect.uri.empty()) {
    path = redirect.uri;
    if (redirect.uri.find('?') == std::string::npos) {
      size_t q = request.path.find('?');
      if (q != std::string_view::npos) path.append(request.path.substr(q));
    }
  } else {
    path = std::string(request.path);
  }
  if (path.empty() || path.front() != '/') path.insert(path.begin(), '/');

  std::string out;
  out.reserve(scheme.size() + 3 + host.size() + 6 + path.size());
  out.append(scheme).append("://").append(host);
  if (port != 0) out.append(":").append(std::to_string(port));
  out.append(path);
  return out;
}

RouteTable::RouteTable(const config::ConfigSet& config) : compiled_(std::make_unique<Compiled>()) {
  Compiled& c = *compiled_;
  for (const auto& se : config.service_entries) {
    for (const auto& h : se.hosts) c.services.emplace(to_lower(config::qualify_host(h, se.meta.namespace_)), &se);
  }
  c.vs.reserve(config.virtual_services.size());
  for (const auto& vs : config.virtual_services) compile_virtual_service(c, vs);
  build_sidecar_index(c);
  build_gateway_indexes(c, config);
}

RouteTable::~RouteTable() = default;

namespace {

const ScopeIndex* find_scope(const Compiled& c, const RouteScope& scope) {
  auto it = c.scopes.find(scope.key());
  return it == c.scopes.end() ? nullptr : &it->second;
}

void no_scope_reason(ReasonText& r, const RouteScope& scope) {
  r.appendf("Gateway %s is not in the configuration: no VirtualService binds to it", scope.key().c_str());
}

}  // namespace

HttpRouteDecision RouteTable::route_http(const RouteScope& scope, const HttpRequest& req, RouteTrace* trace,
                                         bool explain) const {
  const Compiled& c = *compiled_;
  HttpRouteDecision d;
  if (!explain && !trace) d.reason.off();
  const ScopeIndex* index = find_scope(c, scope);
  if (!index) {
    no_scope_reason(d.reason, scope);
    return d;
  }
  const Domain* domain = select_domain(c, *index, req.host, Protocol::kHttp, scope, req.port, trace);
  if (!domain) {
    if (d.reason.on()) {
      d.reason.append("no VirtualService bound to ").append(scope.describe()).append(" has http routes for host \"");
      d.reason.append(req.host).appendf("\" on port %u: the host's default route applies", req.port);
    }
    if (trace) trace->push_back(std::string(d.reason.view()));
    return d;
  }
  d.matched_domain = domain->name;

  // Pass 0: every non-catch-all route, VirtualService by VirtualService, each
  // one's list ending at its first applicable catch-all; pass 1: those
  // catch-alls (Istio's CombineVHostRoutes; with one VirtualService this is
  // plain first-match order).
  const CompiledVirtualService* hit_vs = nullptr;
  const CompiledHttpRule* hit_rule = nullptr;
  const CompiledHttpMatch* hit_match = nullptr;
  size_t hit_rule_index = 0, hit_match_index = 0;
  const CompiledVirtualService* first_vs = nullptr;
  for (int pass = 0; pass < 2 && !hit_rule; ++pass) {
    for_each_domain_vs(c, *domain, Protocol::kHttp, scope, req.port, [&](uint32_t vi) {
      const CompiledVirtualService& vs = c.vs[vi];
      if (!first_vs) first_vs = &vs;
      for (size_t ri = 0; ri < vs.http.size(); ++ri) {
        const CompiledHttpRule& rule = vs.http[ri];
        for (size_t mi = 0; mi < rule.matches.size(); ++mi) {
          const CompiledHttpMatch& m = rule.matches[mi];
          std::string why;
          if (!http_match_applies(m, scope, req.port, trace ? &why : nullptr)) {
            if (trace && pass == 0) {
              trace->push_back("VirtualService " + vs.key + " http[" + std::to_string(ri) + "].match[" +
                               std::to_string(mi) + "] does not apply: " + why);
            }
            continue;
          }
          // This VirtualService's routes end at its first applicable
          // catch-all (Istio stops translating there), which pass 1 tries.
          if (m.catch_all && pass == 0) return true;
          if (!m.catch_all && pass == 1) continue;
          if (http_match_matches(m, req, trace ? &why : nullptr)) {
            hit_vs = &vs;
            hit_rule = &rule;
            hit_match = &m;
            hit_rule_index = ri;
            hit_match_index = mi;
            return false;
          }
          if (trace) {
            trace->push_back("VirtualService " + vs.key + " http[" + std::to_string(ri) + "]" +
                             (m.source ? ".match[" + std::to_string(mi) + "]" : "") + ": " + why);
          }
          if (m.catch_all) return true;  // pass 1: nothing after it exists
        }
      }
      return true;
    });
  }

  if (!hit_rule) {
    d.outcome = RouteOutcome::kNoRouteMatched;
    d.virtual_service = first_vs ? first_vs->source : nullptr;
    d.status = 404;
    d.response_flags = "NR";
    d.reason.append("VirtualService ").append(first_vs ? std::string_view(first_vs->key) : "?");
    d.reason.append(" applies to host \"").append(req.host).append("\" (domain ").append(domain->name);
    d.reason.append(") but none of its http routes matches: 404 NR");
    if (trace) trace->push_back(std::string(d.reason.view()));
    return d;
  }

  const config::HTTPRoute& rule = *hit_rule->source;
  d.virtual_service = hit_vs->source;
  d.rule_index = hit_rule_index;
  d.match_index = hit_match->source ? hit_match_index : HttpRouteDecision::kNone;
  d.route_name = hit_match->route_name;
  d.timeout = rule.timeout;
  d.route_headers = rule.headers ? &*rule.headers : nullptr;
  d.fault = rule.fault ? &*rule.fault : nullptr;

  d.reason.append("VirtualService ").append(hit_vs->key).appendf(" http[%zu]", hit_rule_index);
  if (hit_match->source) d.reason.appendf(".match[%zu]", hit_match_index);
  if (!d.route_name.empty()) d.reason.append(" (route \"").append(d.route_name).append("\")");
  d.reason.append(" matched host \"").append(req.host).append("\"");
  if (domain->name != req.host) d.reason.append(" via ").append(domain->name);
  if (d.reason.on()) d.reason.append(" for ").append(scope.describe()).append(": ");

  if (rule.redirect) {
    d.outcome = RouteOutcome::kRedirect;
    d.status = rule.redirect->redirect_code == 0 ? 301 : rule.redirect->redirect_code;
    d.location = build_redirect_location(*rule.redirect, req);
    d.reason.appendf("redirect %u to ", d.status).append(d.location);
  } else if (rule.direct_response) {
    d.outcome = RouteOutcome::kDirectResponse;
    d.status = rule.direct_response->status;
    if (rule.direct_response->body) d.body = std::string_view(*rule.direct_response->body);
    d.reason.appendf("direct response %u", d.status);
  } else {
    const CompiledDestination* dest = choose_destination(hit_rule->destinations, hit_rule->total_weight, req.pick);
    if (!dest) {
      // Validation rejects such a rule; answer as Envoy does for a route
      // whose cluster it cannot find.
      d.outcome = RouteOutcome::kDirectResponse;
      d.status = 503;
      d.response_flags = "NC";
      d.reason.append("the rule has no destination: 503 NC");
    } else {
      d.outcome = RouteOutcome::kRoute;
      d.target = make_target(*dest, req.port);
      for (const auto& m : hit_rule->mirrors) d.mirrors.push_back({make_target(m.destination, req.port), m.percentage});
      d.destination = &rule.route[dest->index];
      d.destination_index = dest->index;
      d.destination_headers = d.destination->headers ? &*d.destination->headers : nullptr;
      d.retries = hit_rule->retries ? &*hit_rule->retries : nullptr;
      d.authority_rewrite = hit_rule->authority_rewrite;
      if (d.authority_rewrite.empty()) d.authority_rewrite = authority_from_headers(d.destination->headers);
      if (hit_rule->uri_regex) {
        d.uri_regex = hit_rule->uri_regex.get();
        d.uri_regex_rewrite = hit_rule->uri_regex_rewrite;
      } else if (!hit_rule->uri_regex_error.empty()) {
        d.reason.append("uriRegexRewrite not applied (").append(hit_rule->uri_regex_error).append("); ");
      }
      if (rule.rewrite && !rule.rewrite->uri.empty()) {
        d.uri_prefix_rewrite = rule.rewrite->uri;
        // What Envoy's prefix_rewrite replaces: the matched prefix; for exact
        // and regex matches the whole path; a rule without uri match is
        // Istio's prefix "/".
        if (hit_match->uri && hit_match->uri->kind == MatchKind::kPrefix) {
          d.rewrite_replaces = hit_match->uri->value.size();
        } else if (hit_match->uri) {
          d.rewrite_replaces = path_only(req.path).size();
        } else {
          d.rewrite_replaces = 1;
        }
      }
      d.reason.append("route to ");
      append_target(d.reason, d.target);
      append_weight(d.reason, *dest, hit_rule->destinations.size(), hit_rule->total_weight);
      if (hit_rule->total_weight == 0 && hit_rule->destinations.size() > 1) {
        d.reason.append(" (every weight is 0: first destination)");
      }
    }
  }
  if (trace) trace->push_back(std::string(d.reason.view()));
  return d;
}

namespace {

L4RouteDecision route_l4(const Compiled& c, Protocol p, const RouteScope& scope, std::string_view host,
                         uint32_t port, const decision::IpAddress& ip, uint64_t pick, RouteTrace* trace) {
  L4RouteDecision d;
  const ScopeIndex* index = find_scope(c, scope);
  if (!index) {
    no_scope_reason(d.reason, scope);
    return d;
  }
  const bool tls = p == Protocol::kTls;
  const Domain* domain = nullptr;
  if (!host.empty()) {
    domain = select_domain(c, *index, host, p, scope, port, trace);
    if (!domain) {
      d.reason.append("no VirtualService bound to ").append(scope.describe()).appendf(" has %s routes for ", protocol_name(p));
      d.reason.append(tls ? "SNI \"" : "host \"").append(host).appendf("\" on port %u", port);
      if (trace) trace->push_back(std::string(d.reason.view()));
      return d;
    }
    d.matched_domain = domain->name;
  } else if (tls) {
    d.reason.append("the TLS connection carries no SNI: no VirtualService applies");
    return d;
  }

  const CompiledVirtualService* first_vs = nullptr;
  bool found = false;
  auto visit = [&](uint32_t vi) {
    const CompiledVirtualService& vs = c.vs[vi];
    if (!first_vs) first_vs = &vs;
    const auto& rules = tls ? vs.tls : vs.tcp;
    for (size_t ri = 0; ri < rules.size(); ++ri) {
      const CompiledL4Rule& rule = rules[ri];
      const size_t blocks = rule.matches.empty() ? 1 : rule.matches.size();
      for (size_t mi = 0; mi < blocks; ++mi) {
        const CompiledL4Match* m = rule.matches.empty() ? nullptr : &rule.matches[mi];
        std::string why;
        if (m && (!l4_match_applies(*m, scope, port, trace ? &why : nullptr) ||
                  !l4_match_matches(*m, host, tls, ip, trace ? &why : nullptr))) {
          if (trace) {
            trace->push_back("VirtualService " + vs.key + " " + protocol_name(p) + "[" + std::to_string(ri) +
                             "].match[" + std::to_string(mi) + "]: " + why);
          }
          continue;
        }
        const CompiledDestination* dest = choose_destination(rule.destinations, rule.total_weight, pick);
        d.virtual_service = vs.source;
        d.rule_index = ri;
        d.match_index = m ? mi : L4RouteDecision::kNone;
        d.reason.append("VirtualService ").append(vs.key).appendf(" %s[%zu]", protocol_name(p), ri);
        if (m) d.reason.appendf(".match[%zu]", mi);
        if (tls) d.reason.append(" matched SNI \"").append(host).append("\"");
        d.reason.append(" for ").append(scope.describe()).append(": ");
        if (!dest) {
          d.outcome = RouteOutcome::kNoRouteMatched;
          d.reason.append("the rule has no destination");
        } else {
          d.outcome = RouteOutcome::kRoute;
          d.target = make_target(*dest, port);
          d.destination_index = dest->index;
          d.reason.append("route to ");
          append_target(d.reason, d.target);
          append_weight(d.reason, *dest, rule.destinations.size(), rule.total_weight);
        }
        found = true;
        return false;
      }
    }
    return true;
  };

  if (domain) {
    for_each_domain_vs(c, *domain, p, scope, port, visit);
  } else {
    // Host-less TCP: every VirtualService bound here on this port, load order.
    for (const auto& b : index->bound) {
      if (!binding_eligible(c, b, p, scope, port)) continue;
      if (!visit(b.vs)) break;
    }
  }
  if (!found) {
    if (!first_vs) {
      d.reason.append("no VirtualService bound to ").append(scope.describe());
      d.reason.appendf(" has %s routes on port %u", protocol_name(p), port);
    } else {
      d.outcome = RouteOutcome::kNoRouteMatched;
      d.virtual_service = first_vs->source;
      d.reason.append("VirtualService ").append(first_vs->key).appendf(" has %s routes for ", protocol_name(p));
      d.reason.append(scope.describe()).appendf(" on port %u but none matches", port);
      if (tls) d.reason.append(" SNI \"").append(host).append("\"");
      d.reason.append(" and destination ").append(ip.unmapped().str());
    }
  }
  if (trace) trace->push_back(std::string(d.reason.view()));
  return d;
}

}  // namespace

L4RouteDecision RouteTable::route_tls(const RouteScope& scope, std::string_view sni, uint32_t port,
                                      const decision::IpAddress& destination, uint64_t pick, RouteTrace* trace) const {
  return route_l4(*compiled_, Protocol::kTls, scope, sni, port, destination, pick, trace);
}

L4RouteDecision RouteTable::route_tcp(const RouteScope& scope, uint32_t port, const decision::IpAddress& destination,
                                      uint64_t pick, std::string_view host, RouteTrace* trace) const {
  return route_l4(*compiled_, Protocol::kTcp, scope, host, port, destination, pick, trace);
}

bool header_name_equals(std::string_view a, std::string_view b) { return iequals(a, b); }

std::optional<std::string_view> request_header(const HttpRequest& req, std::string_view name, std::string& joined) {
  return find_header(req, name, joined);
}

std::optional<std::string_view> query_parameter(std::string_view path, std::string_view name) {
  return find_query_param(path, name);
}

}  // namespace sluice::policy
