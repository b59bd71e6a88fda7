// Host name matching with Istio's rules (istio/istio pkg/config/host): a host
// is either exact ("edition.cnn.com") or wildcarded in its first label only
// ("*.cnn.com", "*" = everything). Short Kubernetes names are qualified with
// the namespace of the resource that wrote them, as Istio's
// ResolveShortnameToFQDN does ("reviews" in "default" ->
// "reviews.default.svc.cluster.local").
#pragma once

#include <string>
#include <string_view>

namespace sluice::config {

inline constexpr std::string_view kKubernetesServiceDomain = "svc.cluster.local";

// "*", "*.example.com": the first character is '*'.
bool host_is_wildcard(std::string_view host);

// True when the two names overlap: equal, or one wildcard covers the other
// ("*.com" matches "foo.com" and "*.foo.com"; "*.foo.com" does not match
// "foo.com"). Symmetric.
bool host_matches(std::string_view a, std::string_view b);

// True when every name `host` can stand for is also covered by `of`: the
// one-directional form of host_matches ("foo.com" is a subset of "*.com",
// "*.com" is not a subset of "foo.com").
bool host_subset_of(std::string_view host, std::string_view of);

// Qualifies a short name (no dot, not a wildcard) as a Kubernetes service in
// `ns`; anything else is returned unchanged.
std::string qualify_host(std::string_view host, std::string_view ns);

// "reviews.default.svc.cluster.local" -> {"reviews", "default"}; false for a
// host that is not a Kubernetes service FQDN.
bool split_kubernetes_fqdn(std::string_view host, std::string* name, std::string* ns);

}  // namespace sluice::config
