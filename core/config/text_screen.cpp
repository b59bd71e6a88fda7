#include "core/config/text_screen.h"

#include <cstdio>
#include <vector>

namespace sluice::config {

namespace {

// Length of the UTF-8 sequence starting at text[i], or 0 if it is invalid
// (overlong forms, surrogates and code points past U+10FFFF included).
size_t utf8_sequence_length(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  size_t length = 0;
  unsigned char min1 = 0x80, max1 = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) min1 = 0xA0;   // overlong
    if (b0 == 0xED) max1 = 0x9F;   // UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) min1 = 0x90;   // overlong
    if (b0 == 0xF4) max1 = 0x8F;   // past U+10FFFF
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  if (byte(i + 1) < min1 || byte(i + 1) > max1) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return length;
}

}  // namespace

std::optional<TextProblem> check_text_encoding(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", c);
        return TextProblem{i, std::string("file contains binary data (control byte ") + hex +
                                  " at byte offset " + std::to_string(i) +
                                  "); expected YAML or JSON text"};
      }
      ++i;
      continue;
    }
    size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      return TextProblem{i, "file is not valid UTF-8 at byte offset " + std::to_string(i) +
                                "; save it as UTF-8 (Kubernetes and Istio read only UTF-8)"};
    }
    i += length;
  }
  return std::nullopt;
}

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// State of the nesting estimate while walking the text line by line.
class NestingScanner {
 public:
  NestingScanner(std::string_view text, size_t max_depth) : text_(text), max_depth_(max_depth) {}

  std::optional<size_t> run() {
    size_t start = 0;
    while (start < text_.size()) {
      size_t end = text_.find('\n', start);
      if (end == std::string_view::npos) end = text_.size();
      if (auto over = line(start, end)) return over;
      start = end + 1;
    }
    return std::nullopt;
  }

 private:
  enum class Quote { kNone, kSingle, kDouble };

  size_t depth() const { return indents_.size() + flow_; }

  std::optional<size_t> check(size_t at) const {
    if (depth() > max_depth_) return at;
    return std::nullopt;
  }

  std::optional<size_t> line(size_t start, size_t end) {
    size_t indent = 0;
    while (start + indent < end && text_[start + indent] == ' ') ++indent;
    const bool blank = [&] {
      for (size_t k = start + indent; k < end; ++k) {
        if (!is_blank(text_[k])) return false;
      }
      return true;
    }();

    // Lines of a block scalar (`key: |`) are text, not structure.
    if (block_scalar_parent_ >= 0) {
      if (blank || static_cast<long>(indent) > block_scalar_parent_) return std::nullopt;
      block_scalar_parent_ = -1;
    }

    size_t pos = start;
    bool node_start = true;
    if (flow_ == 0 && quote_ == Quote::kNone) {
      if (blank || text_[start + indent] == '#') return std::nullopt;
      std::string_view rest = text_.substr(start, end - start);
      if (indent == 0 && (rest.substr(0, 3) == "---" || rest.substr(0, 3) == "...") &&
          (rest.size() == 3 || is_blank(rest[3]))) {
        indents_.clear();  // a new document starts from nothing
        pos = start + 3;
      } else if (indent == 0 && rest.front() == '%') {
        return std::nullopt;  // directive
      } else {
        while (!indents_.empty() && indents_.back() >= indent) indents_.pop_back();
        indents_.push_back(indent);
        if (auto over = check(start + indent)) return over;
        pos = start + indent;
      }
    }
    line_indent_ = static_cast<long>(indent);
    line_begin_ = start;
    return scan(pos, end, node_start);
  }

  std::optional<size_t> scan(size_t pos, size_t end, bool node_start) {
    for (; pos < end; ++pos) {
      const char c = text_[pos];
      if (quote_ == Quote::kDouble) {
        if (c == '\\') ++pos;
        else if (c == '"') quote_ = Quote::kNone;
        continue;
      }
      if (quote_ == Quote::kSingle) {
        if (c == '\'') {
          if (pos + 1 < end && text_[pos + 1] == '\'') ++pos;  // '' is an escaped quote
          else quote_ = Quote::kNone;
        }
        continue;
      }
      if (c == '#' && (pos == 0 || is_blank(text_[pos - 1]) || text_[pos - 1] == '\n')) break;
      if (node_start) {
        if (is_blank(c)) continue;
        if (c == '[' || c == '{') {
          ++flow_;
          if (auto over = check(pos)) return over;
          continue;
        }
        if (c == '"') {
          quote_ = Quote::kDouble;
          node_start = false;
          continue;
        }
        if (c == '\'') {
          quote_ = Quote::kSingle;
          node_start = false;
          continue;
        }
        if (flow_ == 0 && (c == '|' || c == '>')) {
          block_scalar_parent_ = line_indent_;
          return std::nullopt;  // the rest of the line is the scalar's header
        }
        if (flow_ == 0 && (c == '-' || c == '?') && (pos + 1 == end || is_blank(text_[pos + 1]))) {
          // "- - x" nests a sequence in a sequence on one line.
          size_t column = pos - line_begin_ + 2;
          while (!indents_.empty() && indents_.back() >= column) indents_.pop_back();
          indents_.push_back(column);
          if (auto over = check(pos)) return over;
          continue;
        }
        if (c == '&' || c == '!') {  // anchor or tag before the node itself
          while (pos + 1 < end && !is_blank(text_[pos + 1])) ++pos;
          continue;
        }
        node_start = false;
      }
      if (flow_ > 0) {
        if (c == '[' || c == '{') {
          ++flow_;
          if (auto over = check(pos)) return over;
        } else if (c == ']' || c == '}') {
          --flow_;
        } else if (c == ',' || c == ':') {
          node_start = true;
        }
      } else if (c == ':' && (pos + 1 == end || is_blank(text_[pos + 1]))) {
        node_start = true;
      }
    }
    return std::nullopt;
  }

  std::string_view text_;
  size_t max_depth_;
  std::vector<size_t> indents_;
  size_t flow_ = 0;
  Quote quote_ = Quote::kNone;
  long block_scalar_parent_ = -1;
  long line_indent_ = 0;
  size_t line_begin_ = 0;
};

}  // namespace

std::optional<size_t> find_excessive_nesting(std::string_view text, size_t max_depth) {
  return NestingScanner(text, max_depth).run();
}

SourceLocation location_at(std::string_view text, size_t offset, const std::string& file) {
  uint32_t line = 1;
  size_t line_begin = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_begin = i + 1;
    }
  }
  return {file, line, static_cast<uint32_t>(offset - line_begin + 1)};
}

}  // namespace sluice::config
