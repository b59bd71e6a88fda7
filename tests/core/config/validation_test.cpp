// Per-resource validation: every rule has a failing case with Istio's exact
// message, the field path it blames and the file:line:column it points at.
//
// Resources are built in C++ here; location_test-style cases that go through
// the YAML loader live at the end of this file (ValidationLocations).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/config/loader.h"
#include "core/config/validation.h"

namespace sluice::config {
namespace {

ObjectMeta meta(const char* kind, const char* name, const char* ns = "default") {
  ObjectMeta m;
  m.api_version = "networking.istio.io/v1alpha3";
  m.kind = kind;
  m.name = name;
  m.namespace_ = ns;
  m.file = "test.yaml";
  m.line = 1;
  m.fields.set("", 1, 1);
  return m;
}

template <typename T>
Diagnostics run(const T& resource) {
  Diagnostics d;
  validate(resource, d);
  return d;
}

std::string dump(const Diagnostics& d) {
  std::string out;
  for (const auto& item : d.items()) out += "  " + item.format() + "\n";
  return out.empty() ? "  (none)\n" : out;
}

// The diagnostic with exactly this message (and field, when given), or nullptr.
const Diagnostic* find(const Diagnostics& d, const std::string& message, const char* field = nullptr) {
  for (const auto& item : d.items()) {
    if (item.message == message && (!field || item.field == field)) return &item;
  }
  return nullptr;
}

// A diagnostic with this message at this field path, of this severity.
#define EXPECT_FINDING(diags, msg, path, sev)                                                          \
  do {                                                                                                 \
    const Diagnostics& diags_ = (diags);                                                               \
    const Diagnostic* found_ = find(diags_, msg, path);                                                \
    ASSERT_NE(found_, nullptr) << "missing: " << (path) << ": " << (msg) << "\nhave:\n" << dump(diags_); \
    EXPECT_EQ(found_->severity, sev) << (msg);                                                         \
    EXPECT_TRUE(found_->code.empty());                                                                 \
  } while (0)

#define EXPECT_DIAG(diags, msg, path) EXPECT_FINDING(diags, msg, path, Severity::kError)
#define EXPECT_WARN(diags, msg, path) EXPECT_FINDING(diags, msg, path, Severity::kWarning)

#define EXPECT_CLEAN(diags)                       \
  do {                                            \
    const Diagnostics& diags_ = (diags);          \
    EXPECT_TRUE(diags_.empty()) << dump(diags_);  \
  } while (0)

// ---------------------------------------------------------------------------
// The walkthrough's resources (seed/egress-walkthrough.md), built by hand.

ServiceEntry cnn_service_entry() {
  ServiceEntry se;
  se.meta = meta("ServiceEntry", "cnn");
  se.hosts = {"edition.cnn.com"};
  se.ports = {{80, "HTTP", "http-port", 0}, {443, "HTTPS", "https", 0}};
  se.resolution = Resolution::kDns;
  return se;
}

Gateway egress_gateway() {
  Gateway gw;
  gw.meta = meta("Gateway", "istio-egressgateway");
  gw.selector = {{"istio", "egressgateway"}};
  Server s;
  s.port = {80, "HTTPS", "https", 0};
  s.hosts = {"edition.cnn.com"};
  ServerTLSSettings tls;
  tls.mode = ServerTLSMode::kMutual;
  tls.server_certificate = "/etc/certs/cert-chain.pem";
  tls.private_key = "/etc/certs/key.pem";
  tls.ca_certificates = "/etc/certs/root-cert.pem";
  s.tls = tls;
  gw.servers = {s};
  return gw;
}

DestinationRule egress_destination_rule() {
  DestinationRule dr;
  dr.meta = meta("DestinationRule", "egressgateway-for-cnn");
  dr.host = "istio-egressgateway.istio-system.svc.cluster.local";
  Subset cnn;
  cnn.name = "cnn";
  TrafficPolicy tp;
  tp.load_balancer = LoadBalancerSettings{SimpleLB::kRoundRobin, std::nullopt};
  PortTrafficPolicy p80;
  p80.port = PortSelector{80};
  ClientTLSSettings tls;
  tls.mode = ClientTLSMode::kIstioMutual;
  tls.sni = "edition.cnn.com";
  p80.tls = tls;
  tp.port_level_settings = {p80};
  cnn.traffic_policy = tp;
  dr.subsets = {cnn};
  return dr;
}

HTTPRouteDestination dest(const char* host, const char* subset = "", uint32_t port = 0, int weight = 0,
                          bool weight_set = false) {
  HTTPRouteDestination d;
  d.destination.host = host;
  d.destination.subset = subset;
  if (port) d.destination.port = PortSelector{port};
  d.weight = weight;
  d.weight_set = weight_set;
  return d;
}

VirtualService egress_virtual_service() {
  VirtualService vs;
  vs.meta = meta("VirtualService", "direct-cnn-through-egress-gateway");
  vs.hosts = {"edition.cnn.com"};
  vs.gateways = {"istio-egressgateway", "mesh"};
  HTTPRoute to_gateway;
  HTTPMatchRequest m1;
  m1.gateways = {"mesh"};
  m1.port = 80;
  to_gateway.match = {m1};
  to_gateway.route = {dest("istio-egressgateway.istio-system.svc.cluster.local", "cnn", 80, 100, true)};
  HTTPRoute to_cnn;
  HTTPMatchRequest m2;
  m2.gateways = {"istio-egressgateway"};
  m2.port = 80;
  to_cnn.match = {m2};
  to_cnn.route = {dest("edition.cnn.com", "", 80, 100, true)};
  vs.http = {to_gateway, to_cnn};
  return vs;
}

TEST(Validation, WalkthroughResourcesAreValid) {
  EXPECT_CLEAN(run(cnn_service_entry()));
  EXPECT_CLEAN(run(egress_gateway()));
  EXPECT_CLEAN(run(egress_destination_rule()));
  EXPECT_CLEAN(run(egress_virtual_service()));
}

TEST(Validation, DiagnosticCarriesResourceIdentityAndLocation) {
  VirtualService vs = egress_virtual_service();
  vs.meta.fields.set("spec.http[1].route", 30, 5);
  vs.meta.fields.set("spec.http[1].route[0].weight", 35, 15);
  vs.http[1].route[0].weight = -1;
  Diagnostics d = run(vs);
  const Diagnostic* w = find(d, "weight -1 < 0");
  ASSERT_NE(w, nullptr) << dump(d);
  EXPECT_EQ(w->kind, "VirtualService");
  EXPECT_EQ(w->namespace_, "default");
  EXPECT_EQ(w->name, "direct-cnn-through-egress-gateway");
  EXPECT_EQ(w->field, "spec.http[1].route[0].weight");
  EXPECT_EQ(w->location.str(), "test.yaml:35:15");
  EXPECT_EQ(w->format(),
            "test.yaml:35:15: error: VirtualService default/direct-cnn-through-egress-gateway: "
            "spec.http[1].route[0].weight: weight -1 < 0");
}

TEST(Validation, LocationFallsBackToNearestRecordedAncestor) {
  VirtualService vs = egress_virtual_service();
  vs.meta.fields.set("spec.http[0]", 20, 3);
  vs.http[0].route = {dest("a.example.com", "", 0, 0, true), dest("b.example.com", "", 0, 0, true)};
  Diagnostics d = run(vs);
  const Diagnostic* w = find(d, "total destination weight = 0");
  ASSERT_NE(w, nullptr) << dump(d);
  EXPECT_EQ(w->field, "spec.http[0].route");
  EXPECT_EQ(w->location.str(), "test.yaml:20:3");
}

// ---------------------------------------------------------------------------
// VirtualService

TEST(VirtualServiceValidation, NeedsARouteSection) {
  VirtualService vs = egress_virtual_service();
  vs.http.clear();
  EXPECT_DIAG(run(vs), "http, tcp or tls must be provided in virtual service", "spec");
}

TEST(VirtualServiceValidation, NeedsAHost) {
  VirtualService vs = egress_virtual_service();
  vs.hosts.clear();
  EXPECT_DIAG(run(vs), "virtual service must have at least one host", "spec.hosts");
}

TEST(VirtualServiceValidation, StarHostNotAllowedOnMesh) {
  VirtualService vs = egress_virtual_service();
  vs.hosts = {"*"};
  EXPECT_DIAG(run(vs), "wildcard host * is not allowed for virtual services bound to the mesh gateway", "spec.hosts[0]");
  vs.gateways = {};  // omitted means mesh
  EXPECT_DIAG(run(vs), "wildcard host * is not allowed for virtual services bound to the mesh gateway", "spec.hosts[0]");
  vs.gateways = {"istio-egressgateway"};  // a gateway alone may serve every host
  vs.http[0].match[0].gateways = {"istio-egressgateway"};
  EXPECT_CLEAN(run(vs));
}

TEST(VirtualServiceValidation, InvalidHostName) {
  VirtualService vs = egress_virtual_service();
  vs.hosts = {"edition_cnn.com", "10.0.0.1", "foo.*.com"};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "domain name \"edition_cnn.com\" invalid (label \"edition_cnn\" invalid)", "spec.hosts[0]");
  EXPECT_DIAG(d, "domain name \"*.com\" invalid (label \"*\" invalid)", "spec.hosts[2]");
  EXPECT_EQ(d.error_count(), 2u) << dump(d);  // an IP is accepted as a host
}

TEST(VirtualServiceValidation, DuplicateHosts) {
  VirtualService vs = egress_virtual_service();
  vs.hosts = {"*.cnn.com", "edition.cnn.com"};
  EXPECT_DIAG(run(vs), "duplicate hosts in virtual service: *.cnn.com & edition.cnn.com", "spec.hosts[1]");
}

TEST(VirtualServiceValidation, TotalWeightZeroOnlyWithSeveralDestinations) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].route = {dest("a.example.com", "", 0, 0, true), dest("b.example.com", "", 0, 0, true)};
  EXPECT_DIAG(run(vs), "total destination weight = 0", "spec.http[1].route");
  // A lone destination takes all traffic, whatever its weight says (Istio).
  vs.http[1].route = {dest("a.example.com", "", 0, 0, true)};
  EXPECT_CLEAN(run(vs));
  // Unset weights on several destinations are all zero too.
  vs.http[1].route = {dest("a.example.com"), dest("b.example.com")};
  EXPECT_DIAG(run(vs), "total destination weight = 0", "spec.http[1].route");
}

