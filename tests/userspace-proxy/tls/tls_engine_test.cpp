// TlsFilter inside the real engine, over real sockets on 127.0.0.1:
//   termination:  OpenSSL client --mTLS--> engine [TlsFilter server side] --plain--> echo backend
//   origination:  plain client --> engine [TlsFilter client side] --TLS--> OpenSSL server (a thread)
// Waits are bounded (socket timeouts) only to turn a hang into a failure.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/userspace-proxy/tls/tls_test_util.h"
#include "userspace-proxy/engine/engine.h"
#include "userspace-proxy/tls/tls_filter.h"

namespace sluice::tls {
namespace {

using engine::Connection;
using engine::SocketAddress;
using engine::Verdict;
using testing::Certs;
using ::testing::HasSubstr;
using testing::kGatewayId;
using testing::kSleepId;

constexpr timeval kHang = {60, 0};

int listen_loopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &kHang, sizeof(kHang));  // bounds accept()
  return fd;
}

int connect_to(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &kHang, sizeof(kHang));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &kHang, sizeof(kHang));
  return fd;
}

int accept_one(int listen_fd) {
  int fd;
  do {
    fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);  // scripts/mesh-certs children end with SIGCHLD
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &kHang, sizeof(kHang));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &kHang, sizeof(kHang));
  }
  return fd;
}

bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Everything until EOF (or an error/timeout, which the caller's checks catch).
std::string read_to_eof(int fd, bool* clean_eof = nullptr) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (clean_eof) *clean_eof = n == 0;
    return out;
  }
}

// Handshake results reported on the worker thread.
class Results {
 public:
  HandshakeCallback callback() {
    return [this](const TlsHandshakeResult& r) {
      std::lock_guard<std::mutex> l(mu_);
      results_.push_back(r);
      cv_.notify_all();
    };
  }
  bool wait_for(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(60), [&] { return results_.size() >= n; });
  }
  std::vector<TlsHandshakeResult> get() {
    std::lock_guard<std::mutex> l(mu_);
    return results_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<TlsHandshakeResult> results_;
};

// A handler made of two lambdas, plus a count of closed connections.
class LambdaHandler final : public engine::ConnectionHandler {
 public:
  using Accept = std::function<Verdict(Connection&)>;
  using Data = std::function<Verdict(Connection&, std::span<const uint8_t>)>;
  LambdaHandler(Accept a, Data d, std::atomic<int>* closed)
      : accept_(std::move(a)), data_(std::move(d)), closed_(closed) {}
  Verdict on_accept(Connection& c, const engine::AcceptInfo&) override { return accept_(c); }
  Verdict on_downstream_data(Connection& c, std::span<const uint8_t> pending) override { return data_(c, pending); }
  void on_close(Connection&, const engine::ConnectionStats&) override { closed_->fetch_add(1); }

 private:
  Accept accept_;
  Data data_;
  std::atomic<int>* closed_;
};

class TlsEngineTest : public ::testing::Test {
 protected:
  // The certificates first: scripts/mesh-certs runs before any thread exists.
  void SetUp() override { Certs::get(); }
  void start(LambdaHandler::Accept accept, LambdaHandler::Data data) {
    engine::EngineConfig cfg;
    cfg.workers = 1;
    cfg.upstream_mark = 0;
    cfg.handler_factory = [accept, data, this](uint32_t) {
      return std::make_unique<LambdaHandler>(accept, data, &closed_);
    };
    engine_ = std::make_unique<engine::Engine>(cfg);
    ASSERT_EQ(engine_->start(), 0) << engine_->error();
    port_ = engine_->listen_address().port();
  }
  void TearDown() override {
    if (engine_) {
      engine_->stop(std::chrono::milliseconds(0));
      engine_->wait();
    }
  }
  std::unique_ptr<engine::Engine> engine_;
  uint16_t port_ = 0;
  std::atomic<int> closed_{0};
};

