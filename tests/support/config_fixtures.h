// Configuration inputs shared by the tests: the egress walkthrough's
// resources written once, and a loader that fails the test on any error.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/config/loader.h"

namespace sluice::test_support {

// ServiceEntry `cnn` exactly as the walkthrough applies it.
inline constexpr const char* kCnnServiceEntry = R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  ports:
  - {number: 80, name: http-port, protocol: HTTP}
  - {number: 443, name: https, protocol: HTTPS}
  resolution: DNS
)";

// Loads each document as its own file ("test0.yaml", ...) into `into`; any
// error fails the current test.
inline void load_documents(std::initializer_list<const char*> docs, config::LoadResult& into) {
  int i = 0;
  for (const char* d : docs) config::load_text(d, "test" + std::to_string(i++) + ".yaml", into);
  for (const auto& diagnostic : into.diagnostics.items()) {
    if (diagnostic.severity == config::Severity::kError) ADD_FAILURE() << diagnostic.format();
  }
}

// A path in the source tree (meson's test_env sets SLUICE_SOURCE_ROOT).
inline std::string repo_path(const std::string& rel) {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/" + rel;
}

// Loads files/directories of the source tree (e.g. "configs/walkthrough");
// any error, or nothing loaded, fails the current test.
inline config::ConfigSet load_repo_paths(const std::vector<std::string>& rels) {
  std::vector<std::string> paths;
  for (const auto& r : rels) paths.push_back(repo_path(r));
  config::LoadResult r = config::load_paths(paths);
  for (const auto& d : r.diagnostics.items()) {
    if (d.severity == config::Severity::kError) ADD_FAILURE() << d.format();
  }
  EXPECT_GT(r.config.resource_count(), 0u);
  return std::move(r.config);
}

inline config::ConfigSet load_config(std::initializer_list<const char*> docs) {
  config::LoadResult r;
  load_documents(docs, r);
  return std::move(r.config);
}

}  // namespace sluice::test_support
