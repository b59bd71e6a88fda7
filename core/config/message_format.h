// Formatting helpers that reproduce how Istio's Go code prints values inside
// its messages (fmt's %q, %v of a float, %v of a slice), so that our
// diagnostics read exactly like the istioctl / webhook ones users search for.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

// Go's %q (strconv.Quote): double quotes, with \" \\ and control bytes escaped.
std::string go_quote(std::string_view s);

// Go's %v of a float64: the shortest text that reads back to the same value.
std::string go_float(double v);

// Go's %f: six decimals.
std::string go_fixed(double v);

// Go's %v of a []string / []int: "[a b c]".
std::string go_list(const std::vector<std::string>& items);

std::string join(const std::vector<std::string>& items, std::string_view sep);

}  // namespace sluice::config
