// Integration tests for the Redis job queue (queue/job_queue.h, queue/scripts/*.lua) against a
// real Redis started by the test harness. Every test uses its own key prefix.

#include "queue/job_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/lsn.h"
#include "queue/job.h"
#include "queue/redis.h"
#include "queue/scripts.h"
#include "tests/harness/servers.h"

namespace walfold::queue {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

constexpr auto kLongLease = std::chrono::milliseconds(60000);

RedisConfig redis_config() {
  const auto& s = test::servers();
  RedisConfig cfg;
  cfg.host = s.redis_host;
  cfg.port = s.redis_port;
  return cfg;
}

EnqueueItem item(const std::string& key, int priority, Lsn commit_lsn, std::string body) {
  return EnqueueItem{key, priority, commit_lsn, std::move(body)};
}

std::vector<std::string> claimed_keys(const Claim& c) {
  std::vector<std::string> keys;
  for (const auto& k : c.keys) keys.push_back(k.key);
  return keys;
}

const ClaimedKey* find_key(const Claim& c, const std::string& key) {
  for (const auto& k : c.keys)
    if (k.key == key) return &k;
  return nullptr;
}

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<Redis>(redis_config());
    prefix_ = queue_prefix(test::unique_name("wfq"), "walfold");
    q_ = std::make_unique<JobQueue>(*redis_, prefix_);
    q_->ensure_epoch("test-epoch");  // what a reader does first; workers claim nothing before
  }

  long long integer(const std::vector<std::string_view>& argv) {
    auto r = redis_->command(argv);
    EXPECT_EQ(r->type, REDIS_REPLY_INTEGER) << reply_to_string(r.get());
    return r->integer;
  }
  long long list_len(const std::string& key) { return integer({"LLEN", prefix_ + ":k:" + key}); }
  bool in_ready(const std::string& key) {
    auto r = redis_->command({"ZSCORE", prefix_ + ":ready", key});
    return r->type != REDIS_REPLY_NIL;
  }
  // The commit has jobs not yet folded: in `pending`, with a positive count in `left` (the two
  // always agree).
  bool is_pending(Lsn commit) {
    auto r = redis_->command({"ZSCORE", prefix_ + ":pending", lsn_key(commit)});
    auto left = redis_->command({"HGET", prefix_ + ":left", lsn_key(commit)});
    const bool in_set = r->type != REDIS_REPLY_NIL;
    const bool counted = left->type == REDIS_REPLY_STRING && std::stoll(left->str) > 0;
    EXPECT_EQ(in_set, counted) << "pending and left disagree on " << lsn_key(commit);
    EXPECT_TRUE(left->type == REDIS_REPLY_NIL || counted)
        << "left keeps a count <= 0 for " << lsn_key(commit);
    return in_set;
  }
  std::string owner(const std::string& key) {
    return reply_to_string(redis_->command({"HGET", prefix_ + ":owner", key}).get());
  }

  std::unique_ptr<Redis> redis_;
  std::string prefix_;
  std::unique_ptr<JobQueue> q_;
};

TEST_F(QueueTest, EmptyQueue) {
  Claim c = q_->claim(10, 10, kLongLease);
  EXPECT_EQ(c.fence, 0);
  EXPECT_TRUE(c.keys.empty());
  EXPECT_EQ(q_->oldest_pending_commit(), std::nullopt);
  EXPECT_EQ(q_->enqueued_end_lsn(), 0u);
  auto n = q_->counts();
  EXPECT_EQ(n.ready_keys, 0);
  EXPECT_EQ(n.active_keys, 0);
  EXPECT_EQ(n.pending_jobs, 0);
  EXPECT_EQ(q_->prefix(), prefix_);
}

TEST_F(QueueTest, PrefixLayout) {
  EXPECT_EQ(queue_prefix("walfold", "slot1"), "walfold:{slot1}");
}

TEST_F(QueueTest, FifoPerKeyAndBinarySafeBodies) {
  // Hostile bodies: the list stores "<score>|<body>", so bodies with '|' and digits must survive.
  const std::vector<std::string> hostile = {"plain",
                                            "7|x|y",
                                            "|",
                                            "",
                                            "0|",
                                            "nul\0in\0side"s,
                                            "line\nbreak\r\n",
                                            "\xff\xfe\x80 bytes",
                                            std::string(100000, 'B')};
  // A real encoded job too.
  Job job;
  job.commit_lsn = 0x500;
  job.end_lsn = 0x5a0;
  job.commit_time_us = 1795400397123456;
  job.key = "a:1";
  job.changes.push_back({Model::Transactions,
                         'I',
                         {{Value::Text, "1"},
                          {Value::Text, "1"},
                          {Value::Text, "-12.50"},
                          {Value::Text, "a|b,c\n"},
                          {Value::Null, ""},
                          {Value::Unchanged, ""}},
                         {}});
  const std::string encoded = encode_job(job);

  std::vector<EnqueueItem> batch;
  Lsn lsn = 0x100;
  // a:1 gets the hostile bodies, a:2 and u:3 numbered ones; interleaved, over several enqueues.
  for (std::size_t i = 0; i < hostile.size(); ++i) {
    batch.push_back(item("a:1", 5, lsn++, hostile[i]));
    batch.push_back(item("a:2", 5, lsn++, "a2-" + std::to_string(i)));
    if (i % 2 == 0) batch.push_back(item("u:3", 5, lsn++, "u3-" + std::to_string(i / 2)));
    if (i % 3 == 2) {
      q_->enqueue(batch, 0);
      batch.clear();
    }
  }
  batch.push_back(item("a:1", 5, lsn++, encoded));
  q_->enqueue(batch, 0);

  Claim c = q_->claim(10, 1000, kLongLease);
  EXPECT_GT(c.fence, 0);
  ASSERT_EQ(c.keys.size(), 3u);
  // Equal priority: keys in the order their first job was enqueued.
  EXPECT_EQ(claimed_keys(c), (std::vector<std::string>{"a:1", "a:2", "u:3"}));

  const auto* a1 = find_key(c, "a:1");
  ASSERT_NE(a1, nullptr);
  ASSERT_EQ(a1->bodies.size(), hostile.size() + 1);
  for (std::size_t i = 0; i < hostile.size(); ++i) EXPECT_EQ(a1->bodies[i], hostile[i]) << i;
  EXPECT_EQ(a1->bodies.back(), encoded);
  Job back = decode_job(a1->bodies.back());
  EXPECT_EQ(back.key, "a:1");
  ASSERT_EQ(back.changes.size(), 1u);
  EXPECT_EQ(back.changes[0].new_row[kTxKind].text, "a|b,c\n");

  const auto* a2 = find_key(c, "a:2");
  ASSERT_NE(a2, nullptr);
  ASSERT_EQ(a2->bodies.size(), hostile.size());
  for (std::size_t i = 0; i < hostile.size(); ++i)
    EXPECT_EQ(a2->bodies[i], "a2-" + std::to_string(i));

  const auto* u3 = find_key(c, "u:3");
  ASSERT_NE(u3, nullptr);
  ASSERT_EQ(u3->bodies.size(), (hostile.size() + 1) / 2);
  for (std::size_t i = 0; i < u3->bodies.size(); ++i)
    EXPECT_EQ(u3->bodies[i], "u3-" + std::to_string(i));
}