SslCtxPtr openssl_client_ctx(const std::string& identity) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  const std::string dir = Certs::get().path(identity);
  EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx.get(), (dir + "/cert-chain.pem").c_str()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx.get(), (dir + "/key.pem").c_str(), SSL_FILETYPE_PEM), 1);
  EXPECT_EQ(SSL_CTX_load_verify_locations(ctx.get(), (dir + "/root-cert.pem").c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  return ctx;
}

bool ssl_write_all(SSL* ssl, const std::string& s) {
  size_t written = 0;
  return SSL_write_ex(ssl, s.data(), s.size(), &written) == 1 && written == s.size();
}

std::string ssl_read_n(SSL* ssl, size_t n) {
  std::string out;
  char buf[4096];
  while (out.size() < n) {
    size_t got = 0;
    if (SSL_read_ex(ssl, buf, std::min(sizeof(buf), n - out.size()), &got) != 1) break;
    out.append(buf, got);
  }
  return out;
}

// The gateway: terminates ISTIO_MUTUAL with a need_more filter, reads the
// decrypted bytes as its pending data and connects to an echo backend.
TEST_F(TlsEngineTest, TerminatesMutualTlsInFrontOfAPlainBackend) {
  uint16_t backend_port = 0;
  int backend_fd = listen_loopback(&backend_port);
  ASSERT_GE(backend_fd, 0);
  std::string backend_got;
  bool backend_eof = false;
  std::thread backend([&] {
    int fd = accept_one(backend_fd);
    if (fd < 0) return;
    char buf[4096];
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        backend_eof = n == 0;
        break;
      }
      backend_got.append(buf, static_cast<size_t>(n));
      if (!send_all(fd, std::string(buf, static_cast<size_t>(n)))) break;
    }
    close(fd);  // after the client's FIN: ours follows
  });

  std::string err;
  ServerTlsOptions so;
  so.mode = ServerTlsMode::kIstioMutual;
  so.mesh_identity_dir = Certs::get().path("gateway");
  so.subject_alt_names = {kSleepId};
  auto server_ctx = TlsServerContext::create(so, &err);
  ASSERT_TRUE(server_ctx) << err;
  Results results;
  std::string pending_seen;
  std::mutex pending_mu;
  start(
      [&](Connection&) {
        TlsFilterOptions o;
        o.downstream_tls = server_ctx;
        o.on_handshake = results.callback();
        std::string e;
        auto f = TlsFilter::create(std::move(o), &e);
        return f ? Verdict::need_more(std::chrono::seconds(30), std::move(f)) : Verdict::close();
      },
      [&](Connection&, std::span<const uint8_t> pending) {
        if (pending.size() < 5) return Verdict::need_more(std::chrono::seconds(30));
        {
          std::lock_guard<std::mutex> l(pending_mu);
          pending_seen.assign(reinterpret_cast<const char*>(pending.data()), pending.size());
        }
        return Verdict::connect(SocketAddress::loopback4(backend_port));
      });

  int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  SslCtxPtr ctx = openssl_client_ctx("sleep");
  SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_tlsext_host_name(ssl.get(), "edition.cnn.com");
  SSL_set_fd(ssl.get(), fd);
  ASSERT_EQ(SSL_connect(ssl.get()), 1) << ERR_error_string(ERR_get_error(), nullptr);
  EXPECT_EQ(peer_identity(ssl.get()).uri_sans, std::vector<std::string>{kGatewayId});
  EXPECT_STREQ(SSL_get_version(ssl.get()), "TLSv1.3");

  ASSERT_TRUE(ssl_write_all(ssl.get(), "hello"));
  EXPECT_EQ(ssl_read_n(ssl.get(), 5), "hello");
  // Many records, backpressure on the way; the ciphertext upload fills
  // its reads, so the filter gets them from the bulk ring too.
  std::string big(300000, 'z');
  for (size_t i = 0; i < big.size(); i += 4099) big[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE(ssl_write_all(ssl.get(), big));
  EXPECT_EQ(ssl_read_n(ssl.get(), big.size()), big);
  EXPECT_GT(engine_->counters().bulk_promotions, 0u);
  {
    std::lock_guard<std::mutex> l(pending_mu);
    EXPECT_EQ(pending_seen, "hello");  // the handler saw plaintext
  }

  // close_notify + FIN from the client; the backend's FIN comes back as
  // close_notify + FIN.
  SSL_shutdown(ssl.get());
  shutdown(fd, SHUT_WR);
  char b;
  EXPECT_EQ(SSL_read(ssl.get(), &b, 1), 0);
  EXPECT_EQ(SSL_get_error(ssl.get(), 0), SSL_ERROR_ZERO_RETURN);
  close(fd);
  backend.join();
  close(backend_fd);
  EXPECT_EQ(backend_got, "hello" + big);
  EXPECT_TRUE(backend_eof);

  ASSERT_TRUE(results.wait_for(1));
  const TlsHandshakeResult r = results.get()[0];
  EXPECT_TRUE(r.ok) << r.failure_reason;
  EXPECT_EQ(r.sni, "edition.cnn.com");
  EXPECT_EQ(r.peer.uri_sans, std::vector<std::string>{kSleepId});
}

