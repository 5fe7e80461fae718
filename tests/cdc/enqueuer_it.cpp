// The reader's Redis thread (cdc/enqueuer.h) against a real Redis: its acknowledgement wake-up,
// which the replication loop waits on next to the replication socket instead of polling while
// Redis has every batch it may have in flight.
#include "cdc/enqueuer.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <memory>
#include <string>
#include <vector>

#include "queue/job_queue.h"
#include "queue/redis.h"
#include "tests/harness/servers.h"

namespace walfold::cdc {
namespace {

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

std::vector<queue::EnqueueItem> batch(Lsn commit, int jobs) {
  std::vector<queue::EnqueueItem> b;
  for (int i = 0; i < jobs; ++i)
    b.push_back({"k" + std::to_string(i), 0, commit, "body-" + std::to_string(i)});
  return b;
}

TEST(Enqueuer, AnAcknowledgementMakesItsFdReadableUntilTaken) {
  queue::Redis redis(test::redis_config());
  queue::JobQueue q(redis, queue::queue_prefix(test::unique_name("wfenq"), "walfold"));
  q.ensure_epoch("test-epoch");
  Enqueuer e(q);
  EXPECT_FALSE(readable(e.acked_fd(), 0)) << "nothing was sent";
  e.send(batch(0x100, 3), 0x110);
  // Blocks until Redis acknowledged the batch (the thread reads its reply): no timing assumed,
  // the generous timeout only keeps a broken build from hanging the suite.
  ASSERT_TRUE(readable(e.acked_fd(), 30'000)) << "the ack never woke the fd";
  EXPECT_TRUE(readable(e.acked_fd(), 0)) << "level-triggered: stays readable until taken";
  EXPECT_EQ(e.take_acks(), 1u);
  EXPECT_FALSE(readable(e.acked_fd(), 0)) << "taken: the loop must not wake for it again";
  EXPECT_EQ(e.outstanding(), 0u);

  // Two batches in flight: each ack sets the fd again after the previous one was taken.
  e.send(batch(0x200, 2), 0x210);
  e.send(batch(0x300, 2), 0x310);
  std::size_t taken = 0;
  while (taken < 2) {
    ASSERT_TRUE(readable(e.acked_fd(), 30'000));
    taken += e.take_acks();
  }
  EXPECT_EQ(taken, 2u);
  EXPECT_EQ(e.outstanding(), 0u);
  EXPECT_FALSE(readable(e.acked_fd(), 0));
  EXPECT_EQ(q.state().seq, 7) << "all seven jobs are in Redis";
}

}  // namespace
}  // namespace walfold::cdc
