#include "userspace-proxy/sniff/tls_client_hello.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/userspace-proxy/sniff/tls_test_util.h"

namespace sluice::sniff {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using namespace sluice::sniff::testing;

std::string cnn_hello() {
  return openssl_client_hello("edition.cnn.com", {"h2", "http/1.1"});
}

// The fields a sniffer reports, for comparing two ways of feeding.
struct Summary {
  TlsSniffStatus status;
  std::string sni;
  std::vector<std::string> alpn;
  std::vector<uint16_t> versions;
  uint16_t legacy_version;
  std::string error;
  bool operator==(const Summary&) const = default;
};

Summary summarize(const ClientHelloSniffer& s) {
  return {s.status(), s.client_hello().sni, s.client_hello().alpn, s.client_hello().supported_versions,
          s.client_hello().legacy_version, std::string(s.error())};
}

Summary sniff_whole(const std::string& bytes) {
  ClientHelloSniffer s;
  s.feed(bytes);
  return summarize(s);
}

TEST(ClientHelloSniffer, OpenSslTls13HelloWithSniAndAlpn) {
  const std::string bytes = cnn_hello();
  ClientHelloSniffer s;
  ASSERT_EQ(s.feed(bytes), TlsSniffStatus::kDone) << s.error();
  const ClientHello& h = s.client_hello();
  EXPECT_EQ(h.sni, "edition.cnn.com");
  EXPECT_TRUE(h.has_server_name_extension);
  EXPECT_THAT(h.alpn, ElementsAre("h2", "http/1.1"));
  EXPECT_EQ(h.legacy_version, kTls12);
  EXPECT_EQ(h.record_version, kTls10);
  EXPECT_THAT(h.supported_versions, ::testing::Contains(kTls13));
  EXPECT_EQ(h.max_offered_version(), kTls13);
  EXPECT_EQ(h.stream_bytes, bytes.size());
  EXPECT_EQ(h.record_count, 1u);
  EXPECT_FALSE(h.offers_ech);
}

TEST(ClientHelloSniffer, OpenSslTls12OnlyHelloHasNoSupportedVersions) {
  ClientHelloSniffer s;
  ASSERT_EQ(s.feed(openssl_client_hello("api.example.com", {}, TLS1_2_VERSION)),
            TlsSniffStatus::kDone)
      << s.error();
  EXPECT_EQ(s.client_hello().sni, "api.example.com");
  EXPECT_THAT(s.client_hello().supported_versions, IsEmpty());
  EXPECT_THAT(s.client_hello().alpn, IsEmpty());
  EXPECT_EQ(s.client_hello().max_offered_version(), kTls12);
}

TEST(ClientHelloSniffer, OpenSslHelloWithoutSni) {
  ClientHelloSniffer s;
  ASSERT_EQ(s.feed(openssl_client_hello("", {"http/1.1"})), TlsSniffStatus::kDone) << s.error();
  EXPECT_EQ(s.client_hello().sni, "");
  EXPECT_FALSE(s.client_hello().has_server_name_extension);
  EXPECT_THAT(s.client_hello().alpn, ElementsAre("http/1.1"));
}

TEST(ClientHelloSniffer, SniIsLowerCasedAndTrailingDotDropped) {
  ClientHelloSniffer s;
  ASSERT_EQ(s.feed(openssl_client_hello("Edition.CNN.com.")), TlsSniffStatus::kDone) << s.error();
  EXPECT_EQ(s.client_hello().sni, "edition.cnn.com");
}

TEST(ClientHelloSniffer, ByteByByte) {
  for (const std::string& bytes : {cnn_hello(), openssl_client_hello("", {}, TLS1_2_VERSION)}) {
    const Summary whole = sniff_whole(bytes);
    ClientHelloSniffer s;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const TlsSniffStatus st = s.feed(std::string_view(bytes).substr(i, 1));
      if (i + 1 < bytes.size()) {
        ASSERT_EQ(st, TlsSniffStatus::kNeedMore) << "at byte " << i;
      }
    }
    EXPECT_EQ(summarize(s), whole);
    EXPECT_EQ(s.bytes_seen(), bytes.size());
  }
}

TEST(ClientHelloSniffer, SplitAtEveryOffset) {
  const std::string bytes = cnn_hello();
  const Summary whole = sniff_whole(bytes);
  ASSERT_EQ(whole.status, TlsSniffStatus::kDone);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    ClientHelloSniffer s;
    s.feed(std::string_view(bytes).substr(0, cut));
    s.feed(std::string_view(bytes).substr(cut));
    ASSERT_EQ(summarize(s), whole) << "cut at " << cut;
  }
}

