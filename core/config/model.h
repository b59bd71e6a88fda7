// The configuration model: Istio's networking resources, mesh config and
// install options as plain C++ values. Field names follow Istio's API protos
// (networking/v1alpha3, mesh/v1alpha1) in snake_case. Nothing here does I/O;
// loader.h turns YAML text into these types, validation.h and analysis.h
// check them.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config/diagnostic.h"

namespace sluice::config {

using Labels = std::map<std::string, std::string>;
using Duration = std::chrono::milliseconds;

// Where each field of a resource came from, keyed by its path inside the
// resource: "metadata.name", "spec.http[0].route[1].weight". Filled by the
// loader for every node it visits; lookups fall back to the nearest parent.
class FieldLocations {
 public:
  void set(std::string path, uint32_t line, uint32_t column);
  // Location of `path`, else of its closest recorded ancestor, else of the
  // resource itself.
  SourceLocation find(const std::string& file, const std::string& path) const;

 private:
  struct Pos {
    uint32_t line;
    uint32_t column;
  };
  std::unordered_map<std::string, Pos> positions_;
};

// Identity and provenance shared by every resource.
struct ObjectMeta {
  std::string api_version;  // networking.istio.io/v1alpha3 | v1beta1 | v1
  std::string kind;         // ServiceEntry, VirtualService, ...
  std::string name;
  std::string namespace_;   // "default" when the document omits it
  Labels labels;
  Labels annotations;

  std::string file;         // source file the resource came from
  uint32_t line = 0;        // first line of its YAML document
  FieldLocations fields;

  SourceLocation location() const { return {file, line, 1}; }
  SourceLocation location(const std::string& path) const { return fields.find(file, path); }
  // "namespace/name"
  std::string key() const { return namespace_ + "/" + name; }
};

// ---------------------------------------------------------------------------
// Shared pieces

struct StringMatch {
  enum class Kind { kExact, kPrefix, kRegex };
  Kind kind = Kind::kExact;
  std::string value;
};

struct PortSelector {
  uint32_t number = 0;
};

struct Destination {
  std::string host;
  std::string subset;
  std::optional<PortSelector> port;
};

// ---------------------------------------------------------------------------
// ServiceEntry

struct ServicePort {
  uint32_t number = 0;
  std::string protocol;  // HTTP, HTTPS, HTTP2, GRPC, TLS, TCP, MONGO, ... (upper-cased)
  std::string name;
  uint32_t target_port = 0;  // 0: same as number
};

struct WorkloadEntry {
  std::string address;
  std::map<std::string, uint32_t> ports;  // port name -> port
  Labels labels;
  std::string network;
  std::string locality;
  uint32_t weight = 0;
  std::string service_account;
};

enum class ServiceLocation { kMeshExternal, kMeshInternal };
enum class Resolution { kNone, kStatic, kDns, kDnsRoundRobin };

struct ServiceEntry {
  ObjectMeta meta;
  std::vector<std::string> hosts;
  std::vector<std::string> addresses;
  std::vector<ServicePort> ports;
  ServiceLocation location = ServiceLocation::kMeshExternal;
  Resolution resolution = Resolution::kNone;
  std::vector<WorkloadEntry> endpoints;
  std::optional<Labels> workload_selector;
  std::vector<std::string> export_to;
  std::vector<std::string> subject_alt_names;
};

// ---------------------------------------------------------------------------
// VirtualService

struct HTTPMatchRequest {
  std::string name;
  std::optional<StringMatch> uri;
  std::optional<StringMatch> scheme;
  std::optional<StringMatch> method;
  std::optional<StringMatch> authority;
  std::map<std::string, StringMatch> headers;
  std::map<std::string, StringMatch> without_headers;
  std::map<std::string, StringMatch> query_params;
  bool ignore_uri_case = false;
  uint32_t port = 0;  // 0: any
  Labels source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
};

struct HeaderOperations {
  std::map<std::string, std::string> set;
  std::map<std::string, std::string> add;
  std::vector<std::string> remove;
};

struct Headers {
  std::optional<HeaderOperations> request;
  std::optional<HeaderOperations> response;
};

struct HTTPRouteDestination {
  Destination destination;
  int32_t weight = 0;
  bool weight_set = false;  // a lone destination without weight takes all traffic
  std::optional<Headers> headers;
};

struct HTTPRedirect {
  std::string uri;
  std::string authority;
  uint32_t port = 0;
  std::string scheme;
  uint32_t redirect_code = 301;
};

struct HTTPDirectResponse {
  uint32_t status = 0;
  std::optional<std::string> body;  // body.string or decoded body.bytes
};

struct HTTPRewrite {
  std::string uri;
  std::string authority;
  // uriRegexRewrite (Envoy's regex_rewrite): every match of `match` in the
  // path (query string excluded) is replaced by `rewrite`, RE2 style (\1 is
  // the first capture group).
  struct RegexRewrite {
    std::string match;
    std::string rewrite;
  };
  std::optional<RegexRewrite> uri_regex_rewrite;
};

struct HTTPRetry {
  int32_t attempts = 0;
  std::optional<Duration> per_try_timeout;
  std::string retry_on;
  bool retry_remote_localities = false;
  // The back-off's base interval between tries (Envoy's retry_back_off
  // base_interval; its max_interval is ten times it); unset: 25 ms.
  std::optional<Duration> backoff;
};

struct Percent {
  double value = 0;  // 0..100
};

struct HTTPFaultInjection {
  struct Delay {
    std::optional<Duration> fixed_delay;
    std::optional<Percent> percentage;
  };
  struct Abort {
    uint32_t http_status = 0;
    std::optional<Percent> percentage;
  };
  std::optional<Delay> delay;
  std::optional<Abort> abort;
};

// http[].mirrors[] (Istio 1.18+): one of several mirror destinations, each
// with its own share of requests (100 % when unset).
struct HTTPMirrorPolicy {
  std::optional<Destination> destination;
  std::optional<Percent> percentage;
};

struct HTTPRoute {
  std::string name;
  std::vector<HTTPMatchRequest> match;
  std::vector<HTTPRouteDestination> route;
  std::optional<HTTPRedirect> redirect;
  std::optional<HTTPDirectResponse> direct_response;
  std::optional<HTTPRewrite> rewrite;
  std::optional<Duration> timeout;
  std::optional<HTTPRetry> retries;
  std::optional<HTTPFaultInjection> fault;
  std::optional<Destination> mirror;
  std::optional<Percent> mirror_percentage;  // mirror's share only, not mirrors'
  std::vector<HTTPMirrorPolicy> mirrors;     // exclusive with mirror
  // Istio 1.4's mirror_percent (deprecated): the share when
  // mirrorPercentage is unset.
  std::optional<uint32_t> mirror_percent;
  std::optional<Headers> headers;
};

struct RouteDestination {
  Destination destination;
  int32_t weight = 0;
  bool weight_set = false;
};

struct TLSMatchAttributes {
  std::vector<std::string> sni_hosts;
  std::vector<std::string> destination_subnets;
  uint32_t port = 0;
  Labels source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
};

struct TLSRoute {
  std::vector<TLSMatchAttributes> match;
  std::vector<RouteDestination> route;
};

struct L4MatchAttributes {
  std::vector<std::string> destination_subnets;
  uint32_t port = 0;
  Labels source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
};

struct TCPRoute {
  std::vector<L4MatchAttributes> match;
  std::vector<RouteDestination> route;
};

struct VirtualService {
  ObjectMeta meta;
  std::vector<std::string> hosts;
  std::vector<std::string> gateways;  // empty in the document means [mesh]
  std::vector<HTTPRoute> http;
  std::vector<TLSRoute> tls;
  std::vector<TCPRoute> tcp;
  std::vector<std::string> export_to;

