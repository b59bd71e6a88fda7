#include "userspace-proxy/sniff/http_response_head.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/userspace-proxy/sniff/http_head_test_util.h"

namespace sluice::sniff {
namespace {

// Everything a head reports, copied out, to compare parses fed differently.
struct Summary {
  HttpParseStatus status = HttpParseStatus::kNeedMore;
  std::string error;
  HttpVersion version = HttpVersion::kHttp11;
  int code = 0;
  std::string reason;
  std::optional<uint64_t> content_length;
  bool chunked = false, has_transfer_encoding = false, keep_alive = false;
  std::size_t head_length = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  bool operator==(const Summary&) const = default;
};

Summary summarize(const HttpResponseParser& p) {
  Summary s;
  s.status = p.status();
  if (p.status() != HttpParseStatus::kDone) {
    s.error = p.error();
    return s;
  }
  const HttpResponseHead& h = p.head();
  s.version = h.version;
  s.code = h.status;
  s.reason = h.reason;
  s.content_length = h.content_length;
  s.chunked = h.chunked;
  s.has_transfer_encoding = h.has_transfer_encoding;
  s.keep_alive = h.keep_alive;
  s.head_length = h.head_length;
  for (const HeaderField& f : h.headers) s.headers.emplace_back(f.name, f.value);
  return s;
}

Summary parse(std::string_view bytes, HttpLimits limits = {}) {
  HttpResponseParser p(limits);
  p.feed(bytes);
  return summarize(p);
}

void expect_invalid(std::string_view bytes, std::string_view reason) {
  const Summary s = parse(bytes);
  EXPECT_EQ(s.status, HttpParseStatus::kInvalid) << bytes;
  EXPECT_EQ(s.error, reason) << bytes;
}

void expect_not_http(std::string_view bytes) {
  const Summary s = parse(bytes);
  EXPECT_EQ(s.status, HttpParseStatus::kNotHttp) << bytes;
  EXPECT_FALSE(s.error.empty());
}

// The body kind for a response head given as text.
ResponseBodyKind kind_of(std::string_view bytes, bool request_was_head = false, bool request_was_connect = false) {
  HttpResponseParser p;
  p.feed(bytes);
  EXPECT_EQ(p.status(), HttpParseStatus::kDone) << bytes << ": " << p.error();
  if (p.status() != HttpParseStatus::kDone) return ResponseBodyKind::kNone;
  return response_body_kind(p.head(), request_was_head, request_was_connect);
}

TEST(HttpResponseParser, SimpleOk) {
  const std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nX-Empty:\r\n\r\nhello";
  HttpResponseParser p;
  const auto r = p.feed(resp);
  ASSERT_EQ(r.status, HttpParseStatus::kDone) << p.error();
  EXPECT_EQ(r.consumed, resp.size() - 5);
  const HttpResponseHead& h = p.head();
  EXPECT_EQ(h.version, HttpVersion::kHttp11);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.reason, "OK");
  EXPECT_EQ(h.content_length, 5u);
  EXPECT_FALSE(h.chunked);
  EXPECT_FALSE(h.has_transfer_encoding);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.head_length, resp.size() - 5);
  ASSERT_EQ(h.headers.size(), 3u);
  EXPECT_EQ(h.headers[0].name, "Content-Type");
  EXPECT_EQ(h.headers[0].value, "text/html");
  EXPECT_EQ(h.headers[2].value, "");
  EXPECT_EQ(h.find_header("content-type"), "text/html");
  EXPECT_EQ(h.find_header("CONTENT-LENGTH"), "5");
  EXPECT_EQ(h.find_header("x-missing"), std::nullopt);
  EXPECT_EQ(p.feed(resp).consumed, 0u);  // final until reset
  EXPECT_EQ(p.feed(resp).status, HttpParseStatus::kDone);
}

