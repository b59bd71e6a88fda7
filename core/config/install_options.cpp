// Install options: Helm values files, IstioOperator resources and
// istioctl's `--set key=value`. Only the interception settings and the
// outbound traffic policy matter to Sluice; the charts' other hundreds of
// keys are accepted silently.
#include <algorithm>

#include "core/config/install_list.h"
#include "core/config/loader.h"
#include "core/config/resource_decoders.h"

namespace sluice::config {

namespace detail {

namespace {

constexpr EnumName<OutboundTrafficPolicyMode> kOutboundModes[] = {
    {"ALLOW_ANY", OutboundTrafficPolicyMode::kAllowAny},
    {"REGISTRY_ONLY", OutboundTrafficPolicyMode::kRegistryOnly},
};

// A Helm list value: the chart's comma-separated string, or a YAML list.
void read_helm_list(Field& f, std::vector<std::string>& out) {
  if (f.null()) return;
  if (f.is_list()) {
    std::vector<std::string> items;
    if (f.read(items)) out = std::move(items);
    return;
  }
  std::string text;
  if (f.read(text)) out = split_install_list(text);
}

// Helm values files hold the whole chart's settings; only these concern
// egress, the rest is skipped without a word.
constexpr auto kLenient = UnknownFields::kIgnore;

void decode_proxy_values(const Field& proxy, InstallOptions& out) {
  proxy.read_object(
      {
          {"includeIPRanges", [&](Field& v) { read_helm_list(v, out.include_ip_ranges); }},
          {"excludeIPRanges", [&](Field& v) { read_helm_list(v, out.exclude_ip_ranges); }},
          {"includeOutboundPorts",
           [&](Field& v) { read_helm_list(v, out.include_outbound_ports); }},
          {"excludeOutboundPorts",
           [&](Field& v) { read_helm_list(v, out.exclude_outbound_ports); }},
      },
      kLenient);
}

void decode_global_values(const Field& global, InstallOptions& out) {
  auto mode = [&](Field& v) {
    OutboundTrafficPolicyMode value = OutboundTrafficPolicyMode::kAllowAny;
    if (v.read_enum(value, kOutboundModes)) out.outbound_traffic_policy = value;
  };
  global.read_object(
      {
          {"proxy", [&](Field& v) { decode_proxy_values(v, out); }},
          {"outboundTrafficPolicy",
           [&](Field& v) {
             v.read_object({{"mode", mode}}, kLenient);
           }},
          {"istioNamespace", [&](Field& v) { v.read(out.istio_namespace); }},
      },
      kLenient);
}

void decode_gateway_values(const Field& gateways, InstallOptions& out) {
  auto enabled = [&](Field& v) { v.read(out.egress_gateway_enabled); };
  gateways.read_object({{"istio-egressgateway",
                         [&](Field& v) {
                           v.read_object({{"enabled", enabled}}, kLenient);
                         }}},
                       kLenient);
}

}  // namespace

void decode_helm_values(const Field& root, InstallOptions& out, MeshConfig& mesh, bool& mesh_set) {
  root.read_object(
      {
          {"global", [&](Field& v) { decode_global_values(v, out); }},
          {"gateways", [&](Field& v) { decode_gateway_values(v, out); }},
          {"meshConfig",
           [&](Field& v) {
             decode_mesh_config(v, mesh);
             mesh_set = true;
           }},
          // `values:` wraps the same keys in IstioOperator-style files.
          {"values", [&](Field& v) { decode_helm_values(v, out, mesh, mesh_set); }},
      },
      kLenient);
}

void decode_istio_operator_spec(const Field& spec, InstallOptions& out, MeshConfig& mesh,
                                bool& mesh_set) {
  spec.read_object(
      {
          {"values", [&](Field& v) { decode_helm_values(v, out, mesh, mesh_set); }},
          {"meshConfig",
           [&](Field& v) {
             decode_mesh_config(v, mesh);
             mesh_set = true;
           }},
      },
      UnknownFields::kIgnore);
}

}  // namespace detail

// ---------------------------------------------------------------------------
// --set

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The shell normally eats the quotes; when the value arrives through a
// config file or a copy-paste (the walkthrough's own command lost its
// closing quote) they are still there, possibly unbalanced.
std::string_view unquote(std::string_view s) {
  if (!s.empty() && (s.front() == '"' || s.front() == '\'')) s.remove_prefix(1);
  if (!s.empty() && (s.back() == '"' || s.back() == '\'')) s.remove_suffix(1);
  return s;
}

std::string_view strip_prefix(std::string_view s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) == prefix) s.remove_prefix(prefix.size());
  return s;
}

std::optional<bool> parse_bool(std::string_view s) {
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "true") return true;
  if (lower == "false") return false;
  return std::nullopt;
}

