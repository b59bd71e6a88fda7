#include "userspace-proxy/proxy/access_log.h"

#include <ctime>

#include <nlohmann/json.hpp>

namespace sluice::proxy {

namespace {

// Envoy prints "-" for an empty value.
const std::string& dash(const std::string& s) {
  static const std::string kDash = "-";
  return s.empty() ? kDash : s;
}

}  // namespace

std::string format_start_time(int64_t realtime_ns) {
  const time_t secs = static_cast<time_t>(realtime_ns / 1'000'000'000);
  const int millis = static_cast<int>((realtime_ns / 1'000'000) % 1000);
  struct tm tm_utc {};
  gmtime_r(&secs, &tm_utc);
  char buf[40];
  const size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm_utc);
  snprintf(buf + n, sizeof(buf) - n, ".%03dZ", millis);
  return buf;
}

std::string format_text(const AccessLogEntry& e) {
  std::string out;
  out.reserve(256);
  out += '[';
  out += format_start_time(e.start_realtime_ns);
  out += "] \"";
  if (e.http) {
    out += dash(e.http->method) + " " + dash(e.http->path) + " " + dash(e.http->protocol);
  } else {
    out += "- - -";
  }
  out += "\" ";
  out += std::to_string(e.http ? e.http->response_code : 0);
  out += ' ' + dash(e.response_flags);
  out += ' ' + dash(e.response_code_details);
  out += ' ' + dash(e.connection_termination_details);
  out += " \"" + dash(e.upstream_transport_failure_reason) + "\"";
  out += ' ' + std::to_string(e.bytes_received);
  out += ' ' + std::to_string(e.bytes_sent);
  out += ' ' + std::to_string(e.duration_ms);
  out += ' ' + (e.upstream_service_time_ms ? std::to_string(*e.upstream_service_time_ms) : std::string("-"));
  const std::string empty;
  out += " \"" + dash(e.http ? e.http->forwarded_for : empty) + "\"";
  out += " \"" + dash(e.http ? e.http->user_agent : empty) + "\"";
  out += " \"" + dash(e.http ? e.http->request_id : empty) + "\"";
  out += " \"" + dash(e.http ? e.http->authority : empty) + "\"";
  out += " \"" + dash(e.upstream_host) + "\"";
  out += ' ' + dash(e.upstream_cluster);
  out += ' ' + dash(e.upstream_local_address);
  out += ' ' + dash(e.downstream_local_address);
  out += ' ' + dash(e.downstream_remote_address);
  out += ' ' + dash(e.requested_server_name);
  out += ' ' + dash(e.route_name);
  out += '\n';
  return out;
}

std::string format_json(const AccessLogEntry& e) {
  // Istio's JSON access log keys (EnvoyJSONLogFormatIstio).
  auto opt = [](const std::string& s) -> nlohmann::json { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
  nlohmann::json j;
  j["start_time"] = format_start_time(e.start_realtime_ns);
  j["method"] = e.http ? opt(e.http->method) : nullptr;
  j["path"] = e.http ? opt(e.http->path) : nullptr;
  j["protocol"] = e.http ? opt(e.http->protocol) : nullptr;
  j["response_code"] = e.http ? e.http->response_code : 0;
  j["response_flags"] = opt(e.response_flags);
  j["response_code_details"] = opt(e.response_code_details);
  j["connection_termination_details"] = opt(e.connection_termination_details);
  j["upstream_transport_failure_reason"] = opt(e.upstream_transport_failure_reason);
  j["bytes_received"] = e.bytes_received;
  j["bytes_sent"] = e.bytes_sent;
  j["duration"] = e.duration_ms;
  j["upstream_service_time"] = e.upstream_service_time_ms ? nlohmann::json(std::to_string(*e.upstream_service_time_ms)) : nullptr;
  j["x_forwarded_for"] = e.http ? opt(e.http->forwarded_for) : nullptr;
  j["user_agent"] = e.http ? opt(e.http->user_agent) : nullptr;
  j["request_id"] = e.http ? opt(e.http->request_id) : nullptr;
  j["authority"] = e.http ? opt(e.http->authority) : nullptr;
  j["upstream_host"] = opt(e.upstream_host);
  j["upstream_cluster"] = opt(e.upstream_cluster);
  j["upstream_local_address"] = opt(e.upstream_local_address);
  j["downstream_local_address"] = opt(e.downstream_local_address);
  j["downstream_remote_address"] = opt(e.downstream_remote_address);
  j["requested_server_name"] = opt(e.requested_server_name);
  j["route_name"] = opt(e.route_name);
  return j.dump() + "\n";
}

}  // namespace sluice::proxy
