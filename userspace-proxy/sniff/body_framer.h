// Request-body framing (RFC 9112 §6.3, §7.1): how many of the bytes after a
// request head belong to that request, so the proxy knows where the next
// pipelined request starts. Framers validate framing only; they never buffer
// or copy body bytes, so memory use is constant whatever the body size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace sluice::sniff {

struct HttpRequestHead;

enum class BodyStatus : uint8_t {
  kNeedMore,  // the body continues past the bytes fed so far
  kDone,      // the message ended; any further bytes belong to the next one
  kInvalid,   // broken framing: the connection cannot be reused (error())
};

std::string_view to_string(BodyStatus status);

struct BodyFeedResult {
  BodyStatus status;
  std::size_t consumed;  // bytes of this feed that belong to the body
};

class BodyFramer {
 public:
  virtual ~BodyFramer() = default;
  // Once the status is kDone or kInvalid it is final: further feeds consume 0.
  virtual BodyFeedResult feed(std::string_view bytes) = 0;
  BodyFeedResult feed(std::span<const uint8_t> bytes) {
    return feed(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  virtual BodyStatus status() const = 0;
  virtual std::string_view error() const = 0;  // a static string when kInvalid
  // Content bytes so far (chunk data only, for chunked), e.g. for a body limit.
  virtual uint64_t content_bytes() const = 0;
};

using BodyFramerPtr = std::unique_ptr<BodyFramer>;

class ContentLengthFramer final : public BodyFramer {
 public:
  explicit ContentLengthFramer(uint64_t length) : remaining_(length) {}
  using BodyFramer::feed;
  BodyFeedResult feed(std::string_view bytes) override;
  BodyStatus status() const override { return remaining_ == 0 ? BodyStatus::kDone : BodyStatus::kNeedMore; }
  std::string_view error() const override { return {}; }
  uint64_t content_bytes() const override { return seen_; }

 private:
  uint64_t remaining_;
  uint64_t seen_ = 0;
};

struct ChunkedLimits {
  std::size_t max_chunk_line_bytes = 4096;  // size + extensions, per chunk
  std::size_t max_trailer_bytes = 64 * 1024;
  std::size_t max_trailer_fields = 100;
};

// RFC 9112 §7.1: chunk-size [chunk-ext] CRLF chunk-data CRLF ... last-chunk
// trailer-section CRLF. Sizes above 16 hex digits, BWS that is not followed
// by ';', bare CR or LF, and obs-fold in trailers are refused.
class ChunkedFramer final : public BodyFramer {
 public:
  explicit ChunkedFramer(ChunkedLimits limits = {}) : limits_(limits) {}
  using BodyFramer::feed;
  BodyFeedResult feed(std::string_view bytes) override;
  BodyStatus status() const override { return status_; }
  std::string_view error() const override { return error_; }
  uint64_t content_bytes() const override { return content_bytes_; }
  std::size_t trailer_fields() const { return trailer_fields_; }

 private:
  enum class State : uint8_t {
    kSize, kSizeDigits, kExtBeforeSemicolon, kExtBeforeName, kExtName, kExtAfterName,
    kExtBeforeValue, kExtToken, kExtQuoted, kExtQuotedPair, kExtAfterQuoted, kSizeLf,
    kData, kDataCr, kDataLf,
    kTrailerLineStart, kTrailerName, kTrailerValue, kTrailerLf, kFinalLf,
  };
  bool step(unsigned char c);  // one byte outside chunk data; false = invalid
  bool fail(std::string_view why);

  ChunkedLimits limits_;
  State state_ = State::kSize;
  BodyStatus status_ = BodyStatus::kNeedMore;
  std::string_view error_;
  uint64_t chunk_size_ = 0;
  std::size_t size_digits_ = 0;
  std::size_t line_bytes_ = 0;
  uint64_t remaining_ = 0;
  uint64_t content_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::size_t trailer_fields_ = 0;
};

// The framer a request head calls for, without allocating: chunked, a
// Content-Length, or (RFC 9112 §6.3 item 7: a request with neither) an empty
// body. A CONNECT or upgrade request's head is followed by a tunnel once the
// response allows it; its framer covers only the (empty) request body.
class RequestBodyFramer final : public BodyFramer {
 public:
  explicit RequestBodyFramer(const HttpRequestHead& head, ChunkedLimits limits = {});
  using BodyFramer::feed;
  BodyFeedResult feed(std::string_view bytes) override { return active().feed(bytes); }
  BodyStatus status() const override { return active().status(); }
  std::string_view error() const override { return active().error(); }
  uint64_t content_bytes() const override { return active().content_bytes(); }
  bool is_chunked() const { return chunked_; }

 private:
  BodyFramer& active() { return chunked_ ? static_cast<BodyFramer&>(chunked_framer_) : length_framer_; }
  const BodyFramer& active() const {
    return chunked_ ? static_cast<const BodyFramer&>(chunked_framer_) : length_framer_;
  }
  bool chunked_;
  ContentLengthFramer length_framer_;
  ChunkedFramer chunked_framer_;
};

// Heap-allocated equivalent, for callers that hold framers polymorphically.
BodyFramerPtr make_body_framer(const HttpRequestHead& head, ChunkedLimits limits = {});

}  // namespace sluice::sniff
