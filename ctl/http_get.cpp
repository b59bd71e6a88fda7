#include "ctl/http_get.h"

#include "ctl/unique_fd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace sluice::ctl {

namespace {

using Clock = std::chrono::steady_clock;


std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Waits for `events` until the deadline. Empty string: ready.
std::string wait_for(int fd, short events, Clock::time_point deadline, std::chrono::milliseconds timeout) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return "no answer within " + std::to_string(timeout.count()) + " ms";
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 60'000)));
    if (n > 0) return {};
    if (n < 0 && errno != EINTR) return std::string("poll: ") + std::strerror(errno);
  }
}

// Decodes a chunked body. Returns false while incomplete or when malformed
// (`malformed` tells which).
bool dechunk(std::string_view in, std::string& out, bool& malformed) {
  malformed = false;
  out.clear();
  for (;;) {
    size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) return false;
    std::string_view size_text = in.substr(0, eol);
    if (size_t semi = size_text.find(';'); semi != std::string_view::npos) size_text = size_text.substr(0, semi);
    size_text = trim(size_text);
    size_t size = 0;
    auto [end, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (size_text.empty() || ec != std::errc() || end != size_text.data() + size_text.size()) {
      malformed = true;
      return false;
    }
    in.remove_prefix(eol + 2);
    if (size == 0) return true;  // trailers, if any, are not needed
    if (in.size() < size + 2) return false;
    out.append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
}

}  // namespace

std::optional<std::string> parse_admin_url(std::string_view url, AdminUrl& out) {
  const std::string given(url);
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return "--admin " + given + ": expected http://ADDRESS:PORT (e.g. http://127.0.0.1:15000)";
  }
  url.remove_prefix(kScheme.size());
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  std::string_view host, port_text;
  if (!url.empty() && url.front() == '[') {
    size_t close = url.find("]:");
    if (close == std::string_view::npos) return "--admin " + given + ": expected http://[IPv6]:PORT";
    host = url.substr(1, close - 1);
    port_text = url.substr(close + 2);
  } else {
    size_t colon = url.rfind(':');
    if (colon == std::string_view::npos) return "--admin " + given + ": the port is missing (Envoy's is 15000)";
    host = url.substr(0, colon);
    port_text = url.substr(colon + 1);
  }
  std::optional<decision::IpAddress> address =
      host == "localhost" ? decision::IpAddress::parse("127.0.0.1") : decision::IpAddress::parse(host);
  if (!address) return "--admin " + given + ": \"" + std::string(host) + "\" is not an IP address or localhost";
  if (!address->is_loopback()) {
    return "--admin " + given + ": the admin endpoint is loopback-only; give a loopback address (127.0.0.1 or ::1)";
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return "--admin " + given + ": \"" + std::string(port_text) + "\" is not a port";
  }
  out.address = *address;
  out.port = static_cast<uint16_t>(port);
  out.text = given;
  return std::nullopt;
}

HttpResponse http_get(const AdminUrl& url, std::string_view path, std::chrono::milliseconds timeout,
                      size_t max_bytes) {
  HttpResponse r;
  const Clock::time_point deadline = Clock::now() + timeout;

  sockaddr_storage ss{};
  socklen_t len = 0;
  const decision::IpAddress a = url.address.unmapped();
  if (a.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(url.port);
    std::memcpy(&sin->sin_addr, a.bytes().data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(url.port);
    std::memcpy(&sin6->sin6_addr, a.bytes().data(), 16);
    len = sizeof(sockaddr_in6);
  }
  Fd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    r.error = std::string("socket: ") + std::strerror(errno);
    return r;
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) {
      r.error = std::string("connect: ") + std::strerror(errno);
      return r;
    }
    if (std::string w = wait_for(fd.get(), POLLOUT, deadline, timeout); !w.empty()) {
      r.error = "connect: " + w;
      return r;
    }
    int err = 0;
    socklen_t err_len = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) {
      r.error = std::string("connect: ") + std::strerror(err);
      return r;
    }
  }

  const std::string host = a.is_v6() ? "[" + a.str() + "]" : a.str();
  const std::string request = "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + host + ":" +
                              std::to_string(url.port) +
                              "\r\nUser-Agent: sluicectl\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (std::string w = wait_for(fd.get(), POLLOUT, deadline, timeout); !w.empty()) {
        r.error = "send: " + w;
        return r;
      }
      continue;
    }
    r.error = std::string("send: ") + std::strerror(errno);
    return r;
  }

  std::string in;
  size_t header_end = std::string::npos;
  std::optional<size_t> content_length;
  bool chunked = false;
  bool eof = false;
  char buf[16384];
  for (;;) {
    // Complete already?
    if (header_end == std::string::npos) {
      header_end = in.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::string_view head(in.data(), header_end);
        size_t eol = head.find("\r\n");
        std::string_view status_line = head.substr(0, eol);
        if (status_line.substr(0, 7) != "HTTP/1." || status_line.size() < 12) {
          r.error = "not an HTTP/1.x response: \"" + std::string(status_line.substr(0, 40)) + "\"";
          return r;
        }
        std::string_view code = status_line.substr(9, 3);
        auto [end, ec] = std::from_chars(code.data(), code.data() + code.size(), r.status);
        if (ec != std::errc() || end != code.data() + code.size()) {
          r.error = "malformed status line: \"" + std::string(status_line.substr(0, 40)) + "\"";
          return r;
        }
        std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
        while (!rest.empty()) {
          size_t e = rest.find("\r\n");
          std::string_view line = rest.substr(0, e);
          rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 2);
          size_t colon = line.find(':');
          if (colon == std::string_view::npos) continue;
          const std::string name = lower(trim(line.substr(0, colon)));
          const std::string_view value = trim(line.substr(colon + 1));
          if (name == "content-length") {
            size_t v = 0;
            auto [vend, vec] = std::from_chars(value.data(), value.data() + value.size(), v);
            if (vec != std::errc() || vend != value.data() + value.size()) {
              r.error = "malformed Content-Length";
              return r;
            }
            content_length = v;
          } else if (name == "transfer-encoding") {
            chunked = lower(value).find("chunked") != std::string::npos;
          } else if (name == "content-type") {
            r.content_type = std::string(value);
          }
        }
      }
    }
    if (header_end != std::string::npos) {
      std::string_view body(in.data() + header_end + 4, in.size() - header_end - 4);
      if (chunked) {
        bool malformed = false;
        if (dechunk(body, r.body, malformed)) return r;
        if (malformed) {
          r.error = "malformed chunked body";
          return r;
        }
      } else if (content_length && body.size() >= *content_length) {
        r.body = std::string(body.substr(0, *content_length));
        return r;
      } else if (!content_length && eof) {
        r.body = std::string(body);
        return r;
      }
    }
    if (eof) {
      r.error = header_end == std::string::npos ? "connection closed before a complete response head"
                                                : "connection closed before the complete body";
      return r;
    }
    if (in.size() > max_bytes) {
      r.error = "response larger than " + std::to_string(max_bytes) + " bytes";
      return r;
    }
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (std::string w = wait_for(fd.get(), POLLIN, deadline, timeout); !w.empty()) {
        r.error = "receive: " + w;
        return r;
      }
      continue;
    }
    r.error = std::string("receive: ") + std::strerror(errno);
    return r;
  }
}

}  // namespace sluice::ctl