  // The gateways the resource applies to: `gateways`, or {"mesh"} when omitted.
  std::vector<std::string> effective_gateways() const;
};

// ---------------------------------------------------------------------------
// DestinationRule

enum class SimpleLB { kUnspecified, kRoundRobin, kLeastRequest, kLeastConn, kRandom, kPassthrough };

struct ConsistentHashLB {
  std::string http_header_name;
  std::string http_cookie_name;
  std::optional<Duration> http_cookie_ttl;
  std::string http_cookie_path;  // Path= of a made-up cookie
  bool use_source_ip = false;
  std::string http_query_parameter_name;
  uint64_t minimum_ring_size = 0;
};

struct LoadBalancerSettings {
  SimpleLB simple = SimpleLB::kUnspecified;
  std::optional<ConsistentHashLB> consistent_hash;
};

struct TCPSettings {
  int32_t max_connections = 0;  // 0: unlimited (Envoy default 2^32-1)
  std::optional<Duration> connect_timeout;
  struct KeepAlive {
    uint32_t probes = 0;
    std::optional<Duration> time;
    std::optional<Duration> interval;
  };
  std::optional<KeepAlive> tcp_keepalive;
  // A TCP proxy connection's idle timeout (Envoy's tcp_proxy idle_timeout;
  // 0s disables it) and, for HTTP, the pool's when http.idleTimeout is unset.
  std::optional<Duration> idle_timeout;
  // How long a connection may live: a TCP proxy connection is closed then
  // (Envoy's max_downstream_connection_duration, flag DT); an HTTP upstream
  // connection carries no request after it (Envoy's max_connection_duration).
  std::optional<Duration> max_connection_duration;
};

struct HTTPSettings {
  int32_t http1_max_pending_requests = 0;
  int32_t http2_max_requests = 0;
  int32_t max_requests_per_connection = 0;
  int32_t max_retries = 0;
  std::optional<Duration> idle_timeout;
};

struct ConnectionPoolSettings {
  std::optional<TCPSettings> tcp;
  std::optional<HTTPSettings> http;
};

struct OutlierDetection {
  std::optional<uint32_t> consecutive_5xx_errors;
  std::optional<uint32_t> consecutive_gateway_errors;
  std::optional<Duration> interval;
  std::optional<Duration> base_ejection_time;
  int32_t max_ejection_percent = 0;
  int32_t min_health_percent = 0;                // Envoy's healthy_panic_threshold when > 0 (Istio 1.4)
  std::optional<uint32_t> consecutive_errors;    // deprecated: consecutive gateway errors (Istio 1.4)
};

enum class ClientTLSMode { kDisable, kSimple, kMutual, kIstioMutual };

struct ClientTLSSettings {
  ClientTLSMode mode = ClientTLSMode::kDisable;
  std::string client_certificate;
  std::string private_key;
  std::string ca_certificates;
  std::string ca_crl;  // PEM CRLs checked against the upstream's chain
  std::string credential_name;
  std::vector<std::string> subject_alt_names;
  std::string sni;
  bool insecure_skip_verify = false;
};

struct PortTrafficPolicy {
  std::optional<PortSelector> port;
  std::optional<LoadBalancerSettings> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<ClientTLSSettings> tls;
};

// trafficPolicy.tunnel: the host's endpoints are HTTP forward proxies; a
// connection routed there by a TCP or TLS route goes through a tunnel to
// target_host:target_port (HTTP/1.1 CONNECT). Not for HTTP routes.
struct TunnelSettings {
  std::string protocol;  // "CONNECT" (also when empty) or "POST"
  std::string target_host;
  uint32_t target_port = 0;
};

struct TrafficPolicy {
  std::optional<LoadBalancerSettings> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<ClientTLSSettings> tls;
  std::vector<PortTrafficPolicy> port_level_settings;
  std::optional<TunnelSettings> tunnel;
  bool has_proxy_protocol = false;  // proxyProtocol: read, not supported (a warning)
};

struct Subset {
  std::string name;
  Labels labels;
  std::optional<TrafficPolicy> traffic_policy;
};

struct DestinationRule {
  ObjectMeta meta;
  std::string host;
  std::optional<TrafficPolicy> traffic_policy;
  std::vector<Subset> subsets;
  std::vector<std::string> export_to;
  std::optional<Labels> workload_selector;
};

// ---------------------------------------------------------------------------
// Gateway

enum class ServerTLSMode {
  kPassthrough,
  kSimple,
  kMutual,
  kAutoPassthrough,
  kIstioMutual,
  kOptionalMutual
};

struct ServerTLSSettings {
  bool https_redirect = false;
  ServerTLSMode mode = ServerTLSMode::kPassthrough;
  std::string server_certificate;
  std::string private_key;
  std::string ca_certificates;
  std::string ca_crl;  // PEM CRLs checked against a client's chain (MUTUAL)
  std::string credential_name;
  std::vector<std::string> subject_alt_names;
  std::vector<std::string> verify_certificate_spki;
  std::vector<std::string> verify_certificate_hash;
  std::string min_protocol_version;  // TLS_AUTO, TLSV1_0 .. TLSV1_3; empty = unset
  std::string max_protocol_version;
  std::vector<std::string> cipher_suites;
};

struct GatewayPort {
  uint32_t number = 0;
  std::string protocol;  // upper-cased
  std::string name;
  uint32_t target_port = 0;
};

struct Server {
  GatewayPort port;
  std::string bind;
  std::vector<std::string> hosts;
  std::optional<ServerTLSSettings> tls;
  std::string name;
};

struct Gateway {
  ObjectMeta meta;
  Labels selector;
  std::vector<Server> servers;
};

// ---------------------------------------------------------------------------
// Mesh config (the `istio` ConfigMap's `mesh` key) and install options

enum class OutboundTrafficPolicyMode { kAllowAny, kRegistryOnly };

// ---------------------------------------------------------------------------
// Sidecar (networking.istio.io): which services a workload's proxy sees and
// its own outboundTrafficPolicy. Sluice applies the egress side.

struct SidecarEgressListener {
  std::optional<GatewayPort> port;  // none: the catch-all listener (every other port)
  std::string bind;
  std::string capture_mode;        // DEFAULT | IPTABLES | NONE (as written)
  std::vector<std::string> hosts;  // "namespace/dnsName": ns "*", ".", "~" or a name; host "*", "*.suffix" or exact
};

struct SidecarOutboundTrafficPolicy {
  OutboundTrafficPolicyMode mode = OutboundTrafficPolicyMode::kRegistryOnly;  // the proto's default (0)
  std::optional<Destination> egress_proxy;  // ALLOW_ANY only: unknown traffic goes there, not passed through
};

struct Sidecar {
  ObjectMeta meta;
  std::optional<Labels> workload_selector;  // none: every workload of its namespace
  std::vector<SidecarEgressListener> egress;
  size_t ingress_count = 0;                 // inbound listeners: accepted, not applied (Sluice is egress only)
  bool inbound_connection_pool = false;     // likewise
  std::optional<SidecarOutboundTrafficPolicy> outbound_traffic_policy;
};

struct MeshConfig {
  OutboundTrafficPolicyMode outbound_traffic_policy = OutboundTrafficPolicyMode::kAllowAny;
  std::string trust_domain = "cluster.local";
  std::string access_log_file;      // "" = off, "/dev/stdout" as Istio
  std::string access_log_format;    // "" = Envoy/Istio default text format
  std::string access_log_encoding = "TEXT";  // TEXT | JSON
  std::string root_namespace = "istio-system";
  bool enable_auto_mtls = true;
  std::optional<Duration> connect_timeout;  // mesh-wide default, Istio's 10s
  // Every upstream connection's TCP keep-alive; a DestinationRule's
  // tcpKeepalive overrides it field by field (Istio's applyTCPKeepalive).
  std::optional<TCPSettings::KeepAlive> tcp_keepalive;