TEST_F(QueueTest, ClaimTakesAtMostMaxJobsAndMaxKeys) {
  std::vector<EnqueueItem> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(item("a:1", 5, 0x100 + i, "j" + std::to_string(i)));
  for (int k = 2; k <= 6; ++k) batch.push_back(item("a:" + std::to_string(k), 5, 0x200 + k, "x"));
  q_->enqueue(batch, 0);

  Claim c = q_->claim(2, 3, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"a:1", "a:2"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"j0", "j1", "j2"}));
  EXPECT_EQ(list_len("a:1"), 10);  // claiming does not remove jobs

  // Ack 3 done: the next claim of a:1 starts at j3.
  EXPECT_TRUE(q_->ack(c.fence, {{"a:1", 3}, {"a:2", 1}}).empty());
  Claim rest = q_->claim(100, 100, kLongLease);
  ASSERT_EQ(claimed_keys(rest), (std::vector<std::string>{"a:1", "a:3", "a:4", "a:5", "a:6"}));
  EXPECT_EQ(rest.keys[0].bodies,
            (std::vector<std::string>{"j3", "j4", "j5", "j6", "j7", "j8", "j9"}));
}

TEST_F(QueueTest, PriorityOrder) {
  // Low-priority (high number) keys are enqueued first, then urgent ones.
  q_->enqueue({item("low1", 9, 1, "l1"), item("low2", 9, 2, "l2")}, 0);
  q_->enqueue({item("mid", 5, 3, "m")}, 0);
  q_->enqueue({item("high1", 1, 4, "h1"), item("high2", 1, 5, "h2")}, 0);
  q_->enqueue({item("top", 0, 6, "t")}, 0);
  q_->enqueue({item("low3", 9, 7, "l3")}, 0);

  std::vector<std::string> order;
  for (;;) {
    Claim c = q_->claim(1, 10, kLongLease);
    if (c.keys.empty()) break;
    ASSERT_EQ(c.keys.size(), 1u);
    order.push_back(c.keys[0].key);
    ASSERT_EQ(c.keys[0].bodies.size(), 1u);
    ASSERT_TRUE(q_->ack(c.fence, {{c.keys[0].key, 1, {}}}).empty());
    ASSERT_LT(order.size(), 20u);
  }
  EXPECT_EQ(order,
            (std::vector<std::string>{"top", "high1", "high2", "mid", "low1", "low2", "low3"}));
}

TEST_F(QueueTest, PriorityOrderWithinOneClaim) {
  q_->enqueue({item("l", 200, 1, "l"), item("m", 100, 2, "m"), item("h", 0, 3, "h"),
               item("m2", 100, 4, "m2")},
              0);
  Claim c = q_->claim(10, 10, kLongLease);
  EXPECT_EQ(claimed_keys(c), (std::vector<std::string>{"h", "m", "m2", "l"}));
  // Extreme priorities keep their order too (scores stay exact below 2^53).
  prefix_ = queue_prefix(test::unique_name("wfq"), "walfold");
  q_ = std::make_unique<JobQueue>(*redis_, prefix_);
  q_->ensure_epoch("test-epoch");
  q_->enqueue({item("p255", 255, 1, "a"), item("p254", 254, 2, "b"), item("p255b", 255, 3, "c"),
               item("p0", 0, 4, "d")},
              0);
  c = q_->claim(10, 10, kLongLease);
  EXPECT_EQ(claimed_keys(c), (std::vector<std::string>{"p0", "p254", "p255", "p255b"}));
}

// The reader stamps the jobs itself (its estimate of Redis's clock): a new JobQueue (a reader
// restarted on a host whose clock is behind) continues from the stamp the queue holds, so the
// jobs it enqueues never sort before ones enqueued earlier at the same priority.
TEST_F(QueueTest, ArrivalStampsContinueFromTheQueuesStampAcrossReaders) {
  const long long ahead = (q_->redis_time_ms() + 3600000LL) * 256;  // an hour ahead
  q_->enqueue({item("first", 0, 1, "a")}, 0);
  redis_->command({"HSET", prefix_ + ":meta", "stamp", std::to_string(ahead)});
  // The stamp an earlier reader left: "first" sorts as if it arrived then.
  redis_->command({"ZADD", prefix_ + ":ready", std::to_string(ahead), "first"});
  JobQueue next(*redis_, prefix_);
  next.enqueue({item("second", 0, 2, "b")}, 0);
  next.enqueue({item("third", 0, 3, "c")}, 0);
  auto second = next.entries("second", 1).at(0);
  EXPECT_GT(second.score, static_cast<double>(ahead));
  EXPECT_LT(second.score, next.entries("third", 1).at(0).score);
  EXPECT_EQ(claimed_keys(next.claim(10, 10, kLongLease)),
            (std::vector<std::string>{"first", "second", "third"}));
  // The queue keeps the highest stamp given.
  auto stamp = redis_->command({"HGET", prefix_ + ":meta", "stamp"});
  ASSERT_EQ(stamp->type, REDIS_REPLY_STRING);
  EXPECT_GE(std::stod(stamp->str), next.entries("third", 1).at(0).score);
}

