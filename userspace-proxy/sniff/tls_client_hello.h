// Incremental TLS ClientHello sniffer: what a proxy learns from the first
// flight of a TLS connection without terminating it (RFC 8446 §4.1.2 and §5.1,
// RFC 6066 §3 server_name, RFC 7301 ALPN).
//
// The sniffer only observes: the caller forwards every byte it feeds, so
// nothing is consumed. It copies the handshake message (never more than
// max_handshake_bytes) out of however many TLS records and TCP segments carry
// it, so callers may feed 1 byte at a time and drop their buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sniff {

enum class TlsSniffStatus : uint8_t {
  kNeedMore,  // no verdict yet: feed more bytes (or give up on timeout)
  kDone,      // a well-formed ClientHello: client_hello() is filled in
  kNotTls,    // the first record header is not a TLS handshake record: try HTTP/TCP
  kInvalid,   // it is TLS, but the ClientHello is malformed or too large: error()
};

std::string_view to_string(TlsSniffStatus status);

// TLS protocol versions on the wire.
inline constexpr uint16_t kTls10 = 0x0301;
inline constexpr uint16_t kTls11 = 0x0302;
inline constexpr uint16_t kTls12 = 0x0303;
inline constexpr uint16_t kTls13 = 0x0304;

// RFC 8701 reserves 0x?A?A values (both bytes equal) as GREASE.
constexpr bool is_grease(uint16_t value) {
  return (value & 0x0f0f) == 0x0a0a && (value >> 8) == (value & 0xff);
}

struct ClientHello {
  uint16_t record_version = 0;  // legacy_record_version of the first record
  uint16_t legacy_version = 0;  // ClientHello.legacy_version
  // The host_name entry of server_name, lower-cased, no trailing dot; empty
  // when the extension is absent or carries only other name types.
  std::string sni;
  bool has_server_name_extension = false;
  std::vector<std::string> alpn;             // in the client's order
  std::vector<uint16_t> supported_versions;  // in the client's order, GREASE kept
  // encrypted_client_hello (draft-ietf-tls-esni): sni is then only the outer,
  // public name; the name the client really wants is encrypted.
  bool offers_ech = false;
  bool offers_early_data = false;
  // Stream offset just past the ClientHello's last byte (record headers
  // included): the bytes a proxy must hold to replay the hello.
  std::size_t stream_bytes = 0;
  std::size_t record_count = 0;

  // The highest version offered: the largest non-GREASE supported_versions
  // entry if the extension is present, legacy_version otherwise.
  uint16_t max_offered_version() const;
};

class ClientHelloSniffer {
 public:
  // Handshake messages above this many bytes (4-byte header included) are
  // refused; real ClientHellos, post-quantum key shares included, stay far
  // below 16 KiB.
  static constexpr std::size_t kDefaultMaxHandshakeBytes = 16 * 1024;

  explicit ClientHelloSniffer(std::size_t max_handshake_bytes = kDefaultMaxHandshakeBytes);

  // Feeds the next bytes of the client-to-server stream. Once the status is
  // no longer kNeedMore it is final and further bytes are ignored.
  TlsSniffStatus feed(std::span<const uint8_t> bytes);
  TlsSniffStatus feed(std::string_view bytes) {
    return feed(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                         bytes.size()));
  }

  TlsSniffStatus status() const { return status_; }
  // Meaningful when status() == kDone.
  const ClientHello& client_hello() const { return hello_; }
  // Why the verdict is kNotTls or kInvalid (a static string); empty otherwise.
  std::string_view error() const { return error_; }
  // Bytes fed so far, counted until a verdict was reached.
  std::size_t bytes_seen() const { return bytes_seen_; }

  // Back to the initial state; keeps buffer capacity.
  void reset();

 private:
  TlsSniffStatus fail(TlsSniffStatus status, std::string_view why);
  TlsSniffStatus on_record_header_byte(uint8_t byte);
  // Returns how many of `bytes` belonged to the ClientHello.
  std::size_t on_handshake_bytes(std::span<const uint8_t> bytes);

  std::size_t max_handshake_bytes_;
  TlsSniffStatus status_ = TlsSniffStatus::kNeedMore;
  std::string_view error_;
  std::size_t bytes_seen_ = 0;
  uint8_t record_header_[5] = {};
  std::size_t record_header_len_ = 0;
  std::size_t record_remaining_ = 0;  // payload bytes left in the current record
  std::size_t record_count_ = 0;
  std::size_t handshake_total_ = 0;  // 4 + body length, once the header is in
  std::vector<uint8_t> handshake_;   // the ClientHello message as reassembled so far
  ClientHello hello_;
};

// Parses one complete ClientHello handshake body (the bytes after the 4-byte
// handshake header). On success fills `out` (its record fields untouched) and
// returns an empty string; otherwise returns why it is malformed. Exposed for
// tests and fuzzing; ClientHelloSniffer uses it.
std::string_view parse_client_hello_body(std::span<const uint8_t> body, ClientHello& out);

}  // namespace sluice::sniff
