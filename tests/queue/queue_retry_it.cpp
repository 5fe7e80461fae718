// Integration tests for issue #4 against a real Redis: aging (bounded wait), retries with
// backoff, dead letters (blocking only their key), `walfold queue`, pause/resume, a worker that
// dies mid-batch, nothing left behind, and the Redis settings check.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/lsn.h"
#include "queue/job.h"
#include "queue/job_queue.h"
#include "queue/redis.h"
#include "queue/settings.h"
#include "tests/harness/servers.h"

namespace walfold::queue {
namespace {

using namespace std::chrono_literals;

constexpr auto kLease = std::chrono::milliseconds(60000);

using test::redis_config;

EnqueueItem item(const std::string& key, int priority, Lsn lsn, std::string body) {
  return EnqueueItem{key, priority, lsn, std::move(body)};
}
std::vector<std::string> keys_of(const Claim& c) {
  std::vector<std::string> out;
  for (const auto& k : c.keys) out.push_back(k.key);
  return out;
}

class QueueIssue4 : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<Redis>(redis_config());
    redis_prefix_ = test::unique_name("wfq");
    slot_ = test::unique_name("s");
    prefix_ = queue_prefix(redis_prefix_, slot_);
    make_queue({});
  }
  void make_queue(QueueOptions o) {
    q_ = std::make_unique<JobQueue>(*redis_, prefix_, o);
    q_->ensure_epoch("test-epoch");
  }
  std::string cmd(const std::vector<std::string>& argv) { return test::redis_cmd(argv); }
  // Ends a key's backoff now (instead of waiting for it): white-box, the delayed set's score of
  // its unit (its lane after a claim that failed as a whole, else the key, detached).
  void end_backoff(const std::string& key) {
    cmd({"ZADD", prefix_ + ":delayed", "XX", "0", unit(key)});
  }
  // Format 3 (white-box): a key's unit is its lane "l:<n>", or "k:<key>" while it is detached.
  std::string unit(const std::string& key) {
    if (cmd({"HEXISTS", prefix_ + ":detached", key}) == "1") return "k:" + key;
    return "l:" + std::to_string(lane_of_key(key, kDefaultLanes));
  }
  bool in(const std::string& set, const std::string& key) {
    return cmd({"ZSCORE", prefix_ + ":" + set, unit(key)}) != "(nil)";
  }
  // n distinct keys "<stem><i>" that all hash into one lane.
  static std::vector<std::string> lane_mates(const std::string& stem, std::size_t n) {
    std::map<std::uint32_t, std::vector<std::string>> by_lane;
    for (int i = 0;; ++i) {
      auto k = stem + std::to_string(i);
      auto& v = by_lane[lane_of_key(k, kDefaultLanes)];
      v.push_back(k);
      if (v.size() == n) return v;
    }
  }
  // A configuration file for `walfold queue` pointing at this queue.
  std::string write_config() {
    auto path = std::filesystem::temp_directory_path() / (slot_ + ".yaml");
    std::ofstream(path) << "postgres: {dsn: \"host=127.0.0.1 dbname=unused\", slot: " << slot_
                        << "}\nredis: {host: " << test::servers().redis_host
                        << ", port: " << test::servers().redis_port << ", prefix: " << redis_prefix_
                        << "}\n";
    return path.string();
  }
  test::CmdResult walfold(std::vector<std::string> args) {
    std::vector<std::string> argv{test::walfold_binary(), "queue", "-c", write_config()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv, 60);
  }

  std::unique_ptr<Redis> redis_;
  std::string redis_prefix_, slot_, prefix_;
  std::unique_ptr<JobQueue> q_;
};

// A key waiting out a backoff is busy: an urgent job enqueued meanwhile neither puts it in
// `ready` early nor is lost; the lift is applied when the backoff ends (enqueue.lua learns
// where a key stands from owner/delayed/dead).
TEST_F(QueueIssue4, UrgentJobForADelayedKeyLiftsItWhenItsBackoffEnds) {
  q_->enqueue({item("slow", 9, 1, "s0")}, 0);
  Claim c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"slow"}));
  auto r = q_->settle(c.fence, {{"slow", 0, Outcome::Retry, "transient", 1.0}});
  ASSERT_EQ(r.delayed.size(), 1u);
  q_->enqueue({item("other", 5, 2, "o0"), item("slow", 0, 3, "s1-urgent")}, 0);
  EXPECT_FALSE(in("ready", "slow")) << "a delayed key went to ready before its backoff ended";
  EXPECT_TRUE(in("delayed", "slow"));
  EXPECT_EQ(keys_of(q_->claim(10, 10, kLease)), (std::vector<std::string>{"other"}));
  end_backoff("slow");
  q_->enqueue({item("later", 3, 4, "l0")}, 0);
  c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"slow", "later"}))
      << "the urgent job's lift was not applied when the backoff ended";
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"s0", "s1-urgent"}));
}

