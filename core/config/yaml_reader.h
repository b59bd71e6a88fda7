// Schema-driven reading of a yaml-cpp node tree into the model.
//
// A Field is a cursor: one YAML node plus its path inside the resource
// ("spec.ports[0].number") and where it sits in the file. The decoders in
// *_decoder.cpp describe each Istio message as a table of field names and
// handlers; Field does the bookkeeping every decoder would otherwise repeat:
// recording locations, warning on unknown fields, reporting wrong types with
// the exact position, and bounding the work an alias bomb can cause.
//
// Internal to the loader (namespace detail): nothing here is part of the API.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/model.h"

namespace sluice::config::detail {

// Thrown to give up on one document (too many nodes or problems); the
// document loader catches it and drops that document only.
struct DocumentAbandoned {};

// Turns yaml-cpp marks (0-based, relative to the text yaml-cpp was given)
// into 1-based positions in the file the user edits. Text embedded in a
// literal block scalar (the `istio` ConfigMap's `mesh: |`) is shifted by the
// scalar's first line and indentation; text embedded in a plain or quoted
// scalar cannot be mapped line by line, so everything points at its key.
struct LocationMap {
  std::string file;
  int64_t line_offset = 0;
  int64_t column_offset = 0;
  std::optional<SourceLocation> fixed;

  SourceLocation locate(const YAML::Mark& mark) const;
};

// A non-owning reference to a callable, so that handler tables can be built
// from lambdas without allocating. Only valid while the callable lives,
// which for the tables below is the full expression that calls read_object.
template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit on purpose, like std::function
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

// Per-document state shared by every Field of that document.
class DecodeContext {
 public:
  struct Limits {
    size_t max_nodes = 300'000;
    size_t max_diagnostics = 100;
  };

  DecodeContext(Diagnostics& out, LocationMap map, Limits limits);

  // Who the diagnostics belong to (Diagnostic::kind/namespace_/name).
  std::string kind;
  std::string namespace_;
  std::string name;
  // Names the message a path lives in, for "unknown field \"x\" in ServiceEntry spec".
  std::string schema;
  // Prepended to paths in Diagnostic::field, e.g. "data.mesh." for the
  // embedded mesh text, so that the field names the outer document's node.
  std::string field_prefix;
  // Where to record every visited node; null for documents without ObjectMeta.
  FieldLocations* fields = nullptr;

  const LocationMap& map() const { return map_; }
  SourceLocation locate(const YAML::Mark& mark) const { return map_.locate(mark); }

  // Records `path` at `where` and charges one node against the budget.
  void visit(const std::string& path, const SourceLocation& where);

  void error(const SourceLocation& where, const std::string& path, std::string message);
  void warning(const SourceLocation& where, const std::string& path, std::string message);

  size_t error_count() const { return errors_; }

 private:
  void report(Severity severity, const SourceLocation& where, const std::string& path,
              std::string message);

  Diagnostics& out_;
  LocationMap map_;
  Limits limits_;
  size_t nodes_ = 0;
  size_t reported_ = 0;
  size_t errors_ = 0;
};

// What to do with a mapping key no handler claims.
enum class UnknownFields {
  kWarn,    // Istio resources and MeshConfig: Istio ignores them, we say so
  kIgnore,  // Helm values: hundreds of chart keys that do not concern egress
};

template <typename E>
struct EnumName {
  std::string_view name;
  E value;
};

class Field;
using FieldHandlerFn = FunctionRef<void(Field&)>;

struct FieldHandler {
  std::string_view name;
  FieldHandlerFn handle;
};

class Field {
 public:
  Field(DecodeContext& ctx, YAML::Node node, std::string path, SourceLocation where);

  DecodeContext& context() const { return *ctx_; }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  // Where the field is named: its key for a mapping entry, else the node.
  const SourceLocation& where() const { return where_; }
  // Where its value is; falls back to where() for empty values.
  SourceLocation value_where() const;

  // `key:` with no value, or `key: null`: protobuf JSON treats it as unset.
  bool null() const { return !node_.IsDefined() || node_.IsNull(); }
  bool is_map() const { return node_.IsMap(); }
  bool is_list() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }

  void error(std::string message) const;
  void warning(std::string message) const;

  // Scalar readers: on a wrong type they report an error at the value and
  // leave `out` untouched; a null value leaves it untouched silently.
  bool read(std::string& out) const;
  bool read(uint32_t& out) const;
  bool read(int32_t& out) const;
  bool read(uint64_t& out) const;
  bool read(bool& out) const;
  bool read(double& out) const;
  bool read_duration(std::optional<Duration>& out) const;
  // Upper-cases the value: Istio parses port protocols case-insensitively.
  bool read_upper(std::string& out) const;
  bool read(std::vector<std::string>& out) const;  // list of strings
  bool read(Labels& out) const;                    // string -> string mapping

  // Enum by Istio's name; anything else is an error listing the names.
  template <typename E, size_t N>
  bool read_enum(E& out, const EnumName<E> (&names)[N]) const {
    std::string text;
    if (!scalar_text(text, "an enum name")) return false;
    for (const auto& n : names) {
      if (n.name == text) {
        out = n.value;
        return true;
      }
    }
    std::string allowed;
    for (const auto& n : names) {
      if (!allowed.empty()) allowed += ", ";
      allowed += n.name;
    }
    report_bad_value(text, allowed);
    return false;
  }
  // Same, for enums the model keeps as strings (TLS protocol versions).
  bool read_enum_string(std::string& out, std::initializer_list<std::string_view> names) const;

  // A mapping with a fixed set of fields (a protobuf message): calls the
  // handler of each key in document order. Unknown keys warn (or not, see
  // UnknownFields); duplicate keys are errors, as kubectl treats them.
  // `known_elsewhere` names further fields that exist and are deliberately
  // dropped without a warning (too many to list as handlers).
  void read_object(std::initializer_list<FieldHandler> handlers,
                   UnknownFields unknown = UnknownFields::kWarn,
                   bool (*known_elsewhere)(std::string_view) = nullptr) const;
  // A list: calls `item` for each element with path "path[i]".
  void read_list(FunctionRef<void(Field&)> item) const;
  // A mapping with free-form keys (labels, header names): path "path.key".
  void read_map(FunctionRef<void(const std::string& key, Field& value)> entry) const;

  // The child at `key` of a mapping, visited like read_object would; an
  // undefined Field when absent or when this is not a mapping.
  std::optional<Field> child(std::string_view key) const;

 private:
  bool scalar_text(std::string& out, const char* expected) const;
  void report_wrong_type(const char* expected) const;
  void report_bad_value(const std::string& text, const std::string& allowed) const;
  void report_merge_key(const Field& merge) const;
  Field make_child(const YAML::Node& key, const YAML::Node& value, const std::string& name) const;

  DecodeContext* ctx_;
  YAML::Node node_;
  std::string path_;
  SourceLocation where_;
};

// Engage `out` and decode into it, unless the value is null (unset).
// Assigns `T{}` rather than calling emplace(): clang decides that nested
// structs with member initializers (TCPSettings::KeepAlive) are not default
// constructible while their enclosing class is being defined, and
// std::optional remembers that answer.
template <typename T, typename Fn>
void read_optional(const Field& f, std::optional<T>& out, Fn&& decode) {
  if (f.null()) return;
  out = T{};
  decode(f, *out);
}

// Short description of a node for messages: "a mapping", "\"abc\"".
std::string describe(const YAML::Node& node);

}  // namespace sluice::config::detail
