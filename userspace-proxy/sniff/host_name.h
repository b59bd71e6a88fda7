// Host names as the sniffers report them: the SNI of a ClientHello and the
// host of an HTTP authority. Policy matches these against ServiceEntry hosts,
// so they are normalized once here (ASCII lower case, one trailing dot
// dropped) and anything a DNS name cannot contain is refused, rather than
// letting "evil.com\0.good.com" or "a b" reach a matcher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::sniff {

enum class HostKind : uint8_t { kNone, kName, kIpv4, kIpv6 };

// RFC 1035 §2.3.4: 253 characters of text once the trailing dot is gone.
inline constexpr std::size_t kMaxHostNameLength = 253;

// Validates `in` as a DNS name (labels of 1..63 letters, digits, '-' or '_';
// at most kMaxHostNameLength characters after one optional trailing dot is
// dropped) and writes its lower-cased form to `out`, which must have room for
// in.size() characters. Returns the normalized length, or 0 when invalid.
//
// A name whose last label is all digits is accepted only as a canonical
// dotted-quad IPv4 address (kind kIpv4): "127.1" or "1.2.3.4.5" are refused,
// because resolvers disagree on whether such text is a name or an address.
std::size_t normalize_host_name(std::string_view in, char* out, HostKind* kind);

// RFC 4291 text form (no brackets, no zone identifier), via inet_pton.
bool is_ipv6_literal(std::string_view text);

}  // namespace sluice::sniff
