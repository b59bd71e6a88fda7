#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::engine {

// An IPv4 or IPv6 socket address held by value (no heap), small enough to copy
// into verdicts and connection objects.
class SocketAddress {
 public:
  SocketAddress() = default;

  // Parses "1.2.3.4:80" or "[::1]:80". Returns false on malformed input.
  static bool parse(std::string_view text, SocketAddress* out);
  static SocketAddress from_sockaddr(const sockaddr* sa, socklen_t len);
  static SocketAddress ipv4(uint32_t host_order_addr, uint16_t port);
  static SocketAddress loopback4(uint16_t port) { return ipv4(0x7f000001u, port); }

  // Fills from getsockname()/getpeername(); returns 0 or -errno.
  static int local_of(int fd, SocketAddress* out);
  static int peer_of(int fd, SocketAddress* out);

  bool valid() const { return len_ != 0; }
  int family() const { return u_.sa.sa_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  const sockaddr* sa() const { return &u_.sa; }
  sockaddr* sa_mut() { return &u_.sa; }
  socklen_t len() const { return len_; }
  std::string to_string() const;

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } u_{};
  socklen_t len_ = 0;
};

}  // namespace sluice::engine
