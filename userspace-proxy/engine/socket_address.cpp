#include "userspace-proxy/engine/socket_address.h"

#include <arpa/inet.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace sluice::engine {

namespace {

bool parse_port(std::string_view s, uint16_t* port) {
  unsigned value = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

bool SocketAddress::parse(std::string_view text, SocketAddress* out) {
  SocketAddress a;
  uint16_t port = 0;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    std::string host(text.substr(1, close - 1));
    if (!parse_port(text.substr(close + 2), &port)) return false;
    a.u_.v6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, host.c_str(), &a.u_.v6.sin6_addr) != 1) return false;
    a.u_.v6.sin6_port = htons(port);
    a.len_ = sizeof(sockaddr_in6);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    std::string host(text.substr(0, colon));
    if (!parse_port(text.substr(colon + 1), &port)) return false;
    a.u_.v4.sin_family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &a.u_.v4.sin_addr) != 1) return false;
    a.u_.v4.sin_port = htons(port);
    a.len_ = sizeof(sockaddr_in);
  }
  *out = a;
  return true;
}

SocketAddress SocketAddress::from_sockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress a;
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    std::memcpy(&a.u_.v4, sa, sizeof(sockaddr_in));
    a.len_ = sizeof(sockaddr_in);
  } else if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    std::memcpy(&a.u_.v6, sa, sizeof(sockaddr_in6));
    a.len_ = sizeof(sockaddr_in6);
  }
  return a;
}

SocketAddress SocketAddress::ipv4(uint32_t host_order_addr, uint16_t port) {
  SocketAddress a;
  a.u_.v4.sin_family = AF_INET;
  a.u_.v4.sin_addr.s_addr = htonl(host_order_addr);
  a.u_.v4.sin_port = htons(port);
  a.len_ = sizeof(sockaddr_in);
  return a;
}

int SocketAddress::local_of(int fd, SocketAddress* out) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -errno;
  *out = from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return out->valid() ? 0 : -EAFNOSUPPORT;
}

int SocketAddress::peer_of(int fd, SocketAddress* out) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -errno;
  *out = from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return out->valid() ? 0 : -EAFNOSUPPORT;
}

uint16_t SocketAddress::port() const {
  if (len_ == sizeof(sockaddr_in)) return ntohs(u_.v4.sin_port);
  if (len_ == sizeof(sockaddr_in6)) return ntohs(u_.v6.sin6_port);
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  if (len_ == sizeof(sockaddr_in)) u_.v4.sin_port = htons(port);
  if (len_ == sizeof(sockaddr_in6)) u_.v6.sin6_port = htons(port);
}

std::string SocketAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (len_ == sizeof(sockaddr_in)) {
    inet_ntop(AF_INET, &u_.v4.sin_addr, buf, sizeof(buf));
    return std::string(buf) + ":" + std::to_string(port());
  }
  if (len_ == sizeof(sockaddr_in6)) {
    inet_ntop(AF_INET6, &u_.v6.sin6_addr, buf, sizeof(buf));
    return "[" + std::string(buf) + "]:" + std::to_string(port());
  }
  return "<invalid>";
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  return a.len_ == b.len_ && std::memcmp(&a.u_, &b.u_, a.len_) == 0;
}

}  // namespace sluice::engine
