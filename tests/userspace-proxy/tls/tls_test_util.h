// Test helpers for the TLS library: certificates made by scripts/mesh-certs
// in a temporary directory, and a fake engine that chains StreamFilters
// through in-memory links (what the engine does with sockets), optionally
// delivering the bytes between them one at a time.
#pragma once

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "userspace-proxy/engine/stream_filter.h"
#include "userspace-proxy/tls/tls_filter.h"

namespace sluice::tls::testing {

using engine::Direction;
using engine::FilterOutput;
using engine::FilterStatus;

inline constexpr char kSleepId[] = "spiffe://cluster.local/ns/default/sa/sleep";
inline constexpr char kGatewayId[] = "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account";

inline std::string source_root() {
  const char* env = std::getenv("SLUICE_SOURCE_ROOT");
  return env != nullptr ? env : SLUICE_SOURCE_ROOT;
}

// The certificates of every test in the binary, made once:
//   mesh:  sleep (kSleepId), gateway (kGatewayId, DNS gateway.local)
//   rogue: a workload claiming kSleepId under an unrelated mesh root
//   cnn:   edition.cnn.com + *.cnn.com from the "external" CA
class Certs {
 public:
  static Certs& get() {
    static Certs certs;
    return certs;
  }
  std::string dir() const { return dir_; }
  std::string path(const std::string& rel) const { return dir_ + "/" + rel; }
  std::string other_dir() const { return dir_ + "/other"; }
  // Runs scripts/mesh-certs with `args`; returns its exit status.
  int run(const std::string& args) const {
    const std::string cmd = "'" + source_root() + "/scripts/mesh-certs' " + args + " >/dev/null 2>&1";
    return std::system(cmd.c_str());
  }

 private:
  Certs() {
    char tmpl[] = "/tmp/sluice-tls-test.XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (d == nullptr) std::abort();
    dir_ = d;
    const std::string out = "--dir '" + dir_ + "' ";
    const std::string other = "--dir '" + other_dir() + "' ";
    ok_ = run(out + "workload sleep --ns default --sa sleep") == 0 &&
          run(out +
              "workload gateway --ns istio-system --sa istio-egressgateway-service-account --dns gateway.local") == 0 &&
          run(out + "server cnn --dns edition.cnn.com --dns '*.cnn.com'") == 0 &&
          run(other + "workload rogue --ns default --sa sleep") == 0;
    if (!ok_) {
      std::fprintf(stderr, "scripts/mesh-certs failed under %s\n", dir_.c_str());
      std::abort();
    }
  }
  ~Certs() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
  bool ok_ = false;
};

inline std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The engine's FilterOutput over one chunk: forward() copies the next bytes
// of the chunk toward where the chunk was heading, inject() to either side.
class RecordingOutput final : public FilterOutput {
 public:
  RecordingOutput(Direction dir, std::span<const uint8_t> chunk, std::string* to_upstream, std::string* to_downstream)
      : dir_(dir), chunk_(chunk), up_(to_upstream), down_(to_downstream) {}
  int forward(size_t n) override {
    if (n > chunk_.size() - consumed_) return -EINVAL;
    target(dir_)->append(reinterpret_cast<const char*>(chunk_.data() + consumed_), n);
    consumed_ += n;
    ++forwards;
    return 0;
  }
  void skip(size_t n) override { consumed_ += std::min(n, chunk_.size() - consumed_); }
  int inject(Direction dir, std::span<const uint8_t> b) override {
    if (fail_injects) return -ENOBUFS;
    target(dir)->append(reinterpret_cast<const char*>(b.data()), b.size());
    ++injects;
    return 0;
  }
  int forwards = 0;
  int injects = 0;
  bool fail_injects = false;

 private:
  std::string* target(Direction d) { return d == Direction::kDownstreamToUpstream ? up_ : down_; }
  Direction dir_;
  std::span<const uint8_t> chunk_;
  size_t consumed_ = 0;
  std::string* up_;
  std::string* down_;
};

// filters[0] is nearest the client application, filters.back() nearest the
// backend. Link i joins filters[i] and filters[i+1]; bytes on a link that is
// not yet connected are "held" (the engine's pending bytes before the
// connect verdict) until connect(i) hands them to filters[i]'s on_start.
class FilterChain {
 public:
  explicit FilterChain(std::vector<engine::StreamFilter*> filters)
      : f_(std::move(filters)), links_(f_.size() - 1), status_(f_.size(), FilterStatus::kContinue) {}

  size_t fragment = 0;  // deliver at most this many bytes per on_data (0: all)

  // The client application writes / half-closes.
  void client_send(const std::string& data) {
    call(0, Direction::kDownstreamToUpstream, data);
    pump();
  }
  void client_fin() {
    end(0, Direction::kDownstreamToUpstream);
    pump();
  }
  // The backend writes / half-closes.
  void backend_send(const std::string& data) {
    call(f_.size() - 1, Direction::kUpstreamToDownstream, data);
    pump();
  }
  void backend_fin() {
    end(f_.size() - 1, Direction::kUpstreamToDownstream);
    pump();
  }

