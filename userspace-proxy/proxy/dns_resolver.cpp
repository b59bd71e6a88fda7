#include "userspace-proxy/proxy/dns_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <atomic>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

namespace sluice::proxy {

namespace {

using Clock = std::chrono::steady_clock;

class AresResolver final : public DnsResolver {
 public:
  explicit AresResolver(const DnsResolverOptions& o) : options_(o) {}

  ~AresResolver() override {
    stopping_.store(true);
    wake();
    if (thread_.joinable()) thread_.join();
    if (channel_) ares_destroy(channel_);
    if (wake_fd_ >= 0) close(wake_fd_);
    ares_library_cleanup();
  }

  bool init(std::string* error) {
    if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS) {
      *error = std::string("c-ares init: ") + ares_strerror(rc);
      return false;
    }
    ares_options opts{};
    opts.timeout = static_cast<int>(options_.query_timeout.count());
    opts.tries = options_.tries;
    std::string lookups = options_.lookups;
    opts.lookups = lookups.data();
    const int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    if (int rc = ares_init_options(&channel_, &opts, mask); rc != ARES_SUCCESS) {
      *error = std::string("c-ares channel: ") + ares_strerror(rc);
      return false;
    }
    if (!options_.servers.empty()) {
      if (int rc = ares_set_servers_ports_csv(channel_, options_.servers.c_str()); rc != ARES_SUCCESS) {
        *error = "invalid DNS servers \"" + options_.servers + "\": " + ares_strerror(rc);
        return false;
      }
    }
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
      *error = "eventfd failed";
      return false;
    }
    thread_ = std::thread([this] { run(); });
    return true;
  }

  bool lookup_cached(const std::string& name, DnsAnswer* out) const override {
    std::shared_lock lock(cache_mutex_);
    auto it = cache_.find(name);
    if (it == cache_.end() || it->second.expires <= Clock::now()) return false;
    *out = it->second;
    return true;
  }

  void resolve(const std::string& name, Callback done) override {
    {
      std::lock_guard lock(queue_mutex_);
      requests_.push_back(Request{name, std::move(done)});
    }
    wake();
  }

  uint64_t queries_started() const override { return queries_.load(); }

 private:
  struct Request {
    std::string name;
    Callback done;
  };
  struct Query {
    AresResolver* self;
    std::string name;
  };

  void wake() {
    if (wake_fd_ >= 0) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
    }
  }

  // Resolver thread: take requests, answer from the cache or start a query,
  // then drive c-ares' sockets with poll().
  void run() {
    while (!stopping_.load()) {
      take_requests();
      pollfd fds[ARES_GETSOCK_MAXNUM + 1];
      ares_socket_t socks[ARES_GETSOCK_MAXNUM];
      const int bits = ares_getsock(channel_, socks, ARES_GETSOCK_MAXNUM);
      nfds_t n = 0;
      fds[n++] = pollfd{wake_fd_, POLLIN, 0};
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short ev = 0;
        if (ARES_GETSOCK_READABLE(bits, i)) ev |= POLLIN;
        if (ARES_GETSOCK_WRITABLE(bits, i)) ev |= POLLOUT;
        if (ev) fds[n++] = pollfd{socks[i], ev, 0};
      }
      timeval tv{}, max_tv{1, 0};
      timeval* t = ares_timeout(channel_, &max_tv, &tv);
      const int timeout_ms = static_cast<int>(t->tv_sec * 1000 + t->tv_usec / 1000);
      const int ready = poll(fds, n, timeout_ms);
      if (ready < 0) continue;  // EINTR
      if (fds[0].revents & POLLIN) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &v, sizeof(v));
      }
      bool any = false;
      for (nfds_t i = 1; i < n; ++i) {
        if (!fds[i].revents) continue;
        any = true;
        const ares_socket_t rfd = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
        const ares_socket_t wfd = (fds[i].revents & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD;
        ares_process_fd(channel_, rfd, wfd);
      }
      if (!any) ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
    // Fail whatever is still waiting so no caller hangs.
    ares_cancel(channel_);
  }

  void take_requests() {
    std::deque<Request> batch;
    {
      std::lock_guard lock(queue_mutex_);
      batch.swap(requests_);
    }
    for (auto& r : batch) {
      DnsAnswer cached;
      if (lookup_cached(r.name, &cached)) {
        r.done(cached);
        continue;
      }
      auto [it, inserted] = waiting_.try_emplace(r.name);
      it->second.push_back(std::move(r.done));
      if (!inserted) continue;  // a query for this name is already running
      queries_.fetch_add(1);
      ares_addrinfo_hints hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = ARES_AI_NOSORT;
      ares_getaddrinfo(channel_, r.name.c_str(), nullptr, &hints, &AresResolver::on_answer,
                       new Query{this, r.name});
    }
  }

  static void on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
    std::unique_ptr<Query> q(static_cast<Query*>(arg));
    q->self->complete(q->name, status, result);
    if (result) ares_freeaddrinfo(result);
  }

  void complete(const std::string& name, int status, ares_addrinfo* result) {
    DnsAnswer answer;
    int ttl = static_cast<int>(options_.max_ttl.count());
    std::vector<decision::IpAddress> v4, v6;
    if (status == ARES_SUCCESS && result) {
      for (ares_addrinfo_node* n = result->nodes; n; n = n->ai_next) {
        if (n->ai_family == AF_INET) {
          auto* sa = reinterpret_cast<sockaddr_in*>(n->ai_addr);
          std::array<uint8_t, 4> b;
          memcpy(b.data(), &sa->sin_addr, 4);
          v4.push_back(decision::IpAddress::v4(b));
        } else if (n->ai_family == AF_INET6) {
          auto* sa = reinterpret_cast<sockaddr_in6*>(n->ai_addr);
          std::array<uint8_t, 16> b;
          memcpy(b.data(), &sa->sin6_addr, 16);
          v6.push_back(decision::IpAddress::v6(b));
        }
        ttl = std::min(ttl, n->ai_ttl);
      }
    }
    for (auto* list : {&v4, &v6}) {
      for (auto& a : *list) {
        if (std::find(answer.addresses.begin(), answer.addresses.end(), a) == answer.addresses.end()) {
          answer.addresses.push_back(a);
        }
      }
    }
    std::chrono::seconds life;
    if (answer.addresses.empty()) {
      answer.error = status == ARES_SUCCESS ? "no addresses" : ares_strerror(status);
      life = options_.negative_ttl;
    } else {
      life = std::clamp(std::chrono::seconds(std::max(ttl, 0)), options_.min_ttl, options_.max_ttl);
    }
    answer.expires = Clock::now() + life;
    if (status != ARES_EDESTRUCTION && status != ARES_ECANCELLED) {
      std::unique_lock lock(cache_mutex_);
      cache_[name] = answer;
    }
    auto node = waiting_.extract(name);
    if (!node.empty()) {
      for (auto& cb : node.mapped()) cb(answer);
    }
  }

  DnsResolverOptions options_;
  ares_channel channel_ = nullptr;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> queries_{0};

  std::mutex queue_mutex_;
  std::deque<Request> requests_;
  // Resolver thread only.
  std::unordered_map<std::string, std::vector<Callback>> waiting_;

  mutable std::shared_mutex cache_mutex_;
  std::unordered_map<std::string, DnsAnswer> cache_;
};

}  // namespace

std::unique_ptr<DnsResolver> DnsResolver::create(const DnsResolverOptions& options, std::string* error) {
  auto r = std::make_unique<AresResolver>(options);
  if (!r->init(error)) return nullptr;
  return r;
}

}  // namespace sluice::proxy
