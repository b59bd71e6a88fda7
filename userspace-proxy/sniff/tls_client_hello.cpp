#include "userspace-proxy/sniff/tls_client_hello.h"

#include <algorithm>
#include <bitset>

#include "userspace-proxy/sniff/host_name.h"

namespace sluice::sniff {
namespace {

constexpr uint8_t kContentTypeHandshake = 22;
constexpr uint8_t kHandshakeTypeClientHello = 1;
constexpr std::size_t kRecordHeaderBytes = 5;
constexpr std::size_t kHandshakeHeaderBytes = 4;
constexpr std::size_t kMaxRecordPayload = 1 << 14;  // RFC 8446 §5.1

constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtEarlyData = 42;
constexpr uint16_t kExtSupportedVersions = 43;
constexpr uint16_t kExtEncryptedClientHello = 0xfe0d;
constexpr uint8_t kNameTypeHostName = 0;

// Bounds-checked big-endian reader over a byte span. Every accessor either
// succeeds entirely or returns false without moving.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}

  std::size_t remaining() const { return data_.size(); }
  bool empty() const { return data_.empty(); }

  bool u8(uint8_t& v) {
    if (data_.size() < 1) return false;
    v = data_[0];
    data_ = data_.subspan(1);
    return true;
  }
  bool u16(uint16_t& v) {
    if (data_.size() < 2) return false;
    v = static_cast<uint16_t>((data_[0] << 8) | data_[1]);
    data_ = data_.subspan(2);
    return true;
  }
  bool bytes(std::size_t n, std::span<const uint8_t>& out) {
    if (data_.size() < n) return false;
    out = data_.first(n);
    data_ = data_.subspan(n);
    return true;
  }
  // A TLS opaque vector with a 1- or 2-byte length prefix.
  bool vec8(std::span<const uint8_t>& out) {
    if (data_.size() < 1 || data_.size() - 1 < data_[0]) return false;
    const std::size_t n = data_[0];
    out = data_.subspan(1, n);
    data_ = data_.subspan(1 + n);
    return true;
  }
  bool vec16(std::span<const uint8_t>& out) {
    if (data_.size() < 2) return false;
    const std::size_t n = (std::size_t{data_[0]} << 8) | data_[1];
    if (data_.size() - 2 < n) return false;
    out = data_.subspan(2, n);
    data_ = data_.subspan(2 + n);
    return true;
  }

