// Cross-resource analysis in the manner of `istioctl analyze`: findings carry
// Istio's IST codes and print as
//   Error [IST0101] (VirtualService default/foo configs/x.yaml:12) Referenced gateway not found: "gw"
#pragma once

#include "core/config/diagnostic.h"
#include "core/config/model.h"

namespace sluice::config {

Diagnostics analyze(const ConfigSet& config);

}  // namespace sluice::config
