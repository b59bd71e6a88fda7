// Certificate expiry for `sluicectl status`: the mesh identity the proxy
// loads from --certs (cert-chain.pem: the workload certificate first, then
// intermediates; root-cert.pem: the mesh root), read with OpenSSL. Reports
// subject, SPIFFE URI SANs, notAfter and the time left; never throws.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace sluice::ctl {

struct CertificateInfo {
  std::string file;
  std::string error;  // non-empty: missing or unreadable; the rest is unset
  std::string subject;
  std::vector<std::string> uri_sans;  // spiffe://cluster.local/ns/.../sa/...
  std::string not_after;              // "2026-01-31T12:00:00Z"
  int64_t seconds_left = 0;           // negative once expired
  bool expired() const { return error.empty() && seconds_left <= 0; }
  // Whole days left, rounded down (-1 on the day after expiry).
  int64_t days_left() const;
};

// The first certificate in a PEM file, as of `now`.
CertificateInfo read_certificate(const std::string& path, std::time_t now);

struct CertReport {
  std::string dir;
  std::string error;  // non-empty: the directory is missing or unreadable
  std::vector<CertificateInfo> certificates;  // cert-chain.pem, root-cert.pem
  bool key_present = false;                   // key.pem exists (it is never read)
};

CertReport inspect_certs(const std::string& dir, std::time_t now);

}  // namespace sluice::ctl