TEST_F(QueueTest, MixedPriorityKeyIsLiftedButKeepsFifo) {
  q_->enqueue({item("k", 9, 1, "k0-low")}, 0);
  q_->enqueue({item("x", 5, 2, "x0")}, 0);
  q_->enqueue({item("k", 9, 3, "k1-low"), item("k", 1, 4, "k2-urgent"), item("k", 7, 5, "k3")}, 0);

  // The urgent job lifts k before x, but k's jobs come out in FIFO order.
  Claim c = q_->claim(1, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"k0-low", "k1-low", "k2-urgent", "k3"}));
  Claim c2 = q_->claim(1, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c2), (std::vector<std::string>{"x"}));

  // A later, less urgent job does not push a key back (ZADD LT).
  prefix_ = queue_prefix(test::unique_name("wfq"), "walfold");
  q_ = std::make_unique<JobQueue>(*redis_, prefix_);
  q_->ensure_epoch("test-epoch");
  q_->enqueue({item("k", 1, 1, "k0")}, 0);
  q_->enqueue({item("x", 5, 2, "x0")}, 0);
  q_->enqueue({item("k", 200, 3, "k1")}, 0);
  c = q_->claim(1, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"k0", "k1"}));
}

// When a key goes back to `ready` (ack, or an expired lease) it is scored by the most urgent of
// its head job and the jobs enqueued while it was claimed (queue/scripts: P:lift).
TEST_F(QueueTest, UrgentJobEnqueuedWhileClaimedLiftsTheKeyAfterAck) {
  q_->enqueue({item("k", 9, 1, "k0"), item("k", 9, 2, "k1")}, 0);
  Claim c1 = q_->claim(1, 1, kLongLease);
  ASSERT_EQ(claimed_keys(c1), (std::vector<std::string>{"k"}));
  q_->enqueue({item("x", 5, 3, "x0")}, 0);
  q_->enqueue({item("k", 0, 4, "k2-urgent")}, 0);  // k is claimed: not added to ready
  ASSERT_TRUE(q_->ack(c1.fence, {{"k", 1}}).empty());
  // k now holds k1 (priority 9) and k2 (priority 0): it should come before x (priority 5).
  Claim c2 = q_->claim(1, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c2), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c2.keys[0].bodies, (std::vector<std::string>{"k1", "k2-urgent"}));
}

TEST_F(QueueTest, ClaimedKeyIsExclusiveUntilAck) {
  q_->enqueue({item("k", 5, 1, "k0"), item("k", 5, 2, "k1"), item("l", 5, 3, "l0")}, 0);

  Claim c1 = q_->claim(1, 1, kLongLease);
  ASSERT_EQ(claimed_keys(c1), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c1.keys[0].bodies, (std::vector<std::string>{"k0"}));

  // k is claimed: another claim only gets l, even though k still has k1 waiting.
  Claim c2 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c2), (std::vector<std::string>{"l"}));
  EXPECT_NE(c2.fence, c1.fence);

  // New jobs for the claimed key (even urgent ones) do not make it claimable.
  q_->enqueue({item("k", 0, 4, "k2"), item("k", 5, 5, "k3")}, 0);
  Claim c3 = q_->claim(10, 10, kLongLease);
  EXPECT_TRUE(c3.keys.empty()) << "claimed " << c3.keys.size() << " keys, first "
                               << (c3.keys.empty() ? "" : c3.keys[0].key);
  auto n = q_->counts();
  EXPECT_EQ(n.ready_keys, 0);
  EXPECT_EQ(n.active_keys, 2);
  EXPECT_EQ(n.pending_jobs, 5);

  // Ack k0: k comes back with the rest in order.
  EXPECT_TRUE(q_->ack(c1.fence, {{"k", 1}}).empty());
  EXPECT_TRUE(in_ready("k"));
  Claim c4 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c4), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c4.keys[0].bodies, (std::vector<std::string>{"k1", "k2", "k3"}));
}

TEST_F(QueueTest, ReleaseWithZeroJobsDone) {
  q_->enqueue({item("k", 5, 1, "k0"), item("k", 5, 2, "k1")}, 0);
  Claim c1 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c1), (std::vector<std::string>{"k"}));
  EXPECT_TRUE(q_->ack(c1.fence, {{"k", 0}}).empty());
  EXPECT_EQ(list_len("k"), 2);
  EXPECT_EQ(q_->counts().active_keys, 0);
  Claim c2 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c2), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c2.keys[0].bodies, (std::vector<std::string>{"k0", "k1"}));
}

TEST_F(QueueTest, AckRemovesExactlyTheFirstNJobsAndTheirMembers) {
  q_->enqueue({item("k", 5, 0x100, "k100"), item("m", 5, 0x150, "m150")}, 0x160);
  q_->enqueue({item("k", 5, 0x200, "k200"), item("k", 5, 0x300, "k300")}, 0x310);
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x100});
  EXPECT_EQ(q_->counts().pending_jobs, 4);

  Claim c = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"k", "m"}));
  ASSERT_EQ(c.keys[0].bodies.size(), 3u);
  // k: two of three done; m: released with nothing done.
  auto rejected = q_->ack(c.fence, {{"k", 2}, {"m", 0}});
  EXPECT_TRUE(rejected.empty());
  EXPECT_EQ(list_len("k"), 1);
  EXPECT_EQ(list_len("m"), 1);
  EXPECT_FALSE(is_pending(0x100));
  EXPECT_FALSE(is_pending(0x200));
  EXPECT_TRUE(is_pending(0x300));
  EXPECT_TRUE(is_pending(0x150));
  EXPECT_TRUE(in_ready("k"));
  EXPECT_TRUE(in_ready("m"));
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x150});
  auto n = q_->counts();
  EXPECT_EQ(n.ready_keys, 2);
  EXPECT_EQ(n.active_keys, 0);
  EXPECT_EQ(n.pending_jobs, 2);

  Claim c2 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(c2.keys.size(), 2u);
  const auto* k = find_key(c2, "k");
  const auto* m = find_key(c2, "m");
  ASSERT_TRUE(k && m);
  EXPECT_EQ(k->bodies, (std::vector<std::string>{"k300"}));
  EXPECT_EQ(m->bodies, (std::vector<std::string>{"m150"}));
  // m's job done first: the checkpoint moves to k's last job.
  EXPECT_TRUE(q_->ack(c2.fence, {{"m", 1}}).empty());
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x300});
  EXPECT_TRUE(q_->ack(c2.fence, {{"k", 1}}).empty());
  EXPECT_EQ(q_->oldest_pending_commit(), std::nullopt);

  n = q_->counts();
  EXPECT_EQ(n.ready_keys, 0);
  EXPECT_EQ(n.active_keys, 0);
  EXPECT_EQ(n.pending_jobs, 0);
  EXPECT_EQ(integer({"EXISTS", prefix_ + ":k:k", prefix_ + ":k:m"}), 0);
  EXPECT_EQ(integer({"HLEN", prefix_ + ":owner"}), 0);
}

