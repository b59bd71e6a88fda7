#include "userspace-proxy/proxy/proxy_counters.h"

namespace sluice::proxy {

std::string ProxyCounters::summary() const {
  auto v = [](const Counter& c) { return std::to_string(c.load(std::memory_order_relaxed)); };
  std::string out = "accepted=" + v(accepted) + " no_original_dst=" + v(no_original_dst) +
                    " http_requests=" + v(http_requests) + " upstream_changed=" + v(upstream_changed) +
                     " upstream_queued=" + v(upstream_queued) +
                    " upstream_overflow=" + v(upstream_overflow) + " retry_overflow=" + v(retry_overflow) + " retries=" + v(retries) + " faults_delayed=" + v(faults_delayed) +
                    " faults_aborted=" + v(faults_aborted) + " mirrored=" + v(mirrored) +
                    " mirror_skipped=" + v(mirror_skipped) + " mirror_cut=" + v(mirror_cut) +
                    " dns_failures=" + v(dns_failures) + " protocol_errors=" + v(protocol_errors) +
                    " tls_handshakes=" + v(tls_handshakes) + " tls_handshake_failures=" + v(tls_handshake_failures) +
                    " tls_resumed=" + v(tls_resumed);
  static constexpr policy::Action kActions[] = {policy::Action::kRoute, policy::Action::kPassthrough,
                                                policy::Action::kLocalReply502, policy::Action::kBlackhole};
  for (policy::Action a : kActions) out += std::string(" ") + policy::to_string(a) + "=" + v(actions[static_cast<size_t>(a)]);
  for (size_t i = 1; i < close_reasons.size(); ++i) {
    uint64_t n = close_reasons[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    out += " close." + std::string(engine::close_reason_name(static_cast<engine::CloseReason>(i))) + "=" +
           std::to_string(n);
  }
  return out;
}

}  // namespace sluice::proxy
