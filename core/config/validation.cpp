// Per-resource validation. The rules and their texts are those of Istio's
// admission webhook (istio/istio pkg/config/validation: validation.go,
// virtualservice.go, agent/validation.go), so that a resource Istio rejects is
// rejected here with the message users already know, located at the offending
// YAML node. Where Istio only warns, so do we (Severity::kWarning). Checks that
// are ours and not Istio's say so next to them.
#include "core/config/validation.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/config/host_match.h"
#include "core/config/message_format.h"
#include "core/config/re2_syntax.h"

namespace sluice::config {

namespace {

using Error = std::optional<std::string>;

// ---------------------------------------------------------------------------
// Reporting

// Emits diagnostics for one resource, each located at the YAML node of its
// field path ("spec.http[0].route") and carrying that path.
class Sink {
 public:
  Sink(const ObjectMeta& meta, const char* kind, Diagnostics& out)
      : meta_(meta), kind_(meta.kind.empty() ? kind : meta.kind), out_(out) {}

  void error(const std::string& path, std::string message) { add(Severity::kError, path, std::move(message)); }
  void error(const std::string& path, const char* message) { add(Severity::kError, path, message); }
  void warning(const std::string& path, std::string message) { add(Severity::kWarning, path, std::move(message)); }
  void error(const std::string& path, const Error& e) {
    if (e) error(path, *e);
  }

  const ObjectMeta& meta() const { return meta_; }

 private:
  void add(Severity severity, const std::string& path, std::string message) {
    Diagnostic d;
    d.severity = severity;
    d.message = std::move(message);
    d.location = meta_.location(path);
    d.kind = kind_;
    d.namespace_ = meta_.namespace_;
    d.name = meta_.name;
    d.field = path;
    out_.add(std::move(d));
  }

  const ObjectMeta& meta_;
  std::string kind_;
  Diagnostics& out_;
};

std::string at(const std::string& path, size_t index) { return path + "[" + std::to_string(index) + "]"; }
std::string dot(const std::string& path, std::string_view key) { return path + "." + std::string(key); }

// ---------------------------------------------------------------------------
// Names, addresses and numbers (istio pkg/config/labels, agent/validation.go)

bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// [a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?, at most 63 characters. Istio's
// pattern admits upper case; Kubernetes' does not.
bool is_dns1123_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!is_alnum(s.front()) || !is_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

// A DNS label, "*", or a label with a leading "*" / "*-".
bool is_wildcard_dns1123_label(std::string_view s) {
  if (s.size() > 63) return false;
  if (s == "*") return true;
  if (s.substr(0, 2) == "*-") return is_dns1123_label(s.substr(2));
  if (s.substr(0, 1) == "*") return is_dns1123_label(s.substr(1));
  return is_dns1123_label(s);
}

Error check_dns1123_preconditions(std::string_view name) {
  if (name.size() > 255) return "domain name " + go_quote(name) + " too long (max 255)";
  if (name.empty()) return std::string("empty domain name not allowed");
  return std::nullopt;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Error validate_dns1123_labels(std::string_view domain) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t dotpos = domain.find('.', start);
    parts.push_back(domain.substr(start, dotpos == std::string_view::npos ? std::string_view::npos : dotpos - start));
    if (dotpos == std::string_view::npos) break;
    start = dotpos + 1;
  }
  // Go's strconv.Atoi also takes a sign; no label can start with one anyway.
  if (all_digits(parts.back())) {
    return "domain name " + go_quote(domain) + " invalid (top level domain " + go_quote(parts.back()) +
           " cannot be all-numeric)";
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    // A trailing dot ("istio.io.") is allowed.
    if (i == parts.size() - 1 && parts[i].empty()) return std::nullopt;
    if (!is_dns1123_label(parts[i])) {
      return "domain name " + go_quote(domain) + " invalid (label " + go_quote(parts[i]) + " invalid)";
    }
  }
  return std::nullopt;
}

Error validate_fqdn(std::string_view fqdn) {
  if (auto e = check_dns1123_preconditions(fqdn)) return e;
  return validate_dns1123_labels(fqdn);
}

// A host that may carry a wildcard in its first label only.
Error validate_wildcard_domain(std::string_view domain) {
  if (auto e = check_dns1123_preconditions(domain)) return e;
  size_t dotpos = domain.find('.');
  std::string_view first = domain.substr(0, dotpos);
  if (!is_wildcard_dns1123_label(first)) {
    return "domain name " + go_quote(domain) + " invalid (label " + go_quote(first) + " invalid)";
  }
  if (dotpos != std::string_view::npos) return validate_dns1123_labels(domain.substr(dotpos + 1));
  return std::nullopt;
}

// The same for hosts of a VirtualService bound to gateways only, where the
// SNI of Istio's auto-generated clusters ("outbound_.80_._.host") is allowed.
Error validate_wildcard_domain_for_gateway_vs(bool sni, std::string_view domain) {
  if (auto e = check_dns1123_preconditions(domain)) return e;
  size_t dotpos = domain.find('.');
  std::string_view first = domain.substr(0, dotpos);
  if (sni && first == "outbound_") {
    // Istio: regexp.MatchString("outbound_.([0-8].*).*", domain).
    for (size_t p = domain.find("outbound_"); p != std::string_view::npos; p = domain.find("outbound_", p + 1)) {
      if (p + 10 < domain.size() && domain[p + 10] >= '0' && domain[p + 10] <= '8') return std::nullopt;
    }
    return "domain name " + go_quote(domain) + " invalid (label " + go_quote(first) + " invalid)";
  }
  if (!is_wildcard_dns1123_label(first)) {
    return "domain name " + go_quote(domain) + " invalid (label " + go_quote(first) + " invalid)";
  }
  if (dotpos != std::string_view::npos) return validate_dns1123_labels(domain.substr(dotpos + 1));
  return std::nullopt;
}

Error validate_partial_wildcard(std::string_view host) {
  if (host.find('*') != std::string_view::npos && host.size() != 1 && host.substr(0, 2) != "*.") {
    return "partial wildcard " + go_quote(host) + " not allowed";
  }
  return std::nullopt;
}

bool is_ip(std::string_view s) {
  std::string str(s);
  unsigned char buf[16];
  return inet_pton(AF_INET, str.c_str(), buf) == 1 || inet_pton(AF_INET6, str.c_str(), buf) == 1;
}

Error validate_ip_address(std::string_view addr) {
  if (!is_ip(addr)) return std::string(addr) + " is not a valid IP";
  return std::nullopt;
}

// "a.b.c.d/n" or "v6/n" with n within the address size.
bool parse_prefix(std::string_view s) {
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) return false;
  std::string addr(s.substr(0, slash));
  std::string_view bits = s.substr(slash + 1);
  if (!all_digits(bits) || (bits.size() > 1 && bits[0] == '0') || bits.size() > 3) return false;
  int n = 0;
  std::from_chars(bits.data(), bits.data() + bits.size(), n);
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return n <= 32;
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return n <= 128;
  return false;
}

// "CIDR notation" or "dot-decimal notation".
Error validate_ip_subnet(std::string_view subnet) {
  if (std::count(subnet.begin(), subnet.end(), '/') == 1) {
    if (!parse_prefix(subnet)) return std::string(subnet) + " is not a valid CIDR block";
    return std::nullopt;
  }
  return validate_ip_address(subnet);
}

Error validate_port(int64_t port) {
  if (port >= 1 && port <= 65535) return std::nullopt;
  return "port number " + std::to_string(port) + " must be in the range 1..65535";
}

Error validate_port_name(std::string_view name) {
  if (!is_dns1123_label(name)) return "invalid port name: " + std::string(name);
  return std::nullopt;
}

Error validate_duration(const Duration& d) {
  if (d < std::chrono::milliseconds(1)) return std::string("duration must be greater than 1ms");
  return std::nullopt;
}

Error validate_percent(int64_t v) {
  if (v < 0 || v > 100) return "percentage " + std::to_string(v) + " is not in range 0..100";
  return std::nullopt;
}

Error validate_percentage(const std::optional<Percent>& p) {
  if (!p) return std::nullopt;
  double v = p->value;
  if (v < 0.0 || v > 100.0 || (v > 0.0 && v < 0.0001)) {
    return "percentage " + go_float(v) + " is neither 0.0, nor in range [0.0001, 100.0]";
  }
  return std::nullopt;
}

Error validate_unix_address(std::string_view addr) {
  if (addr.empty()) return std::string("unix address must not be empty");
  if (addr.front() == '@') return std::nullopt;  // abstract socket
  if (addr.front() != '/' || addr.back() == '/') return std::string(addr) + " is not an absolute path to a file";
  return std::nullopt;
}

// Kubernetes qualified name: (?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]
bool is_qualified_name(std::string_view s) {
  if (s.empty() || !is_alnum(s.front()) || !is_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '.'; });
}

void validate_labels(Sink& s, const std::string& path, const Labels& labels) {
  for (const auto& [k, v] : labels) {
    std::string_view key = k;
    std::string_view prefix, name = key;
    size_t slash = key.find('/');
    bool ok = true;
    if (slash != std::string_view::npos) {
      prefix = key.substr(0, slash);
      name = key.substr(slash + 1);
      if (name.find('/') != std::string_view::npos || prefix.empty()) ok = false;
      size_t start = 0;
      while (ok) {
        size_t d = prefix.find('.', start);
        if (!is_dns1123_label(prefix.substr(start, d == std::string_view::npos ? std::string_view::npos : d - start))) ok = false;
        if (d == std::string_view::npos) break;
        start = d + 1;
      }
    }
    if (!ok || !is_qualified_name(name)) {
      s.error(dot(path, k), "invalid tag key: " + go_quote(k));
    } else if (prefix.size() > 253) {
      s.error(dot(path, k), "invalid tag key: " + go_quote(k) + " (DNS prefix is too long)");
    } else if (name.size() > 63) {
      s.error(dot(path, k), "invalid tag key: " + go_quote(k) + " (name is too long)");
    }
    if (!v.empty() && !is_qualified_name(v)) s.error(dot(path, k), "invalid tag value: " + go_quote(v));
  }
}

