// Header fields of HTTP/1.x heads, and what the request-head and the
// response-head parsers share about them (RFC 9112 §2-§7, RFC 9110 §5-§8):
// the head buffer and the fields' places in it, the field-line syntax,
// Content-Length merging, Transfer-Encoding lists and Connection options.
//
// The parsers differ in their start-lines, in which line ends they accept
// (the request parser refuses a bare LF, the response parser reads it as a
// line end), in the order of their Transfer-Encoding rules and in what each
// refusal is answered with; those stay in each parser. What is in detail::
// is an implementation detail of the two parsers, not an API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "userspace-proxy/sniff/ascii.h"

namespace sluice::sniff {

struct HeaderField {
  std::string_view name;   // as received (compare case-insensitively)
  std::string_view value;  // leading and trailing whitespace removed
};

namespace detail {

// First field with this name (case-insensitive); nullopt when absent.
std::optional<std::string_view> find_header(std::span<const HeaderField> headers, std::string_view name);

// The bytes of the head being parsed, and where its fields are in them. The
// fields are kept as offsets while bytes are appended (the buffer may move)
// and become views once, when the head is complete.
class HeadBuffer {
 public:
  // Field positions are kept as 32-bit offsets: a head may not be larger.
  static constexpr std::size_t kMaxBytes = UINT32_MAX;

  // A line the buffer holds completely.
  struct Line {
    std::size_t end;   // one past its last byte, without the CRLF or bare LF
    std::size_t next;  // where the next line begins: one past the LF
    bool bare_lf;      // ended by an LF with no CR right before it
  };

  // Appends as much of bytes as keeps the buffer within max_bytes; returns
  // how many bytes it took. The first append after construction (or after
  // clear() let the capacity go) reserves room for a typical head.
  std::size_t append(std::string_view bytes, std::size_t max_bytes);
  // Empty, for the next head; keeps capacity up to a bound.
  void clear();

  const char* data() const { return bytes_.data(); }
  std::size_t size() const { return bytes_.size(); }
  char operator[](std::size_t i) const { return bytes_[i]; }
  std::string_view view(std::size_t begin, std::size_t size) const { return {bytes_.data() + begin, size}; }

  // The line beginning at line_begin, once its LF has arrived; the LF is
  // searched for from `from` on (line_begin <= from <= size()), the bytes
  // before it having been searched already.
  std::optional<Line> line_at(std::size_t line_begin, std::size_t from) const;

  std::size_t field_count() const { return field_offsets_.size(); }
  // Records a field whose name and value are views into this buffer.
  void add_field(const HeaderField& field);
  // Cuts the buffer at head_end (nothing may be appended until clear()) and
  // returns the fields in received order, as views valid until the next
  // append() or clear().
  std::span<const HeaderField> finish(std::size_t head_end);

 private:
  struct FieldOffsets {
    uint32_t name_begin, name_size, value_begin, value_size;
  };

  std::vector<char> bytes_;
  std::vector<FieldOffsets> field_offsets_;
  std::vector<HeaderField> fields_;
};

// RFC 9112 §5: field-line = field-name ":" OWS field-value OWS, with line
// its bytes without the line end (and not empty: an empty line ends the
// head). A line that starts with whitespace is obs-fold (§5.2), or, with
// first_field, whitespace after the start-line (§2.2), refused with
// whitespace_after_start_line. Returns the reason the line is refused, or
// empty with the field (views into line) in field.
std::string_view parse_field_line(std::string_view line, bool first_field,
                                  std::string_view whitespace_after_start_line, HeaderField& field);

// RFC 9110 §8.6: Content-Length = 1*DIGIT. A list of identical values (from
// one line "42, 42" or several lines) is accepted as that value, as RFC 9110
// allows; differing values, anything but digits, and overflow are refused.
// Merges one field line's value into merged; returns the reason it is
// refused, or empty.
std::string_view merge_content_length(std::string_view value, std::optional<uint64_t>& merged);

// One element of a Transfer-Encoding list (RFC 9112 §6.1, RFC 9110 §10.1.4):
// transfer-coding = token *( OWS ";" OWS transfer-parameter ).
struct TransferCoding {
  std::string_view name;  // OWS trimmed; may be empty or not a token
  bool has_parameters = false;

  bool is_chunked() const { return ascii::iequals(name, "chunked"); }
  bool is_token() const {
    if (name.empty()) return false;
    for (char c : name) {
      if (!ascii::is_tchar(static_cast<unsigned char>(c))) return false;
    }
    return true;
  }
};

// Calls on_coding(TransferCoding) for each element of one Transfer-Encoding
// field value, in order, until it returns a reason to refuse the value.
// Returns that reason, "empty Transfer-Encoding value" when the value has no
// element, or empty.
template <typename OnCoding>
std::string_view for_each_transfer_coding(std::string_view value, OnCoding&& on_coding) {
  std::size_t codings = 0;
  std::string_view error;
  ascii::for_each_list_element(value, [&](std::string_view element) {
    ++codings;
    const std::size_t semicolon = element.find(';');
    error = on_coding(TransferCoding{ascii::trim_ows(element.substr(0, semicolon)),
                                     semicolon != std::string_view::npos});
    return error.empty();
  });
  if (error.empty() && codings == 0) error = "empty Transfer-Encoding value";
  return error;
}

// The Connection options (RFC 9110 §7.6.1) that decide persistence and
// upgrades, gathered over every Connection field line.
struct ConnectionOptions {
  bool close = false;
  bool keep_alive = false;
  bool upgrade = false;

  void add(std::string_view value) {
    ascii::for_each_list_element(value, [&](std::string_view option) {
      if (ascii::iequals(option, "close")) close = true;
      else if (ascii::iequals(option, "keep-alive")) keep_alive = true;
      else if (ascii::iequals(option, "upgrade")) upgrade = true;
      return true;
    });
  }
  // RFC 9112 §9.3: persistent by default in 1.1 unless "close"; in 1.0 only
  // with "keep-alive".
  bool persistent(bool http11) const { return !close && (http11 || keep_alive); }
};

}  // namespace detail
}  // namespace sluice::sniff
