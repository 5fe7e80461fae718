// The liveness the watchdog reads (issue #10, bug 5): a loop blocked in a call to a server is
// marked as waiting on it, nested calls keep the outermost start, and leaving the wait is a turn.
#include <gtest/gtest.h>

#include <thread>

#include "common/progress.h"

namespace walfold {
namespace {

TEST(Progress, AServerCallMarksTheThreadsLoopAsWaiting) {
  Loop loop;
  {
    ServerWait outside(Server::MongoDB);  // no loop bound to this thread: nothing happens
    EXPECT_EQ(Loop::current(), nullptr);
  }
  {
    LoopThread bind(loop);
    EXPECT_EQ(Loop::current(), &loop);
    EXPECT_EQ(loop.waiting_on.load(), static_cast<int>(Server::None));
    const auto before = loop.tick.load();
    {
      ServerWait mongo(Server::MongoDB);
      EXPECT_EQ(loop.waiting_on.load(), static_cast<int>(Server::MongoDB));
      const auto since = loop.waiting_since.load();
      EXPECT_GE(since, before);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      {
        ServerWait redis(Server::Redis);  // e.g. settling keys while holding a MongoDB client
        EXPECT_EQ(loop.waiting_on.load(), static_cast<int>(Server::Redis));
        EXPECT_EQ(loop.waiting_since.load(), since) << "a nested call keeps the outer start";
      }
      EXPECT_EQ(loop.waiting_on.load(), static_cast<int>(Server::MongoDB));
      EXPECT_EQ(loop.tick.load(), before) << "only the outermost wait's end is a turn";
    }
    EXPECT_EQ(loop.waiting_on.load(), static_cast<int>(Server::None));
    EXPECT_GT(loop.tick.load(), before);
    EXPECT_FALSE(loop.finished.load());
  }
  EXPECT_EQ(Loop::current(), nullptr);
  EXPECT_TRUE(loop.finished.load());
}

TEST(Progress, TurnTouchesOnlyTheCallingThreadsLoop) {
  Loop mine, other;
  LoopThread bind(mine);
  std::thread t([&] {
    LoopThread b(other);
    other.tick = 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  t.join();
  mine.tick = 0;
  Loop::turn();
  EXPECT_GT(mine.tick.load(), 0);
  EXPECT_EQ(other.tick.load(), 0);
}

}  // namespace
}  // namespace walfold