TEST(VirtualServiceValidation, NegativeWeight) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].route = {dest("a.example.com", "", 0, -1, true), dest("b.example.com", "", 0, 101, true)};
  EXPECT_DIAG(run(vs), "weight -1 < 0", "spec.http[1].route[0].weight");
}

TEST(VirtualServiceValidation, TcpAndTlsWeights) {
  VirtualService vs;
  vs.meta = meta("VirtualService", "tcp");
  vs.hosts = {"db.example.com"};
  TCPRoute r;
  RouteDestination a, b;
  a.destination.host = "a.example.com";
  a.weight = 5;
  b.destination.host = "b.example.com";
  b.weight = -5;
  r.route = {a, b};
  vs.tcp = {r};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "weight -5 < 0", "spec.tcp[0].route[1].weight");
  EXPECT_DIAG(d, "total destination weight = 0", "spec.tcp[0].route");
}

TEST(VirtualServiceValidation, DestinationNeedsAHost) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].route = {dest("")};
  EXPECT_DIAG(run(vs), "empty domain name not allowed", "spec.http[1].route[0].destination.host");
  vs.http[1].route = {dest("*")};
  EXPECT_DIAG(run(vs), "invalid destination host *", "spec.http[1].route[0].destination.host");
}

TEST(VirtualServiceValidation, DestinationSubsetAndPort) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].route = {dest("edition.cnn.com", "V_1", 70000)};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "subset name is invalid: V_1", "spec.http[1].route[0].destination.subset");
  EXPECT_DIAG(d, "port number 70000 must be in the range 1..65535", "spec.http[1].route[0].destination.port.number");
}

TEST(VirtualServiceValidation, RouteRedirectDirectResponseAreExclusive) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].redirect = HTTPRedirect{"/new", "", 0, "", 301};
  EXPECT_DIAG(run(vs), "HTTP route cannot contain both route and redirect", "spec.http[1]");

  vs = egress_virtual_service();
  vs.http[1].direct_response = HTTPDirectResponse{418, std::string("teapot")};
  EXPECT_DIAG(run(vs), "HTTP route cannot contain both route and direct_response", "spec.http[1]");

  vs = egress_virtual_service();
  vs.http[1].route.clear();
  vs.http[1].redirect = HTTPRedirect{"/new", "", 0, "", 301};
  vs.http[1].direct_response = HTTPDirectResponse{418, std::nullopt};
  EXPECT_DIAG(run(vs), "HTTP route rule cannot contain both direct_response and redirect", "spec.http[1]");

  vs = egress_virtual_service();
  vs.http[1].route.clear();
  EXPECT_DIAG(run(vs), "HTTP route, redirect or direct_response is required", "spec.http[1]");

  vs = egress_virtual_service();
  vs.http[1].route.clear();
  vs.http[1].redirect = HTTPRedirect{"/new", "", 0, "", 301};
  vs.http[1].rewrite = HTTPRewrite{"/x", "", std::nullopt};
  vs.http[1].fault = HTTPFaultInjection{};
  vs.http[1].fault->abort = HTTPFaultInjection::Abort{503, std::nullopt};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "HTTP route rule cannot contain both rewrite and redirect", "spec.http[1]");
  EXPECT_DIAG(d, "HTTP route cannot contain both fault and redirect", "spec.http[1]");
}

TEST(VirtualServiceValidation, RedirectAndDirectResponseFields) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].route.clear();
  vs.http[1].redirect = HTTPRedirect{"", "", 0, "", 301};
  EXPECT_DIAG(run(vs), "redirect must specify URI, authority, scheme, or port", "spec.http[1].redirect");
  vs.http[1].redirect = HTTPRedirect{"/x", "", 0, "", 200};
  EXPECT_DIAG(run(vs), "200 is not a valid redirect code, must be 3xx", "spec.http[1].redirect.redirectCode");
  vs.http[1].redirect = HTTPRedirect{"/x", "", 0, "ftp", 301};
  EXPECT_DIAG(run(vs), "invalid redirect scheme, must be \"http\" or \"https\"", "spec.http[1].redirect.scheme");
  vs.http[1].redirect = HTTPRedirect{"/x", "", 70000, "", 301};
  EXPECT_DIAG(run(vs), "port number 70000 must be in the range 1..65535", "spec.http[1].redirect.port");

  vs.http[1].redirect.reset();
  vs.http[1].direct_response = HTTPDirectResponse{99, std::nullopt};
  EXPECT_DIAG(run(vs), "HTTP status 99 is not in range 200-599", "spec.http[1].directResponse.status");
  vs.http[1].direct_response = HTTPDirectResponse{200, std::string(2 * 1024 * 1024, 'x')};
  EXPECT_DIAG(run(vs), "large direct_responses may impact control plane performance, must be less than 1MB",
              "spec.http[1].directResponse.body");
  vs.http[1].direct_response = HTTPDirectResponse{200, std::string(200 * 1024, 'x')};
  EXPECT_WARN(run(vs), "large direct_responses may impact control plane performance", "spec.http[1].directResponse.body");
}

TEST(VirtualServiceValidation, MatchPortRange) {
  VirtualService vs = egress_virtual_service();
  vs.http[0].match[0].port = 65536;
  EXPECT_DIAG(run(vs), "port number 65536 must be in the range 1..65535", "spec.http[0].match[0].port");
}

TEST(VirtualServiceValidation, InvalidRegex) {
  VirtualService vs = egress_virtual_service();
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, "/api/(v1|v2"};
  EXPECT_DIAG(run(vs),
              "\"uri\": error parsing regexp: missing closing ): `/api/(v1|v2`; Istio uses RE2 style regex-based "
              "match (https://github.com/google/re2/wiki/Syntax)",
              "spec.http[0].match[0].uri.regex");

  vs.http[0].match[0].uri.reset();
  vs.http[0].match[0].headers["x-user"] = StringMatch{StringMatch::Kind::kRegex, "[a-z"};
  EXPECT_DIAG(run(vs),
              "\"headers\": error parsing regexp: missing closing ]: `[a-z`; Istio uses RE2 style regex-based "
              "match (https://github.com/google/re2/wiki/Syntax)",
              "spec.http[0].match[0].headers.x-user.regex");
}

TEST(VirtualServiceValidation, RegexAcceptsRe2SyntaxAndRefusesPerlOnly) {
  VirtualService vs = egress_virtual_service();
  for (const char* ok : {"(?i)^/api/.*", "(?P<ver>v[0-9]+)/x", "^/a{2}b{1,}c$", "x{", "\\pL+\\z", "[[:alpha:]]+",
                         "\\Q.*\\E", "a.*?b"}) {
    vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, ok};
    SCOPED_TRACE(ok);
    EXPECT_CLEAN(run(vs));
  }
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, "(?=foo)bar"};
  EXPECT_DIAG(run(vs),
              "\"uri\": error parsing regexp: invalid or unsupported Perl syntax: `(?=`; Istio uses RE2 style "
              "regex-based match (https://github.com/google/re2/wiki/Syntax)",
              "spec.http[0].match[0].uri.regex");
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, "(a)\\1"};
  EXPECT_DIAG(run(vs),
              "\"uri\": error parsing regexp: invalid escape sequence: `\\1`; Istio uses RE2 style regex-based "
              "match (https://github.com/google/re2/wiki/Syntax)",
              "spec.http[0].match[0].uri.regex");
  const char* kSuffix = "; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)";
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, "/a**"};
  EXPECT_DIAG(run(vs), std::string("\"uri\": error parsing regexp: invalid nested repetition operator: `**`") + kSuffix,
              "spec.http[0].match[0].uri.regex");
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, "*.html"};
  EXPECT_DIAG(run(vs), std::string("\"uri\": error parsing regexp: missing argument to repetition operator: `*`") + kSuffix,
              "spec.http[0].match[0].uri.regex");
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, "/x{1001}"};
  EXPECT_DIAG(run(vs), std::string("\"uri\": error parsing regexp: invalid repeat count: `{1001}`") + kSuffix,
              "spec.http[0].match[0].uri.regex");
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, ""};
  EXPECT_DIAG(run(vs), "\"uri\": regex string match should not be empty", "spec.http[0].match[0].uri.regex");
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kRegex, std::string(1025, 'a')};
  EXPECT_DIAG(run(vs), "\"uri\": regex is too large, max length allowed is 1024", "spec.http[0].match[0].uri.regex");
}

TEST(VirtualServiceValidation, EmptyPrefixMatch) {
  VirtualService vs = egress_virtual_service();
  vs.http[0].match[0].uri = StringMatch{StringMatch::Kind::kPrefix, ""};  // allowed for uri
  EXPECT_CLEAN(run(vs));
  vs.http[0].match[0].authority = StringMatch{StringMatch::Kind::kPrefix, ""};
  EXPECT_DIAG(run(vs), "\"authority\": prefix string match should not be empty", "spec.http[0].match[0].authority.prefix");
}

TEST(VirtualServiceValidation, HeaderNames) {
  VirtualService vs = egress_virtual_service();
  vs.http[0].match[0].headers["bad header"] = StringMatch{StringMatch::Kind::kExact, "x"};
  vs.http[0].match[0].headers["@request.auth.claims.group"] = StringMatch{StringMatch::Kind::kExact, "x"};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "header name bad header is not a valid header name", "spec.http[0].match[0].headers.bad header");
  EXPECT_EQ(d.error_count(), 1u) << dump(d);

  vs = egress_virtual_service();
  Headers h;
  h.request = HeaderOperations{};
  h.request->set[":path"] = "/x";
  h.request->remove = {"Host"};
  h.response = HeaderOperations{};
  h.response->add["x-ok"] = "100%";
  vs.http[1].headers = h;
  d = run(vs);
  EXPECT_DIAG(d, "invalid header \":path\": header cannot have \":\" prefix", "spec.http[1].headers.request.set.:path");
  EXPECT_DIAG(d, "invalid header \"Host\": cannot set Host header", "spec.http[1].headers.request.remove[0]");
  EXPECT_DIAG(d, "header value configuration: invalid header configuration. Un-escaped %",
              "spec.http[1].headers.response.add.x-ok");
}

TEST(VirtualServiceValidation, AuthorityRewrittenTwice) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].rewrite = HTTPRewrite{"", "a.example.com", std::nullopt};
  Headers h;
  h.request = HeaderOperations{};
  h.request->set[":authority"] = "b.example.com";
  vs.http[1].headers = h;
  EXPECT_DIAG(run(vs),
              "authority header cannot be set multiple times: have \"a.example.com\", attempting to set \"b.example.com\"",
              "spec.http[1].headers.request.set.:authority");
}

