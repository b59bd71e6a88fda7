#include "core/config/install_list.h"

namespace sluice::config {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::vector<std::string> split_install_list(std::string_view text) {
  std::vector<std::string> items;
  std::string current;
  auto flush = [&] {
    std::string_view item = trim(current);
    if (!item.empty()) items.emplace_back(item);
    current.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == ',') {
      // Helm's --set needs the comma escaped so it does not start another
      // assignment; the chart then splits the value on that same comma.
      ++i;
      flush();
    } else if (text[i] == ',') {
      flush();
    } else {
      current.push_back(text[i]);
    }
  }
  flush();
  return items;
}

}  // namespace sluice::config
