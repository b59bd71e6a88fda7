// The admin endpoint (Envoy's admin port convention, 15000): a small HTTP/1.1
// server on its own thread with a blocking poll() loop, kept off the
// data-plane rings so a slow scrape or a stuck client never delays traffic,
// and so the data plane never depends on it.
//
//   AdminServer admin({.port = 15000});
//   admin.add_handler("/ready", kGet, "readiness", [&](const AdminRequest&) { return AdminResponse::text(200, "LIVE\n"); });
//   if (int rc = admin.start(); rc < 0) log(admin.error());
//   ...
//   admin.stop();
//
// Safety: binds 127.0.0.1 by default and refuses any non-loopback address
// unless `allow_non_loopback` is set, since /logging changes the process and
// /config_dump shows its configuration. Requests are bounded (head and body
// sizes, header count, connections, idle time); the parser is the proxy's own
// strict one (sniff::HttpRequestParser), so malformed framing gets a 4xx and
// the connection closes. Host headers that are DNS names other than
// "localhost" are refused by default (403), so a web page in a browser on the
// same machine cannot reach the endpoint through DNS rebinding.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "userspace-proxy/sniff/http_request_head.h"

namespace sluice::admin {

struct AdminServerOptions {
  std::string address = "127.0.0.1";  // IPv4 or IPv6 literal
  uint16_t port = 15000;              // 0: any free port (tests); port() tells which
  bool allow_non_loopback = false;    // bind a non-loopback address
  bool allow_host_names = false;      // accept Host: <DNS name> besides "localhost"
  std::size_t max_request_head_bytes = 8 * 1024;  // beyond: 431
  std::size_t max_request_body_bytes = 4 * 1024;  // Content-Length beyond: 413
  std::size_t max_headers = 64;                   // beyond: 431
  std::size_t max_connections = 32;               // beyond: 503, closed
  // A connection without a complete request for this long is closed (408 if
  // it had sent part of one).
  std::chrono::milliseconds idle_timeout{10000};
};

// One request, as a handler sees it. Views are valid during the call only.
struct AdminRequest {
  std::string_view method;  // "GET", "HEAD", "POST"
  std::string_view path;    // without the query
  std::string_view query;   // raw, without '?'
  std::span<const sniff::HeaderField> headers;
  std::string_view body;
  // The query's parameters, percent-decoded ('+' is a space), in order.
  std::vector<std::pair<std::string, std::string>> params;

  // First parameter with this name; nullptr when absent.
  const std::string* param(std::string_view name) const;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra header fields

  static AdminResponse text(int status, std::string body);
  static AdminResponse json(int status, std::string body);
};

// Handlers run on the admin thread, one at a time; what they read must be
// safe to read from it (metrics render, atomics, snapshot pointers).
using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

// Which methods a path accepts. GET includes HEAD (same response, no body).
enum AdminMethods : uint8_t { kGet = 1, kPost = 2, kGetOrPost = 3 };

class AdminServer {
 public:
  explicit AdminServer(AdminServerOptions options = {});
  ~AdminServer();  // stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Before start() only (the table is read without a lock afterwards).
  // Returns false for a path that is taken, does not start with '/', or when
  // the server is already running.
  bool add_handler(std::string path, AdminMethods methods, std::string help, AdminHandler handler);

  // Binds and starts the thread. 0, or -errno with error() saying what failed
  // (-EACCES for a non-loopback address without allow_non_loopback).
  int start();
  // Stops the thread and closes every connection. Idempotent.
  void stop();

  uint16_t port() const { return port_; }  // the bound port, after start()
  const std::string& error() const { return error_; }
  // "path  help" lines for every registered path, sorted.
  std::string describe_handlers() const;

  // Counters, for tests and the admin's own stats.
  uint64_t connections_accepted() const { return accepted_.load(std::memory_order_relaxed); }
  uint64_t connections_refused() const { return refused_.load(std::memory_order_relaxed); }
  uint64_t requests_served() const { return served_.load(std::memory_order_relaxed); }

 private:
  struct Route {
    AdminMethods methods;
    std::string help;
    AdminHandler handler;
  };
  class Connection;
  friend class Connection;

  void run();
  // Accepts every pending connection; true when accept failed for lack of
  // descriptors or memory (the caller stops polling the listener briefly).
  bool accept_all(std::vector<std::unique_ptr<Connection>>& conns);
  AdminResponse dispatch(const sniff::HttpRequestHead& head, std::string_view body);

  AdminServerOptions options_;
  std::map<std::string, Route, std::less<>> routes_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop() wakes the loop
  uint16_t port_ = 0;
  std::string error_;
  std::thread thread_;
  bool started_ = false;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> served_{0};
};

// The reason phrase for a status code ("OK", "Not Found", ...).
std::string_view reason_phrase(int status);

// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. nullopt when `address`
// is not an IP literal.
std::optional<bool> is_loopback_address(std::string_view address);

// Percent-decodes a query component ('+' is a space). nullopt for a '%' not
// followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view text);

}  // namespace sluice::admin