// Istio's validateHTTPRewrite and validateURIRegexRewrite (their
// errors.Join on one line).
TEST(VirtualServiceValidation, UriRegexRewrite) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].rewrite = HTTPRewrite{"/x", "", HTTPRewrite::RegexRewrite{"a", "b"}};
  EXPECT_DIAG(run(vs), "rewrite may only contain one of URI or UriRegexRewrite", "spec.http[1].rewrite");
  vs.http[1].rewrite = HTTPRewrite{"", "", HTTPRewrite::RegexRewrite{"a", ""}};
  EXPECT_DIAG(run(vs),
              "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified",
              "spec.http[1].rewrite.uriRegexRewrite");
  vs.http[1].rewrite = HTTPRewrite{"", "", HTTPRewrite::RegexRewrite{"(?P<x", "b"}};
  Diagnostics d = run(vs);
  ASSERT_EQ(d.error_count(), 1u) << dump(d);
  EXPECT_EQ(d.items()[0].field, "spec.http[1].rewrite.uriRegexRewrite.match");
  EXPECT_EQ(d.items()[0].message.rfind("UriRegexRewrite has errors: \"HTTPRewrite.UriRegexRewrite.Match\": ", 0), 0u)
      << d.items()[0].message;
  vs.http[1].rewrite = HTTPRewrite{"", "", HTTPRewrite::RegexRewrite{"^/a/(.*)$", "/b/\\1"}};
  EXPECT_CLEAN(run(vs));
}

TEST(VirtualServiceValidation, RewriteRetriesTimeoutFaultMirror) {
  VirtualService vs = egress_virtual_service();
  vs.http[1].rewrite = HTTPRewrite{"", "", std::nullopt};
  vs.http[1].retries = HTTPRetry{-1, std::nullopt, "5xx,bogus,503", false, Duration(0)};
  vs.http[1].timeout = Duration(0);
  vs.http[1].mirror = Destination{"*", "", std::nullopt};
  vs.http[1].mirror_percentage = Percent{101};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d,
              "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or "
              "UriRegexRewrite may be specified",
              "spec.http[1].rewrite");
  EXPECT_DIAG(d, "attempts cannot be negative", "spec.http[1].retries.attempts");
  EXPECT_DIAG(d, "\"bogus\" is not a valid retryOn policy", "spec.http[1].retries.retryOn");
  EXPECT_DIAG(d, "duration must be greater than 1ms", "spec.http[1].retries.backoff");
  EXPECT_EQ(find(d, "\"503\" is not a valid retryOn policy"), nullptr);
  EXPECT_DIAG(d, "duration must be greater than 1ms", "spec.http[1].timeout");
  EXPECT_DIAG(d, "invalid destination host *", "spec.http[1].mirror.host");
  EXPECT_DIAG(d, "mirror_percentage must have a max value of 100 (it has 101.000000)", "spec.http[1].mirrorPercentage");

  // mirrors[]: Istio's validateHTTPMirrors, and not with mirror.
  vs = egress_virtual_service();
  vs.http[1].mirrors = {HTTPMirrorPolicy{Destination{"*", "", std::nullopt}, Percent{-1}},
                        HTTPMirrorPolicy{std::nullopt, std::nullopt},
                        HTTPMirrorPolicy{Destination{"shadow.example", "", std::nullopt}, Percent{100.5}}};
  d = run(vs);
  EXPECT_DIAG(d, "invalid destination host *", "spec.http[1].mirrors[0].destination.host");
  EXPECT_DIAG(d, "mirror percentage must have a min value of 0 (it has -1.000000)", "spec.http[1].mirrors[0].percentage");
  EXPECT_DIAG(d, "destination is required for mirrors", "spec.http[1].mirrors[1]");
  EXPECT_DIAG(d, "mirror percentage must have a max value of 100 (it has 100.500000)",
              "spec.http[1].mirrors[2].percentage");
  EXPECT_EQ(d.error_count(), 4u) << dump(d);
  vs.http[1].mirrors = {HTTPMirrorPolicy{Destination{"shadow.example", "", std::nullopt}, std::nullopt}};
  EXPECT_CLEAN(run(vs));
  vs.http[1].mirror = Destination{"shadow.example", "", std::nullopt};
  EXPECT_DIAG(run(vs), "HTTP route cannot contain both mirror and mirrors", "spec.http[1]");

  // Istio 1.4's mirror_percent.
  vs = egress_virtual_service();
  vs.http[1].mirror_percent = 150;
  EXPECT_DIAG(run(vs), "mirror_percent must have a max value of 100 (it has 150)", "spec.http[1].mirrorPercent");

  vs = egress_virtual_service();
  vs.http[1].retries = HTTPRetry{0, Duration(1000), "", false, std::nullopt};
  EXPECT_DIAG(run(vs), "http retry policy configured when attempts are set to 0 (disabled)", "spec.http[1].retries");

  vs = egress_virtual_service();
  vs.http[1].fault = HTTPFaultInjection{};
  EXPECT_DIAG(run(vs), "HTTP fault injection must have an abort and/or a delay", "spec.http[1].fault");
  vs.http[1].fault->abort = HTTPFaultInjection::Abort{700, Percent{150}};
  d = run(vs);
  EXPECT_DIAG(d, "HTTP status 700 is not in range 200-599", "spec.http[1].fault.abort.httpStatus");
  EXPECT_DIAG(d, "percentage 150 is neither 0.0, nor in range [0.0001, 100.0]", "spec.http[1].fault.abort.percentage");
  vs.http[1].fault->abort = HTTPFaultInjection::Abort{0, std::nullopt};
  EXPECT_WARN(run(vs), "abort configured, but error type not set", "spec.http[1].fault.abort");
}

TEST(VirtualServiceValidation, GatewayNames) {
  VirtualService vs = egress_virtual_service();
  vs.gateways = {"istio_egress", "istio-system/", "Bad_NS/gw", "istio-egressgateway.istio-system"};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "domain name \"istio_egress\" invalid (label \"istio_egress\" invalid)", "spec.gateways[0]");
  EXPECT_DIAG(d, "config namespace and gateway name cannot be empty", "spec.gateways[1]");
  EXPECT_DIAG(d, "invalid value for gateway name: \"\"", "spec.gateways[1]");
  EXPECT_DIAG(d, "invalid value for namespace: \"Bad_NS\"", "spec.gateways[2]");
  EXPECT_WARN(d,
              "using legacy gatewayName format \"istio-egressgateway.istio-system\"; prefer the <namespace>/<name> "
              "format: \"istio-system/istio-egressgateway\"",
              "spec.gateways[3]");

  vs = egress_virtual_service();
  vs.http[0].match[0].gateways = {"bad/gw_x"};
  EXPECT_DIAG(run(vs), "invalid value for gateway name: \"gw_x\"", "spec.http[0].match[0].gateways[0]");
}

TEST(VirtualServiceValidation, SourceLabelsAndNamespace) {
  VirtualService vs = egress_virtual_service();
  vs.http[0].match[0].source_labels = {{"app", "sleep!"}, {"-bad", "x"}};
  vs.http[0].match[0].source_namespace = "Not_A_Label";
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "invalid tag value: \"sleep!\"", "spec.http[0].match[0].sourceLabels.app");
  EXPECT_DIAG(d, "invalid tag key: \"-bad\"", "spec.http[0].match[0].sourceLabels.-bad");
  EXPECT_DIAG(d, "sourceNamespace match Not_A_Label is invalid", "spec.http[0].match[0].sourceNamespace");
}

VirtualService tls_passthrough_vs() {
  VirtualService vs;
  vs.meta = meta("VirtualService", "tls-cnn");
  vs.hosts = {"edition.cnn.com"};
  TLSRoute r;
  TLSMatchAttributes m;
  m.sni_hosts = {"edition.cnn.com"};
  m.port = 443;
  r.match = {m};
  RouteDestination d;
  d.destination.host = "edition.cnn.com";
  d.destination.port = PortSelector{443};
  r.route = {d};
  vs.tls = {r};
  return vs;
}

TEST(VirtualServiceValidation, TlsRoutes) {
  EXPECT_CLEAN(run(tls_passthrough_vs()));

  VirtualService vs = tls_passthrough_vs();
  vs.tls[0].match[0].sni_hosts.clear();
  EXPECT_DIAG(run(vs), "TLS match must have at least one SNI host", "spec.tls[0].match[0]");

  vs = tls_passthrough_vs();
  vs.tls[0].match[0].sni_hosts = {"www.google.com"};
  EXPECT_DIAG(run(vs),
              "SNI host \"www.google.com\" is not a compatible subset of any of the virtual service hosts: "
              "[edition.cnn.com]",
              "spec.tls[0].match[0].sniHosts[0]");

  vs = tls_passthrough_vs();
  vs.hosts = {"*.cnn.com", "cnn.io"};
  vs.tls[0].match[0].sni_hosts = {"edition.cnn.com", "*.com"};
  EXPECT_DIAG(run(vs),
              "SNI host \"*.com\" is not a compatible subset of any of the virtual service hosts: [*.cnn.com, cnn.io]",
              "spec.tls[0].match[0].sniHosts[1]");

  vs = tls_passthrough_vs();
  vs.tls[0].match.clear();
  vs.tls[0].route.clear();
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "TLS route must have at least one match condition", "spec.tls[0]");
  EXPECT_DIAG(d, "TLS route is required", "spec.tls[0]");

  vs = tls_passthrough_vs();
  vs.tls[0].match[0].destination_subnets = {"10.0.0.0/33", "300.1.1.1"};
  d = run(vs);
  EXPECT_DIAG(d, "10.0.0.0/33 is not a valid CIDR block", "spec.tls[0].match[0].destinationSubnets[0]");
  EXPECT_DIAG(d, "300.1.1.1 is not a valid IP", "spec.tls[0].match[0].destinationSubnets[1]");
}

TEST(VirtualServiceValidation, TcpRouteRequired) {
  VirtualService vs;
  vs.meta = meta("VirtualService", "tcp");
  vs.hosts = {"db.example.com"};
  vs.tcp = {TCPRoute{}};
  EXPECT_DIAG(run(vs), "TCP route is required", "spec.tcp[0]");
}

