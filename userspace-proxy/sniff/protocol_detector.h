// Protocol detection for ports whose protocol is not declared (Istio's
// "protocol sniffing"): a TLS ClientHello, an HTTP/1.x request head, the
// HTTP/2 prior-knowledge preface, or else opaque TCP.
//
// The first byte picks the candidate (0x16 can only be TLS; HTTP methods and
// the h2 preface start with a token character), then the matching parser runs
// to a verdict. The event loop owns the detection timer and calls
// on_timeout() when it fires: whatever is still undecided becomes opaque TCP,
// as Envoy's listener filters do with continue_on_listener_filters_timeout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "userspace-proxy/sniff/http_request_head.h"
#include "userspace-proxy/sniff/tls_client_hello.h"

namespace sluice::sniff {

enum class DetectedProtocol : uint8_t {
  kNeedMore,  // undecided: feed more, or call on_timeout()
  kTls,       // tls().client_hello() holds SNI and ALPN
  kHttp1,     // http().status() is kDone (route on head()) or kInvalid (answer
              // http().error().status and close)
  kHttp2,     // the 24-byte h2c prior-knowledge preface
  kOpaque,    // plain TCP: policy by destination IP:port only (reason says why)
};

std::string_view to_string(DetectedProtocol protocol);

struct Detection {
  DetectedProtocol protocol = DetectedProtocol::kNeedMore;
  std::string_view reason;  // for kOpaque: why (a static string); else empty
};

// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (RFC 9113 §3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

class ProtocolDetector {
 public:
  explicit ProtocolDetector(HttpLimits http_limits = {},
                            std::size_t max_tls_handshake_bytes = ClientHelloSniffer::kDefaultMaxHandshakeBytes);
  ProtocolDetector(const ProtocolDetector&) = delete;
  ProtocolDetector& operator=(const ProtocolDetector&) = delete;

  // Feed the connection's first bytes as they arrive (the caller keeps and
  // forwards them; detection consumes nothing). Final once not kNeedMore.
  Detection feed(std::string_view bytes);
  Detection feed(std::span<const uint8_t> bytes) {
    return feed(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  // The detection timeout fired: an undecided connection becomes opaque.
  Detection on_timeout();

  const Detection& result() const { return result_; }
  const ClientHelloSniffer& tls() const { return tls_; }
  // Mutable so the loop can go on with this parser (reset() it for the next
  // pipelined request) once kHttp1 is decided.
  HttpRequestParser& http() { return http_; }
  const HttpRequestParser& http() const { return http_; }
  std::size_t bytes_seen() const { return bytes_seen_; }

 private:
  enum class Candidate : uint8_t { kUnknown, kTls, kHttp };

  Detection decide(DetectedProtocol protocol, std::string_view reason = {});

  ClientHelloSniffer tls_;
  HttpRequestParser http_;
  Candidate candidate_ = Candidate::kUnknown;
  std::size_t preface_matched_ = 0;
  bool preface_possible_ = true;
  std::size_t bytes_seen_ = 0;
  Detection result_;
};

}  // namespace sluice::sniff
