#include "userspace-proxy/tls/tls_context.h"

#include <algorithm>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "userspace-proxy/tls/openssl_error.h"
#include "userspace-proxy/tls/ssl_callbacks.h"

namespace sluice::tls {

namespace {

// Envoy's default TLS 1.2 suites minus the non-forward-secret ones.
constexpr const char* kDefaultTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Server session id context: required once client certificates are
// verified (OpenSSL refuses to resume otherwise). Tickets are encrypted with
// keys private to each SSL_CTX, so sessions never cross config generations.
constexpr unsigned char kSessionIdContext[] = "sluice";

int openssl_version(TlsVersion v) { return v == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION; }

bool set_versions(SSL_CTX* ctx, TlsVersion min, TlsVersion max, std::string* error) {
  if (openssl_version(min) > openssl_version(max)) {
    *error =
        "minimum TLS version " + std::string(to_string(min)) + " is above the maximum " + std::string(to_string(max));
    return false;
  }
  if (SSL_CTX_set_min_proto_version(ctx, openssl_version(min)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, openssl_version(max)) != 1) {
    *error = "cannot set TLS versions: " + openssl_error_text();
    return false;
  }
  return true;
}

// OpenSSL accepts a cipher list as long as one entry is known, silently
// dropping typos; like Envoy, reject any name it does not know.
bool set_ciphers(SSL_CTX* ctx, const std::vector<std::string>& names, std::string* error) {
  if (names.empty()) {
    if (SSL_CTX_set_cipher_list(ctx, kDefaultTls12Ciphers) != 1) {
      *error = "cannot set the default cipher suites: " + openssl_error_text();
      return false;
    }
    return true;
  }
  std::string list;
  for (const std::string& name : names) {
    // One suite per entry: list syntax (separators, "!"/"-"/"+" operators)
    // would let an entry change the meaning of the others.
    if (name.empty() || name.find_first_of(":, ") != std::string::npos ||
        std::string_view("!+-@").find(name[0]) != std::string_view::npos ||
        SSL_CTX_set_cipher_list(ctx, name.c_str()) != 1) {
      clear_openssl_errors();
      *error = "unknown TLS 1.2 cipher suite '" + name + "'";
      return false;
    }
    if (!list.empty()) list += ':';
    list += name;
  }
  if (SSL_CTX_set_cipher_list(ctx, list.c_str()) != 1) {
    *error = "cannot set cipher suites: " + openssl_error_text();
    return false;
  }
  return true;
}

bool alpn_wire(const std::vector<std::string>& protocols, std::string* wire, std::string* error) {
  wire->clear();
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) {
      *error = "invalid ALPN protocol name '" + p + "'";
      return false;
    }
    wire->push_back(static_cast<char>(p.size()));
    *wire += p;
  }
  return true;
}

// Installs chain + key; returns our identity for logs.
bool use_certificate(SSL_CTX* ctx, const CertificateFiles& files, PeerIdentity* identity, std::string* error) {
  CertificateChain chain;
  EvpPkeyPtr key;
  if (!load_certificate_chain(files.cert_chain, &chain, error)) return false;
  if (!load_private_key(files.private_key, &key, error)) return false;
  if (!key_matches_certificate(chain.leaf.get(), key.get())) {
    *error = files.private_key + ": private key does not match the certificate in " + files.cert_chain;
    return false;
  }
  clear_openssl_errors();
  if (SSL_CTX_use_certificate(ctx, chain.leaf.get()) != 1) {
    *error = files.cert_chain + ": certificate not usable: " + openssl_error_text();
    return false;
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    *error = files.private_key + ": private key not usable: " + openssl_error_text();
    return false;
  }
  for (const X509Ptr& c : chain.intermediates) {
    if (SSL_CTX_add1_chain_cert(ctx, c.get()) != 1) {
      *error = files.cert_chain + ": intermediate certificate not usable: " + openssl_error_text();
      return false;
    }
  }
  *identity = certificate_identity(chain.leaf.get());
  return true;
}

