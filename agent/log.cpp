#include "agent/log.h"

#include <cstdio>
#include <ctime>

namespace sluice::agent {

namespace {
LogLevel g_level = LogLevel::kInfo;

const char* name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }

bool log_enabled(LogLevel level) { return level >= g_level; }

void log(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm t{};
  gmtime_r(&now.tv_sec, &t);
  std::fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ sluice-agent %s: %s\n",
               t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
               now.tv_nsec / 1000000, name(level), message.c_str());
}

}  // namespace sluice::agent