TEST_F(TlsEngineTest, PlainHttpToATlsPortIsRefusedWithAReason) {
  std::string err;
  ServerTlsOptions so;
  so.files.cert_chain = Certs::get().path("cnn/cert-chain.pem");
  so.files.private_key = Certs::get().path("cnn/key.pem");
  auto server_ctx = TlsServerContext::create(so, &err);
  ASSERT_TRUE(server_ctx) << err;
  Results results;
  start(
      [&](Connection&) {
        TlsFilterOptions o;
        o.downstream_tls = server_ctx;
        o.on_handshake = results.callback();
        std::string e;
        return Verdict::need_more(std::chrono::seconds(30), TlsFilter::create(std::move(o), &e));
      },
      [&](Connection&, std::span<const uint8_t>) { return Verdict::need_more(std::chrono::seconds(30)); });
  int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n"));
  bool clean = false;
  const std::string got = read_to_eof(fd, &clean);
  close(fd);
  // At most a TLS alert record, then the connection ends.
  if (!got.empty()) {
    EXPECT_EQ(got[0], '\x15');
  }
  ASSERT_TRUE(results.wait_for(1));
  EXPECT_FALSE(results.get()[0].ok);
  EXPECT_THAT(results.get()[0].failure_reason, HasSubstr("http request"));
}