TEST(VirtualServiceValidation, ExportTo) {
  VirtualService vs = egress_virtual_service();
  vs.export_to = {"default", ".", "~", "Bad_Ns"};
  Diagnostics d = run(vs);
  EXPECT_DIAG(d, "duplicate entries in exportTo: . and current namespace default", "spec.exportTo[1]");
  EXPECT_DIAG(d, "exportTo ~ (none) is not allowed for Istio configuration objects", "spec.exportTo[2]");
  EXPECT_DIAG(d, "only .,*,~, or a valid DNS 1123 label is allowed as exportTo entry", "spec.exportTo[3]");
  vs.export_to = {"*", "other"};
  EXPECT_DIAG(run(vs), "cannot have both public (*) and non-public exportTo values for a resource", "spec.exportTo");
}

// ---------------------------------------------------------------------------
// DestinationRule

TEST(DestinationRuleValidation, HostRequired) {
  DestinationRule dr = egress_destination_rule();
  dr.host = "";
  EXPECT_DIAG(run(dr), "empty domain name not allowed", "spec.host");
  dr.host = "bad_host.example.com";
  EXPECT_DIAG(run(dr), "domain name \"bad_host.example.com\" invalid (label \"bad_host\" invalid)", "spec.host");
}

TEST(DestinationRuleValidation, Subsets) {
  DestinationRule dr = egress_destination_rule();
  Subset dup;
  dup.name = "cnn";
  Subset bad;
  bad.name = "v1.0";
  bad.labels = {{"version", "v1 0"}};
  Subset empty;
  dr.subsets.push_back(dup);
  dr.subsets.push_back(bad);
  dr.subsets.push_back(empty);
  Diagnostics d = run(dr);
  EXPECT_DIAG(d, "duplicate subset names: cnn", "spec.subsets[1].name");
  EXPECT_DIAG(d, "subset name is invalid: v1.0", "spec.subsets[2].name");
  EXPECT_DIAG(d, "invalid tag value: \"v1 0\"", "spec.subsets[2].labels.version");
  EXPECT_DIAG(d, "subset name cannot be empty", "spec.subsets[3].name");
}

// trafficPolicy.tunnel, with Istio's messages (validateTunnelSettings); a
// policy with only a tunnel has a field. POST passes Istio's check, but
// Sluice tunnels with CONNECT only: a warning says its connections are refused.
TEST(DestinationRuleValidation, Tunnel) {
  DestinationRule dr = egress_destination_rule();
  Subset& via = dr.subsets.emplace_back();
  via.name = "via-proxy";
  via.traffic_policy.emplace().tunnel = TunnelSettings{"", "external.example.com", 443};
  EXPECT_CLEAN(run(dr));
  via.traffic_policy->tunnel = TunnelSettings{"CONNECT", "192.0.2.7", 5432};
  EXPECT_CLEAN(run(dr));
  via.traffic_policy->tunnel = TunnelSettings{"GET", "bad_host", 0};
  Diagnostics d = run(dr);
  const std::string path = "spec.subsets[1].trafficPolicy.tunnel";
  EXPECT_DIAG(d, "tunnel protocol must be \"CONNECT\" or \"POST\"", path.c_str());
  EXPECT_DIAG(d,
              "tunnel target host must be valid FQDN or IP address: domain name \"bad_host\" invalid (label "
              "\"bad_host\" invalid); bad_host is not a valid IP",
              path.c_str());
  EXPECT_DIAG(d, "tunnel target port is invalid: port number 0 must be in the range 1..65535", path.c_str());
  via.traffic_policy->has_proxy_protocol = true;
  EXPECT_DIAG(run(dr), "tunnel and proxyProtocol must not be set together", "spec.subsets[1].trafficPolicy");
  via.traffic_policy->has_proxy_protocol = false;
  via.traffic_policy->tunnel = TunnelSettings{"POST", "external.example.com", 443};
  EXPECT_WARN(run(dr),
              "tunnel protocol POST is not supported by Sluice (HTTP/1.1 CONNECT only): connections routed through "
              "this tunnel are refused",
              path.c_str());
}

TEST(DestinationRuleValidation, MutualTlsNeedsClientCertificateAndKey) {
  DestinationRule dr = egress_destination_rule();
  TrafficPolicy tp;
  ClientTLSSettings tls;
  tls.mode = ClientTLSMode::kMutual;
  tp.tls = tls;
  dr.traffic_policy = tp;
  Diagnostics d = run(dr);
  EXPECT_DIAG(d, "client certificate required for mutual tls", "spec.trafficPolicy.tls");
  EXPECT_DIAG(d, "private key required for mutual tls", "spec.trafficPolicy.tls");

  // With a credential the files come from the secret, and must not be given.
  dr.traffic_policy->tls->credential_name = "client-credential";
  EXPECT_CLEAN(run(dr));
  dr.traffic_policy->tls->ca_certificates = "/etc/ca.pem";
  EXPECT_DIAG(run(dr), "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
              "spec.trafficPolicy.tls");
  dr.traffic_policy->tls->ca_certificates.clear();
  dr.traffic_policy->tls->ca_crl = "/etc/crl.pem";
  EXPECT_DIAG(run(dr), "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
              "spec.trafficPolicy.tls");
  // caCrl over the system's roots: warned about.
  dr.traffic_policy->tls = ClientTLSSettings{};
  dr.traffic_policy->tls->mode = ClientTLSMode::kSimple;
  dr.traffic_policy->tls->ca_crl = "/etc/crl.pem";
  EXPECT_WARN(run(dr),
              "caCrl without caCertificates: the system's CAs are trusted, and every CA of a server's chain needs its "
              "CRL in the file, or the server fails verification",
              "spec.trafficPolicy.tls");
  dr.traffic_policy->tls->ca_certificates = "/etc/ca.pem";
  EXPECT_CLEAN(run(dr));
}

TEST(DestinationRuleValidation, InsecureSkipVerifyConflicts) {
  DestinationRule dr = egress_destination_rule();
  TrafficPolicy tp;
  ClientTLSSettings tls;
  tls.mode = ClientTLSMode::kSimple;
  tls.insecure_skip_verify = true;
  tls.ca_certificates = "/etc/ca.pem";
  tp.tls = tls;
  dr.traffic_policy = tp;
  EXPECT_DIAG(run(dr), "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
              "spec.trafficPolicy.tls");
}

TEST(DestinationRuleValidation, IstioMutualWithCertificateFilesWarns) {
  DestinationRule dr = egress_destination_rule();
  dr.subsets[0].traffic_policy->port_level_settings[0].tls->client_certificate = "/etc/certs/cert-chain.pem";
  Diagnostics d = run(dr);
  EXPECT_EQ(d.error_count(), 0u) << dump(d);  // Istio accepts it
  const char* ignored =
      "clientCertificate, privateKey, caCertificates and caCrl are ignored with tls mode ISTIO_MUTUAL, which uses the "
      "mesh identity; remove them or use mode MUTUAL";
  EXPECT_WARN(d, ignored, "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls");
  dr.subsets[0].traffic_policy->port_level_settings[0].tls->client_certificate.clear();
  dr.subsets[0].traffic_policy->port_level_settings[0].tls->ca_crl = "/etc/certs/crl.pem";
  EXPECT_WARN(run(dr), ignored, "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls");
}

TEST(DestinationRuleValidation, TrafficPolicyShapes) {
  DestinationRule dr = egress_destination_rule();
  dr.traffic_policy = TrafficPolicy{};
  EXPECT_DIAG(run(dr), "traffic policy must have at least one field", "spec.trafficPolicy");

  dr = egress_destination_rule();
  dr.subsets[0].traffic_policy->port_level_settings.push_back(PortTrafficPolicy{});
  Diagnostics d = run(dr);
  EXPECT_DIAG(d, "portTrafficPolicy must have valid port", "spec.subsets[0].trafficPolicy.portLevelSettings[1]");
  EXPECT_DIAG(d, "port traffic policy must have at least one field", "spec.subsets[0].trafficPolicy.portLevelSettings[1]");
}

TEST(DestinationRuleValidation, ConnectionPoolOutlierAndLoadBalancer) {
  DestinationRule dr = egress_destination_rule();
  TrafficPolicy tp;
  tp.connection_pool = ConnectionPoolSettings{};
  dr.traffic_policy = tp;
  EXPECT_DIAG(run(dr), "connection pool must have at least one field", "spec.trafficPolicy.connectionPool");

  TCPSettings tcp;
  tcp.max_connections = -1;
  tcp.connect_timeout = Duration(0);
  tcp.max_connection_duration = Duration(0);
  tcp.idle_timeout = Duration(0);  // valid: disables the timeout
  HTTPSettings http;
  http.http1_max_pending_requests = -1;
  http.http2_max_requests = -2;
  http.max_requests_per_connection = -3;
  http.max_retries = -4;
  dr.traffic_policy->connection_pool->tcp = tcp;
  dr.traffic_policy->connection_pool->http = http;
  OutlierDetection od;
  od.interval = Duration(0);
  od.base_ejection_time = Duration(-5);
  od.max_ejection_percent = 101;
  dr.traffic_policy->outlier_detection = od;
  ConsistentHashLB ch;
  ch.http_cookie_ttl = Duration(10000);
  dr.traffic_policy->load_balancer = LoadBalancerSettings{SimpleLB::kUnspecified, ch};
  Diagnostics d = run(dr);
  EXPECT_DIAG(d, "max connections must be non-negative", "spec.trafficPolicy.connectionPool.tcp.maxConnections");
  EXPECT_DIAG(d, "duration must be greater than 1ms", "spec.trafficPolicy.connectionPool.tcp.connectTimeout");
  EXPECT_DIAG(d, "duration must be greater than 1ms", "spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration");
  EXPECT_EQ(find(d, "duration must be greater than 1ms", "spec.trafficPolicy.connectionPool.tcp.idleTimeout"), nullptr)
      << "idleTimeout 0s turns the timeout off";
  EXPECT_DIAG(d, "http1 max pending requests must be non-negative",
              "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests");
  EXPECT_DIAG(d, "http2 max requests must be non-negative", "spec.trafficPolicy.connectionPool.http.http2MaxRequests");
  EXPECT_DIAG(d, "max requests per connection must be non-negative",
              "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection");
  EXPECT_DIAG(d, "max retries must be non-negative", "spec.trafficPolicy.connectionPool.http.maxRetries");
  EXPECT_DIAG(d, "percentage 101 is not in range 0..100", "spec.trafficPolicy.outlierDetection.maxEjectionPercent");
  EXPECT_DIAG(d, "name required for HttpCookie", "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie");
  EXPECT_EQ(d.error_count(), 11u) << dump(d);
}

