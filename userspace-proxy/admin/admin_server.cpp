#include "userspace-proxy/admin/admin_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>

namespace sluice::admin {

using Clock = std::chrono::steady_clock;

namespace {

// How long a closing connection may take to send its FIN back after ours:
// closing with unread input would send RST and could discard the response.
constexpr std::chrono::milliseconds kLingerTimeout{1000};
// After EMFILE/ENFILE the listen socket stays readable; poll it again later
// instead of spinning.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

std::string errno_text(int err) { return std::strerror(err); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string serialize(const AdminResponse& r, bool head_only, bool close) {
  std::string out;
  out.reserve(192 + (head_only ? 0 : r.body.size()));
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += reason_phrase(r.status);
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(r.body.size());
  // Admin output describes the process now: never from a cache.
  out += "\r\nCache-Control: no-cache, max-age=0\r\nX-Content-Type-Options: nosniff\r\n";
  for (const auto& [name, value] : r.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

}  // namespace

// ---------------------------------------------------------------- helpers

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

std::optional<bool> is_loopback_address(std::string_view address) {
  std::string a(address);
  if (a.size() >= 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
  in_addr v4{};
  if (inet_pton(AF_INET, a.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, a.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return std::nullopt;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

const std::string* AdminRequest::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return &v;
  }
  return nullptr;
}

AdminResponse AdminResponse::text(int status, std::string body) {
  AdminResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

AdminResponse AdminResponse::json(int status, std::string body) {
  AdminResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

// ---------------------------------------------------------------- connection

// One client connection: reads requests one at a time, answers each before
// parsing the next (so a pipelining client cannot make us buffer more than one
// response), and closes after an error, "Connection: close", or idling.
class AdminServer::Connection {
 public:
  Connection(AdminServer& server, int fd, Clock::time_point now)
      : server_(server),
        fd_(fd),
        parser_(sniff::HttpLimits{
            .max_head_bytes = server.options_.max_request_head_bytes,
            .max_request_line_bytes = std::min<std::size_t>(server.options_.max_request_head_bytes, 4096),
            .max_headers = server.options_.max_headers,
            .max_content_length = server.options_.max_request_body_bytes,
        }),
        max_input_(server.options_.max_request_head_bytes + server.options_.max_request_body_bytes + 4096),
        deadline_(now + server.options_.idle_timeout) {}
  ~Connection() { close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int fd() const { return fd_; }
  Clock::time_point deadline() const { return deadline_; }

  short events() const {
    short ev = 0;
    if (pending_output()) ev |= POLLOUT;
    if (state_ == State::kLingering || (state_ == State::kReading && !read_eof_ && in_.size() < max_input_)) {
      ev |= POLLIN;
    }
    return ev;
  }

  // Each returns false once the connection is finished (to be destroyed).
  bool on_readable(Clock::time_point now) {
    char buf[4096];
    if (state_ == State::kLingering) {
      for (;;) {
        ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
        return false;  // EOF or error: done
      }
    }
    while (in_.size() < max_input_) {
      std::size_t want = std::min(sizeof(buf), max_input_ - in_.size());
      ssize_t n = recv(fd_, buf, want, 0);
      if (n > 0) {
        in_.append(buf, static_cast<std::size_t>(n));
        deadline_ = now + server_.options_.idle_timeout;
        continue;
      }
      if (n == 0) {
        read_eof_ = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return false;
    }
    return advance(now);
  }

  bool on_writable(Clock::time_point now) { return advance(now); }

  bool on_timeout(Clock::time_point now) {
    if (state_ != State::kReading || pending_output()) return false;
    if (in_.empty()) return false;  // idle keep-alive connection: just close
    fail(408, "no complete request within the idle timeout");
    deadline_ = now + kLingerTimeout;
    return flush(now);
  }

 private:
  enum class State : uint8_t { kReading, kClosing, kLingering };

  bool pending_output() const { return out_offset_ < out_.size(); }

  // Writes pending output, then answers buffered requests one at a time
  // while each answer goes out at once; stops when the socket is full or no
  // complete request is left.
  bool advance(Clock::time_point now) {
    do {
      if (!flush(now)) return false;
      if (pending_output()) return true;  // wait for POLLOUT
    } while (answer_one());
    // The client half-closed and there is nothing left to answer.
    return !(state_ == State::kReading && read_eof_);
  }

  // Parses the next buffered request and queues its response (or an error).
  // True when something was queued.
  bool answer_one() {
    if (state_ != State::kReading) return false;
    if (parser_.status() == sniff::HttpParseStatus::kNeedMore) {
      if (fed_ == in_.size()) return false;
      auto r = parser_.feed(std::string_view(in_).substr(fed_));
      switch (r.status) {
        case sniff::HttpParseStatus::kNeedMore:
          fed_ = in_.size();
          return false;
        case sniff::HttpParseStatus::kNotHttp:
          fail(400, "not an HTTP/1.x request");
          return true;
        case sniff::HttpParseStatus::kInvalid:
          fail(parser_.error().status, parser_.error().reason);
          return true;
        case sniff::HttpParseStatus::kDone:
          fed_ += r.consumed;
          head_end_ = fed_;
          break;
      }
    }
    const sniff::HttpRequestHead& head = parser_.head();
    if (head.chunked) {
      fail(501, "chunked request bodies are not supported by the admin endpoint");
      return true;
    }
    std::size_t body_length = static_cast<std::size_t>(head.content_length.value_or(0));
    if (in_.size() - head_end_ < body_length) {
      if (read_eof_) {
        fail(400, "the connection ended inside the request body");
        return true;
      }
      if (head.expect_continue && !continue_sent_) {
        out_ += "HTTP/1.1 100 Continue\r\n\r\n";
        continue_sent_ = true;
        return true;
      }
      return false;
    }
    AdminResponse response = server_.dispatch(head, std::string_view(in_).substr(head_end_, body_length));
    // After CONNECT the client may already be sending tunnel bytes: close.
    bool close = !head.keep_alive || head.is_connect || read_eof_;
    out_ += serialize(response, head.method == "HEAD", close);
    in_.erase(0, head_end_ + body_length);
    fed_ = 0;
    head_end_ = 0;
    continue_sent_ = false;
    parser_.reset();
    if (close) state_ = State::kClosing;
    return true;
  }

  void fail(int status, std::string_view why) {
    if (status < 400) status = 400;
    server_.served_.fetch_add(1, std::memory_order_relaxed);
    AdminResponse r = AdminResponse::text(status, std::string(why) + "\n");
    out_ += serialize(r, false, true);
    state_ = State::kClosing;
  }

  // Writes what it can. False on a write error (the peer is gone).
  bool flush(Clock::time_point now) {
    while (pending_output()) {
      ssize_t n = send(fd_, out_.data() + out_offset_, out_.size() - out_offset_, MSG_NOSIGNAL);
      if (n > 0) {
        out_offset_ += static_cast<std::size_t>(n);
        deadline_ = now + server_.options_.idle_timeout;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      return false;
    }
    out_.clear();
    out_offset_ = 0;
    if (state_ == State::kClosing) {
      // Our FIN first, then wait (briefly) for the client's, so unread input
      // does not turn the close into a reset that loses the response.
      shutdown(fd_, SHUT_WR);
      state_ = State::kLingering;
      deadline_ = now + kLingerTimeout;
      if (read_eof_) return false;
    }
    return true;
  }

  AdminServer& server_;
  int fd_;
  sniff::HttpRequestParser parser_;
  std::size_t max_input_;
  std::string in_;             // received bytes not yet answered
  std::size_t fed_ = 0;        // bytes of in_ the parser has seen
  std::size_t head_end_ = 0;   // where the body starts, once the head is done
  std::string out_;
  std::size_t out_offset_ = 0;
  bool read_eof_ = false;
  bool continue_sent_ = false;
  State state_ = State::kReading;
  Clock::time_point deadline_;
};

// ---------------------------------------------------------------- server

AdminServer::AdminServer(AdminServerOptions options) : options_(std::move(options)) {}

AdminServer::~AdminServer() { stop(); }

bool AdminServer::add_handler(std::string path, AdminMethods methods, std::string help, AdminHandler handler) {
  if (started_ || path.empty() || path[0] != '/' || !handler || routes_.count(path) > 0) return false;
  routes_.emplace(std::move(path), Route{methods, std::move(help), std::move(handler)});
  return true;
}

std::string AdminServer::describe_handlers() const {
  std::string out;
  for (const auto& [path, route] : routes_) {
    out += path;
    out += route.methods == kPost ? " (POST)" : route.methods == kGetOrPost ? " (GET, POST)" : "";
    out += "  ";
    out += route.help;
    out += '\n';
  }
  return out;
}

int AdminServer::start() {
  if (started_) return 0;
  std::string address = options_.address;
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  std::optional<bool> loopback = is_loopback_address(address);
  if (!loopback) {
    error_ = "admin address \"" + options_.address + "\" is not an IP address (e.g. 127.0.0.1 or ::1)";
    return -EINVAL;
  }
  if (!*loopback && !options_.allow_non_loopback) {
    error_ = "admin address " + options_.address +
             " is not a loopback address: the admin endpoint can change the log level and shows the "
             "configuration, so it binds 127.0.0.1 or ::1 unless non-loopback is explicitly allowed";
    return -EACCES;
  }

  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (in_addr v4{}; inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(options_.port);
    sin->sin_addr = v4;
    len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(options_.port);
    inet_pton(AF_INET6, address.c_str(), &sin6->sin6_addr);
    len = sizeof(sockaddr_in6);
    family = AF_INET6;
  }

  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    error_ = "admin socket: " + errno_text(err);
    return -err;
  }
  int one = 1;
  // A restarted proxy must rebind at once, even with old connections in TIME_WAIT.
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // An upgrade starts the new proxy while the old one still serves: both
  // bind the port (the kernel only groups sockets of the same user), and the
  // old one closes its admin listener when it starts draining.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  std::string where = (family == AF_INET6 ? "[" + address + "]" : address) + ":" + std::to_string(options_.port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 64) != 0) {
    int err = errno;
    close(fd);
    error_ = "admin endpoint cannot listen on " + where + ": " + errno_text(err);
    return -err;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                  : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);

  int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake < 0) {
    int err = errno;
    close(fd);
    error_ = "admin eventfd: " + errno_text(err);
    return -err;
  }
  listen_fd_ = fd;
  wake_fd_ = wake;
  started_ = true;
  thread_ = std::thread([this] { run(); });
  return 0;
}

void AdminServer::stop() {
  if (!started_) return;
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  close(listen_fd_);
  close(wake_fd_);
  listen_fd_ = wake_fd_ = -1;
  // started_ stays true: handlers cannot be added to a used server, and a
  // stopped one is not restarted.
}

bool AdminServer::accept_all(std::vector<std::unique_ptr<Connection>>& conns) {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // EAGAIN: drained. Out of descriptors or memory: back off.
      return errno != EAGAIN;
    }
    if (conns.size() >= options_.max_connections) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      static const std::string busy = serialize(
          AdminResponse::text(503, "too many admin connections: retry\n"), false, true);
      (void)!send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(fd);
      continue;
    }
    accepted_.fetch_add(1, std::memory_order_relaxed);
    conns.push_back(std::make_unique<Connection>(*this, fd, Clock::now()));
  }
}

void AdminServer::run() {
  // Process signals (SIGTERM, SIGHUP, ...) are the main thread's business.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::vector<std::unique_ptr<Connection>> conns;
  std::vector<pollfd> fds;
  Clock::time_point accept_paused_until{};
  for (;;) {
    Clock::time_point now = Clock::now();
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    bool accepting = now >= accept_paused_until;
    fds.push_back({listen_fd_, static_cast<short>(accepting ? POLLIN : 0), 0});
    Clock::time_point next = accepting ? Clock::time_point::max() : accept_paused_until;
    for (const auto& c : conns) {
      fds.push_back({c->fd(), c->events(), 0});
      next = std::min(next, c->deadline());
    }
    int timeout_ms = -1;
    if (next != Clock::time_point::max()) {
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait, 0, 60'000));
    }
    int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) return;  // EFAULT/EINVAL/ENOMEM: nothing sensible left to do
    if (fds[0].revents & POLLIN) return;  // stop(): connections close with the vector
    now = Clock::now();

    // Connections first (indices line up with fds), then new ones.
    std::vector<std::unique_ptr<Connection>> kept;
    kept.reserve(conns.size());
    for (std::size_t i = 0; i < conns.size(); ++i) {
      Connection& c = *conns[i];
      short re = n > 0 ? fds[i + 2].revents : 0;
      bool alive = true;
      if (re & (POLLIN | POLLHUP | POLLERR)) alive = c.on_readable(now);
      if (alive && (re & POLLOUT)) alive = c.on_writable(now);
      if (alive && now >= c.deadline()) alive = c.on_timeout(now);
      if (alive) kept.push_back(std::move(conns[i]));
    }
    conns.swap(kept);
    if (n > 0 && (fds[1].revents & POLLIN) && accept_all(conns)) accept_paused_until = now + kAcceptBackoff;
  }
}

AdminResponse AdminServer::dispatch(const sniff::HttpRequestHead& head, std::string_view body) {
  served_.fetch_add(1, std::memory_order_relaxed);
  if (head.target_form == sniff::TargetForm::kAuthority || head.target_form == sniff::TargetForm::kAsterisk) {
    return AdminResponse::text(400, "the admin endpoint takes a path, e.g. GET /ready\n");
  }
  if (!options_.allow_host_names && head.host_kind == sniff::HostKind::kName && head.host != "localhost") {
    return AdminResponse::text(403, "Host \"" + std::string(head.host) +
                                        "\" refused: address the admin endpoint by IP address or localhost\n");
  }
  std::string_view target = head.path;
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query = path.size() < target.size() ? target.substr(path.size() + 1) : std::string_view{};

  auto it = routes_.find(path);
  if (it == routes_.end()) {
    return AdminResponse::text(404, "no admin endpoint at " + std::string(path) + "; there are:\n" +
                                        describe_handlers());
  }
  const Route& route = it->second;
  bool get_like = head.method == "GET" || head.method == "HEAD";
  bool allowed = (get_like && (route.methods & kGet)) || (head.method == "POST" && (route.methods & kPost));
  if (!allowed) {
    std::string allow = route.methods == kPost ? "POST" : route.methods == kGet ? "GET, HEAD" : "GET, HEAD, POST";
    AdminResponse r = AdminResponse::text(405, std::string(path) + " accepts " + allow + "\n");
    r.headers.emplace_back("Allow", allow);
    return r;
  }

  AdminRequest req;
  req.method = head.method;
  req.path = path;
  req.query = query;
  req.headers = head.headers;
  req.body = body;
  std::size_t pos = 0;
  while (pos < query.size()) {
    std::size_t amp = query.find('&', pos);
    std::string_view part = query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    pos = amp == std::string_view::npos ? query.size() : amp + 1;
    if (part.empty()) continue;
    std::size_t eq = part.find('=');
    auto key = percent_decode(part.substr(0, eq));
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!key || !value) return AdminResponse::text(400, "malformed percent-encoding in the query\n");
    req.params.emplace_back(std::move(*key), std::move(*value));
  }
  // Handlers are ours, but a throw here must not end the process through the
  // admin thread: answer 500 and keep serving.
  try {
    return route.handler(req);
  } catch (const std::exception& e) {
    return AdminResponse::text(500, std::string("handler failed: ") + e.what() + "\n");
  } catch (...) {
    return AdminResponse::text(500, "handler failed\n");
  }
}

}  // namespace sluice::admin