// An OpenSSL server (edition.cnn.com, external CA) answering `count`
// connections: one request each, then close_notify and close.
class TlsServerThread {
 public:
  explicit TlsServerThread(int count) {
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate_chain_file(ctx_.get(), Certs::get().path("cnn/cert-chain.pem").c_str());
    SSL_CTX_use_PrivateKey_file(ctx_.get(), Certs::get().path("cnn/key.pem").c_str(), SSL_FILETYPE_PEM);
    fd_ = listen_loopback(&port_);
    thread_ = std::thread([this, count] {
      for (int i = 0; i < count; ++i) serve_one();
    });
  }
  ~TlsServerThread() {
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  void join() { thread_.join(); }
  uint16_t port() const { return port_; }

  struct Seen {
    bool handshake_ok = false;
    std::string sni;
    bool resumed = false;
    std::string request;
  };
  std::vector<Seen> seen;  // read after join()

 private:
  void serve_one() {
    int fd = accept_one(fd_);
    if (fd < 0) return;
    SslPtr ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), fd);
    Seen s;
    if (SSL_accept(ssl.get()) == 1) {
      s.handshake_ok = true;
      const char* sni = SSL_get_servername(ssl.get(), TLSEXT_NAMETYPE_host_name);
      s.sni = sni ? sni : "";
      s.resumed = SSL_session_reused(ssl.get()) == 1;
      char buf[4096];
      while (s.request.find("\r\n\r\n") == std::string::npos) {
        size_t got = 0;
        if (SSL_read_ex(ssl.get(), buf, sizeof(buf), &got) != 1) break;
        s.request.append(buf, got);
      }
      ssl_write_all(ssl.get(), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
      SSL_shutdown(ssl.get());
    }
    ERR_clear_error();
    seen.push_back(s);
    close(fd);
  }
  SslCtxPtr ctx_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

// The sidecar's TLS origination (istio.io "egress TLS origination"): the
// app speaks plain HTTP, the handler connects with a client-side filter.
TEST_F(TlsEngineTest, OriginatesTlsAndResumesTheSessionOnTheNextConnection) {
  TlsServerThread server(3);
  std::string err;
  ClientTlsOptions co;
  co.files.ca_certificates = Certs::get().path("cnn/root-cert.pem");
  co.sni = "edition.cnn.com";
  auto client_ctx = TlsClientContext::create(co, &err);
  ASSERT_TRUE(client_ctx) << err;
  ClientTlsOptions wrong = co;
  wrong.files.ca_certificates = Certs::get().path("sleep/root-cert.pem");
  auto wrong_ctx = TlsClientContext::create(wrong, &err);
  ASSERT_TRUE(wrong_ctx) << err;
  std::atomic<int> connection{0};
  Results results;
  const uint16_t upstream_port = server.port();
  start([&](Connection&) { return Verdict::need_more(std::chrono::seconds(30)); },
        [&](Connection&, std::span<const uint8_t> pending) {
          std::string_view p(reinterpret_cast<const char*>(pending.data()), pending.size());
          if (p.find("\r\n\r\n") == std::string_view::npos) return Verdict::need_more(std::chrono::seconds(30));
          const bool third = connection.fetch_add(1) == 2;
          TlsFilterOptions o;
          o.upstream_tls = third ? wrong_ctx : client_ctx;
          o.upstream_params.session_key = "127.0.0.1:" + std::to_string(upstream_port);
          o.on_handshake = results.callback();
          o.upstream_failure_reply = [](const TlsHandshakeResult& r) {
            const std::string body = upstream_tls_failure_details(r.failure_reason);
            return "HTTP/1.1 503 Service Unavailable\r\ncontent-length: " + std::to_string(body.size()) +
                   "\r\nconnection: close\r\n\r\n" + body;
          };
          std::string e;
          return Verdict::connect(SocketAddress::loopback4(upstream_port), TlsFilter::create(std::move(o), &e));
        });

  const std::string request = "GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n";
  for (int i = 0; i < 3; ++i) {
    int fd = connect_to(port_);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, request));
    bool clean = false;
    const std::string response = read_to_eof(fd, &clean);
    close(fd);
    EXPECT_TRUE(clean) << i;
    if (i < 2) {
      EXPECT_EQ(response, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok") << i;
    } else {
      EXPECT_THAT(response, HasSubstr("HTTP/1.1 503 Service Unavailable"));
      EXPECT_THAT(response, HasSubstr("transport failure reason: TLS error: "));
      EXPECT_THAT(response, HasSubstr("certificate verify failed"));
    }
  }
  server.join();
  ASSERT_EQ(server.seen.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(server.seen[i].handshake_ok) << i;
    EXPECT_EQ(server.seen[i].sni, "edition.cnn.com");
    EXPECT_EQ(server.seen[i].request, request);  // encrypted on the wire, intact at the server
  }
  EXPECT_FALSE(server.seen[0].resumed);
  EXPECT_TRUE(server.seen[1].resumed);
  EXPECT_FALSE(server.seen[2].handshake_ok);

  ASSERT_TRUE(results.wait_for(3));
  const auto r = results.get();
  EXPECT_TRUE(r[0].ok && !r[0].resumed);
  EXPECT_TRUE(r[1].ok && r[1].resumed);
  EXPECT_FALSE(r[2].ok);
  EXPECT_EQ(r[2].side, TlsSide::kUpstream);
}

}  // namespace
}  // namespace sluice::tls
