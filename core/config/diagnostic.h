// Diagnostics produced while loading, validating and analysing configuration.
// Every message a user sees names where the problem is (file:line:column) and
// which resource it belongs to, so that a bad file can be fixed without guessing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::config {

// A position in a source file. line and column are 1-based; 0 means unknown.
struct SourceLocation {
  std::string file;
  uint32_t line = 0;
  uint32_t column = 0;

  bool known() const { return line != 0; }
  // "file:line:column", or "file" when the position is unknown.
  std::string str() const;
};

enum class Severity { kInfo, kWarning, kError };

const char* severity_name(Severity s);  // "Info", "Warning", "Error"

struct Diagnostic {
  Severity severity = Severity::kError;
  // istioctl analysis code ("IST0101") for cross-resource findings; empty for
  // per-resource validation and parse problems.
  std::string code;
  std::string message;
  SourceLocation location;
  // The resource the problem belongs to; empty kind for file-level problems
  // (unreadable file, malformed YAML).
  std::string kind;
  std::string namespace_;
  std::string name;
  // Path of the offending field inside the resource ("spec.http[0].route"), if any.
  std::string field;

  // Validation/parse style:
  //   configs/x.yaml:12:7: error: VirtualService default/foo: spec.http[0].route: total destination weight = 0
  // Analysis style (istioctl analyze):
  //   Error [IST0101] (VirtualService default/foo configs/x.yaml:12) Referenced gateway not found: "gw"
  std::string format() const;
};

// Ordered list of diagnostics with helpers.
class Diagnostics {
 public:
  void add(Diagnostic d) { items_.push_back(std::move(d)); }
  void error(const SourceLocation& loc, std::string message);
  void warning(const SourceLocation& loc, std::string message);
  void append(const Diagnostics& other);

  const std::vector<Diagnostic>& items() const { return items_; }
  size_t error_count() const;
  size_t warning_count() const;
  bool has_errors() const { return error_count() != 0; }
  bool empty() const { return items_.empty(); }

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace sluice::config