TEST(DestinationRuleValidation, KeepaliveValuesTheKernelRefusesAreWarnedAbout) {
  DestinationRule dr = egress_destination_rule();
  dr.traffic_policy = TrafficPolicy{};
  TCPSettings tcp;
  tcp.tcp_keepalive = TCPSettings::KeepAlive{200, Duration(500), Duration(40000 * 1000LL)};
  dr.traffic_policy->connection_pool = ConnectionPoolSettings{tcp, std::nullopt};
  Diagnostics d = run(dr);
  EXPECT_WARN(d, "outside 1s..32767s: the kernel's default is used (Envoy would fail the connection)",
              "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time");
  EXPECT_WARN(d, "outside 1s..32767s: the kernel's default is used (Envoy would fail the connection)",
              "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.interval");
  EXPECT_WARN(d, "above 127: the kernel's default is used (Envoy would fail the connection)",
              "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.probes");
  EXPECT_EQ(d.error_count(), 0u) << dump(d);
  dr.traffic_policy->connection_pool->tcp->tcp_keepalive = TCPSettings::KeepAlive{9, Duration(60000), Duration(5000)};
  EXPECT_CLEAN(run(dr));
}

// Sluice queues requests only for maxConnections' slots: a pending limit
// without it bounds nothing, and says so. The other circuit breakers apply.
// http1MaxPendingRequests bounds requests waiting for a connection to be
// made as well as those queued for maxConnections: fine on its own.
TEST(DestinationRuleValidation, PendingRequestsNeedNoMaxConnections) {
  DestinationRule dr = egress_destination_rule();
  dr.traffic_policy = TrafficPolicy{};
  HTTPSettings http;
  http.http1_max_pending_requests = 1;
  http.http2_max_requests = 10;
  http.max_retries = 3;
  http.max_requests_per_connection = 5;
  dr.traffic_policy->connection_pool = ConnectionPoolSettings{std::nullopt, http};
  EXPECT_CLEAN(run(dr));
  TCPSettings tcp;
  tcp.max_connections = 1;
  dr.traffic_policy->connection_pool->tcp = tcp;
  EXPECT_CLEAN(run(dr));
}

TEST(DestinationRuleValidation, MinHealthPercentIsAPercentage) {
  DestinationRule dr = egress_destination_rule();
  dr.traffic_policy = TrafficPolicy{};
  OutlierDetection od;
  od.min_health_percent = 150;
  dr.traffic_policy->outlier_detection = od;
  Diagnostics d = run(dr);
  EXPECT_DIAG(d, "percentage 150 is not in range 0..100", "spec.trafficPolicy.outlierDetection.minHealthPercent");
  EXPECT_EQ(d.error_count(), 1u) << dump(d);
}

TEST(DestinationRuleValidation, HttpCookieNeedsATtl) {
  // Istio: "ttl required for HttpCookie" (a session cookie is ttl: 0s).
  DestinationRule dr = egress_destination_rule();
  dr.traffic_policy = TrafficPolicy{};
  ConsistentHashLB ch;
  ch.http_cookie_name = "user";
  dr.traffic_policy->load_balancer = LoadBalancerSettings{SimpleLB::kUnspecified, ch};
  Diagnostics d = run(dr);
  EXPECT_DIAG(d, "ttl required for HttpCookie", "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie");
  EXPECT_EQ(d.error_count(), 1u) << dump(d);
  dr.traffic_policy->load_balancer->consistent_hash->http_cookie_ttl = Duration(0);
  EXPECT_EQ(run(dr).error_count(), 0u) << dump(run(dr));
  // One key only (a oneof).
  dr.traffic_policy->load_balancer->consistent_hash->use_source_ip = true;
  d = run(dr);
  EXPECT_DIAG(d,
              "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set (hashKey is a "
              "oneof)",
              "spec.trafficPolicy.loadBalancer.consistentHash");
  EXPECT_EQ(d.error_count(), 1u) << dump(d);
}

TEST(DestinationRuleValidation, WorkloadSelectorAndExportTo) {
  DestinationRule dr = egress_destination_rule();
  dr.workload_selector = Labels{{"app", "*"}};
  dr.export_to = {"other"};
  Diagnostics d = run(dr);
  EXPECT_DIAG(d, "wildcard is not supported in selector: \"app=*\"", "spec.workloadSelector");
  EXPECT_DIAG(d, "destination rule with workload selector cannot have exportTo beyond current namespace", "spec.exportTo");
}

// ---------------------------------------------------------------------------
// Gateway

// Sidecar: Istio's ValidateSidecar, egress side (the inbound side is not
// applied by Sluice: a warning).
Sidecar sidecar_with(std::vector<SidecarEgressListener> egress) {
  Sidecar sc;
  sc.meta.name = "egress";
  sc.meta.namespace_ = "shop";
  sc.egress = std::move(egress);
  return sc;
}

SidecarEgressListener listener(std::vector<std::string> hosts, uint32_t port = 0) {
  SidecarEgressListener l;
  l.hosts = std::move(hosts);
  if (port != 0) l.port = GatewayPort{port, "TLS", "tls", 0};
  return l;
}

TEST(SidecarValidation, EmptyConfigurationIsAnError) {
  EXPECT_DIAG(run(sidecar_with({})), "sidecar: empty configuration provided", "spec");
}

TEST(SidecarValidation, EgressHostsAreNamespaceSlashDnsName) {
  Diagnostics d = run(sidecar_with({listener({"api.example.com", "bad_ns/x.example.com", "./short", "~/*", "*/*"})}));
  EXPECT_DIAG(d, "host must be of form namespace/dnsName", "spec.egress[0].hosts[0]");
  EXPECT_DIAG(d, "invalid namespace value \"bad_ns\" in sidecar", "spec.egress[0].hosts[1]");
  EXPECT_DIAG(d, "short names (non FQDN) are not allowed", "spec.egress[0].hosts[2]");
  EXPECT_EQ(d.error_count(), 3u) << dump(d);
  EXPECT_WARN(d, "`*/*` host select all resources, no other hosts can be added", "spec.egress[0].hosts");
  EXPECT_DIAG(run(sidecar_with({listener({})})), "sidecar: egress listener must contain at least one host",
              "spec.egress[0].hosts");
  EXPECT_WARN(run(sidecar_with({listener({"./*", "./api.example.com"})})), "duplicated egress host: ./api.example.com",
              "spec.egress[0].hosts[1]");
}

TEST(SidecarValidation, OneCatchAllListenerLastAndUniquePorts) {
  Diagnostics d = run(sidecar_with({listener({"./*"}), listener({"./*"}, 443), listener({"./*"}, 443), listener({"./*"})}));
  EXPECT_DIAG(d, "sidecar: the egress listener with empty port should be the last listener in the list", "spec.egress[0]");
  EXPECT_DIAG(d, "sidecar: ports on IP bound listeners must be unique", "spec.egress[2].port.number");
  // As in Istio, the last catch-all is the one: no second error for it.
  EXPECT_EQ(d.error_count(), 2u) << dump(d);
}

TEST(SidecarValidation, EgressProxyOnlyWithAllowAny) {
  Sidecar sc = sidecar_with({});
  sc.outbound_traffic_policy = SidecarOutboundTrafficPolicy{};
  sc.outbound_traffic_policy->egress_proxy = Destination{"squid.example.com", "", std::nullopt};
  EXPECT_DIAG(run(sc), "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
              "spec.outboundTrafficPolicy.egressProxy");
  sc.outbound_traffic_policy->mode = OutboundTrafficPolicyMode::kAllowAny;
  EXPECT_DIAG(run(sc), "sidecar: egress_proxy port must be non-nil", "spec.outboundTrafficPolicy.egressProxy.port");
  sc.outbound_traffic_policy->egress_proxy->port = PortSelector{3128};
  EXPECT_CLEAN(run(sc));
  sc.ingress_count = 1;
  EXPECT_WARN(run(sc), "not applied by Sluice: it intercepts outbound traffic only", "spec.ingress");
}

// A listener port without a protocol is valid (sniffed, as in Istio); an
// empty selector is a warning.
TEST(SidecarValidation, AListenerWithoutAProtocolAndAnEmptySelector) {
  SidecarEgressListener l = listener({"./*"}, 443);
  l.port->protocol.clear();
  Sidecar sc = sidecar_with({l});
  EXPECT_CLEAN(run(sc));
  sc.workload_selector = Labels{};
  EXPECT_WARN(run(sc),
              "sidecar: workload selector specified without labels, will be applied to all services in namespace",
              "spec.workloadSelector");
}

TEST(GatewayValidation, NeedsAServer) {
  Gateway gw = egress_gateway();
  gw.servers.clear();
  EXPECT_DIAG(run(gw), "gateway must have at least one server", "spec.servers");
}

TEST(GatewayValidation, Name) {
  Gateway gw = egress_gateway();
  gw.meta.name = "egress.gateway";
  EXPECT_DIAG(run(gw), "invalid gateway name: \"egress.gateway\"", "metadata.name");
}

TEST(GatewayValidation, TlsSettingsRequiredForHttpsAndTls) {
  Gateway gw = egress_gateway();
  gw.servers[0].tls.reset();
  EXPECT_DIAG(run(gw), "server must have TLS settings for HTTPS/TLS protocols", "spec.servers[0]");
  gw.servers[0].port.protocol = "TLS";
  EXPECT_DIAG(run(gw), "server must have TLS settings for HTTPS/TLS protocols", "spec.servers[0]");
}

TEST(GatewayValidation, NoTlsOnPlainPorts) {
  Gateway gw = egress_gateway();
  gw.servers[0].port.protocol = "HTTP";
  EXPECT_DIAG(run(gw), "server cannot have TLS settings for plain text HTTP ports", "spec.servers[0].tls");
  gw.servers[0].port.protocol = "TCP";
  EXPECT_DIAG(run(gw), "server cannot have TLS settings for non HTTPS/TLS ports", "spec.servers[0].tls");
  // httpsRedirect alone is what a plain HTTP server may carry.
  gw.servers[0].port.protocol = "HTTP";
  ServerTLSSettings redirect;
  redirect.https_redirect = true;
  gw.servers[0].tls = redirect;
  EXPECT_CLEAN(run(gw));
}

