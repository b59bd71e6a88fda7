#include "userspace-proxy/sniff/http_request_head.h"

#include <algorithm>

#include "userspace-proxy/sniff/ascii.h"
#include "userspace-proxy/sniff/http_fields.h"

namespace sluice::sniff {
namespace {

// Longest method token we wait for before deciding the bytes are not HTTP
// (the longest registered method, UPDATEREDIRECTREF, has 17 characters).
constexpr std::size_t kMaxMethodLength = 24;
// RFC 9112 §2.2 lets a server skip empty lines before a request-line (some
// clients send CRLF after a POST body); more than a few is not HTTP.
constexpr std::size_t kMaxLeadingEmptyLines = 8;

bool is_well_known_method(std::string_view m) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    if (m == known) return true;
  }
  return false;
}

struct Authority {
  std::size_t host_size = 0;
  HostKind kind = HostKind::kNone;
  std::optional<uint16_t> port;
};

// authority = host [ ":" port ] (RFC 3986 §3.2, minus userinfo, which RFC 9110
// §4.2.4 deprecates for http(s) and which would let "good.com@evil.com" read
// as a different host to a careless matcher). The host is validated and
// written, normalized, to host_out (room for kMaxHostNameLength + 1 chars).
std::string_view parse_authority(std::string_view text, bool require_port, char* host_out,
                                 Authority& out) {
  if (text.find('@') != std::string_view::npos) return "userinfo in authority";
  std::string_view host;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 literal in authority";
    host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    // IPvFuture ("[v1.x]") and zone identifiers ("%25eth0") fail here too.
    if (!is_ipv6_literal(host)) return "invalid IPv6 literal in authority";
    for (std::size_t i = 0; i < host.size(); ++i) host_out[i] = ascii::to_lower(host[i]);
    out.host_size = host.size();
    out.kind = HostKind::kIpv6;
  } else {
    const std::size_t colon = text.find(':');
    host = text.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
    if (host.empty()) return "empty host in authority";
    out.host_size = normalize_host_name(host, host_out, &out.kind);
    if (out.host_size == 0) return "invalid host name in authority";
  }
  if (rest.empty()) {
    if (require_port) return "authority lacks a port";
    return {};
  }
  if (rest.front() != ':') return "junk after IPv6 literal in authority";
  rest.remove_prefix(1);
  if (rest.empty()) {  // "host:" is allowed by RFC 3986 and means no port
    if (require_port) return "authority lacks a port";
    return {};
  }
  if (rest.size() > 5) return "invalid port in authority";
  uint32_t port = 0;
  for (char c : rest) {
    if (!ascii::is_digit(static_cast<unsigned char>(c))) return "invalid port in authority";
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > 65535) return "invalid port in authority";
  out.port = static_cast<uint16_t>(port);
  return {};
}

// RFC 3986 path/query characters, less strictly than the grammar: real
// clients send unencoded '|', '"', '{' and the like, and those cannot change
// framing. What is refused: a fragment ('#' never belongs in a
// request-target), non-ASCII bytes and malformed percent-encoding.
bool is_acceptable_path_and_query(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c <= 0x20 || c >= 0x7f || c == '#') return false;
    if (c == '%') {
      if (s.size() - i < 3) return false;
      if (!ascii::is_hex_digit(static_cast<unsigned char>(s[i + 1])) ||
          !ascii::is_hex_digit(static_cast<unsigned char>(s[i + 2]))) {
        return false;
      }
      i += 2;
    }
  }
  return true;
}

}  // namespace

std::string_view to_string(HttpParseStatus status) {
  switch (status) {
    case HttpParseStatus::kNeedMore: return "need-more";
    case HttpParseStatus::kDone: return "done";
    case HttpParseStatus::kNotHttp: return "not-http";
    case HttpParseStatus::kInvalid: return "invalid";
  }
  return "?";
}

std::optional<std::string_view> HttpRequestHead::find_header(std::string_view name) const {
  return detail::find_header(headers, name);
}

