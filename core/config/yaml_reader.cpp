#include "core/config/yaml_reader.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <unordered_set>

#include "core/config/duration.h"

namespace sluice::config::detail {

namespace {

// Keys already seen in one mapping. Linear for the usual handful of keys; a
// hash set once a mapping is large, so that a 100k-entry mapping (generated
// or alias-built) stays linear overall.
class KeySet {
 public:
  // True if `key` was new.
  bool insert(std::string_view key) {
    if (hashed_.empty() && small_.size() < 16) {
      if (std::find(small_.begin(), small_.end(), key) != small_.end()) return false;
      small_.push_back(key);
      return true;
    }
    if (hashed_.empty()) hashed_.insert(small_.begin(), small_.end());
    return hashed_.insert(key).second;
  }

 private:
  std::vector<std::string_view> small_;
  std::unordered_set<std::string_view> hashed_;
};

}  // namespace

SourceLocation LocationMap::locate(const YAML::Mark& mark) const {
  if (fixed) return *fixed;
  // yaml-cpp uses -1 for "no position" (nodes it synthesised).
  if (mark.line < 0 || mark.column < 0) return {file, 0, 0};
  int64_t line = mark.line + line_offset + 1;
  int64_t column = mark.column + column_offset + 1;
  if (line <= 0 || line > std::numeric_limits<uint32_t>::max()) return {file, 0, 0};
  return {file, static_cast<uint32_t>(line), static_cast<uint32_t>(std::max<int64_t>(column, 1))};
}

DecodeContext::DecodeContext(Diagnostics& out, LocationMap map, Limits limits)
    : out_(out), map_(std::move(map)), limits_(limits) {}

void DecodeContext::visit(const std::string& path, const SourceLocation& where) {
  if (++nodes_ > limits_.max_nodes) {
    // Aliases let a few kilobytes of YAML name billions of nodes; walking
    // them would copy each into the model. Give up on the document instead.
    report(Severity::kError, where, path,
           "document expands to more than " + std::to_string(limits_.max_nodes) +
               " YAML nodes (anchors/aliases repeated too often?); the document was not loaded");
    throw DocumentAbandoned{};
  }
  if (fields != nullptr && where.known()) fields->set(path, where.line, where.column);
}

void DecodeContext::error(const SourceLocation& where, const std::string& path,
                          std::string message) {
  report(Severity::kError, where, path, std::move(message));
}

void DecodeContext::warning(const SourceLocation& where, const std::string& path,
                            std::string message) {
  report(Severity::kWarning, where, path, std::move(message));
}

void DecodeContext::report(Severity severity, const SourceLocation& where, const std::string& path,
                           std::string message) {
  if (severity == Severity::kError) ++errors_;
  if (reported_ == limits_.max_diagnostics) {
    // The same mistake repeated through aliases or a generated file: the
    // first hundred say enough, and a flood would hide other files' problems.
    Diagnostic d;
    d.severity = Severity::kError;
    d.message = "too many problems in this document (more than " +
                std::to_string(limits_.max_diagnostics) + "); the document was not loaded";
    d.location = where;
    d.kind = kind;
    d.namespace_ = namespace_;
    d.name = name;
    out_.add(std::move(d));
    ++errors_;
    ++reported_;
    throw DocumentAbandoned{};
  }
  ++reported_;
  Diagnostic d;
  d.severity = severity;
  d.message = std::move(message);
  d.location = where;
  d.kind = kind;
  d.namespace_ = namespace_;
  d.name = name;
  d.field = path.empty()
                ? (field_prefix.empty() ? "" : field_prefix.substr(0, field_prefix.size() - 1))
                : field_prefix + path;
  out_.add(std::move(d));
}

// ---------------------------------------------------------------------------

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing";
    case YAML::NodeType::Scalar:
      break;
  }
  std::string text = node.Scalar();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return "\"" + text + "\"";
}

Field::Field(DecodeContext& ctx, YAML::Node node, std::string path, SourceLocation where)
    : ctx_(&ctx), node_(std::move(node)), path_(std::move(path)), where_(std::move(where)) {}

SourceLocation Field::value_where() const {
  // An empty value's mark points at whatever token follows it, which can be
  // lines away; the key is the better place to point at.
  if (null()) return where_;
  SourceLocation at = ctx_->locate(node_.Mark());
  return at.known() ? at : where_;
}

void Field::error(std::string message) const {
  ctx_->error(value_where(), path_, std::move(message));
}

void Field::warning(std::string message) const { ctx_->warning(where_, path_, std::move(message)); }

void Field::report_wrong_type(const char* expected) const {
  error(std::string("expected ") + expected + ", found " + describe(node_));
}