  std::string file;  // where it came from; empty = built-in default
  uint32_t line = 0;
};

// Interception options, as `istioctl manifest apply --set values.global.proxy.*`
// and the `traffic.sidecar.istio.io/*` annotations spell them.
struct InstallOptions {
  std::vector<std::string> include_ip_ranges{"*"};
  std::vector<std::string> exclude_ip_ranges;
  std::vector<std::string> include_outbound_ports;  // strings: "*" allowed
  std::vector<std::string> exclude_outbound_ports;
  std::optional<OutboundTrafficPolicyMode> outbound_traffic_policy;  // values.global.outboundTrafficPolicy.mode
  std::string istio_namespace = "istio-system";
  bool egress_gateway_enabled = false;

  std::string file;  // values/IstioOperator file, if any
};

// ---------------------------------------------------------------------------
// Everything loaded from a set of paths: an immutable snapshot once built.

struct ConfigSet {
  std::vector<ServiceEntry> service_entries;
  std::vector<VirtualService> virtual_services;
  std::vector<DestinationRule> destination_rules;
  std::vector<Gateway> gateways;
  std::vector<Sidecar> sidecars;
  MeshConfig mesh;
  InstallOptions install;
  // A workload's view (policy::scoped_config) under a Sidecar with an
  // outboundTrafficPolicy: it replaces the mesh config's mode, and its
  // egressProxy (ALLOW_ANY) takes what would be passed through. Which
  // Sidecar: "ns/name (file:line)".
  std::optional<SidecarOutboundTrafficPolicy> sidecar_outbound;
  std::string sidecar_source;
  // A proxy's view: the namespace it serves (DestinationRules are then
  // looked up in Istio's namespace order) and its workload's labels (a
  // sidecar's: VirtualService sourceNamespace/sourceLabels match them);
  // empty namespace: the whole tree.
  std::string view_namespace;
  Labels view_labels;
  bool view_source = false;  // one known workload: source matches apply
  std::vector<std::string> source_files;  // every file that contributed, in load order

  size_t resource_count() const {
    return service_entries.size() + virtual_services.size() + destination_rules.size() +
           gateways.size() + sidecars.size();
  }
};

// Canonical names, as Istio prints them.
const char* to_string(Resolution r);
const char* to_string(ServiceLocation l);
const char* to_string(SimpleLB lb);
const char* to_string(ClientTLSMode m);
const char* to_string(ServerTLSMode m);
const char* to_string(OutboundTrafficPolicyMode m);

// exportTo as seen from namespace `ns` for a resource of `owner_ns`: empty
// or "*" everywhere, "." its own namespace, "~" nowhere, else the listed
// namespaces.
bool exported_to(const std::vector<std::string>& export_to, const std::string& owner_ns, const std::string& ns);
// A label selector: every label of `selector` is on `labels` with that value
// (an empty selector selects everything).
bool labels_match(const Labels& selector, const Labels& labels);
const char* to_string(StringMatch::Kind k);

}  // namespace sluice::config
