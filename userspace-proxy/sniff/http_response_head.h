// Incremental HTTP/1.x response-head parser (RFC 9112 §4-§6, RFC 9110) and
// response-body framing, for a proxy that pools upstream HTTP/1.1
// connections: it must know exactly where each response ends before it can
// send the next request on the same connection, and whether the upstream
// keeps the connection open at all.
//
// Strict where leniency lets the proxy and the client disagree about where a
// response ends (response splitting, desynchronized pools): obs-fold,
// whitespace before a colon, bare CR, conflicting or malformed
// Content-Length, and Transfer-Encoding together with Content-Length are all
// refused. Bare LF line endings are accepted (RFC 9112 §2.2 lets a recipient
// do so): the proxy rebuilds the head with CRLF (rebuild_response_head), so
// what it sends downstream is never ambiguous.
//
// Also here: rebuilding request and response heads without their hop-by-hop
// fields (RFC 9110 §7.6.1), for the proxy to forward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>
#include <utility>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "userspace-proxy/sniff/body_framer.h"
#include "userspace-proxy/sniff/http_fields.h"
#include "userspace-proxy/sniff/http_request_head.h"

namespace sluice::sniff {

// Views point into the parser's buffer: valid until the parser is fed again,
// reset or destroyed.
struct HttpResponseHead {
  HttpVersion version = HttpVersion::kHttp11;  // HTTP/1.0 or HTTP/1.1 only
  int status = 0;                              // 100..599
  std::string_view reason;                     // may be empty
  std::optional<uint64_t> content_length;
  bool chunked = false;                // Transfer-Encoding's last coding is chunked
  bool has_transfer_encoding = false;  // any Transfer-Encoding field
  // RFC 9112 §9.3: HTTP/1.1 unless a Connection "close" option; HTTP/1.0 only
  // with a Connection "keep-alive" option.
  bool keep_alive = false;
  // Bytes of input this head occupied, from the first byte fed after
  // construction or reset() through the blank line: where the body begins.
  std::size_t head_length = 0;
  std::span<const HeaderField> headers;  // in received order

  // First field with this name (case-insensitive); nullopt when absent.
  std::optional<std::string_view> find_header(std::string_view name) const;
  // True when a proxy rebuilding the head must drop the field (RFC 9110
  // §7.6.1): Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade,
  // and any field named by a Connection option. Content-Length and
  // Transfer-Encoding frame the body and are never hop-by-hop, even when a
  // Connection option names them (nor is Host, for the request rebuild's
  // sake: the rule is shared).
  bool is_hop_by_hop(const HeaderField& f) const;
};

class HttpResponseParser {
 public:
  struct FeedResult {
    HttpParseStatus status;
    // Bytes of this feed that belong to the head. On kDone, the rest of the
    // bytes are the body (or the next response); on kNeedMore, all of them.
    // On kNotHttp/kInvalid, what this feed added to the buffer (no meaning
    // for framing: the connection cannot be reused).
    std::size_t consumed;
  };

  // Of the limits, max_head_bytes (status-line included) and max_headers
  // apply; the request-line and content-length limits do not (a response
  // body is streamed, not buffered).
  explicit HttpResponseParser(HttpLimits limits = {});
  // Not copyable or movable: head() holds views into the parser's own storage.
  HttpResponseParser(const HttpResponseParser&) = delete;
  HttpResponseParser& operator=(const HttpResponseParser&) = delete;