TEST(HttpResponseParser, StatusLines) {
  Summary s = parse("HTTP/1.0 404 Not Found\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.version, HttpVersion::kHttp10);
  EXPECT_EQ(s.code, 404);
  EXPECT_EQ(s.reason, "Not Found");
  EXPECT_FALSE(s.keep_alive);

  s = parse("HTTP/1.1 500 Internal  Server\tError \r\n\r\n");  // kept as received
  EXPECT_EQ(s.reason, "Internal  Server\tError ");
  s = parse("HTTP/1.1 204 \r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.code, 204);
  EXPECT_EQ(s.reason, "");
  s = parse("HTTP/1.1 204\r\n\r\n");  // no SP before an empty reason
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.reason, "");
  s = parse("HTTP/1.1 200 caf\xc3\xa9\r\n\r\n");  // obs-text
  EXPECT_EQ(s.reason, "caf\xc3\xa9");
  s = parse("HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(s.code, 100);
  s = parse("HTTP/1.1 599 x\r\n\r\n");
  EXPECT_EQ(s.code, 599);

  expect_invalid("HTTP/1.1 600 Nope\r\n\r\n", "status code out of range");
  expect_invalid("HTTP/1.1 099 Nope\r\n\r\n", "status code out of range");
  expect_invalid("HTTP/1.1 20 OK\r\n\r\n", "status code is not three digits");
  expect_invalid("HTTP/1.1 2000 OK\r\n\r\n", "status code is not three digits");
  expect_invalid("HTTP/1.1 2x0 OK\r\n\r\n", "status code is not three digits");
  expect_invalid("HTTP/1.1 200OK\r\n\r\n", "malformed status-line");
  expect_invalid("HTTP/1.1  200 OK\r\n\r\n", "status code is not three digits");
  expect_invalid("HTTP/1.1\t200 OK\r\n\r\n", "malformed status-line");
  expect_invalid("HTTP/1.10 200 OK\r\n\r\n", "malformed HTTP version");
  expect_invalid("HTTP/1.2 200 OK\r\n\r\n", "unsupported HTTP version");
  expect_invalid("HTTP/1.x 200 OK\r\n\r\n", "malformed HTTP version");
  expect_invalid("HTTP/1.1 200 O\x01K\r\n\r\n", "invalid character in reason-phrase");
  expect_invalid("HTTP/1.1 200 OK\rX: y\r\n\r\n", "bare CR in status-line");
  expect_invalid("HTTP/1.1 200\rX: y\r\n\r\n", "bare CR in status-line");

  // HTTP/2 (and anything else that is not "HTTP/1.") is not HTTP/1.x at all.
  expect_not_http("HTTP/2 200\r\n\r\n");
  expect_not_http("HTTP/2.0 200 OK\r\n\r\n");
  expect_not_http("http/1.1 200 OK\r\n\r\n");
  expect_not_http(" HTTP/1.1 200 OK\r\n\r\n");
  expect_not_http("\r\nHTTP/1.1 200 OK\r\n\r\n");
  expect_not_http(std::string("\x00\x00\x12\x04\x00\x00\x00\x00\x00", 9));  // an h2 SETTINGS frame
  expect_not_http("SSH-2.0-OpenSSH_9.2\r\n");
}

TEST(HttpResponseParser, NotHttpDecidedOnTheFirstBytes) {
  HttpResponseParser p;
  EXPECT_EQ(p.feed(std::string_view("\x16")).status, HttpParseStatus::kNotHttp);
  EXPECT_FALSE(p.error().empty());
  HttpResponseParser q;
  EXPECT_EQ(q.feed(std::string_view("HTTP")).status, HttpParseStatus::kNeedMore);
  EXPECT_EQ(q.feed(std::string_view("/2")).status, HttpParseStatus::kNotHttp);
  HttpResponseParser r;
  EXPECT_EQ(r.feed(std::string_view("HTTP/1.")).status, HttpParseStatus::kNeedMore);
  EXPECT_EQ(r.feed(std::string_view("1 200")).status, HttpParseStatus::kNeedMore);
  HttpResponseParser t;
  const auto u8 = std::vector<uint8_t>{'H', 'T', 'X'};
  EXPECT_EQ(t.feed(std::span<const uint8_t>(u8)).status, HttpParseStatus::kNotHttp);
}

TEST(HttpResponseParser, KeepAlive) {
  EXPECT_TRUE(parse("HTTP/1.1 200 OK\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("HTTP/1.1 200 OK\r\nConnection: CLOSE\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("HTTP/1.1 200 OK\r\nConnection: foo, close\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("HTTP/1.1 200 OK\r\nConnection: foo\r\nConnection: ,Close ,\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse("HTTP/1.1 200 OK\r\nConnection: closed, x-close\r\n\r\n").keep_alive);
  // "close" wins over "keep-alive" whatever the order.
  EXPECT_FALSE(parse("HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").keep_alive);

  EXPECT_FALSE(parse("HTTP/1.0 200 OK\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse("HTTP/1.0 200 OK\r\nConnection: foo, keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\n\r\n").keep_alive);
}

TEST(HttpResponseParser, FramingFields) {
  Summary s = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_TRUE(s.chunked);
  EXPECT_TRUE(s.has_transfer_encoding);
  EXPECT_FALSE(s.content_length.has_value());

  s = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n");
  EXPECT_TRUE(s.chunked);
  s = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_FALSE(s.chunked);
  EXPECT_TRUE(s.has_transfer_encoding);
  s = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");  // not last: read until close
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_FALSE(s.chunked);
  s = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: x-custom;q=1, chunked\r\n\r\n");
  EXPECT_TRUE(s.chunked);

  s = parse("HTTP/1.1 200 OK\r\nContent-Length: 42\r\nContent-Length: 42\r\n\r\n");
  EXPECT_EQ(s.content_length, 42u);
  s = parse("HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n");
  EXPECT_EQ(s.content_length, 1u);
  s = parse("HTTP/1.1 200 OK\r\nContent-Length: 7 , 7\r\n\r\n");
  EXPECT_EQ(s.content_length, 7u);
  s = parse("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
  EXPECT_EQ(s.content_length, UINT64_MAX);
  s = parse("HTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n");
  EXPECT_EQ(s.content_length, 0u);
}

TEST(HttpResponseParser, SmugglingRefused) {
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "both Transfer-Encoding and Content-Length");
  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                 "both Transfer-Encoding and Content-Length");
  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
                 "both Transfer-Encoding and Content-Length");
  expect_invalid("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                 "both Transfer-Encoding and Content-Length");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 "conflicting Content-Length values");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: 1,2\r\n\r\n", "conflicting Content-Length values");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1, 2\r\n\r\n",
                 "conflicting Content-Length values");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "invalid Content-Length value");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n", "invalid Content-Length value");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n", "invalid Content-Length value");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length value");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
                 "Content-Length value overflows");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "empty Content-Length value");
  expect_invalid("HTTP/1.1 200 OK\r\nContent-Length: ,\r\n\r\n", "empty Content-Length value");

  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                 "chunked transfer coding applied more than once");
  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                 "chunked transfer coding applied more than once");
  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
                 "parameters on the chunked transfer coding");
  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: gz(ip), chunked\r\n\r\n", "invalid transfer coding");
  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: ;x, chunked\r\n\r\n", "invalid transfer coding");
  expect_invalid("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", "empty Transfer-Encoding value");
  expect_invalid("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "Transfer-Encoding in an HTTP/1.0 response");
}