HttpRequestParser::HttpRequestParser(HttpLimits limits) : limits_(limits) {
  limits_.max_head_bytes = std::min(limits_.max_head_bytes, detail::HeadBuffer::kMaxBytes);
}

void HttpRequestParser::reset() {
  s_ = State{};
  head_ = HttpRequestHead{};
  buf_.clear();
  path_storage_.clear();
}

HttpParseStatus HttpRequestParser::not_http(std::string_view why) {
  s_.status = HttpParseStatus::kNotHttp;
  s_.error = {0, why};
  return s_.status;
}

HttpParseStatus HttpRequestParser::invalid(int status, std::string_view why) {
  s_.status = HttpParseStatus::kInvalid;
  s_.error = {status, why};
  return s_.status;
}

HttpParseStatus HttpRequestParser::over_request_line_limit() {
  // A known method makes it an HTTP request with an absurd target (414);
  // otherwise we never learned that these bytes were HTTP at all.
  if (s_.phase != Phase::kMethod &&
      is_well_known_method(buf_.view(s_.request_line_begin, s_.method_end - s_.request_line_begin))) {
    return invalid(414, "request-line exceeds the size limit");
  }
  return not_http("no HTTP request-line within the size limit");
}

HttpRequestParser::FeedResult HttpRequestParser::feed(std::string_view bytes) {
  if (s_.status != HttpParseStatus::kNeedMore) return {s_.status, 0};
  const std::size_t before = buf_.size();
  const std::size_t take = buf_.append(bytes, limits_.max_head_bytes);

  run();
  if (s_.status == HttpParseStatus::kDone) return {s_.status, head_.head_length - before};
  if (s_.status == HttpParseStatus::kNeedMore && buf_.size() >= limits_.max_head_bytes) {
    // Every buffered byte has been examined and the head has not ended.
    if (s_.phase == Phase::kHeaders) {
      invalid(431, "request head exceeds the size limit");
    } else {
      over_request_line_limit();
    }
  }
  return {s_.status, take};
}

HttpParseStatus HttpRequestParser::run() {
  if (s_.phase != Phase::kHeaders && scan_request_line() != HttpParseStatus::kNeedMore) return s_.status;
  if (s_.phase == Phase::kHeaders) return scan_header_lines();
  return s_.status;
}

// The request-line's shape is checked byte by byte, so that a binary protocol
// is recognized as not-HTTP within its first few bytes, and a slow sender
// costs O(1) per byte however it splits its writes.
HttpParseStatus HttpRequestParser::scan_request_line() {
  static constexpr std::string_view kHttpSlash = "HTTP/";
  while (s_.phase != Phase::kHeaders && s_.pos < buf_.size()) {
    const auto c = static_cast<unsigned char>(buf_[s_.pos]);
    switch (s_.phase) {
      case Phase::kStart:
        if (c == '\r') {
          s_.phase = Phase::kLeadingLf;
        } else if (ascii::is_tchar(c)) {
          s_.request_line_begin = s_.pos;
          s_.phase = Phase::kMethod;
        } else {
          return not_http("first byte cannot start an HTTP method");
        }
        break;
      case Phase::kLeadingLf:
        if (c != '\n') return not_http("bare CR before the request-line");
        if (++s_.leading_empty_lines > kMaxLeadingEmptyLines) {
          return not_http("too many empty lines before the request-line");
        }
        s_.phase = Phase::kStart;
        break;
      case Phase::kMethod:
        if (c == ' ') {
          s_.method_end = s_.pos;
          s_.target_begin = s_.pos + 1;
          s_.phase = Phase::kTarget;
        } else if (!ascii::is_tchar(c)) {
          return not_http("method is not a token followed by a space");
        } else if (s_.pos - s_.request_line_begin >= kMaxMethodLength) {
          return not_http("method token too long");
        }
        break;
      case Phase::kTarget:
        if (c == ' ') {
          if (s_.pos == s_.target_begin) return not_http("empty request-target");
          s_.target_end = s_.pos;
          s_.version_begin = s_.pos + 1;
          s_.phase = Phase::kVersion;
        } else if (c < 0x20 || c == 0x7f) {
          return not_http("control character in request-target");
        }
        break;
      case Phase::kVersion: {
        const std::size_t k = s_.pos - s_.version_begin;
        const bool ok = k < kHttpSlash.size() ? c == static_cast<unsigned char>(kHttpSlash[k])
                        : k == 5 || k == 7   ? ascii::is_digit(c)
                        : k == 6             ? c == '.'
                                             : c == '\r';
        if (!ok) {
          // "GET / HTTP/1.1\n" is unmistakably HTTP, just with a bare LF.
          if (k == 8 && c == '\n') return invalid(400, "bare LF in request-line");
          return not_http("request-line does not end in HTTP/x.y");
        }
        if (k == 8) s_.phase = Phase::kRequestLineLf;
        break;
      }
      case Phase::kRequestLineLf:
        if (c != '\n') return invalid(400, "bare CR after the request-line");
        ++s_.pos;
        if (on_request_line() != HttpParseStatus::kNeedMore) return s_.status;
        s_.phase = Phase::kHeaders;
        s_.line_begin = s_.pos;
        return s_.status;
      case Phase::kHeaders:
        break;
    }
    ++s_.pos;
    if (s_.phase != Phase::kStart && s_.phase != Phase::kLeadingLf &&
        s_.pos - s_.request_line_begin > limits_.max_request_line_bytes) {
      return over_request_line_limit();
    }
  }
  return s_.status;
}

