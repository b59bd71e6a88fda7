// Checks run on raw text before yaml-cpp sees it.
//
// yaml-cpp recurses once per nesting level and has opinions about bytes that
// are not UTF-8; rather than rely on how it fails, the loader refuses such
// input itself with one message that says what is wrong and where.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/config/diagnostic.h"

namespace sluice::config {

struct TextProblem {
  size_t offset = 0;  // byte offset of the first offending byte
  std::string message;
};

// Invalid UTF-8, or control characters YAML forbids (NUL and friends: the
// sign of a binary file).
std::optional<TextProblem> check_text_encoding(std::string_view text);

// Structural problems yaml-cpp 0.7 does not survive, found by a light scan
// that skips quoted strings, comments and block scalars:
//  - nesting deeper than `max_depth`: flow collections (`[`, `{`) plus block
//    indentation levels, which yaml-cpp recurses into. The estimate may run
//    high on odd input but never misses deep flow nesting.
//  - a `,` outside any flow collection where a token starts (`{a: b},` or a
//    line starting with `,`): yaml-cpp's LoadAll loops forever on it,
//    allocating an empty document per turn.
std::optional<TextProblem> check_yaml_structure(std::string_view text, size_t max_depth);

// 1-based line and column (in bytes) of `offset` inside `text`.
SourceLocation location_at(std::string_view text, size_t offset, const std::string& file);

}  // namespace sluice::config
