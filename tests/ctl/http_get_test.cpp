// The status command's HTTP/1.1 GET client against a scripted loopback
// server: framing (Content-Length, chunked, close-delimited), failures
// (refused, silent server, truncated, oversized, not HTTP) and URL parsing.
#include "ctl/http_get.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace sluice::ctl {
namespace {

using namespace std::chrono_literals;

// Accepts one connection, reads the request head, sends `chunks` and closes
// (or, with hold_open, keeps the connection until the test ends).
class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> chunks, bool hold_open = false)
      : chunks_(std::move(chunks)), hold_open_(hold_open) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
    EXPECT_EQ(listen(listen_fd_, 1), 0);
    socklen_t len = sizeof(sin);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    stop();
    close(listen_fd_);
  }

  // Ends the server thread; then the request it read may be looked at.
  const std::string& request() {
    stop();
    return request_;
  }

  AdminUrl url() const {
    AdminUrl u;
    EXPECT_EQ(parse_admin_url("http://127.0.0.1:" + std::to_string(port_), u), std::nullopt);
    return u;
  }

 private:
  void stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

  void serve() {
    pollfd p{listen_fd_, POLLIN, 0};
    while (!done_ && poll(&p, 1, 20) == 0) {
    }
    if (done_) return;
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    char buf[4096];
    while (request_.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      request_.append(buf, static_cast<size_t>(n));
    }
    for (const std::string& c : chunks_) {
      (void)!send(fd, c.data(), c.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(5ms);  // separate reads on the client side
    }
    while (hold_open_ && !done_) std::this_thread::sleep_for(10ms);
    close(fd);
  }

  std::vector<std::string> chunks_;
  bool hold_open_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::string request_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

TEST(HttpGet, ContentLengthResponseSplitAcrossReads) {
  ScriptedServer s({"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Le", "ngth: 5\r\n\r\nLI", "VE\n"});
  HttpResponse r = http_get(s.url(), "/ready", 5s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "LIVE\n");
  EXPECT_EQ(r.content_type, "text/plain");
  EXPECT_EQ(s.request().rfind("GET /ready HTTP/1.1\r\n", 0), 0u) << s.request();
  EXPECT_NE(s.request().find("\r\nHost: 127.0.0.1:"), std::string::npos);
  EXPECT_NE(s.request().find("\r\nConnection: close\r\n"), std::string::npos);
}

TEST(HttpGet, StopsAtContentLengthWithoutWaitingForClose) {
  ScriptedServer s({"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nDRAINING\n"}, /*hold_open=*/true);
  HttpResponse r = http_get(s.url(), "/ready", 5s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "DRAINING\n");
}

TEST(HttpGet, ChunkedBody) {
  ScriptedServer s({"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n", "3;x=y\r\n:1}\r\n0\r\n\r\n"});
  HttpResponse r = http_get(s.url(), "/config_dump", 5s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body, "{\"a\":1}");
}

TEST(HttpGet, CloseDelimitedBody) {
  ScriptedServer s({"HTTP/1.0 200 OK\r\n\r\nall of ", "it"});
  HttpResponse r = http_get(s.url(), "/", 5s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body, "all of it");
}

TEST(HttpGet, TruncatedBodyIsAnError) {
  ScriptedServer s({"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"});
  HttpResponse r = http_get(s.url(), "/", 5s);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("before the complete body"), std::string::npos) << r.error;
}

TEST(HttpGet, NotHttpIsAnError) {
  ScriptedServer s({"SSH-2.0-OpenSSH_9.2\r\n\r\n"});
  HttpResponse r = http_get(s.url(), "/", 5s);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("not an HTTP/1.x response"), std::string::npos) << r.error;
}

TEST(HttpGet, OversizedResponseIsRefused) {
  ScriptedServer s({"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'x')});
  HttpResponse r = http_get(s.url(), "/", 5s, /*max_bytes=*/1024);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("larger than 1024 bytes"), std::string::npos) << r.error;
}

TEST(HttpGet, SilentServerHitsTheDeadline) {
  ScriptedServer s({}, /*hold_open=*/true);
  HttpResponse r = http_get(s.url(), "/ready", 100ms);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("no answer within 100 ms"), std::string::npos) << r.error;
}

TEST(HttpGet, RefusedConnection) {
  // A port that was just bound and released: nothing listens there.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  socklen_t len = sizeof(sin);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  close(fd);
  AdminUrl u;
  ASSERT_EQ(parse_admin_url("http://127.0.0.1:" + std::to_string(ntohs(sin.sin_port)), u), std::nullopt);
  HttpResponse r = http_get(u, "/ready", 5s);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("Connection refused"), std::string::npos) << r.error;
}

TEST(AdminUrl, LoopbackOnly) {
  AdminUrl u;
  EXPECT_EQ(parse_admin_url("http://127.0.0.1:15000", u), std::nullopt);
  EXPECT_EQ(u.port, 15000);
  EXPECT_EQ(parse_admin_url("http://localhost:15000/", u), std::nullopt);
  EXPECT_EQ(u.address.str(), "127.0.0.1");
  EXPECT_EQ(parse_admin_url("http://[::1]:15000", u), std::nullopt);
  EXPECT_TRUE(u.address.is_v6());
  for (const char* bad : {"127.0.0.1:15000", "https://127.0.0.1:15000", "http://10.0.0.1:15000",
                          "http://example.com:15000", "http://127.0.0.1", "http://127.0.0.1:0", "http://[::1]15000",
                          "http://127.0.0.1:99999"}) {
    EXPECT_NE(parse_admin_url(bad, u), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace sluice::ctl
