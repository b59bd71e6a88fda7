#include "userspace-proxy/engine/connection_stats.h"

namespace sluice::engine {

std::string_view close_reason_code(CloseReason r) {
  switch (r) {
    case CloseReason::kNone: return "-";
    case CloseReason::kCompleted: return "-";
    case CloseReason::kLocalClose: return "LC";
    case CloseReason::kUpstreamConnectFailed: return "UF";
    case CloseReason::kUpstreamConnectTimeout: return "UF,UT";
    case CloseReason::kDownstreamReset: return "DR";
    case CloseReason::kUpstreamReset: return "UR";
    case CloseReason::kIdleTimeout: return "IT";
    case CloseReason::kDetectionTimeout: return "DT";
    case CloseReason::kSniffLimit: return "SL";
    case CloseReason::kDrainDeadline: return "DD";
    case CloseReason::kFilterClose: return "FC";
    case CloseReason::kResourceExhausted: return "RE";
    case CloseReason::kInternalError: return "IE";
    case CloseReason::kMaxDuration: return "MD";
  }
  return "?";
}

std::string_view close_reason_name(CloseReason r) {
  switch (r) {
    case CloseReason::kNone: return "open";
    case CloseReason::kCompleted: return "completed";
    case CloseReason::kLocalClose: return "local_close";
    case CloseReason::kUpstreamConnectFailed: return "upstream_connect_failed";
    case CloseReason::kUpstreamConnectTimeout: return "upstream_connect_timeout";
    case CloseReason::kDownstreamReset: return "downstream_reset";
    case CloseReason::kUpstreamReset: return "upstream_reset";
    case CloseReason::kIdleTimeout: return "idle_timeout";
    case CloseReason::kDetectionTimeout: return "detection_timeout";
    case CloseReason::kSniffLimit: return "sniff_limit";
    case CloseReason::kDrainDeadline: return "drain_deadline";
    case CloseReason::kFilterClose: return "filter_close";
    case CloseReason::kResourceExhausted: return "resource_exhausted";
    case CloseReason::kInternalError: return "internal_error";
    case CloseReason::kMaxDuration: return "max_duration_timeout";
  }
  return "unknown";
}

}  // namespace sluice::engine