HttpParseStatus HttpRequestParser::on_request_line() {
  const std::string_view method = buf_.view(s_.request_line_begin, s_.method_end - s_.request_line_begin);
  const std::string_view target = buf_.view(s_.target_begin, s_.target_end - s_.target_begin);
  const char major = buf_[s_.version_begin + 5];
  const char minor = buf_[s_.version_begin + 7];

  if (major == '2' && minor == '0' && method == "PRI" && target == "*") {
    return not_http("HTTP/2 connection preface");
  }
  // RFC 9110 §2.5: a higher minor version is processed as the highest we
  // implement; another major version we cannot speak.
  if (major != '1') return invalid(505, "unsupported HTTP major version");
  s_.version = minor == '0' ? HttpVersion::kHttp10 : HttpVersion::kHttp11;

  Authority authority;
  if (method == "CONNECT") {
    // RFC 9110 §9.3.6: CONNECT's target is uri-host ":" port, nothing else.
    s_.target_form = TargetForm::kAuthority;
    if (!parse_authority(target, /*require_port=*/true, host_, authority).empty()) {
      return invalid(400, "CONNECT target is not host:port");
    }
    s_.host_from_target = true;
  } else if (target == "*") {
    if (method != "OPTIONS") return invalid(400, "asterisk-form target outside OPTIONS");
    s_.target_form = TargetForm::kAsterisk;
    path_storage_ = "*";
    s_.path_in_storage = true;
  } else if (target.front() == '/') {
    s_.target_form = TargetForm::kOrigin;
    if (!is_acceptable_path_and_query(target)) return invalid(400, "invalid character in request-target");
    s_.path_begin = s_.target_begin;
    s_.path_size = target.size();
  } else {
    // absolute-form: scheme "://" authority [path-abempty] ["?" query].
    s_.target_form = TargetForm::kAbsolute;
    const std::size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return invalid(400, "malformed request-target");
    const std::string_view scheme = target.substr(0, scheme_end);
    if (!ascii::iequals(scheme, "http") && !ascii::iequals(scheme, "https")) {
      return invalid(400, "request-target scheme is not http or https");
    }
    s_.scheme_begin = s_.target_begin;
    s_.scheme_size = scheme.size();
    const std::string_view rest = target.substr(scheme_end + 3);
    const std::size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
    // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
    const std::string_view reason =
        parse_authority(rest.substr(0, authority_end), /*require_port=*/false, host_, authority);
    if (!reason.empty()) {
      return invalid(400, reason == "userinfo in authority" ? "userinfo in request-target"
                                                            : "invalid authority in request-target");
    }
    s_.host_from_target = true;
    const std::string_view path = rest.substr(authority_end);
    if (!is_acceptable_path_and_query(path)) return invalid(400, "invalid character in request-target");
    if (path.empty() || path.front() == '?') {
      path_storage_ = "/";
      path_storage_.append(path);
      s_.path_in_storage = true;
    } else {
      s_.path_begin = s_.target_begin + scheme_end + 3 + authority_end;
      s_.path_size = path.size();
    }
  }
  if (s_.host_from_target) {
    s_.host_size = authority.host_size;
    s_.host_kind = authority.kind;
    s_.port = authority.port;
  }
  return s_.status;
}

