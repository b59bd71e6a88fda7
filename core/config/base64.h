// Base64 as protobuf JSON encodes `bytes` fields (directResponse.body.bytes).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

// Accepts the standard and the URL-safe alphabet, with or without `=`
// padding, as protobuf's JSON parser does. nullopt if `text` is not base64.
std::optional<std::string> decode_base64(std::string_view text);

}  // namespace sluice::config
