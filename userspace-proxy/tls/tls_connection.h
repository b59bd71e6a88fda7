// One TLS endpoint over memory BIOs: ciphertext goes in with feed() and comes
// out of output(); plaintext goes in with write() and comes out of read().
// It never touches a socket, so the engine keeps doing all I/O and the same
// object serves the engine filter and tests alike.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "userspace-proxy/tls/openssl_ptr.h"
#include "userspace-proxy/tls/peer_identity.h"
#include "userspace-proxy/tls/tls_context.h"

namespace sluice::tls {

// Per-connection settings of the client side.
struct ClientSessionParams {
  // Overrides the context's sni when not empty (Istio's default SNI
  // depends on the route: outbound_.<port>_.<subset>_.<host>). IP literals
  // are never sent as SNI (RFC 6066) but still used for the SAN check.
  std::string sni;
  // Where resumable sessions are cached, besides the SNI: e.g. the upstream
  // address or cluster name ("10.0.0.7:443"). Connections with the same key
  // and SNI resume each other's sessions.
  std::string session_key;
};

enum class HandshakeState : uint8_t { kInProgress, kDone, kFailed };

enum class ReadStatus : uint8_t {
  kData,      // *n > 0 plaintext bytes
  kWantMore,  // need more ciphertext (feed())
  kClosed,    // the peer sent close_notify: no more plaintext will come
  kError,     // failure_reason() says why; the connection is unusable
};

class TlsConnection {
 public:
  static std::unique_ptr<TlsConnection> server(std::shared_ptr<const TlsServerContext> context, std::string* error);
  static std::unique_ptr<TlsConnection> client(std::shared_ptr<const TlsClientContext> context,
                                               const ClientSessionParams& params, std::string* error);
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  bool is_server() const { return server_ctx_ != nullptr; }

  // Ciphertext from the peer. Returns false only when out of memory.
  bool feed(std::span<const uint8_t> ciphertext);
  // Drives the handshake as far as the input allows. A client's first call
  // writes the ClientHello. Once kDone or kFailed it stays there.
  HandshakeState handshake();
  HandshakeState state() const { return state_; }
  // Plaintext, after the handshake. Call until kWantMore: TLS 1.3
  // post-handshake messages (tickets, key updates) are processed here too.
  ReadStatus read(std::span<uint8_t> buffer, size_t* n);
  // Encrypts all of `plaintext` into output() (after the handshake).
  bool write(std::span<const uint8_t> plaintext);
  // Queues our close_notify, once. No effect before the handshake is done.
  void send_close_notify();
  bool close_notify_sent() const { return close_notify_sent_; }
  bool close_notify_received() const { return close_notify_received_; }

  // Ciphertext for the peer produced so far (handshake records, alerts,
  // application data); consume_output() after copying it out.
  std::span<const uint8_t> output() const;
  void consume_output();
  // Ciphertext fed but not yet processed (at most about one record).
  size_t buffered_input() const;
  // Bytes allocated by the two memory BIOs (not OpenSSL's own buffers):
  // small again once a burst has been processed and its output taken.
  size_t bio_bytes() const;

  // Why the handshake or a later read/write failed: OpenSSL's error text,
  // the certificate verification result and our SAN check, e.g.
  // "error:0A000086:SSL routines::certificate verify failed (peer
  // certificate spiffe://cluster.local/ns/default/sa/sleep matches none of
  // [spiffe://cluster.local/ns/default/sa/other])".
  const std::string& failure_reason() const { return failure_; }

  // Handshake results (meaningful once kDone).
  PeerIdentity peer() const { return peer_identity(ssl_.get()); }
  std::string_view version() const;
  std::string_view cipher() const;
  bool resumed() const;
  // Server: the SNI the client sent; client: the SNI we sent (or meant to).
  std::string_view sni() const;
  std::string_view alpn() const;

  SSL* ssl() const { return ssl_.get(); }

  // For the OpenSSL callbacks (ssl_callbacks.h).
  static TlsConnection* from(const SSL* ssl);
  const std::vector<std::string>& expected_peer_sans() const { return expected_sans_; }
  void set_verify_failure(std::string detail) { verify_detail_ = std::move(detail); }
  void store_session(SSL_SESSION* session);

 private:
  TlsConnection() = default;
  bool init(SSL_CTX* ctx, std::string* error);
  void fail(int ssl_error, std::string_view during);
  void trim_input();

  std::shared_ptr<const TlsServerContext> server_ctx_;
  std::shared_ptr<const TlsClientContext> client_ctx_;
  std::vector<std::string> expected_sans_;
  std::string sni_;
  std::string session_key_;  // client: cache key (params.session_key + SNI)
  std::string verify_detail_;
  std::string failure_;
  HandshakeState state_ = HandshakeState::kInProgress;
  bool close_notify_sent_ = false;
  bool close_notify_received_ = false;
  // Declared last: freed first, while the contexts above are still alive
  // (the SSL's callbacks reach into them).
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  SslPtr ssl_;
};

}  // namespace sluice::tls