TEST(GatewayValidation, ServerTlsModes) {
  Gateway gw = egress_gateway();
  gw.servers[0].tls->ca_certificates.clear();
  EXPECT_DIAG(run(gw), "MUTUAL TLS requires a client CA bundle", "spec.servers[0].tls");
  gw.servers[0].tls->server_certificate.clear();
  gw.servers[0].tls->private_key.clear();
  Diagnostics d = run(gw);
  EXPECT_DIAG(d, "MUTUAL TLS requires a server certificate", "spec.servers[0].tls");
  EXPECT_DIAG(d, "MUTUAL TLS requires a private key", "spec.servers[0].tls");

  gw.servers[0].tls->mode = ServerTLSMode::kSimple;
  d = run(gw);
  EXPECT_DIAG(d, "SIMPLE TLS requires a server certificate", "spec.servers[0].tls");
  EXPECT_DIAG(d, "SIMPLE TLS requires a private key", "spec.servers[0].tls");
  gw.servers[0].tls->credential_name = "cnn-credential";
  EXPECT_CLEAN(run(gw));

  gw = egress_gateway();
  gw.servers[0].tls->mode = ServerTLSMode::kIstioMutual;
  d = run(gw);
  EXPECT_DIAG(d, "ISTIO_MUTUAL TLS cannot have associated server certificate", "spec.servers[0].tls");
  EXPECT_DIAG(d, "ISTIO_MUTUAL TLS cannot have associated private key", "spec.servers[0].tls");
  EXPECT_DIAG(d, "ISTIO_MUTUAL TLS cannot have associated CA bundle", "spec.servers[0].tls");

  gw = egress_gateway();
  gw.servers[0].tls->mode = ServerTLSMode::kPassthrough;
  EXPECT_WARN(run(gw), "PASSTHROUGH mode does not use certificates, they will be ignored", "spec.servers[0].tls");
}

// caCrl: for clients' certificates (MUTUAL); Istio refuses it with SIMPLE;
// ignored with ISTIO_MUTUAL (our warning).
TEST(GatewayValidation, CaCrl) {
  Gateway gw = egress_gateway();
  gw.servers[0].tls->ca_crl = "/etc/certs/crl.pem";
  EXPECT_CLEAN(run(gw));
  gw.servers[0].tls->mode = ServerTLSMode::kSimple;
  EXPECT_DIAG(run(gw), "CRL is not supported with SIMPLE TLS", "spec.servers[0].tls");
  gw = egress_gateway();
  gw.servers[0].tls->mode = ServerTLSMode::kIstioMutual;
  gw.servers[0].tls->server_certificate.clear();
  gw.servers[0].tls->private_key.clear();
  gw.servers[0].tls->ca_certificates.clear();
  gw.servers[0].tls->ca_crl = "/etc/certs/crl.pem";
  Diagnostics d = run(gw);
  EXPECT_EQ(d.error_count(), 0u) << dump(d);
  EXPECT_WARN(d, "caCrl is ignored with tls mode ISTIO_MUTUAL, which uses the mesh identity", "spec.servers[0].tls");
  gw.servers[0].tls->mode = ServerTLSMode::kPassthrough;
  EXPECT_WARN(run(gw), "PASSTHROUGH mode does not use certificates, they will be ignored", "spec.servers[0].tls");
}

TEST(GatewayValidation, ServerHosts) {
  Gateway gw = egress_gateway();
  gw.servers[0].hosts.clear();
  EXPECT_DIAG(run(gw), "server config must contain at least one host", "spec.servers[0]");

  gw.servers[0].hosts = {"cnn", "Bad_NS/edition.cnn.com", "./", "*/*", "foo*.cnn.com", "./10.0.0.1", "default/*.cnn.com"};
  Diagnostics d = run(gw);
  EXPECT_DIAG(d, "short names (non FQDN) are not allowed", "spec.servers[0].hosts[0]");
  EXPECT_DIAG(d, "invalid namespace value \"Bad_NS\" in gateway", "spec.servers[0].hosts[1]");
  EXPECT_DIAG(d, "config namespace and dnsName in host entry cannot be empty", "spec.servers[0].hosts[2]");
  EXPECT_DIAG(d, "partial wildcard \"foo*.cnn.com\" not allowed", "spec.servers[0].hosts[4]");
  for (const auto& item : d.items()) {
    EXPECT_NE(item.field, "spec.servers[0].hosts[3]") << item.format();
    EXPECT_NE(item.field, "spec.servers[0].hosts[5]") << item.format();
    EXPECT_NE(item.field, "spec.servers[0].hosts[6]") << item.format();
  }
}

TEST(GatewayValidation, ServerPort) {
  Gateway gw = egress_gateway();
  gw.servers[0].port = {0, "HTTPX", "", 8080};
  Diagnostics d = run(gw);
  EXPECT_DIAG(d, "invalid protocol \"HTTPX\", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
              "spec.servers[0].port.protocol");
  EXPECT_DIAG(d, "port number 0 must be in the range 1..65535", "spec.servers[0].port.number");
  EXPECT_DIAG(d, "targetPort has no impact on Gateways", "spec.servers[0].port.targetPort");
  EXPECT_DIAG(d, "port name must be set: protocol:\"HTTPX\" target_port:8080", "spec.servers[0].port");
  // A broken port hides the TLS/protocol consistency check, as in Istio.
  EXPECT_EQ(find(d, "server cannot have TLS settings for non HTTPS/TLS ports"), nullptr);
}

TEST(GatewayValidation, DuplicatePortNamesAndBind) {
  Gateway gw = egress_gateway();
  Server second = gw.servers[0];
  second.port.number = 443;
  second.bind = "10.0.0.300";
  gw.servers.push_back(second);
  Diagnostics d = run(gw);
  EXPECT_DIAG(d, "port names in servers must be unique: duplicate name https", "spec.servers[1].port.name");
  EXPECT_DIAG(d, "10.0.0.300 is not a valid IP", "spec.servers[1].bind");
}

TEST(GatewayValidation, HttpsRedirectOnNonHttpServerWarns) {
  Gateway gw = egress_gateway();
  gw.servers[0].tls->https_redirect = true;
  EXPECT_WARN(run(gw), "tls.httpsRedirect should only be used with http servers", "spec.servers[0].tls.httpsRedirect");
}

// ---------------------------------------------------------------------------
// ServiceEntry

TEST(ServiceEntryValidation, NeedsAHost) {
  ServiceEntry se = cnn_service_entry();
  se.hosts.clear();
  EXPECT_DIAG(run(se), "service entry must have at least one host", "spec.hosts");
}

TEST(ServiceEntryValidation, BareStarHostIsInvalid) {
  ServiceEntry se = cnn_service_entry();
  se.resolution = Resolution::kNone;
  se.hosts = {"*"};
  EXPECT_DIAG(run(se), "invalid host *", "spec.hosts[0]");
  se.hosts = {"*.wikipedia.org"};
  EXPECT_CLEAN(run(se));
  se.hosts = {"en.*.org"};
  EXPECT_DIAG(run(se), "domain name \"*.org\" invalid (label \"*\" invalid)", "spec.hosts[0]");
  se.hosts = {"foo*.org"};
  EXPECT_WARN(run(se), "partial wildcard \"foo*.org\" not allowed", "spec.hosts[0]");
}

TEST(ServiceEntryValidation, NoEndpointsForResolutionNone) {
  ServiceEntry se = cnn_service_entry();
  se.resolution = Resolution::kNone;
  se.endpoints = {WorkloadEntry{"1.2.3.4", {}, {}, "", "", 0, ""}};
  EXPECT_DIAG(run(se), "no endpoints should be provided for resolution type none", "spec.endpoints");
}

TEST(ServiceEntryValidation, DuplicatePorts) {
  ServiceEntry se = cnn_service_entry();
  se.ports.push_back({80, "HTTP", "http-port", 0});
  Diagnostics d = run(se);
  EXPECT_DIAG(d, "service entry port 80 already defined", "spec.ports[2].number");
  EXPECT_DIAG(d, "service entry port name \"http-port\" already defined", "spec.ports[2].name");
}

TEST(ServiceEntryValidation, PortFields) {
  ServiceEntry se = cnn_service_entry();
  se.ports = {{0, "HTTP", "Http_Port", 70000}, {8080, "FTP", "ftp", 0}};
  Diagnostics d = run(se);
  EXPECT_DIAG(d, "port number 0 must be in the range 1..65535", "spec.ports[0].number");
  EXPECT_DIAG(d, "invalid port name: Http_Port", "spec.ports[0].name");
  EXPECT_DIAG(d, "port number 70000 must be in the range 1..65535", "spec.ports[0].targetPort");
  EXPECT_DIAG(d, "unsupported protocol: FTP", "spec.ports[1].protocol");

  se = cnn_service_entry();
  se.resolution = Resolution::kNone;
  se.ports[0].target_port = 8080;
  EXPECT_WARN(run(se), "targetPort has no effect when resolution mode is NONE", "spec.ports[0].targetPort");
}

TEST(ServiceEntryValidation, CidrAddressesOnlyWithNoneOrStatic) {
  ServiceEntry se = cnn_service_entry();
  se.addresses = {"10.0.0.0/8"};
  EXPECT_DIAG(run(se), "CIDR addresses are allowed only for NONE/STATIC resolution types", "spec.resolution");
  se.resolution = Resolution::kNone;
  EXPECT_CLEAN(run(se));
  se.addresses = {"10.0.0.0/40", "1.2.3"};
  Diagnostics d = run(se);
  EXPECT_DIAG(d, "10.0.0.0/40 is not a valid CIDR block", "spec.addresses[0]");
  EXPECT_DIAG(d, "1.2.3 is not a valid IP", "spec.addresses[1]");
}

TEST(ServiceEntryValidation, MultipleHostsNeedHttpOrTlsPorts) {
  ServiceEntry se = cnn_service_entry();
  se.hosts = {"edition.cnn.com", "www.cnn.com"};
  EXPECT_CLEAN(run(se));
  se.ports.push_back({5432, "TCP", "postgres", 0});
  EXPECT_DIAG(run(se), "multiple hosts provided with non-HTTP, non-TLS ports", "spec.ports[2]");
  se.resolution = Resolution::kNone;  // hosts are ignored: fine
  EXPECT_CLEAN(run(se));
}

