// libFuzzer target for the ClientHello sniffer, with an oracle: the verdict
// and every reported field must not depend on how the bytes are split into
// feeds or how the handshake is cut into TLS records.
//
// Each input is used twice:
//  1. as a raw client stream: fed whole, in two pieces cut at a
//     data-dependent offset, and (when short) byte by byte;
//  2. as a ClientHello body, wrapped into a handshake message and framed into
//     records of a data-dependent size, compared with one-record framing and
//     with parse_client_hello_body itself. This reaches the extension parsers
//     far more often than random record headers would.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "userspace-proxy/sniff/host_name.h"
#include "userspace-proxy/sniff/tls_client_hello.h"

namespace {

using sluice::sniff::ClientHello;
using sluice::sniff::ClientHelloSniffer;
using sluice::sniff::TlsSniffStatus;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "oracle violated: %s\n", what);
    std::abort();
  }
}

// Everything observable, as one comparable string.
std::string observe(const ClientHelloSniffer& s, bool with_stream_position) {
  std::string out(to_string(s.status()));
  out += '|';
  out += s.error();
  if (s.status() != TlsSniffStatus::kDone) return out;
  const ClientHello& h = s.client_hello();
  out += '|' + h.sni + '|' + std::to_string(h.legacy_version) + '|' + std::to_string(h.record_version) + '|';
  for (const std::string& a : h.alpn) out += a + ',';
  out += '|';
  for (uint16_t v : h.supported_versions) out += std::to_string(v) + ',';
  out += h.offers_ech ? "|ech" : "|";
  out += h.offers_early_data ? "|early" : "|";
  out += h.has_server_name_extension ? "|sn" : "|";
  if (with_stream_position) out += '|' + std::to_string(h.stream_bytes) + '|' + std::to_string(h.record_count);
  return out;
}

void check_hello_invariants(const ClientHelloSniffer& s, std::size_t fed) {
  check(s.bytes_seen() <= fed, "bytes_seen beyond input");
  if (s.status() != TlsSniffStatus::kDone) {
    check(!s.error().empty() || s.status() == TlsSniffStatus::kNeedMore, "verdict without a reason");
    return;
  }
  const ClientHello& h = s.client_hello();
  check(h.stream_bytes <= fed, "stream_bytes beyond input");
  if (!h.sni.empty()) {
    std::string again(h.sni.size(), '\0');
    sluice::sniff::HostKind kind;
    check(sluice::sniff::normalize_host_name(h.sni, again.data(), &kind) == h.sni.size() && again == h.sni,
          "SNI not normalized");
  }
}

std::string u16(std::size_t v) { return {static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)}; }

std::string records(std::string_view message, std::size_t chunk) {
  std::string out;
  while (!message.empty()) {
    const std::size_t n = std::min(chunk, message.size());
    out += std::string("\x16\x03\x01", 3) + u16(n);
    out.append(message.substr(0, n));
    message.remove_prefix(n);
  }
  return out;
}

void raw_stream(std::string_view input) {
  ClientHelloSniffer whole;
  whole.feed(input);
  check_hello_invariants(whole, input.size());
  const std::string expected = observe(whole, true);

  const std::size_t cut = input.empty() ? 0 : (static_cast<unsigned char>(input.back()) * 131u) % (input.size() + 1);
  ClientHelloSniffer split;
  split.feed(input.substr(0, cut));
  split.feed(input.substr(cut));
  check(observe(split, true) == expected, "whole vs split differ");

  if (input.size() <= 4096) {
    ClientHelloSniffer bytewise;
    for (char c : input) bytewise.feed(std::string_view(&c, 1));
    check(observe(bytewise, true) == expected, "whole vs byte-by-byte differ");
  }
}

void framed_body(std::string_view input) {
  if (input.size() < 2) return;
  const std::size_t chunk = 1 + static_cast<unsigned char>(input[0]) % 97;
  const std::string_view body = input.substr(1);
  if (body.size() + 4 > ClientHelloSniffer::kDefaultMaxHandshakeBytes) return;
  std::string message("\x01", 1);
  message += static_cast<char>((body.size() >> 16) & 0xff);
  message += u16(body.size());
  message.append(body);

  ClientHello direct;
  const std::string_view direct_error = sluice::sniff::parse_client_hello_body(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()), body.size()), direct);

  ClientHelloSniffer one;
  one.feed(records(message, 16384));
  check(one.status() == (direct_error.empty() ? TlsSniffStatus::kDone : TlsSniffStatus::kInvalid),
        "sniffer and body parser disagree");
  check(one.error() == direct_error, "sniffer and body parser give different reasons");
  if (direct_error.empty()) check(one.client_hello().sni == direct.sni, "SNI differs from body parser");

  ClientHelloSniffer many;
  const std::string framed = records(message, chunk);
  many.feed(framed);
  check_hello_invariants(many, framed.size());
  check(observe(many, false) == observe(one, false), "one record vs many records differ");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  raw_stream(input);
  framed_body(input);
  return 0;
}
