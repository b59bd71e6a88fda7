#include "userspace-proxy/sniff/http_fields.h"

#include <algorithm>
#include <cstring>

namespace sluice::sniff::detail {
namespace {

// The head buffer starts at kInitialCapacity; clear() returns buffers grown
// beyond kRetainedCapacity to the allocator.
constexpr std::size_t kInitialCapacity = 2048;
constexpr std::size_t kRetainedCapacity = 16 * 1024;

}  // namespace

std::optional<std::string_view> find_header(std::span<const HeaderField> headers, std::string_view name) {
  for (const HeaderField& f : headers) {
    if (ascii::iequals(f.name, name)) return f.value;
  }
  return std::nullopt;
}

std::size_t HeadBuffer::append(std::string_view bytes, std::size_t max_bytes) {
  if (bytes_.capacity() == 0) {
    // One allocation covers a typical head; clear() keeps it for the next.
    bytes_.reserve(std::min(max_bytes, kInitialCapacity));
    field_offsets_.reserve(16);
    fields_.reserve(16);
  }
  const std::size_t before = bytes_.size();
  const std::size_t room = max_bytes > before ? max_bytes - before : 0;
  const std::size_t take = std::min(room, bytes.size());
  bytes_.insert(bytes_.end(), bytes.data(), bytes.data() + take);
  return take;
}

void HeadBuffer::clear() {
  bytes_.clear();
  if (bytes_.capacity() > kRetainedCapacity) bytes_.shrink_to_fit();
  field_offsets_.clear();
  fields_.clear();
}

std::optional<HeadBuffer::Line> HeadBuffer::line_at(std::size_t line_begin, std::size_t from) const {
  const void* lf = std::memchr(bytes_.data() + from, '\n', bytes_.size() - from);
  if (lf == nullptr) return std::nullopt;
  const auto lf_at = static_cast<std::size_t>(static_cast<const char*>(lf) - bytes_.data());
  const bool crlf = lf_at > line_begin && bytes_[lf_at - 1] == '\r';
  return Line{crlf ? lf_at - 1 : lf_at, lf_at + 1, !crlf};
}

void HeadBuffer::add_field(const HeaderField& field) {
  field_offsets_.push_back({static_cast<uint32_t>(field.name.data() - bytes_.data()),
                            static_cast<uint32_t>(field.name.size()),
                            static_cast<uint32_t>(field.value.data() - bytes_.data()),
                            static_cast<uint32_t>(field.value.size())});
}

std::span<const HeaderField> HeadBuffer::finish(std::size_t head_end) {
  bytes_.resize(head_end);
  fields_.clear();
  for (const FieldOffsets& f : field_offsets_) {
    fields_.push_back({view(f.name_begin, f.name_size), view(f.value_begin, f.value_size)});
  }
  return fields_;
}

std::string_view parse_field_line(std::string_view line, bool first_field,
                                  std::string_view whitespace_after_start_line, HeaderField& field) {
  if (ascii::is_ows(static_cast<unsigned char>(line.front()))) {
    // RFC 9112 §5.2 (obs-fold) and §2.2 (whitespace after the start-line).
    return first_field ? whitespace_after_start_line : "obsolete line folding in header field";
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return "header line without a colon";
  const std::string_view name = line.substr(0, colon);
  if (name.empty()) return "empty header field name";
  for (char c : name) {
    if (!ascii::is_tchar(static_cast<unsigned char>(c))) {
      // RFC 9112 §5.1: whitespace before the colon MUST be rejected (with 400
      // in a request; a proxy MUST remove it from a response, and refusing is
      // the stricter choice).
      return ascii::is_ows(static_cast<unsigned char>(c)) ? "whitespace between header field name and colon"
                                                          : "invalid character in header field name";
    }
  }
  const std::string_view value = ascii::trim_ows(line.substr(colon + 1));
  for (char c : value) {
    if (!ascii::is_field_value_char(static_cast<unsigned char>(c))) return "invalid character in header field value";
  }
  field = {name, value};
  return {};
}

std::string_view merge_content_length(std::string_view value, std::optional<uint64_t>& merged) {
  std::size_t elements = 0;
  std::string_view error;
  ascii::for_each_list_element(value, [&](std::string_view element) {
    ++elements;
    uint64_t n = 0;
    for (char c : element) {
      if (!ascii::is_digit(static_cast<unsigned char>(c))) {
        error = "invalid Content-Length value";
        return false;
      }
      const auto digit = static_cast<uint64_t>(c - '0');
      if (n > (UINT64_MAX - digit) / 10) {
        error = "Content-Length value overflows";
        return false;
      }
      n = n * 10 + digit;
    }
    if (merged.has_value() && *merged != n) {
      error = "conflicting Content-Length values";
      return false;
    }
    merged = n;
    return true;
  });
  if (error.empty() && elements == 0) error = "empty Content-Length value";
  return error;
}

}  // namespace sluice::sniff::detail
