// TLS contexts for the proxy's connections, built from the config's
// Gateway server `tls` (termination) and DestinationRule `tls`
// (origination) settings and the mesh identity directory (--certs).
//
// One immutable context per distinct setting, shared by every worker;
// connections keep the context they started with. Certificate files are
// re-fingerprinted at most once per `recheck` interval, and a changed file
// (rotation: rewritten, replaced, or a Kubernetes secret volume's symlink
// swap) builds a new context for new connections: rotation never drops a
// connection. A context that cannot be built is an error for the connection
// asking (logged with the file and OpenSSL's reason), never for the others.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/config/model.h"
#include "userspace-proxy/tls/tls_context.h"

namespace sluice::proxy {

class TlsContexts {
 public:
  explicit TlsContexts(std::string mesh_identity_dir,
                       std::chrono::milliseconds recheck = std::chrono::milliseconds(1000));

  // Termination for a Gateway server (SIMPLE, MUTUAL, ISTIO_MUTUAL,
  // OPTIONAL_MUTUAL). Null with *error on failure.
  std::shared_ptr<const tls::TlsServerContext> server(const config::ServerTLSSettings& settings,
                                                      std::string* error);
  // Origination per a DestinationRule's tls (SIMPLE, MUTUAL, ISTIO_MUTUAL;
  // DISABLE has none). `expected_sans`: identities the server must present
  // when the settings name none (ISTIO_MUTUAL: the destination's SPIFFE id).
  std::shared_ptr<const tls::TlsClientContext> client(const config::ClientTLSSettings& settings,
                                                      const std::vector<std::string>& expected_sans,
                                                      std::string* error);

  const std::string& mesh_identity_dir() const { return mesh_dir_; }
  // Contexts built so far (rebuilds included), for logs and tests.
  uint64_t builds() const;
  // Where a built context's warnings go (tls::TlsServerContext::warnings: a
  // caCrl outside its validity), once per warning and set of file versions
  // (not again for each destination that shares the file); set before use.
  void set_warning_log(std::function<void(const std::string&)> log) { warn_ = std::move(log); }

 private:
  void report(const std::vector<std::string>& warnings, const std::string& fingerprint);
  struct Entry {
    std::shared_ptr<const void> context;
    std::vector<std::string> files;
    std::string fingerprint;
    std::chrono::steady_clock::time_point checked;
  };
  // Returns the cached context when its files have not changed.
  std::shared_ptr<const void> lookup(const std::string& key, std::chrono::steady_clock::time_point now);

  std::string mesh_dir_;
  std::chrono::milliseconds recheck_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  uint64_t builds_ = 0;
  std::function<void(const std::string&)> warn_;
  std::unordered_set<std::string> warned_;  // fingerprint + warning, logged once
};

}  // namespace sluice::proxy
