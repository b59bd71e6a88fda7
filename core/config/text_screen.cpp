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
    if (b0 == 0xE0) min1 = 0xA0;  // overlong
    if (b0 == 0xED) max1 = 0x9F;  // UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) min1 = 0x90;  // overlong
    if (b0 == 0xF4) max1 = 0x8F;  // past U+10FFFF
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

bool is_flow_indicator(char c) { return c == ',' || c == '[' || c == ']' || c == '{' || c == '}'; }

// State of the structure scan while walking the text line by line.
class StructureScanner {
 public:
  StructureScanner(std::string_view text, size_t max_depth) : text_(text), max_depth_(max_depth) {}

  std::optional<TextProblem> run() {
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

  std::optional<TextProblem> check(size_t at) const {
    if (depth() > max_depth_) {
      return TextProblem{at, "YAML nesting is deeper than " + std::to_string(max_depth_) +
                                 " levels; refusing to parse it"};
    }
    return std::nullopt;
  }

  static TextProblem stray_comma(size_t at) {
    return TextProblem{at, "unexpected ',' outside a flow collection ([...] or {...})"};
  }

  std::optional<TextProblem> line(size_t start, size_t end) {
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
    std::string_view whole = text_.substr(start, end - start);
    if ((whole.substr(0, 3) == "---" || whole.substr(0, 3) == "...") &&
        (whole.size() == 3 || is_blank(whole[3]))) {
      // A document marker ends whatever the previous document left open,
      // as document_split.h cuts the stream there too.
      flow_ = 0;
      quote_ = Quote::kNone;
      block_scalar_parent_ = -1;
      plain_open_ = false;
      after_token_ = false;
    }
    if (flow_ == 0 && quote_ == Quote::kNone) {
      if (blank) return std::nullopt;  // blank lines may sit inside a plain scalar
      if (text_[start + indent] == '#') {
        plain_open_ = false;  // ...comment lines end it
        return std::nullopt;
      }
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

  std::optional<TextProblem> scan(size_t pos, size_t end, bool node_start) {
    // The first non-blank character of an indented line may continue a
    // multi-line plain scalar begun on an earlier line; a ',' there is text.
    bool first_on_line = true;
    const bool continues_plain = plain_open_;
    for (; pos < end; ++pos) {
      const char c = text_[pos];
      if (quote_ == Quote::kDouble) {
        if (c == '\\') {
          ++pos;
        } else if (c == '"') {
          quote_ = Quote::kNone;
          after_token_ = flow_ == 0;
        }
        continue;
      }
      if (quote_ == Quote::kSingle) {
        if (c == '\'' && pos + 1 < end && text_[pos + 1] == '\'') {
          ++pos;  // '' is an escaped quote
        } else if (c == '\'') {
          quote_ = Quote::kNone;
          after_token_ = flow_ == 0;
        }
        continue;
      }
      if (c == '#' && (pos == line_begin_ || is_blank(text_[pos - 1]))) {
        plain_open_ = false;
        break;
      }
      if (is_blank(c)) continue;
      const bool continuation = first_on_line && line_indent_ > 0 && continues_plain;
      first_on_line = false;
      if (flow_ == 0 && c == ',' && (after_token_ || (node_start && !continuation))) {
        return stray_comma(pos);
      }
      after_token_ = false;
      if (continuation) node_start = false;  // still the same plain scalar
      if (node_start) {
        plain_open_ = false;
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
        if (c == '&' || c == '!' || c == '*') {
          // Anchor or tag before a node, or an alias standing for one. Their
          // names end at a blank or a flow indicator, as yaml-cpp scans them.
          while (pos + 1 < end && !is_blank(text_[pos + 1]) && !is_flow_indicator(text_[pos + 1])) {
            ++pos;
          }
          if (c == '*') {
            node_start = false;
            after_token_ = flow_ == 0;
          }
          continue;
        }
        node_start = false;
        plain_open_ = flow_ == 0;
      }
      if (flow_ > 0) {
        if (c == '[' || c == '{') {
          ++flow_;
          if (auto over = check(pos)) return over;
        } else if (c == ']' || c == '}') {
          --flow_;
          after_token_ = flow_ == 0;
        } else if (c == ',' || c == ':') {
          node_start = true;
        }
      } else if (c == ':' && (pos + 1 == end || is_blank(text_[pos + 1]))) {
        node_start = true;
        plain_open_ = false;
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
  // Just past a quoted scalar or flow collection that ended outside any
  // flow collection: only `:`, a comment or the end of the line may follow.
  bool after_token_ = false;
  // Inside a plain scalar in block context that the next line may continue.
  bool plain_open_ = false;
};

}  // namespace

std::optional<TextProblem> check_yaml_structure(std::string_view text, size_t max_depth) {
  return StructureScanner(text, max_depth).run();
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
