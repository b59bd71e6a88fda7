// The loader's entry points: files and directories to text, text to
// documents, each document to DocumentLoader. Everything that can go wrong
// with the bytes themselves (size, encoding, nesting, YAML syntax) is decided
// here, once per file or document, so that a bad file yields one clear error.
#include "core/config/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <new>

#include "core/config/config_directory.h"
#include "core/config/document_loader.h"
#include "core/config/document_split.h"
#include "core/config/text_screen.h"
#include "core/config/yaml_parse.h"

namespace sluice::config {

namespace {

std::string describe_limit(size_t bytes) {
  constexpr size_t kMiB = 1024 * 1024;
  if (bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  return std::to_string(bytes) + " bytes";
}

std::string too_large_message(uint64_t size, size_t limit) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.1f MB", static_cast<double>(size) / (1024.0 * 1024.0));
  return std::string("file is ") + buffer + ", larger than the " + describe_limit(limit) + " limit";
}

void file_error(LoadResult& into, const std::string& file, std::string message, uint32_t line = 0,
                uint32_t column = 0) {
  into.diagnostics.error({file, line, column}, std::move(message));
}

// Closes a descriptor on every path out of read_file.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads `path` whole, refusing (without reading) anything over the limit.
std::optional<std::string> read_file(const std::string& path, const LoadOptions& options,
                                     LoadResult& into) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    file_error(into, path, std::string("cannot read file: ") + std::strerror(errno));
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    file_error(into, path, std::string("cannot read file: ") + std::strerror(errno));
    return std::nullopt;
  }
  if (S_ISDIR(st.st_mode)) {
    file_error(into, path, "is a directory");
    return std::nullopt;
  }
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > options.max_file_bytes) {
    file_error(into, path,
               too_large_message(static_cast<uint64_t>(st.st_size), options.max_file_bytes));
    return std::nullopt;
  }

  // Pipes and devices have no size up front: read until the limit.
  std::string text;
  if (S_ISREG(st.st_mode)) text.reserve(static_cast<size_t>(st.st_size));
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      file_error(into, path, std::string("cannot read file: ") + std::strerror(errno));
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > options.max_file_bytes) {
      file_error(into, path,
                 "file is larger than the " + describe_limit(options.max_file_bytes) + " limit");
      return std::nullopt;
    }
  }
  return text;
}

void load_text_unguarded(std::string_view text, const std::string& filename, LoadResult& into,
                         const LoadOptions& options) {
  if (text.size() > options.max_file_bytes) {
    file_error(into, filename, too_large_message(text.size(), options.max_file_bytes));
    return;
  }
  if (auto problem = check_text_encoding(text)) {
    SourceLocation at = location_at(text, problem->offset, filename);
    file_error(into, filename, problem->message, at.line, at.column);
    return;
  }
  // What yaml-cpp cannot be trusted with: it recurses once per nesting
  // level, and loops forever on a stray top-level ','.
  if (auto problem = check_yaml_structure(text, options.max_depth)) {
    SourceLocation at = location_at(text, problem->offset, filename);
    file_error(into, filename, problem->message, at.line, at.column);
    return;
  }

  // yaml-cpp skips a byte-order mark without counting it in its positions;
  // dropping it here keeps those positions aligned with the text.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);

  bool contributed = false;
  for (const DocumentText& document : split_documents(text)) {
    ParsedDocuments parsed = parse_documents(document.text);
    if (!parsed.ok) {
      detail::LocationMap map;
      map.file = filename;
      map.line_offset = document.first_line;
      SourceLocation at = map.locate(parsed.error_mark);
      file_error(into, filename, "invalid YAML: " + parsed.error, at.line, at.column);
      continue;
    }
    detail::DocumentLoader loader(into, options, filename, document.text, document.first_line);
    for (const YAML::Node& node : parsed.documents) contributed |= loader.load(node);
  }
  if (contributed &&
      (into.config.source_files.empty() || into.config.source_files.back() != filename)) {
    into.config.source_files.push_back(filename);
  }
}

void load_file(const std::string& path, LoadResult& into, const LoadOptions& options) {
  std::optional<std::string> text = read_file(path, options, into);
  if (text) load_text_unguarded(*text, path, into, options);
}

// The API promises not to throw; this is the one place that keeps it.
template <typename Fn>
void guarded(LoadResult& into, const std::string& what, Fn&& fn) {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    file_error(into, what, "out of memory while loading");
  } catch (const std::exception& e) {
    file_error(into, what, std::string("internal error while loading: ") + e.what());
  } catch (...) {
    file_error(into, what, "internal error while loading");
  }
}

}  // namespace

void load_text(std::string_view text, const std::string& filename, LoadResult& into,
               const LoadOptions& options) {
  guarded(into, filename, [&] { load_text_unguarded(text, filename, into, options); });
}

void load_path(const std::string& path, LoadResult& into, const LoadOptions& options) {
  guarded(into, path, [&] {
    std::error_code ec;
    std::filesystem::file_status status = std::filesystem::status(path, ec);
    if (ec) {
      file_error(into, path, "cannot read: " + ec.message());
      return;
    }
    if (std::filesystem::is_directory(status)) {
      for (const std::string& file : list_config_files(path, into.diagnostics)) {
        load_file(file, into, options);
      }
      return;
    }
    // A file named explicitly is loaded whatever its extension.
    load_file(path, into, options);
  });
}

LoadResult load_paths(const std::vector<std::string>& paths, const LoadOptions& options) {
  LoadResult result;
  for (const std::string& path : paths) load_path(path, result, options);
  return result;
}

}  // namespace sluice::config
