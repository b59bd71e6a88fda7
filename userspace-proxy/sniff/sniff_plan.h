// Which sniffer a port's declared protocol calls for. The protocol string is
// a ServiceEntry port's `protocol` (or the prefix of a port name / an
// appProtocol, as Istio reads them), compared case-insensitively.
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::sniff {

enum class SniffMode : uint8_t {
  // Opaque TCP: relay at once, never wait for client bytes (so server-first
  // protocols such as MySQL work). TCP, MONGO, MYSQL, REDIS.
  kNone,
  // Read the ClientHello for SNI (ClientHelloSniffer). HTTPS, TLS. A
  // connection that turns out not to be TLS, or malformed TLS, has no SNI and
  // is handled as opaque TCP by destination IP:port, as Envoy does.
  kTlsClientHello,
  // Parse HTTP/1.x request heads (HttpRequestParser); kNotHttp there is a
  // protocol error on this port. HTTP, HTTP2, GRPC, GRPC-Web, HTTP_PROXY.
  kHttp,
  // Protocol unset or unknown to Istio: ProtocolDetector with a timeout.
  kDetect,
  // UDP: declared but never proxied (not intercepted as TCP).
  kUnsupported,
};

std::string_view to_string(SniffMode mode);

struct SniffPlan {
  SniffMode mode = SniffMode::kDetect;
  // For kHttp/kDetect: an h2c prior-knowledge preface is HTTP/2 rather than
  // an error (Istio's HTTP listeners use Envoy's AUTO codec).
  bool http2_prior_knowledge = false;
  // For kHttp: a forward proxy's absolute-form targets and CONNECT are the
  // expected request shapes (HTTP_PROXY).
  bool forward_proxy = false;
  // Istio's spelling of the protocol; empty when unset, "UNKNOWN" otherwise.
  std::string_view protocol;
};

SniffPlan plan_for_port_protocol(std::string_view istio_protocol);

}  // namespace sluice::sniff
