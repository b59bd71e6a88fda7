#include "userspace-proxy/tls/tls_connection.h"

#include <arpa/inet.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>
#include <mutex>

#include "userspace-proxy/tls/openssl_error.h"
#include "userspace-proxy/tls/san_match.h"
#include "userspace-proxy/tls/ssl_callbacks.h"

namespace sluice::tls {

namespace {

// Memory BIOs keep the largest buffer they ever held. Once drained, one
// bigger than this is swapped for a fresh BIO, so an idle keep-alive
// connection holds no record-sized buffers (OpenSSL's own are released by
// SSL_MODE_RELEASE_BUFFERS). During bulk transfer that costs a malloc/free
// per record, small next to the record's encryption.
constexpr size_t kIdleBioBytes = 4096;

bool drained_but_large(BIO* bio) {
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio, &mem);
  return mem != nullptr && mem->length == 0 && mem->max > kIdleBioBytes;
}

BIO* new_memory_bio() {
  BIO* bio = BIO_new(BIO_s_mem());
  // An empty input BIO means "wait for more", not end of stream.
  if (bio != nullptr) BIO_set_mem_eof_return(bio, -1);
  return bio;
}

int connection_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& e : v) {
    if (!s.empty()) s += ", ";
    s += e;
  }
  return s;
}

}  // namespace

namespace detail {

int verify_peer(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok != 1 || X509_STORE_CTX_get_error_depth(store) != 0) return preverify_ok;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  TlsConnection* conn = ssl != nullptr ? TlsConnection::from(ssl) : nullptr;
  if (conn == nullptr) {
    // An SSL made from our SSL_CTX without a TlsConnection: nobody knows
    // which names to expect, so refuse rather than skip the check.
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  const std::vector<std::string>& expected = conn->expected_peer_sans();
  if (expected.empty()) return 1;
  const PeerIdentity id = certificate_identity(X509_STORE_CTX_get_current_cert(store));
  if (san_matches(id, expected)) return 1;
  conn->set_verify_failure("peer certificate " + (id.empty() ? std::string("without SANs") : id.to_string()) +
                           " matches none of [" + join(expected) + "]");
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

int on_new_client_session(SSL* ssl, SSL_SESSION* session) {
  TlsConnection* conn = TlsConnection::from(ssl);
  if (conn == nullptr) return 0;
  conn->store_session(session);
  return 1;
}

int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
  const auto* ours = static_cast<const std::string*>(arg);
  unsigned char* selected = nullptr;
  // Server preference: SSL_select_next_proto walks its first list.
  if (SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(ours->data()),
                            static_cast<unsigned>(ours->size()), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace detail

TlsConnection* TlsConnection::from(const SSL* ssl) {
  return static_cast<TlsConnection*>(SSL_get_ex_data(ssl, connection_index()));
}

std::unique_ptr<TlsConnection> TlsConnection::server(std::shared_ptr<const TlsServerContext> context,
                                                     std::string* error) {
  if (!context) {
    *error = "no server TLS context";
    return nullptr;
  }
  std::unique_ptr<TlsConnection> c(new TlsConnection());
  c->server_ctx_ = std::move(context);
  c->expected_sans_ = c->server_ctx_->allowed_client_sans();
  if (!c->init(c->server_ctx_->ssl_ctx(), error)) return nullptr;
  SSL_set_accept_state(c->ssl_.get());
  return c;
}

std::unique_ptr<TlsConnection> TlsConnection::client(std::shared_ptr<const TlsClientContext> context,
                                                     const ClientSessionParams& params, std::string* error) {
  if (!context) {
    *error = "no client TLS context";
    return nullptr;
  }
  std::unique_ptr<TlsConnection> c(new TlsConnection());
  c->client_ctx_ = std::move(context);
  c->sni_ = params.sni.empty() ? c->client_ctx_->options().sni : params.sni;
  c->expected_sans_ = c->client_ctx_->expected_server_sans(c->sni_);
  if (!c->init(c->client_ctx_->ssl_ctx(), error)) return nullptr;
  SSL* ssl = c->ssl_.get();
  SSL_set_connect_state(ssl);
  if (!c->sni_.empty() && !is_ip_literal(c->sni_) && SSL_set_tlsext_host_name(ssl, c->sni_.c_str()) != 1) {
    *error = "cannot use SNI '" + c->sni_ + "': " + openssl_error_text();
    return nullptr;
  }
  if (c->client_ctx_->options().session_cache_size > 0) {
    c->session_key_ = params.session_key;
    c->session_key_ += '\n';
    c->session_key_ += c->sni_;
    SslSessionPtr session = c->client_ctx_->session_cache().get(c->session_key_, static_cast<int64_t>(time(nullptr)));
    // A session the library refuses (e.g. another protocol version range)
    // just means a full handshake.
    if (session && SSL_set_session(ssl, session.get()) != 1) clear_openssl_errors();
  }
  return c;
}

bool TlsConnection::init(SSL_CTX* ctx, std::string* error) {
  clear_openssl_errors();
  ssl_.reset(SSL_new(ctx));
  BIO* rbio = new_memory_bio();
  BIO* wbio = new_memory_bio();
  if (!ssl_ || rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    *error = "cannot create a TLS connection: " + openssl_error_text();
    return false;
  }
  SSL_set_bio(ssl_.get(), rbio, wbio);
  rbio_ = rbio;
  wbio_ = wbio;
  if (SSL_set_ex_data(ssl_.get(), connection_index(), this) != 1) {
    *error = "cannot create a TLS connection: " + openssl_error_text();
    return false;
  }
  return true;
}

TlsConnection::~TlsConnection() = default;

bool TlsConnection::feed(std::span<const uint8_t> ciphertext) {
  if (ciphertext.empty()) return true;
  return BIO_write(rbio_, ciphertext.data(), static_cast<int>(ciphertext.size())) ==
         static_cast<int>(ciphertext.size());
}

HandshakeState TlsConnection::handshake() {
  if (state_ != HandshakeState::kInProgress) return state_;
  clear_openssl_errors();
  const int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    state_ = HandshakeState::kDone;
    return state_;
  }
  const int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    trim_input();
    return state_;
  }
  fail(err, "handshake");
  state_ = HandshakeState::kFailed;
  return state_;
}

void TlsConnection::fail(int ssl_error, std::string_view during) {
  std::string reason = openssl_error_text();
  const long verify =
      (SSL_get_verify_mode(ssl_.get()) & SSL_VERIFY_PEER) != 0 ? SSL_get_verify_result(ssl_.get()) : X509_V_OK;
  if (!verify_detail_.empty()) {
    reason += " (" + verify_detail_ + ")";
  } else if (verify != X509_V_OK) {
    reason += " (";
    reason += X509_verify_cert_error_string(verify);
    reason += ")";
  }
  if (reason.empty()) {
    switch (ssl_error) {
      case SSL_ERROR_ZERO_RETURN:
        reason = "peer sent close_notify during the " + std::string(during);
        break;
      case SSL_ERROR_SYSCALL:
        reason = "unexpected end of stream during the " + std::string(during);
        break;
      default:
        reason = "SSL error " + std::to_string(ssl_error) + " during the " + std::string(during);
        break;
    }
  }
  failure_ = std::move(reason);
}

ReadStatus TlsConnection::read(std::span<uint8_t> buffer, size_t* n) {
  *n = 0;
  if (state_ != HandshakeState::kDone)
    return state_ == HandshakeState::kFailed ? ReadStatus::kError : ReadStatus::kWantMore;
  if (close_notify_received_) return ReadStatus::kClosed;
  if (!failure_.empty()) return ReadStatus::kError;
  clear_openssl_errors();
  size_t got = 0;
  if (SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &got) == 1) {
    *n = got;
    return ReadStatus::kData;
  }
  const int err = SSL_get_error(ssl_.get(), 0);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    trim_input();
    return ReadStatus::kWantMore;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    close_notify_received_ = true;
    return ReadStatus::kClosed;
  }
  fail(err, "read");
  return ReadStatus::kError;
}

