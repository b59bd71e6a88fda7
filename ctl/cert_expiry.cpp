#include "ctl/cert_expiry.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace sluice::ctl {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct Asn1TimeFree {
  void operator()(ASN1_TIME* t) const { ASN1_TIME_free(t); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no certificate found";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

}  // namespace

int64_t CertificateInfo::days_left() const {
  constexpr int64_t kDay = 86400;
  return seconds_left >= 0 ? seconds_left / kDay : -((-seconds_left + kDay - 1) / kDay);
}

CertificateInfo read_certificate(const std::string& path, std::time_t now) {
  CertificateInfo info;
  info.file = path;
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    const int err = errno;
    ERR_clear_error();
    info.error = "cannot open: " + std::string(std::strerror(err));
    return info;
  }
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    info.error = "not a PEM certificate (" + openssl_error() + ")";
    return info;
  }
  if (char* s = X509_NAME_oneline(X509_get_subject_name(cert.get()), nullptr, 0)) {
    info.subject = s;
    OPENSSL_free(s);
  }
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans.get(), i);
      if (n->type != GEN_URI) continue;
      const ASN1_IA5STRING* uri = n->d.uniformResourceIdentifier;
      info.uri_sans.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                                 static_cast<size_t>(ASN1_STRING_length(uri)));
    }
  }
  const ASN1_TIME* not_after = X509_get0_notAfter(cert.get());
  std::tm tm{};
  if (not_after == nullptr || ASN1_TIME_to_tm(not_after, &tm) != 1) {
    info.error = "unreadable notAfter";
    return info;
  }
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  info.not_after = when;
  std::unique_ptr<ASN1_TIME, Asn1TimeFree> from(ASN1_TIME_set(nullptr, now));
  int days = 0, seconds = 0;
  if (!from || ASN1_TIME_diff(&days, &seconds, from.get(), not_after) != 1) {
    info.error = "cannot compute the time left";
    ERR_clear_error();
    return info;
  }
  info.seconds_left = static_cast<int64_t>(days) * 86400 + seconds;
  return info;
}

CertReport inspect_certs(const std::string& dir, std::time_t now) {
  CertReport report;
  report.dir = dir;
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    report.error = err == ENOENT ? dir + " does not exist: no mesh identity here (ISTIO_MUTUAL needs one: "
                                         "scripts/mesh-certs makes one)"
                                 : "cannot read " + dir + ": " + std::strerror(err);
    return report;
  }
  if (!S_ISDIR(st.st_mode)) {
    report.error = dir + " is not a directory";
    return report;
  }
  for (const char* name : {"cert-chain.pem", "root-cert.pem"}) {
    report.certificates.push_back(read_certificate(dir + "/" + name, now));
  }
  report.key_present = access((dir + "/key.pem").c_str(), F_OK) == 0;
  return report;
}

}  // namespace sluice::ctl
