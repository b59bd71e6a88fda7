// Splits a YAML stream into its documents before parsing.
//
// yaml-cpp's LoadAll gives up on the whole stream at the first syntax error;
// parsing each `---`-separated document on its own keeps the good documents
// of a file that has one bad one, and each error stays with its document.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace sluice::config {

struct DocumentText {
  std::string_view text;
  uint32_t first_line = 0;  // 0-based line of text[0] within the whole stream
};

// Splits before every line that starts with `---` followed by a blank or the
// end of the line: YAML forbids that sequence at column 0 anywhere but at a
// document boundary. Streams with directives (`%YAML`) are not split, since a
// directive belongs to the document after it.
std::vector<DocumentText> split_documents(std::string_view text);

}  // namespace sluice::config
