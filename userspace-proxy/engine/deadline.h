// Deadlines in monotonic nanoseconds, INT64_MAX meaning none: sums and
// conversions that stop there instead of overflowing (a config may say
// "300000h").
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice::engine {

// `ms` in nanoseconds; too long to count (milliseconds::max() included) is
// INT64_MAX.
inline int64_t saturating_ns(std::chrono::milliseconds ms) {
  return ms.count() >= INT64_MAX / 1'000'000 ? INT64_MAX : static_cast<int64_t>(ms.count()) * 1'000'000;
}

// t + d for t >= 0; INT64_MAX when that would not fit (d INT64_MAX: none).
inline int64_t deadline_after(int64_t t, int64_t d) { return d >= INT64_MAX - t ? INT64_MAX : t + d; }

}  // namespace sluice::engine
