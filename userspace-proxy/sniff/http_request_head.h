// Incremental HTTP/1.x request-head parser (RFC 9112 §2-§7, RFC 9110), for
// the proxy's first look at a plaintext connection and for every pipelined
// request after it.
//
// Strict where leniency lets two parsers disagree about message framing
// (request smuggling): bare LF or CR, obs-fold, whitespace before a colon,
// duplicate or malformed Content-Length, Transfer-Encoding together with
// Content-Length, and Transfer-Encoding whose last coding is not chunked are
// all refused with 400, never "repaired". See http_request_head.cpp (and
// http_fields.cpp, for what the response parser shares) for each rule's RFC
// reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "userspace-proxy/sniff/host_name.h"
#include "userspace-proxy/sniff/http_fields.h"

namespace sluice::sniff {

enum class HttpParseStatus : uint8_t {
  kNeedMore,  // head incomplete: feed more bytes
  kDone,      // head complete and valid: head()
  kNotHttp,   // the bytes cannot be an HTTP/1.x request-line: treat as opaque TCP
  kInvalid,   // an HTTP/1.x request, but malformed or over a limit: answer error().status
};

std::string_view to_string(HttpParseStatus status);

enum class HttpVersion : uint8_t { kHttp10, kHttp11 };

// RFC 9112 §3.2.
enum class TargetForm : uint8_t {
  kOrigin,     // "/path?query"
  kAbsolute,   // "http://host:port/path?query": what a forward proxy receives
  kAuthority,  // "host:port": CONNECT only
  kAsterisk,   // "*": OPTIONS only
};

struct HttpLimits {
  std::size_t max_head_bytes = 64 * 1024;          // beyond: 431
  std::size_t max_request_line_bytes = 16 * 1024;  // beyond: 414
  std::size_t max_headers = 100;                   // beyond: 431
  uint64_t max_content_length = UINT64_MAX;        // beyond: 413
};

struct HttpError {
  // Suggested response status for kInvalid: 400, 413, 414, 431, 501 or 505.
  // 0 for kNotHttp (nothing to answer: the bytes were not HTTP).
  int status = 0;
  std::string_view reason;  // a static string, for logs
};

// Views point into the parser's buffer: valid until the parser is fed again,
// reset or destroyed.
struct HttpRequestHead {
  std::string_view method;  // case-sensitive, as received
  std::string_view target;  // the raw request-target
  TargetForm target_form = TargetForm::kOrigin;
  std::string_view scheme;  // absolute-form only: "http" or "https", as received
  // Path and query as origin-form would carry them (Envoy's :path): "/" when
  // an absolute-form target has none, "*" for asterisk-form, empty for CONNECT.
  std::string_view path;
  HttpVersion version = HttpVersion::kHttp11;

  // Effective authority: the absolute-form or CONNECT target's if present,
  // else the Host header's. host is lower-cased, without brackets, port or
  // trailing dot; empty if there is none (HTTP/1.0 without Host, or an empty
  // Host value), in which case policy falls back to the original destination.
  std::string_view host;
  HostKind host_kind = HostKind::kNone;
  std::optional<uint16_t> port;
  bool has_host_header = false;
  std::string_view host_header;  // the Host field value as received

  std::optional<uint64_t> content_length;
  bool chunked = false;  // Transfer-Encoding ends in chunked
  bool keep_alive = false;  // per version default and Connection close/keep-alive
  // The Upgrade field value when the request asks for an upgrade (HTTP/1.1
  // with "Connection: upgrade"); empty otherwise.
  std::string_view upgrade;
  bool expect_continue = false;
  bool is_connect = false;
  // Bytes of input this head occupied, from the first byte fed after
  // construction or reset() through the blank line (leading empty lines
  // included): where the body, or the next pipelined request, begins.
  std::size_t head_length = 0;
  std::span<const HeaderField> headers;  // in received order