TEST(ClientHelloSniffer, HandshakeSpreadOverTwoRecordsAtEveryOffset) {
  const std::string payload = handshake_payload(cnn_hello());
  const Summary whole = sniff_whole(record(payload));
  for (std::size_t cut = 1; cut < payload.size(); ++cut) {
    const std::string bytes = reframe(payload, {cut});
    ClientHelloSniffer s;
    ASSERT_EQ(s.feed(bytes), TlsSniffStatus::kDone) << "cut at " << cut << ": " << s.error();
    ASSERT_EQ(summarize(s), whole);
    EXPECT_EQ(s.client_hello().record_count, 2u);
    EXPECT_EQ(s.client_hello().stream_bytes, bytes.size());
  }
}

TEST(ClientHelloSniffer, ThreeRecordsFedByteByByte) {
  const std::string payload = handshake_payload(cnn_hello());
  const Summary whole = sniff_whole(record(payload));
  for (std::vector<std::size_t> cuts : std::vector<std::vector<std::size_t>>{
           {1, 2}, {2, 4}, {3, 100}, {4, 5}, {40, payload.size() - 1}, {100, 200}}) {
    const std::string bytes = reframe(payload, cuts);
    ClientHelloSniffer s;
    for (char c : bytes) s.feed(std::string_view(&c, 1));
    EXPECT_EQ(summarize(s), whole);
    EXPECT_EQ(s.client_hello().record_count, 3u);
  }
}

TEST(ClientHelloSniffer, BytesAfterTheHelloAreIgnored) {
  const std::string hello = cnn_hello();
  ClientHelloSniffer s;
  ASSERT_EQ(s.feed(hello + record("early", 23)), TlsSniffStatus::kDone);
  EXPECT_EQ(s.client_hello().stream_bytes, hello.size());
  EXPECT_EQ(s.feed(std::string("\x15garbage")), TlsSniffStatus::kDone);

  // Another handshake message in the hello's record is not part of it.
  const std::string payload = handshake_payload(hello);
  ClientHelloSniffer t;
  ASSERT_EQ(t.feed(record(payload + std::string("\x0f\x00\x00\x00", 4))), TlsSniffStatus::kDone);
  EXPECT_EQ(t.client_hello().stream_bytes, 5 + payload.size());
}

TEST(ClientHelloSniffer, EveryProperPrefixNeedsMore) {
  const std::string bytes = cnn_hello();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    ClientHelloSniffer s;
    ASSERT_EQ(s.feed(std::string_view(bytes).substr(0, n)), TlsSniffStatus::kNeedMore) << n;
  }
}

TEST(ClientHelloSniffer, NotTls) {
  for (std::string bytes : {std::string("GET / HTTP/1.1\r\n"), std::string("\x16\x02\x01\x00\x10", 5),
                            std::string("\x16\x03\x05\x00\x10", 5), std::string("\x80\x2e\x01\x03\x01", 5),
                            std::string("\x17\x03\x03\x00\x10", 5), std::string("SSH-2.0-OpenSSH_9.2\r\n")}) {
    ClientHelloSniffer s;
    EXPECT_EQ(s.feed(bytes), TlsSniffStatus::kNotTls) << bytes;
    EXPECT_FALSE(s.error().empty());
  }
  // Decided on the first byte: no need to wait.
  ClientHelloSniffer s;
  EXPECT_EQ(s.feed(std::string_view("G")), TlsSniffStatus::kNotTls);
}

TEST(ClientHelloSniffer, InvalidRecordLayer) {
  const std::string payload = handshake_payload(cnn_hello());
  struct Case {
    std::string bytes;
    std::string_view error;
  };
  const std::vector<Case> cases = {
      {std::string("\x16\x03\x01\x00\x00", 5), "empty handshake record"},
      {std::string("\x16\x03\x01\x40\x01", 5), "TLS record longer than 2^14 bytes"},
      {record(payload.substr(0, 10)) + record(payload.substr(10), 23), "a non-handshake record interrupts the ClientHello"},
      {record(payload.substr(0, 10)) + record(payload.substr(10), 22, 0x0200), "implausible TLS record version"},
      {record(handshake_message(client_hello_body(""), 2)), "first handshake message is not a ClientHello"},
  };
  for (const Case& c : cases) {
    ClientHelloSniffer s;
    EXPECT_EQ(s.feed(c.bytes), TlsSniffStatus::kInvalid) << c.error;
    EXPECT_EQ(s.error(), c.error);
  }
}

