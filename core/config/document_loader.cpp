#include "core/config/document_loader.h"

#include <algorithm>
#include <utility>

#include "core/config/resource_decoders.h"
#include "core/config/text_screen.h"
#include "core/config/yaml_parse.h"

namespace sluice::config::detail {

namespace {

constexpr std::string_view kNetworkingGroup = "networking.istio.io";
constexpr std::string_view kNetworkingVersions[] = {"v1alpha3", "v1beta1", "v1"};
// `kubectl get a,b -o yaml` nests nothing, but a List may hold a List when
// files are concatenated by hand; more than this is not plausible.
constexpr int kMaxListDepth = 4;

// The value under `key` in a mapping, without yaml-cpp's operator[] (which
// on a non-const node inserts the key).
std::optional<std::pair<YAML::Node, YAML::Node>> lookup(const YAML::Node& map,
                                                        std::string_view key) {
  if (!map.IsMap()) return std::nullopt;
  for (const auto& kv : map) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return std::make_pair(kv.first, kv.second);
  }
  return std::nullopt;
}

std::string scalar_at(const YAML::Node& map, std::string_view key) {
  auto kv = lookup(map, key);
  if (!kv || !kv->second.IsScalar()) return "";
  return kv->second.Scalar();
}

// metadata.namespace/name read without checks, so that every diagnostic of
// the document can name its resource, even those about metadata itself.
std::pair<std::string, std::string> identity(const YAML::Node& root) {
  auto metadata = lookup(root, "metadata");
  if (!metadata) return {"", ""};
  std::string ns = scalar_at(metadata->second, "namespace");
  return {ns.empty() ? "default" : ns, scalar_at(metadata->second, "name")};
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

DocumentLoader::DocumentLoader(LoadResult& into, const LoadOptions& options,
                               const std::string& file, std::string_view text, uint32_t first_line)
    : into_(into), options_(options), file_(file), text_(text) {
  map_.file = file;
  map_.line_offset = first_line;
}

DecodeContext DocumentLoader::make_context(const std::string& kind,
                                           const std::string& schema) const {
  DecodeContext::Limits limits;
  limits.max_nodes = options_.max_nodes_per_document;
  DecodeContext ctx(into_.diagnostics, map_, limits);
  ctx.kind = kind;
  ctx.schema = schema;
  return ctx;
}

void DocumentLoader::file_error(const YAML::Mark& mark, std::string message,
                                const std::string& kind) {
  Diagnostic d;
  d.severity = Severity::kError;
  d.location = map_.locate(mark);
  d.message = std::move(message);
  d.kind = kind;
  into_.diagnostics.add(std::move(d));
}

void DocumentLoader::file_warning(const YAML::Mark& mark, std::string message,
                                  const std::string& kind, const std::string& ns,
                                  const std::string& name) {
  Diagnostic d;
  d.severity = Severity::kWarning;
  d.location = map_.locate(mark);
  d.message = std::move(message);
  d.kind = kind;
  d.namespace_ = ns;
  d.name = name;
  into_.diagnostics.add(std::move(d));
}

bool DocumentLoader::load(const YAML::Node& root) {
  try {
    return load_at_depth(root, 0);
  } catch (const DocumentAbandoned&) {
    return false;  // already reported
  } catch (const YAML::Exception& e) {
    file_error(e.mark, "cannot read document: " + e.msg);
    return false;
  }
}

bool DocumentLoader::load_at_depth(const YAML::Node& root, int list_depth) {
  if (!root.IsDefined() || root.IsNull()) return false;  // empty document
  if (!root.IsMap()) {
    file_error(root.Mark(),
               "expected a Kubernetes resource (a mapping with apiVersion and kind), found " +
                   describe(root));
    return false;
  }
  auto kind_kv = lookup(root, "kind");
  auto api_kv = lookup(root, "apiVersion");
  for (const auto* kv : {&kind_kv, &api_kv}) {
    if (*kv && !(*kv)->second.IsScalar() && !(*kv)->second.IsNull()) {
      file_error((*kv)->second.Mark(),
                 (*kv)->first.Scalar() + " must be a string, found " + describe((*kv)->second));
      return false;
    }
  }
  const std::string kind = kind_kv && kind_kv->second.IsScalar() ? kind_kv->second.Scalar() : "";
  const std::string api = api_kv && api_kv->second.IsScalar() ? api_kv->second.Scalar() : "";

  if (kind.empty() && api.empty()) return load_bare(root);
  if (kind.empty()) {
    file_error(api_kv->second.Mark(), "document has apiVersion \"" + api + "\" but no kind");
    return false;
  }

  const size_t slash = api.find('/');
  const std::string group = slash == std::string::npos ? "" : api.substr(0, slash);
  const std::string version = slash == std::string::npos ? api : api.substr(slash + 1);
  const bool ours = kind == "ServiceEntry" || kind == "VirtualService" ||
                    kind == "DestinationRule" || kind == "Gateway" || kind == "Sidecar";
  auto [ns, name] = identity(root);

  if (group == kNetworkingGroup) {
    if (std::find(std::begin(kNetworkingVersions), std::end(kNetworkingVersions), version) ==
        std::end(kNetworkingVersions)) {
      Diagnostic d;
      d.severity = Severity::kError;
      d.location = map_.locate(api_kv->second.Mark());
      d.message = "unsupported apiVersion \"" + api +
                  "\"; Istio serves networking.istio.io/v1, v1beta1 and v1alpha3";
      d.kind = kind;
      d.namespace_ = ns;
      d.name = name;
      d.field = "apiVersion";
      into_.diagnostics.add(std::move(d));
      return false;
    }
    if (kind == "ServiceEntry")
      return load_resource(root, kind, api, into_.config.service_entries,
                           decode_service_entry_spec);
    if (kind == "VirtualService")
      return load_resource(root, kind, api, into_.config.virtual_services,
                           decode_virtual_service_spec);
    if (kind == "DestinationRule")
      return load_resource(root, kind, api, into_.config.destination_rules,
                           decode_destination_rule_spec);
    if (kind == "Gateway")
      return load_resource(root, kind, api, into_.config.gateways, decode_gateway_spec);
    if (kind == "Sidecar")
      return load_resource(root, kind, api, into_.config.sidecars, decode_sidecar_spec);
  } else if (ours && api.empty()) {
    Diagnostic d;
    d.severity = Severity::kError;
    d.location = map_.locate(kind_kv->second.Mark());
    d.message = "apiVersion is missing; " + kind + " is networking.istio.io/v1";
    d.kind = kind;
    d.namespace_ = ns;
    d.name = name;
    d.field = "apiVersion";
    into_.diagnostics.add(std::move(d));
    return false;
  } else if (kind == "List" || (ends_with(kind, "List") && lookup(root, "items"))) {
    return load_list(root, kind, list_depth);
  } else if (kind == "ConfigMap" && api == "v1") {
    return load_config_map(root);
  } else if (kind == "IstioOperator" && group == "install.istio.io") {
    return load_istio_operator(root);
  }

  std::string message = "unsupported kind " + kind + ", ignored";
  if (ours) {
    // Kubernetes Gateway API has a Gateway too; say why this one is not ours.
    message += " (apiVersion " + api + " is not Istio's networking.istio.io)";
  }
  file_warning(kind_kv->second.Mark(), std::move(message), kind, ns, name);
  return false;
}

bool DocumentLoader::load_list(const YAML::Node& root, const std::string& kind, int list_depth) {
  auto items = lookup(root, "items");
  if (!items || items->second.IsNull()) return false;
  if (!items->second.IsSequence()) {
    file_error(items->second.Mark(),
               kind + " items must be a list, found " + describe(items->second));
    return false;
  }
  if (list_depth >= kMaxListDepth) {
    file_error(items->first.Mark(), "Lists nested more than " + std::to_string(kMaxListDepth) +
                                        " deep are not supported");
    return false;
  }
  bool contributed = false;
  for (const auto& item : items->second) {
    try {
      contributed |= load_at_depth(item, list_depth + 1);
    } catch (const DocumentAbandoned&) {
      // Reported; the other items still load.
    }
  }
  return contributed;
}

template <typename Resource, typename Decoder>
bool DocumentLoader::load_resource(const YAML::Node& root, const std::string& kind,
                                   const std::string& api_version, std::vector<Resource>& out,
                                   Decoder decode_spec) {
  Resource resource;
  ObjectMeta& meta = resource.meta;
  meta.api_version = api_version;
  meta.kind = kind;
  meta.file = file_;

  DecodeContext ctx = make_context(kind, kind);
  std::tie(ctx.namespace_, ctx.name) = identity(root);
  ctx.fields = &meta.fields;
  const SourceLocation root_at = ctx.locate(root.Mark());
  meta.line = root_at.line;

  try {
    ctx.visit("", root_at);
    Field doc(ctx, root, "", root_at);
    bool has_metadata = false;
    doc.read_object({
        {"apiVersion", ignore_field},
        {"kind", ignore_field},
        {"metadata",
         [&](Field& f) {
           has_metadata = true;
           decode_object_meta(f, meta);
         }},
        {"spec", [&](Field& f) { decode_spec(f, resource); }},
        {"status", ignore_field},
    });
    if (meta.namespace_.empty()) meta.namespace_ = "default";
    // Only when nothing else is wrong: a broken `metadata` explains itself.
    if (meta.name.empty() && ctx.error_count() == 0) {
      // The API server refuses a nameless resource, and nothing could refer to it.
      SourceLocation at = has_metadata ? meta.location("metadata") : root_at;
      ctx.error(at, "metadata.name", "metadata.name is required");
    }
  } catch (const DocumentAbandoned&) {
    return false;
  }
  if (ctx.error_count() != 0) return false;
  out.push_back(std::move(resource));
  return true;
}

bool DocumentLoader::load_config_map(const YAML::Node& root) {
  DecodeContext ctx = make_context("ConfigMap", "ConfigMap");
  std::tie(ctx.namespace_, ctx.name) = identity(root);
  const SourceLocation root_at = ctx.locate(root.Mark());

  MeshConfig mesh = into_.config.mesh;
  bool found_mesh = false;
  bool mesh_ok = false;
  uint32_t mesh_line = root_at.line;
  try {
    Field doc(ctx, root, "", root_at);
    ObjectMeta unused;
    doc.read_object({
        {"apiVersion", ignore_field},
        {"kind", ignore_field},
        {"metadata", [&](Field& f) { decode_object_meta(f, unused); }},
        {"data",
         [&](Field& data) {
           data.read_map([&](const std::string& key, Field& value) {
             // Only `mesh` concerns egress; meshNetworks and the injector's
             // keys are left alone.
             if (key != "mesh") return;
             found_mesh = true;
             mesh_line = value.where().line;
             mesh_ok = load_embedded_mesh(value, ctx, mesh);
           });
         }},
        {"binaryData", ignore_field},
        {"immutable", ignore_field},
    });
  } catch (const DocumentAbandoned&) {
    return false;
  }
  if (!found_mesh) {
    file_warning(
        root.Mark(),
        "ConfigMap has no data.mesh key (only Istio's mesh ConfigMap is understood), ignored",
        "ConfigMap", ctx.namespace_, ctx.name);
    return false;
  }
  if (!mesh_ok || ctx.error_count() != 0) return false;
  mesh.file = file_;
  mesh.line = mesh_line;
  into_.config.mesh = std::move(mesh);
  return true;
}

bool DocumentLoader::load_embedded_mesh(const Field& value, DecodeContext& outer,
                                        MeshConfig& mesh) {
  if (value.null()) return true;  // `mesh:` empty: Istio's defaults
  if (!value.is_scalar()) {
    value.error("data.mesh must be a string holding MeshConfig YAML, found " +
                describe(value.node()));
    return false;
  }
  const std::string& text = value.node().Scalar();

  // Where the embedded text's lines are in the file. For a literal block
  // scalar (`mesh: |-`, what kubectl prints) line i of the text is line
  // i+1 after the `|`, shifted right by the block's indentation. Other
  // styles fold or escape lines, so everything points at the key.
  LocationMap inner = map_;
  inner.fixed = value.where();
  const YAML::Mark mark = value.node().Mark();
  if (mark.pos >= 0 && static_cast<size_t>(mark.pos) < text_.size() && text_[mark.pos] == '|') {
    size_t header_end = text_.find('\n', mark.pos);
    std::string_view header = text_.substr(mark.pos, header_end - mark.pos);
    const bool explicit_indent = header.find_first_of("123456789") != std::string_view::npos;
    if (header_end != std::string_view::npos && !explicit_indent) {
      size_t line = header_end + 1;
      while (line < text_.size()) {
        size_t end = text_.find('\n', line);
        if (end == std::string_view::npos) end = text_.size();
        std::string_view content = text_.substr(line, end - line);
        size_t indent = content.find_first_not_of(' ');
        if (indent != std::string_view::npos &&
            content.find_first_not_of(" \t\r") != std::string_view::npos) {
          inner.fixed.reset();
          inner.line_offset = map_.line_offset + mark.line + 1;
          inner.column_offset = static_cast<int64_t>(indent);
          break;
        }
        line = end + 1;
      }
    }
  }

  auto inner_error = [&](const SourceLocation& where, std::string message) {
    outer.error(where, "data.mesh", std::move(message));
  };
  if (auto problem = check_yaml_structure(text, options_.max_depth)) {
    SourceLocation at = location_at(text, problem->offset, file_);
    YAML::Mark m;
    m.line = static_cast<int>(at.line) - 1;
    m.column = static_cast<int>(at.column) - 1;
    inner_error(inner.locate(m), "MeshConfig: " + problem->message);
    return false;
  }
  ParsedDocuments parsed = parse_documents(text);
  if (!parsed.ok) {
    inner_error(inner.locate(parsed.error_mark), "MeshConfig is not valid YAML: " + parsed.error);
    return false;
  }
  std::vector<YAML::Node>& documents = parsed.documents;
  documents.erase(std::remove_if(documents.begin(), documents.end(),
                                 [](const YAML::Node& n) { return n.IsNull(); }),
                  documents.end());
  if (documents.empty()) return true;
  if (documents.size() > 1) {
    inner_error(inner.locate(documents[1].Mark()), "data.mesh holds more than one YAML document");
    return false;
  }

  DecodeContext::Limits limits;
  limits.max_nodes = options_.max_nodes_per_document;
  DecodeContext ctx(into_.diagnostics, inner, limits);
  ctx.kind = outer.kind;
  ctx.namespace_ = outer.namespace_;
  ctx.name = outer.name;
  ctx.schema = "MeshConfig";
  ctx.field_prefix = "data.mesh.";
  SourceLocation root_at = ctx.locate(documents[0].Mark());
  if (!root_at.known()) root_at = value.where();
  try {
    decode_mesh_config(Field(ctx, documents[0], "", root_at), mesh);
  } catch (const DocumentAbandoned&) {
    return false;
  }
  return ctx.error_count() == 0;
}

bool DocumentLoader::load_istio_operator(const YAML::Node& root) {
  DecodeContext ctx = make_context("IstioOperator", "IstioOperator");
  std::tie(ctx.namespace_, ctx.name) = identity(root);
  const SourceLocation root_at = ctx.locate(root.Mark());

  InstallOptions install = into_.config.install;
  MeshConfig mesh = into_.config.mesh;
  bool mesh_set = false;
  try {
    Field doc(ctx, root, "", root_at);
    ObjectMeta unused;
    doc.read_object({
        {"apiVersion", ignore_field},
        {"kind", ignore_field},
        {"metadata", [&](Field& f) { decode_object_meta(f, unused); }},
        {"spec", [&](Field& f) { decode_istio_operator_spec(f, install, mesh, mesh_set); }},
        {"status", ignore_field},
    });
  } catch (const DocumentAbandoned&) {
    return false;
  }
  if (ctx.error_count() != 0) return false;
  install.file = file_;
  into_.config.install = std::move(install);
  if (mesh_set) {
    mesh.file = file_;
    mesh.line = root_at.line;
    into_.config.mesh = std::move(mesh);
  }
  return true;
}

bool DocumentLoader::load_bare(const YAML::Node& root) {
  bool helm = false;
  bool mesh_fields = false;
  bool only_networks = true;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      only_networks = false;
      continue;
    }
    const std::string& key = kv.first.Scalar();
    if (key == "global" || key == "values" || key == "meshConfig") helm = true;
    if (is_mesh_config_field(key)) mesh_fields = true;
    if (key != "networks") only_networks = false;
  }