 private:
  std::span<const uint8_t> data_;
};

std::string_view as_chars(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// RFC 6066 §3. Name types other than host_name are skipped: the RFC requires
// every future type to start with a 16-bit length, precisely so that old
// parsers can step over them.
std::string_view parse_server_name(std::span<const uint8_t> data, ClientHello& out) {
  Reader ext(data);
  std::span<const uint8_t> list_bytes;
  if (!ext.vec16(list_bytes) || !ext.empty()) return "server_name list length does not match the extension";
  if (list_bytes.empty()) return "empty server_name list";
  Reader list(list_bytes);
  std::bitset<256> seen_types;
  while (!list.empty()) {
    uint8_t name_type = 0;
    std::span<const uint8_t> name;
    if (!list.u8(name_type) || !list.vec16(name)) return "server_name entry overruns its list";
    if (seen_types.test(name_type)) {
      return name_type == kNameTypeHostName ? "more than one host_name in server_name"
                                            : "repeated name type in server_name";
    }
    seen_types.set(name_type);
    if (name_type != kNameTypeHostName) continue;
    if (name.empty()) return "empty host_name in server_name";
    char normalized[kMaxHostNameLength + 1];
    if (name.size() > kMaxHostNameLength + 1) return "host_name in server_name is too long";
    HostKind kind = HostKind::kNone;
    const std::size_t len = normalize_host_name(as_chars(name), normalized, &kind);
    if (len == 0) return "host_name in server_name is not a valid DNS name";
    out.sni.assign(normalized, len);
  }
  return {};
}

// RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, each <1..2^8-1>.
std::string_view parse_alpn(std::span<const uint8_t> data, ClientHello& out) {
  Reader ext(data);
  std::span<const uint8_t> list_bytes;
  if (!ext.vec16(list_bytes) || !ext.empty()) return "ALPN list length does not match the extension";
  if (list_bytes.empty()) return "empty ALPN list";
  Reader list(list_bytes);
  while (!list.empty()) {
    std::span<const uint8_t> name;
    if (!list.vec8(name)) return "ALPN protocol name overruns its list";
    if (name.empty()) return "empty ALPN protocol name";
    out.alpn.emplace_back(as_chars(name));
  }
  return {};
}

// RFC 8446 §4.2.1: ProtocolVersion versions<2..254> in a ClientHello.
std::string_view parse_supported_versions(std::span<const uint8_t> data, ClientHello& out) {
  Reader ext(data);
  std::span<const uint8_t> versions;
  if (!ext.vec8(versions) || !ext.empty()) return "supported_versions length does not match the extension";
  if (versions.size() < 2 || versions.size() % 2 != 0) return "bad supported_versions list length";
  for (std::size_t i = 0; i < versions.size(); i += 2) {
    out.supported_versions.push_back(static_cast<uint16_t>((versions[i] << 8) | versions[i + 1]));
  }
  return {};
}

}  // namespace

std::string_view to_string(TlsSniffStatus status) {
  switch (status) {
    case TlsSniffStatus::kNeedMore: return "need-more";
    case TlsSniffStatus::kDone: return "done";
    case TlsSniffStatus::kNotTls: return "not-tls";
    case TlsSniffStatus::kInvalid: return "invalid";
  }
  return "?";
}

uint16_t ClientHello::max_offered_version() const {
  uint16_t best = 0;
  for (uint16_t v : supported_versions) {
    if (!is_grease(v)) best = std::max(best, v);
  }
  return best != 0 ? best : legacy_version;
}

std::string_view parse_client_hello_body(std::span<const uint8_t> body, ClientHello& out) {
  Reader r(body);
  std::span<const uint8_t> skipped;
  if (!r.u16(out.legacy_version)) return "ClientHello too short for legacy_version";
  if ((out.legacy_version >> 8) != 3) return "implausible ClientHello legacy_version";
  if (!r.bytes(32, skipped)) return "ClientHello too short for random";
  if (!r.vec8(skipped)) return "session_id overruns the ClientHello";
  if (skipped.size() > 32) return "session_id longer than 32 bytes";
  if (!r.vec16(skipped)) return "cipher_suites overruns the ClientHello";
  if (skipped.size() < 2 || skipped.size() % 2 != 0) return "bad cipher_suites length";
  if (!r.vec8(skipped)) return "compression_methods overruns the ClientHello";
  if (skipped.empty()) return "empty compression_methods";
  if (r.empty()) return {};  // pre-TLS 1.2 clients may send no extensions block at all

  std::span<const uint8_t> extensions_bytes;
  if (!r.vec16(extensions_bytes) || !r.empty()) {
    return "extensions length does not match the ClientHello length";
  }
  // RFC 8446 §4.2: no extension type may appear twice in one block.
  std::bitset<65536> seen;
  Reader extensions(extensions_bytes);
  while (!extensions.empty()) {
    uint16_t type = 0;
    std::span<const uint8_t> data;
    if (!extensions.u16(type) || !extensions.vec16(data)) return "extension overruns the extensions block";
    if (seen.test(type)) {
      return type == kExtServerName ? "duplicate server_name extension" : "duplicate extension";
    }
    seen.set(type);
    std::string_view error;
    switch (type) {
      case kExtServerName:
        out.has_server_name_extension = true;
        error = parse_server_name(data, out);
        break;
      case kExtAlpn:
        error = parse_alpn(data, out);
        break;
      case kExtSupportedVersions:
        error = parse_supported_versions(data, out);
        break;
      case kExtEncryptedClientHello:
        out.offers_ech = true;
        break;
      case kExtEarlyData:
        out.offers_early_data = true;
        break;
      default:
        break;
    }
    if (!error.empty()) return error;
  }
  return {};
}

ClientHelloSniffer::ClientHelloSniffer(std::size_t max_handshake_bytes)
    : max_handshake_bytes_(std::max<std::size_t>(max_handshake_bytes, kHandshakeHeaderBytes)) {}

void ClientHelloSniffer::reset() {
  status_ = TlsSniffStatus::kNeedMore;
  error_ = {};
  bytes_seen_ = 0;
  record_header_len_ = 0;
  record_remaining_ = 0;
  record_count_ = 0;
  handshake_total_ = 0;
  handshake_.clear();
  hello_ = ClientHello{};
}

TlsSniffStatus ClientHelloSniffer::fail(TlsSniffStatus status, std::string_view why) {
  status_ = status;
  error_ = why;
  handshake_.clear();
  return status;
}

TlsSniffStatus ClientHelloSniffer::on_record_header_byte(uint8_t byte) {
  const bool first = record_count_ == 0;
  // The first record decides whether this is TLS at all; once it is, a bad
  // later header means a broken ClientHello, not another protocol.
  const TlsSniffStatus wrong = first ? TlsSniffStatus::kNotTls : TlsSniffStatus::kInvalid;
  record_header_[record_header_len_++] = byte;
  switch (record_header_len_) {
    case 1:
      if (byte != kContentTypeHandshake) {
        return fail(wrong, first ? "first byte is not a TLS handshake record"
                                 : "a non-handshake record interrupts the ClientHello");
      }
      break;
    case 2:
      if (byte != 3) return fail(wrong, "implausible TLS record version");
      break;
    case 3:
      if (byte > 4) return fail(wrong, "implausible TLS record version");
      break;
    case kRecordHeaderBytes: {
      const std::size_t length = (std::size_t{record_header_[3]} << 8) | record_header_[4];
      // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
      if (length == 0) return fail(TlsSniffStatus::kInvalid, "empty handshake record");
      if (length > kMaxRecordPayload) return fail(TlsSniffStatus::kInvalid, "TLS record longer than 2^14 bytes");
      if (first) hello_.record_version = static_cast<uint16_t>((record_header_[1] << 8) | record_header_[2]);
      record_remaining_ = length;
      record_header_len_ = 0;
      ++record_count_;
      break;
    }
    default:
      break;
  }
  return TlsSniffStatus::kNeedMore;
}

std::size_t ClientHelloSniffer::on_handshake_bytes(std::span<const uint8_t> bytes) {
  std::size_t used = 0;
  if (handshake_total_ == 0) {
    used = std::min(kHandshakeHeaderBytes - handshake_.size(), bytes.size());
    handshake_.insert(handshake_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(used));
    if (handshake_.size() < kHandshakeHeaderBytes) return used;
    if (handshake_[0] != kHandshakeTypeClientHello) {
      fail(TlsSniffStatus::kInvalid, "first handshake message is not a ClientHello");
      return used;
    }
    const std::size_t body = (std::size_t{handshake_[1]} << 16) | (std::size_t{handshake_[2]} << 8) | handshake_[3];
    if (body > max_handshake_bytes_ - kHandshakeHeaderBytes) {
      fail(TlsSniffStatus::kInvalid, "ClientHello exceeds the handshake size limit");
      return used;
    }
    handshake_total_ = kHandshakeHeaderBytes + body;
    handshake_.reserve(handshake_total_);
  }
  const std::size_t want = std::min(handshake_total_ - handshake_.size(), bytes.size() - used);
  handshake_.insert(handshake_.end(), bytes.begin() + static_cast<std::ptrdiff_t>(used),
                    bytes.begin() + static_cast<std::ptrdiff_t>(used + want));
  used += want;
  if (handshake_.size() < handshake_total_) return used;

  const std::string_view error =
      parse_client_hello_body(std::span<const uint8_t>(handshake_).subspan(kHandshakeHeaderBytes), hello_);
  if (!error.empty()) {
    fail(TlsSniffStatus::kInvalid, error);
    return used;
  }
  status_ = TlsSniffStatus::kDone;
  return used;
}

TlsSniffStatus ClientHelloSniffer::feed(std::span<const uint8_t> bytes) {
  std::size_t i = 0;
  while (status_ == TlsSniffStatus::kNeedMore && i < bytes.size()) {
    if (record_remaining_ == 0) {
      on_record_header_byte(bytes[i++]);
      continue;
    }
    const std::size_t n = std::min(record_remaining_, bytes.size() - i);
    const std::size_t used = on_handshake_bytes(bytes.subspan(i, n));
    record_remaining_ -= n;
    i += n;
    if (status_ == TlsSniffStatus::kDone) {
      hello_.stream_bytes = bytes_seen_ + i - n + used;
      hello_.record_count = record_count_;
    }
  }
  bytes_seen_ += i;
  return status_;
}

}  // namespace sluice::sniff
