#include "userspace-proxy/sniff/http_request_head.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "tests/userspace-proxy/sniff/http_head_test_util.h"

namespace sluice::sniff {
namespace {

// Everything a head reports, copied out, to compare parses fed differently.
struct Summary {
  HttpParseStatus status = HttpParseStatus::kNeedMore;
  int error_status = 0;
  std::string error;
  std::string method, target, scheme, path, host, host_header, upgrade;
  TargetForm form = TargetForm::kOrigin;
  HttpVersion version = HttpVersion::kHttp11;
  HostKind host_kind = HostKind::kNone;
  std::optional<uint16_t> port;
  std::optional<uint64_t> content_length;
  bool chunked = false, keep_alive = false, expect_continue = false, is_connect = false;
  std::size_t head_length = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  bool operator==(const Summary&) const = default;
};

Summary summarize(const HttpRequestParser& p) {
  Summary s;
  s.status = p.status();
  if (p.status() != HttpParseStatus::kDone) {
    s.error_status = p.error().status;
    s.error = p.error().reason;
    return s;
  }
  const HttpRequestHead& h = p.head();
  s.method = h.method;
  s.target = h.target;
  s.scheme = h.scheme;
  s.path = h.path;
  s.host = h.host;
  s.host_header = h.host_header;
  s.upgrade = h.upgrade;
  s.form = h.target_form;
  s.version = h.version;
  s.host_kind = h.host_kind;
  s.port = h.port;
  s.content_length = h.content_length;
  s.chunked = h.chunked;
  s.keep_alive = h.keep_alive;
  s.expect_continue = h.expect_continue;
  s.is_connect = h.is_connect;
  s.head_length = h.head_length;
  for (const HeaderField& f : h.headers) s.headers.emplace_back(f.name, f.value);
  return s;
}

Summary parse(std::string_view bytes, HttpLimits limits = {}) {
  HttpRequestParser p(limits);
  p.feed(bytes);
  return summarize(p);
}

void expect_invalid(std::string_view bytes, int status, std::string_view reason) {
  const Summary s = parse(bytes);
  EXPECT_EQ(s.status, HttpParseStatus::kInvalid) << bytes;
  EXPECT_EQ(s.error_status, status) << bytes;
  EXPECT_EQ(s.error, reason) << bytes;
}

void expect_not_http(std::string_view bytes) {
  const Summary s = parse(bytes);
  EXPECT_EQ(s.status, HttpParseStatus::kNotHttp) << bytes;
  EXPECT_EQ(s.error_status, 0);
}

TEST(HttpRequestParser, SimpleGet) {
  const std::string req = "GET /politics?x=1 HTTP/1.1\r\nHost: Edition.CNN.com\r\nUser-Agent: curl/7.88\r\n\r\n";
  HttpRequestParser p;
  const auto r = p.feed(req);
  ASSERT_EQ(r.status, HttpParseStatus::kDone) << p.error().reason;
  EXPECT_EQ(r.consumed, req.size());
  const HttpRequestHead& h = p.head();
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/politics?x=1");
  EXPECT_EQ(h.path, "/politics?x=1");
  EXPECT_EQ(h.target_form, TargetForm::kOrigin);
  EXPECT_EQ(h.version, HttpVersion::kHttp11);
  EXPECT_EQ(h.host, "edition.cnn.com");
  EXPECT_EQ(h.host_kind, HostKind::kName);
  EXPECT_EQ(h.host_header, "Edition.CNN.com");
  EXPECT_FALSE(h.port.has_value());
  EXPECT_FALSE(h.content_length.has_value());
  EXPECT_FALSE(h.chunked);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.is_connect);
  EXPECT_EQ(h.head_length, req.size());
  ASSERT_EQ(h.headers.size(), 2u);
  EXPECT_EQ(h.find_header("user-agent"), "curl/7.88");
  EXPECT_EQ(h.find_header("accept"), std::nullopt);
}

TEST(HttpRequestParser, HostPortAndIpLiterals) {
  Summary s = parse("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
  EXPECT_EQ(s.host, "example.com");
  EXPECT_EQ(s.port, 8080);

  s = parse("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.host, "::1");
  EXPECT_EQ(s.host_kind, HostKind::kIpv6);
  EXPECT_EQ(s.port, 80);

  s = parse("GET / HTTP/1.1\r\nHost: [2001:DB8::A]\r\n\r\n");
  EXPECT_EQ(s.host, "2001:db8::a");
  EXPECT_FALSE(s.port.has_value());

  s = parse("GET / HTTP/1.1\r\nHost: 10.1.2.3:80\r\n\r\n");
  EXPECT_EQ(s.host, "10.1.2.3");
  EXPECT_EQ(s.host_kind, HostKind::kIpv4);

  s = parse("GET / HTTP/1.1\r\nHost: example.com.:\r\n\r\n");  // empty port: none
  EXPECT_EQ(s.host, "example.com");
  EXPECT_FALSE(s.port.has_value());

  for (std::string_view bad : {"a b", "[::1", "[::1]x", "[fe80::1%25eth0]", "[v1.x]", "ex@mple.com", "host:0",
                               "host:65536", "host:8o", "host:123456", ":80", "127.1", "1.2.3.4.5", "a..b",
                               "exa_mple.com:80:80"}) {
    const std::string req = "GET / HTTP/1.1\r\nHost: " + std::string(bad) + "\r\n\r\n";
    const Summary t = parse(req);
    EXPECT_EQ(t.status, HttpParseStatus::kInvalid) << bad;
    EXPECT_EQ(t.error_status, 400) << bad;
    EXPECT_EQ(t.error, "invalid Host header field") << bad;
  }
}

TEST(HttpRequestParser, AbsoluteFormOverridesHost) {
  const Summary s = parse("GET http://Edition.cnn.com/politics HTTP/1.1\r\nHost: other.example\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_EQ(s.form, TargetForm::kAbsolute);
  EXPECT_EQ(s.scheme, "http");
  EXPECT_EQ(s.host, "edition.cnn.com");
  EXPECT_EQ(s.host_header, "other.example");
  EXPECT_EQ(s.path, "/politics");
  EXPECT_FALSE(s.port.has_value());

  Summary t = parse("GET HTTPS://api.example.com:8443 HTTP/1.1\r\nHost: api.example.com:8443\r\n\r\n");
  ASSERT_EQ(t.status, HttpParseStatus::kDone) << t.error;
  EXPECT_EQ(t.scheme, "HTTPS");
  EXPECT_EQ(t.port, 8443);
  EXPECT_EQ(t.path, "/");

  t = parse("GET http://a.example?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n");
  EXPECT_EQ(t.path, "/?q=1");

  t = parse("GET http://[::1]:8080/x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
  EXPECT_EQ(t.host, "::1");
  EXPECT_EQ(t.port, 8080);
  EXPECT_EQ(t.path, "/x");

  // HTTP/1.0 forward-proxy request without Host.
  t = parse("GET http://a.example/ HTTP/1.0\r\n\r\n");
  ASSERT_EQ(t.status, HttpParseStatus::kDone) << t.error;
  EXPECT_EQ(t.host, "a.example");

  expect_invalid("GET http://good.example@evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "userinfo in request-target");
  expect_invalid("GET http:///path HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid authority in request-target");
  expect_invalid("GET ftp://a.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request-target scheme is not http or https");
  expect_invalid("GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request-target");
  // Even with absolute-form, HTTP/1.1 needs a (valid) Host.
  expect_invalid("GET http://a.example/ HTTP/1.1\r\n\r\n", 400, "missing Host header field");
  expect_invalid("GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host header field");
}

TEST(HttpRequestParser, Connect) {
  const Summary s = parse("CONNECT edition.cnn.com:443 HTTP/1.1\r\nHost: edition.cnn.com:443\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  EXPECT_TRUE(s.is_connect);
  EXPECT_EQ(s.form, TargetForm::kAuthority);
  EXPECT_EQ(s.host, "edition.cnn.com");
  EXPECT_EQ(s.port, 443);
  EXPECT_EQ(s.path, "");

  const Summary v6 = parse("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n");
  EXPECT_EQ(v6.host, "2001:db8::1");

  expect_invalid("CONNECT edition.cnn.com HTTP/1.1\r\nHost: x\r\n\r\n", 400, "CONNECT target is not host:port");
  expect_invalid("CONNECT /path HTTP/1.1\r\nHost: x\r\n\r\n", 400, "CONNECT target is not host:port");
  expect_invalid("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\n", 400,
                 "CONNECT request with content");
  EXPECT_EQ(parse("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n").status,
            HttpParseStatus::kDone);
}

TEST(HttpRequestParser, AsteriskForm) {
  const Summary s = parse("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone);
  EXPECT_EQ(s.form, TargetForm::kAsterisk);
  EXPECT_EQ(s.path, "*");
  expect_invalid("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "asterisk-form target outside OPTIONS");
}

TEST(HttpRequestParser, TargetCharacters) {
  expect_invalid("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request-target");
  expect_invalid("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request-target");
  expect_invalid("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request-target");
  expect_invalid("GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request-target");
  EXPECT_EQ(parse("GET /%41|{\"}?a=[1] HTTP/1.1\r\nHost: a\r\n\r\n").status, HttpParseStatus::kDone);
}

TEST(HttpRequestParser, KeepAliveDefaults) {
  EXPECT_TRUE(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
  const Summary s = parse("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(s.version, HttpVersion::kHttp10);
  EXPECT_EQ(s.host, "");
  EXPECT_EQ(s.host_kind, HostKind::kNone);
  // An empty Host is allowed (RFC 9112 §3.2): no authority.
  const Summary e = parse("GET / HTTP/1.1\r\nHost:\r\n\r\n");
  ASSERT_EQ(e.status, HttpParseStatus::kDone);
  EXPECT_EQ(e.host, "");
}

TEST(HttpRequestParser, Versions) {
  EXPECT_EQ(parse("GET / HTTP/1.2\r\nHost: a\r\n\r\n").version, HttpVersion::kHttp11);
  expect_invalid("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported HTTP major version");
  expect_invalid("GET / HTTP/0.9\r\n\r\n", 505, "unsupported HTTP major version");
  expect_not_http("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  expect_not_http("GET /\r\n");  // HTTP/0.9
  expect_not_http("GET / http/1.1\r\n");
  expect_not_http("GET / HTTP/1.10\r\n");
}

TEST(HttpRequestParser, UpgradeAndExpect) {
  Summary s = parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(s.upgrade, "websocket");
  s = parse("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(s.upgrade, "");
  s = parse("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(s.upgrade, "");
  s = parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
  EXPECT_TRUE(s.expect_continue);
  EXPECT_EQ(s.content_length, 5u);
}

TEST(HttpRequestParser, ContentLength) {
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").content_length, 0u);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\nContent-Length: 42\r\n\r\n").content_length, 42u);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42, 42\r\n\r\n").content_length, 42u);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n").content_length,
            UINT64_MAX);
  expect_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\nContent-Length: 43\r\n\r\n", 400,
                 "conflicting Content-Length values");
  expect_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42, 7\r\n\r\n", 400, "conflicting Content-Length values");
  for (std::string_view bad : {"+5", "-1", "0x5", "5a", "5 5", "1.0", "\xd9\xa5"}) {
    expect_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::string(bad) + "\r\n\r\n", 400,
                   "invalid Content-Length value");
  }
  expect_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, "empty Content-Length value");
  expect_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: , \r\n\r\n", 400, "empty Content-Length value");
  expect_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 400,
                 "Content-Length value overflows");
  HttpLimits limits;
  limits.max_content_length = 1000;
  const Summary s = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", limits);
  EXPECT_EQ(s.status, HttpParseStatus::kInvalid);
  EXPECT_EQ(s.error_status, 413);
}

TEST(HttpRequestParser, TransferEncoding) {
  Summary s = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_TRUE(s.chunked);
  EXPECT_FALSE(s.content_length.has_value());
  EXPECT_TRUE(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").chunked);
  EXPECT_TRUE(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding:\tchunked\r\n\r\n").chunked);

  const std::string post = "POST / HTTP/1.1\r\nHost: a\r\n";
  // Smuggling shapes.
  expect_invalid(post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
                 "both Transfer-Encoding and Content-Length");
  expect_invalid(post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                 "both Transfer-Encoding and Content-Length");
  expect_invalid(post + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400, "chunked is not the final transfer coding");
  expect_invalid(post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
                 "chunked is not the final transfer coding");
  expect_invalid(post + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400, "chunked is not the final transfer coding");
  expect_invalid(post + "Transfer-Encoding: gzip\r\n\r\n", 400, "chunked is not the final transfer coding");
  expect_invalid(post + "Transfer-Encoding: chunked;q=1\r\n\r\n", 400, "parameters on the chunked transfer coding");
  expect_invalid(post + "Transfer-Encoding: xchunked\r\n\r\n", 501, "unsupported transfer coding");
  expect_invalid(post + "Transfer-Encoding: identity, chunked\r\n\r\n", 501, "unsupported transfer coding");
  expect_invalid(post + "Transfer-Encoding: \"chunked\"\r\n\r\n", 400, "invalid transfer coding");
  expect_invalid(post + "Transfer-Encoding:\r\n\r\n", 400, "empty Transfer-Encoding value");
  expect_invalid(post + "Transfer-Encoding : chunked\r\n\r\n", 400, "whitespace between header field name and colon");
  expect_invalid(post + "Transfer-Encoding:\x0b" "chunked\r\n\r\n", 400, "invalid character in header field value");
  expect_invalid("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding in an HTTP/1.0 request");
}

TEST(HttpRequestParser, HeaderSyntax) {
  const std::string get = "GET / HTTP/1.1\r\nHost: a\r\n";
  expect_invalid(get + "X-A: 1\r\n folded\r\n\r\n", 400, "obsolete line folding in header field");
  expect_invalid("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "whitespace between request-line and first header field");
  expect_invalid(get + "X-A: 1\n\r\n", 400, "bare LF in request head");
  expect_invalid(get + "\n", 400, "bare LF in request head");
  expect_invalid("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF in request-line");
  expect_invalid("GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "bare CR after the request-line");
  expect_invalid(get + "X-A: 1\r2\r\n\r\n", 400, "invalid character in header field value");
  expect_invalid(get + std::string("X-A: a\0b\r\n\r\n", 12), 400, "invalid character in header field value");
  expect_invalid(get + "NoColon\r\n\r\n", 400, "header line without a colon");
  expect_invalid(get + ": v\r\n\r\n", 400, "empty header field name");
  expect_invalid(get + "X(A): v\r\n\r\n", 400, "invalid character in header field name");
  expect_invalid(get + "Host: b\r\n\r\n", 400, "more than one Host header field");
  expect_invalid("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, "missing Host header field");

  const Summary s = parse(get + "X-Obs: caf\xc3\xa9  \r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n");
  ASSERT_EQ(s.status, HttpParseStatus::kDone) << s.error;
  ASSERT_EQ(s.headers.size(), 4u);
  EXPECT_EQ(s.headers[1], (std::pair<std::string, std::string>("X-Obs", "caf\xc3\xa9")));
  EXPECT_EQ(s.headers[2].second, "");
  EXPECT_EQ(s.headers[3].second, "v");
}

TEST(HttpRequestParser, Limits) {
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 99; ++i) req += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(parse(req + "\r\n").status, HttpParseStatus::kDone);  // 100 fields
  expect_invalid(req + "X-100: v\r\n\r\n", 431, "too many header fields");

  const std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(70000, 'b') + "\r\n\r\n";
  expect_invalid(big, 431, "request head exceeds the size limit");
  // Decided as soon as the limit is crossed, also when fed piecemeal.
  HttpRequestParser p;
  const std::size_t fed = head_test::feed_in_steps(p, big, 1000);
  EXPECT_EQ(p.status(), HttpParseStatus::kInvalid);
  EXPECT_LE(fed, 66000u);

  // A head of exactly the limit is fine.
  HttpLimits limits;
  limits.max_head_bytes = 64;
  const std::string exact = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(64 - 32, 'v') + "\r\n\r\n";
  ASSERT_EQ(exact.size(), 64u);
  EXPECT_EQ(parse(exact, limits).status, HttpParseStatus::kDone);
  EXPECT_EQ(parse(exact.substr(0, 30) + "v" + exact.substr(30), limits).error_status, 431);

  expect_invalid("GET /" + std::string(20000, 'a') + " HTTP/1.1\r\n", 414, "request-line exceeds the size limit");
  expect_not_http("FROB /" + std::string(20000, 'a') + " HTTP/1.1\r\n");
}

TEST(HttpRequestParser, NotHttp) {
  expect_not_http(std::string("\x16\x03\x01\x02\x00", 5));
  expect_not_http("SSH-2.0-OpenSSH_9.2\r\n");
  expect_not_http("*1\r\n$4\r\nPING\r\n");
  expect_not_http(std::string("\0\0\0\x10", 4));
  expect_not_http("GETTING_A_VERY_LONG_TOKEN_WITHOUT_SPACE");
  expect_not_http("GET  / HTTP/1.1\r\n");
  expect_not_http("GET /\x01 HTTP/1.1\r\n");
  expect_not_http("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n");
  expect_not_http("\r\rGET");
  // Decided early, without waiting for a line end.
  HttpRequestParser p;
  EXPECT_EQ(p.feed(std::string_view("\x16")).status, HttpParseStatus::kNotHttp);
  HttpRequestParser q;
  EXPECT_EQ(q.feed(std::string_view("GET / FTP")).status, HttpParseStatus::kNotHttp);
  HttpRequestParser r;
  EXPECT_EQ(r.feed(std::string_view("GET / HTTP")).status, HttpParseStatus::kNeedMore);
}

TEST(HttpRequestParser, LeadingEmptyLinesAreSkippedAndCounted) {
  const std::string req = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const Summary s = parse(req);
  ASSERT_EQ(s.status, HttpParseStatus::kDone);
  EXPECT_EQ(s.method, "GET");
  EXPECT_EQ(s.head_length, req.size());
}

TEST(HttpRequestParser, PipelinedHeads) {
  const std::string first = "GET /one HTTP/1.1\r\nHost: a.example\r\n\r\n";
  const std::string second = "HEAD /two HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n";
  const std::string both = first + second;
  HttpRequestParser p;
  auto r = p.feed(both);
  ASSERT_EQ(r.status, HttpParseStatus::kDone);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(p.head().head_length, first.size());
  EXPECT_EQ(p.head().path, "/one");
  EXPECT_EQ(p.feed(both).consumed, 0u);  // final until reset
  p.reset();
  r = p.feed(std::string_view(both).substr(first.size()));
  ASSERT_EQ(r.status, HttpParseStatus::kDone);
  EXPECT_EQ(r.consumed, second.size());
  EXPECT_EQ(p.head().method, "HEAD");
  EXPECT_EQ(p.head().host, "b.example");
  EXPECT_FALSE(p.head().keep_alive);

  // Split inside the second head: consumed counts only this feed's bytes.
  head_test::expect_consumed_per_feed(p, second, 10, "GET");
}

// The same verdict and the same fields whether the head arrives whole, in two
// pieces cut anywhere, or byte by byte.
class SplitEquivalence : public ::testing::TestWithParam<std::string> {};

TEST_P(SplitEquivalence, WholeSplitAndByteByByteAgree) {
  head_test::expect_same_however_split<HttpRequestParser>(GetParam(), summarize);
}

INSTANTIATE_TEST_SUITE_P(
    Requests, SplitEquivalence,
    ::testing::Values(
        "GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\nAccept: */*\r\n\r\n",
        "GET http://edition.cnn.com/politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\nBODY",
        "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Connection: keep-alive\r\n\r\n",
        "\r\nPOST /upload HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "GET / HTTP/1.1\nHost: a\n\n"));

}  // namespace
}  // namespace sluice::sniff
