#include "userspace-proxy/sniff/body_framer.h"

#include <gtest/gtest.h>

#include <string>

#include "userspace-proxy/sniff/http_request_head.h"

namespace sluice::sniff {
namespace {

struct Outcome {
  BodyStatus status;
  std::size_t consumed;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

Outcome frame_whole(std::string_view bytes) {
  ChunkedFramer f;
  const BodyFeedResult r = f.feed(bytes);
  return {r.status, r.consumed, std::string(f.error())};
}

TEST(ContentLengthFramer, CountsExactly) {
  ContentLengthFramer f(5);
  EXPECT_EQ(f.status(), BodyStatus::kNeedMore);
  BodyFeedResult r = f.feed(std::string_view("hel"));
  EXPECT_EQ(r.status, BodyStatus::kNeedMore);
  EXPECT_EQ(r.consumed, 3u);
  r = f.feed(std::string_view("loGET / HTTP/1.1"));
  EXPECT_EQ(r.status, BodyStatus::kDone);
  EXPECT_EQ(r.consumed, 2u);
  EXPECT_EQ(f.content_bytes(), 5u);
  EXPECT_EQ(f.feed(std::string_view("more")).consumed, 0u);

  ContentLengthFramer empty(0);
  EXPECT_EQ(empty.status(), BodyStatus::kDone);
  EXPECT_EQ(empty.feed(std::string_view("GET")).consumed, 0u);

  ContentLengthFramer huge(UINT64_MAX);
  EXPECT_EQ(huge.feed(std::string(100000, 'x')).consumed, 100000u);
  EXPECT_EQ(huge.status(), BodyStatus::kNeedMore);
}

TEST(ChunkedFramer, SimpleBody) {
  const std::string body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  ChunkedFramer f;
  const BodyFeedResult r = f.feed(body + "GET / HTTP/1.1\r\n");
  EXPECT_EQ(r.status, BodyStatus::kDone) << f.error();
  EXPECT_EQ(r.consumed, body.size());
  EXPECT_EQ(f.content_bytes(), 11u);
  EXPECT_EQ(f.feed(std::string_view("x")).consumed, 0u);
}

TEST(ChunkedFramer, ExtensionsAndTrailers) {
  for (std::string body : {
           "A;name=value;flag\r\n0123456789\r\n0\r\n\r\n",
           "a ; name = \"quoted \\\" ;value\" ; x=y\r\n0123456789\r\n0;last\r\n\r\n",
           "1\r\nx\r\n0\r\nExpires: never\r\nX-Checksum:\tabc \r\n\r\n",
           "000001\r\nx\r\n0000\r\n\r\n",
           "0\r\n\r\n",
       }) {
    ChunkedFramer f;
    const BodyFeedResult r = f.feed(body + "NEXT");
    EXPECT_EQ(r.status, BodyStatus::kDone) << body << ": " << f.error();
    EXPECT_EQ(r.consumed, body.size()) << body;
  }
  ChunkedFramer f;
  f.feed(std::string_view("0\r\nA: 1\r\nB: 2\r\n\r\n"));
  EXPECT_EQ(f.trailer_fields(), 2u);
}

TEST(ChunkedFramer, InvalidFraming) {
  struct Case {
    std::string body;
    std::string_view error;
  };
  const std::vector<Case> cases = {
      {"g\r\n", "chunk size is not a hex number"},
      {"\r\n", "chunk size is not a hex number"},
      {" 5\r\n", "chunk size is not a hex number"},
      {"-5\r\n", "chunk size is not a hex number"},
      {"0x5\r\n", "invalid character after chunk size"},
      {"5\n", "invalid character after chunk size"},
      {"5 \r\n", "invalid chunk extension"},
      {"5\rX", "bare CR in chunk size line"},
      {"5\r\nhello\n", "chunk data not followed by CRLF"},
      {"5\r\nhelloX", "chunk data not followed by CRLF"},
      {"5\r\nhello\rX", "chunk data not followed by CRLF"},
      {"11111111111111111\r\n", "chunk size too long"},
      {"00000000000000001\r\n", "chunk size too long"},
      {"5;\r\n", "invalid chunk extension name"},
      {"5;a=\r\n", "invalid chunk extension value"},
      {"5;a=b c\r\n", "invalid chunk extension"},
      {"5;a=\"b\"c\r\n", "invalid chunk extension value"},
      {"5;a=\"b\nc\"\r\n", "invalid character in chunk extension"},
      {"5;" + std::string(5000, 'e') + "\r\n", "chunk size line too long"},
      {"0\r\nX: a\r\n folded\r\n\r\n", "obsolete line folding in trailer section"},
      {"0\r\nX : a\r\n\r\n", "invalid character in trailer field name"},
      {"0\r\nX: a\nY: b\r\n\r\n", "invalid character in trailer field value"},
      {"0\r\nX: a\rY\r\n\r\n", "bare CR in trailer section"},
      {"0\r\n\rX", "bare CR at the end of the chunked body"},
      {"0\r\n\n", "invalid character in trailer field name"},
      {"0\r\n" + std::string(70000, 'T'), "trailer section too large"},
  };
  for (const Case& c : cases) {
    const Outcome whole = frame_whole(c.body);
    EXPECT_EQ(whole.status, BodyStatus::kInvalid) << c.body.substr(0, 40);
    EXPECT_EQ(whole.error, c.error) << c.body.substr(0, 40);
  }
  std::string many = "0\r\n";
  for (int i = 0; i < 101; ++i) many += "T: v\r\n";
  EXPECT_EQ(frame_whole(many).error, "too many trailer fields");
}

TEST(ChunkedFramer, LargestSizeIsAcceptedAndCounted) {
  ChunkedFramer f;
  EXPECT_EQ(f.feed(std::string_view("ffffffffffffffff\r\n")).status, BodyStatus::kNeedMore);
  const BodyFeedResult r = f.feed(std::string(65536, 'x'));
  EXPECT_EQ(r.consumed, 65536u);
  EXPECT_EQ(f.content_bytes(), 65536u);
  EXPECT_EQ(f.status(), BodyStatus::kNeedMore);
}

TEST(ChunkedFramer, SplitAtEveryOffsetAndByteByByte) {
  for (std::string body : {
           std::string("5;ext=\"v\"\r\nhello\r\n1A\r\n") + std::string(26, 'z') + "\r\n0\r\nTrailer: t\r\n\r\nNEXT",
           std::string("3\r\nabc\r\n0\r\n\r\n"),
           std::string("3\r\nabcX\r\n0\r\n\r\n"),
           std::string("0\r\nA: b\r\n folded\r\n\r\n"),
       }) {
    const Outcome whole = frame_whole(body);
    for (std::size_t cut = 0; cut <= body.size(); ++cut) {
      ChunkedFramer f;
      const BodyFeedResult a = f.feed(std::string_view(body).substr(0, cut));
      const BodyFeedResult b = f.feed(std::string_view(body).substr(cut));
      const Outcome split{f.status(), a.consumed + b.consumed, std::string(f.error())};
      // On kInvalid, consumed stops at the offending byte in both cases.
      ASSERT_EQ(split, whole) << body << " cut at " << cut;
    }
    ChunkedFramer f;
    std::size_t consumed = 0;
    for (char c : body) consumed += f.feed(std::string_view(&c, 1)).consumed;
    EXPECT_EQ((Outcome{f.status(), consumed, std::string(f.error())}), whole);
  }
}

TEST(RequestBodyFramer, FollowsTheHead) {
  const std::string pipeline =
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string_view rest = pipeline;
  std::vector<std::string> paths;
  std::vector<bool> chunked;
  HttpRequestParser parser;
  while (!rest.empty()) {
    parser.reset();
    const auto head = parser.feed(rest);
    ASSERT_EQ(head.status, HttpParseStatus::kDone) << parser.error().reason;
    rest.remove_prefix(head.consumed);
    paths.emplace_back(parser.head().path);
    RequestBodyFramer body(parser.head());
    chunked.push_back(body.is_chunked());
    const BodyFeedResult r = body.feed(rest);
    ASSERT_EQ(r.status, BodyStatus::kDone) << body.error();
    rest.remove_prefix(r.consumed);

    BodyFramerPtr heap = make_body_framer(parser.head());
    EXPECT_EQ(heap->status(), body.content_bytes() == 0 && !body.is_chunked() ? BodyStatus::kDone
                                                                              : BodyStatus::kNeedMore);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"/a", "/b", "/c", "/d"}));
  EXPECT_EQ(chunked, (std::vector<bool>{false, true, false, false}));
}

}  // namespace
}  // namespace sluice::sniff
