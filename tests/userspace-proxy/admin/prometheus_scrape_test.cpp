// A real Prometheus (Debian's `prometheus` package) scrapes the admin
// endpoint on 127.0.0.1; the test then asks Prometheus's HTTP API whether
// istio_requests_total and the duration histogram were ingested with the
// labels and values we recorded. Prometheus's own parser is the judge of the
// exposition format here.
//
// Without the prometheus binary the test skips (exit 77), except under
// CI=true, where it fails: CI must run it (scripts/setup installs the package).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/userspace-proxy/admin/http_client.h"
#include "userspace-proxy/admin/admin_endpoints.h"
#include "userspace-proxy/admin/istio_metrics.h"

namespace sluice::admin {
namespace {

// Meson's find_program result; /usr/bin/prometheus when the build directory
// was configured before the package was installed.
std::string prometheus_binary() {
  const char* p = std::getenv("SLUICE_PROMETHEUS");
  if (p != nullptr && *p != '\0') return p;
  return access("/usr/bin/prometheus", X_OK) == 0 ? "/usr/bin/prometheus" : "";
}

// A free loopback port for Prometheus's web listener (it cannot report the
// port it got for :0). Another process could take it before Prometheus binds;
// the caller retries on a failed start.
uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// GET over HTTP/1.0 (no chunked encoding from Go's server), body until EOF.
std::optional<std::string> http10_get(uint16_t port, const std::string& target) {
  testing::HttpClient c(port);
  if (!c.connected()) return std::nullopt;
  if (!c.send_raw("GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")) return std::nullopt;
  auto r = c.read_response_until_close();
  if (!r || r->status != 200) return std::nullopt;
  return r->body;
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

class Prometheus {
 public:
  // Starts prometheus scraping 127.0.0.1:target_port every second.
  bool start(uint16_t target_port, std::string* error) {
    char tmpl[] = "/tmp/sluice-prometheus-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      *error = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
    std::ofstream(dir_ + "/prometheus.yml") << "global:\n"
                                               "  scrape_interval: 1s\n"
                                               "  scrape_timeout: 1s\n"
                                               "scrape_configs:\n"
                                               "  - job_name: sluice\n"
                                               "    metrics_path: /stats/prometheus\n"
                                               "    static_configs:\n"
                                               "      - targets: ['127.0.0.1:"
                                            << target_port << "']\n";
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = free_port();
      std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
      std::string config = "--config.file=" + dir_ + "/prometheus.yml";
      std::string storage = "--storage.tsdb.path=" + dir_ + "/data";
      std::string log = dir_ + "/prometheus.log";
      pid_ = fork();
      if (pid_ == 0) {
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(prometheus_binary().c_str(), "prometheus", config.c_str(), storage.c_str(), listen.c_str(),
              "--log.level=info", static_cast<char*>(nullptr));
        _exit(127);
      }
      // Ready when /-/ready answers 200 (or the process exits: port taken).
      for (int i = 0; i < 600; ++i) {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        if (http10_get(port_, "/-/ready")) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      stop();
    }
    *error = "prometheus did not start; its log:\n" + log();
    return false;
  }

  std::string log() const {
    std::ifstream in(dir_ + "/prometheus.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Runs an instant query; the "result" array, or null.
  nlohmann::json query(const std::string& promql) const {
    auto body = http10_get(port_, "/api/v1/query?query=" + url_encode(promql));
    if (!body) return nullptr;
    auto j = nlohmann::json::parse(*body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return nullptr;
    return j["data"]["result"];
  }

  std::string targets() const { return http10_get(port_, "/api/v1/targets").value_or("(no answer)"); }

  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  ~Prometheus() {
    stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

TEST(PrometheusScrape, IstioMetricsAreIngested) {
  MetricsRegistry registry;
  IstioMetrics istio(registry);
  ServerStateCell state;
  state.set(ServerState::kLive);
  AdminServer server(AdminServerOptions{.port = 0});
  ASSERT_TRUE(register_admin_endpoints(server, AdminEndpoints{.state = &state, .metrics = &registry}));
  ASSERT_EQ(server.start(), 0) << server.error();

  MetricsShard& shard = registry.add_shard();
  IstioLabels l;
  l.destination_service = "edition.cnn.com";
  l.destination_service_name = "edition.cnn.com";
  l.response_code = "200";
  l.source_principal = "spiffe://cluster.local/ns/default/sa/sleep";
  for (int i = 0; i < 3; ++i) istio.record_request(shard, l, 7.5);
  l.response_code = "502";
  l.destination_service = "unknown";
  l.destination_service_name = "block_all";
  l.response_flags = "-";
  istio.record_request(shard, l, 0.3);
  // A value that needs escaping must survive Prometheus's parser too.
  l.source_workload = "we\"ird\\name";
  istio.record_request(shard, l, 1);

  Prometheus prom;
  std::string err;
  ASSERT_TRUE(prom.start(server.port(), &err)) << err;

  // Wait (bounded: a hang guard, not a timing assertion) for a scrape that
  // contains our series.
  nlohmann::json ok200 = nullptr;
  for (int i = 0; i < 300; ++i) {
    ok200 = prom.query("istio_requests_total{response_code=\"200\",destination_service_name=\"edition.cnn.com\"}");
    if (ok200.is_array() && !ok200.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(ok200.is_array() && ok200.size() == 1) << "not ingested; targets: " << prom.targets() << "\nlog:\n"
                                                     << prom.log();
  EXPECT_EQ(ok200[0]["metric"]["job"], "sluice");
  EXPECT_EQ(ok200[0]["metric"]["source_principal"], "spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_EQ(ok200[0]["metric"]["reporter"], "source");
  EXPECT_EQ(ok200[0]["value"][1], "3");

  auto up = prom.query("up{job=\"sluice\"}");
  ASSERT_TRUE(up.is_array() && up.size() == 1);
  EXPECT_EQ(up[0]["value"][1], "1");

  auto weird = prom.query("istio_requests_total{source_workload=\"we\\\"ird\\\\name\"}");
  ASSERT_TRUE(weird.is_array() && weird.size() == 1) << prom.targets();
  EXPECT_EQ(weird[0]["value"][1], "1");

  // The histogram: Prometheus's le normalisation reads our bounds.
  auto bucket = prom.query(
      "istio_request_duration_milliseconds_bucket{response_code=\"200\",le=\"10\"}");
  ASSERT_TRUE(bucket.is_array() && bucket.size() == 1) << prom.targets();
  EXPECT_EQ(bucket[0]["value"][1], "3");
  auto inf = prom.query("sum(istio_request_duration_milliseconds_count)");
  ASSERT_TRUE(inf.is_array() && inf.size() == 1);
  EXPECT_EQ(inf[0]["value"][1], "5");
  auto quantile = prom.query(
      "histogram_quantile(0.5, sum by (le) (istio_request_duration_milliseconds_bucket{response_code=\"200\"}))");
  ASSERT_TRUE(quantile.is_array() && quantile.size() == 1);
  double median = std::stod(quantile[0]["value"][1].get<std::string>());
  EXPECT_GT(median, 5.0);  // all three observations are in (5, 10]
  EXPECT_LE(median, 10.0);
  server.stop();
}

}  // namespace
}  // namespace sluice::admin

int main(int argc, char** argv) {
  std::string bin = sluice::admin::prometheus_binary();
  if (bin.empty() || access(bin.c_str(), X_OK) != 0) {
    const char* ci = std::getenv("CI");
    bool in_ci = ci != nullptr && std::string(ci) == "true";
    std::fprintf(stderr, "prometheus not found (SLUICE_PROMETHEUS=\"%s\"): apt-get install prometheus%s\n",
                 bin.c_str(), in_ci ? " (CI=true: failing, not skipping)" : "; skipping");
    return in_ci ? 1 : 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