TEST(ClientHelloSniffer, OversizeHandshakeRefusedFromItsHeader) {
  // Declares a 16381-byte body (16385 with the header): refused as soon as
  // the handshake header is in, before buffering any of it.
  ClientHelloSniffer s;
  EXPECT_EQ(s.feed(std::string("\x16\x03\x01\x00\x04\x01\x00\x3f\xfd", 9)), TlsSniffStatus::kInvalid);
  EXPECT_EQ(s.error(), "ClientHello exceeds the handshake size limit");

  // Exactly at the limit is fine (padded with an unknown extension).
  const std::string ext = extension(0x7777, std::string(16384 - 4 - client_hello_body("").size() - 4, 'p'));
  const std::string message = handshake_message(client_hello_body(ext));
  ASSERT_EQ(message.size(), 16384u);
  ClientHelloSniffer ok;
  EXPECT_EQ(ok.feed(reframe(message, {16000})), TlsSniffStatus::kDone) << ok.error();

  ClientHelloSniffer small(256);
  EXPECT_EQ(small.feed(cnn_hello()), TlsSniffStatus::kInvalid);
}

TEST(ClientHelloSniffer, HandBuiltHelloParses) {
  const std::string ext = extension(0, server_name_data({{0, "Example.COM"}})) +
                          extension(16, alpn_data({"h2"})) + extension(43, u8(4) + u16(0x1a1a) + u16(0x0304)) +
                          extension(0xfe0d, "ech") + extension(42, "");
  ClientHelloSniffer s;
  ASSERT_EQ(s.feed(record(handshake_message(client_hello_body(ext)))), TlsSniffStatus::kDone) << s.error();
  EXPECT_EQ(s.client_hello().sni, "example.com");
  EXPECT_THAT(s.client_hello().alpn, ElementsAre("h2"));
  EXPECT_THAT(s.client_hello().supported_versions, ElementsAre(0x1a1a, 0x0304));
  EXPECT_EQ(s.client_hello().max_offered_version(), kTls13);  // GREASE ignored
  EXPECT_TRUE(s.client_hello().offers_ech);
  EXPECT_TRUE(s.client_hello().offers_early_data);
}

TEST(ClientHelloSniffer, HelloWithoutExtensionsBlock) {
  ClientHelloSniffer s;
  ASSERT_EQ(s.feed(record(handshake_message(client_hello_body("", false)))), TlsSniffStatus::kDone) << s.error();
  EXPECT_EQ(s.client_hello().sni, "");
  EXPECT_EQ(s.client_hello().max_offered_version(), kTls12);
}

TEST(ClientHelloSniffer, ServerNameListPerRfc6066) {
  // Another name type before host_name is stepped over (RFC 6066: future
  // types start with a 16-bit length).
  {
    ClientHelloSniffer s;
    const std::string ext = extension(0, server_name_data({{7, "opaque"}, {0, "api.example.org"}}));
    ASSERT_EQ(s.feed(record(handshake_message(client_hello_body(ext)))), TlsSniffStatus::kDone) << s.error();
    EXPECT_EQ(s.client_hello().sni, "api.example.org");
  }
  // Only a non-host_name entry: no SNI, but not an error.
  {
    ClientHelloSniffer s;
    const std::string ext = extension(0, server_name_data({{1, "x"}}));
    ASSERT_EQ(s.feed(record(handshake_message(client_hello_body(ext)))), TlsSniffStatus::kDone) << s.error();
    EXPECT_EQ(s.client_hello().sni, "");
    EXPECT_TRUE(s.client_hello().has_server_name_extension);
  }
}

