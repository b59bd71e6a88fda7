// mesh.istio.io/v1alpha1 MeshConfig: what the `istio` ConfigMap's `mesh` key
// holds. Only the fields that shape egress are kept; the rest of Istio's
// MeshConfig is accepted silently so that a real cluster's ConfigMap loads
// without a wall of warnings.
#include <algorithm>

#include "core/config/resource_decoders.h"

namespace sluice::config::detail {

namespace {

constexpr EnumName<OutboundTrafficPolicyMode> kOutboundModes[] = {
    {"ALLOW_ANY", OutboundTrafficPolicyMode::kAllowAny},
    {"REGISTRY_ONLY", OutboundTrafficPolicyMode::kRegistryOnly},
};

// MeshConfig fields that exist in Istio (current and 1.x releases) but do
// not concern Sluice. Sorted, for binary search.
constexpr std::string_view kOtherMeshFields[] = {
    "authPolicy",
    "ca",
    "caCertificates",
    "certificates",
    "configSources",
    "defaultConfig",
    "defaultDestinationRuleExportTo",
    "defaultHttpRetryPolicy",
    "defaultProviders",
    "defaultServiceExportTo",
    "defaultVirtualServiceExportTo",
    "disableEnvoyListenerLog",
    "disableMixerHttpReports",
    "disablePolicyChecks",
    "discoverySelectors",
    "dnsRefreshRate",
    "enableClientSidePolicyCheck",
    "enableEnvoyAccessLogService",
    "enablePrometheusMerge",
    "enableSdsTokenMount",
    "enableTracing",
    "extensionProviders",
    "h2UpgradePolicy",
    "inboundClusterStatName",
    "inboundTrafficPolicy",
    "ingressClass",
    "ingressControllerMode",
    "ingressSelector",
    "ingressService",
    "localityLbSetting",
    "meshMTLS",
    "mixerAddress",
    "mixerCheckServer",
    "mixerReportServer",
    "outboundClusterStatName",
    "pathNormalization",
    "policyCheckFailOpen",
    "protocolDetectionTimeout",
    "proxyHttpPort",
    "proxyInboundListenPort",
    "proxyListenPort",
    "rdsRefreshDelay",
    "reportBatchMaxEntries",
    "reportBatchMaxTime",
    "sdsRefreshDelay",
    "sdsUdsPath",
    "serviceScopeConfigs",
    "serviceSettings",
    "sidecarToTelemetrySessionAffinity",
    "thriftConfig",
    "tlsDefaults",
    "trustDomainAliases",
    "verifyCertificateAtClient",
};

constexpr std::string_view kMeshFields[] = {
    "accessLogEncoding", "accessLogFile",         "accessLogFormat", "connectTimeout",
    "enableAutoMtls",    "outboundTrafficPolicy", "rootNamespace",   "tcpKeepalive",
    "trustDomain",
};

bool is_other_mesh_field(std::string_view key) {
  return std::binary_search(std::begin(kOtherMeshFields), std::end(kOtherMeshFields), key);
}

}  // namespace

bool is_mesh_config_field(std::string_view key) {
  return std::find(std::begin(kMeshFields), std::end(kMeshFields), key) != std::end(kMeshFields) ||
         is_other_mesh_field(key);
}

void decode_mesh_config(const Field& root, MeshConfig& mesh) {
  root.read_object(
      {
          {"outboundTrafficPolicy",
           [&](Field& v) {
             v.read_object({
                 {"mode",
                  [&](Field& m) { m.read_enum(mesh.outbound_traffic_policy, kOutboundModes); }},
                 {"egressProxy", warn_unsupported},
             });
           }},
          {"trustDomain", [&](Field& v) { v.read(mesh.trust_domain); }},
          {"accessLogFile", [&](Field& v) { v.read(mesh.access_log_file); }},
          {"accessLogFormat", [&](Field& v) { v.read(mesh.access_log_format); }},
          {"accessLogEncoding",
           [&](Field& v) {
             v.read_enum_string(mesh.access_log_encoding, {"TEXT", "JSON"});
           }},
          {"rootNamespace", [&](Field& v) { v.read(mesh.root_namespace); }},
          {"enableAutoMtls", [&](Field& v) { v.read(mesh.enable_auto_mtls); }},
          {"connectTimeout", [&](Field& v) { v.read_duration(mesh.connect_timeout); }},
          {"tcpKeepalive", [&](Field& v) { read_optional(v, mesh.tcp_keepalive, decode_tcp_keepalive); }},
      },
      UnknownFields::kWarn, is_other_mesh_field);
}

}  // namespace sluice::config::detail
