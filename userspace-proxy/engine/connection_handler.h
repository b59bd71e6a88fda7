#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "userspace-proxy/engine/connection_stats.h"
#include "userspace-proxy/engine/socket_address.h"
#include "userspace-proxy/engine/verdict.h"

namespace sluice::engine {

// A thread-safe, copyable handle to one connection: wake() asks the owning
// worker to call ConnectionHandler::on_wake for it. Harmless if the
// connection is gone, not deferred (yet or any more), or its slot now holds
// another connection (ignored: wakes name connections by their unique id),
// and after the worker or the whole Engine is gone (no-op). wake() takes a
// mutex and, for the first wake queued since the worker last looked, writes
// an eventfd; it never blocks on the worker. Made only by the engine
// (Connection::waker()).
class Waker {
 public:
  Waker() = default;
  Waker(std::shared_ptr<void> mailbox, uint64_t connection_id)
      : mailbox_(std::move(mailbox)), id_(connection_id) {}
  void wake() const;  // engine/worker.cpp
  explicit operator bool() const { return mailbox_ != nullptr; }

 private:
  std::shared_ptr<void> mailbox_;
  uint64_t id_ = 0;
};

// The handler's view of one connection. Valid from on_accept until on_close
// returns; only touched from the worker thread that owns it.
class Connection {
 public:
  virtual uint64_t id() const = 0;
  virtual uint32_t worker() const = 0;
  // The accepted socket: for getsockopt(SO_ORIGINAL_DST) and the like. Do not
  // read, write or close it; the ring owns its I/O.
  virtual int downstream_fd() const = 0;
  // One word of handler state (an index or a pointer the handler owns and
  // frees in on_close).
  virtual uint64_t context() const = 0;
  virtual void set_context(uint64_t value) = 0;
  // For Verdict::defer(): hand this to the thread that will finish the work.
  virtual Waker waker() = 0;
  // Hands this worker a connected, non-blocking stream socket the handler
  // made (one end of a socketpair carrying a request to mirror): once the
  // current callback has returned, the worker takes it like an accepted
  // socket and calls on_accept with AcceptInfo::spawn_tag() == `tag`
  // (non-zero; accepted sockets have 0). The worker owns `fd` from this
  // call on; while draining, or with no room for another connection, it
  // closes it and calls on_spawn_dropped(tag) instead.
  virtual void spawn(int fd, uint64_t tag) = 0;
  // The worker is draining (the proxy stops): a local answer should carry
  // "connection: close" (the connection ends after it).
  virtual bool draining() const = 0;
  // The worker's pool holds an idle upstream under `key` (Verdict::with_pool):
  // a connect verdict with that key would most likely be served at once.
  virtual bool pool_has_idle(const std::string& key) const { (void)key; return false; }

 protected:
  ~Connection() = default;
};

// What is known at accept time. Addresses are resolved on first use (one
// syscall each), so a handler that only wants SO_ORIGINAL_DST pays nothing.
class AcceptInfo {
 public:
  explicit AcceptInfo(int fd, uint64_t spawn_tag = 0) : fd_(fd), spawn_tag_(spawn_tag) {}
  int fd() const { return fd_; }
  // Connection::spawn's tag for a socket the handler made; 0 when accepted.
  uint64_t spawn_tag() const { return spawn_tag_; }
  const SocketAddress& local() const {
    if (!local_.valid()) SocketAddress::local_of(fd_, &local_);
    return local_;
  }
  const SocketAddress& peer() const {
    if (!peer_.valid()) SocketAddress::peer_of(fd_, &peer_);
    return peer_;
  }

 private:
  int fd_;
  uint64_t spawn_tag_ = 0;
  mutable SocketAddress local_;
  mutable SocketAddress peer_;
};

// Decides what happens to each accepted connection. One instance per worker
// (made by the factory in EngineConfig), so implementations need no locking;
// callbacks run on the worker thread and must not block.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;

  // Right after accept. Return need_more() to wait for the first bytes
  // (sniffing), connect() for server-first/opaque protocols, close() to deny.
  virtual Verdict on_accept(Connection& conn, const AcceptInfo& info) = 0;

  // New downstream bytes arrived while the previous verdict was need_more().
  // `pending` is everything read so far (contiguous, at most
  // EngineConfig::max_sniff_bytes).
  virtual Verdict on_downstream_data(Connection& conn, std::span<const uint8_t> pending) = 0;

  // The detection timeout of the last need_more() passed without a decision
  // (e.g. a server-first protocol). The default gives up.
  virtual Verdict on_detection_timeout(Connection& /*conn*/, std::span<const uint8_t> /*pending*/) {
    return Verdict::close();
  }

  // Downstream sent FIN before any decision was made. The default closes.
  virtual Verdict on_downstream_eof(Connection& /*conn*/, std::span<const uint8_t> /*pending*/) {
    return Verdict::close();
  }

  // After Verdict::defer(): Waker::wake() was called. `pending` as in
  // on_downstream_data. The default closes.
  virtual Verdict on_wake(Connection& /*conn*/, std::span<const uint8_t> /*pending*/) {
    return Verdict::close();
  }

  // A filter answered FilterStatus::kNewUpstream and the old upstream is
  // gone (parked or closed): the connection is undecided again, `pending`
  // holding what the filter kept (a complete HTTP request head first). The
  // verdict is applied as one from on_downstream_data; later calls
  // (on_downstream_data, on_wake, on_detection_timeout, on_downstream_eof)
  // follow as for a new connection. The default closes.
  virtual Verdict on_new_upstream(Connection& /*conn*/, std::span<const uint8_t> /*pending*/) {
    return Verdict::close();
  }

  // A socket given to Connection::spawn was closed unseen (draining, or no
  // room for another connection): whatever the handler keeps for `tag`
  // can go.
  virtual void on_spawn_dropped(uint64_t /*tag*/) {}

  // An attempt at the upstream connection failed (refused, unreachable,
  // timed out), `upstream` the address tried: the handler hears every one
  // (outlier detection counts each host's failures). When the verdict listed
  // another address (`another_left`) the answer is the wait before it (zero:
  // at once, the default) or kStopConnecting (the failure stands: the filter's
  // on_connect_failed, then the close); otherwise it is not read.
  static constexpr std::chrono::milliseconds kStopConnecting{-1};
  virtual std::chrono::milliseconds on_connect_attempt_failed(Connection& /*conn*/, const SocketAddress& /*upstream*/,
                                                              bool /*timed_out*/, bool /*another_left*/) {
    return std::chrono::milliseconds(0);
  }

  // The upstream connect succeeded (for logging/metrics; optional).
  virtual void on_upstream_connected(Connection& /*conn*/, const SocketAddress& /*upstream*/) {}

  // Last call for this connection: the sockets are closed. Free context here.
  virtual void on_close(Connection& conn, const ConnectionStats& stats) = 0;
};

using ConnectionHandlerPtr = std::unique_ptr<ConnectionHandler>;

}  // namespace sluice::engine
