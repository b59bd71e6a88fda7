// Matching a peer's certificate names against the names a config expects
// (DestinationRule / Gateway `subjectAltNames`), as Envoy's legacy
// match_subject_alt_names does: pure functions, no OpenSSL.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "userspace-proxy/tls/peer_identity.h"

namespace sluice::tls {

// A DNS SAN from a certificate against a host name, case-insensitively, one
// trailing dot ignored on either. A SAN "*.example.com" matches exactly one
// extra leftmost label ("a.example.com", not "example.com" nor
// "a.b.example.com"); a '*' anywhere else, or a bare "*" / "*.com" style
// wildcard over a single label, matches only itself literally.
bool dns_san_matches(std::string_view san, std::string_view host);

// True when one of `expected` names the peer: it equals one of the peer's
// URI SANs exactly (SPIFFE ids are compared byte for byte) or matches one of
// its DNS SANs by dns_san_matches. An empty `expected` matches any peer.
bool san_matches(const PeerIdentity& peer, std::span<const std::string> expected);

}  // namespace sluice::tls
