#include "userspace-proxy/admin/prometheus_text.h"

#include <charconv>
#include <cmath>

namespace sluice::admin {
namespace {

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

// Length of the longest prefix of text[i..] that is a well-formed UTF-8
// sequence or the start of one (Unicode Table 3-7), and whether it is
// complete. An ill-formed sequence is replaced as one U+FFFD per maximal
// subpart, the practice Unicode recommends (W3C/WHATWG decoders do the same).
struct Utf8Step {
  std::size_t length;
  bool valid;
};

Utf8Step utf8_step(std::string_view text, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return {1, true};
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return {1, false};
  }
  std::size_t n = 1;
  for (std::size_t k = 0; k < need; ++k) {
    if (i + n >= text.size()) return {n, false};
    unsigned char d = b(i + n);
    unsigned char l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
    if (d < l || d > h) return {n, false};
    ++n;
  }
  return {n, true};
}

}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty() || !(name_start(name[0]) || name[0] == ':')) return false;
  for (char c : name) {
    if (!name_char(c) && c != ':') return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || !name_start(name[0]) || name.starts_with("__")) return false;
  for (char c : name) {
    if (!name_char(c)) return false;
  }
  return true;
}

void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

void append_help_text(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

void append_number(std::string& out, uint64_t value) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, r.ptr);
}

void append_number(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  constexpr double kExact = 9007199254740992.0;  // 2^53: every integer below is a double
  if (value == std::trunc(value) && std::fabs(value) < kExact) {
    if (value < 0) out += '-';
    append_number(out, static_cast<uint64_t>(std::fabs(value)));
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), value);  // shortest round-trip form
  out.append(buf, r.ptr);
}

bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    Utf8Step s = utf8_step(text, i);
    if (!s.valid) return false;
    i += s.length;
  }
  return true;
}

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    Utf8Step s = utf8_step(text, i);
    if (s.valid) {
      out.append(text.substr(i, s.length));
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += s.length;
  }
  return out;
}

}  // namespace sluice::admin