// --- Priorities and aging -------------------------------------------------------------------

TEST_F(QueueIssue4, HigherPriorityFirstAcrossKeysButFifoWithinAKey) {
  q_->enqueue({item("low", 9, 1, "l0"), item("mid", 5, 2, "m0"), item("low", 0, 3, "l1-urgent"),
               item("top", 0, 4, "t0"), item("mid", 5, 5, "m1")},
              0);
  // "low" was lifted by its urgent second job (score of l1) but keeps l0 before l1.
  Claim c = q_->claim(10, 10, kLease);
  EXPECT_EQ(keys_of(c), (std::vector<std::string>{"low", "top", "mid"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"l0", "l1-urgent"}));
  EXPECT_EQ(c.keys[0].priorities, (std::vector<int>{9, 0}));
  EXPECT_EQ(c.keys[2].bodies, (std::vector<std::string>{"m0", "m1"}));
}

TEST_F(QueueIssue4, AnAgedLowPriorityJobIsServedBeforeNewerUrgentOnes) {
  QueueOptions o;
  o.aging_ms = 20;  // priority 3 ages past priority 0 after 60 ms
  make_queue(o);
  q_->enqueue({item("old-low", 3, 1, "x")}, 0);
  std::this_thread::sleep_for(200ms);  // at least this long: more than 3 * 20 ms
  q_->enqueue({item("new-urgent", 0, 2, "y")}, 0);
  EXPECT_EQ(keys_of(q_->claim(1, 10, kLease)), (std::vector<std::string>{"old-low"}));
  EXPECT_EQ(keys_of(q_->claim(1, 10, kLease)), (std::vector<std::string>{"new-urgent"}));

  // Without the wait, priority decides (an hour per level: no test machine is that slow).
  prefix_ = queue_prefix(test::unique_name("wfq"), "x");
  o.aging_ms = 3600000;
  make_queue(o);
  q_->enqueue({item("old-low", 3, 1, "x")}, 0);
  q_->enqueue({item("new-urgent", 0, 2, "y")}, 0);
  EXPECT_EQ(keys_of(q_->claim(1, 10, kLease)), (std::vector<std::string>{"new-urgent"}));
}

// Starvation: a flood of priority-0 jobs arrives 5 times faster than they are served, so the
// backlog only grows. A priority-5 job must still be served, and ahead of every urgent job that
// arrived more than 5 * aging_ms after it (the documented bound, on Redis's clock). With strict
// priorities (no aging) it would never come out while the flood lasts.
TEST_F(QueueIssue4, NoStarvationUnderAFloodOfUrgentJobs) {
  constexpr int kPriority = 5;
  QueueOptions o;
  o.aging_ms = 10;  // bound: 50 ms
  make_queue(o);
  Lsn lsn = 1;
  int next_key = 0;
  auto flood = [&](int n) {
    std::vector<EnqueueItem> batch;
    for (int i = 0; i < n; ++i)
      batch.push_back(item("h" + std::to_string(next_key++), 0, lsn++, "high"));
    q_->enqueue(batch, 0);
  };
  flood(200);  // a backlog before the low job arrives
  q_->enqueue({item("low", kPriority, lsn++, "low")}, 0);
  const long long low_enqueued = q_->entries("low", 1).at(0).enqueued_ms;

  long long served_high = 0, served_high_after_bound = 0;
  bool low_served = false;
  for (int round = 0; round < 20000 && !low_served; ++round) {
    flood(5);
    Claim c = q_->claim(1, 1, kLease);
    ASSERT_EQ(c.keys.size(), 1u);
    const auto& k = c.keys[0];
    if (k.key == "low") {
      low_served = true;
    } else {
      ++served_high;
      if (k.enqueued_ms[0] > low_enqueued + kPriority * o.aging_ms) ++served_high_after_bound;
    }
    ASSERT_TRUE(q_->ack(c.fence, {{k.key, 1}}).empty());
    if (round % 50 == 0) std::this_thread::sleep_for(1ms);  // let Redis's clock move on
  }
  ASSERT_TRUE(low_served) << "the priority-" << kPriority << " job starved behind " << served_high
                          << " urgent jobs";
  EXPECT_EQ(served_high_after_bound, 0)
      << "urgent jobs that arrived more than " << kPriority * o.aging_ms
      << " ms after the low one overtook it";
  EXPECT_GT(served_high, 200) << "the low job should wait for the older backlog";
  EXPECT_GT(q_->counts().ready_keys, 0) << "the flood must still be going on";
}

