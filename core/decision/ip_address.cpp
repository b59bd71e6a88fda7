#include "core/decision/ip_address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace sluice::decision {

IpAddress IpAddress::v4(std::array<uint8_t, 4> bytes) {
  IpAddress a;
  a.family_ = Family::kV4;
  std::memcpy(a.bytes_.data(), bytes.data(), 4);
  return a;
}

IpAddress IpAddress::v6(std::array<uint8_t, 16> bytes) {
  IpAddress a;
  a.family_ = Family::kV6;
  a.bytes_ = bytes;
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  std::array<uint8_t, 16> bytes{};
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, bytes.data()) != 1) return std::nullopt;
    return v4({bytes[0], bytes[1], bytes[2], bytes[3]});
  }
  if (inet_pton(AF_INET6, buf, bytes.data()) != 1) return std::nullopt;
  return v6(bytes);
}

bool IpAddress::is_v4_mapped() const {
  if (!is_v6()) return false;
  for (int i = 0; i < 10; ++i) {
    if (bytes_[i] != 0) return false;
  }
  return bytes_[10] == 0xff && bytes_[11] == 0xff;
}

IpAddress IpAddress::unmapped() const {
  if (!is_v4_mapped()) return *this;
  return v4({bytes_[12], bytes_[13], bytes_[14], bytes_[15]});
}

bool IpAddress::is_loopback() const {
  IpAddress a = unmapped();
  if (a.is_v4()) return a.bytes_[0] == 127;
  for (int i = 0; i < 15; ++i) {
    if (a.bytes_[i] != 0) return false;
  }
  return a.bytes_[15] == 1;
}

bool IpAddress::is_unspecified() const {
  for (size_t i = 0; i < size(); ++i) {
    if (bytes_[i] != 0) return false;
  }
  return true;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf));
  return buf;
}

namespace {

// Clears every bit after the first prefix_len bits; returns whether any was set.
bool mask_host_bits(std::array<uint8_t, 16>& bytes, size_t size, unsigned prefix_len) {
  bool had = false;
  for (size_t i = 0; i < size; ++i) {
    unsigned bit0 = static_cast<unsigned>(i) * 8;
    uint8_t keep;
    if (bit0 + 8 <= prefix_len) {
      keep = 0xff;
    } else if (bit0 >= prefix_len) {
      keep = 0;
    } else {
      keep = static_cast<uint8_t>(0xff << (8 - (prefix_len - bit0)));
    }
    if (bytes[i] & ~keep) had = true;
    bytes[i] &= keep;
  }
  return had;
}

}  // namespace

Cidr::Cidr(IpAddress base, uint8_t prefix_len) : prefix_len_(prefix_len) {
  std::array<uint8_t, 16> bytes = base.bytes();
  mask_host_bits(bytes, base.size(), prefix_len);
  base_ = base.is_v4() ? IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]})
                       : IpAddress::v6(bytes);
}

Cidr::ParseResult Cidr::parse(std::string_view text) {
  ParseResult result;
  std::string_view addr_text = text;
  std::optional<unsigned> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr_text = text.substr(0, slash);
    std::string_view len_text = text.substr(slash + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), value);
    if (len_text.empty() || ec != std::errc() || end != len_text.data() + len_text.size()) {
      result.error = "prefix length \"" + std::string(len_text) + "\" is not a number";
      return result;
    }
    prefix = value;
  }
  std::optional<IpAddress> address = IpAddress::parse(addr_text);
  if (!address) {
    result.error = "\"" + std::string(addr_text) + "\" is not an IPv4 or IPv6 address";
    return result;
  }
  unsigned max_len = address->is_v4() ? 32 : 128;
  unsigned len = prefix.value_or(max_len);
  if (len > max_len) {
    result.error = "prefix length " + std::to_string(len) + " is larger than " +
                   std::to_string(max_len) + (address->is_v4() ? " (IPv4)" : " (IPv6)");
    return result;
  }
  if (address->is_v4_mapped()) {
    if (len < 96) {
      result.error = "IPv4-mapped range needs a prefix length of at least 96 (::ffff:0:0/96 is all of IPv4)";
      return result;
    }
    address = address->unmapped();
    len -= 96;
  }
  std::array<uint8_t, 16> bytes = address->bytes();
  result.had_host_bits = mask_host_bits(bytes, address->size(), len);
  result.cidr = Cidr(*address, static_cast<uint8_t>(len));
  return result;
}

bool Cidr::contains(const IpAddress& address) const {
  if (address.family() != base_.family()) return false;
  std::array<uint8_t, 16> bytes = address.bytes();
  mask_host_bits(bytes, address.size(), prefix_len_);
  return std::memcmp(bytes.data(), base_.bytes().data(), address.size()) == 0;
}

std::string Cidr::str() const { return base_.str() + "/" + std::to_string(prefix_len_); }

}  // namespace sluice::decision
