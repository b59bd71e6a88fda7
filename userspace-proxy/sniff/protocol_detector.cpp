#include "userspace-proxy/sniff/protocol_detector.h"

#include <algorithm>

namespace sluice::sniff {

std::string_view to_string(DetectedProtocol protocol) {
  switch (protocol) {
    case DetectedProtocol::kNeedMore: return "need-more";
    case DetectedProtocol::kTls: return "tls";
    case DetectedProtocol::kHttp1: return "http/1.x";
    case DetectedProtocol::kHttp2: return "h2c";
    case DetectedProtocol::kOpaque: return "tcp";
  }
  return "?";
}

ProtocolDetector::ProtocolDetector(HttpLimits http_limits, std::size_t max_tls_handshake_bytes)
    : tls_(max_tls_handshake_bytes), http_(http_limits) {}

Detection ProtocolDetector::decide(DetectedProtocol protocol, std::string_view reason) {
  result_ = {protocol, reason};
  return result_;
}

Detection ProtocolDetector::feed(std::string_view bytes) {
  if (result_.protocol != DetectedProtocol::kNeedMore || bytes.empty()) return result_;
  bytes_seen_ += bytes.size();
  if (candidate_ == Candidate::kUnknown) {
    candidate_ = static_cast<unsigned char>(bytes.front()) == 0x16 ? Candidate::kTls : Candidate::kHttp;
  }

  if (candidate_ == Candidate::kTls) {
    switch (tls_.feed(bytes)) {
      case TlsSniffStatus::kNeedMore: return result_;
      case TlsSniffStatus::kDone: return decide(DetectedProtocol::kTls);
      // A broken ClientHello gets what Envoy gives a connection whose TLS
      // inspector found no SNI: the opaque TCP path, policed by IP:port.
      case TlsSniffStatus::kNotTls:
      case TlsSniffStatus::kInvalid: return decide(DetectedProtocol::kOpaque, tls_.error());
    }
    return result_;
  }

  if (preface_possible_) {
    const std::size_t n = std::min(bytes.size(), kHttp2Preface.size() - preface_matched_);
    if (bytes.substr(0, n) == kHttp2Preface.substr(preface_matched_, n)) {
      preface_matched_ += n;
      if (preface_matched_ == kHttp2Preface.size()) return decide(DetectedProtocol::kHttp2);
    } else {
      preface_possible_ = false;
    }
  }
  switch (http_.feed(bytes).status) {
    case HttpParseStatus::kNeedMore: return result_;
    case HttpParseStatus::kDone:
    case HttpParseStatus::kInvalid: return decide(DetectedProtocol::kHttp1);
    case HttpParseStatus::kNotHttp:
      if (preface_possible_) return result_;  // "PRI * HTTP/2.0": wait for the rest of the preface
      return decide(DetectedProtocol::kOpaque, http_.error().reason);
  }
  return result_;
}

Detection ProtocolDetector::on_timeout() {
  if (result_.protocol != DetectedProtocol::kNeedMore) return result_;
  return decide(DetectedProtocol::kOpaque, "protocol detection timed out");
}

}  // namespace sluice::sniff
