// A strict reader of Prometheus's text exposition format (0.0.4) for tests:
// it parses what /stats/prometheus serves back into families and samples, and
// rejects anything a Prometheus server would reject or that the format
// forbids (samples outside their family's block, unknown escapes, histograms
// without +Inf or with decreasing buckets, _count != +Inf, duplicate series,
// ill-formed UTF-8). Written independently of the renderer, from the format's
// specification, so a renderer bug cannot hide behind a matching parser bug.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::admin::testing {

using Labels = std::map<std::string, std::string>;

struct ParsedSample {
  std::string name;  // full sample name (x_bucket, x_sum, ...)
  Labels labels;
  std::vector<std::string> label_order;  // as written
  std::string value_text;
  double value = 0;
};

struct ParsedFamily {
  std::string name;
  std::string help;
  std::string type;
  std::vector<ParsedSample> samples;
};

struct Exposition {
  std::vector<ParsedFamily> families;

  const ParsedFamily* family(std::string_view name) const {
    for (const auto& f : families) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }
  // The value of the sample with exactly these labels, if present.
  std::optional<double> value(std::string_view sample_name, const Labels& labels) const {
    for (const auto& f : families) {
      for (const auto& s : f.samples) {
        if (s.name == sample_name && s.labels == labels) return s.value;
      }
    }
    return std::nullopt;
  }
};

namespace detail {

inline bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
inline bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

inline bool utf8_ok(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<std::size_t>(n) >= s.size()) return false;
    for (int k = 1; k <= n; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const uint32_t min_for[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<std::size_t>(n) + 1;
  }
  return true;
}

// Go's ParseFloat as Prometheus uses it, restricted to what a renderer
// should produce: decimal with optional exponent, or +Inf/-Inf/NaN.
inline std::optional<double> parse_value(std::string_view t) {
  if (t == "+Inf" || t == "Inf") return HUGE_VAL;
  if (t == "-Inf") return -HUGE_VAL;
  if (t == "NaN") return std::nan("");
  std::size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
  std::size_t digits = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++digits;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
    std::size_t exp_digits = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  return std::strtod(std::string(t).c_str(), nullptr);
}

inline std::string family_of(const std::string& sample, const std::map<std::string, std::string>& types) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (sample.size() > suffix.size() && sample.ends_with(suffix)) {
      std::string base = sample.substr(0, sample.size() - suffix.size());
      auto it = types.find(base);
      if (it != types.end() && it->second == "histogram") return base;
    }
  }
  return sample;
}

}  // namespace detail

