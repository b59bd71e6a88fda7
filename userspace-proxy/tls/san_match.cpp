#include "userspace-proxy/tls/san_match.h"

#include <algorithm>

namespace sluice::tls {

namespace {

std::string_view strip_trailing_dot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

bool dns_san_matches(std::string_view san, std::string_view host) {
  san = strip_trailing_dot(san);
  host = strip_trailing_dot(host);
  if (san.empty() || host.empty()) return false;
  if (iequals(san, host)) return true;
  if (san.size() < 2 || san[0] != '*' || san[1] != '.') return false;
  const std::string_view suffix = san.substr(1);  // ".example.com"
  // The wildcard must stand for a label under a name of at least two labels:
  // "*.com" would otherwise match every .com host.
  if (suffix.find('.', 1) == std::string_view::npos) return false;
  if (suffix.find('*') != std::string_view::npos) return false;
  if (host.size() <= suffix.size()) return false;
  const std::string_view label = host.substr(0, host.size() - suffix.size());
  // The label the wildcard stands for must be a host name label, so that
  // neither "a.b" nor "spiffe://x" can stand in for it.
  for (char c : label) {
    const bool ldh = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ldh) return false;
  }
  return iequals(host.substr(label.size()), suffix);
}

bool san_matches(const PeerIdentity& peer, std::span<const std::string> expected) {
  if (expected.empty()) return true;
  for (const std::string& want : expected) {
    if (std::find(peer.uri_sans.begin(), peer.uri_sans.end(), want) != peer.uri_sans.end()) return true;
    for (const std::string& dns : peer.dns_sans) {
      if (dns_san_matches(dns, want)) return true;
    }
  }
  return false;
}

}  // namespace sluice::tls