TEST(HttpResponseParser, LineEndingsAndFieldSyntax) {
  // Bare LF is accepted everywhere a CRLF may be, and mixes with CRLF.
  const std::string lf = "HTTP/1.1 200 OK\nContent-Length: 3\nX-A: b\n\nabc";
  Summary s = parse(lf);
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.head_length, lf.size() - 3);
  EXPECT_EQ(s.reason, "OK");
  EXPECT_EQ(s.content_length, 3u);
  ASSERT_EQ(s.headers.size(), 2u);
  EXPECT_EQ(s.headers[1], (std::pair<std::string, std::string>("X-A", "b")));
  s = parse("HTTP/1.1 200 OK\r\nX-A: b\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.headers[0].second, "b");
  s = parse("HTTP/1.1 204\n\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.head_length, 14u);

  const std::string ok = "HTTP/1.1 200 OK\r\n";
  expect_invalid(ok + "X-A: 1\r\n folded\r\n\r\n", "obsolete line folding in header field");
  expect_invalid(ok + "X-A: 1\r\n\tfolded\r\n\r\n", "obsolete line folding in header field");
  expect_invalid(ok + "X-A: 1\n folded\n\n", "obsolete line folding in header field");
  expect_invalid(ok + " X-A: 1\r\n\r\n", "whitespace between status-line and first header field");
  expect_invalid(ok + "Content-Length : 5\r\n\r\n", "whitespace between header field name and colon");
  expect_invalid(ok + "Content-Length\t: 5\r\n\r\n", "whitespace between header field name and colon");
  expect_invalid(ok + "X-A: 1\r2\r\n\r\n", "bare CR in response head");
  expect_invalid(ok + "X-A: 1\r\r\n\r\n", "bare CR in response head");
  expect_invalid(ok + "\r\r\n", "bare CR in response head");
  expect_invalid(ok + std::string("X-A: a\0b\r\n\r\n", 12), "invalid character in header field value");
  expect_invalid(ok + "X-A: a\x7f\r\n\r\n", "invalid character in header field value");
  expect_invalid(ok + "NoColon\r\n\r\n", "header line without a colon");
  expect_invalid(ok + ": v\r\n\r\n", "empty header field name");
  expect_invalid(ok + "X(A): v\r\n\r\n", "invalid character in header field name");

  s = parse(ok + "X-Obs: caf\xc3\xa9  \r\nX-Tab:\tv\t\r\nX-Colon: a:b\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  ASSERT_EQ(s.headers.size(), 3u);
  EXPECT_EQ(s.headers[0].second, "caf\xc3\xa9");
  EXPECT_EQ(s.headers[1].second, "v");
  EXPECT_EQ(s.headers[2].second, "a:b");
}

TEST(HttpResponseParser, Limits) {
  std::string resp = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 100; ++i) resp += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(parse(resp + "\r\n").status, HttpParseStatus::kDone);  // 100 fields
  expect_invalid(resp + "X-100: v\r\n\r\n", "too many header fields");
  HttpLimits few;
  few.max_headers = 2;
  EXPECT_EQ(parse("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", few).status, HttpParseStatus::kDone);
  EXPECT_EQ(parse("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", few).error, "too many header fields");

  const std::string big = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70000, 'b') + "\r\n\r\n";
  expect_invalid(big, "response head exceeds the size limit");
  expect_invalid("HTTP/1.1 200 " + std::string(70000, 'r') + "\r\n\r\n", "response head exceeds the size limit");
  // Decided as soon as the limit is crossed, also when fed piecemeal.
  HttpResponseParser p;
  const std::size_t fed = head_test::feed_in_steps(p, big, 1000);
  EXPECT_EQ(p.status(), HttpParseStatus::kInvalid);
  EXPECT_LE(fed, 66000u);

  // A head of exactly the limit is fine; one byte more is not.
  HttpLimits limits;
  limits.max_head_bytes = 64;
  const std::string exact = "HTTP/1.1 200 OK\r\nX: " + std::string(64 - 24, 'v') + "\r\n\r\n";
  ASSERT_EQ(exact.size(), 64u);
  EXPECT_EQ(parse(exact + "body", limits).status, HttpParseStatus::kDone);
  EXPECT_EQ(parse(exact.substr(0, 30) + "v" + exact.substr(30), limits).error,
            "response head exceeds the size limit");

  // The content-length limit is the request's: a response body is streamed.
  HttpLimits small_body;
  small_body.max_content_length = 10;
  EXPECT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", small_body).content_length, 1000u);
}

