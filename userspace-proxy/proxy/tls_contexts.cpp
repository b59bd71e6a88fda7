#include "userspace-proxy/proxy/tls_contexts.h"

#include "core/config/file_fingerprint.h"
#include "userspace-proxy/tls/tls_settings.h"

namespace sluice::proxy {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + ",";
  return out;
}

}  // namespace

TlsContexts::TlsContexts(std::string mesh_identity_dir, std::chrono::milliseconds recheck)
    : mesh_dir_(std::move(mesh_identity_dir)), recheck_(recheck) {}

void TlsContexts::report(const std::vector<std::string>& warnings, const std::string& fingerprint) {
  if (!warn_) return;
  for (const std::string& w : warnings) {
    if (warned_.insert(fingerprint + "|" + w).second) warn_(w);
  }
}

uint64_t TlsContexts::builds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return builds_;
}

std::shared_ptr<const void> TlsContexts::lookup(const std::string& key, std::chrono::steady_clock::time_point now) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  Entry& e = it->second;
  if (now - e.checked < recheck_) return e.context;
  e.checked = now;
  if (config::file_fingerprint(e.files) == e.fingerprint) return e.context;
  entries_.erase(it);  // rotated: rebuild
  return nullptr;
}

std::shared_ptr<const tls::TlsServerContext> TlsContexts::server(const config::ServerTLSSettings& s,
                                                                 std::string* error) {
  tls::ServerTlsOptions o;
  if (!tls::server_tls_options(s, mesh_dir_, &o, error)) return nullptr;
  std::vector<std::string> files = o.mode == tls::ServerTlsMode::kIstioMutual
                                       ? tls::mesh_identity_files(mesh_dir_).paths()
                                       : o.files.paths();
  std::string key = "S|" + std::to_string(static_cast<int>(o.mode)) + "|" + join(files) + "|" +
                    join(o.subject_alt_names) + "|" + std::to_string(static_cast<int>(o.min_version)) + "|" +
                    std::to_string(static_cast<int>(o.max_version)) + "|" + join(o.cipher_suites);
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto hit = lookup(key, now)) return std::static_pointer_cast<const tls::TlsServerContext>(hit);
  std::string fp = config::file_fingerprint(files);
  auto ctx = tls::TlsServerContext::create(o, error);
  if (!ctx) return nullptr;
  report(ctx->warnings(), fp);
  ++builds_;
  entries_[key] = Entry{ctx, files, std::move(fp), now};
  return ctx;
}

std::shared_ptr<const tls::TlsClientContext> TlsContexts::client(const config::ClientTLSSettings& s,
                                                                 const std::vector<std::string>& expected_sans,
                                                                 std::string* error) {
  tls::ClientTlsOptions o;
  if (!tls::client_tls_options(s, mesh_dir_, &o, error)) return nullptr;
  if (o.subject_alt_names.empty()) o.subject_alt_names = expected_sans;
  std::vector<std::string> files = o.mode == tls::ClientTlsMode::kIstioMutual
                                       ? tls::mesh_identity_files(mesh_dir_).paths()
                                       : o.files.paths();
  std::string key = "C|" + std::to_string(static_cast<int>(o.mode)) + "|" + join(files) + "|" +
                    join(o.subject_alt_names) + "|" + o.sni + "|" + (o.insecure_skip_verify ? "1" : "0");
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto hit = lookup(key, now)) return std::static_pointer_cast<const tls::TlsClientContext>(hit);
  std::string fp = config::file_fingerprint(files);
  auto ctx = tls::TlsClientContext::create(o, error);
  if (!ctx) return nullptr;
  report(ctx->warnings(), fp);
  ++builds_;
  entries_[key] = Entry{ctx, files, std::move(fp), now};
  return ctx;
}

}  // namespace sluice::proxy