TEST_F(QueueTest, OldestPendingFollowsLsnOrderNotEnqueueOrder) {
  // Checkpoints compare as LSNs: 0x1_00000000 > 0xFFFFFFFF even though "1/0" < "FFFFFFFF/..."
  // would not hold for unpadded text.
  q_->enqueue({item("a", 5, 0x100000000ULL, "x")}, 0);
  q_->enqueue({item("b", 5, 0xFFFFFFFFULL, "y")}, 0);
  q_->enqueue({item("c", 5, 0x2, "z")}, 0);
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x2});
  Claim c = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(c.keys.size(), 3u);
  ASSERT_TRUE(q_->ack(c.fence, {{"c", 1}}).empty());
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0xFFFFFFFFULL});
  ASSERT_TRUE(q_->ack(c.fence, {{"b", 1}}).empty());
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x100000000ULL});
}

TEST_F(QueueTest, ACommitStaysPendingUntilEveryKeysJobOfItIsFolded) {
  // Commit 0x100 touches four keys; the reader's batches split it (d's job comes in a second
  // batch, as a big commit does). The checkpoint may pass it only when all four are folded, in
  // whatever order and claims that happens.
  q_->enqueue({item("a", 5, 0x100, "a1"), item("b", 5, 0x100, "b1"), item("c", 5, 0x100, "c1")}, 0);
  q_->enqueue({item("d", 5, 0x100, "d1"), item("a", 5, 0x200, "a2")}, 0x210);
  EXPECT_EQ(q_->counts().pending_commits, 2);
  EXPECT_EQ(q_->counts().pending_jobs, 5);
  EXPECT_EQ(reply_to_string(redis_->command({"HGET", prefix_ + ":left", lsn_key(0x100)}).get()),
            "4");
  Claim c = q_->claim(1, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"a"}));
  ASSERT_EQ(c.keys[0].commits, (std::vector<Lsn>{0x100, 0x200}));
  ASSERT_TRUE(q_->ack(c.fence, {{"a", 2}}).empty());
  EXPECT_TRUE(is_pending(0x100));
  EXPECT_FALSE(is_pending(0x200)) << "a later commit is done before an earlier one";
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x100});
  for (const char* k : {"d", "c"}) {
    c = q_->claim(10, 10, kLongLease);
    ASSERT_FALSE(c.keys.empty());
    // Release everything but one key, which is folded.
    std::vector<AckItem> acks;
    for (const auto& ck : c.keys) acks.push_back({ck.key, ck.key == k ? 1 : 0});
    ASSERT_TRUE(q_->ack(c.fence, acks).empty());
    EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x100}) << "after " << k;
    EXPECT_EQ(q_->state().oldest_pending, Lsn{0x100}) << "after " << k;
  }
  c = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"b"}));
  ASSERT_TRUE(q_->ack(c.fence, {{"b", 1}}).empty());
  EXPECT_FALSE(is_pending(0x100));
  EXPECT_EQ(q_->oldest_pending_commit(), std::nullopt);
  EXPECT_EQ(q_->state().oldest_pending, std::nullopt);
  EXPECT_EQ(q_->counts().pending_jobs, 0);
  EXPECT_EQ(integer({"EXISTS", prefix_ + ":left", prefix_ + ":pending"}), 0);
}

TEST_F(QueueTest, AQueueInTheFormatBeforeIssue12IsRefusedNotMisread) {
  // An old build's pending member ("<commit lsn>:<key>") and list entry: the reader's first
  // state() stops (DataError: exit 65) instead of computing a checkpoint from them.
  redis_->command({"ZADD", prefix_ + ":pending", "0", lsn_key(0x10) + ":a:1"});
  EXPECT_THROW(q_->state(), DataError);
  EXPECT_THROW(q_->oldest_pending_commit(), DataError);
  redis_->command({"DEL", prefix_ + ":pending"});
  redis_->command({"RPUSH", prefix_ + ":k:a:1",
                   "450000000000123:5:1764000000000:21:" + lsn_key(0x10) + ":a:1J1body"});
  EXPECT_THROW(q_->entries("a:1", 10), DataError);
}

TEST_F(QueueTest, DuplicateJobsKeepTheirCommitPendingUntilBothAreFolded) {
  // The same job enqueued twice (a reader re-sending after a restart) is in the list twice; its
  // commit stays pending until both copies are folded (the count follows the list entries).
  q_->enqueue({item("k", 5, 0x10, "k10")}, 0);
  q_->enqueue({item("k", 5, 0x10, "k10")}, 0);
  EXPECT_EQ(q_->counts().pending_jobs, 2);
  EXPECT_EQ(q_->counts().pending_commits, 1);
  EXPECT_EQ(list_len("k"), 2);
  Claim c = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"k10", "k10"}));
  EXPECT_EQ(c.keys[0].commits, (std::vector<Lsn>{0x10, 0x10}));
  EXPECT_TRUE(q_->ack(c.fence, {{"k", 1}}).empty());
  EXPECT_TRUE(is_pending(0x10)) << "one copy is still unfolded";
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x10});
  c = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"k"}));
  EXPECT_TRUE(q_->ack(c.fence, {{"k", 1}}).empty());
  EXPECT_FALSE(is_pending(0x10));
  EXPECT_EQ(q_->counts().pending_jobs, 0);
  EXPECT_EQ(list_len("k"), 0);
  EXPECT_EQ(q_->oldest_pending_commit(), std::nullopt);
}

