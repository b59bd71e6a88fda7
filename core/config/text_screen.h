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

// Estimates the nesting depth yaml-cpp would recurse to: flow collections
// (`[`, `{`) plus block indentation levels, skipping quoted strings, comments
// and block scalars. Returns the offset where `max_depth` is first exceeded.
// It may overestimate on odd input but never misses deep flow nesting.
std::optional<size_t> find_excessive_nesting(std::string_view text, size_t max_depth);

// 1-based line and column (in bytes) of `offset` inside `text`.
SourceLocation location_at(std::string_view text, size_t offset, const std::string& file);

}  // namespace sluice::config