  // Once the status is no longer kNeedMore it is final: further feeds return
  // it with consumed 0 until reset().
  //   kNotHttp: the bytes cannot start "HTTP/1." (decided on the first byte
  //             that departs from it): the upstream does not speak HTTP/1.x.
  //   kInvalid: an HTTP/1.x response, but malformed, over a limit, or with
  //             ambiguous framing: answer the client 502, close upstream.
  FeedResult feed(std::string_view bytes);
  FeedResult feed(std::span<const uint8_t> bytes) {
    return feed(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }

  HttpParseStatus status() const { return s_.status; }
  const HttpResponseHead& head() const { return head_; }  // when kDone
  std::string_view error() const { return s_.error; }     // static text when kNotHttp or kInvalid

  // Ready for the next response on the connection (also after a 1xx interim
  // response); keeps (bounded) capacity.
  void reset();

 private:
  enum class Phase : uint8_t { kVersion, kStatusSpace, kStatusCode, kAfterCode, kReason, kStatusLineLf, kHeaders };

  HttpParseStatus run();
  HttpParseStatus scan_status_line();
  HttpParseStatus end_status_line(std::size_t next_line);
  HttpParseStatus scan_header_lines();
  HttpParseStatus on_header_line(std::size_t begin, std::size_t end);
  HttpParseStatus on_transfer_encoding(std::string_view value);
  HttpParseStatus on_end_of_head(std::size_t head_end);
  HttpParseStatus fail(HttpParseStatus status, std::string_view why);

  // Everything about the response being parsed except buffers, so that
  // reset() is one assignment and keeps the buffers' capacity.
  struct State {
    HttpParseStatus status = HttpParseStatus::kNeedMore;
    std::string_view error;
    Phase phase = Phase::kVersion;
    std::size_t pos = 0;  // next byte to examine
    std::size_t line_begin = 0;  // current header line
    HttpVersion version = HttpVersion::kHttp11;
    int status_code = 0;
    std::size_t reason_begin = 0, reason_end = 0;

    std::optional<uint64_t> content_length;
    bool transfer_encoding = false;
    bool chunked_final = false;
    bool chunked_seen = false;
    detail::ConnectionOptions connection;
  };

  HttpLimits limits_;
  State s_;
  HttpResponseHead head_;
  detail::HeadBuffer buf_;
};

// "HTTP/1.x <status> <reason>\r\n" (the received version; the space before
// the reason is written also when the reason is empty, as RFC 9112 §4's
// grammar requires), every field that is not hop-by-hop as "name: value\r\n"
// in received order, then "connection: close\r\n" when asked, then "\r\n".
// A 101 response keeps its Upgrade field and gets "connection: upgrade\r\n"
// instead (the client needs both to accept the switch; add_connection_close
// is then ignored: the connection becomes a tunnel).
std::string rebuild_response_head(const HttpResponseHead& head, bool add_connection_close);

// What a proxy's route changes while rebuilding a head (Istio's rewrite and
// headers). Empty members change nothing.
struct HeadRewrite {
  std::string_view target;  // request: the new request-target (rewrite.uri)
  std::string_view host;    // request: the new Host value (rewrite.authority)
  // Edits the kept (name, value) fields, in order, before they are written.
  std::function<void(std::vector<std::pair<std::string, std::string>>&)> edit_fields;
};
std::string rebuild_response_head(const HttpResponseHead& head, bool add_connection_close, const HeadRewrite& rewrite);

// "METHOD target HTTP/1.x\r\n" (target as received), every field except
// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade and the
// fields named by Connection options, then "\r\n". When the request asks for
// an upgrade (head.upgrade non-empty), its Upgrade field is kept and
// "connection: upgrade\r\n" is written. Host, Content-Length and
// Transfer-Encoding are kept even when a Connection option names them.
std::string rebuild_request_head(const HttpRequestHead& head);

// Whether rebuilding would drop anything: a field a proxy must not forward
// (Connection and the fields it names, Keep-Alive, Proxy-Connection, TE,
// Trailer, Upgrade). With `keep_alive_ok`, "Connection: keep-alive" alone
// does not count (it says what HTTP/1.1 assumes anyway), so a proxy may
// relay such a head unchanged.
bool has_hop_by_hop_fields(std::span<const HeaderField> headers, bool keep_alive_ok);
std::string rebuild_request_head(const HttpRequestHead& head, const HeadRewrite& rewrite);

// RFC 9112 §6.3, applied in order:
//   101                                  -> kTunnel (the protocol switched)
//   response to HEAD; 1xx, 204, 304      -> kNone
//   2xx to CONNECT                       -> kTunnel
//   Transfer-Encoding ending in chunked  -> kChunked
//   other Transfer-Encoding              -> kUntilClose
//   Content-Length                       -> kLength (0 -> kNone)
//   otherwise                            -> kUntilClose
enum class ResponseBodyKind : uint8_t { kNone, kLength, kChunked, kUntilClose, kTunnel };

std::string_view to_string(ResponseBodyKind kind);

ResponseBodyKind response_body_kind(const HttpResponseHead& head, bool request_was_head, bool request_was_connect);

// The body framer a response head calls for, without allocating.
//   kNone                -> kDone at once, consumes nothing
//   kLength / kChunked   -> as ContentLengthFramer / ChunkedFramer
//   kUntilClose/kTunnel  -> consumes everything, kNeedMore until the upstream
//                           closes (the caller sees the close, not the framer)
//
// A 1xx response other than 101 (100 Continue, 103 Early Hints, ...) is
// interim: its framer is kNone, and the caller must reset() the head parser
// and parse another head, the final response, from the bytes that follow;
// reusable_after() says nothing useful about an interim response.
class ResponseBodyFramer final : public BodyFramer {
 public:
  ResponseBodyFramer(const HttpResponseHead& head, bool request_was_head, bool request_was_connect,
                     ChunkedLimits limits = {});
  using BodyFramer::feed;
  BodyFeedResult feed(std::string_view bytes) override;
  BodyStatus status() const override;
  std::string_view error() const override;
  uint64_t content_bytes() const override;

  ResponseBodyKind kind() const { return kind_; }
  // Whether the upstream connection may carry another request once this body
  // is kDone: only for self-delimited bodies (kNone, kLength, kChunked) of a
  // final (>= 200) response whose head kept the connection alive.
  bool reusable_after() const { return reusable_; }

 private:
  ResponseBodyKind kind_;
  bool reusable_;
  uint64_t unframed_bytes_ = 0;  // kUntilClose / kTunnel
  ContentLengthFramer length_framer_;
  ChunkedFramer chunked_framer_;
};

}  // namespace sluice::sniff
