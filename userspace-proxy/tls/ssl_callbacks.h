// OpenSSL callbacks shared by the contexts (which install them) and
// TlsConnection (which owns the per-connection state they read). Internal to
// this library.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace sluice::tls::detail {

// SSL_CTX_set_verify callback: after OpenSSL verified the peer's chain,
// checks the leaf's SANs against the connection's expected names.
int verify_peer(int preverify_ok, X509_STORE_CTX* store);

// SSL_CTX_sess_set_new_cb: stores a client session (TLS 1.3 ticket) in the
// context's cache under the connection's key. Returns 1 when it kept the
// session's reference.
int on_new_client_session(SSL* ssl, SSL_SESSION* session);

// SSL_CTX_set_alpn_select_cb with the server context's wire-format list as
// `arg`: the first of our protocols the client offers; no ALPN otherwise.
int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void* arg);

}  // namespace sluice::tls::detail
