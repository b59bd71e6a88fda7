// Decoders for the pieces several Istio resources share.
#include "core/config/resource_decoders.h"

namespace sluice::config::detail {

namespace {
// Kubernetes bookkeeping that `kubectl get -o yaml` prints and that does not
// change what a resource means.
constexpr auto ignore = ignore_field;
}  // namespace

void warn_unsupported_field(Field& f) {
  const std::string& path = f.path();
  size_t dot = path.find_last_of('.');
  std::string name = dot == std::string::npos ? path : path.substr(dot + 1);
  std::string in = f.context().schema;
  if (dot != std::string::npos) in += " " + path.substr(0, dot);
  f.warning("field \"" + name + "\" in " + in + " is not supported by Sluice and is ignored");
}

void decode_object_meta(const Field& metadata, ObjectMeta& meta) {
  metadata.read_object({
      {"name", [&](Field& f) { f.read(meta.name); }},
      {"namespace", [&](Field& f) { f.read(meta.namespace_); }},
      {"labels", [&](Field& f) { f.read(meta.labels); }},
      {"annotations", [&](Field& f) { f.read(meta.annotations); }},
      {"uid", ignore},
      {"resourceVersion", ignore},
      {"generation", ignore},
      {"creationTimestamp", ignore},
      {"deletionTimestamp", ignore},
      {"deletionGracePeriodSeconds", ignore},
      {"selfLink", ignore},
      {"managedFields", ignore},
      {"finalizers", ignore},
      {"ownerReferences", ignore},
      {"generateName", ignore},
      {"clusterName", ignore},
  });
}

void decode_string_match(const Field& f, StringMatch& out) {
  // A protobuf oneof: exactly one of exact/prefix/regex. An empty mapping
  // is how Istio spells "present with any value"; prefix "" matches that.
  out = StringMatch{StringMatch::Kind::kPrefix, ""};
  int set = 0;
  auto one_of = [&](StringMatch::Kind kind) {
    return [&, kind](Field& v) {
      if (++set > 1) {
        v.error("only one of exact, prefix or regex may be set");
        return;
      }
      out.kind = kind;
      v.read(out.value);
    };
  };
  auto exact = one_of(StringMatch::Kind::kExact);
  auto prefix = one_of(StringMatch::Kind::kPrefix);
  auto regex = one_of(StringMatch::Kind::kRegex);
  f.read_object({{"exact", exact}, {"prefix", prefix}, {"regex", regex}});
}

void decode_port_selector(const Field& f, PortSelector& out) {
  f.read_object({{"number", [&](Field& v) { v.read(out.number); }}});
}

void decode_destination(const Field& f, Destination& out) {
  f.read_object({
      {"host", [&](Field& v) { v.read(out.host); }},
      {"subset", [&](Field& v) { v.read(out.subset); }},
      {"port", [&](Field& v) { read_optional(v, out.port, decode_port_selector); }},
  });
}

void decode_percent(const Field& f, Percent& out) {
  f.read_object({{"value", [&](Field& v) { v.read(out.value); }}});
}

void decode_workload_selector(const Field& f, std::optional<Labels>& out) {
  if (f.null()) return;
  Labels& labels = out.emplace();
  f.read_object({{"labels", [&](Field& v) { v.read(labels); }}});
}

}  // namespace sluice::config::detail