  // First field with this name (case-insensitive); nullopt when absent.
  std::optional<std::string_view> find_header(std::string_view name) const;
};

class HttpRequestParser {
 public:
  struct FeedResult {
    HttpParseStatus status;
    // Bytes of this feed that belong to the head. On kDone, the rest of the
    // bytes are body or the next request; on kNeedMore, all of them. On
    // kNotHttp/kInvalid, what this feed added to the buffer (no meaning for
    // framing: the connection is not going to carry HTTP requests further).
    std::size_t consumed;
  };

  explicit HttpRequestParser(HttpLimits limits = {});
  // Not copyable or movable: head() holds views into the parser's own storage.
  HttpRequestParser(const HttpRequestParser&) = delete;
  HttpRequestParser& operator=(const HttpRequestParser&) = delete;

  // Once the status is no longer kNeedMore it is final: further feeds return
  // it with consumed 0 until reset().
  FeedResult feed(std::string_view bytes);
  FeedResult feed(std::span<const uint8_t> bytes) {
    return feed(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }

  HttpParseStatus status() const { return s_.status; }
  const HttpRequestHead& head() const { return head_; }  // when kDone
  const HttpError& error() const { return s_.error; }    // when kNotHttp or kInvalid

  // Ready for the next request on the connection; keeps (bounded) capacity.
  void reset();

 private:
  enum class Phase : uint8_t { kStart, kLeadingLf, kMethod, kTarget, kVersion, kRequestLineLf, kHeaders };

  HttpParseStatus run();
  HttpParseStatus scan_request_line();
  HttpParseStatus on_request_line();
  HttpParseStatus scan_header_lines();
  HttpParseStatus on_header_line(std::size_t begin, std::size_t end);
  HttpParseStatus on_transfer_encoding(std::string_view value);
  HttpParseStatus on_end_of_head(std::size_t head_end);
  HttpParseStatus not_http(std::string_view why);
  HttpParseStatus invalid(int status, std::string_view why);
  HttpParseStatus over_request_line_limit();

  // Everything about the request being parsed except buffers, so that
  // reset() is one assignment and keeps the buffers' capacity.
  struct State {
    HttpParseStatus status = HttpParseStatus::kNeedMore;
    HttpError error;
    Phase phase = Phase::kStart;
    std::size_t pos = 0;  // next byte to examine
    std::size_t leading_empty_lines = 0;
    std::size_t request_line_begin = 0;
    std::size_t method_end = 0;
    std::size_t target_begin = 0;
    std::size_t target_end = 0;
    std::size_t version_begin = 0;
    std::size_t line_begin = 0;  // current header line

    // The request target's parts (offsets: buf_ may move while we read).
    TargetForm target_form = TargetForm::kOrigin;
    HttpVersion version = HttpVersion::kHttp11;
    std::size_t scheme_begin = 0, scheme_size = 0;
    std::size_t path_begin = 0, path_size = 0;
    bool path_in_storage = false;
    bool host_from_target = false;
    std::size_t host_size = 0;  // of host_ (normalized)
    HostKind host_kind = HostKind::kNone;
    std::optional<uint16_t> port;

    // What the known fields said, gathered line by line.
    std::size_t host_fields = 0;
    std::size_t host_field_begin = 0, host_field_size = 0;
    std::optional<uint64_t> content_length;
    bool transfer_encoding = false;
    bool chunked_final = false;
    detail::ConnectionOptions connection;
    bool has_upgrade = false;
    std::size_t upgrade_begin = 0, upgrade_size = 0;
    bool expect_continue = false;
  };

  HttpLimits limits_;
  State s_;
  HttpRequestHead head_;
  detail::HeadBuffer buf_;
  std::string path_storage_;  // "*", or "/" + query for absolute-form targets without a path
  char host_[kMaxHostNameLength + 2] = {};  // the normalized effective host
};

}  // namespace sluice::sniff