bool trust_ca(SSL_CTX* ctx, const std::string& path, bool advertise_to_clients, std::string* error) {
  std::vector<X509Ptr> cas;
  if (!load_ca_certificates(path, &cas, error)) return false;
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  clear_openssl_errors();
  for (const X509Ptr& ca : cas) {
    if (X509_STORE_add_cert(store, ca.get()) != 1) {
      const unsigned long err = ERR_peek_last_error();
      // The same root twice in a bundle is harmless.
      if (ERR_GET_REASON(err) == X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        clear_openssl_errors();
        continue;
      }
      *error = path + ": CA certificate not usable: " + openssl_error_text();
      return false;
    }
    // The CertificateRequest names the accepted issuers, so a client holding
    // several certificates can pick the right one.
    if (advertise_to_clients && SSL_CTX_add_client_CA(ctx, ca.get()) != 1) {
      *error = path + ": CA certificate not usable: " + openssl_error_text();
      return false;
    }
  }
  return true;
}

std::string text_of(const X509_NAME* name) {
  char buf[256];
  X509_NAME_oneline(name, buf, sizeof(buf));
  return buf;
}

std::string text_of(const ASN1_TIME* t) {
  BIO* b = BIO_new(BIO_s_mem());
  if (b == nullptr) return "?";
  ASN1_TIME_print(b, t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string out(data, static_cast<size_t>(std::max<long>(0, n)));
  BIO_free(b);
  return out;
}

// A CRL outside its validity fails every check against it (OpenSSL's "CRL
// has expired" / "CRL is not yet valid"), so every peer its CA issued is
// refused: said when the file is loaded, not only per handshake.
void check_crl_times(const std::string& path, const std::vector<X509CrlPtr>& crls, std::vector<std::string>* warnings) {
  for (const X509CrlPtr& crl : crls) {
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
    const ASN1_TIME* last = X509_CRL_get0_lastUpdate(crl.get());
    const std::string issuer = text_of(X509_CRL_get_issuer(crl.get()));
    if (next != nullptr && X509_cmp_time(next, nullptr) < 0) {
      warnings->push_back("caCrl " + path + ": the CRL of " + issuer + " expired (nextUpdate " + text_of(next) +
                          "): every certificate checked against it fails verification (CRL has expired) until the "
                          "file holds a newer one");
    } else if (last != nullptr && X509_cmp_time(last, nullptr) > 0) {
      warnings->push_back("caCrl " + path + ": the CRL of " + issuer + " is not valid before " + text_of(last) +
                          ": every certificate checked against it fails verification (CRL is not yet valid) until then");
    }
  }
}

// caCrl: the revocation lists join the trust store and every certificate of
// the peer's chain is checked against them (Envoy's crl without
// only_verify_leaf_cert_crl: X509_V_FLAG_CRL_CHECK | CRL_CHECK_ALL), so each
// CA in the chain needs its CRL in the file, or verification fails.
bool use_crls(SSL_CTX* ctx, const std::string& path, std::vector<std::string>* warnings, std::string* error) {
  std::vector<X509CrlPtr> crls;
  if (!load_crls(path, &crls, error)) return false;
  check_crl_times(path, crls, warnings);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  clear_openssl_errors();
  for (const X509CrlPtr& crl : crls) {
    if (X509_STORE_add_crl(store, crl.get()) != 1) {
      *error = path + ": CRL not usable: " + openssl_error_text();
      return false;
    }
  }
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  return true;
}

SSL_CTX* new_ctx(const SSL_METHOD* method, std::string* error) {
  clear_openssl_errors();
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) *error = "SSL_CTX_new: " + openssl_error_text();
  return ctx;
}

}  // namespace

std::string_view to_string(TlsVersion v) { return v == TlsVersion::kTls13 ? "TLSv1.3" : "TLSv1.2"; }