TEST(ClientHelloSniffer, MalformedClientHellos) {
  const std::string sni = extension(0, server_name_data({{0, "a.example"}}));
  struct Case {
    std::string name;
    std::string body;
    std::string_view error;
  };
  std::string truncated_ext_len = client_hello_body(sni);
  truncated_ext_len[truncated_ext_len.size() - sni.size() - 1] += 1;  // extensions length one too long
  std::string short_ext_len = client_hello_body(sni);
  short_ext_len[short_ext_len.size() - sni.size() - 1] -= 1;  // one too short: trailing byte
  std::string bad_sni_len = client_hello_body(sni);
  bad_sni_len[bad_sni_len.size() - sni.size() + 3] += 1;  // extension_data length overruns
  std::string bad_version = client_hello_body(sni);
  bad_version[0] = 2;
  std::string long_session = client_hello_body(sni);
  long_session[34] = 33;

  const std::vector<Case> cases = {
      {"truncated extensions length", truncated_ext_len, "extensions length does not match the ClientHello length"},
      {"short extensions length", short_ext_len, "extensions length does not match the ClientHello length"},
      {"extension data overruns", bad_sni_len, "extension overruns the extensions block"},
      {"legacy_version", bad_version, "implausible ClientHello legacy_version"},
      {"session_id", long_session, "session_id longer than 32 bytes"},
      {"too short", u16(0x0303) + "abc", "ClientHello too short for random"},
      {"odd cipher_suites", u16(0x0303) + std::string(32, 'r') + u8(0) + u16(3) + "abc" + u8(1) + u8(0),
       "bad cipher_suites length"},
      {"no compression", u16(0x0303) + std::string(32, 'r') + u8(0) + u16(2) + "ab" + u8(0),
       "empty compression_methods"},
      {"duplicate SNI", client_hello_body(sni + sni), "duplicate server_name extension"},
      {"duplicate other", client_hello_body(extension(99, "") + extension(99, "")), "duplicate extension"},
      {"two host_names",
       client_hello_body(extension(0, server_name_data({{0, "a.example"}, {0, "b.example"}}))),
       "more than one host_name in server_name"},
      {"repeated other type", client_hello_body(extension(0, server_name_data({{5, "x"}, {5, "y"}}))),
       "repeated name type in server_name"},
      {"empty server_name list", client_hello_body(extension(0, u16(0))), "empty server_name list"},
      {"empty server_name ext", client_hello_body(extension(0, "")),
       "server_name list length does not match the extension"},
      {"list length mismatch", client_hello_body(extension(0, server_name_data({{0, "a.example"}}) + "x")),
       "server_name list length does not match the extension"},
      {"entry overruns", client_hello_body(extension(0, u16(4) + u8(0) + u16(9) + "a")),
       "server_name entry overruns its list"},
      {"empty host_name", client_hello_body(extension(0, server_name_data({{0, ""}}))),
       "empty host_name in server_name"},
      {"space in host_name", client_hello_body(extension(0, server_name_data({{0, "a b.example"}}))),
       "host_name in server_name is not a valid DNS name"},
      {"NUL in host_name",
       client_hello_body(extension(0, server_name_data({{0, std::string("evil.com\0.good.com", 18)}}))),
       "host_name in server_name is not a valid DNS name"},
      {"IPv6 host_name", client_hello_body(extension(0, server_name_data({{0, "::1"}}))),
       "host_name in server_name is not a valid DNS name"},
      {"empty label", client_hello_body(extension(0, server_name_data({{0, "a..example"}}))),
       "host_name in server_name is not a valid DNS name"},
      {"long label", client_hello_body(extension(0, server_name_data({{0, std::string(64, 'a') + ".com"}}))),
       "host_name in server_name is not a valid DNS name"},
      {"empty ALPN name", client_hello_body(extension(16, alpn_data({"h2", ""}))), "empty ALPN protocol name"},
      {"empty ALPN list", client_hello_body(extension(16, u16(0))), "empty ALPN list"},
      {"ALPN overrun", client_hello_body(extension(16, u16(3) + u8(5) + "ab")),
       "ALPN protocol name overruns its list"},
      {"odd versions", client_hello_body(extension(43, u8(3) + "abc")), "bad supported_versions list length"},
      {"versions mismatch", client_hello_body(extension(43, u8(4) + "ab")),
       "supported_versions length does not match the extension"},
  };
  for (const Case& c : cases) {
    const std::string bytes = record(handshake_message(c.body));
    ClientHelloSniffer s;
    EXPECT_EQ(s.feed(bytes), TlsSniffStatus::kInvalid) << c.name;
    EXPECT_EQ(s.error(), c.error) << c.name;
    // The same verdict however the bytes arrive.
    ClientHelloSniffer slow;
    for (char ch : bytes) slow.feed(std::string_view(&ch, 1));
    EXPECT_EQ(slow.status(), TlsSniffStatus::kInvalid) << c.name;
    EXPECT_EQ(slow.error(), c.error) << c.name;
  }
}

TEST(ClientHelloSniffer, IpLiteralSniIsAcceptedAsGiven) {
  ClientHelloSniffer s;
  const std::string ext = extension(0, server_name_data({{0, "10.0.0.1"}}));
  ASSERT_EQ(s.feed(record(handshake_message(client_hello_body(ext)))), TlsSniffStatus::kDone);
  EXPECT_EQ(s.client_hello().sni, "10.0.0.1");
}

TEST(ClientHelloSniffer, SingleByteMutationsNeverCrash) {
  // Not a substitute for the fuzzer, but cheap: every byte of a real hello
  // set to a few interesting values yields some verdict without trouble.
  const std::string bytes = cnn_hello();
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
      std::string m = bytes;
      m[i] = static_cast<char>(v);
      ClientHelloSniffer s;
      s.feed(m);
      if (s.status() == TlsSniffStatus::kDone) {
        EXPECT_LE(s.client_hello().stream_bytes, m.size());
      }
    }
  }
}

TEST(ClientHelloSniffer, ResetStartsOver) {
  ClientHelloSniffer s;
  EXPECT_EQ(s.feed(std::string_view("GET")), TlsSniffStatus::kNotTls);
  s.reset();
  EXPECT_EQ(s.feed(cnn_hello()), TlsSniffStatus::kDone);
  EXPECT_EQ(s.client_hello().sni, "edition.cnn.com");
}

}  // namespace
}  // namespace sluice::sniff