TEST_F(QueueTest, FencingRejectsAStaleAck) {
  q_->enqueue({item("k1", 5, 10, "a0"), item("k1", 5, 11, "a1")}, 0);
  q_->enqueue({item("k2", 5, 12, "b0")}, 0);

  Claim c1 = q_->claim(1, 10, 200ms);
  ASSERT_EQ(claimed_keys(c1), (std::vector<std::string>{"k1"}));
  std::this_thread::sleep_for(600ms);

  // The lease expired: k1 goes back with its own score, still ahead of k2.
  Claim c2 = q_->claim(1, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c2), (std::vector<std::string>{"k1"}));
  EXPECT_EQ(c2.keys[0].bodies, (std::vector<std::string>{"a0", "a1"}));
  EXPECT_GT(c2.fence, c1.fence);
  EXPECT_EQ(owner("k1"), std::to_string(c2.fence));

  // The first worker's late ack is rejected and changes nothing.
  auto rejected = q_->ack(c1.fence, {{"k1", 2}});
  EXPECT_EQ(rejected, (std::vector<std::string>{"k1"}));
  EXPECT_EQ(list_len("k1"), 2);
  EXPECT_TRUE(is_pending(10));
  EXPECT_TRUE(is_pending(11));
  EXPECT_EQ(owner("k1"), std::to_string(c2.fence));
  EXPECT_EQ(q_->counts().active_keys, 1);
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{10});

  // The second claim's ack works.
  EXPECT_TRUE(q_->ack(c2.fence, {{"k1", 2}}).empty());
  EXPECT_EQ(list_len("k1"), 0);
  EXPECT_FALSE(is_pending(10));
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{12});
  Claim c3 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c3), (std::vector<std::string>{"k2"}));
}

TEST_F(QueueTest, FencingPerKeyInOneAck) {
  q_->enqueue({item("k1", 5, 1, "a"), item("k2", 5, 2, "b")}, 0);
  Claim c1 = q_->claim(10, 10, 200ms);
  ASSERT_EQ(claimed_keys(c1), (std::vector<std::string>{"k1", "k2"}));
  std::this_thread::sleep_for(600ms);
  // Only k1 is taken over (max_keys 1); k2's expired lease is requeued to ready.
  Claim c2 = q_->claim(1, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c2), (std::vector<std::string>{"k1"}));
  // c2's claim requeued both expired keys (dropping their owners) and took k1: c1 owns neither
  // any more, so both are rejected and nothing is removed.
  auto rejected = q_->ack(c1.fence, {{"k1", 1}, {"k2", 1}});
  EXPECT_EQ(rejected, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_EQ(list_len("k1"), 1);
  EXPECT_EQ(list_len("k2"), 1);
  EXPECT_TRUE(is_pending(1));
  EXPECT_TRUE(is_pending(2));
  EXPECT_TRUE(in_ready("k2"));
  // The new owner of k1 acks; k2 is claimed normally.
  EXPECT_TRUE(q_->ack(c2.fence, {{"k1", 1}}).empty());
  Claim c3 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c3), (std::vector<std::string>{"k2"}));
  EXPECT_TRUE(q_->ack(c3.fence, {{"k2", 1}}).empty());
  EXPECT_EQ(q_->counts().pending_jobs, 0);
}

TEST_F(QueueTest, ExpiredLeaseIsRequeuedEvenWhenNothingElseIsReady) {
  q_->enqueue({item("k", 5, 1, "a")}, 0);
  Claim c1 = q_->claim(10, 10, 200ms);
  ASSERT_EQ(claimed_keys(c1), (std::vector<std::string>{"k"}));
  // Within the lease: nothing to claim.
  EXPECT_TRUE(q_->claim(10, 10, kLongLease).keys.empty());
  std::this_thread::sleep_for(600ms);
  Claim c2 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c2), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c2.keys[0].bodies, (std::vector<std::string>{"a"}));
}

TEST_F(QueueTest, EnqueuedEndLsnOnlyMovesForward) {
  EXPECT_EQ(q_->enqueued_end_lsn(), 0u);
  q_->enqueue({item("k", 5, 0x100, "a")}, 0x200);
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x200});
  q_->enqueue({item("k", 5, 0x50, "b")}, 0x100);  // lower: ignored
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x200});
  q_->enqueue({item("k", 5, 0x300, "c")}, 0);  // none: ignored
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x200});
  q_->enqueue({}, 0xFFFFFFFFULL);  // no jobs, only progress
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0xFFFFFFFFULL});
  q_->enqueue({}, 0x100000000ULL);  // across the 32-bit boundary
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x100000000ULL});
  q_->enqueue({}, 0xFFFFFFFFULL);
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x100000000ULL});
  q_->enqueue({}, 0xFFFFFFFFFFFFFFFFULL);
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0xFFFFFFFFFFFFFFFFULL});
  EXPECT_EQ(q_->counts().pending_jobs, 3);
}

TEST_F(QueueTest, ScriptCacheFlushIsRecovered) {
  // Our SHA-1 of each script matches Redis's (EVAL caches a script under Redis's own SHA-1).
  const RedisScript enq("enqueue", scripts::enqueue), clm("claim", scripts::claim),
      ack("ack", scripts::ack);
  q_->enqueue({item("k", 5, 1, "before")}, 0);
  Claim c0 = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c0), (std::vector<std::string>{"k"}));
  ASSERT_TRUE(q_->ack(c0.fence, {{"k", 1}}).empty());
  EXPECT_EQ(test::redis_cmd({"SCRIPT", "EXISTS", enq.sha(), clm.sha(), ack.sha()}), "1\n1\n1");

  EXPECT_EQ(test::redis_cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_EQ(test::redis_cmd({"SCRIPT", "EXISTS", enq.sha(), clm.sha(), ack.sha()}), "0\n0\n0");

  q_->enqueue({item("k", 5, 2, "after-1"), item("k", 5, 3, "after-2")}, 0x10);
  Claim c = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"after-1", "after-2"}));
  EXPECT_TRUE(q_->ack(c.fence, {{"k", 2}}).empty());
  EXPECT_EQ(q_->counts().pending_jobs, 0);
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x10});
  EXPECT_EQ(test::redis_cmd({"SCRIPT", "EXISTS", enq.sha(), clm.sha(), ack.sha()}), "1\n1\n1");
}

