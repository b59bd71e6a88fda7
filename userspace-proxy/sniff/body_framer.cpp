#include "userspace-proxy/sniff/body_framer.h"

#include <algorithm>

#include "userspace-proxy/sniff/ascii.h"
#include "userspace-proxy/sniff/http_request_head.h"

namespace sluice::sniff {

std::string_view to_string(BodyStatus status) {
  switch (status) {
    case BodyStatus::kNeedMore: return "need-more";
    case BodyStatus::kDone: return "done";
    case BodyStatus::kInvalid: return "invalid";
  }
  return "?";
}

BodyFeedResult ContentLengthFramer::feed(std::string_view bytes) {
  const auto n = static_cast<std::size_t>(std::min<uint64_t>(remaining_, bytes.size()));
  remaining_ -= n;
  seen_ += n;
  return {status(), n};
}

bool ChunkedFramer::fail(std::string_view why) {
  status_ = BodyStatus::kInvalid;
  error_ = why;
  return false;
}

BodyFeedResult ChunkedFramer::feed(std::string_view bytes) {
  std::size_t i = 0;
  while (status_ == BodyStatus::kNeedMore && i < bytes.size()) {
    if (state_ == State::kData) {
      const auto n = static_cast<std::size_t>(std::min<uint64_t>(remaining_, bytes.size() - i));
      remaining_ -= n;
      content_bytes_ += n;
      i += n;
      if (remaining_ == 0) state_ = State::kDataCr;
      continue;
    }
    if (!step(static_cast<unsigned char>(bytes[i]))) break;
    ++i;
  }
  return {status_, i};
}

bool ChunkedFramer::step(unsigned char c) {
  using ascii::is_ows;
  using ascii::is_tchar;
  const bool in_size_line = state_ <= State::kSizeLf;
  if (in_size_line && ++line_bytes_ > limits_.max_chunk_line_bytes) return fail("chunk size line too long");

  switch (state_) {
    case State::kSize:
    case State::kSizeDigits:
      if (ascii::is_hex_digit(c)) {
        // 16 hex digits hold any 64-bit size; refusing longer ones (even with
        // leading zeros) keeps us from disagreeing with parsers that cap it.
        if (++size_digits_ > 16) return fail("chunk size too long");
        chunk_size_ = (chunk_size_ << 4) | static_cast<uint64_t>(ascii::hex_value(c));
        state_ = State::kSizeDigits;
        return true;
      }
      if (state_ == State::kSize) return fail("chunk size is not a hex number");
      if (c == ';') state_ = State::kExtBeforeName;
      else if (is_ows(c)) state_ = State::kExtBeforeSemicolon;
      else if (c == '\r') state_ = State::kSizeLf;
      else return fail("invalid character after chunk size");
      return true;

    // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
    case State::kExtBeforeSemicolon:
      if (c == ';') state_ = State::kExtBeforeName;
      else if (!is_ows(c)) return fail("invalid chunk extension");
      return true;
    case State::kExtBeforeName:
      if (is_tchar(c)) state_ = State::kExtName;
      else if (!is_ows(c)) return fail("invalid chunk extension name");
      return true;
    case State::kExtName:
      if (is_tchar(c)) return true;
      if (is_ows(c)) state_ = State::kExtAfterName;
      else if (c == '=') state_ = State::kExtBeforeValue;
      else if (c == ';') state_ = State::kExtBeforeName;
      else if (c == '\r') state_ = State::kSizeLf;
      else return fail("invalid chunk extension name");
      return true;
    case State::kExtAfterName:  // BWS may precede '=' or the next ';', not CRLF
      if (c == '=') state_ = State::kExtBeforeValue;
      else if (c == ';') state_ = State::kExtBeforeName;
      else if (!is_ows(c)) return fail("invalid chunk extension");
      return true;
    case State::kExtBeforeValue:
      if (c == '"') state_ = State::kExtQuoted;
      else if (is_tchar(c)) state_ = State::kExtToken;
      else if (!is_ows(c)) return fail("invalid chunk extension value");
      return true;
    case State::kExtToken:
      if (is_tchar(c)) return true;
      if (is_ows(c)) state_ = State::kExtBeforeSemicolon;
      else if (c == ';') state_ = State::kExtBeforeName;
      else if (c == '\r') state_ = State::kSizeLf;
      else return fail("invalid chunk extension value");
      return true;
    case State::kExtQuoted:  // RFC 9110 §5.6.4 qdtext / quoted-pair
      if (c == '"') state_ = State::kExtAfterQuoted;
      else if (c == '\\') state_ = State::kExtQuotedPair;
      else if (!ascii::is_field_value_char(c)) return fail("invalid character in chunk extension");
      return true;
    case State::kExtAfterQuoted:
      if (is_ows(c)) state_ = State::kExtBeforeSemicolon;
      else if (c == ';') state_ = State::kExtBeforeName;
      else if (c == '\r') state_ = State::kSizeLf;
      else return fail("invalid chunk extension value");
      return true;
    case State::kExtQuotedPair:
      if (!ascii::is_field_value_char(c)) return fail("invalid character in chunk extension");
      state_ = State::kExtQuoted;
      return true;

    case State::kSizeLf:
      if (c != '\n') return fail("bare CR in chunk size line");
      line_bytes_ = 0;
      size_digits_ = 0;
      if (chunk_size_ == 0) {
        state_ = State::kTrailerLineStart;
      } else {
        remaining_ = chunk_size_;
        chunk_size_ = 0;
        state_ = State::kData;
      }
      return true;

    case State::kData:  // handled in bulk by feed()
      return true;
    case State::kDataCr:
      if (c != '\r') return fail("chunk data not followed by CRLF");
      state_ = State::kDataLf;
      return true;
    case State::kDataLf:
      if (c != '\n') return fail("chunk data not followed by CRLF");
      state_ = State::kSize;
      return true;

    case State::kTrailerLineStart:
    case State::kTrailerName:
    case State::kTrailerValue:
    case State::kTrailerLf:
    case State::kFinalLf:
      break;
  }

  // trailer-section = *( field-line CRLF ), then the final CRLF.
  if (++trailer_bytes_ > limits_.max_trailer_bytes) return fail("trailer section too large");
  switch (state_) {
    case State::kTrailerLineStart:
      if (c == '\r') state_ = State::kFinalLf;
      else if (is_tchar(c)) state_ = State::kTrailerName;
      else if (is_ows(c)) return fail("obsolete line folding in trailer section");
      else return fail("invalid character in trailer field name");
      return true;
    case State::kTrailerName:
      if (c == ':') state_ = State::kTrailerValue;
      else if (!is_tchar(c)) return fail("invalid character in trailer field name");
      return true;
    case State::kTrailerValue:
      if (c == '\r') state_ = State::kTrailerLf;
      else if (!ascii::is_field_value_char(c)) return fail("invalid character in trailer field value");
      return true;
    case State::kTrailerLf:
      if (c != '\n') return fail("bare CR in trailer section");
      if (++trailer_fields_ > limits_.max_trailer_fields) return fail("too many trailer fields");
      state_ = State::kTrailerLineStart;
      return true;
    case State::kFinalLf:
      if (c != '\n') return fail("bare CR at the end of the chunked body");
      status_ = BodyStatus::kDone;
      return true;
    default:
      return fail("internal chunked framer state");
  }
}

RequestBodyFramer::RequestBodyFramer(const HttpRequestHead& head, ChunkedLimits limits)
    : chunked_(head.chunked),
      length_framer_(head.chunked ? 0 : head.content_length.value_or(0)),
      chunked_framer_(limits) {}

BodyFramerPtr make_body_framer(const HttpRequestHead& head, ChunkedLimits limits) {
  if (head.chunked) return std::make_unique<ChunkedFramer>(limits);
  return std::make_unique<ContentLengthFramer>(head.content_length.value_or(0));
}

}  // namespace sluice::sniff