HttpParseStatus HttpRequestParser::scan_header_lines() {
  while (s_.status == HttpParseStatus::kNeedMore && s_.pos < buf_.size()) {
    const std::optional<detail::HeadBuffer::Line> line = buf_.line_at(s_.line_begin, s_.pos);
    if (!line) {
      s_.pos = buf_.size();
      break;
    }
    // RFC 9112 §2.2: a bare LF is a place where two parsers may disagree
    // about where a line ends; refuse it rather than guess.
    if (line->bare_lf) return invalid(400, "bare LF in request head");
    s_.pos = line->next;
    if (line->end == s_.line_begin) return on_end_of_head(s_.pos);
    if (on_header_line(s_.line_begin, line->end) != HttpParseStatus::kNeedMore) return s_.status;
    s_.line_begin = s_.pos;
  }
  return s_.status;
}

HttpParseStatus HttpRequestParser::on_header_line(std::size_t begin, std::size_t end) {
  HeaderField field;
  const std::string_view error = detail::parse_field_line(
      buf_.view(begin, end - begin), buf_.field_count() == 0, "whitespace between request-line and first header field",
      field);
  if (!error.empty()) return invalid(400, error);
  if (buf_.field_count() >= limits_.max_headers) return invalid(431, "too many header fields");
  buf_.add_field(field);
  const std::string_view name = field.name;
  const std::string_view value = field.value;
  const auto value_begin = static_cast<std::size_t>(value.data() - buf_.data());

  if (ascii::iequals(name, "host")) {
    // RFC 9112 §3.2: more than one Host field line is a 400.
    if (++s_.host_fields > 1) return invalid(400, "more than one Host header field");
    s_.host_field_begin = value_begin;
    s_.host_field_size = value.size();
  } else if (ascii::iequals(name, "content-length")) {
    const std::string_view cl_error = detail::merge_content_length(value, s_.content_length);
    if (!cl_error.empty()) return invalid(400, cl_error);
  } else if (ascii::iequals(name, "transfer-encoding")) {
    return on_transfer_encoding(value);
  } else if (ascii::iequals(name, "connection")) {
    s_.connection.add(value);
  } else if (ascii::iequals(name, "upgrade")) {
    if (!s_.has_upgrade) {
      s_.has_upgrade = true;
      s_.upgrade_begin = value_begin;
      s_.upgrade_size = value.size();
    }
  } else if (ascii::iequals(name, "expect")) {
    ascii::for_each_list_element(value, [&](std::string_view expectation) {
      if (ascii::iequals(expectation, "100-continue")) s_.expect_continue = true;
      return true;
    });
  }
  return s_.status;
}

// RFC 9112 §6.1 and §7: codings apply in the order listed, across field lines;
// chunked exactly once and last. Anything after a chunked is a 400 (even
// another chunked); a coding we do not know, 501 (RFC 9112 §6.1).
HttpParseStatus HttpRequestParser::on_transfer_encoding(std::string_view value) {
  s_.transfer_encoding = true;
  int status = 400;
  const std::string_view error =
      detail::for_each_transfer_coding(value, [&](const detail::TransferCoding& coding) -> std::string_view {
        if (s_.chunked_final) return "chunked is not the final transfer coding";
        if (coding.is_chunked()) {
          if (coding.has_parameters) return "parameters on the chunked transfer coding";
          s_.chunked_final = true;
          return {};
        }
        if (!coding.is_token()) return "invalid transfer coding";
        for (std::string_view known : {"gzip", "x-gzip", "deflate", "compress", "x-compress"}) {
          if (ascii::iequals(coding.name, known)) return {};
        }
        status = 501;
        return "unsupported transfer coding";
      });
  if (!error.empty()) return invalid(status, error);
  return s_.status;
}