TEST(HttpResponseParser, PipelinedResponses) {
  const std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  const std::string second = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string second_body = "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
  const std::string third = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
  const std::string stream = first + "hello" + second + second_body + third;

  std::string_view rest = stream;
  HttpResponseParser p;
  auto r = p.feed(rest);
  ASSERT_EQ(r.status, HttpParseStatus::kDone);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(p.head().head_length, first.size());
  rest.remove_prefix(r.consumed);
  {
    ResponseBodyFramer body(p.head(), false, false);
    EXPECT_EQ(body.kind(), ResponseBodyKind::kLength);
    const BodyFeedResult b = body.feed(rest);
    EXPECT_EQ(b.status, BodyStatus::kDone);
    EXPECT_EQ(b.consumed, 5u);
    EXPECT_EQ(body.content_bytes(), 5u);
    EXPECT_TRUE(body.reusable_after());
    rest.remove_prefix(b.consumed);
  }

  p.reset();
  r = p.feed(rest);
  ASSERT_EQ(r.status, HttpParseStatus::kDone);
  EXPECT_EQ(r.consumed, second.size());
  EXPECT_EQ(p.head().head_length, second.size());
  rest.remove_prefix(r.consumed);
  {
    ResponseBodyFramer body(p.head(), false, false);
    EXPECT_EQ(body.kind(), ResponseBodyKind::kChunked);
    // Fed in two pieces.
    BodyFeedResult b = body.feed(rest.substr(0, 4));
    EXPECT_EQ(b.status, BodyStatus::kNeedMore);
    EXPECT_EQ(b.consumed, 4u);
    rest.remove_prefix(4);
    b = body.feed(rest);
    EXPECT_EQ(b.status, BodyStatus::kDone);
    EXPECT_EQ(b.consumed, second_body.size() - 4);
    EXPECT_EQ(body.content_bytes(), 3u);
    EXPECT_TRUE(body.reusable_after());
    rest.remove_prefix(b.consumed);
  }

  p.reset();
  r = p.feed(rest);
  ASSERT_EQ(r.status, HttpParseStatus::kDone);
  EXPECT_EQ(r.consumed, third.size());
  EXPECT_EQ(p.head().status, 204);
  EXPECT_FALSE(p.head().keep_alive);
  ResponseBodyFramer body(p.head(), false, false);
  EXPECT_EQ(body.kind(), ResponseBodyKind::kNone);
  EXPECT_EQ(body.status(), BodyStatus::kDone);
  EXPECT_FALSE(body.reusable_after());  // Connection: close

  // Split inside a head: consumed counts only this feed's bytes.
  head_test::expect_consumed_per_feed(p, first, 10, "hel");
}

TEST(HttpResponseParser, InterimResponsesThenFinal) {
  const std::string stream =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  std::string_view rest = stream;
  HttpResponseParser p;
  std::vector<int> codes;
  while (true) {
    const auto r = p.feed(rest);
    ASSERT_EQ(r.status, HttpParseStatus::kDone) << p.error();
    rest.remove_prefix(r.consumed);
    codes.push_back(p.head().status);
    ResponseBodyFramer body(p.head(), false, false);
    if (p.head().status < 200) {
      EXPECT_EQ(body.kind(), ResponseBodyKind::kNone);
      EXPECT_EQ(body.feed(rest).consumed, 0u);
      p.reset();
      continue;
    }
    EXPECT_EQ(body.feed(rest).consumed, 2u);
    EXPECT_TRUE(body.reusable_after());
    break;
  }
  EXPECT_THAT(codes, ::testing::ElementsAre(100, 103, 201));
}

