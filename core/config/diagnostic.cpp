#include "core/config/diagnostic.h"

#include <algorithm>

namespace sluice::config {

std::string SourceLocation::str() const {
  if (!known()) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

const char* severity_name(Severity s) {
  switch (s) {
    case Severity::kInfo: return "Info";
    case Severity::kWarning: return "Warning";
    case Severity::kError: return "Error";
  }
  return "Error";
}

namespace {
std::string lower(const char* s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}
}  // namespace

std::string Diagnostic::format() const {
  std::string resource;
  if (!kind.empty()) resource = kind + " " + (namespace_.empty() ? std::string() : namespace_ + "/") + name;
  if (!code.empty()) {
    // istioctl analyze prints file:line, without the column.
    std::string where = location.file;
    if (location.known()) where += ":" + std::to_string(location.line);
    std::string out = std::string(severity_name(severity)) + " [" + code + "] (";
    out += resource.empty() ? where : resource + (where.empty() ? "" : " " + where);
    out += ") " + message;
    return out;
  }
  std::string out = location.str();
  if (!out.empty()) out += ": ";
  out += lower(severity_name(severity)) + ": ";
  if (!resource.empty()) out += resource + ": ";
  if (!field.empty()) out += field + ": ";
  out += message;
  return out;
}

void Diagnostics::error(const SourceLocation& loc, std::string message) {
  add(Diagnostic{Severity::kError, "", std::move(message), loc, "", "", "", ""});
}

void Diagnostics::warning(const SourceLocation& loc, std::string message) {
  add(Diagnostic{Severity::kWarning, "", std::move(message), loc, "", "", "", ""});
}

void Diagnostics::append(const Diagnostics& other) {
  items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

size_t Diagnostics::error_count() const {
  return static_cast<size_t>(std::count_if(items_.begin(), items_.end(), [](const Diagnostic& d) {
    return d.severity == Severity::kError;
  }));
}

size_t Diagnostics::warning_count() const {
  return static_cast<size_t>(std::count_if(items_.begin(), items_.end(), [](const Diagnostic& d) {
    return d.severity == Severity::kWarning;
  }));
}

}  // namespace sluice::config
