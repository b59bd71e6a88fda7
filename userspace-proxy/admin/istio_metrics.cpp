#include "userspace-proxy/admin/istio_metrics.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sluice::admin {
namespace {

// Istio's label order (what its proxies print), the source side first.
const std::vector<std::string>& request_label_names() {
  static const std::vector<std::string> names = {
      "reporter",
      "source_workload",
      "source_canonical_service",
      "source_canonical_revision",
      "source_workload_namespace",
      "source_principal",
      "source_app",
      "source_version",
      "source_cluster",
      "destination_workload",
      "destination_workload_namespace",
      "destination_principal",
      "destination_app",
      "destination_version",
      "destination_service",
      "destination_canonical_service",
      "destination_canonical_revision",
      "destination_service_name",
      "destination_service_namespace",
      "destination_cluster",
      "request_protocol",
      "response_code",
      "grpc_response_status",
      "response_flags",
      "connection_security_policy",
  };
  return names;
}

std::vector<std::string> tcp_label_names() {
  std::vector<std::string> names;
  for (const std::string& n : request_label_names()) {
    if (n != "response_code" && n != "grpc_response_status") names.push_back(n);
  }
  return names;
}

// The families are fixed, valid names: failing to register them means the
// registry already has them, a wiring mistake that must not go unnoticed.
template <typename T>
T registered(std::optional<T> family, const std::string& error) {
  if (!family) {
    std::fprintf(stderr, "IstioMetrics: %s\n", error.c_str());
    std::abort();
  }
  return *family;
}

}  // namespace

IstioMetrics::IstioMetrics(MetricsRegistry& registry)
    : requests_total_([&] {
        std::string err;
        return registered(registry.add_counter("istio_requests_total",
                                               "Requests handled by an Istio proxy (Istio standard metric).",
                                               request_label_names(), &err),
                          err);
      }()),
      request_duration_([&] {
        std::string err;
        return registered(
            registry.add_histogram("istio_request_duration_milliseconds",
                                   "Duration of requests in milliseconds (Istio standard metric).",
                                   request_label_names(),
                                   std::vector<double>(kIstioDurationBucketsMs.begin(), kIstioDurationBucketsMs.end()),
                                   &err),
            err);
      }()),
      tcp_opened_([&] {
        std::string err;
        return registered(registry.add_counter("istio_tcp_connections_opened_total",
                                               "TCP connections opened (Istio standard metric).", tcp_label_names(),
                                               &err),
                          err);
      }()),
      tcp_closed_([&] {
        std::string err;
        return registered(registry.add_counter("istio_tcp_connections_closed_total",
                                               "TCP connections closed (Istio standard metric).", tcp_label_names(),
                                               &err),
                          err);
      }()),
      tcp_sent_([&] {
        std::string err;
        return registered(registry.add_counter("istio_tcp_sent_bytes_total",
                                               "Bytes sent during response over TCP connections (Istio standard "
                                               "metric).",
                                               tcp_label_names(), &err),
                          err);
      }()),
      tcp_received_([&] {
        std::string err;
        return registered(registry.add_counter("istio_tcp_received_bytes_total",
                                               "Bytes received during request over TCP connections (Istio standard "
                                               "metric).",
                                               tcp_label_names(), &err),
                          err);
      }()) {}

std::array<std::string_view, IstioMetrics::kRequestLabelCount> IstioMetrics::request_label_values(
    const IstioLabels& l) {
  return {l.reporter,
          l.source_workload,
          l.source_canonical_service,
          l.source_canonical_revision,
          l.source_workload_namespace,
          l.source_principal,
          l.source_app,
          l.source_version,
          l.source_cluster,
          l.destination_workload,
          l.destination_workload_namespace,
          l.destination_principal,
          l.destination_app,
          l.destination_version,
          l.destination_service,
          l.destination_canonical_service,
          l.destination_canonical_revision,
          l.destination_service_name,
          l.destination_service_namespace,
          l.destination_cluster,
          l.request_protocol,
          l.response_code,
          l.grpc_response_status,
          l.response_flags,
          l.connection_security_policy};
}

std::array<std::string_view, IstioMetrics::kTcpLabelCount> IstioMetrics::tcp_label_values(const IstioLabels& l) {
  return {l.reporter,
          l.source_workload,
          l.source_canonical_service,
          l.source_canonical_revision,
          l.source_workload_namespace,
          l.source_principal,
          l.source_app,
          l.source_version,
          l.source_cluster,
          l.destination_workload,
          l.destination_workload_namespace,
          l.destination_principal,
          l.destination_app,
          l.destination_version,
          l.destination_service,
          l.destination_canonical_service,
          l.destination_canonical_revision,
          l.destination_service_name,
          l.destination_service_namespace,
          l.destination_cluster,
          l.request_protocol,
          l.response_flags,
          l.connection_security_policy};
}

void IstioMetrics::record_request(MetricsShard& shard, const IstioLabels& labels, double duration_ms) {
  auto values = request_label_values(labels);
  shard.add(shard.series(requests_total_, values));
  shard.observe(shard.series(request_duration_, values), duration_ms);
}

void IstioMetrics::record_tcp_open(MetricsShard& shard, const IstioLabels& labels) {
  auto values = tcp_label_values(labels);
  shard.add(shard.series(tcp_opened_, values));
}

void IstioMetrics::record_tcp_close(MetricsShard& shard, const IstioLabels& labels, uint64_t sent_bytes,
                                    uint64_t received_bytes) {
  auto values = tcp_label_values(labels);
  shard.add(shard.series(tcp_closed_, values));
  // Added even when 0, so the byte series exist alongside the connection ones.
  shard.add(shard.series(tcp_sent_, values), sent_bytes);
  shard.add(shard.series(tcp_received_, values), received_bytes);
}

}  // namespace sluice::admin
