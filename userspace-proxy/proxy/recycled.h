// Per-thread reuse of the storage of large per-connection objects.
//
// glibc's malloc serves chunks above its tcache limit (1032 bytes) from its
// bins, and a request in the large-bin range first consolidates the fast
// bins (malloc_consolidate). Objects made and freed once per connection and
// bigger than that (ProxyConnection ~1.5 KiB, HttpRequestGuard ~1.4 KiB)
// paid for it on every connection: malloc/free were ~6 % of the proxies' CPU
// at one new connection per request (bench/mtls.sh with PERF=DIR).
//
// A class deriving from Recycled<T> gets an operator new/delete that keep up
// to kKeep freed blocks of exactly sizeof(T) per thread and hand them out
// again; every other size goes to the global allocator. The workers make and
// free these objects on their own thread; a block freed on another thread
// simply joins that thread's list. Only storage is reused: every object is
// constructed and destroyed as usual. Under AddressSanitizer (the fuzz
// build) nothing is kept, so a use after free is still caught.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace sluice::proxy {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr size_t kRecycledKeep = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr size_t kRecycledKeep = 0;
#else
inline constexpr size_t kRecycledKeep = 512;
#endif
#else
inline constexpr size_t kRecycledKeep = 512;
#endif

template <typename T, size_t kKeep = kRecycledKeep>
class Recycled {
 public:
  static void* operator new(size_t size) {
    Blocks& b = blocks();
    if (size == sizeof(T) && !b.free.empty()) {
      void* p = b.free.back();
      b.free.pop_back();
      return p;
    }
    return ::operator new(size);
  }
  static void operator delete(void* p, size_t size) noexcept {
    Blocks& b = blocks();
    // The capacity is reserved up front: push_back never allocates here.
    if (size == sizeof(T) && b.free.size() < kKeep && b.alive) {
      b.free.push_back(p);
      return;
    }
    ::operator delete(p);
  }

 private:
  struct Blocks {
    std::vector<void*> free;
    bool alive = true;
    Blocks() { free.reserve(kKeep); }
    ~Blocks() {
      alive = false;
      for (void* p : free) ::operator delete(p);
      free.clear();
    }
  };
  static Blocks& blocks() {
    thread_local Blocks b;
    return b;
  }
};

}  // namespace sluice::proxy
