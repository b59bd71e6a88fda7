// The one place where yaml-cpp turns text into nodes.
//
// yaml-cpp 0.7's LoadAll never returns on some malformed streams: when a
// token that cannot start a node (a stray `,` after a top-level `{...}` or
// quoted scalar) follows a document, each turn of its loop yields another
// empty document without consuming anything, until memory runs out. The
// structure check in text_screen.h reports the known shapes of that; this
// guard makes termination certain for any other.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

struct ParsedDocuments {
  std::vector<YAML::Node> documents;
  bool ok = true;
  YAML::Mark error_mark;  // when !ok
  std::string error;      // when !ok
};

// Parses one `---`-delimited chunk (see document_split.h). Never throws.
ParsedDocuments parse_documents(std::string_view text);

}  // namespace sluice::config
