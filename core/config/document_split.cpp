#include "core/config/document_split.h"

namespace sluice::config {

namespace {

bool starts_marker(std::string_view line) {
  return line.substr(0, 3) == "---" &&
         (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
}

}  // namespace

std::vector<DocumentText> split_documents(std::string_view text) {
  std::vector<DocumentText> documents;
  size_t doc_start = 0;
  uint32_t doc_line = 0;
  uint32_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.front() == '%') return {{text, 0}};
    if (starts_marker(line) && start != doc_start) {
      documents.push_back({text.substr(doc_start, start - doc_start), doc_line});
      doc_start = start;
      doc_line = line_number;
    }
    start = end + 1;
    ++line_number;
  }
  if (doc_start < text.size()) documents.push_back({text.substr(doc_start), doc_line});
  return documents;
}

}  // namespace sluice::config
