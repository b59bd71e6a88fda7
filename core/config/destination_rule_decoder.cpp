// networking.istio.io DestinationRule spec: traffic policies and subsets.
#include "core/config/resource_decoders.h"

namespace sluice::config::detail {

namespace {

constexpr EnumName<SimpleLB> kSimpleLB[] = {
    {"UNSPECIFIED", SimpleLB::kUnspecified},
    {"ROUND_ROBIN", SimpleLB::kRoundRobin},
    {"LEAST_REQUEST", SimpleLB::kLeastRequest},
    {"LEAST_CONN", SimpleLB::kLeastConn},
    {"RANDOM", SimpleLB::kRandom},
    {"PASSTHROUGH", SimpleLB::kPassthrough},
};

constexpr EnumName<ClientTLSMode> kClientTLSModes[] = {
    {"DISABLE", ClientTLSMode::kDisable},
    {"SIMPLE", ClientTLSMode::kSimple},
    {"MUTUAL", ClientTLSMode::kMutual},
    {"ISTIO_MUTUAL", ClientTLSMode::kIstioMutual},
};

void decode_consistent_hash(const Field& f, ConsistentHashLB& h) {
  f.read_object({
      {"httpHeaderName", [&](Field& v) { v.read(h.http_header_name); }},
      {"httpCookie",
       [&](Field& v) {
         v.read_object({
             {"name", [&](Field& x) { x.read(h.http_cookie_name); }},
             {"ttl", [&](Field& x) { x.read_duration(h.http_cookie_ttl); }},
             {"path", [&](Field& x) { x.read(h.http_cookie_path); }},
         });
       }},
      {"useSourceIp", [&](Field& v) { v.read(h.use_source_ip); }},
      {"httpQueryParameterName", [&](Field& v) { v.read(h.http_query_parameter_name); }},
      {"minimumRingSize", [&](Field& v) { v.read(h.minimum_ring_size); }},
      {"ringHash", warn_unsupported},
      {"maglev", warn_unsupported},
  });
}

void decode_load_balancer(const Field& f, LoadBalancerSettings& lb) {
  f.read_object({
      {"simple", [&](Field& v) { v.read_enum(lb.simple, kSimpleLB); }},
      {"consistentHash",
       [&](Field& v) { read_optional(v, lb.consistent_hash, decode_consistent_hash); }},
      {"localityLbSetting", warn_unsupported},
      {"warmupDurationSecs", warn_unsupported},
  });
}

void decode_tcp_settings(const Field& f, TCPSettings& tcp) {
  f.read_object({
      {"maxConnections", [&](Field& v) { v.read(tcp.max_connections); }},
      {"connectTimeout", [&](Field& v) { v.read_duration(tcp.connect_timeout); }},
      {"tcpKeepalive", [&](Field& v) { read_optional(v, tcp.tcp_keepalive, decode_tcp_keepalive); }},
      {"maxConnectionDuration", [&](Field& v) { v.read_duration(tcp.max_connection_duration); }},
      {"idleTimeout", [&](Field& v) { v.read_duration(tcp.idle_timeout); }},
  });
}

void decode_http_settings(const Field& f, HTTPSettings& http) {
  f.read_object({
      {"http1MaxPendingRequests", [&](Field& v) { v.read(http.http1_max_pending_requests); }},
      {"http2MaxRequests", [&](Field& v) { v.read(http.http2_max_requests); }},
      {"maxRequestsPerConnection", [&](Field& v) { v.read(http.max_requests_per_connection); }},
      {"maxRetries", [&](Field& v) { v.read(http.max_retries); }},
      {"idleTimeout", [&](Field& v) { v.read_duration(http.idle_timeout); }},
      {"h2UpgradePolicy", warn_unsupported},
      {"useClientProtocol", warn_unsupported},
      {"maxConcurrentStreams", warn_unsupported},
  });
}

void decode_connection_pool(const Field& f, ConnectionPoolSettings& pool) {
  f.read_object({
      {"tcp", [&](Field& v) { read_optional(v, pool.tcp, decode_tcp_settings); }},
      {"http", [&](Field& v) { read_optional(v, pool.http, decode_http_settings); }},
  });
}

void decode_outlier_detection(const Field& f, OutlierDetection& od) {
  auto read_count = [](Field& v, std::optional<uint32_t>& out) {
    uint32_t value = 0;
    if (v.read(value)) out = value;
  };
  f.read_object({
      {"consecutive5xxErrors", [&](Field& v) { read_count(v, od.consecutive_5xx_errors); }},
      {"consecutiveGatewayErrors", [&](Field& v) { read_count(v, od.consecutive_gateway_errors); }},
      {"interval", [&](Field& v) { v.read_duration(od.interval); }},
      {"baseEjectionTime", [&](Field& v) { v.read_duration(od.base_ejection_time); }},
      {"maxEjectionPercent", [&](Field& v) { v.read(od.max_ejection_percent); }},
      {"consecutiveErrors", [&](Field& v) { read_count(v, od.consecutive_errors); }},
      {"minHealthPercent", [&](Field& v) { v.read(od.min_health_percent); }},
      {"splitExternalLocalOriginErrors", warn_unsupported},
      {"consecutiveLocalOriginFailures", warn_unsupported},
  });
}

void decode_client_tls(const Field& f, ClientTLSSettings& tls) {
  f.read_object({
      {"mode", [&](Field& v) { v.read_enum(tls.mode, kClientTLSModes); }},
      {"clientCertificate", [&](Field& v) { v.read(tls.client_certificate); }},
      {"privateKey", [&](Field& v) { v.read(tls.private_key); }},
      {"caCertificates", [&](Field& v) { v.read(tls.ca_certificates); }},
      {"credentialName", [&](Field& v) { v.read(tls.credential_name); }},
      {"subjectAltNames", [&](Field& v) { v.read(tls.subject_alt_names); }},
      {"sni", [&](Field& v) { v.read(tls.sni); }},
      {"insecureSkipVerify", [&](Field& v) { v.read(tls.insecure_skip_verify); }},
      {"caCrl", [&](Field& v) { v.read(tls.ca_crl); }},
  });
}

void decode_port_traffic_policy(const Field& f, PortTrafficPolicy& p) {
  f.read_object({
      {"port", [&](Field& v) { read_optional(v, p.port, decode_port_selector); }},
      {"loadBalancer", [&](Field& v) { read_optional(v, p.load_balancer, decode_load_balancer); }},
      {"connectionPool",
       [&](Field& v) { read_optional(v, p.connection_pool, decode_connection_pool); }},
      {"outlierDetection",
       [&](Field& v) { read_optional(v, p.outlier_detection, decode_outlier_detection); }},
      {"tls", [&](Field& v) { read_optional(v, p.tls, decode_client_tls); }},
  });
}

void decode_traffic_policy(const Field& f, TrafficPolicy& p) {
  f.read_object({
      {"loadBalancer", [&](Field& v) { read_optional(v, p.load_balancer, decode_load_balancer); }},
      {"connectionPool",
       [&](Field& v) { read_optional(v, p.connection_pool, decode_connection_pool); }},
      {"outlierDetection",
       [&](Field& v) { read_optional(v, p.outlier_detection, decode_outlier_detection); }},
      {"tls", [&](Field& v) { read_optional(v, p.tls, decode_client_tls); }},
      {"portLevelSettings",
       [&](Field& v) {
         v.read_list([&](Field& item) {
           decode_port_traffic_policy(item, p.port_level_settings.emplace_back());
         });
       }},
      {"tunnel",
       [&](Field& v) {
         TunnelSettings& t = p.tunnel.emplace();
         v.read_object({
             {"protocol", [&](Field& x) { x.read(t.protocol); }},
             {"targetHost", [&](Field& x) { x.read(t.target_host); }},
             {"targetPort", [&](Field& x) { x.read(t.target_port); }},
         });
       }},
      {"proxyProtocol",
       [&](Field& v) {
         p.has_proxy_protocol = true;
         warn_unsupported(v);
       }},
  });
}

}  // namespace

void decode_destination_rule_spec(const Field& spec, DestinationRule& dr) {
  spec.read_object({
      {"host", [&](Field& v) { v.read(dr.host); }},
      {"trafficPolicy",
       [&](Field& v) { read_optional(v, dr.traffic_policy, decode_traffic_policy); }},
      {"subsets",
       [&](Field& v) {
         v.read_list([&](Field& item) {
           Subset& subset = dr.subsets.emplace_back();
           item.read_object({
               {"name", [&](Field& x) { x.read(subset.name); }},
               {"labels", [&](Field& x) { x.read(subset.labels); }},
               {"trafficPolicy",
                [&](Field& x) { read_optional(x, subset.traffic_policy, decode_traffic_policy); }},
           });
         });
       }},
      {"exportTo", [&](Field& v) { v.read(dr.export_to); }},
      {"workloadSelector", [&](Field& v) { decode_workload_selector(v, dr.workload_selector); }},
  });
}

void decode_tcp_keepalive(const Field& f, TCPSettings::KeepAlive& ka) {
  f.read_object({
      {"probes", [&](Field& x) { x.read(ka.probes); }},
      {"time", [&](Field& x) { x.read_duration(ka.time); }},
      {"interval", [&](Field& x) { x.read_duration(ka.interval); }},
  });
}

}  // namespace sluice::config::detail
