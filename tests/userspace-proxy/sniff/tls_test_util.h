// Test helpers for ClientHellos: genuine ones from OpenSSL (a client SSL over
// memory BIOs, driven until it has written its first flight), hand-built ones
// for the malformed cases, and re-framing into several TLS records.
#pragma once

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sluice::sniff::testing {

// The bytes an OpenSSL client writes first: one handshake record holding the
// ClientHello. sni empty: no server_name extension; alpn empty: no ALPN;
// max_version e.g. TLS1_2_VERSION, 0 for OpenSSL's default (TLS 1.3).
inline std::string openssl_client_hello(const std::string& sni, const std::vector<std::string>& alpn = {},
                                        int max_version = 0) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) throw std::runtime_error("SSL_CTX_new");
  if (max_version != 0) SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);  // ssl owns both
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl, sni.c_str());
  if (!alpn.empty()) {
    std::string wire;
    for (const std::string& p : alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  }
  SSL_set_connect_state(ssl);
  const int rc = SSL_do_handshake(ssl);
  const int err = SSL_get_error(ssl, rc);
  std::string bytes;
  char buf[4096];
  int n;
  while ((n = BIO_read(out, buf, sizeof(buf))) > 0) bytes.append(buf, static_cast<std::size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  if (err != SSL_ERROR_WANT_READ || bytes.empty()) throw std::runtime_error("no ClientHello written");
  return bytes;
}

inline std::string u8(unsigned v) { return std::string(1, static_cast<char>(v & 0xff)); }
inline std::string u16(unsigned v) { return u8(v >> 8) + u8(v); }
inline std::string u24(unsigned v) { return u8(v >> 16) + u16(v); }

inline std::string extension(uint16_t type, const std::string& data) {
  return u16(type) + u16(static_cast<unsigned>(data.size())) + data;
}

// server_name extension_data from (name_type, name) entries.
inline std::string server_name_data(const std::vector<std::pair<uint8_t, std::string>>& entries) {
  std::string list;
  for (const auto& [type, name] : entries) list += u8(type) + u16(static_cast<unsigned>(name.size())) + name;
  return u16(static_cast<unsigned>(list.size())) + list;
}

inline std::string alpn_data(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names) list += u8(static_cast<unsigned>(n.size())) + n;
  return u16(static_cast<unsigned>(list.size())) + list;
}

// A ClientHello body with the given (already encoded) extensions.
inline std::string client_hello_body(const std::string& extensions, bool with_extensions_block = true) {
  std::string body = u16(0x0303) + std::string(32, 'R');  // legacy_version, random
  body += u8(32) + std::string(32, 'S');                    // session_id
  body += u16(4) + u16(0x1301) + u16(0xc02f);              // cipher_suites
  body += u8(1) + u8(0);                                    // compression_methods: null
  if (with_extensions_block) body += u16(static_cast<unsigned>(extensions.size())) + extensions;
  return body;
}

inline std::string handshake_message(const std::string& body, uint8_t type = 1) {
  return u8(type) + u24(static_cast<unsigned>(body.size())) + body;
}

inline std::string record(const std::string& payload, uint8_t content_type = 22, uint16_t version = 0x0301) {
  return u8(content_type) + u16(version) + u16(static_cast<unsigned>(payload.size())) + payload;
}

// The handshake bytes carried by a sequence of handshake records.
inline std::string handshake_payload(const std::string& records) {
  std::string payload;
  std::size_t i = 0;
  while (i + 5 <= records.size()) {
    const std::size_t len = (static_cast<uint8_t>(records[i + 3]) << 8) | static_cast<uint8_t>(records[i + 4]);
    payload += records.substr(i + 5, len);
    i += 5 + len;
  }
  return payload;
}

// Re-frames a handshake payload into records cut at the given offsets.
inline std::string reframe(const std::string& payload, const std::vector<std::size_t>& cuts) {
  std::string out;
  std::size_t begin = 0;
  for (std::size_t cut : cuts) {
    out += record(payload.substr(begin, cut - begin));
    begin = cut;
  }
  out += record(payload.substr(begin));
  return out;
}

}  // namespace sluice::sniff::testing
