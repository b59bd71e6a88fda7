#include "agent/config_source.h"

#include "core/config/file_fingerprint.h"
#include "core/config/loader.h"

namespace sluice::agent {

CompiledConfig load_and_compile(const ConfigInputs& inputs, const decision::ProxySettings& proxy) {
  config::LoadResult loaded;
  if (!inputs.paths.empty()) loaded = config::load_paths(inputs.paths);
  for (const std::string& assignment : inputs.sets) config::apply_set_flag(assignment, loaded);

  CompiledConfig out;
  out.diagnostics = loaded.diagnostics;
  out.rules = decision::compile_rules(loaded.config.install, proxy, out.diagnostics);
  return out;
}

std::string fingerprint(const std::vector<std::string>& paths) { return config::file_fingerprint(paths); }

}  // namespace sluice::agent