void Field::report_bad_value(const std::string& text, const std::string& allowed) const {
  error("invalid value \"" + text + "\"; allowed values: " + allowed);
}

bool Field::scalar_text(std::string& out, const char* expected) const {
  if (null()) return false;
  if (!node_.IsScalar()) {
    report_wrong_type(expected);
    return false;
  }
  out = node_.Scalar();
  return true;
}

bool Field::read(std::string& out) const {
  std::string text;
  if (!scalar_text(text, "a string")) return false;
  out = std::move(text);
  return true;
}

bool Field::read_upper(std::string& out) const {
  std::string text;
  if (!scalar_text(text, "a string")) return false;
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  out = std::move(text);
  return true;
}

namespace {

// Parses a YAML integer the way Kubernetes' JSON conversion sees it: decimal
// digits with an optional sign. Floats, hex and words are not integers.
template <typename Int>
bool parse_integer(std::string_view text, Int& out) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

}  // namespace

bool Field::read(uint32_t& out) const {
  std::string text;
  if (!scalar_text(text, "a non-negative integer")) return false;
  int64_t wide = 0;
  if (!parse_integer(text, wide)) {
    report_wrong_type("a non-negative integer");
    return false;
  }
  if (wide < 0 || wide > std::numeric_limits<uint32_t>::max()) {
    error("value " + text + " is out of range (0.." +
          std::to_string(std::numeric_limits<uint32_t>::max()) + ")");
    return false;
  }
  out = static_cast<uint32_t>(wide);
  return true;
}

bool Field::read(int32_t& out) const {
  std::string text;
  if (!scalar_text(text, "an integer")) return false;
  int64_t wide = 0;
  if (!parse_integer(text, wide)) {
    report_wrong_type("an integer");
    return false;
  }
  if (wide < std::numeric_limits<int32_t>::min() || wide > std::numeric_limits<int32_t>::max()) {
    error("value " + text + " is out of range for a 32-bit integer");
    return false;
  }
  out = static_cast<int32_t>(wide);
  return true;
}

bool Field::read(uint64_t& out) const {
  std::string text;
  if (!scalar_text(text, "a non-negative integer")) return false;
  if (!text.empty() && text.front() == '-') {
    error("value " + text + " must not be negative");
    return false;
  }
  uint64_t value = 0;
  if (!parse_integer(text, value)) {
    report_wrong_type("a non-negative integer");
    return false;
  }
  out = value;
  return true;
}

bool Field::read(bool& out) const {
  std::string text;
  if (!scalar_text(text, "a boolean")) return false;
  // YAML 1.1 booleans, as Kubernetes' YAML decoder accepts them.
  static constexpr std::string_view kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                               "on",   "On",   "ON",   "y",   "Y"};
  static constexpr std::string_view kFalse[] = {"false", "False", "FALSE", "no", "No", "NO",
                                                "off",   "Off",   "OFF",   "n",  "N"};
  if (std::find(std::begin(kTrue), std::end(kTrue), text) != std::end(kTrue)) {
    out = true;
    return true;
  }
  if (std::find(std::begin(kFalse), std::end(kFalse), text) != std::end(kFalse)) {
    out = false;
    return true;
  }
  report_wrong_type("a boolean (true or false)");
  return false;
}