TEST_F(QueueTest, BatchesInFlightAreAppliedInOrderAndNeverPastAFailedOne) {
  // Two batches pipelined: both applied, in order, each reply read in turn.
  q_->enqueue_send({item("k", 5, 1, "b1")}, 0x10);
  q_->enqueue_send({item("k", 5, 2, "b2"), item("m", 5, 2, "m2")}, 0x20);
  EXPECT_EQ(q_->enqueue_in_flight(), 2u);
  q_->enqueue_wait_one();
  EXPECT_EQ(q_->enqueue_in_flight(), 1u);
  q_->enqueue_wait_one();
  EXPECT_EQ(q_->last_seq(), 3);
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x20});
  EXPECT_EQ(q_->entries("k", 10).size(), 2u);
  EXPECT_EQ(q_->entries("k", 10)[0].body, "b1");

  // The first of two batches in flight fails (its key holds a value of the wrong type): the
  // second, which would otherwise overtake it, is refused untouched, the first error is thrown,
  // and the connection stays in step.
  redis_->command({"SET", prefix_ + ":k:bad", "not a list"});
  q_->enqueue_send({item("bad", 5, 3, "x")}, 0x30);
  q_->enqueue_send({item("k", 5, 4, "b4")}, 0x40);
  EXPECT_THROW(q_->enqueue_wait(), std::runtime_error);
  EXPECT_EQ(q_->enqueue_in_flight(), 0u);
  EXPECT_EQ(list_len("k"), 2) << "the batch after the failed one was applied";
  EXPECT_FALSE(is_pending(4));
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x20});
  // A queue that lost its data between two batches in flight (FLUSHALL: no epoch any more)
  // takes the second one as any write; the epoch's absence tells the reader (state()).
  // The DEL goes down the queue's own connection between the two batches, so Redis runs it
  // between them.
  q_->enqueue_send({item("k", 5, 5, "b5")}, 0x50);
  redis_->append({"DEL", prefix_ + ":meta"});
  q_->enqueue_send({item("k", 5, 6, "b6")}, 0x60);
  q_->enqueue_wait_one();
  EXPECT_EQ(redis_->read_reply()->integer, 1);
  EXPECT_NO_THROW(q_->enqueue_wait());
  EXPECT_EQ(list_len("k"), 4);
  EXPECT_FALSE(q_->state().epoch.has_value());
  q_->reset("test-epoch-2");
  // The next batch (nothing in flight) goes in normally.
  redis_->command({"DEL", prefix_ + ":k:bad"});
  q_->enqueue_send({item("k", 5, 4, "b4")}, 0x40);
  q_->enqueue_wait();
  EXPECT_EQ(list_len("k"), 1);
  EXPECT_EQ(q_->enqueued_end_lsn(), Lsn{0x40});
}

TEST_F(QueueTest, AClaimOfMoreKeysThanOneVariadicCallTakesIsSettledWhole) {
  // workers.batch_keys may be up to 10000: the scripts' variadic calls go 1000 keys at a time.
  std::vector<EnqueueItem> batch;
  for (int k = 0; k < 2500; ++k) batch.push_back(item("k" + std::to_string(k), 5, 0x100, "x"));
  q_->enqueue(batch, 0x110);
  Claim c = q_->claim(3000, 10, kLongLease);
  ASSERT_EQ(c.keys.size(), 2500u);
  std::vector<AckItem> acks;
  for (const auto& k : c.keys) acks.push_back({k.key, k.key == "k7" ? 0 : 1});
  ASSERT_TRUE(q_->ack(c.fence, acks).empty());
  EXPECT_EQ(q_->counts().active_keys, 0);
  EXPECT_EQ(q_->counts().ready_keys, 1) << "k7 went back";
  EXPECT_EQ(q_->counts().pending_jobs, 1);
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x100});
  EXPECT_EQ(integer({"HLEN", prefix_ + ":owner"}), 0);
}

TEST_F(QueueTest, ErrorsNameTheServer) {
  RedisConfig bad;
  bad.host = "127.0.0.1";
  bad.port = 1;  // nothing listens there
  try {
    Redis r(bad);
    ADD_FAILURE() << "connected to port 1";
  } catch (const UnavailableError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
  }
  try {
    redis_->command({"NOSUCHCOMMAND"});
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(redis_->address()), std::string::npos) << e.what();
  }
  // The connection is still usable after an error reply.
  EXPECT_EQ(reply_to_string(redis_->command({"PING"}).get()), "PONG");
}

TEST_F(QueueTest, Counts) {
  auto n = q_->counts();
  EXPECT_EQ(n.ready_keys, 0);
  EXPECT_EQ(n.active_keys, 0);
  EXPECT_EQ(n.pending_jobs, 0);

  std::vector<EnqueueItem> batch;
  for (int k = 0; k < 5; ++k)
    for (int j = 0; j < 3; ++j)
      batch.push_back(item("key" + std::to_string(k), 5, 100 * k + j + 1, "b"));
  q_->enqueue(batch, 0);
  n = q_->counts();
  EXPECT_EQ(n.ready_keys, 5);
  EXPECT_EQ(n.active_keys, 0);
  EXPECT_EQ(n.pending_jobs, 15);

  Claim c = q_->claim(2, 10, kLongLease);
  ASSERT_EQ(c.keys.size(), 2u);
  n = q_->counts();
  EXPECT_EQ(n.ready_keys, 3);
  EXPECT_EQ(n.active_keys, 2);
  EXPECT_EQ(n.pending_jobs, 15);

  // key0 fully done, key1 one job done.
  ASSERT_TRUE(q_->ack(c.fence, {{"key0", 3}, {"key1", 1}}).empty());
  n = q_->counts();
  EXPECT_EQ(n.ready_keys, 4);
  EXPECT_EQ(n.active_keys, 0);
  EXPECT_EQ(n.pending_jobs, 11);

  // counts() pipelines three commands: a normal command right after must still line up.
  EXPECT_EQ(reply_to_string(redis_->command({"PING"}).get()), "PONG");
  EXPECT_EQ(q_->counts().pending_jobs, 11);
}

TEST_F(QueueTest, PrefixesAreIndependent) {
  JobQueue other(*redis_, queue_prefix(test::unique_name("wfq"), "walfold"));
  q_->enqueue({item("k", 5, 1, "mine")}, 0x5);
  EXPECT_TRUE(other.claim(10, 10, kLongLease).keys.empty());
  EXPECT_EQ(other.counts().pending_jobs, 0);
  EXPECT_EQ(other.enqueued_end_lsn(), 0u);
  Claim c = q_->claim(10, 10, kLongLease);
  ASSERT_EQ(claimed_keys(c), (std::vector<std::string>{"k"}));
}

