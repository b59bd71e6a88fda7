#include "ctl/config_tables.h"

#include "core/config/loader.h"
#include "core/config/validation.h"

namespace sluice::ctl {

ConfigTables::ConfigTables(config::ConfigSet loaded)
    : config(std::move(loaded)), registry(config), routes(config), destinations(config) {}

LoadedConfig load_config(const std::vector<std::string>& paths, const std::vector<std::string>& sets) {
  config::LoadResult loaded = config::load_paths(paths);
  for (const std::string& s : sets) config::apply_set_flag(s, loaded);

  LoadedConfig out;
  out.diagnostics = std::move(loaded.diagnostics);
  out.diagnostics.append(config::validate(loaded.config));
  out.rules = decision::compile_rules(loaded.config.install, decision::ProxySettings{}, out.diagnostics);
  if (out.diagnostics.has_errors()) return out;
  out.tables = std::make_unique<const ConfigTables>(std::move(loaded.config));
  return out;
}

std::optional<std::string> parse_labels(const std::vector<std::string>& flags,
                                        std::map<std::string, std::string>& out) {
  for (const std::string& l : flags) {
    const size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) return "--label " + l + ": not KEY=VALUE (e.g. istio=egressgateway)";
    out[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return std::nullopt;
}

}  // namespace sluice::ctl