TEST(ResponseBodyKind, Rules) {
  const std::string cl = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
  const std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  // HEAD: never a body, whatever the fields say.
  EXPECT_EQ(kind_of(cl, /*request_was_head=*/true), ResponseBodyKind::kNone);
  EXPECT_EQ(kind_of(chunked, true), ResponseBodyKind::kNone);
  EXPECT_EQ(kind_of("HTTP/1.1 200 OK\r\n\r\n", true), ResponseBodyKind::kNone);
  // 1xx, 204, 304.
  EXPECT_EQ(kind_of("HTTP/1.1 100 Continue\r\n\r\n"), ResponseBodyKind::kNone);
  EXPECT_EQ(kind_of("HTTP/1.1 103 Early Hints\r\nContent-Length: 4\r\n\r\n"), ResponseBodyKind::kNone);
  EXPECT_EQ(kind_of("HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n"), ResponseBodyKind::kNone);
  EXPECT_EQ(kind_of("HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\n"), ResponseBodyKind::kNone);
  EXPECT_EQ(kind_of("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"), ResponseBodyKind::kNone);
  // 2xx to CONNECT: a tunnel; other answers to CONNECT are framed as usual.
  EXPECT_EQ(kind_of("HTTP/1.1 200 Connection established\r\n\r\n", false, true), ResponseBodyKind::kTunnel);
  EXPECT_EQ(kind_of(cl, false, true), ResponseBodyKind::kTunnel);
  EXPECT_EQ(kind_of("HTTP/1.1 299 x\r\n\r\n", false, true), ResponseBodyKind::kTunnel);
  EXPECT_EQ(kind_of("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", false, true), ResponseBodyKind::kLength);
  EXPECT_EQ(kind_of("HTTP/1.1 502 Bad\r\n\r\n", false, true), ResponseBodyKind::kUntilClose);
  // 101: the connection switched protocols.
  EXPECT_EQ(kind_of("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            ResponseBodyKind::kTunnel);
  // Transfer-Encoding.
  EXPECT_EQ(kind_of(chunked), ResponseBodyKind::kChunked);
  EXPECT_EQ(kind_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), ResponseBodyKind::kChunked);
  EXPECT_EQ(kind_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), ResponseBodyKind::kUntilClose);
  EXPECT_EQ(kind_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), ResponseBodyKind::kUntilClose);
  // Content-Length.
  EXPECT_EQ(kind_of(cl), ResponseBodyKind::kLength);
  EXPECT_EQ(kind_of("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), ResponseBodyKind::kNone);
  // Neither: until close.
  EXPECT_EQ(kind_of("HTTP/1.1 200 OK\r\n\r\n"), ResponseBodyKind::kUntilClose);
  EXPECT_EQ(kind_of("HTTP/1.0 200 OK\r\n\r\n"), ResponseBodyKind::kUntilClose);

  EXPECT_EQ(to_string(ResponseBodyKind::kNone), "none");
  EXPECT_EQ(to_string(ResponseBodyKind::kLength), "length");
  EXPECT_EQ(to_string(ResponseBodyKind::kChunked), "chunked");
  EXPECT_EQ(to_string(ResponseBodyKind::kUntilClose), "until-close");
  EXPECT_EQ(to_string(ResponseBodyKind::kTunnel), "tunnel");
}

struct FramerCase {
  const char* head;
  bool request_was_head;
  bool request_was_connect;
  ResponseBodyKind kind;
  bool reusable;
};

TEST(ResponseBodyFramer, ReusableAfter) {
  const FramerCase cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false, false, ResponseBodyKind::kLength, true},
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", false, false,
       ResponseBodyKind::kLength, false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", false, false, ResponseBodyKind::kLength, false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n", false, false,
       ResponseBodyKind::kLength, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, ResponseBodyKind::kChunked, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, false, ResponseBodyKind::kUntilClose, false},
      {"HTTP/1.1 200 OK\r\n\r\n", false, false, ResponseBodyKind::kUntilClose, false},
      {"HTTP/1.1 200 OK\r\n\r\n", true, false, ResponseBodyKind::kNone, true},
      {"HTTP/1.1 204 No Content\r\n\r\n", false, false, ResponseBodyKind::kNone, true},
      {"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n", false, false, ResponseBodyKind::kNone, false},
      {"HTTP/1.1 200 OK\r\n\r\n", false, true, ResponseBodyKind::kTunnel, false},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", false, false,
       ResponseBodyKind::kTunnel, false},
      {"HTTP/1.1 100 Continue\r\n\r\n", false, false, ResponseBodyKind::kNone, false},  // interim
  };
  for (const FramerCase& c : cases) {
    HttpResponseParser p;
    ASSERT_EQ(p.feed(std::string_view(c.head)).status, HttpParseStatus::kDone) << c.head;
    const ResponseBodyFramer f(p.head(), c.request_was_head, c.request_was_connect);
    EXPECT_EQ(f.kind(), c.kind) << c.head;
    EXPECT_EQ(f.reusable_after(), c.reusable) << c.head;
  }
}

