#include "userspace-proxy/proxy/access_log_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace sluice::proxy {

struct AccessLogSink::Memory {
  mutable std::mutex mu;
  std::string text;
};

std::unique_ptr<AccessLogSink> AccessLogSink::open(const std::string& path, bool json, std::string* error) {
  std::unique_ptr<AccessLogSink> s(new AccessLogSink());
  s->json_ = json;
  if (path == "/dev/stdout") {
    s->fd_ = dup(STDOUT_FILENO);
  } else if (path == "/dev/stderr") {
    s->fd_ = dup(STDERR_FILENO);
  } else {
    s->fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  }
  if (s->fd_ < 0) {
    *error = "cannot open access log " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  return s;
}

std::unique_ptr<AccessLogSink> AccessLogSink::memory(bool json) {
  std::unique_ptr<AccessLogSink> s(new AccessLogSink());
  s->json_ = json;
  s->memory_ = true;
  s->mem_ = std::make_unique<Memory>();
  return s;
}

AccessLogSink::~AccessLogSink() {
  if (fd_ >= 0) close(fd_);
}

void AccessLogSink::write(const AccessLogEntry& entry) {
  std::string line = json_ ? format_json(entry) : format_text(entry);
  if (memory_) {
    std::lock_guard lock(mem_->mu);
    mem_->text += line;
    return;
  }
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk must not stop the data plane
    off += static_cast<size_t>(n);
  }
}

std::string AccessLogSink::lines() const {
  if (!memory_) return {};
  std::lock_guard lock(mem_->mu);
  return mem_->text;
}

}  // namespace sluice::proxy
