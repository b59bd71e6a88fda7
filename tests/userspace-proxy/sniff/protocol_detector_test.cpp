#include "userspace-proxy/sniff/protocol_detector.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/userspace-proxy/sniff/tls_test_util.h"
#include "userspace-proxy/sniff/sniff_plan.h"

namespace sluice::sniff {
namespace {

DetectedProtocol detect_whole(std::string_view bytes) {
  ProtocolDetector d;
  return d.feed(bytes).protocol;
}

DetectedProtocol detect_bytewise(std::string_view bytes) {
  ProtocolDetector d;
  for (char c : bytes) d.feed(std::string_view(&c, 1));
  return d.result().protocol;
}

TEST(ProtocolDetector, TlsClientHello) {
  const std::string hello = testing::openssl_client_hello("edition.cnn.com", {"h2"});
  for (auto detect : {detect_whole, detect_bytewise}) EXPECT_EQ(detect(hello), DetectedProtocol::kTls);
  ProtocolDetector d;
  d.feed(std::string_view(hello).substr(0, 100));
  EXPECT_EQ(d.result().protocol, DetectedProtocol::kNeedMore);
  d.feed(std::string_view(hello).substr(100));
  ASSERT_EQ(d.result().protocol, DetectedProtocol::kTls);
  EXPECT_EQ(d.tls().client_hello().sni, "edition.cnn.com");
  EXPECT_EQ(d.bytes_seen(), hello.size());
}

TEST(ProtocolDetector, Http1) {
  const std::string req = "GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  for (auto detect : {detect_whole, detect_bytewise}) EXPECT_EQ(detect(req), DetectedProtocol::kHttp1);
  ProtocolDetector d;
  ASSERT_EQ(d.feed(req).protocol, DetectedProtocol::kHttp1);
  EXPECT_EQ(d.http().status(), HttpParseStatus::kDone);
  EXPECT_EQ(d.http().head().host, "edition.cnn.com");
}

TEST(ProtocolDetector, MalformedHttpIsStillHttp) {
  ProtocolDetector d;
  ASSERT_EQ(d.feed(std::string_view("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"))
                .protocol,
            DetectedProtocol::kHttp1);
  EXPECT_EQ(d.http().status(), HttpParseStatus::kInvalid);
  EXPECT_EQ(d.http().error().status, 400);
}

TEST(ProtocolDetector, Http2PriorKnowledge) {
  for (auto detect : {detect_whole, detect_bytewise}) {
    EXPECT_EQ(detect(std::string(kHttp2Preface) + "\x00\x00\x12\x04"), DetectedProtocol::kHttp2);
    EXPECT_EQ(detect("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), DetectedProtocol::kOpaque);
  }
  ProtocolDetector d;
  EXPECT_EQ(d.feed(std::string_view("PRI * HTTP/2.0\r\n\r\n")).protocol, DetectedProtocol::kNeedMore);
}

TEST(ProtocolDetector, Opaque) {
  for (std::string_view bytes : {std::string_view("SSH-2.0-OpenSSH_9.2\r\n"), std::string_view("\x16\x03\x09", 3),
                                 std::string_view("\x16\x03\x01\x00\x00", 5), std::string_view("*1\r\n$4\r\nPING\r\n"),
                                 std::string_view("\x00\x00\x00\x01", 4)}) {
    ProtocolDetector d;
    EXPECT_EQ(d.feed(bytes).protocol, DetectedProtocol::kOpaque) << bytes;
    EXPECT_FALSE(d.result().reason.empty());
  }
}

TEST(ProtocolDetector, TimeoutMakesItOpaque) {
  ProtocolDetector silent;
  EXPECT_EQ(silent.feed(std::string_view()).protocol, DetectedProtocol::kNeedMore);
  EXPECT_EQ(silent.on_timeout().protocol, DetectedProtocol::kOpaque);
  EXPECT_EQ(silent.result().reason, "protocol detection timed out");

  ProtocolDetector partial;
  partial.feed(std::string_view("GET / HTTP/1.1\r\nHost: a\r\n"));
  EXPECT_EQ(partial.on_timeout().protocol, DetectedProtocol::kOpaque);
  // Final: later bytes change nothing.
  EXPECT_EQ(partial.feed(std::string_view("\r\n")).protocol, DetectedProtocol::kOpaque);

  ProtocolDetector decided;
  decided.feed(std::string_view("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_EQ(decided.on_timeout().protocol, DetectedProtocol::kHttp1);
}

TEST(SniffPlan, IstioProtocols) {
  struct Case {
    std::string_view protocol;
    SniffMode mode;
    bool h2;
  };
  for (const Case& c : {Case{"HTTP", SniffMode::kHttp, true}, Case{"http", SniffMode::kHttp, true},
                        Case{"HTTP2", SniffMode::kHttp, true}, Case{"GRPC", SniffMode::kHttp, true},
                        Case{"grpc-web", SniffMode::kHttp, true}, Case{"HTTP_PROXY", SniffMode::kHttp, false},
                        Case{"HTTPS", SniffMode::kTlsClientHello, false}, Case{"TLS", SniffMode::kTlsClientHello, false},
                        Case{"TCP", SniffMode::kNone, false}, Case{"MONGO", SniffMode::kNone, false},
                        Case{"MySQL", SniffMode::kNone, false}, Case{"REDIS", SniffMode::kNone, false},
                        Case{"UDP", SniffMode::kUnsupported, false}, Case{"", SniffMode::kDetect, true},
                        Case{"THRIFT", SniffMode::kDetect, true}}) {
    const SniffPlan plan = plan_for_port_protocol(c.protocol);
    EXPECT_EQ(plan.mode, c.mode) << c.protocol;
    EXPECT_EQ(plan.http2_prior_knowledge, c.h2) << c.protocol;
  }
  EXPECT_TRUE(plan_for_port_protocol("HTTP_PROXY").forward_proxy);
  EXPECT_EQ(plan_for_port_protocol("grpc-web").protocol, "GRPC-Web");
  EXPECT_EQ(plan_for_port_protocol("").protocol, "");
  EXPECT_EQ(plan_for_port_protocol("Thrift").protocol, "UNKNOWN");
}

}  // namespace
}  // namespace sluice::sniff
