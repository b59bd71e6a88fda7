#include "userspace-proxy/sniff/sniff_plan.h"

#include <array>

#include "userspace-proxy/sniff/ascii.h"

namespace sluice::sniff {
namespace {

struct Entry {
  std::string_view name;  // Istio's spelling (pkg/config/protocol)
  SniffPlan plan;
};

constexpr std::array kPlans = {
    Entry{"HTTP", {SniffMode::kHttp, true, false, "HTTP"}},
    Entry{"HTTP2", {SniffMode::kHttp, true, false, "HTTP2"}},
    Entry{"GRPC", {SniffMode::kHttp, true, false, "GRPC"}},
    Entry{"GRPC-Web", {SniffMode::kHttp, true, false, "GRPC-Web"}},
    Entry{"HTTP_PROXY", {SniffMode::kHttp, false, true, "HTTP_PROXY"}},
    Entry{"HTTPS", {SniffMode::kTlsClientHello, false, false, "HTTPS"}},
    Entry{"TLS", {SniffMode::kTlsClientHello, false, false, "TLS"}},
    Entry{"TCP", {SniffMode::kNone, false, false, "TCP"}},
    Entry{"Mongo", {SniffMode::kNone, false, false, "Mongo"}},
    // MySQL and Redis filters are off by default in Istio: plain TCP.
    Entry{"MySQL", {SniffMode::kNone, false, false, "MySQL"}},
    Entry{"Redis", {SniffMode::kNone, false, false, "Redis"}},
    Entry{"UDP", {SniffMode::kUnsupported, false, false, "UDP"}},
};

}  // namespace

std::string_view to_string(SniffMode mode) {
  switch (mode) {
    case SniffMode::kNone: return "none";
    case SniffMode::kTlsClientHello: return "tls-client-hello";
    case SniffMode::kHttp: return "http";
    case SniffMode::kDetect: return "detect";
    case SniffMode::kUnsupported: return "unsupported";
  }
  return "?";
}

SniffPlan plan_for_port_protocol(std::string_view istio_protocol) {
  const std::string_view p = ascii::trim_ows(istio_protocol);
  for (const Entry& e : kPlans) {
    if (ascii::iequals(p, e.name)) return e.plan;
  }
  // Unset, or a protocol Istio does not know: Istio sniffs those.
  return {SniffMode::kDetect, true, false, p.empty() ? std::string_view{} : std::string_view{"UNKNOWN"}};
}

}  // namespace sluice::sniff