// 8 workers, each with its own connection, claim and ack concurrently (with random delays,
// partial acks, releases and retries through the backoff set) while a producer keeps
// enqueueing; every key's jobs must be processed exactly once, in order.
TEST_F(QueueTest, StrictPerKeyOrderUnderConcurrency) {
  constexpr int kKeys = 50, kJobs = 40, kWorkers = 8;
  constexpr int kTotal = kKeys * kJobs;
  auto key_name = [](int k) { return "a:" + std::to_string(k); };
  auto lsn_of = [](int k, int seq) { return static_cast<Lsn>(seq) * 1000 + k + 1; };

  std::mutex mu;
  std::map<std::string, std::vector<int>> processed;  // key -> seqs in processing order
  std::set<std::string> in_flight;                    // keys currently held by a worker
  std::vector<std::string> errors;
  std::atomic<int> done_total{0};
  std::atomic<bool> stop{false};
  std::atomic<int> partial_acks{0}, releases{0}, retries{0};
  auto error = [&](std::string e) {
    std::lock_guard lock(mu);
    if (errors.size() < 50) errors.push_back(std::move(e));
  };

  // Producer: per key in sequence order, in random batches and random key order.
  std::thread producer([&] {
    try {
      Redis r(redis_config());
      JobQueue q(r, prefix_);
      std::mt19937 rng(42);
      std::vector<int> next(kKeys, 0);
      int produced = 0;
      while (produced < kTotal && !stop) {
        std::vector<EnqueueItem> batch;
        int size = std::uniform_int_distribution<int>(1, 40)(rng);
        for (int i = 0; i < size && produced < kTotal; ++i) {
          int k;
          do k = std::uniform_int_distribution<int>(0, kKeys - 1)(rng);
          while (next[k] == kJobs);
          int seq = next[k]++;
          int prio = std::uniform_int_distribution<int>(0, 9)(rng);
          batch.push_back(item(key_name(k), prio, lsn_of(k, seq),
                               key_name(k) + "|seq=" + std::to_string(seq) + "|\0end"s));
          ++produced;
        }
        q.enqueue(batch, lsn_of(kKeys, produced));
        std::this_thread::sleep_for(
            std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
      }
    } catch (const std::exception& e) {
      error(std::string("producer: ") + e.what());
    }
  });

  auto worker = [&](int id) {
    try {
      Redis r(redis_config());
      QueueOptions opts;
      opts.retry = {5, 20, 1000};
      JobQueue q(r, prefix_, opts);
      std::mt19937 rng(1000 + id);
      while (!stop && done_total < kTotal) {
        int max_keys = std::uniform_int_distribution<int>(1, 4)(rng);
        int max_jobs = std::uniform_int_distribution<int>(1, 8)(rng);
        Claim c = q.claim(max_keys, max_jobs, kLongLease);
        if (c.keys.empty()) {
          std::this_thread::sleep_for(1ms);
          continue;
        }
        {
          std::lock_guard lock(mu);
          for (const auto& k : c.keys)
            if (!in_flight.insert(k.key).second)
              errors.push_back("key " + k.key + " claimed by two workers at once");
        }
        std::vector<AckItem> acks;
        for (const auto& k : c.keys) {
          if (k.bodies.empty() || static_cast<int>(k.bodies.size()) > max_jobs)
            error("key " + k.key + ": claim returned " + std::to_string(k.bodies.size()) + " jobs");
          // Sometimes finish only part of the claimed jobs, sometimes none (a release).
          int n = static_cast<int>(k.bodies.size());
          int roll = std::uniform_int_distribution<int>(0, 9)(rng);
          int jobs_done = roll == 0   ? 0
                          : roll == 1 ? std::uniform_int_distribution<int>(0, n)(rng)
                                      : n;
          if (jobs_done == 0)
            ++releases;
          else if (jobs_done < n)
            ++partial_acks;
          AckItem a{k.key, jobs_done};
          // Sometimes the rest failed: a retry after a short backoff (random, up to 20 ms).
          if (jobs_done < n && std::uniform_int_distribution<int>(0, 1)(rng) == 0) {
            a.outcome = Outcome::Retry;
            a.reason = "test";
            ++retries;
          }
          for (int j = 0; j < jobs_done; ++j) {
            const std::string& body = k.bodies[j];
            auto p1 = body.find("|seq=");
            auto p2 = body.find('|', p1 + 1);
            if (p1 == std::string::npos || p2 == std::string::npos || body.substr(0, p1) != k.key ||
                body.substr(p2) != "|\0end"s) {
              error("key " + k.key + ": mangled body '" + body + "'");
              continue;
            }
            int seq = std::stoi(body.substr(p1 + 5, p2 - p1 - 5));
            {
              std::lock_guard lock(mu);
              processed[k.key].push_back(seq);
            }
          }
          acks.push_back(std::move(a));
        }
        std::this_thread::sleep_for(
            std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng)));
        {
          std::lock_guard lock(mu);
          for (const auto& k : c.keys) in_flight.erase(k.key);
        }
        auto rejected = q.ack(c.fence, acks);
        if (!rejected.empty()) error("ack rejected " + std::to_string(rejected.size()) + " keys");
        int done = 0;
        for (const auto& a : acks) done += a.jobs_done;
        done_total += done;
      }
    } catch (const std::exception& e) {
      error("worker " + std::to_string(id) + ": " + e.what());
    }
  };

  std::vector<std::thread> workers;
  for (int i = 0; i < kWorkers; ++i) workers.emplace_back(worker, i);
  // Generous bounds: a normal run takes well under a few seconds.
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  auto last_progress = std::chrono::steady_clock::now();
  int last_done = 0;
  bool stalled = false;
  while (done_total < kTotal && std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mu);
      if (!errors.empty()) break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (done_total != last_done) {
      last_done = done_total;
      last_progress = now;
    } else if (now - last_progress > 30s) {
      stalled = true;
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  stop = true;
  producer.join();
  for (auto& t : workers) t.join();

  for (const auto& e : errors) ADD_FAILURE() << e;
  ASSERT_TRUE(errors.empty());
  ASSERT_FALSE(stalled) << "no job was processed for 30 s; " << done_total << " of " << kTotal
                        << " done";
  ASSERT_EQ(done_total.load(), kTotal) << "not finished before the deadline";
  // The run exercised what it is meant to: partial acks and releases.
  EXPECT_GT(partial_acks.load(), 0);
  EXPECT_GT(releases.load(), 0);
  EXPECT_GT(retries.load(), 0);

  std::vector<int> expected(kJobs);
  for (int i = 0; i < kJobs; ++i) expected[i] = i;
  ASSERT_EQ(processed.size(), static_cast<std::size_t>(kKeys));
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(processed[key_name(k)], expected) << key_name(k);

  auto n = q_->counts();
  EXPECT_EQ(n.ready_keys, 0);
  EXPECT_EQ(n.active_keys, 0);
  EXPECT_EQ(n.pending_jobs, 0);
  EXPECT_EQ(q_->oldest_pending_commit(), std::nullopt);
  EXPECT_EQ(q_->enqueued_end_lsn(), lsn_of(kKeys, kTotal));
  EXPECT_TRUE(q_->claim(100, 100, kLongLease).keys.empty());
}

}  // namespace
}  // namespace walfold::queue