// --- Retries, backoff, dead letters ---------------------------------------------------------

TEST_F(QueueIssue4, RetriesBackOffExponentiallyWithJitterAndACap) {
  QueueOptions o;
  o.retry = {1000, 8000, 1000};
  make_queue(o);
  q_->enqueue({item("k", 5, 1, "k0"), item("k", 5, 2, "k1"), item("m", 5, 3, "m0")}, 0);
  std::vector<long long> delays, attempts;
  for (int i = 0; i < 6; ++i) {
    Claim c = q_->claim(1, 10, kLease);
    ASSERT_EQ(keys_of(c), (std::vector<std::string>{"k"})) << "attempt " << i;
    EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"k0", "k1"}));
    auto r = q_->settle(c.fence, {{"k", 0, Outcome::Retry, "mongodb unavailable", 1.0}});
    ASSERT_EQ(r.delayed.size(), 1u);
    delays.push_back(r.delayed[0].delay_ms);
    attempts.push_back(r.delayed[0].attempts);
    EXPECT_TRUE(in("delayed", "k"));
    EXPECT_FALSE(in("ready", "k"));
    // Waiting out its backoff, the key is not claimable; other keys are.
    EXPECT_EQ(keys_of(q_->claim(10, 10, kLease)),
              (i == 0 ? std::vector<std::string>{"m"} : std::vector<std::string>{}));
    end_backoff("k");
  }
  // Full jitter pinned at 1: the cap itself, doubling from initial_ms up to max_ms.
  EXPECT_EQ(delays, (std::vector<long long>{1000, 2000, 4000, 8000, 8000, 8000}));
  EXPECT_EQ(attempts, (std::vector<long long>{1, 2, 3, 4, 5, 6}));
  // Transient failures never dead-letter, however many.
  EXPECT_EQ(q_->counts().dead_keys, 0);

  // Random jitter: uniform in [0, cap].
  std::set<long long> seen;
  for (int i = 0; i < 20; ++i) {
    Claim c = q_->claim(1, 10, kLease);
    ASSERT_EQ(keys_of(c), (std::vector<std::string>{"k"}));
    auto r = q_->settle(c.fence, {{"k", 0, Outcome::Retry, "write conflict"}});
    ASSERT_EQ(r.delayed.size(), 1u);
    EXPECT_GE(r.delayed[0].delay_ms, 0);
    EXPECT_LE(r.delayed[0].delay_ms, 8000);
    seen.insert(r.delayed[0].delay_ms);
    end_backoff("k");
  }
  EXPECT_GT(seen.size(), 5u) << "the jitter is not random";

  // Progress resets the count: jobs done, then a failure of the next job is its attempt 1.
  Claim c = q_->claim(1, 10, kLease);
  auto r = q_->settle(c.fence, {{"k", 1, Outcome::Retry, "x", 1.0}});
  ASSERT_EQ(r.delayed.size(), 1u);
  EXPECT_EQ(r.delayed[0].attempts, 1);
  EXPECT_EQ(r.delayed[0].delay_ms, 1000);
  end_backoff("k");
  c = q_->claim(1, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"k1"}));
  EXPECT_TRUE(q_->ack(c.fence, {{"k", 1}}).empty());
  EXPECT_EQ(cmd({"HLEN", prefix_ + ":attempts"}), "0");
}

TEST_F(QueueIssue4, AKeyInBackoffIsRetriedByClaimOnceDue) {
  QueueOptions o;
  o.retry = {1, 1, 10};  // 1 ms: due at once
  make_queue(o);
  q_->enqueue({item("k", 5, 1, "k0")}, 0);
  Claim c = q_->claim(1, 10, kLease);
  q_->settle(c.fence, {{"k", 0, Outcome::Retry, "x", 1.0}});
  std::this_thread::sleep_for(50ms);  // at least the backoff
  c = q_->claim(1, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"k0"}));
}

