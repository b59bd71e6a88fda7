// networking.istio.io ServiceEntry spec.
#include "core/config/resource_decoders.h"

namespace sluice::config::detail {

namespace {

constexpr EnumName<ServiceLocation> kLocations[] = {
    {"MESH_EXTERNAL", ServiceLocation::kMeshExternal},
    {"MESH_INTERNAL", ServiceLocation::kMeshInternal},
};

constexpr EnumName<Resolution> kResolutions[] = {
    {"NONE", Resolution::kNone},
    {"STATIC", Resolution::kStatic},
    {"DNS", Resolution::kDns},
    {"DNS_ROUND_ROBIN", Resolution::kDnsRoundRobin},
};

void decode_port(const Field& f, ServicePort& port) {
  f.read_object({
      {"number", [&](Field& v) { v.read(port.number); }},
      {"protocol", [&](Field& v) { v.read_upper(port.protocol); }},
      {"name", [&](Field& v) { v.read(port.name); }},
      {"targetPort", [&](Field& v) { v.read(port.target_port); }},
  });
}

void decode_endpoint(const Field& f, WorkloadEntry& ep) {
  f.read_object({
      {"address", [&](Field& v) { v.read(ep.address); }},
      {"ports",
       [&](Field& v) {
         v.read_map([&](const std::string& name, Field& port) {
           uint32_t number = 0;
           if (port.read(number)) ep.ports[name] = number;
         });
       }},
      {"labels", [&](Field& v) { v.read(ep.labels); }},
      {"network", [&](Field& v) { v.read(ep.network); }},
      {"locality", [&](Field& v) { v.read(ep.locality); }},
      {"weight", [&](Field& v) { v.read(ep.weight); }},
      {"serviceAccount", [&](Field& v) { v.read(ep.service_account); }},
  });
}

}  // namespace

void decode_service_entry_spec(const Field& spec, ServiceEntry& se) {
  spec.read_object({
      {"hosts", [&](Field& v) { v.read(se.hosts); }},
      {"addresses", [&](Field& v) { v.read(se.addresses); }},
      {"ports",
       [&](Field& v) {
         v.read_list([&](Field& item) { decode_port(item, se.ports.emplace_back()); });
       }},
      {"location", [&](Field& v) { v.read_enum(se.location, kLocations); }},
      {"resolution", [&](Field& v) { v.read_enum(se.resolution, kResolutions); }},
      {"endpoints",
       [&](Field& v) {
         v.read_list([&](Field& item) { decode_endpoint(item, se.endpoints.emplace_back()); });
       }},
      {"workloadSelector", [&](Field& v) { decode_workload_selector(v, se.workload_selector); }},
      {"exportTo", [&](Field& v) { v.read(se.export_to); }},
      {"subjectAltNames", [&](Field& v) { v.read(se.subject_alt_names); }},
  });
}

}  // namespace sluice::config::detail
