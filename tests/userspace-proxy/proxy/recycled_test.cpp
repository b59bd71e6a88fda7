#include "userspace-proxy/proxy/recycled.h"

#include <gtest/gtest.h>

#include <thread>

namespace sluice::proxy {
namespace {

struct Big : Recycled<Big, 2> {
  char bytes[1500] = {};
  int value = 7;
};

// A derived class of another size goes to the global allocator, not into
// Big's blocks.
struct Bigger : Big {
  char more[100] = {};
};

TEST(Recycled, FreedStorageIsHandedOutAgainUpToTheLimit) {
  if (kRecycledKeep == 0) GTEST_SKIP() << "built with AddressSanitizer: nothing is kept, by design";
  auto* a = new Big;
  void* where = a;
  delete a;
  auto* b = new Big;
  EXPECT_EQ(static_cast<void*>(b), where);  // the same block again
  EXPECT_EQ(b->value, 7);                   // and constructed as usual
  // Three freed, two kept (kKeep = 2): the third goes back to malloc.
  auto* c = new Big;
  auto* d = new Big;
  void* kept[2] = {b, c};  // freed first
  delete b;
  delete c;
  delete d;
  auto* e = new Big;
  auto* f = new Big;
  EXPECT_TRUE(static_cast<void*>(e) == kept[0] || static_cast<void*>(e) == kept[1]);
  EXPECT_TRUE(static_cast<void*>(f) == kept[0] || static_cast<void*>(f) == kept[1]);
  delete e;
  delete f;
}

TEST(Recycled, OtherSizesAndOtherThreadsAreFine) {
  if (kRecycledKeep == 0) GTEST_SKIP() << "built with AddressSanitizer: nothing is kept, by design";
  delete new Bigger;  // not kept: another size
  auto* a = new Big;
  void* where = a;
  delete a;
  // Another thread has its own blocks: it does not get this one.
  void* other = nullptr;
  std::thread([&other] {
    auto* t = new Big;
    other = t;
    delete t;
  }).join();
  EXPECT_NE(other, where);
  auto* b = new Big;
  EXPECT_EQ(static_cast<void*>(b), where);
  delete b;
}

}  // namespace
}  // namespace sluice::proxy