TEST_F(QueueIssue4, APoisonJobGoesDeadBlocksOnlyItsKeyAndHoldsTheCheckpoint) {
  QueueOptions o;
  o.retry = {1000, 1000, 3};
  make_queue(o);
  q_->enqueue({item("a:1", 5, 0x10, "good"), item("a:1", 5, 0x20, "poison"),
               item("a:1", 5, 0x30, "after"), item("a:2", 5, 0x15, "other")},
              0);
  // First claim: the good job is folded, the next one fails.
  Claim c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"a:1", "a:2"}));
  auto r = q_->settle(c.fence, {{"a:1", 1, Outcome::Poison, "NaN amount"}, {"a:2", 1}});
  ASSERT_EQ(r.delayed.size(), 1u);
  EXPECT_EQ(r.delayed[0].attempts, 1);
  for (int attempt = 2; attempt <= 3; ++attempt) {
    end_backoff("a:1");
    c = q_->claim(10, 10, kLease);
    ASSERT_EQ(keys_of(c), (std::vector<std::string>{"a:1"}));
    EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"poison", "after"}));
    r = q_->settle(c.fence, {{"a:1", 0, Outcome::Poison, "NaN amount in column amount"}});
  }
  ASSERT_EQ(r.dead.size(), 1u);
  EXPECT_EQ(r.dead[0].key, "a:1");
  EXPECT_EQ(r.dead[0].attempts, 3);

  auto dead = q_->dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].key, "a:1");
  EXPECT_EQ(dead[0].attempts, 3);
  EXPECT_EQ(dead[0].reason, "NaN amount in column amount");
  EXPECT_EQ(dead[0].lsn, lsn_key(0x20));
  EXPECT_EQ(dead[0].jobs, 2);
  EXPECT_GT(dead[0].at_ms, 0);

  // Blocked: not claimable, even when new (urgent) jobs arrive for it; other keys go on.
  q_->enqueue({item("a:1", 0, 0x40, "newer"), item("a:3", 5, 0x41, "third")}, 0);
  EXPECT_EQ(keys_of(q_->claim(10, 10, kLease)), (std::vector<std::string>{"a:3"}));
  EXPECT_TRUE(q_->claim(10, 10, kLease).keys.empty());
  EXPECT_FALSE(in("ready", "a:1"));
  EXPECT_FALSE(in("delayed", "a:1"));
  // The checkpoint stays before the dead job.
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x20});
  auto n = q_->counts();
  EXPECT_EQ(n.dead_keys, 1);

  // Retried by an operator: back in the queue, lifted by the urgent job, order intact.
  q_->enqueue({item("a:9", 3, 0x50, "z")}, 0);
  EXPECT_TRUE(q_->retry_dead("a:1"));
  EXPECT_FALSE(q_->retry_dead("a:1")) << "no longer dead";
  c = q_->claim(1, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"a:1"})) << "the priority-0 job lifts it";
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"poison", "after", "newer"}));
  // Its attempts start again from zero.
  r = q_->settle(c.fence, {{"a:1", 0, Outcome::Poison, "still"}});
  ASSERT_EQ(r.delayed.size(), 1u);
  EXPECT_EQ(r.delayed[0].attempts, 1);
}

// Format 3: keys share lanes, but retries and dead letters stay per key. Two keys of one lane,
// one of them poison: the poison key leaves the lane (detached, with its later jobs), the other
// keeps flowing, jobs enqueued for the dead key afterwards wait behind it, and the checkpoint
// holds at the dead job.
TEST_F(QueueIssue4, TwoKeysInOneLaneWhereOneIsPoisonTheOtherKeepsFlowing) {
  QueueOptions o;
  o.retry = {1000, 1000, 1};  // dead at the first poison failure
  make_queue(o);
  const auto keys = lane_mates("acct", 2);
  const std::string& bad = keys[0];
  const std::string& good = keys[1];
  q_->enqueue({item(bad, 5, 0x10, "bad1"), item(good, 5, 0x11, "good1"), item(bad, 5, 0x12, "bad2"),
               item(good, 5, 0x13, "good2")},
              0);
  Claim c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{bad, good})) << "one lane, two keys";
  auto r = q_->settle(c.fence, {{bad, 0, Outcome::Poison, "NaN amount"}, {good, 2}});
  ASSERT_EQ(r.dead.size(), 1u);
  EXPECT_EQ(r.dead[0].key, bad);
  EXPECT_EQ(unit(bad), "k:" + bad) << "the dead key left its lane";
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x10});
  // The good key goes on, in the same lane; the dead key's newer jobs wait behind it.
  q_->enqueue({item(bad, 0, 0x20, "bad3"), item(good, 5, 0x21, "good3")}, 0);
  c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{good}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"good3"}));
  ASSERT_TRUE(q_->settle(c.fence, {{good, 1}}).rejected.empty());
  EXPECT_TRUE(q_->claim(10, 10, kLease).keys.empty()) << "the dead key was claimable";
  std::vector<std::string> waiting;
  for (const auto& e : q_->entries(bad, 10)) waiting.push_back(e.body);
  EXPECT_EQ(waiting, (std::vector<std::string>{"bad1", "bad2", "bad3"}));
  EXPECT_EQ(q_->dead_letters().at(0).jobs, 3);
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x10}) << "the checkpoint passed the dead job";
  EXPECT_EQ(q_->counts().pending_jobs, 3);
}

