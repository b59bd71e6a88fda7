// Istio's standard metrics (istio.io "Istio Standard Metrics"), with the names,
// label names and histogram buckets Istio's proxies export, so that existing
// dashboards and alerts (Kiali, the Istio Grafana dashboards) work unchanged.
//
//   IstioMetrics istio(registry);
//   IstioLabels l;  l.reporter = "source"; l.destination_service = "edition.cnn.com"; ...
//   istio.record_request(shard, l, elapsed_ms);     // HTTP: counter + duration
//   istio.record_tcp_open(shard, l);  istio.record_tcp_close(shard, l, sent, received);
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "userspace-proxy/admin/metrics_registry.h"

namespace sluice::admin {

// Istio's label values. Istio reports "unknown" for what a proxy cannot know
// (e.g. the destination workload of an external service), never an empty
// value, so that is the default here too.
struct IstioLabels {
  std::string_view reporter = "source";  // "source" (client side: Sluice's sidecar role), "destination"
  std::string_view source_workload = "unknown";
  std::string_view source_canonical_service = "unknown";
  std::string_view source_canonical_revision = "latest";
  std::string_view source_workload_namespace = "unknown";
  std::string_view source_principal = "unknown";
  std::string_view source_app = "unknown";
  std::string_view source_version = "unknown";
  std::string_view source_cluster = "unknown";
  std::string_view destination_workload = "unknown";
  std::string_view destination_workload_namespace = "unknown";
  std::string_view destination_principal = "unknown";
  std::string_view destination_app = "unknown";
  std::string_view destination_version = "unknown";
  std::string_view destination_service = "unknown";  // FQDN, e.g. edition.cnn.com
  std::string_view destination_canonical_service = "unknown";
  std::string_view destination_canonical_revision = "latest";
  std::string_view destination_service_name = "unknown";  // e.g. edition.cnn.com, PassthroughCluster, BlackHoleCluster
  std::string_view destination_service_namespace = "unknown";
  std::string_view destination_cluster = "unknown";
  std::string_view request_protocol = "http";  // "http", "grpc", "tcp"
  std::string_view response_code = "200";     // HTTP status; "0" when no response was received
  std::string_view grpc_response_status = "";
  std::string_view response_flags = "-";  // Envoy's flags: "-", "UH", "UF", "NR", ...
  std::string_view connection_security_policy = "unknown";  // "mutual_tls", "none", "unknown"
};

// Istio's request-duration buckets, in milliseconds.
inline constexpr std::array<double, 19> kIstioDurationBucketsMs = {
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};

class IstioMetrics {
 public:
  // Registers the families in `registry`, which must not have them yet.
  explicit IstioMetrics(MetricsRegistry& registry);

  // One HTTP request: istio_requests_total and istio_request_duration_milliseconds.
  void record_request(MetricsShard& shard, const IstioLabels& labels, double duration_ms);
  // A TCP connection opened: istio_tcp_connections_opened_total.
  void record_tcp_open(MetricsShard& shard, const IstioLabels& labels);
  // A TCP connection closed: istio_tcp_connections_closed_total, and its bytes
  // in istio_tcp_sent_bytes_total (towards the client: "sent during response")
  // and istio_tcp_received_bytes_total (from the client).
  void record_tcp_close(MetricsShard& shard, const IstioLabels& labels, uint64_t sent_bytes, uint64_t received_bytes);

  // For callers that resolve a series once (per connection, per route).
  const CounterFamily& requests_total() const { return requests_total_; }
  const HistogramFamily& request_duration() const { return request_duration_; }
  const CounterFamily& tcp_opened() const { return tcp_opened_; }
  const CounterFamily& tcp_closed() const { return tcp_closed_; }
  const CounterFamily& tcp_sent_bytes() const { return tcp_sent_; }
  const CounterFamily& tcp_received_bytes() const { return tcp_received_; }

  // Label values in the order the families were registered with.
  static constexpr std::size_t kRequestLabelCount = 25;
  static constexpr std::size_t kTcpLabelCount = 23;  // no response_code, grpc_response_status
  static std::array<std::string_view, kRequestLabelCount> request_label_values(const IstioLabels& l);
  static std::array<std::string_view, kTcpLabelCount> tcp_label_values(const IstioLabels& l);

 private:
  CounterFamily requests_total_;
  HistogramFamily request_duration_;
  CounterFamily tcp_opened_;
  CounterFamily tcp_closed_;
  CounterFamily tcp_sent_;
  CounterFamily tcp_received_;
};

}  // namespace sluice::admin
