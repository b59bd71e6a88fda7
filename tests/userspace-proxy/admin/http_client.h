// A minimal blocking HTTP/1.1 client over TCP for the admin tests: raw bytes
// out (so tests can send malformed requests), one response at a time back.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::admin::testing {

struct HttpResponse {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class HttpClient {
 public:
  // Connects to 127.0.0.1:port (or the given IPv4/IPv6 literal).
  explicit HttpClient(uint16_t port, const std::string& address = "127.0.0.1") {
    sockaddr_storage ss{};
    socklen_t len;
    int family = AF_INET;
    if (address.find(':') != std::string::npos) {
      family = AF_INET6;
      auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons(port);
      inet_pton(AF_INET6, address.c_str(), &s6->sin6_addr);
      len = sizeof(sockaddr_in6);
    } else {
      auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
      s4->sin_family = AF_INET;
      s4->sin_port = htons(port);
      inet_pton(AF_INET, address.c_str(), &s4->sin_addr);
      len = sizeof(sockaddr_in);
    }
    fd_ = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    // A hang guard, not a timing assertion: a broken server fails the test
    // instead of blocking it forever.
    timeval tv{20, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0;
  }
  ~HttpClient() {
    if (fd_ >= 0) close(fd_);
  }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  bool connected() const { return connected_; }

  bool send_raw(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // A GET (or other bodiless method) with Host: 127.0.0.1.
  bool send_request(std::string_view method, std::string_view target, std::string_view extra_headers = "") {
    std::string r = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                    std::string(extra_headers) + "\r\n";
    return send_raw(r);
  }

  // Reads one response. `head_only`: the request was HEAD (no body follows
  // whatever Content-Length says). nullopt when the connection ended first.
  std::optional<HttpResponse> read_response(bool head_only = false) {
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    HttpResponse r;
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    std::size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if ((status_line.rfind("HTTP/1.1 ", 0) != 0 && status_line.rfind("HTTP/1.0 ", 0) != 0) ||
        status_line.size() < 12) {
      return std::nullopt;
    }
    r.version = status_line.substr(0, 8);
    r.status = std::stoi(status_line.substr(9, 3));
    std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      std::size_t e = head.find("\r\n", pos);
      std::string line = head.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
      pos = e == std::string::npos ? head.size() : e + 2;
      std::size_t colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
    }
    if (r.status == 100 || head_only) return r;
    std::size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    while (buf_.size() < length) {
      if (!fill()) return std::nullopt;
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return r;
  }

  // HTTP/1.0 style: the response runs until the server closes (no
  // Content-Length or chunked framing needed).
  std::optional<HttpResponse> read_response_until_close() {
    while (fill()) {
    }
    std::size_t end = buf_.find("\r\n\r\n");
    if (end == std::string::npos) return std::nullopt;
    std::string rest = buf_.substr(end + 4);
    buf_.erase(end + 4);
    auto r = read_response(/*head_only=*/true);
    if (r) r->body = std::move(rest);
    return r;
  }

  // True when the server closed the connection (EOF, or a reset) with no
  // further bytes.
  bool closed_by_peer() {
    if (!buf_.empty()) return false;
    char c;
    ssize_t n = recv(fd_, &c, 1, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
    buf_.push_back(c);
    return false;
  }

  void shutdown_write() { shutdown(fd_, SHUT_WR); }

 private:
  bool fill() {
    char tmp[16384];
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

// One request on a new connection.
inline std::optional<HttpResponse> http_get(uint16_t port, std::string_view target, std::string_view method = "GET") {
  HttpClient c(port);
  if (!c.connected() || !c.send_request(method, target, "Connection: close\r\n")) return std::nullopt;
  return c.read_response(method == "HEAD");
}

}  // namespace sluice::admin::testing
