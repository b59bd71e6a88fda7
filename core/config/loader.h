// Turns YAML text (Istio's own resources, the `istio` ConfigMap, a bare
// MeshConfig, Helm values or an IstioOperator) into a ConfigSet.
//
// The loader never throws to its caller and never aborts on bad input: every
// problem becomes a Diagnostic with file:line:column, and the documents that
// did parse are kept so that validation can report everything at once.
// Unknown fields are warnings (Istio ignores them); wrong types are errors.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/model.h"

namespace sluice::config {

struct LoadOptions {
  // Files larger than this are refused with one error instead of being parsed.
  size_t max_file_bytes = 64 * 1024 * 1024;
  // Deeper YAML nesting than this is refused (yaml-cpp recurses per level).
  size_t max_depth = 64;
  // A document whose walk visits more YAML nodes than this is refused: with
  // anchors and aliases a few kilobytes can name billions of nodes. Real
  // resources are far smaller (etcd stores objects of at most 1.5 MiB).
  size_t max_nodes_per_document = 300'000;
};

struct LoadResult {
  ConfigSet config;
  Diagnostics diagnostics;
};

// Parses one text buffer that came from `filename` (used only in messages) and
// adds what it holds to `into`. Multi-document streams (`---`) are supported.
// A document with errors (wrong types, bad enum values or durations) is
// reported and left out, as the Kubernetes API server would reject it; the
// other documents of the stream still load.
void load_text(std::string_view text, const std::string& filename, LoadResult& into,
               const LoadOptions& options = {});

// Reads and loads a file, or every *.yaml / *.yml / *.json file under a
// directory (recursively, sorted by path; Kubernetes ConfigMap volumes'
// `..data`/`..2024_…` internals are followed through the `..data` link once).
void load_path(const std::string& path, LoadResult& into, const LoadOptions& options = {});

// Convenience: load every path in order.
LoadResult load_paths(const std::vector<std::string>& paths, const LoadOptions& options = {});

// Applies one `--set key=value` install option, as istioctl accepts them:
//   values.global.proxy.includeIPRanges="10.244.0.0/16\,10.240.0.0/16"
//   global.proxy.excludeOutboundPorts=22
//   values.global.outboundTrafficPolicy.mode=REGISTRY_ONLY
//   meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY
// Lists are comma-separated; `\,` is a literal comma separator as istioctl's
// --set parser treats it. Unknown keys produce a warning. `origin` names the
// source in messages ("--set").
void apply_set_flag(const std::string& assignment, LoadResult& into,
                    const std::string& origin = "--set");

}  // namespace sluice::config
