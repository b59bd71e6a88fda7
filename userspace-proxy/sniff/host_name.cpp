#include "userspace-proxy/sniff/host_name.h"

#include <arpa/inet.h>

#include <cstring>

#include "userspace-proxy/sniff/ascii.h"

namespace sluice::sniff {
namespace {

bool is_dotted_quad(std::string_view text) {
  char copy[16];
  if (text.size() >= sizeof(copy)) return false;
  std::memcpy(copy, text.data(), text.size());
  copy[text.size()] = '\0';
  in_addr addr;
  return inet_pton(AF_INET, copy, &addr) == 1;  // glibc refuses leading zeros
}

}  // namespace

std::size_t normalize_host_name(std::string_view in, char* out, HostKind* kind) {
  if (!in.empty() && in.back() == '.') in.remove_suffix(1);
  if (in.empty() || in.size() > kMaxHostNameLength) return 0;

  std::size_t label_len = 0;
  bool last_label_numeric = true;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == '.') {
      if (label_len == 0) return 0;  // empty label: "a..b" or ".a"
      label_len = 0;
      last_label_numeric = true;
      out[i] = '.';
      continue;
    }
    if (!(ascii::is_alpha(c) || ascii::is_digit(c) || c == '-' || c == '_')) return 0;
    if (++label_len > 63) return 0;
    if (!ascii::is_digit(c)) last_label_numeric = false;
    out[i] = ascii::to_lower(static_cast<char>(c));
  }
  if (label_len == 0) return 0;

  HostKind k = HostKind::kName;
  if (last_label_numeric) {
    if (!is_dotted_quad(in)) return 0;
    k = HostKind::kIpv4;
  }
  if (kind != nullptr) *kind = k;
  return in.size();
}

bool is_ipv6_literal(std::string_view text) {
  char copy[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(copy)) return false;
  std::memcpy(copy, text.data(), text.size());
  copy[text.size()] = '\0';
  in6_addr addr;
  return inet_pton(AF_INET6, copy, &addr) == 1;
}

}  // namespace sluice::sniff
