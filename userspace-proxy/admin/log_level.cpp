#include "userspace-proxy/admin/log_level.h"

namespace sluice::admin {

std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
    case LogLevel::kCritical: return "critical";
    case LogLevel::kOff: return "off";
  }
  return "info";
}

std::optional<LogLevel> parse_log_level(std::string_view name) {
  for (LogLevel l : {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError,
                     LogLevel::kCritical, LogLevel::kOff}) {
    if (name == to_string(l)) return l;
  }
  if (name == "warn") return LogLevel::kWarning;
  return std::nullopt;
}

std::string_view log_level_names() { return "trace, debug, info, warning, error, critical, off"; }

}  // namespace sluice::admin