// exportTo: ".", "*", a namespace, and for ServiceEntries "~".
void validate_export_to(Sink& s, const std::string& path, const std::vector<std::string>& export_to,
                        bool is_service_entry, bool is_dr_with_selector) {
  if (export_to.empty()) return;
  const std::string& ns = s.meta().namespace_;
  std::set<std::string> seen;
  for (size_t i = 0; i < export_to.size(); ++i) {
    const std::string& e = export_to[i];
    std::string key = e == "." ? ns : e;
    if (seen.count(key)) {
      if (key != e) {
        s.error(at(path, i), "duplicate entries in exportTo: . and current namespace " + ns);
      } else {
        s.error(at(path, i), "duplicate entries in exportTo for entry " + e);
      }
      continue;
    }
    if (is_service_entry && e == "~") {
      seen.insert(key);
    } else if (key == "~") {
      s.error(at(path, i), "exportTo ~ (none) is not allowed for Istio configuration objects");
    } else if (key != "*" && key != "." && !is_dns1123_label(key)) {
      s.error(at(path, i), "only .,*,~, or a valid DNS 1123 label is allowed as exportTo entry");
    } else {
      seen.insert(key);
    }
  }
  if (is_dr_with_selector && !seen.empty()) {
    if (seen.count(ns)) {
      if (seen.size() > 1) s.error(path, "destination rule with workload selector cannot have multiple entries in exportTo");
    } else {
      s.error(path, "destination rule with workload selector cannot have exportTo beyond current namespace");
    }
  }
  if (seen.count("*") && export_to.size() > 1) {
    s.error(path, "cannot have both public (*) and non-public exportTo values for a resource");
  }
  if (seen.count("~") && export_to.size() > 1) {
    s.error(path, "cannot export service entry to no one (~) and someone");
  }
}

// VirtualService.gateways and match gateways: "name", "ns/name", or the
// legacy "name.namespace" (still accepted, with Istio's warning).
void validate_gateway_names(Sink& s, const std::string& path, const std::vector<std::string>& names) {
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& g = names[i];
    std::string p = at(path, i);
    size_t slash = g.find('/');
    if (slash == std::string::npos) {
      if (g.find('.') != std::string::npos) {
        size_t d = g.find('.');
        size_t d2 = g.find('.', d + 1);
        std::string recommended = g.substr(d + 1, d2 == std::string::npos ? std::string::npos : d2 - d - 1) + "/" +
                                  g.substr(0, d);
        s.warning(p, "using legacy gatewayName format " + go_quote(g) + "; prefer the <namespace>/<name> format: " +
                         go_quote(recommended));
      }
      s.error(p, validate_fqdn(g));
      continue;
    }
    std::string ns = g.substr(0, slash), name = g.substr(slash + 1);
    if (ns.empty() || name.empty()) s.error(p, "config namespace and gateway name cannot be empty");
    if (!is_dns1123_label(ns)) s.error(p, "invalid value for namespace: " + go_quote(ns));
    if (!is_dns1123_label(name)) s.error(p, "invalid value for gateway name: " + go_quote(name));
  }
}

// ---------------------------------------------------------------------------
// Protocols (istio pkg/config/protocol)

enum class Protocol { kTCP, kUDP, kGRPC, kGRPCWeb, kHTTP, kHTTPProxy, kHTTP2, kHTTPS, kTLS, kMongo, kRedis, kMySQL, kUnsupported };

Protocol parse_protocol(std::string_view s) {
  std::string l(s);
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::map<std::string, Protocol> kNames = {
      {"tcp", Protocol::kTCP},     {"udp", Protocol::kUDP},     {"grpc", Protocol::kGRPC},
      {"grpc-web", Protocol::kGRPCWeb}, {"http", Protocol::kHTTP}, {"http_proxy", Protocol::kHTTPProxy},
      {"http2", Protocol::kHTTP2}, {"https", Protocol::kHTTPS}, {"tls", Protocol::kTLS},
      {"mongo", Protocol::kMongo}, {"redis", Protocol::kRedis}, {"mysql", Protocol::kMySQL}};
  auto it = kNames.find(l);
  return it == kNames.end() ? Protocol::kUnsupported : it->second;
}

bool is_http(Protocol p) {
  return p == Protocol::kHTTP || p == Protocol::kHTTP2 || p == Protocol::kHTTPProxy || p == Protocol::kGRPC ||
         p == Protocol::kGRPCWeb;
}
bool is_tls(Protocol p) { return p == Protocol::kHTTPS || p == Protocol::kTLS; }
bool is_tcp(Protocol p) {
  return p == Protocol::kTCP || p == Protocol::kHTTPS || p == Protocol::kTLS || p == Protocol::kMongo ||
         p == Protocol::kRedis || p == Protocol::kMySQL;
}

// ---------------------------------------------------------------------------
// HTTP headers

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_authority_header(std::string_view h) { return iequals(h, ":authority") || iequals(h, "host"); }
bool is_internal_header(std::string_view h) { return (!h.empty() && h.front() == ':') || iequals(h, "host"); }

bool is_header_token(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) { return is_alnum(c) || c == '-' || c == '_'; });
}

// Match keys may also be JWT claims.
Error validate_header_name_or_jwt_claim(std::string_view name) {
  if (name.empty()) return std::string("header name cannot be empty");
  // "@request.auth.claims.group" or "@request.auth.claims[group][sub]".
  constexpr std::string_view kClaim = "@request.auth.claims";
  if (name.substr(0, kClaim.size()) == kClaim && name.size() > kClaim.size() + 1 &&
      (name[kClaim.size()] == '.' || name[kClaim.size()] == '[')) {
    return std::nullopt;
  }
  if (!is_header_token(name)) return "header name " + std::string(name) + " is not a valid header name";
  return std::nullopt;
}

// Names a route may add or set on the request (the authority is allowed).
Error validate_header_with_authority_op_name(std::string_view name) {
  if (name.empty()) return std::string("header name cannot be empty");
  if (is_internal_header(name) && !is_authority_header(name)) {
    return "invalid header " + go_quote(name) + ": header cannot have \":\" prefix";
  }
  return std::nullopt;
}

// Names a route may remove, or touch on the response.
Error validate_header_op_name(std::string_view name) {
  if (name.empty()) return std::string("header name cannot be empty");
  if (iequals(name, "host")) return "invalid header " + go_quote(name) + ": cannot set Host header";
  if (is_internal_header(name)) return "invalid header " + go_quote(name) + ": header cannot have \":\" prefix";
  return std::nullopt;
}

// Envoy's header value formatter grammar: literal text, "%%", "%VAR%" and
// "%VAR(args)%" (the state machine of Envoy's header_parser.cc, as Istio
// re-implements it).
Error validate_header_value_format(std::string_view v) {
  enum class St { kLiteral, kVarName, kExpectArray, kExpectString, kString, kExpectDelimOrEnd, kExpectArgsEnd, kExpectVarEnd };
  St st = St::kLiteral;
  for (size_t pos = 0; pos < v.size(); ++pos) {
    char ch = v[pos];
    bool has_next = pos + 1 < v.size();
    switch (st) {
      case St::kLiteral:
        if (ch != '%') break;
        if (!has_next) return std::string("invalid header configuration. Un-escaped %");
        if (v[pos + 1] == '%') { ++pos; break; }
        st = St::kVarName;
        break;
      case St::kVarName:
        if (ch == '%') st = St::kLiteral;
        else if (ch == '(') st = St::kExpectArray;
        break;
      case St::kExpectArray:
        if (ch == '[') st = St::kExpectString;
        else if (ch != ' ') st = St::kString;
        break;
      case St::kExpectDelimOrEnd:
        if (ch == ',') st = St::kExpectString;
        else if (ch == ']') st = St::kExpectArgsEnd;
        else if (ch != ' ') return std::string("invalid header configuration. Expecting ',', ']', or whitespace");
        break;
      case St::kExpectString:
        if (ch == '"') st = St::kString;
        else if (ch != ' ') return std::string("invalid header configuration. Expecting '\"'");
        break;
      case St::kString:
        if (ch == '\\') {
          if (!has_next) return std::string("invalid header configuration. Un-terminated backslash in JSON string");
          ++pos;
        } else if (ch == ')') {
          st = St::kExpectVarEnd;
        } else if (ch == '"') {
          st = St::kExpectDelimOrEnd;
        }
        break;
      case St::kExpectArgsEnd:
        if (ch == ')') st = St::kExpectVarEnd;
        else if (ch != ' ') return std::string("invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'");
        break;
      case St::kExpectVarEnd:
        if (ch == '%') st = St::kLiteral;
        else if (ch != ' ') return std::string("invalid header configuration. Expecting '%' or whitespace after");
        break;
    }
  }
  if (st != St::kLiteral) {
    return "invalid header configuration. Un-terminated variable expression '" + std::string(v) + "'";
  }
  return std::nullopt;
}

Error validate_header_value(std::string_view v) {
  for (unsigned char c : v) {
    if ((c <= 0x08) || (c >= 0x0a && c <= 0x1f) || c == 0x7f) {
      return "header value configuration " + std::string(v) + " is invalid";
    }
  }
  if (auto e = validate_header_value_format(v)) return "header value configuration: " + *e;
  return std::nullopt;
}