TEST(ServiceEntryValidation, StaticEndpoints) {
  ServiceEntry se = cnn_service_entry();
  se.resolution = Resolution::kStatic;
  se.endpoints = {
      WorkloadEntry{"edition.cnn.com", {}, {}, "", "", 0, ""},
      WorkloadEntry{"10.1.1.1", {{"grpc", 9000}, {"http-port", 70000}}, {}, "", "", 0, ""},
      WorkloadEntry{"unix://relative/path", {}, {}, "", "", 0, ""},
      WorkloadEntry{"", {}, {}, "", "", 0, ""},
  };
  Diagnostics d = run(se);
  EXPECT_DIAG(d, "endpoint address \"edition.cnn.com\" is not a valid IP address", "spec.endpoints[0].address");
  EXPECT_DIAG(d, "endpoint port 9000 is not defined by the service entry", "spec.endpoints[1].ports.grpc");
  EXPECT_DIAG(d, "port number 70000 must be in the range 1..65535", "spec.endpoints[1].ports.http-port");
  EXPECT_DIAG(d, "relative/path is not an absolute path to a file", "spec.endpoints[2].address");
  EXPECT_DIAG(d, "exactly 1 service port required for unix endpoints", "spec.endpoints[2]");
  EXPECT_DIAG(d, "address is required", "spec.endpoints[3]");

  se.endpoints = {WorkloadEntry{"unix:///var/run/app.sock", {}, {}, "", "", 0, ""}};
  se.ports.resize(1);
  EXPECT_CLEAN(run(se));
}

TEST(ServiceEntryValidation, DnsResolution) {
  ServiceEntry se = cnn_service_entry();
  se.hosts = {"*.cnn.com"};
  EXPECT_DIAG(run(se), "hosts must be FQDN if no endpoints are provided for resolution mode DNS", "spec.hosts[0]");
  se.endpoints = {WorkloadEntry{"edition.cnn.com", {}, {}, "", "", 0, ""}, WorkloadEntry{"not_a_name", {}, {}, "", "", 0, ""}};
  Diagnostics d = run(se);
  EXPECT_EQ(find(d, "hosts must be FQDN if no endpoints are provided for resolution mode DNS"), nullptr);
  EXPECT_DIAG(d, "endpoint address \"not_a_name\" is not a valid FQDN or an IP address", "spec.endpoints[1].address");
  se.resolution = Resolution::kDnsRoundRobin;
  EXPECT_DIAG(run(se), "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN", "spec.endpoints");
}

TEST(ServiceEntryValidation, WorkloadSelector) {
  ServiceEntry se = cnn_service_entry();
  se.resolution = Resolution::kStatic;
  se.workload_selector = Labels{{"", "x"}};
  se.endpoints = {WorkloadEntry{"1.1.1.1", {}, {}, "", "", 0, ""}};
  Diagnostics d = run(se);
  EXPECT_DIAG(d, "empty key is not supported in selector: \"=x\"", "spec.workloadSelector");
  EXPECT_DIAG(d, "only one of WorkloadSelector or Endpoints is allowed in Service Entry", "spec");
}

TEST(ServiceEntryValidation, ExportToAllowsNone) {
  ServiceEntry se = cnn_service_entry();
  se.export_to = {"~"};
  EXPECT_CLEAN(run(se));
  se.export_to = {"~", "default"};
  EXPECT_DIAG(run(se), "cannot export service entry to no one (~) and someone", "spec.exportTo");
}

// ---------------------------------------------------------------------------
// Mesh config and install options

TEST(MeshConfigValidation, DefaultsAreValid) {
  Diagnostics d;
  validate(MeshConfig{}, d);
  EXPECT_CLEAN(d);
}

TEST(MeshConfigValidation, TrustDomainConnectTimeoutEncoding) {
  MeshConfig mesh;
  mesh.file = "mesh.yaml";
  mesh.line = 3;
  mesh.trust_domain = "cluster_local";
  mesh.connect_timeout = std::chrono::hours(2);
  mesh.access_log_encoding = "XML";
  Diagnostics d;
  validate(mesh, d);
  EXPECT_DIAG(d, "trustDomain: trust domain name \"cluster_local\" invalid", "trustDomain");
  EXPECT_DIAG(d, "invalid connect timeout: time 2h0m0s must be >1ms and <1h0m0s", "connectTimeout");
  EXPECT_DIAG(d, "invalid accessLogEncoding \"XML\": must be TEXT or JSON", "accessLogEncoding");
  EXPECT_EQ(d.items()[0].location.str(), "mesh.yaml:3:1");

  mesh = MeshConfig{};
  mesh.trust_domain = "example.org.";
  mesh.connect_timeout = Duration(0);
  d = Diagnostics{};
  validate(mesh, d);
  EXPECT_DIAG(d, "invalid connect timeout: duration must be greater than 1ms", "connectTimeout");
  EXPECT_EQ(d.error_count(), 1u) << dump(d);
}

// The mesh tcpKeepalive is every cluster's default: the same ranges as a
// DestinationRule's (whole seconds Linux takes), as warnings only.
TEST(MeshConfigValidation, TcpKeepaliveRanges) {
  MeshConfig mesh;
  mesh.tcp_keepalive = TCPSettings::KeepAlive{200, Duration(500), Duration(0)};
  Diagnostics d;
  validate(mesh, d);
  EXPECT_WARN(d, "outside 1s..32767s: the kernel's default is used (Envoy would fail the connection)",
              "tcpKeepalive.time");
  EXPECT_WARN(d, "above 127: the kernel's default is used (Envoy would fail the connection)", "tcpKeepalive.probes");
  EXPECT_WARN(d, "outside 1s..32767s: the kernel's default is used (Envoy would fail the connection)",
              "tcpKeepalive.interval");
  EXPECT_EQ(d.warning_count(), 3u) << dump(d);
  EXPECT_EQ(d.error_count(), 0u) << dump(d) << "Istio does not reject the mesh config for it";
  mesh.tcp_keepalive = TCPSettings::KeepAlive{9, Duration(7200'000), Duration(75'000)};
  d = Diagnostics{};
  validate(mesh, d);
  EXPECT_CLEAN(d);
}

TEST(InstallOptionsValidation, SeedRangesAreValid) {
  InstallOptions install;
  install.include_ip_ranges = {"10.244.0.0/16", "10.240.0.0/16"};
  install.exclude_ip_ranges = {"192.168.1.1", "fd00::/8"};
  install.include_outbound_ports = {"*"};
  install.exclude_outbound_ports = {"22", " 443"};
  Diagnostics d;
  validate(install, d);
  EXPECT_CLEAN(d);
}

TEST(InstallOptionsValidation, BadRangesAndPorts) {
  InstallOptions install;
  install.file = "values.yaml";
  install.include_ip_ranges = {"10.244.0.0/16", "10.240.0.0/33", "not-an-ip"};
  install.exclude_ip_ranges = {"10.0.0.0/8/1"};
  install.include_outbound_ports = {"http"};
  install.exclude_outbound_ports = {"0", "65536"};
  Diagnostics d;
  validate(install, d);
  EXPECT_DIAG(d, "includeIPRanges invalid: failed parsing cidr '10.240.0.0/33'", "includeIPRanges");
  EXPECT_DIAG(d, "includeIPRanges invalid: failed parsing cidr 'not-an-ip'", "includeIPRanges");
  EXPECT_DIAG(d, "excludeIPRanges invalid: failed parsing cidr '10.0.0.0/8/1'", "excludeIPRanges");
  EXPECT_DIAG(d, "includeOutboundPorts invalid: failed parsing port 'http'", "includeOutboundPorts");
  EXPECT_DIAG(d, "excludeOutboundPorts invalid: port number 0 must be in the range 1..65535", "excludeOutboundPorts");
  EXPECT_DIAG(d, "excludeOutboundPorts invalid: port number 65536 must be in the range 1..65535", "excludeOutboundPorts");
  EXPECT_EQ(d.items()[0].location.file, "values.yaml");
}

// ---------------------------------------------------------------------------
// The whole set

TEST(ConfigSetValidation, ValidatesEverythingInLoadOrder) {
  ConfigSet config;
  config.source_files = {"a.yaml", "b.yaml"};
  ServiceEntry se = cnn_service_entry();
  se.meta.file = "b.yaml";
  se.meta.line = 1;
  se.hosts.clear();
  VirtualService vs = egress_virtual_service();
  vs.meta.file = "a.yaml";
  vs.meta.line = 10;
  vs.http.clear();
  Gateway gw = egress_gateway();
  gw.meta.file = "a.yaml";
  gw.meta.line = 2;
  gw.servers.clear();
  config.service_entries = {se};
  config.virtual_services = {vs};
  config.gateways = {gw};
  config.destination_rules = {egress_destination_rule()};
  Diagnostics d = validate(config);
  ASSERT_EQ(d.items().size(), 3u) << dump(d);
  EXPECT_EQ(d.items()[0].message, "gateway must have at least one server");
  EXPECT_EQ(d.items()[1].message, "http, tcp or tls must be provided in virtual service");
  EXPECT_EQ(d.items()[2].message, "service entry must have at least one host");
}

}  // namespace
}  // namespace sluice::config

// ---------------------------------------------------------------------------
// Through the loader: the message a user gets for a YAML file, with the
// file:line:column of the offending node.

