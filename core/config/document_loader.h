// Decides what one parsed YAML document is (an Istio resource, the `istio`
// ConfigMap, a bare MeshConfig, Helm values, an IstioOperator, a `kind: List`)
// and adds it to a LoadResult. Internal to the loader.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

#include "core/config/loader.h"
#include "core/config/yaml_reader.h"

namespace sluice::config::detail {

class DocumentLoader {
 public:
  // `text` is what yaml-cpp parsed (one document of the file), starting at
  // 0-based line `first_line` of `file`; it is needed to map the embedded
  // mesh text of a ConfigMap back onto the file's lines.
  DocumentLoader(LoadResult& into, const LoadOptions& options, const std::string& file,
                 std::string_view text, uint32_t first_line);

  // True if the document contributed anything to `into`.
  bool load(const YAML::Node& root);

 private:
  bool load_at_depth(const YAML::Node& root, int list_depth);
  bool load_list(const YAML::Node& root, const std::string& kind, int list_depth);
  template <typename Resource, typename Decoder>
  bool load_resource(const YAML::Node& root, const std::string& kind,
                     const std::string& api_version, std::vector<Resource>& out,
                     Decoder decode_spec);
  bool load_config_map(const YAML::Node& root);
  bool load_embedded_mesh(const Field& value, DecodeContext& outer, MeshConfig& mesh);
  bool load_istio_operator(const YAML::Node& root);
  bool load_bare(const YAML::Node& root);

  DecodeContext make_context(const std::string& kind, const std::string& schema) const;
  void file_error(const YAML::Mark& mark, std::string message, const std::string& kind = "");
  void file_warning(const YAML::Mark& mark, std::string message, const std::string& kind = "",
                    const std::string& ns = "", const std::string& name = "");

  LoadResult& into_;
  const LoadOptions& options_;
  const std::string& file_;
  std::string_view text_;
  LocationMap map_;
};

}  // namespace sluice::config::detail
