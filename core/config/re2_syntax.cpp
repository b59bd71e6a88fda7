#include "core/config/re2_syntax.h"

#include <algorithm>
#include <cctype>
#include <regex>

namespace sluice::config {

namespace {

std::string go_error(std::string_view code, std::string_view fragment) {
  std::string out = "error parsing regexp: ";
  out += code;
  out += ": `";
  out += fragment;
  out += "`";
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A repeat count; anything beyond RE2's limit of 1000 reads as 1001.
long count_value(std::string_view digits) {
  long v = 0;
  for (char c : digits) {
    v = v * 10 + (c - '0');
    if (v > 1000) return 1001;
  }
  return v;
}

// Parses "{n}", "{n,}" or "{n,m}" at re[i]; returns its length, 0 when the
// brace does not start a repeat (RE2 then takes it literally).
size_t repeat_length(std::string_view re, size_t i, long* lo, long* hi) {
  size_t j = i + 1;
  size_t start = j;
  while (j < re.size() && is_digit(re[j])) ++j;
  if (j == start || j >= re.size()) return 0;
  *lo = count_value(re.substr(start, j - start));
  *hi = *lo;
  if (re[j] == ',') {
    ++j;
    size_t s2 = j;
    while (j < re.size() && is_digit(re[j])) ++j;
    *hi = j == s2 ? -1 : count_value(re.substr(s2, j - s2));
  }
  if (j >= re.size() || re[j] != '}') return 0;
  return j - i + 1;
}

// RE2 (like Go) refuses a repetition with nothing to repeat ("*a", "(|+)")
// and a repetition of a repetition ("a**", "a+*"; "a*?" is the lazy form).
// std::regex is laxer on both, so they are checked on a coarse token stream.
std::optional<std::string> check_repetitions(std::string_view re) {
  enum class Prev { kNothing, kAtom, kRepeat, kLazyRepeat };
  Prev prev = Prev::kNothing;
  std::string prev_op;
  for (size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    std::string op;
    if (c == '*' || c == '+' || c == '?') {
      op = std::string(1, c);
    } else if (c == '{') {
      long lo = 0, hi = 0;
      size_t len = repeat_length(re, i, &lo, &hi);
      if (len) op = std::string(re.substr(i, len));
    }
    if (!op.empty()) {
      if (prev == Prev::kNothing) return go_error("missing argument to repetition operator", op);
      if (prev == Prev::kRepeat && op == "?") {
        prev = Prev::kLazyRepeat;
        prev_op += op;
        continue;
      }
      if (prev == Prev::kRepeat || prev == Prev::kLazyRepeat) {
        return go_error("invalid nested repetition operator", prev_op + op);
      }
      prev = Prev::kRepeat;
      prev_op = op;
      i += op.size() - 1;
      continue;
    }
    if (c == '\\') {
      if (i + 1 < re.size() && re[i + 1] == 'Q') {
        size_t end = re.find("\\E", i + 2);
        i = end == std::string_view::npos ? re.size() : end + 1;
      } else if (i + 1 < re.size() && (re[i + 1] == 'p' || re[i + 1] == 'P') && i + 2 < re.size() && re[i + 2] == '{') {
        size_t close = re.find('}', i);
        i = close == std::string_view::npos ? re.size() : close;
      } else {
        ++i;
      }
      prev = Prev::kAtom;
      continue;
    }
    if (c == '[') {
      // Skip the class: a leading ']' is literal, [:name:] is nested.
      size_t j = i + 1;
      if (j < re.size() && re[j] == '^') ++j;
      if (j < re.size() && re[j] == ']') ++j;
      for (; j < re.size() && re[j] != ']'; ++j) {
        if (re[j] == '\\') {
          ++j;
        } else if (re[j] == '[' && j + 1 < re.size() && re[j + 1] == ':') {
          size_t close = re.find(":]", j + 2);
          if (close != std::string_view::npos) j = close + 1;
        }
      }
      i = j;
      prev = Prev::kAtom;
      continue;
    }
    if (c == '(') {
      // Skip a group's "(?...)" header: flags "(?i)" / "(?i:", names
      // "(?P<n>" / "(?<n>". Either way nothing precedes what follows.
      if (i + 1 < re.size() && re[i + 1] == '?') {
        size_t j = i + 2;
        if (re.substr(j, 2) == "P<" || (re.substr(j, 1) == "<" && re.substr(j, 2) != "<=" && re.substr(j, 2) != "<!")) {
          size_t close = re.find('>', j);
          if (close != std::string_view::npos) i = close;
        } else {
          while (j < re.size() && std::string_view("imsU-").find(re[j]) != std::string_view::npos) ++j;
          if (j < re.size() && (re[j] == ')' || re[j] == ':')) i = j;
          else i = i + 1;  // lookaround and the like: translate() refuses them
        }
      }
      prev = Prev::kNothing;
      continue;
    }
    prev = c == '|' ? Prev::kNothing : Prev::kAtom;
  }
  return std::nullopt;
}

struct Translation {
  std::string ecma;
  std::optional<std::string> error;  // an RE2 refusal found while translating
  // Product of the counted repeats: std::regex expands them into states, so a
  // pattern like (a{1000}){1000} would cost it a million; such patterns are
  // not compiled (RE2 bounds them by program size, which we cannot mirror).
  double repeat_product = 1;
};

// Rewrites RE2 syntax into an ECMAScript pattern of the same shape; only the
// syntax matters here, not the exact language matched.
Translation translate(std::string_view re) {
  Translation t;
  std::string& out = t.ecma;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    if (c == '\\') {
      if (i + 1 >= re.size()) {
        t.error = go_error("trailing backslash at end of expression", "");
        return t;
      }
      char n = re[i + 1];
      if (!in_class && n >= '1' && n <= '9') {
        t.error = go_error("invalid escape sequence", std::string("\\") + n);
        return t;
      }
      if (n == 'Q') {
        // \Q...\E: everything in between is literal.
        size_t end = re.find("\\E", i + 2);
        std::string_view lit = re.substr(i + 2, end == std::string_view::npos ? std::string_view::npos : end - i - 2);
        for (char l : lit) {
          if (!std::isalnum(static_cast<unsigned char>(l))) out += '\\';
          out += l;
        }
        if (end == std::string_view::npos) return t;
        i = end + 1;
        continue;
      }
      if (n == 'A' && !in_class) { out += '^'; ++i; continue; }
      if (n == 'z' && !in_class) { out += '$'; ++i; continue; }
      if (n == 'C') { out += in_class ? "a" : "."; ++i; continue; }
      if (n == 'p' || n == 'P') {
        // Unicode class \pL or \p{Greek}.
        size_t j = i + 2;
        if (j < re.size() && re[j] == '{') {
          size_t close = re.find('}', j);
          if (close == std::string_view::npos) {
            t.error = go_error("invalid character class range", re.substr(i));
            return t;
          }
          j = close;
        }
        out += in_class ? "a" : ".";
        i = j;
        continue;
      }
      out += c;
      out += n;
      ++i;
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < re.size() && re[i + 1] == ':') {
        // POSIX class [:alpha:] or negated [:^alpha:] (RE2 only).
        size_t close = re.find(":]", i + 2);
        if (close != std::string_view::npos) {
          std::string name(re.substr(i + 2, close - i - 2));
          if (!name.empty() && name[0] == '^') name.erase(0, 1);
          out += "[:" + name + ":]";
          i = close + 1;
          continue;
        }
      }
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      // A leading ']' (or '^]') is literal in RE2.
      if (i + 1 < re.size() && re[i + 1] == '^') { out += '^'; ++i; }
      if (i + 1 < re.size() && re[i + 1] == ']') { out += "\\]"; ++i; }
      continue;
    }
    if (c == '(' && i + 1 < re.size() && re[i + 1] == '?') {
      std::string_view rest = re.substr(i);
      if (rest.substr(0, 3) == "(?=" || rest.substr(0, 3) == "(?!" || rest.substr(0, 3) == "(?<" ) {
        if (rest.substr(0, 4) != "(?<=" && rest.substr(0, 4) != "(?<!" && rest.substr(0, 3) == "(?<") {
          // (?<name>...) named group (accepted by recent RE2).
          size_t close = re.find('>', i);
          if (close != std::string_view::npos) { out += '('; i = close; continue; }
        }
        t.error = go_error("invalid or unsupported Perl syntax", rest.substr(0, 3));
        return t;
      }
      if (rest.substr(0, 4) == "(?P<") {
        size_t close = re.find('>', i);
        if (close == std::string_view::npos) {
          t.error = go_error("invalid named capture", rest);
          return t;
        }
        out += '(';
        i = close;
        continue;
      }
      if (rest.substr(0, 3) == "(?:") { out += "(?:"; i += 2; continue; }
      // Flag groups: (?i) (?-s) (?i:...).
      size_t j = i + 2;
      while (j < re.size() && (re[j] == 'i' || re[j] == 'm' || re[j] == 's' || re[j] == 'U' || re[j] == '-')) ++j;
      if (j > i + 2 && j < re.size() && (re[j] == ')' || re[j] == ':')) {
        if (re[j] == ':') out += "(?:";
        i = j;
        continue;
      }
      t.error = go_error("invalid or unsupported Perl syntax", rest.substr(0, 3));
      return t;
    }
    if (c == '{') {
      long lo = 0, hi = 0;
      size_t len = repeat_length(re, i, &lo, &hi);
      if (len == 0) { out += "\\{"; continue; }
      if (lo > 1000 || hi > 1000 || (hi >= 0 && hi < lo)) {
        t.error = go_error("invalid repeat count", re.substr(i, len));
        return t;
      }
      t.repeat_product *= static_cast<double>(std::max(lo, hi));
      out += re.substr(i, len);
      i += len - 1;
      continue;
    }
    if (c == '}') { out += "\\}"; continue; }
    out += c;
  }
  return t;
}

// Counts unescaped parentheses outside character classes.
int paren_balance(std::string_view re) {
  int balance = 0;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    if (c == '\\') { ++i; continue; }
    if (in_class) { if (c == ']') in_class = false; continue; }
    if (c == '[') { in_class = true; continue; }
    if (c == '(') ++balance;
    if (c == ')') {
      --balance;
      if (balance < 0) return -1;
    }
  }
  return balance;
}

}  // namespace