// A detached key (here: a transient failure) has its own list until it empties; jobs enqueued
// meanwhile go there, after its earlier ones; once folded it rejoins its lane, and its next jobs
// are claimed from the lane, in order.
TEST_F(QueueIssue4, ADetachedKeyRejoinsItsLaneInOrder) {
  const auto keys = lane_mates("acct", 2);
  const std::string& a = keys[0];
  const std::string& b = keys[1];
  q_->enqueue({item(a, 5, 0x10, "a1"), item(b, 5, 0x11, "b1"), item(a, 5, 0x12, "a2")}, 0);
  Claim c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{a, b}));
  auto r = q_->settle(c.fence, {{a, 1, Outcome::Retry, "MongoDB unavailable"}, {b, 1}});
  ASSERT_EQ(r.delayed.size(), 1u);
  EXPECT_EQ(unit(a), "k:" + a);
  q_->enqueue({item(a, 5, 0x20, "a3"), item(b, 5, 0x21, "b2")}, 0);
  end_backoff(a);
  std::vector<std::string> folded;
  c = q_->claim(10, 10, kLease);
  ASSERT_EQ(c.keys.size(), 2u);
  std::vector<AckItem> acks;
  for (const auto& k : c.keys) {
    if (k.key == a) folded.insert(folded.end(), k.bodies.begin(), k.bodies.end());
    if (k.key == b) {
      EXPECT_EQ(k.bodies, (std::vector<std::string>{"b2"}));
    }
    acks.push_back({k.key, static_cast<int>(k.bodies.size())});
  }
  EXPECT_EQ(folded, (std::vector<std::string>{"a2", "a3"}));
  ASSERT_TRUE(q_->settle(c.fence, acks).rejected.empty());
  EXPECT_EQ(unit(a), "l:" + std::to_string(lane_of_key(a, kDefaultLanes))) << "not rejoined";
  EXPECT_EQ(cmd({"EXISTS", prefix_ + ":detached", prefix_ + ":dlanes", prefix_ + ":k:" + a}), "0");
  q_->enqueue({item(b, 5, 0x30, "b3"), item(a, 5, 0x31, "a4"), item(a, 5, 0x32, "a5")}, 0);
  c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{b, a})) << "both from the lane";
  EXPECT_EQ(c.keys[1].bodies, (std::vector<std::string>{"a4", "a5"}));
  ASSERT_TRUE(q_->settle(c.fence, {{a, 2}, {b, 1}}).rejected.empty());
  EXPECT_EQ(q_->oldest_pending_commit(), std::nullopt);
  EXPECT_EQ(q_->counts().pending_jobs, 0);
}

// The failing key is the lane's head, its lane mates' jobs after it were folded: those are
// acknowledged (their commits leave `pending`), only the failing key waits, and its retry gets
// its own jobs alone.
TEST_F(QueueIssue4, RetryOfAKeyWhoseLaneMatesWereAcked) {
  const auto keys = lane_mates("acct", 3);
  q_->enqueue(
      {item(keys[0], 5, 0x10, "x1"), item(keys[1], 5, 0x11, "y1"), item(keys[2], 5, 0x12, "z1"),
       item(keys[0], 5, 0x13, "x2"), item(keys[1], 5, 0x14, "y2")},
      0x20);
  Claim c = q_->claim(10, 10, kLease);
  ASSERT_EQ(c.keys.size(), 3u);
  auto r = q_->settle(c.fence,
                      {{keys[0], 0, Outcome::Retry, "write conflict"}, {keys[1], 2}, {keys[2], 1}});
  ASSERT_EQ(r.delayed.size(), 1u);
  EXPECT_EQ(r.delayed[0].key, keys[0]);
  EXPECT_EQ(r.delayed[0].attempts, 1);
  for (Lsn l : {0x11, 0x12, 0x14})
    EXPECT_EQ(cmd({"ZSCORE", prefix_ + ":pending", lsn_key(l)}), "(nil)") << l;
  EXPECT_EQ(q_->oldest_pending_commit(), Lsn{0x10});
  EXPECT_EQ(q_->counts().pending_jobs, 2);
  EXPECT_EQ(cmd({"LLEN", prefix_ + ":" + unit(keys[1])}), "0") << "the lane kept folded jobs";
  EXPECT_TRUE(q_->claim(10, 10, kLease).keys.empty());
  end_backoff(keys[0]);
  c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{keys[0]}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"x1", "x2"}));
  ASSERT_TRUE(q_->settle(c.fence, {{keys[0], 2}}).rejected.empty());
  EXPECT_EQ(q_->oldest_pending_commit(), std::nullopt);
  EXPECT_EQ(cmd({"HLEN", prefix_ + ":attempts"}), "0");
}