  // Bytes the engine read from the client and holds for the handler before
  // any filter is installed (the sniffed bytes).
  void sniffed(const std::string& data) { (f_.size() > 1 ? links_[0].up : backend_rx) += data; }

  // The connect verdict for filters[i]: what it sent upstream so far is
  // replaced by its on_start output (when it takes held bytes); the link (or
  // the backend, for the last filter) starts receiving.
  void connect(size_t i) {
    std::string& q = i + 1 < f_.size() ? links_[i].up : backend_rx;
    if (f_[i]->takes_held_bytes()) {
      const std::string held = std::move(q);
      q.clear();
      invoke(i, Direction::kDownstreamToUpstream, held,
             [&](FilterOutput& out) { return f_[i]->on_start(bytes(held), out); });
    }
    if (i + 1 < f_.size())
      links_[i].connected = true;
    else
      backend_connected = true;
    // The engine tells the filter its new connection is up, before anything
    // is read from it.
    invoke(i, Direction::kUpstreamToDownstream, {}, [&](FilterOutput& out) {
      f_[i]->on_upstream_ready(out);
      return FilterStatus::kContinue;
    });
    pump();
  }
  // The worker drains: filters[i] hears on_drain; returns what it output
  // toward its downstream then.
  std::string drain(size_t i) {
    std::string to_down;
    invoke(i, Direction::kUpstreamToDownstream, {}, [&](FilterOutput& out) { return f_[i]->on_drain(out); },
           &to_down);
    pump();
    return to_down;
  }
  void connect_all() {
    for (size_t i = f_.size(); i-- > 0;) {
      if (i + 1 < f_.size() ? !links_[i].connected : !backend_connected) connect(i);
    }
  }

  FilterStatus status(size_t i) const { return status_[i]; }
  bool closed(size_t i) const { return status_[i] != FilterStatus::kContinue; }
  // Bytes the filters output that the link has not carried (held or queued).
  const std::string& held(size_t i) const { return i + 1 < f_.size() ? links_[i].up : backend_rx; }

  std::string client_rx;  // what the client application received
  bool client_got_fin = false;
  std::string backend_rx;  // what the backend received (the handler's pending bytes before connect)
  bool backend_got_fin = false;
  // Everything filters[0] sent toward filters[1] (the sidecar -> gateway
  // link's bytes, TLS records when it originates), in order.
  std::string first_link_up;
  bool backend_connected = false;
  size_t on_data_calls = 0;

 private:
  struct Link {
    std::string up, down;  // bytes on their way toward filters[i+1] / filters[i]
    bool up_fin = false, down_fin = false, up_fin_done = false, down_fin_done = false;
    bool connected = false;
  };

  template <typename Fn>
  void invoke(size_t i, Direction dir, const std::string& chunk, Fn fn, std::string* down_copy = nullptr) {
    std::string to_up, to_down;
    RecordingOutput out(dir, bytes(chunk), &to_up, &to_down);
    const FilterStatus st = fn(out);
    if (down_copy) *down_copy = to_down;
    deliver_output(i, to_up, to_down);
    if (st != FilterStatus::kContinue && status_[i] == FilterStatus::kContinue) {
      status_[i] = st;
      // The engine flushes what was output, then ends both sides.
      fin_toward_upstream(i);
      fin_toward_downstream(i);
    }
  }
  void call(size_t i, Direction dir, const std::string& chunk) {
    if (closed(i)) return;  // the engine stopped reading
    ++on_data_calls;
    invoke(i, dir, chunk, [&](FilterOutput& out) { return f_[i]->on_data(dir, bytes(chunk), out); });
  }
  void end(size_t i, Direction dir) {
    if (closed(i)) return;
    invoke(i, dir, {}, [&](FilterOutput& out) { return f_[i]->on_end_stream(dir, out); });
    if (dir == Direction::kDownstreamToUpstream)
      fin_toward_upstream(i);
    else
      fin_toward_downstream(i);
  }
  void deliver_output(size_t i, const std::string& to_up, const std::string& to_down) {
    if (i == 0 && f_.size() > 1) first_link_up += to_up;
    if (i + 1 < f_.size())
      links_[i].up += to_up;
    else
      backend_rx += to_up;
    if (i > 0)
      links_[i - 1].down += to_down;
    else
      client_rx += to_down;
  }
  void fin_toward_upstream(size_t i) {
    if (i + 1 < f_.size())
      links_[i].up_fin = true;
    else
      backend_got_fin = true;
  }
  void fin_toward_downstream(size_t i) {
    if (i > 0)
      links_[i - 1].down_fin = true;
    else
      client_got_fin = true;
  }
  // Moves bytes (then FINs) across connected links until nothing moves.
  void pump() {
    for (bool progress = true; progress;) {
      progress = false;
      for (size_t i = 0; i + 1 < f_.size(); ++i) {
        Link& l = links_[i];
        if (!l.connected) continue;
        if (!l.up.empty()) {
          const size_t n = fragment ? std::min(fragment, l.up.size()) : l.up.size();
          const std::string piece = l.up.substr(0, n);
          l.up.erase(0, n);
          call(i + 1, Direction::kDownstreamToUpstream, piece);
          progress = true;
        } else if (l.up_fin && !l.up_fin_done) {
          l.up_fin_done = true;
          end(i + 1, Direction::kDownstreamToUpstream);
          progress = true;
        }
        if (!l.down.empty()) {
          const size_t n = fragment ? std::min(fragment, l.down.size()) : l.down.size();
          const std::string piece = l.down.substr(0, n);
          l.down.erase(0, n);
          call(i, Direction::kUpstreamToDownstream, piece);
          progress = true;
        } else if (l.down_fin && !l.down_fin_done) {
          l.down_fin_done = true;
          end(i, Direction::kUpstreamToDownstream);
          progress = true;
        }
      }
    }
  }

