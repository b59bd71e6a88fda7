// Character classes and small ASCII helpers the sniffers share. HTTP and TLS
// are defined over octets, not locales: nothing here consults <cctype>, whose
// answers depend on the C locale and on the signedness of char.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::sniff::ascii {

constexpr bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
constexpr bool is_hex_digit(unsigned char c) {
  return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}
constexpr int hex_value(unsigned char c) {
  return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

// RFC 9110 §5.6.2 tchar: the characters of method names, header names and
// transfer-coding names.
constexpr bool is_tchar(unsigned char c) {
  if (is_digit(c) || is_alpha(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

// RFC 9110 §5.5 field-vchar plus the SP/HTAB allowed inside a field value.
// Everything else (CTLs including bare CR, LF and NUL, and DEL) is rejected.
constexpr bool is_field_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

constexpr bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

constexpr char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  }
  return true;
}

constexpr std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each non-empty element of an RFC 9110 §5.6.1
// comma-separated list, OWS trimmed. Empty elements are skipped, as the RFC
// tells recipients to. Stops early (returning false) when fn returns false.
template <typename Fn>
constexpr bool for_each_list_element(std::string_view list, Fn&& fn) {
  while (true) {
    const std::size_t comma = list.find(',');
    const std::string_view element = trim_ows(list.substr(0, comma));
    if (!element.empty() && !fn(element)) return false;
    if (comma == std::string_view::npos) return true;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace sluice::sniff::ascii