HttpParseStatus HttpRequestParser::on_end_of_head(std::size_t head_end) {
  const bool http11 = s_.version == HttpVersion::kHttp11;
  const bool connect = s_.target_form == TargetForm::kAuthority;

  // RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with an
  // invalid one, is a 400 — also when the target carries the authority.
  if (http11 && s_.host_fields == 0) return invalid(400, "missing Host header field");
  if (s_.host_fields == 1 && s_.host_field_size > 0) {
    char scratch[kMaxHostNameLength + 2];
    Authority authority;
    char* out = s_.host_from_target ? scratch : host_;
    if (!parse_authority(buf_.view(s_.host_field_begin, s_.host_field_size), /*require_port=*/false, out, authority)
             .empty()) {
      return invalid(400, "invalid Host header field");
    }
    if (!s_.host_from_target) {
      s_.host_size = authority.host_size;
      s_.host_kind = authority.kind;
      s_.port = authority.port;
    }
  }

  // RFC 9112 §6.1 and §6.3: the message-framing defences.
  if (s_.transfer_encoding) {
    // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (!http11) return invalid(400, "Transfer-Encoding in an HTTP/1.0 request");
    // §6.3 item 4: without a final chunked the length cannot be determined.
    if (!s_.chunked_final) return invalid(400, "chunked is not the final transfer coding");
    // §6.3 item 3 lets an intermediary drop Content-Length and go on, or treat
    // the pair as the smuggling attempt it usually is: we refuse it.
    if (s_.content_length.has_value()) return invalid(400, "both Transfer-Encoding and Content-Length");
  }
  // RFC 9110 §9.3.6: a CONNECT request has no content.
  if (connect && (s_.transfer_encoding || s_.content_length.value_or(0) != 0)) {
    return invalid(400, "CONNECT request with content");
  }
  if (s_.content_length.has_value() && *s_.content_length > limits_.max_content_length) {
    return invalid(413, "Content-Length exceeds the body size limit");
  }

  // Now the views: buf_ no longer moves (the excess is cut, nothing appended
  // until reset()).
  const std::span<const HeaderField> fields = buf_.finish(head_end);
  HttpRequestHead& h = head_;
  h = HttpRequestHead{};
  h.method = buf_.view(s_.request_line_begin, s_.method_end - s_.request_line_begin);
  h.target = buf_.view(s_.target_begin, s_.target_end - s_.target_begin);
  h.target_form = s_.target_form;
  h.scheme = buf_.view(s_.scheme_begin, s_.scheme_size);
  h.path = s_.path_in_storage ? std::string_view(path_storage_) : buf_.view(s_.path_begin, s_.path_size);
  h.version = s_.version;
  h.host = std::string_view(host_, s_.host_size);
  h.host_kind = s_.host_size > 0 ? s_.host_kind : HostKind::kNone;
  h.port = s_.port;
  h.has_host_header = s_.host_fields > 0;
  h.host_header = buf_.view(s_.host_field_begin, s_.host_field_size);
  h.content_length = s_.content_length;
  h.chunked = s_.transfer_encoding;
  h.keep_alive = s_.connection.persistent(http11);
  // RFC 9110 §7.8: Upgrade counts only with the "upgrade" connection option,
  // and a server MUST ignore it in an HTTP/1.0 request.
  if (http11 && s_.connection.upgrade && s_.has_upgrade) h.upgrade = buf_.view(s_.upgrade_begin, s_.upgrade_size);
  h.expect_continue = s_.expect_continue;
  h.is_connect = connect;
  h.head_length = head_end;
  h.headers = fields;
  s_.status = HttpParseStatus::kDone;
  return s_.status;
}

}  // namespace sluice::sniff
