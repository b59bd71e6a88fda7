#include "core/config/file_fingerprint.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace sluice::config {

namespace {

void stamp(const std::string& path, std::string& out) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    out += "missing " + path + "\n";
    return;
  }
  out += path + " " + std::to_string(st.st_ino) + " " + std::to_string(st.st_size) + " " +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "\n";
}

}  // namespace

std::string file_fingerprint(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::string out;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
      stamp(path, out);
      continue;
    }
    std::vector<std::string> files;
    fs::recursive_directory_iterator it(
        path, fs::directory_options::follow_directory_symlink | fs::directory_options::skip_permission_denied,
        ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    stamp(path, out);  // the directory itself: entries added or removed
    for (const std::string& f : files) stamp(f, out);
  }
  return out;
}

}  // namespace sluice::config
