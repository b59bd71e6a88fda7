// Pieces of Prometheus's text exposition format, version 0.0.4: name rules,
// escaping, and number formatting. Kept apart from the registry so the rules
// are tested on their own and the test parser can check against them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::admin {

// The Content-Type of /stats/prometheus (what Prometheus negotiates for the
// text format; Envoy answers the same).
inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_metric_name(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, and not starting with "__" (reserved for Prometheus).
bool valid_label_name(std::string_view name);

// Label values: backslash, double quote and line feed are escaped (\\, \", \n).
void append_label_value(std::string& out, std::string_view value);
// HELP text: backslash and line feed are escaped (a quote stays as is).
void append_help_text(std::string& out, std::string_view text);

// Sample values. Integral doubles below 2^53 print without exponent or
// fraction ("600000", not "6e+05", so bucket bounds read like Istio's);
// others in the shortest form that reads back to the same double; infinities
// and NaN as Prometheus spells them (+Inf, -Inf, NaN).
void append_number(std::string& out, double value);
void append_number(std::string& out, uint64_t value);

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF). Prometheus rejects a scrape with any other label
// value, so every value is checked when its series is created.
bool valid_utf8(std::string_view text);
// `text` with every ill-formed sequence replaced by U+FFFD.
std::string sanitize_utf8(std::string_view text);

}  // namespace sluice::admin
