#include "core/config/host_match.h"

namespace sluice::config {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

bool host_is_wildcard(std::string_view host) { return !host.empty() && host.front() == '*'; }

bool host_matches(std::string_view a, std::string_view b) {
  const bool a_wild = host_is_wildcard(a);
  const bool b_wild = host_is_wildcard(b);
  if (a_wild && b_wild) {
    // The longer wildcard must end with the shorter one's suffix.
    std::string_view as = a.substr(1), bs = b.substr(1);
    return as.size() < bs.size() ? ends_with(bs, as) : ends_with(as, bs);
  }
  if (a_wild) return ends_with(b, a.substr(1));
  if (b_wild) return ends_with(a, b.substr(1));
  return a == b;
}

bool host_subset_of(std::string_view host, std::string_view of) {
  const bool h_wild = host_is_wildcard(host);
  const bool o_wild = host_is_wildcard(of);
  if (h_wild) {
    // A wildcard is only covered by an equal or wider wildcard.
    if (!o_wild || host.size() < of.size()) return false;
    return ends_with(host.substr(1), of.substr(1));
  }
  if (o_wild) return ends_with(host, of.substr(1));
  return host == of;
}

std::string qualify_host(std::string_view host, std::string_view ns) {
  if (host_is_wildcard(host) || host.find('.') != std::string_view::npos) return std::string(host);
  std::string out(host);
  out += '.';
  out += ns;
  out += '.';
  out += kKubernetesServiceDomain;
  return out;
}

bool split_kubernetes_fqdn(std::string_view host, std::string* name, std::string* ns) {
  // Istio's analyzers use ^(.+)\.(.+)\.svc\.cluster\.local$ with greedy groups:
  // the namespace is the last label before the suffix.
  std::string suffix = ".";
  suffix += kKubernetesServiceDomain;
  if (!ends_with(host, suffix)) return false;
  std::string_view head = host.substr(0, host.size() - suffix.size());
  size_t dot = head.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == head.size()) return false;
  if (name) *name = std::string(head.substr(0, dot));
  if (ns) *ns = std::string(head.substr(dot + 1));
  return true;
}

}  // namespace sluice::config
