// Durations as Istio's YAML spells them ("10s", "1.5s", "100ms", "1h30m").
//
// Istio decodes google.protobuf.Duration fields of its CRDs with Go's
// time.ParseDuration, so that is the grammar reproduced here rather than the
// stricter protobuf JSON form ("1.5s" only).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/config/model.h"

namespace sluice::config {

struct DurationParse {
  std::optional<Duration> value;
  std::string error;  // why `value` is empty
};

// Parses a Go duration. The model keeps milliseconds; a non-zero duration
// shorter than 1ms rounds up to 1ms so that it never turns into 0, which
// Istio reads as "disabled" for timeouts.
DurationParse parse_duration(std::string_view text);

}  // namespace sluice::config
