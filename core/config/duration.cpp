#include "core/config/duration.h"

#include <limits>

namespace sluice::config {

namespace {

struct Unit {
  std::string_view suffix;
  int64_t nanoseconds;
};

// Longest suffixes first so that "ms" is not read as "m" followed by "s".
constexpr Unit kUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // U+00B5 micro sign, as Go accepts
    {"\xCE\xBCs", 1'000},  // U+03BC Greek mu
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60LL * 1'000'000'000},
    {"h", 3600LL * 1'000'000'000},
};

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

}  // namespace

DurationParse parse_duration(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return {Duration{0}, ""};
  if (s.empty()) return {std::nullopt, "invalid duration " + quoted};

  int64_t total_ns = 0;
  while (!s.empty()) {
    // Integer part, then an optional fraction; at least one digit overall.
    int64_t whole = 0;
    bool digits = false;
    bool overflow = false;
    while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
      if (whole > (kMax - 9) / 10)
        overflow = true;
      else
        whole = whole * 10 + (s.front() - '0');
      digits = true;
      s.remove_prefix(1);
    }
    double fraction = 0;
    if (!s.empty() && s.front() == '.') {
      s.remove_prefix(1);
      double scale = 0.1;
      while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
        fraction += (s.front() - '0') * scale;
        scale /= 10;
        digits = true;
        s.remove_prefix(1);
      }
    }
    if (!digits) return {std::nullopt, "invalid duration " + quoted};
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (s.substr(0, u.suffix.size()) == u.suffix) {
        // "ms" must win over "m": take the longest matching suffix.
        if (unit == nullptr || u.suffix.size() > unit->suffix.size()) unit = &u;
      }
    }
    if (unit == nullptr) {
      if (s.empty()) {
        return {std::nullopt, "missing unit in duration " + quoted +
                                  " (use ns, us, ms, s, m or h, e.g. \"10s\")"};
      }
      return {std::nullopt,
              "unknown unit in duration " + quoted + " (use ns, us, ms, s, m or h, e.g. \"10s\")"};
    }
    s.remove_prefix(unit->suffix.size());
    if (overflow || whole > kMax / unit->nanoseconds) {
      return {std::nullopt, "duration " + quoted + " is too large"};
    }
    int64_t part = whole * unit->nanoseconds +
                   static_cast<int64_t>(fraction * static_cast<double>(unit->nanoseconds));
    if (part < 0 || total_ns > kMax - part) {
      return {std::nullopt, "duration " + quoted + " is too large"};
    }
    total_ns += part;
  }
  int64_t ms = total_ns / 1'000'000;
  if (total_ns % 1'000'000 != 0) ms += 1;
  return {Duration{negative ? -ms : ms}, ""};
}

}  // namespace sluice::config
