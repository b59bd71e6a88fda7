// Where access log lines go: a file opened O_APPEND (or /dev/stdout). Each
// line is one write(2) — atomic with O_APPEND, so workers need no lock and a
// line is visible at once. Writes to a regular file do not wait for the
// disk; a slow pipe consumer could stall a worker (a per-worker ring buffer
// with a writer thread is the next step if that matters).
#pragma once

#include <memory>
#include <string>

#include "userspace-proxy/proxy/access_log.h"

namespace sluice::proxy {

class AccessLogSink {
 public:
  // nullptr and *error set when the file cannot be opened.
  static std::unique_ptr<AccessLogSink> open(const std::string& path, bool json, std::string* error);
  // An in-memory sink for tests: lines are appended to `lines()`.
  static std::unique_ptr<AccessLogSink> memory(bool json = false);
  ~AccessLogSink();

  void write(const AccessLogEntry& entry);
  std::string lines() const;

 private:
  AccessLogSink() = default;
  int fd_ = -1;
  bool json_ = false;
  bool memory_ = false;
  struct Memory;
  std::unique_ptr<Memory> mem_;
};

}  // namespace sluice::proxy