namespace sluice::config {
namespace {

struct YamlCase {
  const char* name;
  const char* yaml;
  const char* expected;  // one of the formatted diagnostics
};

class ValidationLocations : public ::testing::TestWithParam<YamlCase> {};

TEST_P(ValidationLocations, ReportsTheMessageAtTheNode) {
  const YamlCase& c = GetParam();
  LoadResult loaded;
  load_text(c.yaml, "test.yaml", loaded);
  EXPECT_EQ(loaded.diagnostics.error_count(), 0u) << "loader:\n" << dump(loaded.diagnostics);
  Diagnostics d = validate(loaded.config);
  bool found = false;
  for (const auto& item : d.items()) found = found || item.format() == c.expected;
  EXPECT_TRUE(found) << "expected: " << c.expected << "\nhave:\n" << dump(d);
}

const YamlCase kYamlCases[] = {
    {"VsNoRoutes", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
)", "test.yaml:5:1: error: VirtualService default/vs: spec: http, tcp or tls must be provided in virtual service"},
    {"VsNoHosts", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  http:
  - route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:5:1: error: VirtualService default/vs: spec.hosts: virtual service must have at least one host"},
    {"VsStarHostOnMesh", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - "*"
  http:
  - route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:7:5: error: VirtualService default/vs: spec.hosts[0]: wildcard host * is not allowed for virtual "
    "services bound to the mesh gateway"},
    {"VsTotalWeightZero", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - route:
    - destination:
        host: a.example.com
      weight: 0
    - destination:
        host: b.example.com
      weight: 0
)", "test.yaml:9:5: error: VirtualService default/vs: spec.http[0].route: total destination weight = 0"},
    {"VsNegativeWeight", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - route:
    - destination:
        host: a.example.com
      weight: -1
    - destination:
        host: b.example.com
      weight: 2
)", "test.yaml:12:7: error: VirtualService default/vs: spec.http[0].route[0].weight: weight -1 < 0"},
    {"VsRouteAndRedirect", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - redirect:
      uri: /politics
    route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:9:5: error: VirtualService default/vs: spec.http[0]: HTTP route cannot contain both route and redirect"},
    {"VsRouteAndDirectResponse", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - directResponse:
      status: 503
    route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:9:5: error: VirtualService default/vs: spec.http[0]: HTTP route cannot contain both route and "
    "direct_response"},
    {"VsNoAction", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - match:
    - port: 80
)", "test.yaml:9:5: error: VirtualService default/vs: spec.http[0]: HTTP route, redirect or direct_response is "
    "required"},
    {"VsDestinationWithoutHost", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - route:
    - destination:
        subset: v1
)", "test.yaml:10:7: error: VirtualService default/vs: spec.http[0].route[0].destination.host: empty domain name "
    "not allowed"},
    {"VsMatchPortRange", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - match:
    - port: 70000
    route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:10:7: error: VirtualService default/vs: spec.http[0].match[0].port: port number 70000 must be in the "
    "range 1..65535"},
    {"VsInvalidRegex", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  http:
  - match:
    - uri:
        regex: "/politics/(world"
    route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:11:9: error: VirtualService default/vs: spec.http[0].match[0].uri.regex: \"uri\": error parsing "
    "regexp: missing closing ): `/politics/(world`; Istio uses RE2 style regex-based match "
    "(https://github.com/google/re2/wiki/Syntax)"},
    {"VsInvalidGatewayName", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-system/egress_gateway
  http:
  - route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:9:5: error: VirtualService default/vs: spec.gateways[0]: invalid value for gateway name: "
    "\"egress_gateway\""},
    {"VsTlsMatchWithoutSni", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  tls:
  - match:
    - port: 443
    route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:10:7: error: VirtualService default/vs: spec.tls[0].match[0]: TLS match must have at least one SNI "
    "host"},
    {"VsSniOutsideHosts", R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
spec:
  hosts:
  - edition.cnn.com
  tls:
  - match:
    - sniHosts:
      - www.google.com
    route:
    - destination:
        host: edition.cnn.com
)", "test.yaml:11:9: error: VirtualService default/vs: spec.tls[0].match[0].sniHosts[0]: SNI host "
    "\"www.google.com\" is not a compatible subset of any of the virtual service hosts: [edition.cnn.com]"},
    {"DrNoHost", R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr
spec:
  subsets:
  - name: v1
)", "test.yaml:5:1: error: DestinationRule default/dr: spec.host: empty domain name not allowed"},
    {"DrDuplicateSubset", R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v1
    labels:
      version: v2
)", "test.yaml:11:5: error: DestinationRule default/dr: spec.subsets[1].name: duplicate subset names: v1"},
    {"DrSubsetNameNotDnsLabel", R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr
spec:
  host: reviews
  subsets:
  - name: v1.0
)", "test.yaml:8:5: error: DestinationRule default/dr: spec.subsets[0].name: subset name is invalid: v1.0"},
    {"DrMutualWithoutClientCertificate", R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr
spec:
  host: edition.cnn.com
  trafficPolicy:
    tls:
      mode: MUTUAL
      privateKey: /etc/certs/key.pem
)", "test.yaml:8:5: error: DestinationRule default/dr: spec.trafficPolicy.tls: client certificate required for mutual "
    "tls"},
    {"DrMutualWithoutPrivateKey", R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr
spec:
  host: edition.cnn.com
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/cert.pem
)", "test.yaml:8:5: error: DestinationRule default/dr: spec.trafficPolicy.tls: private key required for mutual tls"},
    {"DrNegativeMaxConnections", R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr
spec:
  host: edition.cnn.com
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: -1
)", "test.yaml:10:9: error: DestinationRule default/dr: spec.trafficPolicy.connectionPool.tcp.maxConnections: max "
    "connections must be non-negative"},
    {"DrPortLevelWithoutPort", R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dr
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings:
    - tls:
        mode: SIMPLE
        caCertificates: /etc/ca.pem
)", "test.yaml:9:7: error: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[0]: portTrafficPolicy "
    "must have valid port"},
    {"GwNoServers", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
)", "test.yaml:5:1: error: Gateway default/gw: spec.servers: gateway must have at least one server"},
    {"GwHttpsWithoutTls", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - edition.cnn.com
)", "test.yaml:9:5: error: Gateway default/gw: spec.servers[0]: server must have TLS settings for HTTPS/TLS "
    "protocols"},
    {"GwMutualWithoutCa", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: https
      protocol: HTTPS
    hosts:
    - edition.cnn.com
    tls:
      mode: MUTUAL
      serverCertificate: /etc/certs/cert-chain.pem
      privateKey: /etc/certs/key.pem
)", "test.yaml:15:5: error: Gateway default/gw: spec.servers[0].tls: MUTUAL TLS requires a client CA bundle"},
    {"GwSimpleWithoutCertificate", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - edition.cnn.com
    tls:
      mode: SIMPLE
      privateKey: /etc/certs/key.pem
)", "test.yaml:15:5: error: Gateway default/gw: spec.servers[0].tls: SIMPLE TLS requires a server certificate"},
    {"GwIstioMutualWithFiles", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: tls
      protocol: TLS
    hosts:
    - edition.cnn.com
    tls:
      mode: ISTIO_MUTUAL
      caCertificates: /etc/certs/root-cert.pem
)", "test.yaml:15:5: error: Gateway default/gw: spec.servers[0].tls: ISTIO_MUTUAL TLS cannot have associated CA "
    "bundle"},
    {"GwServerWithoutHosts", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
)", "test.yaml:9:5: error: Gateway default/gw: spec.servers[0]: server config must contain at least one host"},
    {"GwUnknownProtocol", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: SPDY
    hosts:
    - edition.cnn.com
)", "test.yaml:12:7: error: Gateway default/gw: spec.servers[0].port.protocol: invalid protocol \"SPDY\", supported "
    "protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP"},
    {"GwPortRange", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80000
      name: http
      protocol: HTTP
    hosts:
    - edition.cnn.com
)", "test.yaml:10:7: error: Gateway default/gw: spec.servers[0].port.number: port number 80000 must be in the range "
    "1..65535"},
    {"GwNamespacedHost", R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - Bad_NS/edition.cnn.com
)", "test.yaml:14:7: error: Gateway default/gw: spec.servers[0].hosts[0]: invalid namespace value \"Bad_NS\" in "
    "gateway"},
    {"SeNoHosts", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
)", "test.yaml:5:1: error: ServiceEntry default/se: spec.hosts: service entry must have at least one host"},
    {"SeBareStar", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - "*"
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: NONE
)", "test.yaml:7:5: error: ServiceEntry default/se: spec.hosts[0]: invalid host *"},
    {"SeEndpointsWithResolutionNone", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: NONE
  endpoints:
  - address: 151.101.1.67
)", "test.yaml:13:3: error: ServiceEntry default/se: spec.endpoints: no endpoints should be provided for resolution "
    "type none"},
    {"SeDuplicatePort", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 80
    name: http-alt
    protocol: HTTP
  resolution: DNS
)", "test.yaml:12:5: error: ServiceEntry default/se: spec.ports[1].number: service entry port 80 already defined"},
    {"SeDuplicatePortName", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 8080
    name: http
    protocol: HTTP
  resolution: DNS
)", "test.yaml:13:5: error: ServiceEntry default/se: spec.ports[1].name: service entry port name \"http\" already "
    "defined"},
    {"SeCidrWithDns", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - edition.cnn.com
  addresses:
  - 151.101.0.0/16
  ports:
  - number: 443
    name: tls
    protocol: TLS
  resolution: DNS
)", "test.yaml:14:3: error: ServiceEntry default/se: spec.resolution: CIDR addresses are allowed only for NONE/STATIC "
    "resolution types"},
    {"SeMultipleHostsTcp", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - db1.example.com
  - db2.example.com
  ports:
  - number: 5432
    name: postgres
    protocol: TCP
  resolution: DNS
)", "test.yaml:10:5: error: ServiceEntry default/se: spec.ports[0]: multiple hosts provided with non-HTTP, non-TLS "
    "ports"},
    {"SeStaticEndpointNotAnIp", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: edition.cnn.com
)", "test.yaml:14:5: error: ServiceEntry default/se: spec.endpoints[0].address: endpoint address \"edition.cnn.com\" "
    "is not a valid IP address"},
    {"SeTargetPortRange", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
    targetPort: 0
  - number: 81
    name: http-81
    protocol: HTTP
    targetPort: 65536
  resolution: DNS
)", "test.yaml:16:5: error: ServiceEntry default/se: spec.ports[1].targetPort: port number 65536 must be in the range "
    "1..65535"},
    {"SeExportTo", R"(apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: se
spec:
  hosts:
  - edition.cnn.com
  exportTo:
  - "*"
  - default
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
)", "test.yaml:8:3: error: ServiceEntry default/se: spec.exportTo: cannot have both public (*) and non-public "
    "exportTo values for a resource"},
};

INSTANTIATE_TEST_SUITE_P(Rules, ValidationLocations, ::testing::ValuesIn(kYamlCases),
                         [](const ::testing::TestParamInfo<YamlCase>& info) { return std::string(info.param.name); });

TEST(ValidationThroughLoader, WalkthroughIsValid) {
  LoadResult loaded;
  load_text(R"(apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: https
      protocol: HTTPS
    hosts:
    - edition.cnn.com
    tls:
      mode: MUTUAL
      serverCertificate: /etc/certs/cert-chain.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/root-cert.pem
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 80
        tls:
          mode: ISTIO_MUTUAL
          sni: edition.cnn.com
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
)",
            "walkthrough.yaml", loaded);
  EXPECT_TRUE(loaded.diagnostics.empty()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config.resource_count(), 4u);
  Diagnostics d = validate(loaded.config);
  EXPECT_TRUE(d.empty()) << dump(d);
}

}  // namespace
}  // namespace sluice::config
