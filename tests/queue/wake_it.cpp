// The idle workers' wake-up (queue/wake.h) against the harness's real Redis: what wakes a
// waiting worker, that a wake-up sent before the worker waits is not missed, that every idle
// worker is woken, and that a lost wake-up only makes the wait end at its timeout. Behaviour
// only: no test measures how long anything took.
#include "queue/wake.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "queue/job_queue.h"
#include "queue/redis.h"
#include "tests/harness/servers.h"

namespace walfold::queue {
namespace {

using namespace std::chrono_literals;
using Result = WakeWait::Result;

}  // namespace

// Failures name the result.
std::ostream& operator<<(std::ostream& os, WakeWait::Result r) {
  return os << (r == WakeWait::Result::Woken ? "Woken" : "TimedOut");
}

namespace {

using test::redis_config;

class WakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = queue_prefix(test::unique_name("wfw"), "walfold");
    reader_ = std::make_unique<Redis>(redis_config());
    worker_ = std::make_unique<Redis>(redis_config());
  }
  // A waiter that has learnt the stream's newest entry (its first wait does only that).
  WakeWait learnt(Redis& redis) {
    WakeWait w(prefix_);
    EXPECT_EQ(w.wait(redis, 10ms), Result::Woken) << "the first wait claims once more";
    return w;
  }
  long long stream_length() {
    auto r = reader_->command({"XLEN", wake_key(prefix_)});
    return r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  }

  std::string prefix_;
  std::unique_ptr<Redis> reader_, worker_;
};

TEST_F(WakeTest, KeyIsInTheQueuesHashSlot) {
  EXPECT_EQ(wake_key("walfold:{slot1}"), "walfold:{slot1}:wake");
}

TEST_F(WakeTest, NoWakeUpMeansTheWaitTimesOut) {
  auto w = learnt(*worker_);
  EXPECT_EQ(w.wait(*worker_, 20ms), Result::TimedOut);
  EXPECT_EQ(w.wait(*worker_, 20ms), Result::TimedOut);
}

TEST_F(WakeTest, AWakeUpSentBeforeTheWaitIsNotMissed) {
  // The worker claimed nothing; the reader enqueues and wakes before the worker waits.
  auto w = learnt(*worker_);
  wake_workers(*reader_, prefix_);
  EXPECT_EQ(w.wait(*worker_, 10s), Result::Woken);
  // Seen: the next wait does not return for it again.
  EXPECT_EQ(w.wait(*worker_, 20ms), Result::TimedOut);
}

TEST_F(WakeTest, AWakeUpSentBeforeTheFirstWaitIsNotMissed) {
  // Whatever was enqueued before a worker's first wait, it claims once more after it.
  wake_workers(*reader_, prefix_);
  WakeWait w(prefix_);
  EXPECT_EQ(w.wait(*worker_, 10s), Result::Woken);
  EXPECT_EQ(w.wait(*worker_, 20ms), Result::TimedOut);
}

TEST_F(WakeTest, ABlockedWorkerIsWokenFromTheReadersConnection) {
  auto w = learnt(*worker_);
  auto waited = std::async(std::launch::async, [&] { return w.wait(*worker_, 10s); });
  // Whether the worker blocks before or after this, it must come back woken, not timed out.
  wake_workers(*reader_, prefix_);
  EXPECT_EQ(waited.get(), Result::Woken);
}

TEST_F(WakeTest, EveryIdleWorkerIsWoken) {
  Redis second(redis_config());
  auto a = learnt(*worker_);
  auto b = learnt(second);
  wake_workers(*reader_, prefix_);
  EXPECT_EQ(a.wait(*worker_, 10s), Result::Woken);
  EXPECT_EQ(b.wait(second, 10s), Result::Woken);
}

TEST_F(WakeTest, WakeUpsWhileBusyWakeOnceAndTheStreamKeepsOneEntry) {
  auto w = learnt(*worker_);
  for (int i = 0; i < 50; ++i) wake_workers(*reader_, prefix_);
  EXPECT_EQ(stream_length(), 1);
  EXPECT_EQ(w.wait(*worker_, 10s), Result::Woken);
  EXPECT_EQ(w.wait(*worker_, 20ms), Result::TimedOut);
}

TEST_F(WakeTest, ALostWakeUpOnlyCostsTheTimeoutAndLaterOnesWork) {
  auto w = learnt(*worker_);
  wake_workers(*reader_, prefix_);
  // Redis lost the stream (restart without persistence, FLUSHALL) before the worker looked.
  reader_->command({"DEL", wake_key(prefix_)});
  EXPECT_EQ(w.wait(*worker_, 20ms), Result::TimedOut);
  wake_workers(*reader_, prefix_);
  EXPECT_EQ(w.wait(*worker_, 10s), Result::Woken);
}

TEST_F(WakeTest, AWakeUpThatCannotBeSentDoesNotThrow) {
  // The key holds another type: XADD is refused (WRONGTYPE), the reader goes on.
  reader_->command({"SET", wake_key(prefix_), "x"});
  EXPECT_NO_THROW(wake_workers(*reader_, prefix_));
  // The connection is still usable.
  EXPECT_EQ(reader_->command({"PING"})->type, REDIS_REPLY_STATUS);
}

TEST_F(WakeTest, AStreamTheWorkerCannotReadFallsBackToTheTimeout) {
  reader_->command({"SET", wake_key(prefix_), "x"});
  WakeWait w(prefix_);
  // The first wait reads the newest entry: refused (WRONGTYPE), so from now on it waits out
  // its timeout, and never throws for it.
  EXPECT_EQ(w.wait(*worker_, 10ms), Result::TimedOut);
  wake_workers(*reader_, prefix_);
  EXPECT_EQ(w.wait(*worker_, 10ms), Result::TimedOut);
}

// The queue wakes the workers once Redis has applied a batch, on both enqueue paths.
class QueueWakeTest : public WakeTest {
 protected:
  void SetUp() override {
    WakeTest::SetUp();
    q_ = std::make_unique<JobQueue>(*reader_, prefix_);
    q_->ensure_epoch("test-epoch");
  }
  std::vector<EnqueueItem> batch(Lsn lsn) {
    return {EnqueueItem{"a:1", 5, lsn, "body-" + std::to_string(lsn)}};
  }
  std::unique_ptr<JobQueue> q_;
};

TEST_F(QueueWakeTest, EnqueueWakesAnIdleWorker) {
  auto w = learnt(*worker_);
  EXPECT_EQ(w.wait(*worker_, 20ms), Result::TimedOut);
  q_->enqueue(batch(0x100), 0x180);
  EXPECT_EQ(w.wait(*worker_, 10s), Result::Woken);
  JobQueue wq(*worker_, prefix_);
  auto c = wq.claim(10, 10, 60s);
  ASSERT_EQ(c.keys.size(), 1u) << "woken when the job is claimable";
}

TEST_F(QueueWakeTest, PipelinedBatchesWakeAnIdleWorker) {
  auto w = learnt(*worker_);
  q_->enqueue_send(batch(0x100), 0x180);
  q_->enqueue_send(batch(0x200), 0x280);
  q_->enqueue_wait_one();
  q_->enqueue_wait_one();
  EXPECT_EQ(w.wait(*worker_, 10s), Result::Woken);
  JobQueue wq(*worker_, prefix_);
  auto c = wq.claim(10, 10, 60s);
  ASSERT_EQ(c.keys.size(), 1u);
  EXPECT_EQ(c.keys[0].bodies.size(), 2u) << "both batches were applied before the wake-up";
}

}  // namespace
}  // namespace walfold::queue
