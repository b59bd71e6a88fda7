// The c-ares resolver against a tiny DNS server on 127.0.0.1 that this test
// runs (no traffic leaves the machine): answers, TTL-bounded caching,
// negative caching, coalescing of concurrent queries, /etc/hosts.
#include "userspace-proxy/proxy/dns_resolver.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace sluice::proxy {
namespace {

// Answers A queries for "api.test" with 203.0.113.7 (TTL `ttl`), NXDOMAIN
// for anything else, AAAA with no records.
class FakeDnsServer {
 public:
  explicit FakeDnsServer(uint32_t ttl) : ttl_(ttl) {
    fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDnsServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  int a_queries() const { return a_queries_.load(); }

 private:
  void serve() {
    uint8_t buf[512];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      sockaddr_in from{};
      socklen_t fl = sizeof(from);
      ssize_t n = recvfrom(fd_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fl);
      if (n < 17) continue;
      // Question name starts at 12; find its end.
      size_t i = 12;
      std::string name;
      while (i < static_cast<size_t>(n) && buf[i] != 0) {
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<char*>(buf + i + 1), buf[i]);
        i += buf[i] + 1;
      }
      const size_t qend = i + 5;  // zero label + qtype + qclass
      if (qend > static_cast<size_t>(n)) continue;
      const uint16_t qtype = static_cast<uint16_t>(buf[i + 1] << 8 | buf[i + 2]);
      uint8_t out[600];
      memcpy(out, buf, qend);
      out[2] = 0x81;  // response, recursion desired
      out[3] = 0x80;  // recursion available, rcode 0
      out[6] = out[7] = 0;  // answers
      out[8] = out[9] = out[10] = out[11] = 0;
      size_t len = qend;
      if (name != "api.test") {
        out[3] = 0x83;  // NXDOMAIN
      } else if (qtype == 1) {
        a_queries_++;
        out[7] = 1;
        const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1,
                              static_cast<uint8_t>(ttl_ >> 24), static_cast<uint8_t>(ttl_ >> 16),
                              static_cast<uint8_t>(ttl_ >> 8), static_cast<uint8_t>(ttl_),
                              0, 4, 203, 0, 113, 7};
        memcpy(out + len, rr, sizeof(rr));
        len += sizeof(rr);
      }
      sendto(fd_, out, len, 0, reinterpret_cast<sockaddr*>(&from), fl);
    }
  }
  uint32_t ttl_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> a_queries_{0};
  std::thread thread_;
};

DnsAnswer resolve_sync(DnsResolver& r, const std::string& name) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  DnsAnswer answer;
  r.resolve(name, [&](const DnsAnswer& a) {
    std::lock_guard lock(m);
    answer = a;
    done = true;
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return done; });
  return answer;
}

std::unique_ptr<DnsResolver> make(uint16_t port, std::chrono::seconds min_ttl = std::chrono::seconds(0)) {
  DnsResolverOptions o;
  o.servers = "127.0.0.1:" + std::to_string(port);
  o.lookups = "b";
  o.min_ttl = min_ttl;
  o.negative_ttl = std::chrono::seconds(30);
  std::string error;
  auto r = DnsResolver::create(o, &error);
  EXPECT_TRUE(r) << error;
  return r;
}

TEST(DnsResolver, ResolvesAndCachesForTheTtl) {
  FakeDnsServer server(/*ttl=*/60);
  auto r = make(server.port());
  DnsAnswer a = resolve_sync(*r, "api.test");
  ASSERT_TRUE(a.ok()) << a.error;
  ASSERT_EQ(a.addresses.size(), 1u);
  EXPECT_EQ(a.addresses[0].str(), "203.0.113.7");
  DnsAnswer cached;
  EXPECT_TRUE(r->lookup_cached("api.test", &cached));
  EXPECT_EQ(cached.addresses, a.addresses);
  resolve_sync(*r, "api.test");
  EXPECT_EQ(r->queries_started(), 1u);
  EXPECT_EQ(server.a_queries(), 1);
}

TEST(DnsResolver, ExpiredEntriesAreQueriedAgain) {
  FakeDnsServer server(/*ttl=*/1);
  auto r = make(server.port());
  ASSERT_TRUE(resolve_sync(*r, "api.test").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  DnsAnswer cached;
  EXPECT_FALSE(r->lookup_cached("api.test", &cached));
  ASSERT_TRUE(resolve_sync(*r, "api.test").ok());
  EXPECT_EQ(r->queries_started(), 2u);
}

TEST(DnsResolver, MinTtlClampsShortAnswers) {
  FakeDnsServer server(/*ttl=*/0);
  auto r = make(server.port(), std::chrono::seconds(30));
  ASSERT_TRUE(resolve_sync(*r, "api.test").ok());
  DnsAnswer cached;
  EXPECT_TRUE(r->lookup_cached("api.test", &cached));
}

TEST(DnsResolver, FailuresAreCachedNegatively) {
  FakeDnsServer server(60);
  auto r = make(server.port());
  DnsAnswer a = resolve_sync(*r, "missing.test");
  EXPECT_FALSE(a.ok());
  EXPECT_FALSE(a.error.empty());
  DnsAnswer cached;
  ASSERT_TRUE(r->lookup_cached("missing.test", &cached));
  EXPECT_FALSE(cached.ok());
  resolve_sync(*r, "missing.test");
  EXPECT_EQ(r->queries_started(), 1u);
}

TEST(DnsResolver, ConcurrentRequestsShareOneQuery) {
  FakeDnsServer server(60);
  auto r = make(server.port());
  std::mutex m;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < 20; ++i) {
    r->resolve("api.test", [&](const DnsAnswer& a) {
      EXPECT_TRUE(a.ok());
      std::lock_guard lock(m);
      ++done;
      cv.notify_one();
    });
  }
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return done == 20; });
  EXPECT_EQ(server.a_queries(), 1);
}

TEST(DnsResolver, HostsFileIsHonoured) {
  // localhost is in every /etc/hosts; lookups "f" never sends a query.
  DnsResolverOptions o;
  o.lookups = "f";
  std::string error;
  auto r = DnsResolver::create(o, &error);
  ASSERT_TRUE(r) << error;
  DnsAnswer a = resolve_sync(*r, "localhost");
  ASSERT_TRUE(a.ok()) << a.error;
  EXPECT_TRUE(a.addresses[0].is_loopback());
}

}  // namespace
}  // namespace sluice::proxy