bool Field::read(double& out) const {
  std::string text;
  if (!scalar_text(text, "a number")) return false;
  std::string_view view = text;
  if (!view.empty() && view.front() == '+') view.remove_prefix(1);
  double value = 0;
  auto [ptr, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (view.empty() || ec != std::errc() || ptr != view.data() + view.size() ||
      value != value /* NaN */) {
    report_wrong_type("a number");
    return false;
  }
  out = value;
  return true;
}

bool Field::read_duration(std::optional<Duration>& out) const {
  std::string text;
  if (!scalar_text(text, "a duration such as \"10s\"")) return false;
  DurationParse parsed = parse_duration(text);
  if (!parsed.value) {
    error(parsed.error);
    return false;
  }
  out = parsed.value;
  return true;
}

bool Field::read(std::vector<std::string>& out) const {
  if (null()) return false;
  if (!node_.IsSequence()) {
    report_wrong_type("a list of strings");
    return false;
  }
  std::vector<std::string> items;
  bool ok = true;
  read_list([&](Field& item) {
    std::string value;
    if (item.read(value))
      items.push_back(std::move(value));
    else if (!item.null())
      ok = false;
  });
  out = std::move(items);
  return ok;
}

bool Field::read(Labels& out) const {
  if (null()) return false;
  if (!node_.IsMap()) {
    report_wrong_type("a mapping of strings");
    return false;
  }
  Labels labels;
  bool ok = true;
  read_map([&](const std::string& key, Field& value) {
    std::string text;
    if (value.read(text) || value.null())
      labels[key] = std::move(text);
    else
      ok = false;
  });
  out = std::move(labels);
  return ok;
}

bool Field::read_enum_string(std::string& out,
                             std::initializer_list<std::string_view> names) const {
  std::string text;
  if (!scalar_text(text, "an enum name")) return false;
  for (std::string_view n : names) {
    if (n == text) {
      out = std::move(text);
      return true;
    }
  }
  std::string allowed;
  for (std::string_view n : names) {
    if (!allowed.empty()) allowed += ", ";
    allowed += n;
  }
  report_bad_value(text, allowed);
  return false;
}

void Field::report_merge_key(const Field& merge) const {
  // kubectl applies YAML merge keys; yaml-cpp does not. Ignoring one would
  // load a resource that differs from what the cluster has, so refuse it.
  ctx_->error(merge.where(), merge.path(),
              "YAML merge keys (<<) are not supported; write the merged fields out");
}

Field Field::make_child(const YAML::Node& key, const YAML::Node& value,
                        const std::string& name) const {
  std::string child_path = path_.empty() ? name : path_ + "." + name;
  SourceLocation at = ctx_->locate(key.Mark());
  if (!at.known()) at = where_;
  ctx_->visit(child_path, at);
  return Field(*ctx_, value, std::move(child_path), std::move(at));
}

void Field::read_object(std::initializer_list<FieldHandler> handlers, UnknownFields unknown,
                        bool (*known_elsewhere)(std::string_view)) const {
  if (null()) return;
  if (!node_.IsMap()) {
    report_wrong_type("a mapping");
    return;
  }
  KeySet seen;
  // Range-for keeps each key/value pair alive; `it->first` would bind to a
  // member of a temporary proxy.
  for (const auto& kv : node_) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar()) {
      ctx_->error(ctx_->locate(key.Mark()).known() ? ctx_->locate(key.Mark()) : where_, path_,
                  "field names must be strings, found " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    Field child = make_child(key, kv.second, name);
    if (name == "<<" && key.Tag() == "?") {
      report_merge_key(child);
      continue;
    }
    if (!seen.insert(name)) {
      ctx_->error(child.where(), child.path(), "duplicate field \"" + name + "\"");
      continue;
    }
    const FieldHandler* handler = nullptr;
    for (const FieldHandler& h : handlers) {
      if (h.name == name) {
        handler = &h;
        break;
      }
    }
    if (handler != nullptr) {
      handler->handle(child);
    } else if (unknown == UnknownFields::kWarn &&
               (known_elsewhere == nullptr || !known_elsewhere(name))) {
      std::string in = ctx_->schema;
      if (!path_.empty()) in += " " + path_;
      ctx_->warning(child.where(), child.path(), "unknown field \"" + name + "\" in " + in);
    }
  }
}

void Field::read_list(FunctionRef<void(Field&)> item) const {
  if (null()) return;
  if (!node_.IsSequence()) {
    report_wrong_type("a list");
    return;
  }
  size_t index = 0;
  for (const auto& element : node_) {
    std::string child_path = path_ + "[" + std::to_string(index++) + "]";
    SourceLocation at = ctx_->locate(element.Mark());
    if (!at.known() || element.IsNull()) at = where_;
    ctx_->visit(child_path, at);
    Field child(*ctx_, element, std::move(child_path), std::move(at));
    item(child);
  }
}

void Field::read_map(FunctionRef<void(const std::string&, Field&)> entry) const {
  if (null()) return;
  if (!node_.IsMap()) {
    report_wrong_type("a mapping");
    return;
  }
  KeySet seen;
  // Range-for keeps each key/value pair alive; `it->first` would bind to a
  // member of a temporary proxy.
  for (const auto& kv : node_) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar()) {
      ctx_->error(ctx_->locate(key.Mark()).known() ? ctx_->locate(key.Mark()) : where_, path_,
                  "keys must be strings, found " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    Field child = make_child(key, kv.second, name);
    if (name == "<<" && key.Tag() == "?") {
      report_merge_key(child);
      continue;
    }
    if (!seen.insert(name)) {
      ctx_->error(child.where(), child.path(), "duplicate key \"" + name + "\"");
      continue;
    }
    entry(name, child);
  }
}

std::optional<Field> Field::child(std::string_view key) const {
  if (!node_.IsMap()) return std::nullopt;
  for (const auto& kv : node_) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) {
      return make_child(kv.first, kv.second, std::string(key));
    }
  }
  return std::nullopt;
}

}  // namespace sluice::config::detail