  std::vector<engine::StreamFilter*> f_;
  std::vector<Link> links_;
  std::vector<FilterStatus> status_;
};

// A plaintext filter that records what it sees and passes it on, optionally
// tagging each downstream->upstream chunk.
class RecordingInner final : public engine::StreamFilter {
 public:
  std::string seen_up, seen_down, seen_held;
  int end_up = 0, end_down = 0;
  std::string tag;  // injected before each downstream->upstream chunk
  bool take_held = false;
  // on_upstream_ready calls, and whether `tls` (the filter around this one)
  // had its upstream handshake done by the first.
  int ready = 0;
  const tls::TlsFilter* tls = nullptr;
  bool ready_after_handshake = false;
  // on_drain calls and what they answer.
  int drains = 0;
  FilterStatus drain_status = FilterStatus::kContinue;

  FilterStatus on_drain(FilterOutput&) override {
    ++drains;
    return drain_status;
  }
  void on_upstream_ready(FilterOutput&) override {
    if (ready++ == 0) ready_after_handshake = tls != nullptr && tls->upstream_result() != nullptr;
  }
  FilterStatus on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) override {
    std::string& seen = dir == Direction::kDownstreamToUpstream ? seen_up : seen_down;
    seen.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    if (dir == Direction::kDownstreamToUpstream && !tag.empty() && out.inject(dir, bytes(tag)) != 0) {
      return FilterStatus::kReset;
    }
    return out.forward(chunk.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  FilterStatus on_end_stream(Direction dir, FilterOutput&) override {
    ++(dir == Direction::kDownstreamToUpstream ? end_up : end_down);
    return FilterStatus::kContinue;
  }
  bool takes_held_bytes() const override { return take_held; }
  FilterStatus on_start(std::span<const uint8_t> held, FilterOutput& out) override {
    seen_held.append(reinterpret_cast<const char*>(held.data()), held.size());
    return out.forward(held.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
};

// A CRL signed by the CA in DIR/`ca`, valid from now + `from_s` to now +
// `until_s` (seconds), written to DIR/`name`; returns its path.
inline std::string write_crl(const std::string& ca, long from_s, long until_s, const std::string& name) {
  Certs& certs = Certs::get();
  auto read = [](const std::string& path) {
    BIO* b = BIO_new_file(path.c_str(), "r");
    EXPECT_NE(b, nullptr) << path;
    return b;
  };
  BIO* cb = read(certs.path(ca + "/root-cert.pem"));
  X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  BIO_free(cb);
  BIO* kb = read(certs.path(ca + "/root-key.pem"));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  EXPECT_TRUE(cert && key);
  if (cert == nullptr || key == nullptr) {
    X509_free(cert);
    EVP_PKEY_free(key);
    return "";
  }
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(cert));
  ASN1_TIME* from = X509_time_adj_ex(nullptr, 0, from_s, nullptr);
  ASN1_TIME* until = X509_time_adj_ex(nullptr, 0, until_s, nullptr);
  X509_CRL_set1_lastUpdate(crl, from);
  X509_CRL_set1_nextUpdate(crl, until);
  EXPECT_GT(X509_CRL_sign(crl, key, EVP_sha256()), 0);
  const std::string path = certs.dir() + "/" + name;
  BIO* out = BIO_new_file(path.c_str(), "w");
  PEM_write_bio_X509_CRL(out, crl);
  BIO_free(out);
  ASN1_TIME_free(from);
  ASN1_TIME_free(until);
  X509_CRL_free(crl);
  EVP_PKEY_free(key);
  X509_free(cert);
  return path;
}

}  // namespace sluice::tls::testing
