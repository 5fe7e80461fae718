// common/wakeup.h: the flag the reader's waits and the supervisor's poll end on.
#include <gtest/gtest.h>
#include <poll.h>

#include <thread>

#include "common/wakeup.h"

using walfold::Wakeup;

namespace {
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}
}  // namespace

TEST(Wakeup, StartsClearAndAWaitEndsUnset) {
  Wakeup w;
  EXPECT_FALSE(w.is_set());
  EXPECT_FALSE(readable(w.fd()));
  EXPECT_FALSE(w.wait_for(std::chrono::milliseconds(1)));
}

TEST(Wakeup, NotifyIsLevelTriggeredUntilCleared) {
  Wakeup w;
  w.notify();
  EXPECT_TRUE(w.is_set());
  EXPECT_TRUE(readable(w.fd()));
  EXPECT_TRUE(readable(w.fd())) << "polling does not consume it";
  EXPECT_TRUE(w.wait_for(std::chrono::milliseconds(0)));
  w.notify();  // twice: one clear() still clears it
  w.clear();
  EXPECT_FALSE(w.is_set());
  EXPECT_FALSE(readable(w.fd()));
  w.clear();  // clearing a clear one is harmless
  EXPECT_FALSE(w.is_set());
}

// A wait of an hour ends when another thread notifies (were it not woken, the test would hang
// until ctest's timeout fails it).
TEST(Wakeup, ANotifyFromAnotherThreadEndsALongWait) {
  Wakeup w;
  std::thread t([&] { w.notify(); });
  EXPECT_TRUE(w.wait_for(std::chrono::hours(1)));
  t.join();
}

// clear() skips its read when the flag is down (the reader clears once per WAL message), so the
// order of flag and fd matters: however notify() and clear() interleave, once they are done the
// fd is never readable with the flag down (that would wake a poll() forever while clear() does
// nothing), and a clear() after every notify() returned leaves neither a flag nor a readable fd.
TEST(Wakeup, RacingNotifyAndClearNeverLeaveTheFdAndTheFlagApart) {
  for (int round = 0; round < 200; ++round) {
    Wakeup w;
    std::thread notifier([&] {
      for (int i = 0; i < 50; ++i) w.notify();
    });
    for (int i = 0; i < 50; ++i) w.clear();
    notifier.join();
    EXPECT_FALSE(readable(w.fd()) && !w.is_set()) << "round " << round;
    w.clear();
    EXPECT_FALSE(w.is_set()) << "round " << round;
    EXPECT_FALSE(readable(w.fd())) << "round " << round;
    w.notify();
    EXPECT_TRUE(w.is_set() && readable(w.fd())) << "round " << round;
  }
}
