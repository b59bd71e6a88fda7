// The log level the admin endpoint's /logging changes at run time, with
// Envoy's level names so `curl -X POST localhost:15000/logging?level=debug`
// works as it does against an Istio proxy.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::admin {

enum class LogLevel : uint8_t { kTrace, kDebug, kInfo, kWarning, kError, kCritical, kOff };

// "trace", "debug", "info", "warning", "error", "critical", "off".
std::string_view to_string(LogLevel level);
// Accepts the names above, and "warn" (Envoy's alias).
std::optional<LogLevel> parse_log_level(std::string_view name);
// "trace, debug, info, warning, error, critical, off" (for error messages).
std::string_view log_level_names();

// The process's current level: written by the admin thread, read by every
// thread that logs (a relaxed atomic: a level change need not be ordered with
// anything else).
class LogLevelSetting {
 public:
  explicit LogLevelSetting(LogLevel initial = LogLevel::kInfo) : level_(initial) {}
  LogLevel get() const { return level_.load(std::memory_order_relaxed); }
  void set(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  // A message at `level` should be written.
  bool enabled(LogLevel level) const { return level != LogLevel::kOff && level >= get(); }

 private:
  std::atomic<LogLevel> level_;
};

}  // namespace sluice::admin