TEST(ResponseBodyFramer, Feeding) {
  HttpResponseParser p;
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")).status, HttpParseStatus::kDone);
  ResponseBodyFramer length(p.head(), false, false);
  EXPECT_EQ(length.status(), BodyStatus::kNeedMore);
  EXPECT_EQ(length.feed(std::string_view("ab")).consumed, 2u);
  const BodyFeedResult r = length.feed(std::string_view("cdHTTP/1.1"));
  EXPECT_EQ(r.status, BodyStatus::kDone);
  EXPECT_EQ(r.consumed, 2u);
  EXPECT_EQ(length.content_bytes(), 4u);
  EXPECT_EQ(length.feed(std::string_view("more")).consumed, 0u);
  EXPECT_EQ(length.error(), "");

  // kNone: done before any byte.
  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).status, HttpParseStatus::kDone);
  ResponseBodyFramer none(p.head(), false, false);
  EXPECT_EQ(none.status(), BodyStatus::kDone);
  const BodyFeedResult n = none.feed(std::string_view("HTTP/1.1 200"));
  EXPECT_EQ(n.status, BodyStatus::kDone);
  EXPECT_EQ(n.consumed, 0u);
  EXPECT_EQ(none.content_bytes(), 0u);

  // Until close and tunnel: everything, forever.
  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.0 200 OK\r\n\r\n")).status, HttpParseStatus::kDone);
  ResponseBodyFramer until_close(p.head(), false, false);
  EXPECT_EQ(until_close.kind(), ResponseBodyKind::kUntilClose);
  for (int i = 0; i < 3; ++i) {
    const BodyFeedResult u = until_close.feed(std::string_view("0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"));
    EXPECT_EQ(u.status, BodyStatus::kNeedMore);
    EXPECT_EQ(u.consumed, 24u);
  }
  EXPECT_EQ(until_close.content_bytes(), 72u);
  EXPECT_EQ(until_close.status(), BodyStatus::kNeedMore);

  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 Connection established\r\n\r\n")).status, HttpParseStatus::kDone);
  ResponseBodyFramer tunnel(p.head(), false, true);
  const std::vector<uint8_t> bytes = {0x16, 0x03, 0x01};
  EXPECT_EQ(tunnel.feed(std::span<const uint8_t>(bytes)).consumed, 3u);
  EXPECT_EQ(tunnel.status(), BodyStatus::kNeedMore);

  // Broken chunked framing surfaces the chunked framer's error.
  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")).status,
            HttpParseStatus::kDone);
  ResponseBodyFramer chunked(p.head(), false, false, ChunkedLimits{});
  EXPECT_EQ(chunked.feed(std::string_view("zz\r\n")).status, BodyStatus::kInvalid);
  EXPECT_EQ(chunked.status(), BodyStatus::kInvalid);
  EXPECT_FALSE(chunked.error().empty());
}

// The head is not needed once the framer exists: it copies what it uses.
TEST(ResponseBodyFramer, OutlivesTheHead) {
  std::optional<ResponseBodyFramer> framer;
  {
    HttpResponseParser p;
    ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")).status,
              HttpParseStatus::kDone);
    framer.emplace(p.head(), false, false);
  }
  EXPECT_EQ(framer->feed(std::string_view("okX")).consumed, 2u);
  EXPECT_EQ(framer->status(), BodyStatus::kDone);
  EXPECT_TRUE(framer->reusable_after());
}

TEST(HttpResponseHead, IsHopByHop) {
  HttpResponseParser p;
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\n"
                                    "Connection: X-Private, keep-alive\r\n"
                                    "connection: Content-Length, transfer-encoding\r\n"
                                    "Keep-Alive: timeout=5\r\n"
                                    "Proxy-Connection: keep-alive\r\n"
                                    "TE: trailers\r\n"
                                    "Trailer: X-Checksum\r\n"
                                    "Upgrade: h2c\r\n"
                                    "x-private: secret\r\n"
                                    "X-Public: ok\r\n"
                                    "Transfer-Encoding: chunked\r\n"
                                    "Date: today\r\n\r\n"))
                .status,
            HttpParseStatus::kDone)
      << p.error();
  const HttpResponseHead& h = p.head();
  std::vector<std::string> hop, kept;
  for (const HeaderField& f : h.headers) (h.is_hop_by_hop(f) ? hop : kept).emplace_back(f.name);
  EXPECT_THAT(hop, ::testing::ElementsAre("Connection", "connection", "Keep-Alive", "Proxy-Connection", "TE",
                                          "Trailer", "Upgrade", "x-private"));
  EXPECT_THAT(kept, ::testing::ElementsAre("X-Public", "Transfer-Encoding", "Date"));
  // Fields not in the head are judged by name too.
  EXPECT_TRUE(h.is_hop_by_hop({"X-PRIVATE", "v"}));
  EXPECT_TRUE(h.is_hop_by_hop({"KEEP-ALIVE", "v"}));
  EXPECT_FALSE(h.is_hop_by_hop({"Content-Length", "1"}));
  EXPECT_FALSE(h.is_hop_by_hop({"X-Private-Not", "v"}));
}

