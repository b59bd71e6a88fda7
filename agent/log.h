// Minimal leveled logging to stderr for the agent (one line per event, so
// journald and `kubectl logs` show each on its own).
#pragma once

#include <string>

namespace sluice::agent {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
void log(LogLevel level, const std::string& message);

inline void log_info(const std::string& m) { log(LogLevel::kInfo, m); }
inline void log_warning(const std::string& m) { log(LogLevel::kWarning, m); }
inline void log_error(const std::string& m) { log(LogLevel::kError, m); }
inline void log_debug(const std::string& m) { log(LogLevel::kDebug, m); }

}  // namespace sluice::agent