TEST_F(QueueIssue4, AStaleWorkerCannotDeadLetterOrDelayAKey) {
  q_->enqueue({item("k", 5, 1, "k0")}, 0);
  Claim c1 = q_->claim(1, 10, 200ms);
  std::this_thread::sleep_for(600ms);  // at least the lease
  Claim c2 = q_->claim(1, 10, kLease);
  ASSERT_EQ(keys_of(c2), (std::vector<std::string>{"k"}));
  auto r = q_->settle(c1.fence, {{"k", 0, Outcome::Poison, "late"}});
  EXPECT_EQ(r.rejected, (std::vector<std::string>{"k"}));
  EXPECT_TRUE(r.dead.empty());
  EXPECT_TRUE(r.delayed.empty());
  EXPECT_EQ(cmd({"HLEN", prefix_ + ":attempts"}), "0");
}

// A worker dies in the middle of a batch (it folded part of it and never acknowledged): after
// its lease its keys are redelivered with the same jobs, in the same order, ahead of less urgent
// keys; the LSN guard of the fold means nothing is applied twice; the dead worker's late ack is
// refused. (The daemon itself is SIGKILLed under load in tests/scenarios/recovery_it.cpp.)
TEST_F(QueueIssue4, AWorkerKilledMidBatchHasItsJobsRedeliveredInOrderAndPriority) {
  q_->enqueue({item("a:1", 1, 0x10, "1"), item("a:1", 1, 0x20, "2"), item("a:2", 1, 0x30, "3"),
               item("a:1", 1, 0x40, "4")},
              0);
  // A read model with LSN guards, as projections/bank_fold does: key -> last folded LSN.
  std::map<std::string, Lsn> applied;
  std::map<std::string, int> effects;  // job body -> times its effect landed
  auto fold = [&](const ClaimedKey& k, std::size_t upto) {
    for (std::size_t i = 0; i < upto; ++i) {
      Lsn l = k.commits[i];
      if (l > applied[k.key]) {
        applied[k.key] = l;
        ++effects[k.bodies[i]];
      }
    }
  };
  Claim dying = q_->claim(10, 10, 300ms);
  ASSERT_EQ(keys_of(dying), (std::vector<std::string>{"a:1", "a:2"}));
  fold(dying.keys[0], 2);  // wrote jobs 1 and 2 of a:1 to MongoDB, then was killed
  // Meanwhile less urgent work arrives, enqueued before the lease runs out.
  q_->enqueue({item("a:7", 6, 0x50, "5")}, 0);
  std::this_thread::sleep_for(800ms);  // at least the lease

  std::vector<std::string> order;
  std::vector<std::string> bodies_a1;
  for (;;) {
    Claim c = q_->claim(1, 10, kLease);
    if (c.keys.empty()) break;
    const auto& k = c.keys[0];
    order.push_back(k.key);
    if (k.key == "a:1") bodies_a1 = k.bodies;
    fold(k, k.bodies.size());
    ASSERT_TRUE(q_->ack(c.fence, {{k.key, static_cast<int>(k.bodies.size())}}).empty());
  }
  EXPECT_EQ(order, (std::vector<std::string>{"a:1", "a:2", "a:7"}));
  EXPECT_EQ(bodies_a1, (std::vector<std::string>{"1", "2", "4"}));
  EXPECT_EQ(effects,
            (std::map<std::string, int>{{"1", 1}, {"2", 1}, {"3", 1}, {"4", 1}, {"5", 1}}));
  // The dead worker's acknowledgement, had it come late, is refused.
  EXPECT_EQ(q_->ack(dying.fence, {{"a:1", 2}}), (std::vector<std::string>{"a:1"}));
  EXPECT_EQ(q_->counts().pending_jobs, 0);
}

// --- walfold queue --------------------------------------------------------------------------

