// Access log lines in Istio's default text format (Envoy's
// %START_TIME% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ...
// as istio/istio pkg/config/mesh sets it), or as JSON with Istio's keys when
// the mesh config says accessLogEncoding: JSON. Pure formatting: the proxy
// fills an entry per HTTP request or per TCP connection and writes the line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sluice::proxy {

struct AccessLogEntry {
  int64_t start_realtime_ns = 0;  // wall clock at the start of the request/connection

  // HTTP requests only; a TCP connection prints "- - -" and response code 0.
  struct Http {
    std::string method;
    std::string path;
    std::string protocol = "HTTP/1.1";
    uint32_t response_code = 0;
    std::string authority;
    std::string user_agent;
    std::string request_id;
    std::string forwarded_for;
  };
  std::optional<Http> http;

  std::string response_flags;            // "UH", "UF", "NR", ... empty -> "-"
  std::string response_code_details;     // "via_upstream", "direct_response", ...
  std::string connection_termination_details;
  std::string upstream_transport_failure_reason;
  uint64_t bytes_received = 0;  // from downstream
  uint64_t bytes_sent = 0;      // to downstream
  uint64_t duration_ms = 0;
  std::optional<uint64_t> upstream_service_time_ms;
  std::string upstream_host;            // "203.0.113.5:80"
  std::string upstream_cluster;         // "outbound|80||edition.cnn.com", "PassthroughCluster"
  std::string upstream_local_address;
  std::string downstream_local_address; // the original destination, as Envoy reports it
  std::string downstream_remote_address;
  std::string requested_server_name;    // SNI
  std::string route_name;               // "allow_any", "block_all", ...
};

// One line, newline-terminated.
std::string format_text(const AccessLogEntry& e);
std::string format_json(const AccessLogEntry& e);

// "2026-11-26T13:31:12.345Z"
std::string format_start_time(int64_t realtime_ns);

}  // namespace sluice::proxy
