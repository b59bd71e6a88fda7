// libFuzzer target for the configuration loader: arbitrary bytes as a YAML
// stream (load_text) and as an istioctl `--set` assignment (apply_set_flag).
//
// Beyond "no crash, no leak, no hang" (ASan and libFuzzer check those) it
// checks what callers rely on: nothing escapes as an exception, every
// diagnostic names its file, every loaded resource remembers where it came
// from, and loading is deterministic.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/config/loader.h"

namespace {

using namespace sluice::config;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "oracle violated: %s\n", what);
    std::abort();
  }
}

std::string transcript(const LoadResult& r) {
  std::string out;
  for (const Diagnostic& d : r.diagnostics.items()) out += d.format() + "\n";
  out += std::to_string(r.config.resource_count()) + " " +
         to_string(r.config.mesh.outbound_traffic_policy);
  for (const std::string& range : r.config.install.include_ip_ranges) out += " " + range;
  return out;
}

template <typename Resource>
void check_resources(const std::vector<Resource>& resources) {
  for (const Resource& res : resources) {
    check(res.meta.file == "fuzz.yaml", "resource without its file");
    check(!res.meta.name.empty(), "resource loaded without a name");
    check(!res.meta.namespace_.empty(), "resource loaded without a namespace");
    check(res.meta.location("").known(), "resource without a location");
  }
}

LoadResult run(std::string_view text) {
  LoadOptions options;
  // Same checks as the shipped default, on a budget that keeps alias bombs
  // from eating the fuzzer's time.
  options.max_nodes_per_document = 20'000;
  LoadResult r;
  load_text(text, "fuzz.yaml", r, options);
  apply_set_flag(std::string(text), r);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  LoadResult first;
  try {
    first = run(text);
  } catch (...) {
    check(false, "exception escaped the loader API");
  }
  for (const Diagnostic& d : first.diagnostics.items()) {
    check(!d.location.file.empty(), "diagnostic without a file");
    check(!d.message.empty(), "diagnostic without a message");
  }
  check_resources(first.config.service_entries);
  check_resources(first.config.virtual_services);
  check_resources(first.config.destination_rules);
  check_resources(first.config.gateways);
  check(transcript(run(text)) == transcript(first), "loading is not deterministic");
  return 0;
}