void validate_header_operations(Sink& s, const std::string& path, const std::optional<Headers>& headers) {
  if (!headers) return;
  if (const auto& req = headers->request) {
    std::string p = dot(path, "request");
    for (const auto& [name, value] : req->add) {
      s.error(dot(dot(p, "add"), name), validate_header_with_authority_op_name(name));
      s.error(dot(dot(p, "add"), name), validate_header_value(value));
    }
    for (const auto& [name, value] : req->set) {
      s.error(dot(dot(p, "set"), name), validate_header_with_authority_op_name(name));
      s.error(dot(dot(p, "set"), name), validate_header_value(value));
    }
    for (size_t i = 0; i < req->remove.size(); ++i) s.error(at(dot(p, "remove"), i), validate_header_op_name(req->remove[i]));
  }
  if (const auto& resp = headers->response) {
    std::string p = dot(path, "response");
    for (const auto& [name, value] : resp->add) {
      s.error(dot(dot(p, "add"), name), validate_header_op_name(name));
      s.error(dot(dot(p, "add"), name), validate_header_value(value));
    }
    for (const auto& [name, value] : resp->set) {
      s.error(dot(dot(p, "set"), name), validate_header_op_name(name));
      s.error(dot(dot(p, "set"), name), validate_header_value(value));
    }
    for (size_t i = 0; i < resp->remove.size(); ++i) s.error(at(dot(p, "remove"), i), validate_header_op_name(resp->remove[i]));
  }
}

// ---------------------------------------------------------------------------
// VirtualService

// Istio's validateStringRegexp: nullopt when `re` is fine.
Error string_regexp_error(const std::string& re, std::string_view where) {
  if (re.empty()) return go_quote(where) + ": regex string match should not be empty";
  // Istio approximates Envoy's RE2 program-size limit by length.
  if (re.size() > 1024) return go_quote(where) + ": regex is too large, max length allowed is 1024";
  if (auto e = re2_syntax_error(re)) {
    return go_quote(where) + ": " + *e +
           "; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)";
  }
  return std::nullopt;
}

// `path` is the StringMatch node; errors land on its exact/prefix/regex key.
void validate_string_match_regexp(Sink& s, const std::string& path, const std::optional<StringMatch>& sm,
                                  std::string_view where) {
  if (!sm || sm->kind != StringMatch::Kind::kRegex) return;
  s.error(dot(path, "regex"), string_regexp_error(sm->value, where));
}

void validate_string_match(Sink& s, const std::string& path, const std::optional<StringMatch>& sm,
                           std::string_view where) {
  if (!sm) return;
  if (sm->kind == StringMatch::Kind::kPrefix && sm->value.empty()) {
    s.error(dot(path, "prefix"), go_quote(where) + ": prefix string match should not be empty");
    return;
  }
  validate_string_match_regexp(s, path, sm, where);
}

Error validate_subset_name(std::string_view name) {
  if (name.empty()) return std::string("subset name cannot be empty");
  if (!is_dns1123_label(name)) return "subset name is invalid: " + std::string(name);
  return std::nullopt;
}

void validate_destination(Sink& s, const std::string& path, const Destination& d) {
  if (d.host == "*") {
    s.error(dot(path, "host"), "invalid destination host *");
  } else {
    s.error(dot(path, "host"), validate_wildcard_domain(d.host));
  }
  if (!d.subset.empty()) s.error(dot(path, "subset"), validate_subset_name(d.subset));
  if (d.port) s.error(dot(dot(path, "port"), "number"), validate_port(d.port->number));
}

void validate_match_common(Sink& s, const std::string& path, uint32_t port, const Labels& source_labels,
                           const std::vector<std::string>& gateways) {
  if (port != 0) s.error(dot(path, "port"), validate_port(port));
  validate_labels(s, dot(path, "sourceLabels"), source_labels);
  validate_gateway_names(s, dot(path, "gateways"), gateways);
}

Error validate_http_status(int64_t status) {
  // Istio's bound is inclusive of 600, its text says 599.
  if (status < 200 || status > 600) return "HTTP status " + std::to_string(status) + " is not in range 200-599";
  return std::nullopt;
}

// Status codes Go's http.StatusText knows; retryOn accepts any of them.
bool is_known_http_status(int code) {
  static const std::set<int> kCodes = {100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                       300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405,
                                       406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421,
                                       422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504,
                                       505, 506, 507, 508, 510, 511};
  return kCodes.count(code) != 0;
}