  const SourceLocation root_at = map_.locate(root.Mark());
  if (helm) {
    DecodeContext ctx = make_context("", "Helm values");
    InstallOptions install = into_.config.install;
    MeshConfig mesh = into_.config.mesh;
    bool mesh_set = false;
    try {
      decode_helm_values(Field(ctx, root, "", root_at), install, mesh, mesh_set);
    } catch (const DocumentAbandoned&) {
      return false;
    }
    if (ctx.error_count() != 0) return false;
    install.file = file_;
    into_.config.install = std::move(install);
    if (mesh_set) {
      mesh.file = file_;
      mesh.line = root_at.line;
      into_.config.mesh = std::move(mesh);
    }
    return true;
  }
  if (mesh_fields) {
    DecodeContext ctx = make_context("", "MeshConfig");
    MeshConfig mesh = into_.config.mesh;
    try {
      decode_mesh_config(Field(ctx, root, "", root_at), mesh);
    } catch (const DocumentAbandoned&) {
      return false;
    }
    if (ctx.error_count() != 0) return false;
    mesh.file = file_;
    mesh.line = root_at.line;
    into_.config.mesh = std::move(mesh);
    return true;
  }
  // The `istio` ConfigMap's other key, mounted next to `mesh`; nothing in
  // it concerns egress.
  if (only_networks) return false;
  file_warning(
      root.Mark(),
      "document has no apiVersion or kind and is neither a MeshConfig nor Helm values; ignored");
  return false;
}

}  // namespace sluice::config::detail