std::optional<OutboundTrafficPolicyMode> parse_mode(std::string_view s) {
  if (s == "ALLOW_ANY") return OutboundTrafficPolicyMode::kAllowAny;
  if (s == "REGISTRY_ONLY") return OutboundTrafficPolicyMode::kRegistryOnly;
  return std::nullopt;
}

// istioctl keys Sluice has no use for but that are valid and common in the
// commands people paste; they pass without a warning.
constexpr std::string_view kIgnoredKeys[] = {
    "profile",   "hub",        "tag",        "revision",
    "namespace", "global.hub", "global.tag", "gateways.istio-ingressgateway.enabled",
};

}  // namespace

void apply_set_flag(const std::string& assignment, LoadResult& into, const std::string& origin) {
  const SourceLocation where{origin, 0, 0};
  auto report = [&](Severity severity, const std::string& key, std::string message) {
    Diagnostic d;
    d.severity = severity;
    d.location = where;
    d.field = key;
    d.message = std::move(message);
    into.diagnostics.add(std::move(d));
  };
  try {
    size_t eq = assignment.find('=');
    if (eq == std::string::npos) {
      report(Severity::kError, "",
             "expected key=value, got \"" + assignment +
                 "\" (e.g. values.global.proxy.includeIPRanges=10.0.0.0/8)");
      return;
    }
    const std::string key(trim(std::string_view(assignment).substr(0, eq)));
    const std::string_view value = unquote(trim(std::string_view(assignment).substr(eq + 1)));

    // istioctl takes IstioOperator spec paths ("values.global...",
    // "meshConfig..."); Istio 1.4's manifest apply also took bare Helm paths.
    std::string_view path = strip_prefix(key, "spec.");
    const bool mesh_key = path.substr(0, 11) == "meshConfig.";
    if (mesh_key)
      path.remove_prefix(11);
    else
      path = strip_prefix(path, "values.");

    InstallOptions& install = into.config.install;
    MeshConfig& mesh = into.config.mesh;
    auto bad_value = [&](const std::string& allowed) {
      report(Severity::kError, key,
             "invalid value \"" + std::string(value) + "\" for " + key +
                 "; allowed values: " + allowed);
    };

    if (mesh_key) {
      if (path == "outboundTrafficPolicy.mode") {
        if (auto mode = parse_mode(value))
          mesh.outbound_traffic_policy = *mode;
        else
          bad_value("ALLOW_ANY, REGISTRY_ONLY");
      } else if (path == "accessLogFile") {
        mesh.access_log_file = value;
      } else if (path == "accessLogFormat") {
        mesh.access_log_format = value;
      } else if (path == "accessLogEncoding") {
        if (value == "TEXT" || value == "JSON")
          mesh.access_log_encoding = value;
        else
          bad_value("TEXT, JSON");
      } else if (path == "trustDomain") {
        mesh.trust_domain = value;
      } else if (path == "rootNamespace") {
        mesh.root_namespace = value;
      } else if (path == "enableAutoMtls") {
        if (auto b = parse_bool(value))
          mesh.enable_auto_mtls = *b;
        else
          bad_value("true, false");
      } else {
        report(Severity::kWarning, key, "unknown install option \"" + key + "\", ignored");
      }
      return;
    }

    if (path == "global.proxy.includeIPRanges") {
      install.include_ip_ranges = split_install_list(value);
    } else if (path == "global.proxy.excludeIPRanges") {
      install.exclude_ip_ranges = split_install_list(value);
    } else if (path == "global.proxy.includeOutboundPorts") {
      install.include_outbound_ports = split_install_list(value);
    } else if (path == "global.proxy.excludeOutboundPorts") {
      install.exclude_outbound_ports = split_install_list(value);
    } else if (path == "global.outboundTrafficPolicy.mode") {
      if (auto mode = parse_mode(value))
        install.outbound_traffic_policy = *mode;
      else
        bad_value("ALLOW_ANY, REGISTRY_ONLY");
    } else if (path == "global.istioNamespace") {
      install.istio_namespace = value;
    } else if (path == "gateways.istio-egressgateway.enabled") {
      if (auto b = parse_bool(value))
        install.egress_gateway_enabled = *b;
      else
        bad_value("true, false");
    } else if (std::find(std::begin(kIgnoredKeys), std::end(kIgnoredKeys), path) ==
               std::end(kIgnoredKeys)) {
      report(Severity::kWarning, key, "unknown install option \"" + key + "\", ignored");
    }
  } catch (const std::exception& e) {
    // Only allocation failure can get here; the API promises not to throw.
    report(Severity::kError, "", std::string("cannot apply option: ") + e.what());
  }
}

}  // namespace sluice::config
