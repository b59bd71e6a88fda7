// Access log lines as Istio users read them: the default text format field by
// field, TCP lines with "- - -" and 0, and the JSON encoding.
#include "userspace-proxy/proxy/access_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace sluice::proxy {
namespace {

// 2020-01-04T23:24:49.123Z
constexpr int64_t kStart = 1578180289123LL * 1'000'000;

TEST(AccessLog, StartTimeIsUtcWithMillis) {
  EXPECT_EQ(format_start_time(kStart), "2020-01-04T23:24:49.123Z");
  EXPECT_EQ(format_start_time(0), "1970-01-01T00:00:00.000Z");
}

TEST(AccessLog, HttpRequestLine) {
  AccessLogEntry e;
  e.start_realtime_ns = kStart;
  e.http = AccessLogEntry::Http{"GET", "/politics", "HTTP/1.1", 301, "edition.cnn.com", "curl/7.88.1", "", ""};
  e.response_code_details = "via_upstream";
  e.bytes_received = 0;
  e.bytes_sent = 169;
  e.duration_ms = 12;
  e.upstream_service_time_ms = 11;
  e.upstream_host = "203.0.113.5:80";
  e.upstream_cluster = "outbound|80||edition.cnn.com";
  e.upstream_local_address = "198.51.100.2:40112";
  e.downstream_local_address = "203.0.113.5:80";
  e.downstream_remote_address = "198.51.100.2:51234";
  e.route_name = "edition.cnn.com:80";
  EXPECT_EQ(format_text(e),
            "[2020-01-04T23:24:49.123Z] \"GET /politics HTTP/1.1\" 301 - via_upstream - \"-\" 0 169 12 11 \"-\" "
            "\"curl/7.88.1\" \"-\" \"edition.cnn.com\" \"203.0.113.5:80\" outbound|80||edition.cnn.com "
            "198.51.100.2:40112 203.0.113.5:80 198.51.100.2:51234 - edition.cnn.com:80\n");
}

TEST(AccessLog, BlackholedTcpConnection) {
  AccessLogEntry e;
  e.start_realtime_ns = kStart;
  e.response_flags = "UH";
  e.upstream_cluster = "BlackHoleCluster";
  e.downstream_local_address = "203.0.113.5:443";
  e.downstream_remote_address = "198.51.100.2:51236";
  e.requested_server_name = "edition.cnn.com";
  EXPECT_EQ(format_text(e),
            "[2020-01-04T23:24:49.123Z] \"- - -\" 0 UH - - \"-\" 0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\" "
            "BlackHoleCluster - 203.0.113.5:443 198.51.100.2:51236 edition.cnn.com -\n");
}

TEST(AccessLog, BlockAll502) {
  AccessLogEntry e;
  e.start_realtime_ns = kStart;
  e.http = AccessLogEntry::Http{"GET", "/", "HTTP/1.1", 502, "example.org", "curl/7.88.1", "", ""};
  e.response_code_details = "direct_response";
  e.upstream_cluster = "BlackHoleCluster";
  e.route_name = "block_all";
  const std::string line = format_text(e);
  EXPECT_NE(line.find("\"GET / HTTP/1.1\" 502 - direct_response"), std::string::npos) << line;
  EXPECT_NE(line.find(" block_all\n"), std::string::npos) << line;
}

TEST(AccessLog, JsonUsesIstioKeys) {
  AccessLogEntry e;
  e.start_realtime_ns = kStart;
  e.response_flags = "UF";
  e.upstream_cluster = "PassthroughCluster";
  e.bytes_received = 5;
  const auto j = nlohmann::json::parse(format_json(e));
  EXPECT_EQ(j["start_time"], "2020-01-04T23:24:49.123Z");
  EXPECT_EQ(j["response_flags"], "UF");
  EXPECT_EQ(j["response_code"], 0);
  EXPECT_EQ(j["upstream_cluster"], "PassthroughCluster");
  EXPECT_EQ(j["bytes_received"], 5);
  EXPECT_TRUE(j["method"].is_null());
  EXPECT_TRUE(j["route_name"].is_null());
}

}  // namespace
}  // namespace sluice::proxy