std::shared_ptr<const TlsServerContext> TlsServerContext::create(const ServerTlsOptions& options, std::string* error) {
  std::shared_ptr<TlsServerContext> c(new TlsServerContext());
  c->options_ = options;
  CertificateFiles files = options.files;
  if (options.mode == ServerTlsMode::kIstioMutual) files = mesh_identity_files(options.mesh_identity_dir);
  const bool mutual = options.mode != ServerTlsMode::kSimple;
  if (files.cert_chain.empty() || files.private_key.empty()) {
    *error = "serverCertificate and privateKey are required to terminate TLS";
    return nullptr;
  }
  if (mutual && files.ca_certificates.empty()) {
    *error = "caCertificates is required to verify client certificates (mode MUTUAL)";
    return nullptr;
  }
  if (!alpn_wire(options.alpn, &c->alpn_wire_, error)) return nullptr;

  c->ctx_.reset(new_ctx(TLS_server_method(), error));
  SSL_CTX* ctx = c->ctx_.get();
  if (ctx == nullptr) return nullptr;
  if (!set_versions(ctx, options.min_version, options.max_version, error)) return nullptr;
  if (!set_ciphers(ctx, options.cipher_suites, error)) return nullptr;
  // No renegotiation (a CPU DoS lever with no use here); the server picks
  // the cipher order.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  // Idle connections give their 16 KiB record buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!use_certificate(ctx, files, &c->identity_, error)) return nullptr;

  if (mutual) {
    if (!trust_ca(ctx, files.ca_certificates, /*advertise_to_clients=*/true, error)) return nullptr;
    if (!files.ca_crl.empty() && !use_crls(ctx, files.ca_crl, &c->warnings_, error)) return nullptr;
    int mode = SSL_VERIFY_PEER;
    if (options.mode != ServerTlsMode::kOptionalMutual) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, detail::verify_peer);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  // Stateless tickets only (one per handshake: a client keeps the newest):
  // no server-side session cache with its lock and memory.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  if (SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext) - 1) != 1) {
    *error = "SSL_CTX_set_session_id_context: " + openssl_error_text();
    return nullptr;
  }
  if (!c->alpn_wire_.empty()) {
    SSL_CTX_set_alpn_select_cb(ctx, detail::select_alpn, &c->alpn_wire_);
  }
  return c;
}

std::shared_ptr<const TlsClientContext> TlsClientContext::create(const ClientTlsOptions& options, std::string* error) {
  std::shared_ptr<TlsClientContext> c(new TlsClientContext(options.session_cache_size));
  c->options_ = options;
  CertificateFiles files = options.files;
  const bool istio = options.mode == ClientTlsMode::kIstioMutual;
  if (istio) files = mesh_identity_files(options.mesh_identity_dir);
  // ISTIO_MUTUAL always verifies: the mesh identity is the whole point.
  c->verify_ = istio || !options.insecure_skip_verify;
  if (options.mode == ClientTlsMode::kMutual && (files.cert_chain.empty() || files.private_key.empty())) {
    *error = "clientCertificate and privateKey are required for mode MUTUAL";
    return nullptr;
  }
  std::string alpn;
  if (!alpn_wire(options.alpn, &alpn, error)) return nullptr;

  c->ctx_.reset(new_ctx(TLS_client_method(), error));
  SSL_CTX* ctx = c->ctx_.get();
  if (ctx == nullptr) return nullptr;
  if (!set_versions(ctx, options.min_version, options.max_version, error)) return nullptr;
  if (!set_ciphers(ctx, options.cipher_suites, error)) return nullptr;
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (options.mode != ClientTlsMode::kSimple) {
    if (!use_certificate(ctx, files, &c->identity_, error)) return nullptr;
  }
  if (c->verify_) {
    if (!files.ca_certificates.empty()) {
      if (!trust_ca(ctx, files.ca_certificates, /*advertise_to_clients=*/false, error)) return nullptr;
    } else {
      clear_openssl_errors();
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        *error = "cannot load the system's trusted CA certificates: " + openssl_error_text();
        return nullptr;
      }
    }
    if (!files.ca_crl.empty() && !use_crls(ctx, files.ca_crl, &c->warnings_, error)) return nullptr;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, detail::verify_peer);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!alpn.empty() && SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(alpn.data()),
                                               static_cast<unsigned>(alpn.size())) != 0) {
    *error = "cannot set ALPN: " + openssl_error_text();
    return nullptr;
  }
  if (options.session_cache_size > 0) {
    // OpenSSL hands each new session (a TLS 1.3 ticket arrives after the
    // handshake) to the callback; its own client cache is not used.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, detail::on_new_client_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  return c;
}

std::vector<std::string> TlsClientContext::expected_server_sans(std::string_view sni) const {
  if (!verify_) return {};
  if (!options_.subject_alt_names.empty()) return options_.subject_alt_names;
  // ISTIO_MUTUAL's SNI is a routing key (outbound_.80_.v1_.host), not a name
  // in the server's certificate; the caller supplies the SPIFFE id instead.
  if (options_.mode != ClientTlsMode::kIstioMutual && options_.verify_sni_san && !sni.empty()) {
    return {std::string(sni)};
  }
  return {};
}

}  // namespace sluice::tls