// Parses `text`; on error returns nullopt and says where in *error.
inline std::optional<Exposition> parse_exposition(std::string_view text, std::string* error) {
  Exposition out;
  std::map<std::string, std::string> types;
  std::set<std::string> finished;  // families whose block has ended
  std::set<std::pair<std::string, Labels>> seen;
  ParsedFamily* current = nullptr;
  int line_no = 0;
  auto fail = [&](const std::string& why) -> std::optional<Exposition> {
    if (error) *error = "line " + std::to_string(line_no) + ": " + why;
    return std::nullopt;
  };
  if (!text.empty() && text.back() != '\n') {
    line_no = 0;
    return fail("text does not end with a line feed");
  }
  auto start_family = [&](const std::string& name) -> bool {
    if (current != nullptr && current->name == name) return true;
    if (finished.count(name) > 0) return false;
    if (current != nullptr) finished.insert(current->name);
    out.families.push_back(ParsedFamily{name, "", "", {}});
    current = &out.families.back();
    return true;
  };

  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.empty()) return fail("empty line");
    if (!detail::utf8_ok(line)) return fail("ill-formed UTF-8");
    if (line[0] == '#') {
      bool help = line.starts_with("# HELP ");
      bool type = line.starts_with("# TYPE ");
      if (!help && !type) return fail("comment other than HELP/TYPE");
      std::string_view rest = line.substr(7);
      std::size_t sp = rest.find(' ');
      if (sp == std::string_view::npos) return fail("HELP/TYPE without text");
      std::string name(rest.substr(0, sp));
      std::string_view arg = rest.substr(sp + 1);
      if (name.empty() || !detail::is_name_start(name[0])) return fail("bad metric name " + name);
      for (char c : name) {
        if (!detail::is_name_char(c)) return fail("bad metric name " + name);
      }
      if (!start_family(name)) return fail("family " + name + " continues after another began");
      if (!current->samples.empty()) return fail("HELP/TYPE after samples of " + name);
      if (help) {
        if (!current->help.empty()) return fail("second HELP for " + name);
        std::string h;
        for (std::size_t i = 0; i < arg.size(); ++i) {
          if (arg[i] != '\\') {
            h += arg[i];
            continue;
          }
          if (++i >= arg.size()) return fail("dangling backslash in HELP");
          if (arg[i] == '\\') h += '\\';
          else if (arg[i] == 'n') h += '\n';
          else return fail("unknown escape in HELP");
        }
        current->help = h;
      } else {
        if (!current->type.empty()) return fail("second TYPE for " + name);
        std::string t(arg);
        if (t != "counter" && t != "gauge" && t != "histogram" && t != "summary" && t != "untyped") {
          return fail("unknown type " + t);
        }
        current->type = t;
        types[name] = t;
      }
      continue;
    }

    // A sample: name [{labels}] value [timestamp]
    ParsedSample s;
    std::size_t i = 0;
    while (i < line.size() && detail::is_name_char(line[i])) ++i;
    s.name = std::string(line.substr(0, i));
    if (s.name.empty() || !detail::is_name_start(s.name[0])) return fail("bad sample name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      for (;;) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        std::size_t b = i;
        while (i < line.size() && detail::is_name_char(line[i]) && line[i] != ':') ++i;
        std::string lname(line.substr(b, i - b));
        if (lname.empty() || (lname[0] >= '0' && lname[0] <= '9')) return fail("bad label name");
        if (i >= line.size() || line[i] != '=') return fail("label without '='");
        if (++i >= line.size() || line[i] != '"') return fail("label value not quoted");
        ++i;
        std::string v;
        for (;;) {
          if (i >= line.size()) return fail("unterminated label value");
          char c = line[i++];
          if (c == '"') break;
          if (c != '\\') {
            v += c;
            continue;
          }
          if (i >= line.size()) return fail("dangling backslash");
          char e = line[i++];
          if (e == '\\') v += '\\';
          else if (e == '"') v += '"';
          else if (e == 'n') v += '\n';
          else return fail("unknown escape in a label value");
        }
        if (s.labels.count(lname) > 0) return fail("label " + lname + " twice");
        s.labels[lname] = v;
        s.label_order.push_back(lname);
        if (i < line.size() && line[i] == ',') {
          ++i;
          continue;
        }
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        return fail("expected ',' or '}' after a label");
      }
    }
    if (i >= line.size() || line[i] != ' ') return fail("expected a space before the value");
    ++i;
    std::string_view rest = line.substr(i);
    std::size_t sp = rest.find(' ');
    std::string_view value = rest.substr(0, sp);
    if (sp != std::string_view::npos) {
      std::string_view ts = rest.substr(sp + 1);
      if (ts.empty()) return fail("trailing space");
      for (char c : ts) {
        if (!(c >= '0' && c <= '9') && c != '-') return fail("bad timestamp");
      }
    }
    auto v = detail::parse_value(value);
    if (!v) return fail("bad value \"" + std::string(value) + "\"");
    s.value_text = std::string(value);
    s.value = *v;

    std::string fam = detail::family_of(s.name, types);
    if (!start_family(fam)) return fail("sample of " + fam + " outside its family's block");
    if (current->type.empty()) return fail("sample before TYPE of " + fam);
    if (!seen.emplace(s.name, s.labels).second) return fail("duplicate series " + s.name);
    if (current->type == "histogram") {
      if (s.name == fam + "_bucket" && s.labels.count("le") == 0) return fail("bucket without le");
      if (s.name != fam + "_bucket" && s.labels.count("le") > 0) return fail("le outside a bucket");
      if (s.name == fam) return fail("histogram sample without suffix");
    } else if (s.name != fam) {
      return fail("sample " + s.name + " in family " + fam);
    }
    current->samples.push_back(std::move(s));
  }

  // Histogram structure, per label set.
  for (const auto& f : out.families) {
    if (f.type != "histogram") continue;
    std::map<Labels, std::vector<const ParsedSample*>> buckets;
    std::map<Labels, double> counts;
    std::map<Labels, int> sums;
    for (const auto& s : f.samples) {
      Labels base = s.labels;
      base.erase("le");
      if (s.name == f.name + "_bucket") buckets[base].push_back(&s);
      if (s.name == f.name + "_count") counts[base] = s.value;
      if (s.name == f.name + "_sum") ++sums[base];
    }
    for (const auto& [base, list] : buckets) {
      double prev_le = -HUGE_VAL, prev_v = 0;
      for (const ParsedSample* b : list) {
        auto le = detail::parse_value(b->labels.at("le"));
        if (!le || *le <= prev_le) {
          if (error) *error = f.name + ": bucket bounds not increasing";
          return std::nullopt;
        }
        if (b->value < prev_v) {
          if (error) *error = f.name + ": cumulative bucket counts decrease";
          return std::nullopt;
        }
        prev_le = *le;
        prev_v = b->value;
      }
      if (!std::isinf(prev_le)) {
        if (error) *error = f.name + ": no +Inf bucket";
        return std::nullopt;
      }
      if (counts.count(base) == 0 || counts.at(base) != prev_v || sums[base] != 1) {
        if (error) *error = f.name + ": _count differs from the +Inf bucket, or _sum missing";
        return std::nullopt;
      }
    }
  }
  return out;
}

}  // namespace sluice::admin::testing