void validate_http_retry(Sink& s, const std::string& path, const HTTPRetry& r) {
  if (r.attempts < 0) s.error(dot(path, "attempts"), "attempts cannot be negative");
  if (r.attempts == 0 && (r.per_try_timeout || !r.retry_on.empty() || r.retry_remote_localities)) {
    s.error(path, "http retry policy configured when attempts are set to 0 (disabled)");
  }
  if (r.per_try_timeout) s.error(dot(path, "perTryTimeout"), validate_duration(*r.per_try_timeout));
  if (r.backoff) s.error(dot(path, "backoff"), validate_duration(*r.backoff));
  if (!r.retry_on.empty()) {
    static const std::set<std::string, std::less<>> kPolicies = {
        "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx",
        "refused-stream", "retriable-status-codes", "retriable-headers", "envoy-ratelimited",
        "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal", "resource-exhausted",
        "unavailable"};
    std::string_view all = r.retry_on;
    size_t start = 0;
    while (true) {
      size_t comma = all.find(',', start);
      std::string_view policy = all.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      int code = 0;
      auto [ptr, ec] = std::from_chars(policy.data(), policy.data() + policy.size(), code);
      bool is_status = ec == std::errc() && ptr == policy.data() + policy.size() && is_known_http_status(code);
      if (!is_status && !kPolicies.count(policy)) {
        s.error(dot(path, "retryOn"), go_quote(policy) + " is not a valid retryOn policy");
      }
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
  }
}

void validate_http_route_destinations(Sink& s, const std::string& path, const std::vector<HTTPRouteDestination>& route) {
  int64_t total = 0;
  for (size_t i = 0; i < route.size(); ++i) {
    std::string p = at(path, i);
    validate_header_operations(s, dot(p, "headers"), route[i].headers);
    validate_destination(s, dot(p, "destination"), route[i].destination);
    if (route[i].weight < 0) s.error(dot(p, "weight"), "weight " + std::to_string(route[i].weight) + " < 0");
    total += route[i].weight;
  }
  // A lone destination takes all traffic whatever its weight.
  if (route.size() > 1 && total == 0) s.error(path, "total destination weight = 0");
}

void validate_route_destinations(Sink& s, const std::string& path, const std::vector<RouteDestination>& route) {
  int64_t total = 0;
  for (size_t i = 0; i < route.size(); ++i) {
    std::string p = at(path, i);
    validate_destination(s, dot(p, "destination"), route[i].destination);
    if (route[i].weight < 0) s.error(dot(p, "weight"), "weight " + std::to_string(route[i].weight) + " < 0");
    total += route[i].weight;
  }
  if (route.size() > 1 && total == 0) s.error(path, "total destination weight = 0");
}

void validate_http_route(Sink& s, const std::string& path, const HTTPRoute& r) {
  // Exactly one action: route, redirect or directResponse.
  if (r.redirect) {
    if (!r.route.empty()) s.error(path, "HTTP route cannot contain both route and redirect");
    if (r.fault) s.error(path, "HTTP route cannot contain both fault and redirect");
    if (r.rewrite) s.error(path, "HTTP route rule cannot contain both rewrite and redirect");
    if (r.direct_response) s.error(path, "HTTP route rule cannot contain both direct_response and redirect");
  } else if (r.direct_response) {
    if (!r.route.empty()) s.error(path, "HTTP route cannot contain both route and direct_response");
    if (r.fault) s.error(path, "HTTP route cannot contain both fault and direct_response");
    if (r.rewrite) s.error(path, "HTTP route rule cannot contain both rewrite and direct_response");
  } else if (r.route.empty()) {
    s.error(path, "HTTP route, redirect or direct_response is required");
  }

  for (size_t j = 0; j < r.match.size(); ++j) {
    const HTTPMatchRequest& m = r.match[j];
    std::string mp = at(dot(path, "match"), j);
    for (const auto& [name, sm] : m.headers) {
      std::string hp = dot(dot(mp, "headers"), name);
      s.error(hp, validate_header_name_or_jwt_claim(name));
      validate_string_match(s, hp, sm, "headers");
    }
    for (const auto& [name, sm] : m.without_headers) {
      std::string hp = dot(dot(mp, "withoutHeaders"), name);
      s.error(hp, validate_header_name_or_jwt_claim(name));
      // regex "*" means "present", it is not compiled.
      if (!(sm.kind == StringMatch::Kind::kRegex && sm.value == "*")) validate_string_match(s, hp, sm, "withoutHeaders");
    }
    // An empty uri prefix is valid (Envoy allows it), the others are not.
    validate_string_match_regexp(s, dot(mp, "uri"), m.uri, "uri");
    validate_string_match(s, dot(mp, "scheme"), m.scheme, "scheme");
    validate_string_match(s, dot(mp, "method"), m.method, "method");
    validate_string_match(s, dot(mp, "authority"), m.authority, "authority");
    for (const auto& [name, sm] : m.query_params) {
      validate_string_match(s, dot(dot(mp, "queryParams"), name), sm, "queryParams");
    }
    validate_match_common(s, mp, m.port, m.source_labels, m.gateways);
    if (!m.source_namespace.empty() && !is_dns1123_label(m.source_namespace)) {
      s.error(dot(mp, "sourceNamespace"), "sourceNamespace match " + m.source_namespace + " is invalid");
    }
  }

  validate_header_operations(s, dot(path, "headers"), r.headers);

  if (r.fault) {
    std::string fp = dot(path, "fault");
    if (!r.fault->abort && !r.fault->delay) s.error(fp, "HTTP fault injection must have an abort and/or a delay");
    if (const auto& a = r.fault->abort) {
      std::string ap = dot(fp, "abort");
      s.error(dot(ap, "percentage"), validate_percentage(a->percentage));
      if (a->http_status == 0) {
        s.warning(ap, "abort configured, but error type not set");
      } else {
        s.error(dot(ap, "httpStatus"), validate_http_status(a->http_status));
      }
    }
    if (const auto& d = r.fault->delay) {
      std::string dp = dot(fp, "delay");
      s.error(dot(dp, "percentage"), validate_percentage(d->percentage));
      if (d->fixed_delay) s.error(dot(dp, "fixedDelay"), validate_duration(*d->fixed_delay));
    }
  }

  if (r.mirror_percent && *r.mirror_percent > 100) {
    s.error(dot(path, "mirrorPercent"),
            "mirror_percent must have a max value of 100 (it has " + std::to_string(*r.mirror_percent) + ")");
  }
  // Istio's "<what> must have a max value of 100 (it has %f)", min 0.
  auto share_range = [&s](const std::string& p, double v, const char* what) {
    if (v > 100) s.error(p, std::string(what) + " must have a max value of 100 (it has " + go_fixed(v) + ")");
    if (v < 0) s.error(p, std::string(what) + " must have a min value of 0 (it has " + go_fixed(v) + ")");
  };
  if (r.mirror_percentage) share_range(dot(path, "mirrorPercentage"), r.mirror_percentage->value, "mirror_percentage");
  if (r.mirror) validate_destination(s, dot(path, "mirror"), *r.mirror);
  // Istio's validateHTTPMirrors.
  for (size_t j = 0; j < r.mirrors.size(); ++j) {
    const HTTPMirrorPolicy& m = r.mirrors[j];
    const std::string mp = at(dot(path, "mirrors"), j);
    if (!m.destination) {
      s.error(mp, "destination is required for mirrors");
      continue;
    }
    validate_destination(s, dot(mp, "destination"), *m.destination);
    if (m.percentage) share_range(dot(mp, "percentage"), m.percentage->value, "mirror percentage");
  }
  if (r.mirror && !r.mirrors.empty()) s.error(path, "HTTP route cannot contain both mirror and mirrors");

  if (const auto& rd = r.redirect) {
    // Istio stops at the first redirect problem.
    std::string rp = dot(path, "redirect");
    if (rd->uri.empty() && rd->authority.empty() && rd->port == 0 && rd->scheme.empty()) {
      s.error(rp, "redirect must specify URI, authority, scheme, or port");
    } else if (rd->redirect_code != 0 && (rd->redirect_code < 300 || rd->redirect_code > 399)) {
      s.error(dot(rp, "redirectCode"), std::to_string(rd->redirect_code) + " is not a valid redirect code, must be 3xx");
    } else if (!rd->scheme.empty() && rd->scheme != "http" && rd->scheme != "https") {
      s.error(dot(rp, "scheme"), "invalid redirect scheme, must be \"http\" or \"https\"");
    } else if (rd->port > 0) {
      s.error(dot(rp, "port"), validate_port(rd->port));
    }
  }

  if (const auto& dr = r.direct_response) {
    std::string dp = dot(path, "directResponse");
    if (dr->body) {
      size_t size = dr->body->size();
      if (size > 1024 * 1024) {
        s.error(dot(dp, "body"), "large direct_responses may impact control plane performance, must be less than 1MB");
      } else if (size > 100 * 1024) {
        s.warning(dot(dp, "body"), "large direct_responses may impact control plane performance");
      }
    }
    s.error(dot(dp, "status"), validate_http_status(dr->status));
  }

  if (r.retries) validate_http_retry(s, dot(path, "retries"), *r.retries);

  // Istio's validateHTTPRewrite (its errors.Join on one line).
  if (const auto& rw = r.rewrite) {
    const std::string rp = dot(path, "rewrite");
    if (!rw->uri.empty() && rw->uri_regex_rewrite) {
      s.error(rp, "rewrite may only contain one of URI or UriRegexRewrite");
    } else if (rw->uri.empty() && !rw->uri_regex_rewrite && rw->authority.empty()) {
      s.error(rp,
              "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or "
              "UriRegexRewrite may be specified");
    } else if (const auto& rr = rw->uri_regex_rewrite) {
      const std::string rrp = dot(rp, "uriRegexRewrite");
      if (rr->match.empty() || rr->rewrite.empty()) {
        s.error(rrp, "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be "
                     "specified");
      } else if (Error e = string_regexp_error(rr->match, "HTTPRewrite.UriRegexRewrite.Match")) {
        s.error(dot(rrp, "match"), "UriRegexRewrite has errors: " + *e);
      }
    }
  }

  // The authority may be rewritten in one place only.
  {
    std::string current = r.rewrite ? r.rewrite->authority : std::string();
    bool reported = false;
    auto check = [&](const std::map<std::string, std::string>& ops, const char* op) {
      for (const auto& [k, v] : ops) {
        if (reported || !is_authority_header(k)) continue;
        if (!current.empty()) {
          s.error(dot(dot(dot(path, "headers.request"), op), k),
                  "authority header cannot be set multiple times: have " + go_quote(current) + ", attempting to set " +
                      go_quote(v));
          reported = true;
          return;
        }
        current = v;
      }
    };
    if (r.headers && r.headers->request) {
      check(r.headers->request->set, "set");
      check(r.headers->request->add, "add");
    }
  }

  validate_http_route_destinations(s, dot(path, "route"), r.route);
  if (r.timeout) s.error(dot(path, "timeout"), validate_duration(*r.timeout));
}

// Istio's isGateway: true unless "mesh" is listed (also when nothing is).
bool vs_is_gateway_only(const VirtualService& vs) {
  return std::find(vs.gateways.begin(), vs.gateways.end(), "mesh") == vs.gateways.end();
}

void validate_sni_host(Sink& s, const std::string& path, const std::string& sni, const VirtualService& vs) {
  Error e = vs_is_gateway_only(vs) ? validate_wildcard_domain_for_gateway_vs(true, sni) : validate_wildcard_domain(sni);
  if (e) {
    if (is_ip(sni)) {
      s.warning(path, "using an IP address (" + go_quote(sni) + ") goes against SNI spec and most clients do not support this");
    } else {
      s.error(path, *e);
    }
    return;
  }
  for (const auto& h : vs.hosts) {
    if (host_subset_of(sni, h)) return;
  }
  s.error(path, "SNI host " + go_quote(sni) + " is not a compatible subset of any of the virtual service hosts: [" +
                    join(vs.hosts, ", ") + "]");
}

void validate_tls_route(Sink& s, const std::string& path, const TLSRoute& r, const VirtualService& vs) {
  if (r.match.empty()) s.error(path, "TLS route must have at least one match condition");
  for (size_t j = 0; j < r.match.size(); ++j) {
    const TLSMatchAttributes& m = r.match[j];
    std::string mp = at(dot(path, "match"), j);
    if (m.sni_hosts.empty()) {
      s.error(mp, "TLS match must have at least one SNI host");
    } else {
      for (size_t k = 0; k < m.sni_hosts.size(); ++k) validate_sni_host(s, at(dot(mp, "sniHosts"), k), m.sni_hosts[k], vs);
    }
    for (size_t k = 0; k < m.destination_subnets.size(); ++k) {
      s.error(at(dot(mp, "destinationSubnets"), k), validate_ip_subnet(m.destination_subnets[k]));
    }
    validate_match_common(s, mp, m.port, m.source_labels, m.gateways);
  }
  if (r.route.empty()) s.error(path, "TLS route is required");
  validate_route_destinations(s, dot(path, "route"), r.route);
}

void validate_tcp_route(Sink& s, const std::string& path, const TCPRoute& r) {
  for (size_t j = 0; j < r.match.size(); ++j) {
    const L4MatchAttributes& m = r.match[j];
    std::string mp = at(dot(path, "match"), j);
    for (size_t k = 0; k < m.destination_subnets.size(); ++k) {
      s.error(at(dot(mp, "destinationSubnets"), k), validate_ip_subnet(m.destination_subnets[k]));
    }
    validate_match_common(s, mp, m.port, m.source_labels, m.gateways);
  }
  if (r.route.empty()) s.error(path, "TCP route is required");
  validate_route_destinations(s, dot(path, "route"), r.route);
}

// ---------------------------------------------------------------------------
// DestinationRule

void validate_client_tls(Sink& s, const std::string& path, const ClientTLSSettings& tls) {
  if (tls.insecure_skip_verify) {
    if (tls.mode == ClientTLSMode::kSimple &&
        (!tls.ca_certificates.empty() || !tls.credential_name.empty() || !tls.subject_alt_names.empty())) {
      s.error(path, "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true");
    }
    if (tls.mode == ClientTLSMode::kMutual && (!tls.ca_certificates.empty() || !tls.subject_alt_names.empty())) {
      s.error(path, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true");
    }
  }
  if ((tls.mode == ClientTLSMode::kSimple || tls.mode == ClientTLSMode::kMutual) && !tls.credential_name.empty()) {
    if (!tls.client_certificate.empty() || !tls.ca_certificates.empty() || !tls.private_key.empty() ||
        !tls.ca_crl.empty()) {
      s.error(path, "cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
    }
    return;  // the credential supplies the files
  }
  // Ours: with the system's roots, CRL_CHECK_ALL wants a CRL from each CA of
  // every chain, which a file of one's own CRLs rarely has.
  if ((tls.mode == ClientTLSMode::kSimple || tls.mode == ClientTLSMode::kMutual) && !tls.ca_crl.empty() &&
      tls.ca_certificates.empty() && !tls.insecure_skip_verify) {
    s.warning(path,
              "caCrl without caCertificates: the system's CAs are trusted, and every CA of a server's chain needs "
              "its CRL in the file, or the server fails verification");
  }
  if (tls.mode == ClientTLSMode::kMutual) {
    if (tls.client_certificate.empty()) s.error(path, "client certificate required for mutual tls");
    if (tls.private_key.empty()) s.error(path, "private key required for mutual tls");
  }
  // Ours, not Istio's (Istio silently ignores them): ISTIO_MUTUAL always
  // presents the mesh identity, so certificate files here are a mistake.
  if (tls.mode == ClientTLSMode::kIstioMutual && (!tls.client_certificate.empty() || !tls.private_key.empty() ||
                                                  !tls.ca_certificates.empty() || !tls.ca_crl.empty())) {
    s.warning(path,
              "clientCertificate, privateKey, caCertificates and caCrl are ignored with tls mode ISTIO_MUTUAL, which "
              "uses the mesh identity; remove them or use mode MUTUAL");
  }
}

void validate_outlier_detection(Sink& s, const std::string& path, const std::optional<OutlierDetection>& o) {
  if (!o) return;
  if (o->base_ejection_time) s.error(dot(path, "baseEjectionTime"), validate_duration(*o->base_ejection_time));
  if (o->interval) s.error(dot(path, "interval"), validate_duration(*o->interval));
  s.error(dot(path, "maxEjectionPercent"), validate_percent(o->max_ejection_percent));
  s.error(dot(path, "minHealthPercent"), validate_percent(o->min_health_percent));
}

// Istio hands Envoy whole seconds; Linux takes 1..32767 s and 1..127
// probes. Sluice keeps the kernel's default for a value outside them.
// `zero_too`: a zero duration is warned about too (else it is an error
// reported apart).
template <typename Warn>
void keepalive_range_warnings(const TCPSettings::KeepAlive& ka, bool zero_too, Warn warn) {
  auto seconds = [&](const std::optional<Duration>& d, const char* name) {
    if (d && (d->count() > 0 || zero_too) && (d->count() < 1000 || d->count() > 32767'000)) {
      warn(name, "outside 1s..32767s: the kernel's default is used (Envoy would fail the connection)");
    }
  };
  seconds(ka.time, "time");
  seconds(ka.interval, "interval");
  if (ka.probes > 127) warn("probes", "above 127: the kernel's default is used (Envoy would fail the connection)");
}

void validate_connection_pool(Sink& s, const std::string& path, const std::optional<ConnectionPoolSettings>& c) {
  if (!c) return;
  if (!c->http && !c->tcp) {
    s.error(path, "connection pool must have at least one field");
    return;
  }
  if (const auto& h = c->http) {
    std::string p = dot(path, "http");
    if (h->http1_max_pending_requests < 0) s.error(dot(p, "http1MaxPendingRequests"), "http1 max pending requests must be non-negative");
    if (h->http2_max_requests < 0) s.error(dot(p, "http2MaxRequests"), "http2 max requests must be non-negative");
    if (h->max_requests_per_connection < 0) s.error(dot(p, "maxRequestsPerConnection"), "max requests per connection must be non-negative");
    if (h->max_retries < 0) s.error(dot(p, "maxRetries"), "max retries must be non-negative");
    if (h->idle_timeout) s.error(dot(p, "idleTimeout"), validate_duration(*h->idle_timeout));
  }
  if (const auto& t = c->tcp) {
    std::string p = dot(path, "tcp");
    if (t->max_connections < 0) s.error(dot(p, "maxConnections"), "max connections must be non-negative");
    if (t->connect_timeout) s.error(dot(p, "connectTimeout"), validate_duration(*t->connect_timeout));
    if (t->max_connection_duration) {
      s.error(dot(p, "maxConnectionDuration"), validate_duration(*t->max_connection_duration));
    }
    // 0s disables the timeout (Istio skips its check then).
    if (t->idle_timeout && t->idle_timeout->count() != 0) {
      s.error(dot(p, "idleTimeout"), validate_duration(*t->idle_timeout));
    }
    if (const auto& ka = t->tcp_keepalive) {
      if (ka->time) s.error(dot(p, "tcpKeepalive.time"), validate_duration(*ka->time));
      if (ka->interval) s.error(dot(p, "tcpKeepalive.interval"), validate_duration(*ka->interval));
      keepalive_range_warnings(*ka, /*zero_too=*/false, [&](const char* field, const char* message) {
        s.warning(dot(p, std::string("tcpKeepalive.") + field), message);
      });
    }
  }
}

void validate_load_balancer(Sink& s, const std::string& path, const std::optional<LoadBalancerSettings>& lb) {
  if (!lb || !lb->consistent_hash) return;
  const ConsistentHashLB& ch = *lb->consistent_hash;
  // The model has no httpCookie node of its own: a cookie TTL without a name
  // is the one shape that shows a cookie without its required name.
  if (ch.http_cookie_ttl && ch.http_cookie_name.empty()) {
    s.error(dot(dot(path, "consistentHash"), "httpCookie"), "name required for HttpCookie");
  }
  if (!ch.http_cookie_name.empty() && !ch.http_cookie_ttl) {
    s.error(dot(dot(path, "consistentHash"), "httpCookie"), "ttl required for HttpCookie");
  }
  // hashKey is a oneof in Istio's API: the API server refuses a second one.
  const int keys = !ch.http_header_name.empty() + (!ch.http_cookie_name.empty() || ch.http_cookie_ttl.has_value()) +
                   ch.use_source_ip + !ch.http_query_parameter_name.empty();
  if (keys > 1) {
    s.error(dot(path, "consistentHash"),
            "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set (hashKey is a oneof)");
  }
}

// Istio's validateTunnelSettings.
void validate_tunnel(Sink& s, const std::string& path, const TunnelSettings& t) {
  if (!t.protocol.empty() && t.protocol != "CONNECT" && t.protocol != "POST") {
    s.error(path, "tunnel protocol must be \"CONNECT\" or \"POST\"");
  }
  Error fqdn = validate_fqdn(t.target_host);
  Error ip = validate_ip_address(t.target_host);
  if (fqdn && ip) s.error(path, "tunnel target host must be valid FQDN or IP address: " + *fqdn + "; " + *ip);
  if (Error e = validate_port(t.target_port)) s.error(path, "tunnel target port is invalid: " + *e);
  if (t.protocol == "POST") {
    s.warning(path, "tunnel protocol POST is not supported by Sluice (HTTP/1.1 CONNECT only): connections routed "
                    "through this tunnel are refused");
  }
}

void validate_traffic_policy(Sink& s, const std::string& path, const std::optional<TrafficPolicy>& tp) {
  if (!tp) return;
  if (!tp->outlier_detection && !tp->connection_pool && !tp->load_balancer && !tp->tls && tp->port_level_settings.empty() &&
      !tp->tunnel && !tp->has_proxy_protocol) {
    s.error(path, "traffic policy must have at least one field");
    return;
  }
  if (tp->tunnel && tp->has_proxy_protocol) {
    s.error(path, "tunnel and proxyProtocol must not be set together");
    return;
  }
  if (tp->tunnel) validate_tunnel(s, dot(path, "tunnel"), *tp->tunnel);
  validate_outlier_detection(s, dot(path, "outlierDetection"), tp->outlier_detection);
  validate_connection_pool(s, dot(path, "connectionPool"), tp->connection_pool);
  validate_load_balancer(s, dot(path, "loadBalancer"), tp->load_balancer);
  if (tp->tls) validate_client_tls(s, dot(path, "tls"), *tp->tls);
  for (size_t i = 0; i < tp->port_level_settings.size(); ++i) {
    const PortTrafficPolicy& p = tp->port_level_settings[i];
    std::string pp = at(dot(path, "portLevelSettings"), i);
    if (!p.port) s.error(pp, "portTrafficPolicy must have valid port");
    if (!p.outlier_detection && !p.connection_pool && !p.load_balancer && !p.tls) {
      s.error(pp, "port traffic policy must have at least one field");
      continue;
    }
    validate_outlier_detection(s, dot(pp, "outlierDetection"), p.outlier_detection);
    validate_connection_pool(s, dot(pp, "connectionPool"), p.connection_pool);
    validate_load_balancer(s, dot(pp, "loadBalancer"), p.load_balancer);
    if (p.tls) validate_client_tls(s, dot(pp, "tls"), *p.tls);
  }
}

// Selector labels: no empty keys, no wildcards.
void validate_selector_labels(Sink& s, const std::string& path, const Labels& labels) {
  for (const auto& [k, v] : labels) {
    std::string kv = go_quote(k + "=" + v);
    if (k.empty()) s.error(path, "empty key is not supported in selector: " + kv);
    if (k.find('*') != std::string::npos || v.find('*') != std::string::npos) {
      s.error(path, "wildcard is not supported in selector: " + kv);
    }
  }
}

// ---------------------------------------------------------------------------
// Gateway

bool is_unix_bind(std::string_view bind) { return bind.substr(0, 7) == "unix://"; }

// Go's compact text form of a Port message, as fmt's %v prints it.
std::string port_text(const GatewayPort& p) {
  std::vector<std::string> fields;
  if (p.number) fields.push_back("number:" + std::to_string(p.number));
  if (!p.protocol.empty()) fields.push_back("protocol:" + go_quote(p.protocol));
  if (!p.name.empty()) fields.push_back("name:" + go_quote(p.name));
  if (p.target_port) fields.push_back("target_port:" + std::to_string(p.target_port));
  return join(fields, " ");
}

// Server hosts: "[namespace/]dnsName", namespace "*", "." or a label.
// Istio's ValidateNamespaceSlashWildcardHostname: a Gateway server's host
// ("ns/dnsName" or a bare dnsName) or a Sidecar egress host ("ns/dnsName"
// only, and "~" a namespace too).
void validate_namespace_slash_host(Sink& s, const std::string& path, const std::string& host, bool gateway) {
  auto hostname_part = [&](const std::string& h) {
    if (h != "*" && h.find('.') == std::string::npos) s.error(path, "short names (non FQDN) are not allowed");
    if (auto e = validate_wildcard_domain(h); e && !is_ip(h)) s.error(path, *e);
    s.error(path, validate_partial_wildcard(h));
  };
  size_t slash = host.find('/');
  if (slash == std::string::npos) {
    if (!gateway) {
      s.error(path, "host must be of form namespace/dnsName");
      return;
    }
    hostname_part(host);
    return;
  }
  std::string ns = host.substr(0, slash), name = host.substr(slash + 1);
  if (ns.empty() || name.empty()) s.error(path, "config namespace and dnsName in host entry cannot be empty");
  if (ns != "*" && ns != "." && (gateway || ns != "~") && !is_dns1123_label(ns)) {
    s.error(path, "invalid namespace value " + go_quote(ns) + (gateway ? " in gateway" : " in sidecar"));
  }
  hostname_part(name);
}

void validate_gateway_host(Sink& s, const std::string& path, const std::string& host) {
  validate_namespace_slash_host(s, path, host, /*gateway=*/true);
}

void validate_server_tls(Sink& s, const std::string& path, const ServerTLSSettings& tls) {
  if ((tls.min_protocol_version == "TLSV1_0" || tls.min_protocol_version == "TLSV1_1") && tls.cipher_suites.empty()) {
    s.warning(path, "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.");
  }
  const bool has_files = !tls.server_certificate.empty() || !tls.private_key.empty() ||
                         !tls.ca_certificates.empty() || !tls.ca_crl.empty();
  if (tls.mode == ServerTLSMode::kIstioMutual) {
    // The mesh identity is used; files would be ignored.
    if (!tls.server_certificate.empty()) s.error(path, "ISTIO_MUTUAL TLS cannot have associated server certificate");
    if (!tls.private_key.empty()) s.error(path, "ISTIO_MUTUAL TLS cannot have associated private key");
    if (!tls.ca_certificates.empty()) s.error(path, "ISTIO_MUTUAL TLS cannot have associated CA bundle");
    if (!tls.credential_name.empty()) s.error(path, "ISTIO_MUTUAL TLS cannot have associated credentialName");
    // Ours (Istio says nothing and ignores it).
    if (!tls.ca_crl.empty()) s.warning(path, "caCrl is ignored with tls mode ISTIO_MUTUAL, which uses the mesh identity");
    return;
  }
  if ((tls.mode == ServerTLSMode::kPassthrough || tls.mode == ServerTLSMode::kAutoPassthrough) &&
      (has_files || !tls.credential_name.empty())) {
    s.warning(path, std::string(to_string(tls.mode)) + " mode does not use certificates, they will be ignored");
  }
  const bool terminates = tls.mode == ServerTLSMode::kSimple || tls.mode == ServerTLSMode::kMutual ||
                          tls.mode == ServerTLSMode::kOptionalMutual;
  if (terminates && !tls.credential_name.empty()) return;  // fetched from the secret
  if (tls.mode == ServerTLSMode::kSimple) {
    if (tls.server_certificate.empty()) s.error(path, "SIMPLE TLS requires a server certificate");
    if (tls.private_key.empty()) s.error(path, "SIMPLE TLS requires a private key");
  } else if (tls.mode == ServerTLSMode::kMutual || tls.mode == ServerTLSMode::kOptionalMutual) {
    if (tls.server_certificate.empty()) s.error(path, "MUTUAL TLS requires a server certificate");
    if (tls.private_key.empty()) s.error(path, "MUTUAL TLS requires a private key");
    if (tls.ca_certificates.empty()) s.error(path, "MUTUAL TLS requires a client CA bundle");
  }
  if (!tls.ca_crl.empty()) {
    if (!tls.credential_name.empty()) {
      s.error(path, "CRL is not supported with credentialName. CRL has to be specified in the credential");
    }
    if (tls.mode == ServerTLSMode::kSimple) s.error(path, "CRL is not supported with SIMPLE TLS");
  }
}

void validate_server(Sink& s, const std::string& path, const Server& server) {
  if (server.hosts.empty()) {
    s.error(path, "server config must contain at least one host");
  } else {
    for (size_t i = 0; i < server.hosts.size(); ++i) validate_gateway_host(s, at(dot(path, "hosts"), i), server.hosts[i]);
  }

  std::string pp = dot(path, "port");
  bool port_ok = true;
  auto port_error = [&](const std::string& p, const Error& e) {
    if (!e) return;
    s.error(p, *e);
    port_ok = false;
  };
  const GatewayPort& port = server.port;
  if (parse_protocol(port.protocol) == Protocol::kUnsupported) {
    port_error(dot(pp, "protocol"), "invalid protocol " + go_quote(port.protocol) +
                                        ", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP");
  }
  if (port.number > 0 || !is_unix_bind(server.bind)) port_error(dot(pp, "number"), validate_port(port.number));
  if (port.target_port > 0) port_error(dot(pp, "targetPort"), std::string("targetPort has no impact on Gateways"));
  if (port.name.empty()) port_error(pp, "port name must be set: " + port_text(port));

  if (is_unix_bind(server.bind)) {
    s.error(dot(path, "bind"), validate_unix_address(server.bind.substr(7)));
    if (port.number != 0) s.error(dot(path, "bind"), "port number must be 0 for unix domain socket: " + port_text(port));
  } else if (!server.bind.empty()) {
    s.error(dot(path, "bind"), validate_ip_address(server.bind));
  }

  if (server.tls) validate_server_tls(s, dot(path, "tls"), *server.tls);

  if (port_ok) {
    Protocol p = parse_protocol(port.protocol);
    if (is_tls(p) && !server.tls) {
      s.error(path, "server must have TLS settings for HTTPS/TLS protocols");
    } else if (!is_tls(p) && server.tls) {
      if (is_http(p)) {
        // Only httpsRedirect makes sense on a plain-text HTTP server.
        const ServerTLSSettings& t = *server.tls;
        bool passthrough = t.mode == ServerTLSMode::kPassthrough || t.mode == ServerTLSMode::kAutoPassthrough;
        if (!passthrough || !t.ca_certificates.empty() || !t.private_key.empty() || !t.server_certificate.empty()) {
          s.error(dot(path, "tls"), "server cannot have TLS settings for plain text HTTP ports");
        }
      } else {
        s.error(dot(path, "tls"), "server cannot have TLS settings for non HTTPS/TLS ports");
      }
    }
  }
}

// ---------------------------------------------------------------------------
// ServiceEntry

void validate_workload_entry(Sink& s, const std::string& path, const WorkloadEntry& we,
                             const std::set<std::string>& service_port_names) {
  bool unix_endpoint = false;
  const std::string& addr = we.address;
  if (addr.empty()) {
    if (we.network.empty()) {
      s.error(path, "address is required");
      return;
    }
    s.warning(dot(path, "address"), "address is unset with network " + go_quote(we.network));
  }
  if (addr.substr(0, 7) == "unix://") {
    unix_endpoint = true;
    s.error(dot(path, "address"), validate_unix_address(addr.substr(7)));
    if (!we.ports.empty()) s.error(dot(path, "ports"), "unix endpoint " + addr + " must not include ports");
  } else if (!addr.empty() && !is_ip(addr)) {
    // STATIC endpoints: an IP or a unix socket, never a name.
    s.error(dot(path, "address"), "endpoint address " + go_quote(addr) + " is not a valid IP address");
  }
  for (const auto& [name, port] : we.ports) {
    std::string p = dot(dot(path, "ports"), name);
    if (!service_port_names.count(name)) s.error(p, "endpoint port " + std::to_string(port) + " is not defined by the service entry");
    s.error(p, validate_port_name(name));
    s.error(p, validate_port(port));
  }
  validate_labels(s, dot(path, "labels"), we.labels);
  if (unix_endpoint && service_port_names.size() != 1) s.error(path, "exactly 1 service port required for unix endpoints");
}

// ---------------------------------------------------------------------------
// Install options

// Go's time.Duration.String() for whole milliseconds.
std::string go_duration(const Duration& d) {
  int64_t ms = d.count();
  std::string sign = ms < 0 ? "-" : "";
  if (ms < 0) ms = -ms;
  if (ms == 0) return "0s";
  if (ms < 1000) return sign + std::to_string(ms) + "ms";
  int64_t h = ms / 3600000, m = (ms / 60000) % 60, sec = (ms / 1000) % 60, frac = ms % 1000;
  std::string secs = std::to_string(sec);
  if (frac) {
    std::string f = std::to_string(frac);
    f = std::string(3 - f.size(), '0') + f;
    while (!f.empty() && f.back() == '0') f.pop_back();
    secs += "." + f;
  }
  std::string out = sign;
  if (h) out += std::to_string(h) + "h";
  if (h || m) out += std::to_string(m) + "m";
  return out + secs + "s";
}

}  // namespace

// ---------------------------------------------------------------------------

void validate(const ServiceEntry& se, Diagnostics& out) {
  Sink s(se.meta, "ServiceEntry", out);

  if (se.workload_selector) {
    validate_selector_labels(s, "spec.workloadSelector", *se.workload_selector);
    if (se.workload_selector->empty()) {
      s.warning("spec.workloadSelector",
                "service entry: workload selector specified without labels, will be applied to all services in namespace");
    }
    if (!se.endpoints.empty()) s.error("spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry");
  }

  if (se.hosts.empty()) s.error("spec.hosts", "service entry must have at least one host");
  for (size_t i = 0; i < se.hosts.size(); ++i) {
    const std::string& h = se.hosts[i];
    std::string p = at("spec.hosts", i);
    if (h == "*") {
      s.error(p, "invalid host *");
    } else {
      s.error(p, validate_wildcard_domain(h));
      if (auto w = validate_partial_wildcard(h)) s.warning(p, *w);
    }
  }

  bool cidr = false;
  for (size_t i = 0; i < se.addresses.size(); ++i) {
    cidr = cidr || se.addresses[i].find('/') != std::string::npos;
    s.error(at("spec.addresses", i), validate_ip_subnet(se.addresses[i]));
  }
  if (cidr && se.resolution != Resolution::kNone && se.resolution != Resolution::kStatic) {
    s.error("spec.resolution", "CIDR addresses are allowed only for NONE/STATIC resolution types");
  }

  std::set<std::string> port_names;
  std::set<uint32_t> port_numbers;
  for (size_t i = 0; i < se.ports.size(); ++i) {
    const ServicePort& port = se.ports[i];
    std::string p = at("spec.ports", i);
    if (!port_names.insert(port.name).second) {
      s.error(dot(p, "name"), "service entry port name " + go_quote(port.name) + " already defined");
    }
    if (!port_numbers.insert(port.number).second) {
      s.error(dot(p, "number"), "service entry port " + std::to_string(port.number) + " already defined");
    }
    if (port.target_port != 0) {
      s.error(dot(p, "targetPort"), validate_port(port.target_port));
      if (se.resolution == Resolution::kNone) {
        s.warning(dot(p, "targetPort"), "targetPort has no effect when resolution mode is NONE");
      }
    }
    s.error(dot(p, "name"), validate_port_name(port.name));
    if (!port.protocol.empty() && parse_protocol(port.protocol) == Protocol::kUnsupported) {
      s.error(dot(p, "protocol"), "unsupported protocol: " + port.protocol);
    }
    s.error(dot(p, "number"), validate_port(port.number));
  }

  const std::string resolution = to_string(se.resolution);
  switch (se.resolution) {
    case Resolution::kNone:
      if (!se.endpoints.empty()) s.error("spec.endpoints", "no endpoints should be provided for resolution type none");
      if (se.workload_selector) s.warning("spec.workloadSelector", "workloadSelector should not be set when resolution mode is NONE");
      break;
    case Resolution::kStatic:
      for (size_t i = 0; i < se.endpoints.size(); ++i) {
        validate_workload_entry(s, at("spec.endpoints", i), se.endpoints[i], port_names);
      }
      break;
    case Resolution::kDns:
    case Resolution::kDnsRoundRobin:
      if (se.endpoints.empty()) {
        // The proxy resolves the host itself: it must be a name, not a pattern.
        for (size_t i = 0; i < se.hosts.size(); ++i) {
          if (validate_fqdn(se.hosts[i])) {
            s.error(at("spec.hosts", i), "hosts must be FQDN if no endpoints are provided for resolution mode " + resolution);
          }
        }
      }
      if (se.resolution == Resolution::kDnsRoundRobin && se.endpoints.size() > 1) {
        s.error("spec.endpoints", "there must only be 0 or 1 endpoint for resolution mode " + resolution);
      }
      for (size_t i = 0; i < se.endpoints.size(); ++i) {
        const WorkloadEntry& ep = se.endpoints[i];
        std::string p = at("spec.endpoints", i);
        if (!is_ip(ep.address) && validate_fqdn(ep.address)) {
          s.error(dot(p, "address"), "endpoint address " + go_quote(ep.address) + " is not a valid FQDN or an IP address");
        }
        validate_labels(s, dot(p, "labels"), ep.labels);
        for (const auto& [name, port] : ep.ports) {
          std::string pp = dot(dot(p, "ports"), name);
          if (!port_names.count(name)) s.error(pp, "endpoint port " + std::to_string(port) + " is not defined by the service entry");
          s.error(pp, validate_port_name(name));
          s.error(pp, validate_port(port));
        }
      }
      if (se.workload_selector) {
        s.warning("spec.workloadSelector", "workloadSelector should not be set when resolution mode is " + resolution);
      }
      if (!se.addresses.empty() && se.hosts.size() > 1) {
        for (const auto& port : se.ports) {
          if (is_tcp(parse_protocol(port.protocol))) {
            s.warning("spec.hosts",
                      "service entry can not have more than one host specified simultaneously with address and tcp port");
            break;
          }
        }
      }
      break;
  }

  // Plain TCP carries no name to tell the hosts apart, unless the hosts are
  // ignored anyway (resolution NONE).
  if (se.resolution != Resolution::kNone && se.hosts.size() > 1) {
    for (size_t i = 0; i < se.ports.size(); ++i) {
      Protocol p = parse_protocol(se.ports[i].protocol);
      if (!is_http(p) && !is_tls(p)) {
        s.error(at("spec.ports", i), "multiple hosts provided with non-HTTP, non-TLS ports");
        break;
      }
    }
  }

  validate_export_to(s, "spec.exportTo", se.export_to, true, false);
}

void validate(const VirtualService& vs, Diagnostics& out) {
  Sink s(vs.meta, "VirtualService", out);

  // Sluice has no delegate VirtualServices, so hosts are always required (as
  // in Istio before delegation existed).
  if (vs.hosts.empty()) s.error("spec.hosts", "virtual service must have at least one host");

  bool applies_to_mesh = false;
  bool applies_to_gateway = false;
  if (vs.gateways.empty()) {
    applies_to_mesh = true;
  } else {
    validate_gateway_names(s, "spec.gateways", vs.gateways);
    applies_to_gateway = vs_is_gateway_only(vs);
    applies_to_mesh = !applies_to_gateway;
  }

  bool sni_hosts = false;
  for (const auto& t : vs.tls) {
    for (const auto& m : t.match) sni_hosts = sni_hosts || !m.sni_hosts.empty();
  }

  bool all_hosts_valid = true;
  for (size_t i = 0; i < vs.hosts.size(); ++i) {
    const std::string& h = vs.hosts[i];
    Error e = applies_to_gateway ? validate_wildcard_domain_for_gateway_vs(sni_hosts, h) : validate_wildcard_domain(h);
    if (e) {
      if (!is_ip(h)) {
        s.error(at("spec.hosts", i), *e);
        all_hosts_valid = false;
      }
    } else if (applies_to_mesh && h == "*") {
      s.error(at("spec.hosts", i), "wildcard host * is not allowed for virtual services bound to the mesh gateway");
      all_hosts_valid = false;
    }
  }
  // "*.foo.com" and "*.com" overlap as much as two equal names do.
  if (all_hosts_valid) {
    for (size_t i = 0; i < vs.hosts.size(); ++i) {
      for (size_t j = i + 1; j < vs.hosts.size(); ++j) {
        if (host_matches(vs.hosts[i], vs.hosts[j])) {
          s.error(at("spec.hosts", j), "duplicate hosts in virtual service: " + vs.hosts[i] + " & " + vs.hosts[j]);
        }
      }
    }
  }

  if (vs.http.empty() && vs.tcp.empty() && vs.tls.empty()) s.error("spec", "http, tcp or tls must be provided in virtual service");
  for (size_t i = 0; i < vs.http.size(); ++i) validate_http_route(s, at("spec.http", i), vs.http[i]);
  for (size_t i = 0; i < vs.tls.size(); ++i) validate_tls_route(s, at("spec.tls", i), vs.tls[i], vs);
  for (size_t i = 0; i < vs.tcp.size(); ++i) validate_tcp_route(s, at("spec.tcp", i), vs.tcp[i]);

  validate_export_to(s, "spec.exportTo", vs.export_to, false, false);
}

void validate(const DestinationRule& dr, Diagnostics& out) {
  Sink s(dr.meta, "DestinationRule", out);
  s.error("spec.host", validate_wildcard_domain(dr.host));
  validate_traffic_policy(s, "spec.trafficPolicy", dr.traffic_policy);

  std::set<std::string> names;
  for (size_t i = 0; i < dr.subsets.size(); ++i) {
    const Subset& subset = dr.subsets[i];
    std::string p = at("spec.subsets", i);
    if (!names.insert(subset.name).second) s.error(dot(p, "name"), "duplicate subset names: " + subset.name);
    s.error(dot(p, "name"), validate_subset_name(subset.name));
    validate_labels(s, dot(p, "labels"), subset.labels);
    validate_traffic_policy(s, dot(p, "trafficPolicy"), subset.traffic_policy);
  }

  validate_export_to(s, "spec.exportTo", dr.export_to, false, dr.workload_selector.has_value());
  if (dr.workload_selector) {
    validate_selector_labels(s, "spec.workloadSelector", *dr.workload_selector);
    if (dr.workload_selector->empty()) s.warning("spec.workloadSelector", "workload selector specified without labels");
  }
}

void validate(const Gateway& gw, Diagnostics& out) {
  Sink s(gw.meta, "Gateway", out);
  // The name becomes part of Envoy route names: a DNS label, no dots.
  if (!is_dns1123_label(gw.meta.name)) s.error("metadata.name", "invalid gateway name: " + go_quote(gw.meta.name));

  if (gw.servers.empty()) {
    s.error("spec.servers", "gateway must have at least one server");
  } else {
    for (size_t i = 0; i < gw.servers.size(); ++i) validate_server(s, at("spec.servers", i), gw.servers[i]);
  }

  std::set<std::string> port_names;
  for (size_t i = 0; i < gw.servers.size(); ++i) {
    const Server& server = gw.servers[i];
    std::string p = at("spec.servers", i);
    if (!port_names.insert(server.port.name).second) {
      s.error(dot(p, "port.name"), "port names in servers must be unique: duplicate name " + server.port.name);
    }
    if (!is_http(parse_protocol(server.port.protocol)) && server.tls && server.tls->https_redirect) {
      s.warning(dot(p, "tls.httpsRedirect"), "tls.httpsRedirect should only be used with http servers");
    }
  }
}

void validate(const Sidecar& sc, Diagnostics& out) {
  Sink s(sc.meta, "Sidecar", out);
  if (sc.egress.empty() && sc.ingress_count == 0 && !sc.outbound_traffic_policy && !sc.inbound_connection_pool) {
    s.error("spec", "sidecar: empty configuration provided");
    return;
  }
  if (sc.workload_selector) {
    if (sc.workload_selector->empty()) {
      s.warning("spec.workloadSelector",
                "sidecar: workload selector specified without labels, will be applied to all services in namespace");
    }
    validate_labels(s, "spec.workloadSelector.labels", *sc.workload_selector);
  }
  if (sc.ingress_count > 0 || sc.inbound_connection_pool) {
    s.warning(sc.ingress_count > 0 ? "spec.ingress" : "spec.inboundConnectionPool",
              "not applied by Sluice: it intercepts outbound traffic only");
  }
  std::set<uint32_t> ports;
  bool catch_all = false;
  for (size_t i = 0; i < sc.egress.size(); ++i) {
    const SidecarEgressListener& l = sc.egress[i];
    const std::string p = at("spec.egress", i);
    if (!l.port) {
      if (catch_all) {
        s.error(p, "sidecar: egress can have only one listener with empty port");
        continue;
      }
      if (i == sc.egress.size() - 1) {
        catch_all = true;
      } else {
        s.error(p, "sidecar: the egress listener with empty port should be the last listener in the list");
      }
    } else {
      const GatewayPort& port = *l.port;
      if (port.target_port > 0) s.error(dot(p, "port.targetPort"), "targetPort has no impact on Sidecars");
      if (!port.name.empty()) s.error(dot(p, "port.name"), validate_port_name(port.name));
      // Empty: sniffed, as on any port without a declared protocol.
      if (!port.protocol.empty() && parse_protocol(port.protocol) == Protocol::kUnsupported) {
        s.error(dot(p, "port.protocol"), "unsupported protocol: " + port.protocol);
      }
      if (port.number == 0) {
        // A unix domain socket listener: nothing Sluice intercepts.
        if (l.bind.rfind("unix://", 0) != 0) {
          s.error(dot(p, "bind"), "sidecar: ports with 0 value must have a unix domain socket bind address");
        }
      } else {
        s.error(dot(p, "port.number"), validate_port(port.number));
        if (!l.bind.empty() && !is_ip(l.bind)) s.error(dot(p, "bind"), l.bind + " is not a valid IP");
        if (!ports.insert(port.number).second) {
          s.error(dot(p, "port.number"), "sidecar: ports on IP bound listeners must be unique");
        }
      }
    }
    if (l.hosts.empty()) {
      s.error(dot(p, "hosts"), "sidecar: egress listener must contain at least one host");
      continue;
    }
    // Duplicates are warnings (Istio keeps them for compatibility).
    std::map<std::string, std::set<std::string>> seen;
    for (size_t j = 0; j < l.hosts.size(); ++j) {
      const std::string& h = l.hosts[j];
      const std::string hp = at(dot(p, "hosts"), j);
      const size_t slash = h.find('/');
      if (slash != std::string::npos) {
        std::string ns = h.substr(0, slash);
        const std::string svc = h.substr(slash + 1);
        if (ns == ".") ns = sc.meta.namespace_;
        std::set<std::string>& in_ns = seen[ns];
        if (svc != "*" ? (in_ns.count(svc) > 0 || in_ns.count("*") > 0) : !in_ns.empty()) {
          s.warning(hp, "duplicated egress host: " + h);
        }
        in_ns.insert(svc);
      }
      validate_namespace_slash_host(s, hp, h, /*gateway=*/false);
    }
    if (seen.count("*") && seen["*"].count("*") && seen.size() != 1) {
      s.warning(dot(p, "hosts"), "`*/*` host select all resources, no other hosts can be added");
    }
  }
  if (const auto& tp = sc.outbound_traffic_policy; tp && tp->egress_proxy) {
    const std::string p = "spec.outboundTrafficPolicy.egressProxy";
    if (tp->mode != OutboundTrafficPolicyMode::kAllowAny) {
      s.error(p, "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode");
    } else {
      s.error(dot(p, "host"), validate_fqdn(tp->egress_proxy->host));
      if (!tp->egress_proxy->port) {
        s.error(dot(p, "port"), "sidecar: egress_proxy port must be non-nil");
      } else {
        validate_destination(s, p, *tp->egress_proxy);
      }
    }
  }
}

void validate(const MeshConfig& mesh, Diagnostics& out) {
  auto report = [&](const char* field, std::string message) {
    Diagnostic d;
    d.severity = Severity::kError;
    d.message = std::move(message);
    d.location = {mesh.file, mesh.line, mesh.line ? 1u : 0u};
    d.field = field;
    out.add(std::move(d));
  };

  // Trust domain: dot-separated DNS labels, a trailing dot allowed.
  if (mesh.trust_domain.empty()) {
    report("trustDomain", "trustDomain: empty domain name not allowed");
  } else {
    std::string_view td = mesh.trust_domain;
    bool ok = true;
    size_t start = 0;
    while (true) {
      size_t d = td.find('.', start);
      std::string_view label = td.substr(start, d == std::string_view::npos ? std::string_view::npos : d - start);
      if (d == std::string_view::npos) {
        ok = ok && (label.empty() || is_dns1123_label(label));
        break;
      }
      ok = ok && is_dns1123_label(label);
      start = d + 1;
    }
    if (!ok) report("trustDomain", "trustDomain: trust domain name " + go_quote(td) + " invalid");
  }

  if (mesh.connect_timeout) {
    if (auto e = validate_duration(*mesh.connect_timeout)) {
      report("connectTimeout", "invalid connect timeout: " + *e);
    } else if (*mesh.connect_timeout > std::chrono::hours(1)) {
      report("connectTimeout", "invalid connect timeout: time " + go_duration(*mesh.connect_timeout) + " must be >1ms and <1h0m0s");
    }
  }

  // Istio does not validate the mesh tcpKeepalive; what Linux would not take
  // is a warning (the kernel's default is used), not a rejected config.
  if (mesh.tcp_keepalive) {
    keepalive_range_warnings(*mesh.tcp_keepalive, /*zero_too=*/true, [&](const char* field, const char* message) {
      Diagnostic d;
      d.severity = Severity::kWarning;
      d.message = message;
      d.location = {mesh.file, mesh.line, mesh.line ? 1u : 0u};
      d.field = std::string("tcpKeepalive.") + field;
      out.add(std::move(d));
    });
  }

  // Ours: Istio's proto parser rejects an unknown enum value before validation.
  if (mesh.access_log_encoding != "TEXT" && mesh.access_log_encoding != "JSON") {
    report("accessLogEncoding", "invalid accessLogEncoding " + go_quote(mesh.access_log_encoding) + ": must be TEXT or JSON");
  }
}

void validate(const InstallOptions& install, Diagnostics& out) {
  auto report = [&](const char* field, std::string message) {
    Diagnostic d;
    d.severity = Severity::kError;
    d.message = std::move(message);
    d.location = {install.file, 0, 0};
    d.field = field;
    out.add(std::move(d));
  };
  // Istio's sidecar injector checks these lists (pkg/kube/inject/validate.go);
  // unlike it we also take a bare address as a /32 or /128.
  auto ranges = [&](const char* field, const std::vector<std::string>& list) {
    for (const auto& r : list) {
      std::string v = r;
      v.erase(0, v.find_first_not_of(" \t"));
      v.erase(v.find_last_not_of(" \t") + 1);
      if (v == "*") continue;
      if (v.find('/') != std::string::npos ? parse_prefix(v) : is_ip(v)) continue;
      report(field, std::string(field) + " invalid: failed parsing cidr '" + r + "'");
    }
  };
  auto ports = [&](const char* field, const std::vector<std::string>& list) {
    for (const auto& r : list) {
      std::string v = r;
      v.erase(0, v.find_first_not_of(" \t"));
      v.erase(v.find_last_not_of(" \t") + 1);
      if (v == "*") continue;
      int64_t n = 0;
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (v.empty() || ec != std::errc() || ptr != v.data() + v.size()) {
        report(field, std::string(field) + " invalid: failed parsing port '" + r + "'");
      } else if (auto e = validate_port(n)) {
        report(field, std::string(field) + " invalid: " + *e);
      }
    }
  };
  ranges("includeIPRanges", install.include_ip_ranges);
  ranges("excludeIPRanges", install.exclude_ip_ranges);
  ports("includeOutboundPorts", install.include_outbound_ports);
  ports("excludeOutboundPorts", install.exclude_outbound_ports);
}

Diagnostics validate(const ConfigSet& config) {
  Diagnostics out;
  validate(config.mesh, out);
  validate(config.install, out);

  // Resources in load order: by the file's position in source_files, then line.
  struct Item {
    size_t file_index;
    uint32_t line;
    size_t seq;
    std::function<void()> run;
  };
  auto file_index = [&](const std::string& file) {
    auto it = std::find(config.source_files.begin(), config.source_files.end(), file);
    return static_cast<size_t>(it - config.source_files.begin());
  };
  std::vector<Item> items;
  auto add = [&](const auto& resource) {
    items.push_back({file_index(resource.meta.file), resource.meta.line, items.size(),
                     [&resource, &out] { validate(resource, out); }});
  };
  for (const auto& r : config.service_entries) add(r);
  for (const auto& r : config.virtual_services) add(r);
  for (const auto& r : config.destination_rules) add(r);
  for (const auto& r : config.gateways) add(r);
  for (const auto& r : config.sidecars) add(r);
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return std::tie(a.file_index, a.line, a.seq) < std::tie(b.file_index, b.line, b.seq);
  });
  for (const auto& item : items) item.run();
  return out;
}

}  // namespace sluice::config
