// Owning smart pointers for the OpenSSL objects this library keeps.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>

namespace sluice::tls {

struct OpenSslDeleter {
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
  void operator()(SSL* p) const { SSL_free(p); }
  void operator()(SSL_SESSION* p) const { SSL_SESSION_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
};

using X509Ptr = std::unique_ptr<X509, OpenSslDeleter>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslDeleter>;
using SslPtr = std::unique_ptr<SSL, OpenSslDeleter>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, OpenSslDeleter>;
using BioPtr = std::unique_ptr<BIO, OpenSslDeleter>;
using X509StorePtr = std::unique_ptr<X509_STORE, OpenSslDeleter>;
using X509CrlPtr = std::unique_ptr<X509_CRL, OpenSslDeleter>;

}  // namespace sluice::tls
