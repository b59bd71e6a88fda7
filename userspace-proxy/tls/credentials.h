// Certificates and keys from PEM files: a workload's or a server's own chain
// and key, and the CA certificates it trusts. Errors name the file and say
// what is wrong with it ("<file>: <reason>").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "userspace-proxy/tls/openssl_ptr.h"

namespace sluice::tls {

// Where Istio 1.4 mounted a workload's mesh identity (the Citadel secret
// istio.<service-account>), and the file names inside that directory.
inline constexpr std::string_view kDefaultMeshIdentityDir = "/etc/certs";
inline constexpr std::string_view kMeshCertChainFile = "cert-chain.pem";
inline constexpr std::string_view kMeshPrivateKeyFile = "key.pem";
inline constexpr std::string_view kMeshRootCertFile = "root-cert.pem";

// Paths of one set of credentials. Any may be empty where the use allows
// (a SIMPLE client has no chain or key; an empty CA means system roots).
struct CertificateFiles {
  std::string cert_chain;       // PEM: leaf first, then intermediates
  std::string private_key;      // PEM: PKCS#8, SEC1 or PKCS#1; unencrypted
  std::string ca_certificates;  // PEM bundle of trusted roots
  std::string ca_crl;           // PEM certificate revocation lists (caCrl); empty: none

  // The non-empty paths, e.g. for config::file_fingerprint() to notice a
  // rotation (the caller then builds a new context).
  std::vector<std::string> paths() const;
};

// DIR/{cert-chain.pem,key.pem,root-cert.pem}; DIR empty means the default.
CertificateFiles mesh_identity_files(std::string_view dir = kDefaultMeshIdentityDir);

struct CertificateChain {
  X509Ptr leaf;
  std::vector<X509Ptr> intermediates;
};

// Each returns true, or false with *error = "<path>: <reason>".
//
// All certificates of a PEM file; the first is the leaf. Non-certificate
// PEM blocks (a key bundled in the same file) are skipped; a file with no
// certificate at all is an error.
bool load_certificate_chain(const std::string& path, CertificateChain* out, std::string* error);
// The first private key in the file. Encrypted keys are refused (there is
// nobody to type a passphrase; OpenSSL would otherwise prompt on the tty).
bool load_private_key(const std::string& path, EvpPkeyPtr* out, std::string* error);
// Every certificate in a CA bundle (at least one).
bool load_ca_certificates(const std::string& path, std::vector<X509Ptr>* out, std::string* error);
// Every "-----BEGIN X509 CRL-----" in the file (at least one).
bool load_crls(const std::string& path, std::vector<X509CrlPtr>* out, std::string* error);

// Checks that `key` is the private half of `leaf`'s public key.
bool key_matches_certificate(X509* leaf, EVP_PKEY* key);

}  // namespace sluice::tls
