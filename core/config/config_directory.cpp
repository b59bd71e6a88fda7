#include "core/config/config_directory.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

namespace sluice::config {

namespace fs = std::filesystem;

namespace {

// Symlinked directories are followed; this bounds a tree that links into
// itself in ways the visited set cannot see (bind mounts).
constexpr int kMaxDirectoryDepth = 32;

// A file or directory by identity rather than by name: symlinks (the
// ConfigMap volume's, or loops) reach the same inode under many names.
// One stat() where std::filesystem::canonical would readlink every component.
using FileId = std::pair<dev_t, ino_t>;

std::optional<FileId> file_id(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

bool has_config_extension(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

class DirectoryWalk {
 public:
  explicit DirectoryWalk(Diagnostics& diagnostics) : diagnostics_(diagnostics) {}

  void walk(const fs::path& dir, int depth) {
    std::error_code ec;
    std::optional<FileId> id = file_id(dir);
    if (!id) {
      problem(dir, std::error_code(errno, std::generic_category()));
      return;
    }
    if (!visited_dirs_.insert(*id).second || depth > kMaxDirectoryDepth) return;

    std::vector<fs::path> entries;
    bool configmap_volume = false;
    fs::directory_iterator it(dir, ec);
    if (ec) {
      problem(dir, ec);
      return;
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) {
        problem(dir, ec);
        break;
      }
      const std::string name = it->path().filename().string();
      if (name == "..data") configmap_volume = true;
      // The ConfigMap volume's internals: the same files again, by other names.
      if (name.rfind("..", 0) == 0) continue;
      entries.push_back(it->path());
    }
    std::sort(entries.begin(), entries.end());

    for (const fs::path& entry : entries) {
      fs::file_status status = fs::status(entry, ec);  // follows symlinks
      if (ec) {
        // A dangling link: only worth a word if it looked like config.
        if (configmap_volume || has_config_extension(entry)) problem(entry, ec);
        continue;
      }
      if (fs::is_directory(status)) {
        walk(entry, depth + 1);
      } else if (fs::is_regular_file(status) && (configmap_volume || has_config_extension(entry))) {
        std::optional<FileId> file = file_id(entry);
        if (!file) {
          problem(entry, std::error_code(errno, std::generic_category()));
          continue;
        }
        if (loaded_files_.insert(*file).second) files_.push_back(entry.string());
      }
    }
  }

  std::vector<std::string> take() { return std::move(files_); }

 private:
  void problem(const fs::path& p, const std::error_code& ec) {
    diagnostics_.error({p.string(), 0, 0}, "cannot read: " + ec.message());
  }

  Diagnostics& diagnostics_;
  std::set<FileId> visited_dirs_;
  std::set<FileId> loaded_files_;
  std::vector<std::string> files_;
};

}  // namespace

std::vector<std::string> list_config_files(const std::string& dir, Diagnostics& diagnostics) {
  DirectoryWalk walk(diagnostics);
  walk.walk(dir, 0);
  return walk.take();
}

}  // namespace sluice::config