TEST_F(QueueIssue4, CliListsInspectsRetriesAndPurgesDeadLetters) {
  QueueOptions o;
  o.retry = {1000, 1000, 1};
  make_queue(o);
  Job job;
  job.commit_lsn = 0x16B374D848ULL;
  job.end_lsn = job.commit_lsn + 0x80;
  job.key = "a:7";
  job.changes.push_back({2,  // a table index of the projection: the queue does not look
                         'I',
                         {{Value::Text, "99"},
                          {Value::Text, "7"},
                          {Value::Text, "NaN"},
                          {Value::Text, "deposit"},
                          {Value::Null, ""},
                          {Value::Text, "2026-01-01 00:00:00+00"}},
                         {}});
  q_->enqueue({{"a:7", 5, job.commit_lsn, encode_job(job)},
               item("a:7", 5, 0x16B374D900ULL, "\x01not a job"),
               item("a:8", 5, 0x16B374D901ULL, "x")},
              0);
  Claim c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"a:7", "a:8"}));
  auto r = q_->settle(c.fence, {{"a:7", 0, Outcome::Poison, "NaN in column amount"},
                                {"a:8", 0, Outcome::Poison, "bad too"}});
  ASSERT_EQ(r.dead.size(), 2u);

  auto list = walfold({"dead", "list"});
  EXPECT_EQ(list.status, 0) << list.output;
  EXPECT_NE(list.output.find("a:7"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("16/B374D848"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("NaN in column amount"), std::string::npos) << list.output;

  auto inspect = walfold({"dead", "inspect", "a:7"});
  EXPECT_EQ(inspect.status, 0) << inspect.output;
  for (const char* want : {"attempts   1", "amount=NaN", "kind=deposit", "16/B374D848",
                           "undecodable", "\\x01not a job"})
    EXPECT_NE(inspect.output.find(want), std::string::npos) << want << "\n" << inspect.output;

  auto stats = walfold({"stats"});
  EXPECT_EQ(stats.status, 0) << stats.output;
  EXPECT_NE(stats.output.find("dead 2"), std::string::npos) << stats.output;
  EXPECT_NE(stats.output.find("pending jobs   3"), std::string::npos) << stats.output;

  // retry frees the key: claimable again with its jobs in order.
  auto retry = walfold({"dead", "retry", "a:7"});
  EXPECT_EQ(retry.status, 0) << retry.output;
  EXPECT_EQ(walfold({"dead", "retry", "a:7"}).status, 1) << "no longer dead";
  c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"a:7"}));
  EXPECT_EQ(c.keys[0].bodies.size(), 2u);

  // purge asks for --yes, says what it costs, then drops the jobs and their pending members.
  auto refused = walfold({"dead", "purge", "a:8"});
  EXPECT_EQ(refused.status, 64) << refused.output;
  EXPECT_NE(refused.output.find("reconcile --repair"), std::string::npos) << refused.output;
  EXPECT_EQ(q_->counts().dead_keys, 1);
  auto purge = walfold({"dead", "purge", "--all", "--yes"});
  EXPECT_EQ(purge.status, 0) << purge.output;
  EXPECT_EQ(q_->counts().dead_keys, 0);
  EXPECT_EQ(cmd({"EXISTS", prefix_ + ":k:a:8"}), "0");
  EXPECT_EQ(cmd({"ZSCORE", prefix_ + ":pending", lsn_key(0x16B374D901ULL)}), "(nil)");
  EXPECT_EQ(cmd({"HEXISTS", prefix_ + ":left", lsn_key(0x16B374D901ULL)}), "0");
  EXPECT_EQ(cmd({"HEXISTS", prefix_ + ":since", lsn_key(0x16B374D901ULL)}), "0");
  EXPECT_EQ(cmd({"HEXISTS", prefix_ + ":since", lsn_key(0x16B374D848ULL)}), "1")
      << "a:7's commit is still pending";
  EXPECT_EQ(q_->counts().pending_jobs, 2) << "a:7's jobs stay pending";
}

TEST_F(QueueIssue4, PauseStopsClaimsNotEnqueues) {
  q_->enqueue({item("k", 5, 1, "a")}, 0);
  auto p = walfold({"pause"});
  ASSERT_EQ(p.status, 0) << p.output;
  EXPECT_TRUE(q_->counts().paused);
  EXPECT_TRUE(q_->claim(10, 10, kLease).keys.empty());
  q_->enqueue({item("k", 5, 2, "b")}, 0);
  EXPECT_EQ(q_->counts().pending_jobs, 2);
  auto st = walfold({"stats"});
  EXPECT_NE(st.output.find("PAUSED"), std::string::npos) << st.output;
  ASSERT_EQ(walfold({"resume"}).status, 0);
  Claim c = q_->claim(10, 10, kLease);
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"k"}));
  EXPECT_EQ(c.keys[0].bodies, (std::vector<std::string>{"a", "b"}));
}

TEST_F(QueueIssue4, StatsCountByPriorityClassAndStateAndTellTheOldestAge) {
  q_->enqueue({item("a", 2, 0x10, "x"), item("a", 7, 0x11, "y"), item("b", 2, 0x12, "x"),
               item("c", 7, 0x13, "x")},
              0);
  Claim c = q_->claim(1, 10, kLease);  // a (priority 2 head) becomes active
  ASSERT_EQ(keys_of(c), (std::vector<std::string>{"a"}));
  auto st = q_->stats();
  EXPECT_EQ(st.by_priority[2].active, 1);
  EXPECT_EQ(st.by_priority[2].ready, 1);
  EXPECT_EQ(st.by_priority[2].jobs, 3);
  EXPECT_EQ(st.by_priority[7].ready, 1);
  EXPECT_EQ(st.by_priority[7].jobs, 1);
  ASSERT_TRUE(st.oldest_pending_commit.has_value());
  EXPECT_EQ(*st.oldest_pending_commit, Lsn{0x10});
  ASSERT_TRUE(st.oldest_pending_key.has_value());
  EXPECT_EQ(*st.oldest_pending_key, "a");
  ASSERT_TRUE(st.oldest_pending_age_ms.has_value());
  EXPECT_GE(*st.oldest_pending_age_ms, 0);
}

