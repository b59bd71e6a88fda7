// Comma-separated lists as Helm and istioctl take them
// (`includeIPRanges="10.244.0.0/16\,10.240.0.0/16"`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

// Splits on `,` and on istioctl's escaped `\,` alike, trims blanks and drops
// empty items: "" is the empty list, as istio-iptables reads it.
std::vector<std::string> split_install_list(std::string_view text);

}  // namespace sluice::config