TEST(RebuildResponseHead, DropsHopByHopAndAddsClose) {
  HttpResponseParser p;
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\n"
                                    "Content-Type:   text/plain  \n"
                                    "Connection: keep-alive, X-Secret\n"
                                    "X-Secret: 1\n"
                                    "Keep-Alive: timeout=5\n"
                                    "Content-Length: 2\n"
                                    "Set-Cookie: a=1\n"
                                    "Set-Cookie: b=2\n\n"))
                .status,
            HttpParseStatus::kDone)
      << p.error();
  EXPECT_EQ(rebuild_response_head(p.head(), false),
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain\r\n"
            "Content-Length: 2\r\n"
            "Set-Cookie: a=1\r\n"
            "Set-Cookie: b=2\r\n"
            "\r\n");
  EXPECT_EQ(rebuild_response_head(p.head(), true),
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain\r\n"
            "Content-Length: 2\r\n"
            "Set-Cookie: a=1\r\n"
            "Set-Cookie: b=2\r\n"
            "connection: close\r\n"
            "\r\n");

  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.0 204\r\nConnection: close\r\nX-A: b\r\n\r\n")).status,
            HttpParseStatus::kDone);
  EXPECT_EQ(rebuild_response_head(p.head(), true), "HTTP/1.0 204 \r\nX-A: b\r\nconnection: close\r\n\r\n");
  EXPECT_EQ(rebuild_response_head(p.head(), false), "HTTP/1.0 204 \r\nX-A: b\r\n\r\n");

  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 404 Not  Found\r\nTransfer-Encoding: chunked\r\n"
                                    "Connection: transfer-encoding\r\nTrailer: X-Sum\r\n\r\n"))
                .status,
            HttpParseStatus::kDone);
  EXPECT_EQ(rebuild_response_head(p.head(), false),
            "HTTP/1.1 404 Not  Found\r\nTransfer-Encoding: chunked\r\n\r\n");

  // A rebuilt head parses back to the same response.
  p.reset();
  const std::string original =
      "HTTP/1.1 302 Found\r\nLocation: /x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
  ASSERT_EQ(p.feed(original).status, HttpParseStatus::kDone);
  const std::string rebuilt = rebuild_response_head(p.head(), true);
  HttpResponseParser q;
  ASSERT_EQ(q.feed(rebuilt).status, HttpParseStatus::kDone) << q.error();
  EXPECT_EQ(q.head().status, 302);
  EXPECT_EQ(q.head().reason, "Found");
  EXPECT_EQ(q.head().content_length, 0u);
  EXPECT_FALSE(q.head().keep_alive);
  EXPECT_EQ(q.head().find_header("location"), "/x");
  EXPECT_EQ(q.head().head_length, rebuilt.size());
}

TEST(RebuildResponseHead, SwitchingProtocolsKeepsUpgrade) {
  HttpResponseParser p;
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n"))
                .status,
            HttpParseStatus::kDone);
  const std::string expected =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc=\r\n"
      "connection: upgrade\r\n\r\n";
  EXPECT_EQ(rebuild_response_head(p.head(), false), expected);
  EXPECT_EQ(rebuild_response_head(p.head(), true), expected);  // a tunnel follows: no close
  EXPECT_TRUE(p.head().is_hop_by_hop(p.head().headers[0]));    // still hop-by-hop by the rule
}

HttpRequestHead must_parse_request(HttpRequestParser& p, std::string_view bytes) {
  p.reset();
  const auto r = p.feed(bytes);
  EXPECT_EQ(r.status, HttpParseStatus::kDone) << bytes << ": " << p.error().reason;
  return p.head();
}

