// A file descriptor closed when it goes out of scope (sluicectl's pin,
// map and socket handles), and strerror for an errno that may be negated.
#pragma once

#include <unistd.h>

#include <cstring>
#include <string>

namespace sluice::ctl {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

inline std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

}  // namespace sluice::ctl
