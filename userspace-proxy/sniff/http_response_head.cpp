#include "userspace-proxy/sniff/http_response_head.h"

#include <algorithm>

#include "userspace-proxy/sniff/ascii.h"
#include "userspace-proxy/sniff/http_fields.h"

namespace sluice::sniff {
namespace {

// Whether a field named `name` is dropped when a proxy rebuilds a head with
// these fields (RFC 9110 §7.6.1). Fields that decide how the message (or the
// request's routing) is read are never dropped: a "Connection:
// content-length" option must not turn a length-delimited message into one
// read until close on the other side.
bool is_hop_by_hop_name(std::span<const HeaderField> headers, std::string_view name, bool keep_upgrade) {
  for (std::string_view kept : {"content-length", "transfer-encoding", "host"}) {
    if (ascii::iequals(name, kept)) return false;
  }
  const bool upgrade = ascii::iequals(name, "upgrade");
  if (upgrade && keep_upgrade) return false;
  if (upgrade) return true;
  for (std::string_view fixed : {"connection", "keep-alive", "proxy-connection", "te", "trailer"}) {
    if (ascii::iequals(name, fixed)) return true;
  }
  for (const HeaderField& f : headers) {
    if (!ascii::iequals(f.name, "connection")) continue;
    const bool listed = !ascii::for_each_list_element(f.value, [&](std::string_view option) {
      return !ascii::iequals(option, name);  // stop (false) on a match
    });
    if (listed) return true;
  }
  return false;
}

std::string_view version_text(HttpVersion v) { return v == HttpVersion::kHttp10 ? "HTTP/1.0" : "HTTP/1.1"; }

void append_fields(std::string& out, std::span<const HeaderField> headers, bool keep_upgrade) {
  for (const HeaderField& f : headers) {
    if (is_hop_by_hop_name(headers, f.name, keep_upgrade)) continue;
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
}

std::size_t fields_size(std::span<const HeaderField> headers) {
  std::size_t n = 0;
  for (const HeaderField& f : headers) n += f.name.size() + f.value.size() + 4;
  return n;
}

}  // namespace

std::optional<std::string_view> HttpResponseHead::find_header(std::string_view name) const {
  return detail::find_header(headers, name);
}

bool HttpResponseHead::is_hop_by_hop(const HeaderField& f) const {
  return is_hop_by_hop_name(headers, f.name, /*keep_upgrade=*/false);
}

HttpResponseParser::HttpResponseParser(HttpLimits limits) : limits_(limits) {
  limits_.max_head_bytes = std::min(limits_.max_head_bytes, detail::HeadBuffer::kMaxBytes);
}

void HttpResponseParser::reset() {
  s_ = State{};
  head_ = HttpResponseHead{};
  buf_.clear();
}

HttpParseStatus HttpResponseParser::fail(HttpParseStatus status, std::string_view why) {
  s_.status = status;
  s_.error = why;
  return s_.status;
}

HttpResponseParser::FeedResult HttpResponseParser::feed(std::string_view bytes) {
  if (s_.status != HttpParseStatus::kNeedMore) return {s_.status, 0};
  const std::size_t before = buf_.size();
  const std::size_t take = buf_.append(bytes, limits_.max_head_bytes);

  run();
  if (s_.status == HttpParseStatus::kDone) return {s_.status, head_.head_length - before};
  if (s_.status == HttpParseStatus::kNeedMore && buf_.size() >= limits_.max_head_bytes) {
    // Every buffered byte has been examined and the head has not ended.
    fail(HttpParseStatus::kInvalid, "response head exceeds the size limit");
  }
  return {s_.status, take};
}

HttpParseStatus HttpResponseParser::run() {
  if (s_.phase != Phase::kHeaders && scan_status_line() != HttpParseStatus::kNeedMore) return s_.status;
  if (s_.phase == Phase::kHeaders) return scan_header_lines();
  return s_.status;
}

// status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112
// §4), checked byte by byte so that an upstream that does not speak HTTP/1.x
// is recognized on its first bytes, and a slow one costs O(1) per byte.
HttpParseStatus HttpResponseParser::scan_status_line() {
  static constexpr std::string_view kPrefix = "HTTP/1.";
  while (s_.phase != Phase::kHeaders && s_.pos < buf_.size()) {
    const auto c = static_cast<unsigned char>(buf_[s_.pos]);
    switch (s_.phase) {
      case Phase::kVersion:
        if (s_.pos < kPrefix.size()) {
          if (c != static_cast<unsigned char>(kPrefix[s_.pos])) {
            return fail(HttpParseStatus::kNotHttp, "response does not start with HTTP/1.");
          }
          break;
        }
        // RFC 9110 §2.5 would let a higher minor version be read as 1.1, but
        // no HTTP/1.2 exists: a server claiming it is not one we understand.
        if (c == '0') s_.version = HttpVersion::kHttp10;
        else if (c == '1') s_.version = HttpVersion::kHttp11;
        else if (ascii::is_digit(c)) return fail(HttpParseStatus::kInvalid, "unsupported HTTP version");
        else return fail(HttpParseStatus::kInvalid, "malformed HTTP version");
        s_.phase = Phase::kStatusSpace;
        break;
      case Phase::kStatusSpace:
        if (c != ' ') {
          return fail(HttpParseStatus::kInvalid,
                      ascii::is_digit(c) ? "malformed HTTP version" : "malformed status-line");
        }
        s_.phase = Phase::kStatusCode;
        break;
      case Phase::kStatusCode:
        if (!ascii::is_digit(c)) return fail(HttpParseStatus::kInvalid, "status code is not three digits");
        // RFC 9110 §15: the first digit is the class, 1 to 5.
        if (s_.status_code == 0 && (c < '1' || c > '5')) {
          return fail(HttpParseStatus::kInvalid, "status code out of range");
        }
        s_.status_code = s_.status_code * 10 + (c - '0');
        if (s_.status_code >= 100) s_.phase = Phase::kAfterCode;
        break;
      case Phase::kAfterCode:
        if (c == ' ') {
          s_.reason_begin = s_.reason_end = s_.pos + 1;
          s_.phase = Phase::kReason;
        } else if (c == '\r' || c == '\n') {
          // The SP before an empty reason-phrase is often left out; nothing
          // is ambiguous about it.
          s_.reason_begin = s_.reason_end = s_.pos;
          if (c == '\n') return end_status_line(s_.pos + 1);
          s_.phase = Phase::kStatusLineLf;
        } else {
          return fail(HttpParseStatus::kInvalid, ascii::is_digit(c) ? "status code is not three digits"
                                                                     : "malformed status-line");
        }
        break;
      case Phase::kReason:
        if (c == '\r' || c == '\n') {
          s_.reason_end = s_.pos;
          if (c == '\n') return end_status_line(s_.pos + 1);
          s_.phase = Phase::kStatusLineLf;
        } else if (!ascii::is_field_value_char(c)) {
          // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
          return fail(HttpParseStatus::kInvalid, "invalid character in reason-phrase");
        }
        break;
      case Phase::kStatusLineLf:
        if (c != '\n') return fail(HttpParseStatus::kInvalid, "bare CR in status-line");
        return end_status_line(s_.pos + 1);
      case Phase::kHeaders:
        break;
    }
    ++s_.pos;
  }
  return s_.status;
}

HttpParseStatus HttpResponseParser::end_status_line(std::size_t next_line) {
  s_.pos = next_line;
  s_.line_begin = next_line;
  s_.phase = Phase::kHeaders;
  return s_.status;
}

HttpParseStatus HttpResponseParser::scan_header_lines() {
  while (s_.status == HttpParseStatus::kNeedMore && s_.pos < buf_.size()) {
    // RFC 9112 §2.2: a recipient MAY read a bare LF as a line terminator. It
    // cannot be read two ways here: the line ends at the LF either way, and a
    // CR anywhere but right before it is refused.
    const std::optional<detail::HeadBuffer::Line> line = buf_.line_at(s_.line_begin, s_.pos);
    if (!line) {
      s_.pos = buf_.size();
      break;
    }
    s_.pos = line->next;
    if (line->end == s_.line_begin) return on_end_of_head(s_.pos);
    if (on_header_line(s_.line_begin, line->end) != HttpParseStatus::kNeedMore) return s_.status;
    s_.line_begin = s_.pos;
  }
  return s_.status;
}

HttpParseStatus HttpResponseParser::on_header_line(std::size_t begin, std::size_t end) {
  const std::string_view line = buf_.view(begin, end - begin);
  // The only CR a line may hold is the one before its LF, which is not in line.
  if (line.find('\r') != std::string_view::npos) return fail(HttpParseStatus::kInvalid, "bare CR in response head");
  HeaderField field;
  std::string_view error = detail::parse_field_line(line, buf_.field_count() == 0,
                                                    "whitespace between status-line and first header field", field);
  if (!error.empty()) return fail(HttpParseStatus::kInvalid, error);
  if (buf_.field_count() >= limits_.max_headers) return fail(HttpParseStatus::kInvalid, "too many header fields");
  buf_.add_field(field);

  if (ascii::iequals(field.name, "content-length")) {
    error = detail::merge_content_length(field.value, s_.content_length);
    if (!error.empty()) return fail(HttpParseStatus::kInvalid, error);
  } else if (ascii::iequals(field.name, "transfer-encoding")) {
    return on_transfer_encoding(field.value);
  } else if (ascii::iequals(field.name, "connection")) {
    s_.connection.add(field.value);
  }
  return s_.status;
}

// RFC 9112 §6.1: codings apply in the order listed, across field lines. In a
// response, a final coding other than chunked means "read until close" (§6.3
// item 4), so codings after chunked are allowed; chunked twice is not (a
// sender MUST NOT apply it more than once, and one or two rounds of
// de-chunking would find different ends).
HttpParseStatus HttpResponseParser::on_transfer_encoding(std::string_view value) {
  s_.transfer_encoding = true;
  const std::string_view error =
      detail::for_each_transfer_coding(value, [&](const detail::TransferCoding& coding) -> std::string_view {
        if (!coding.is_token()) return "invalid transfer coding";
        if (!coding.is_chunked()) {
          s_.chunked_final = false;
          return {};
        }
        if (coding.has_parameters) return "parameters on the chunked transfer coding";
        if (s_.chunked_seen) return "chunked transfer coding applied more than once";
        s_.chunked_seen = true;
        s_.chunked_final = true;
        return {};
      });
  if (!error.empty()) return fail(HttpParseStatus::kInvalid, error);
  return s_.status;
}

HttpParseStatus HttpResponseParser::on_end_of_head(std::size_t head_end) {
  const bool http11 = s_.version == HttpVersion::kHttp11;
  if (s_.transfer_encoding) {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be
    // treated as having faulty framing.
    if (!http11) return fail(HttpParseStatus::kInvalid, "Transfer-Encoding in an HTTP/1.0 response");
    // RFC 9112 §6.3 item 3 lets a recipient drop Content-Length and go on;
    // the pair is the classic desynchronization attempt, so we refuse it.
    if (s_.content_length.has_value()) {
      return fail(HttpParseStatus::kInvalid, "both Transfer-Encoding and Content-Length");
    }
  }

  // Now the views: buf_ no longer moves (the excess is cut, nothing appended
  // until reset()).
  const std::span<const HeaderField> fields = buf_.finish(head_end);
  HttpResponseHead& h = head_;
  h = HttpResponseHead{};
  h.version = s_.version;
  h.status = s_.status_code;
  h.reason = buf_.view(s_.reason_begin, s_.reason_end - s_.reason_begin);
  h.content_length = s_.content_length;
  h.chunked = s_.chunked_final;
  h.has_transfer_encoding = s_.transfer_encoding;
  h.keep_alive = s_.connection.persistent(http11);
  h.head_length = head_end;
  h.headers = fields;
  s_.status = HttpParseStatus::kDone;
  return s_.status;
}

// The kept fields as (name, value), rewritten, then written out.
static void append_rewritten_fields(std::string& out, std::span<const HeaderField> headers, bool keep_upgrade,
                             const HeadRewrite& rw) {
  if (rw.host.empty() && !rw.edit_fields) {
    append_fields(out, headers, keep_upgrade);  // nothing to change: no copies
    return;
  }
  std::vector<std::pair<std::string, std::string>> fields;
  fields.reserve(headers.size() + 2);
  for (const HeaderField& f : headers) {
    if (is_hop_by_hop_name(headers, f.name, keep_upgrade)) continue;
    if (!rw.host.empty() && ascii::iequals(f.name, "host")) {
      fields.emplace_back(std::string(f.name), std::string(rw.host));
      continue;
    }
    fields.emplace_back(std::string(f.name), std::string(f.value));
  }
  if (rw.edit_fields) rw.edit_fields(fields);
  for (const auto& [name, value] : fields) out.append(name).append(": ").append(value).append("\r\n");
}

bool has_hop_by_hop_fields(std::span<const HeaderField> headers, bool keep_alive_ok) {
  for (const HeaderField& f : headers) {
    if (keep_alive_ok && ascii::iequals(f.name, "connection") && ascii::iequals(f.value, "keep-alive")) continue;
    if (is_hop_by_hop_name(headers, f.name, /*keep_upgrade=*/false)) return true;
  }
  return false;
}

std::string rebuild_request_head(const HttpRequestHead& head, const HeadRewrite& rw) {
  const bool upgrading = !head.upgrade.empty();
  std::string out;
  out.reserve(32 + head.method.size() + head.target.size() + fields_size(head.headers));
  out.append(head.method).append(" ").append(rw.target.empty() ? head.target : rw.target).append(" ");
  out.append(version_text(head.version)).append("\r\n");
  append_rewritten_fields(out, head.headers, /*keep_upgrade=*/upgrading, rw);
  if (upgrading) out.append("connection: upgrade\r\n");
  out.append("\r\n");
  return out;
}

std::string rebuild_response_head(const HttpResponseHead& head, bool add_connection_close) {
  return rebuild_response_head(head, add_connection_close, HeadRewrite{});
}

std::string rebuild_response_head(const HttpResponseHead& head, bool add_connection_close, const HeadRewrite& rw) {
  // A 101's Upgrade field and "upgrade" option are what the client checks
  // before it accepts the switch (RFC 9110 §7.8).
  const bool switching = head.status == 101;
  std::string out;
  out.reserve(32 + head.reason.size() + fields_size(head.headers));
  out.append(version_text(head.version)).append(" ");
  // status is 100..599 for a parsed head; written digit by digit so that any
  // int prints something, without locale or allocation.
  const int code = std::clamp(head.status, 0, 999);
  out += static_cast<char>('0' + code / 100);
  out += static_cast<char>('0' + code / 10 % 10);
  out += static_cast<char>('0' + code % 10);
  out.append(" ").append(head.reason).append("\r\n");
  append_rewritten_fields(out, head.headers, /*keep_upgrade=*/switching, rw);
  if (switching) out.append("connection: upgrade\r\n");
  else if (add_connection_close) out.append("connection: close\r\n");
  out.append("\r\n");
  return out;
}

std::string rebuild_request_head(const HttpRequestHead& head) { return rebuild_request_head(head, HeadRewrite{}); }

std::string_view to_string(ResponseBodyKind kind) {
  switch (kind) {
    case ResponseBodyKind::kNone: return "none";
    case ResponseBodyKind::kLength: return "length";
    case ResponseBodyKind::kChunked: return "chunked";
    case ResponseBodyKind::kUntilClose: return "until-close";
    case ResponseBodyKind::kTunnel: return "tunnel";
  }
  return "?";
}

ResponseBodyKind response_body_kind(const HttpResponseHead& head, bool request_was_head, bool request_was_connect) {
  // After a 101 the bytes are the new protocol's, whatever was asked.
  if (head.status == 101) return ResponseBodyKind::kTunnel;
  // RFC 9112 §6.3 item 1.
  if (request_was_head || head.status < 200 || head.status == 204 || head.status == 304) {
    return ResponseBodyKind::kNone;
  }
  // Item 2: a 2xx to CONNECT turns the connection into a tunnel.
  if (request_was_connect && head.status < 300) return ResponseBodyKind::kTunnel;
  // Items 3-4 (Content-Length with Transfer-Encoding never gets here).
  if (head.has_transfer_encoding) return head.chunked ? ResponseBodyKind::kChunked : ResponseBodyKind::kUntilClose;
  // Items 5-6.
  if (head.content_length.has_value()) {
    return *head.content_length == 0 ? ResponseBodyKind::kNone : ResponseBodyKind::kLength;
  }
  // Item 8.
  return ResponseBodyKind::kUntilClose;
}

ResponseBodyFramer::ResponseBodyFramer(const HttpResponseHead& head, bool request_was_head,
                                       bool request_was_connect, ChunkedLimits limits)
    : kind_(response_body_kind(head, request_was_head, request_was_connect)),
      reusable_((kind_ == ResponseBodyKind::kNone || kind_ == ResponseBodyKind::kLength ||
                 kind_ == ResponseBodyKind::kChunked) &&
                head.keep_alive && head.status >= 200),
      length_framer_(kind_ == ResponseBodyKind::kLength ? head.content_length.value_or(0) : 0),
      chunked_framer_(limits) {}

BodyFeedResult ResponseBodyFramer::feed(std::string_view bytes) {
  switch (kind_) {
    case ResponseBodyKind::kNone: return {BodyStatus::kDone, 0};
    case ResponseBodyKind::kLength: return length_framer_.feed(bytes);
    case ResponseBodyKind::kChunked: return chunked_framer_.feed(bytes);
    case ResponseBodyKind::kUntilClose:
    case ResponseBodyKind::kTunnel: break;
  }
  unframed_bytes_ += bytes.size();
  return {BodyStatus::kNeedMore, bytes.size()};
}

BodyStatus ResponseBodyFramer::status() const {
  switch (kind_) {
    case ResponseBodyKind::kNone: return BodyStatus::kDone;
    case ResponseBodyKind::kLength: return length_framer_.status();
    case ResponseBodyKind::kChunked: return chunked_framer_.status();
    case ResponseBodyKind::kUntilClose:
    case ResponseBodyKind::kTunnel: break;
  }
  return BodyStatus::kNeedMore;
}

std::string_view ResponseBodyFramer::error() const {
  return kind_ == ResponseBodyKind::kChunked ? chunked_framer_.error() : std::string_view{};
}

uint64_t ResponseBodyFramer::content_bytes() const {
  switch (kind_) {
    case ResponseBodyKind::kNone: return 0;
    case ResponseBodyKind::kLength: return length_framer_.content_bytes();
    case ResponseBodyKind::kChunked: return chunked_framer_.content_bytes();
    case ResponseBodyKind::kUntilClose:
    case ResponseBodyKind::kTunnel: break;
  }
  return unframed_bytes_;
}

}  // namespace sluice::sniff
