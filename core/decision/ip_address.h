// IP addresses and CIDR ranges as the interception rules use them: IPv4 and
// IPv6, with IPv4-mapped IPv6 (::ffff:a.b.c.d) folded into IPv4, because a
// dual-stack socket connecting to such an address sends IPv4 packets and
// Istio's iptables/ip6tables split decides it by the IPv4 rules.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::decision {

enum class Family : uint8_t { kV4, kV6 };

class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress v4(std::array<uint8_t, 4> bytes);
  static IpAddress v6(std::array<uint8_t, 16> bytes);
  // Dotted quad or RFC 4291 text (no zone, no brackets). IPv4-mapped IPv6
  // text stays IPv6 here; call unmapped() to fold it.
  static std::optional<IpAddress> parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::kV4; }
  bool is_v6() const { return family_ == Family::kV6; }
  size_t size() const { return is_v4() ? 4 : 16; }
  // Network order; only the first size() bytes are meaningful.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }

  bool is_v4_mapped() const;
  // ::ffff:a.b.c.d -> a.b.c.d; anything else unchanged.
  IpAddress unmapped() const;
  bool is_loopback() const;  // 127.0.0.0/8 or ::1 (after unmapping)
  bool is_unspecified() const;

  std::string str() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  Family family_ = Family::kV4;
  std::array<uint8_t, 16> bytes_{};
};

struct CidrParseResult;

class Cidr {
 public:
  Cidr() = default;
  // Host bits are cleared.
  Cidr(IpAddress base, uint8_t prefix_len);

  using ParseResult = struct CidrParseResult;
  // "10.0.0.0/8", "2001:db8::/32", a bare address (a /32 or /128), and
  // IPv4-mapped IPv6 ranges of prefix >= 96 ("::ffff:10.0.0.0/104" is
  // 10.0.0.0/8). "*" is not a CIDR: callers treat it as "every address".
  static ParseResult parse(std::string_view text);

  const IpAddress& base() const { return base_; }
  uint8_t prefix_len() const { return prefix_len_; }
  Family family() const { return base_.family(); }
  // Same family only: callers unmap IPv4-mapped addresses first.
  bool contains(const IpAddress& address) const;

  std::string str() const;

  friend bool operator==(const Cidr&, const Cidr&) = default;

 private:
  IpAddress base_;
  uint8_t prefix_len_ = 0;
};

struct CidrParseResult {
  std::optional<Cidr> cidr;
  std::string error;           // why it is not a CIDR, when cidr is empty
  bool had_host_bits = false;  // "10.1.2.3/8": accepted as 10.0.0.0/8
};

}  // namespace sluice::decision