TEST(RebuildRequestHead, DropsHopByHop) {
  HttpRequestParser p;
  HttpRequestHead h = must_parse_request(p,
                                         "GET /a?b=c HTTP/1.1\r\n"
                                         "Host: example.com\r\n"
                                         "Connection: keep-alive, X-Trace\r\n"
                                         "Keep-Alive: 300\r\n"
                                         "Proxy-Connection: keep-alive\r\n"
                                         "TE: trailers\r\n"
                                         "Trailer: X-Sum\r\n"
                                         "Upgrade: h2c\r\n"
                                         "X-Trace: 1\r\n"
                                         "Accept: */*\r\n\r\n");
  EXPECT_EQ(rebuild_request_head(h), "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");

  h = must_parse_request(p,
                         "POST http://example.com/up HTTP/1.0\r\nHost: example.com\r\n"
                         "Connection: keep-alive, host, content-length\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_EQ(rebuild_request_head(h),
            "POST http://example.com/up HTTP/1.0\r\nHost: example.com\r\nContent-Length: 3\r\n\r\n");

  h = must_parse_request(p,
                         "PUT /x HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\n"
                         "Connection: transfer-encoding\r\n\r\n");
  EXPECT_EQ(rebuild_request_head(h), "PUT /x HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\n\r\n");

  h = must_parse_request(p, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                            "Proxy-Connection: keep-alive\r\n\r\n");
  EXPECT_EQ(rebuild_request_head(h), "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
}

TEST(RebuildRequestHead, RewriteChangesTargetHostAndFields) {
  HttpRequestParser p;
  HttpRequestHead h = must_parse_request(p,
                                         "GET /old/a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
                                         "X-Keep: 1\r\n\r\n");
  HeadRewrite rw;
  rw.target = "/new/a";
  rw.host = "backend.example.com";
  rw.edit_fields = [](std::vector<std::pair<std::string, std::string>>& f) { f.emplace_back("x-added", "v"); };
  EXPECT_EQ(rebuild_request_head(h, rw),
            "GET /new/a HTTP/1.1\r\nHost: backend.example.com\r\nX-Keep: 1\r\nx-added: v\r\n\r\n");
  // Nothing set: the same as the plain rebuild.
  EXPECT_EQ(rebuild_request_head(h, HeadRewrite{}), rebuild_request_head(h));
}

TEST(RebuildResponseHead, RewriteEditsFieldsKeepingTheStatusLine) {
  HttpResponseParser p;
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 404 Not Found\r\nServer: x\r\nContent-Length: 0\r\n\r\n")).status,
            HttpParseStatus::kDone);
  HeadRewrite rw;
  rw.edit_fields = [](std::vector<std::pair<std::string, std::string>>& f) { f.erase(f.begin()); };
  EXPECT_EQ(rebuild_response_head(p.head(), true, rw),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nconnection: close\r\n\r\n");
}

TEST(HopByHop, ADeclaredKeepAliveAloneMayBeRelayedAsItIs) {
  HttpResponseParser p;
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")).status,
            HttpParseStatus::kDone);
  EXPECT_FALSE(has_hop_by_hop_fields(p.head().headers, /*keep_alive_ok=*/true));
  EXPECT_TRUE(has_hop_by_hop_fields(p.head().headers, /*keep_alive_ok=*/false));
  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n")).status,
            HttpParseStatus::kDone);
  EXPECT_TRUE(has_hop_by_hop_fields(p.head().headers, /*keep_alive_ok=*/true));
  p.reset();
  ASSERT_EQ(p.feed(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).status, HttpParseStatus::kDone);
  EXPECT_FALSE(has_hop_by_hop_fields(p.head().headers, /*keep_alive_ok=*/false));
}

TEST(RebuildRequestHead, UpgradeKept) {
  HttpRequestParser p;
  HttpRequestHead h = must_parse_request(p,
                                         "GET /chat HTTP/1.1\r\n"
                                         "Host: server.example.com\r\n"
                                         "Upgrade: websocket\r\n"
                                         "Connection: keep-alive, Upgrade\r\n"
                                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                         "Sec-WebSocket-Version: 13\r\n\r\n");
  ASSERT_EQ(h.upgrade, "websocket");
  EXPECT_EQ(rebuild_request_head(h),
            "GET /chat HTTP/1.1\r\n"
            "Host: server.example.com\r\n"
            "Upgrade: websocket\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "connection: upgrade\r\n"
            "\r\n");

  // Without the "upgrade" option the request asks for nothing: Upgrade goes.
  h = must_parse_request(p, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_TRUE(h.upgrade.empty());
  EXPECT_EQ(rebuild_request_head(h), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");

  // The rebuilt request parses back as the same upgrade.
  h = must_parse_request(p, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  const std::string rebuilt = rebuild_request_head(h);
  HttpRequestParser q;
  ASSERT_EQ(q.feed(rebuilt).status, HttpParseStatus::kDone);
  EXPECT_EQ(q.head().upgrade, "websocket");
  EXPECT_EQ(q.head().path, "/ws");
}

// The same verdict and the same fields whether the head arrives whole, in two
// pieces cut anywhere, or byte by byte.
class ResponseSplitEquivalence : public ::testing::TestWithParam<std::string> {};

TEST_P(ResponseSplitEquivalence, WholeSplitAndByteByByteAgree) {
  head_test::expect_same_however_split<HttpResponseParser>(GetParam(), summarize);
}

INSTANTIATE_TEST_SUITE_P(
    Responses, ResponseSplitEquivalence,
    ::testing::Values(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\nHTTP/1.0 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
        "HTTP/1.1 204\nX-A: b\n\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX : 1\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\rX\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\n\r\n"));

}  // namespace
}  // namespace sluice::sniff
