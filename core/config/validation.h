// Per-resource validation with Istio's own messages
// (istio/istio pkg/config/validation). Each finding is an error Diagnostic
// located at the offending node.
#pragma once

#include "core/config/diagnostic.h"
#include "core/config/model.h"

namespace sluice::config {

void validate(const ServiceEntry& se, Diagnostics& out);
void validate(const VirtualService& vs, Diagnostics& out);
void validate(const DestinationRule& dr, Diagnostics& out);
void validate(const Gateway& gw, Diagnostics& out);
void validate(const Sidecar& sc, Diagnostics& out);
void validate(const MeshConfig& mesh, Diagnostics& out);
void validate(const InstallOptions& install, Diagnostics& out);

// Everything in the set, in load order.
Diagnostics validate(const ConfigSet& config);

}  // namespace sluice::config
