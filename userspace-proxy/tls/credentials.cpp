#include "userspace-proxy/tls/credentials.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "userspace-proxy/tls/openssl_error.h"

namespace sluice::tls {

namespace {

// Credential files are small; anything beyond this is not a PEM bundle we
// should be parsing (and a mistake such as pointing at a log file).
constexpr size_t kMaxPemFileBytes = 4 * 1024 * 1024;

// Reads the whole file so that a missing or unreadable file gets the errno
// text rather than OpenSSL's generic "system lib" entries.
bool read_file(const std::string& path, std::string* data, std::string* error) {
  if (path.empty()) {
    *error = "(empty path): no file configured";
    return false;
  }
  FILE* f = std::fopen(path.c_str(), "rbe");
  if (f == nullptr) {
    *error = path + ": " + std::strerror(errno);
    return false;
  }
  data->clear();
  char buf[16384];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    data->append(buf, n);
    if (data->size() > kMaxPemFileBytes) {
      std::fclose(f);
      *error = path + ": larger than " + std::to_string(kMaxPemFileBytes) + " bytes, not a PEM credential file";
      return false;
    }
  }
  const bool failed = std::ferror(f) != 0;
  const int saved = errno;
  std::fclose(f);
  if (failed) {
    *error = path + ": " + std::strerror(saved);
    return false;
  }
  return true;
}

BioPtr memory_bio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Refuses to decrypt: a proxy has no one to ask for a passphrase.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

std::string reason_or(const std::string& fallback) {
  std::string text = openssl_error_text();
  return text.empty() ? fallback : fallback + " (" + text + ")";
}

// Calls `take(name, der, len)` for each PEM block of `data` ("CERTIFICATE",
// "X509 CRL", keys, ...), in order; a false from it stops with its *error.
// PEM_read_bio stops at the end of data with PEM_R_NO_START_LINE, which is
// how a clean end is recognized.
template <typename Take>
bool for_each_pem(const std::string& path, const std::string& data, std::string* error, Take take) {
  BioPtr bio = memory_bio(data);
  if (!bio) {
    *error = path + ": " + reason_or("out of memory");
    return false;
  }
  clear_openssl_errors();
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &der, &len) != 1) {
      const unsigned long err = ERR_peek_last_error();
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        clear_openssl_errors();
        return true;
      }
      *error = path + ": " + reason_or("malformed PEM");
      return false;
    }
    const bool ok = take(std::string_view(name), static_cast<const unsigned char*>(der), len);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    if (!ok) return false;
  }
}

// Reads every certificate of a PEM text; other PEM blocks in between (keys,
// parameters) are skipped.
bool read_certificates(const std::string& path, const std::string& data, std::vector<X509Ptr>* out,
                       std::string* error) {
  out->clear();
  const bool ok = for_each_pem(path, data, error, [&](std::string_view name, const unsigned char* der, long len) {
    const bool trusted = name == PEM_STRING_X509_TRUSTED;
    if (name != PEM_STRING_X509 && name != PEM_STRING_X509_OLD && !trusted) return true;
    const unsigned char* p = der;
    X509* cert = trusted ? d2i_X509_AUX(nullptr, &p, len) : d2i_X509(nullptr, &p, len);
    if (cert == nullptr) {
      *error = path + ": " + reason_or("certificate " + std::to_string(out->size() + 1) + " cannot be parsed");
      return false;
    }
    out->emplace_back(cert);
    return true;
  });
  if (!ok) return false;
  if (out->empty()) {
    *error = path + ": no PEM certificate (\"-----BEGIN CERTIFICATE-----\") found";
    return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> CertificateFiles::paths() const {
  std::vector<std::string> p;
  for (const std::string* s : {&cert_chain, &private_key, &ca_certificates, &ca_crl}) {
    if (!s->empty()) p.push_back(*s);
  }
  return p;
}

CertificateFiles mesh_identity_files(std::string_view dir) {
  std::string base(dir.empty() ? kDefaultMeshIdentityDir : dir);
  if (base.back() != '/') base += '/';
  CertificateFiles f;
  f.cert_chain = base + std::string(kMeshCertChainFile);
  f.private_key = base + std::string(kMeshPrivateKeyFile);
  f.ca_certificates = base + std::string(kMeshRootCertFile);
  return f;
}

bool load_certificate_chain(const std::string& path, CertificateChain* out, std::string* error) {
  std::string data;
  if (!read_file(path, &data, error)) return false;
  std::vector<X509Ptr> certs;
  if (!read_certificates(path, data, &certs, error)) return false;
  out->leaf = std::move(certs.front());
  out->intermediates.clear();
  for (size_t i = 1; i < certs.size(); ++i) out->intermediates.push_back(std::move(certs[i]));
  return true;
}

bool load_private_key(const std::string& path, EvpPkeyPtr* out, std::string* error) {
  std::string data;
  if (!read_file(path, &data, error)) return false;
  if (data.find("ENCRYPTED") != std::string::npos) {
    *error = path + ": the private key is encrypted; provide an unencrypted key (file mode 0600)";
    return false;
  }
  BioPtr bio = memory_bio(data);
  clear_openssl_errors();
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr;
  if (key == nullptr) {
    *error = path + ": " + reason_or("no usable PEM private key found");
    return false;
  }
  out->reset(key);
  return true;
}

bool load_ca_certificates(const std::string& path, std::vector<X509Ptr>* out, std::string* error) {
  std::string data;
  if (!read_file(path, &data, error)) return false;
  return read_certificates(path, data, out, error);
}

bool load_crls(const std::string& path, std::vector<X509CrlPtr>* out, std::string* error) {
  std::string data;
  if (!read_file(path, &data, error)) return false;
  out->clear();
  const bool ok = for_each_pem(path, data, error, [&](std::string_view name, const unsigned char* der, long len) {
    if (name != PEM_STRING_X509_CRL) return true;
    const unsigned char* p = der;
    X509_CRL* crl = d2i_X509_CRL(nullptr, &p, len);
    if (crl == nullptr) {
      *error = path + ": " + reason_or("CRL " + std::to_string(out->size() + 1) + " cannot be parsed");
      return false;
    }
    out->emplace_back(crl);
    return true;
  });
  if (!ok) return false;
  if (out->empty()) {
    *error = path + ": no PEM CRL (\"-----BEGIN X509 CRL-----\") found";
    return false;
  }
  return true;
}

bool key_matches_certificate(X509* leaf, EVP_PKEY* key) {
  EVP_PKEY* pub = X509_get0_pubkey(leaf);
  return pub != nullptr && EVP_PKEY_eq(pub, key) == 1;
}

}  // namespace sluice::tls