std::optional<std::string> re2_syntax_error(std::string_view re) {
  if (auto e = check_repetitions(re)) return e;
  Translation t = translate(re);
  if (t.error) return t.error;
  if (t.repeat_product > 10000) return std::nullopt;
  try {
    std::regex compiled(t.ecma, std::regex::ECMAScript);
    (void)compiled;
  } catch (const std::regex_error& e) {
    switch (e.code()) {
      case std::regex_constants::error_paren:
        return go_error(paren_balance(re) < 0 ? "unexpected )" : "missing closing )", re);
      case std::regex_constants::error_brack: {
        size_t open = re.find('[');
        return go_error("missing closing ]", open == std::string_view::npos ? re : re.substr(open));
      }
      case std::regex_constants::error_badrepeat:
        return go_error("missing argument to repetition operator", re);
      case std::regex_constants::error_escape:
        return go_error("invalid escape sequence", re);
      case std::regex_constants::error_range:
      case std::regex_constants::error_ctype:
      case std::regex_constants::error_collate:
        return go_error("invalid character class range", re);
      case std::regex_constants::error_brace:
      case std::regex_constants::error_badbrace:
        return go_error("invalid repeat count", re);
      case std::regex_constants::error_complexity:
      case std::regex_constants::error_stack:
      case std::regex_constants::error_space:
        // Limits of std::regex, not errors in the expression.
        return std::nullopt;
      default:
        return go_error("invalid syntax", re);
    }
  }
  return std::nullopt;
}

}  // namespace sluice::config
