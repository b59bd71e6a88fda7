// A tiny blocking HTTP/1.1 GET client for `sluicectl status`: one request per
// connection ("Connection: close") to a local admin endpoint, with one
// deadline for connect + send + receive and a cap on the response size. It
// talks to loopback addresses only: the admin endpoint never listens
// elsewhere, and status must not become a way to probe other hosts.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/decision/ip_address.h"

namespace sluice::ctl {

struct AdminUrl {
  decision::IpAddress address;
  uint16_t port = 0;
  std::string text;  // as given, for messages
};

// "http://127.0.0.1:15000", "http://[::1]:15000", "http://localhost:15000"
// (a trailing "/" is allowed). Returns what is wrong, else nullopt.
std::optional<std::string> parse_admin_url(std::string_view url, AdminUrl& out);

struct HttpResponse {
  std::string error;  // non-empty: no (complete) response; why
  int status = 0;
  std::string content_type;
  std::string body;
  bool ok() const { return error.empty(); }
};

// GET `path` from `url`. Never throws; every failure (refused, timeout,
// malformed or oversized response) comes back in `error`.
HttpResponse http_get(const AdminUrl& url, std::string_view path, std::chrono::milliseconds timeout,
                      size_t max_bytes = 16 * 1024 * 1024);

}  // namespace sluice::ctl