// --- Bounded memory -------------------------------------------------------------------------

// Finished jobs leave nothing behind: after a run with retries, a dead letter retried and purged
// keys, the queue holds only its meta hash. (bench/queue_memory measures used_memory over time.)
TEST_F(QueueIssue4, FinishedJobsLeaveNothingBehind) {
  QueueOptions o;
  o.retry = {1, 1, 2};
  make_queue(o);
  Lsn lsn = 1;
  for (int round = 0; round < 50; ++round) {
    std::vector<EnqueueItem> batch;
    for (int i = 0; i < 40; ++i)
      batch.push_back(item("a:" + std::to_string((round * 7 + i) % 97), i % 4, lsn++, "job"));
    q_->enqueue(batch, lsn);
    for (;;) {
      Claim c = q_->claim(16, 8, kLease);
      if (c.keys.empty()) break;
      std::vector<AckItem> acks;
      for (const auto& k : c.keys) {
        if (lsn % 5 == 0) {
          acks.push_back({k.key, 0, Outcome::Retry, "transient", 0.0});
        } else {
          acks.push_back({k.key, static_cast<int>(k.bodies.size())});
        }
        ++lsn;
      }
      q_->settle(c.fence, acks);
    }
  }
  for (;;) {  // the retried ones
    std::this_thread::sleep_for(5ms);
    Claim c = q_->claim(100, 100, kLease);
    if (c.keys.empty() && q_->counts().pending_jobs == 0) break;
    std::vector<AckItem> acks;
    for (const auto& k : c.keys) acks.push_back({k.key, static_cast<int>(k.bodies.size())});
    q_->settle(c.fence, acks);
  }
  // What stays: the epoch (meta) and the idle workers' wake-up stream, which holds one entry
  // whatever went through the queue (queue/wake.h).
  std::set<std::string> left;
  std::istringstream keys(cmd({"KEYS", prefix_ + ":*"}));
  for (std::string k; std::getline(keys, k);) left.insert(k);
  EXPECT_EQ(left, (std::set<std::string>{prefix_ + ":meta", prefix_ + ":wake"}));
  EXPECT_EQ(cmd({"XLEN", prefix_ + ":wake"}), "1");
}

// --- Redis settings -------------------------------------------------------------------------

TEST(QueueRedisSettings, WarnsAboutNoAofAndEviction) {
  Redis redis(redis_config());
  auto ok = check_redis_settings(redis);
  EXPECT_TRUE(ok.checked) << ok.error;
  EXPECT_TRUE(ok.problems.empty()) << "the harness runs Redis with AOF and noeviction";

  struct Restore {
    ~Restore() {
      test::redis_cmd({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
      test::redis_cmd({"CONFIG", "SET", "appendonly", "yes"});
    }
  } restore;
  ASSERT_EQ(test::redis_cmd({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}), "OK");
  ASSERT_EQ(test::redis_cmd({"CONFIG", "SET", "appendonly", "no"}), "OK");
  auto bad = check_redis_settings(redis);
  ASSERT_TRUE(bad.checked);
  ASSERT_EQ(bad.problems.size(), 2u);
  EXPECT_NE(bad.problems[0].find("appendonly is 'no'"), std::string::npos) << bad.problems[0];
  EXPECT_NE(bad.problems[1].find("allkeys-lru"), std::string::npos) << bad.problems[1];
}

TEST(QueueRedisSettings, SaysWhyWhenTheSettingsCannotBeChecked) {
  // A managed Redis often refuses CONFIG: here an ACL takes it from the default user.
  struct Restore {
    ~Restore() { test::redis_cmd({"ACL", "SETUSER", "default", "+config"}); }
  } restore;
  ASSERT_EQ(test::redis_cmd({"ACL", "SETUSER", "default", "-config"}), "OK");
  Redis redis(redis_config());
  auto c = check_redis_settings(redis);
  EXPECT_FALSE(c.checked);
  EXPECT_TRUE(c.problems.empty());
  EXPECT_NE(c.error.find("config"), std::string::npos) << c.error;
  warn_about_redis_settings(redis_config());  // logs it and does not throw
}

}  // namespace
}  // namespace walfold::queue