namespace walfold::queue {
namespace {

TEST(QueueEpoch, NothingIsClaimedUntilAReaderHasSetTheEpochAndALossEmptiesTheQueue) {
  const auto& s = test::servers();
  RedisConfig rc;
  rc.host = s.redis_host;
  rc.port = s.redis_port;
  Redis redis(rc);
  const std::string prefix = test::unique_name("epochq") + ":{x}";
  JobQueue q(redis, prefix);
  q.enqueue({{"k", 5, 0x10, "j1"}}, 0);
  EXPECT_TRUE(q.claim(10, 10, std::chrono::milliseconds(30000)).keys.empty())
      << "claimed without an epoch";
  // The queue holds state without an epoch (as after FLUSHALL and a later enqueue): a reader
  // that knew another epoch sees a loss, and the queue is emptied before the new epoch is set.
  auto [epoch, state] = q.ensure_epoch("e2", "e1", 0);
  EXPECT_EQ(epoch, "e2");
  EXPECT_EQ(state, EpochState::Lost);
  EXPECT_FALSE(q.oldest_pending_commit().has_value());
  EXPECT_EQ(redis.command({"EXISTS", prefix + ":left", prefix + ":k:k"})->integer, 0)
      << "the per-commit counts survived the reset";
  EXPECT_TRUE(q.claim(10, 10, std::chrono::milliseconds(30000)).keys.empty());
  // Adopted by the same reader later; a new job is claimable now.
  EXPECT_EQ(q.ensure_epoch("e3", "e2", 0).second, EpochState::Adopted);
  q.enqueue({{"k", 5, 0x20, "j2"}}, 0);
  auto c = q.claim(10, 10, std::chrono::milliseconds(30000));
  ASSERT_EQ(c.keys.size(), 1u);
  EXPECT_EQ(c.keys[0].bodies, std::vector<std::string>{"j2"});
  // A sequence that went back (an AOF that lost its tail) is a loss too.
  EXPECT_EQ(q.ensure_epoch("e4", "e2", 1000).second, EpochState::Lost);
}

// The format marker (meta `format`, kQueueFormat): a queue written in another format is refused
// by the reader's start, by a claim and by check_format(), untouched; a reset empties it.
TEST(QueueFormat, AQueueInAnotherFormatIsRefusedUntouchedAndAResetEmptiesIt) {
  const auto& s = test::servers();
  RedisConfig rc;
  rc.host = s.redis_host;
  rc.port = s.redis_port;
  Redis redis(rc);
  const std::string prefix = test::unique_name("formatq") + ":{x}";
  JobQueue q(redis, prefix);
  auto [epoch, state] = q.ensure_epoch("e1");
  EXPECT_EQ(state, EpochState::FirstStart);
  EXPECT_EQ(reply_to_string(redis.command({"HGET", prefix + ":meta", "format"}).get()),
            kQueueFormat)
      << "a new queue is marked with this build's format";
  EXPECT_EQ(q.check_format(), kQueueFormat);
  q.enqueue({{"k", 0, 0x10, "j1"}}, 0x18);
  // Another walfold version's queue: its marker differs (and it has a key this layout lacks).
  redis.command({"HSET", prefix + ":meta", "format", "0-other"});
  redis.command({"SET", prefix + ":otherlayout", "x"});
  auto refused = [&](auto&& call, const char* what) {
    try {
      call();
      ADD_FAILURE() << what << " accepted a queue in another format";
    } catch (const DataError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("format '0-other'"), std::string::npos) << m;
      EXPECT_NE(m.find("walfold reconcile --from-lsn"), std::string::npos) << m;
      EXPECT_NE(m.find("--stop-at-lsn current"), std::string::npos) << m;
    }
  };
  refused([&] { q.ensure_epoch("e2", "e1", 1); }, "the reader's start");
  refused([&] { q.ensure_epoch("e2"); }, "a new reader's start");
  refused([&] { q.claim(10, 10, std::chrono::milliseconds(30000)); }, "a claim");
  refused([&] { q.check_format(); }, "check_format");
  EXPECT_EQ(reply_to_string(redis.command({"HGET", prefix + ":meta", "epoch"}).get()), "e1")
      << "the refusal changed the queue";
  EXPECT_EQ(q.oldest_pending_commit(), std::optional<Lsn>(0x10));
  EXPECT_EQ(redis.command({"EXISTS", prefix + ":otherlayout"})->integer, 1);
  // reconcile --full / --from-lsn: the queue is emptied, every key under the prefix, and marked.
  q.reset("e3");
  EXPECT_EQ(redis.command({"EXISTS", prefix + ":otherlayout", prefix + ":k:k"})->integer, 0);
  EXPECT_FALSE(q.oldest_pending_commit().has_value());
  EXPECT_EQ(q.check_format(), kQueueFormat);
  EXPECT_EQ(q.ensure_epoch("e4", "e3", 0).second, EpochState::Adopted);
}

// A queue written before the marker existed has this layout: adopted, then marked.
TEST(QueueFormat, AnUnmarkedQueueIsAdoptedAndMarked) {
  const auto& s = test::servers();
  RedisConfig rc;
  rc.host = s.redis_host;
  rc.port = s.redis_port;
  Redis redis(rc);
  const std::string prefix = test::unique_name("formatq") + ":{x}";
  JobQueue q(redis, prefix);
  q.ensure_epoch("e1");
  q.enqueue({{"k", 0, 0x10, "j1"}}, 0x18);
  redis.command({"HDEL", prefix + ":meta", "format"});
  EXPECT_EQ(q.check_format(), "");
  ASSERT_EQ(q.claim(10, 10, std::chrono::milliseconds(30000)).keys.size(), 1u)
      << "an unmarked queue is this layout: workers go on";
  EXPECT_EQ(q.ensure_epoch("e2", "e1", 1).second, EpochState::Adopted);
  EXPECT_EQ(q.check_format(), kQueueFormat);
  EXPECT_EQ(q.oldest_pending_commit(), std::optional<Lsn>(0x10)) << "adopting lost the job";
}

}  // namespace
}  // namespace walfold::queue