bool TlsConnection::write(std::span<const uint8_t> plaintext) {
  if (state_ != HandshakeState::kDone || !failure_.empty() || close_notify_sent_) return false;
  while (!plaintext.empty()) {
    clear_openssl_errors();
    size_t written = 0;
    if (SSL_write_ex(ssl_.get(), plaintext.data(), plaintext.size(), &written) != 1) {
      fail(SSL_get_error(ssl_.get(), 0), "write");
      return false;
    }
    plaintext = plaintext.subspan(written);
  }
  return true;
}

void TlsConnection::send_close_notify() {
  if (close_notify_sent_ || state_ != HandshakeState::kDone) return;
  close_notify_sent_ = true;
  clear_openssl_errors();
  // Writes the alert into the output BIO; the peer's close_notify (if any)
  // is not awaited: the engine closes the socket after the FIN.
  SSL_shutdown(ssl_.get());
  clear_openssl_errors();
}

std::span<const uint8_t> TlsConnection::output() const {
  char* data = nullptr;
  const long n = BIO_get_mem_data(wbio_, &data);
  if (n <= 0 || data == nullptr) return {};
  return {reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(n)};
}

void TlsConnection::consume_output() {
  (void)BIO_reset(wbio_);
  if (!drained_but_large(wbio_)) return;
  if (BIO* fresh = new_memory_bio()) {
    SSL_set0_wbio(ssl_.get(), fresh);  // frees the old one
    wbio_ = fresh;
  }
}

void TlsConnection::trim_input() {
  if (!drained_but_large(rbio_)) return;
  if (BIO* fresh = new_memory_bio()) {
    SSL_set0_rbio(ssl_.get(), fresh);
    rbio_ = fresh;
  }
}

size_t TlsConnection::buffered_input() const { return BIO_ctrl_pending(rbio_); }

size_t TlsConnection::bio_bytes() const {
  size_t total = 0;
  for (BIO* bio : {rbio_, wbio_}) {
    BUF_MEM* mem = nullptr;
    BIO_get_mem_ptr(bio, &mem);
    if (mem != nullptr) total += mem->max;
  }
  return total;
}

std::string_view TlsConnection::version() const { return SSL_get_version(ssl_.get()); }

std::string_view TlsConnection::cipher() const {
  const char* name = SSL_get_cipher_name(ssl_.get());
  return name != nullptr ? name : "";
}

bool TlsConnection::resumed() const { return SSL_session_reused(ssl_.get()) == 1; }

std::string_view TlsConnection::sni() const {
  if (!is_server()) return sni_;
  const char* name = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? name : "";
}

std::string_view TlsConnection::alpn() const {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &data, &len);
  return data != nullptr ? std::string_view(reinterpret_cast<const char*>(data), len) : std::string_view();
}

void TlsConnection::store_session(SSL_SESSION* session) {
  if (!client_ctx_ || session_key_.empty()) {
    SSL_SESSION_free(session);
    return;
  }
  // Cache a copy: OpenSSL marks the session an SSL is using "not
  // resumable" when that SSL is freed without a close_notify exchange (an
  // SSLv3-era truncation rule), which would poison a shared cached object
  // as soon as this connection ends with a plain FIN or a reset.
  SslSessionPtr copy(SSL_SESSION_dup(session));
  SSL_SESSION_free(session);
  if (copy) client_ctx_->session_cache().put(session_key_, std::move(copy));
}

}  // namespace sluice::tls
