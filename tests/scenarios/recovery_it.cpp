// Redis loses data; walfold notices within seconds, says so loudly, and replays from the slot:
// the read model ends exactly equal to PostgreSQL, nothing lost, nothing counted twice.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "common/lsn.h"
#include "queue/job_queue.h"
#include "queue/redis.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

struct LiveRun {
  BankEnv env;
  std::unique_ptr<Process> daemon;

  LiveRun() {
    EXPECT_EQ(env.cmd("setup", {"--schema"}).status, 0);
    EXPECT_EQ(env.cmd("loadgen", {"--users", "200", "--transactions", "0", "--no-progress"}).status,
              0);
    daemon = std::make_unique<Process>(
        std::vector<std::string>{walfold_binary(), "run", "--config", env.config_path});
    EXPECT_TRUE(daemon->wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
        << daemon->output();
  }
  // Bank activity in the background for about `seconds`.
  std::unique_ptr<Process> activity(int seconds, int seed) {
    return std::make_unique<Process>(std::vector<std::string>{
        walfold_binary(), "loadgen", "--config", env.config_path, "--reuse", "--transactions",
        std::to_string(seconds * 400), "--rate", "400", "--seed", std::to_string(seed),
        "--update-share", "0.1", "--delete-share", "0.05", "--no-progress"});
  }
  void finish() {
    stop_cleanly(*daemon);
    run_until_caught_up(env);
    expect_read_model_exact(env);
    expect_reports_identical(env);
    expect_verify_clean(env);
  }
};

void wait_ok(Process& p) {
  auto st = p.wait(std::chrono::seconds(120));
  ASSERT_TRUE(st.has_value());
  ASSERT_EQ(*st, 0) << p.output();
}

TEST(Recovery, RedisFlushallMidStreamIsDetectedAndReplayed) {
  LiveRun run;
  auto load = run.activity(6, 21);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  redis_cmd({"FLUSHALL"});
  ASSERT_TRUE(run.daemon->wait_for_output("lost walfold's queue", std::chrono::seconds(15)))
      << run.daemon->output();
  wait_ok(*load);
  run.finish();
}

TEST(Recovery, RedisRestartedWithoutPersistenceIsDetectedAndReplayed) {
  LiveRun run;
  auto load = run.activity(6, 22);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  servers_ctl({"restart-redis", "--no-persistence"});
  ASSERT_TRUE(run.daemon->wait_for_output("lost walfold's queue", std::chrono::seconds(30)))
      << run.daemon->output();
  wait_ok(*load);
  run.finish();
  servers_ctl({"restart-redis"});  // persistence back on for the tests after this one
}

// `walfold queue stats`: priority class -> pending jobs of the keys whose head job has it.
std::map<int, long long> jobs_by_priority(const BankEnv& env) {
  auto r = env.cmd("queue", {"stats"});
  EXPECT_EQ(r.status, 0) << r.output;
  std::map<int, long long> out;
  std::istringstream in(r.output);
  bool table = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("priority", 0) == 0) {
      table = true;
      continue;
    }
    std::istringstream w(line);
    long long p, ready, active, delayed, dead, jobs;
    if (table && (w >> p >> ready >> active >> delayed >> dead >> jobs)) out[int(p)] = jobs;
  }
  return out;
}

// The queued jobs by their own priority, read from the queue's lists (white-box, format 3: lanes
// "l:<n>" and detached keys "k:<key>"). `walfold queue stats` classifies queue units (a lane
// holds several keys) by their head job, so a live job behind replayed ones in its lane would
// count as replay there.
std::map<int, long long> queued_jobs_by_priority(const BankEnv& env) {
  std::map<int, long long> out;
  RedisConfig rc;
  rc.host = servers().redis_host;
  rc.port = servers().redis_port;
  queue::Redis redis(rc);
  std::istringstream lists(redis_cmd({"KEYS", env.queue_prefix() + ":[kl]:*"}));
  for (std::string list; std::getline(lists, list);) {
    if (list.empty()) continue;
    auto jobs = redis.command({"LRANGE", list, "0", "-1"});
    for (size_t j = 0; j < jobs->elements; ++j)
      ++out[queue::parse_entry({jobs->element[j]->str, jobs->element[j]->len}).priority];
  }
  return out;
}

TEST(Recovery, WhatIsReplayedAfterRedisLossGoesAtReplayPriorityNewCommitsDoNot) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "20", "--transactions", "200", "--no-progress"}).status,
            0);
  // Queued at the tables' priorities (3 and 5) by a reader alone, never folded...
  auto r = env.cmd("run", {"--role", "reader", "--stop-at-lsn", "current"});
  ASSERT_EQ(r.status, 0) << r.output;
  auto before = jobs_by_priority(env);
  EXPECT_EQ(before.count(255), 0u);
  EXPECT_GT(before[3], 0);
  // ...then lost with Redis. The next reader replays all of it from the slot, at `replay`.
  redis_cmd({"FLUSHALL"});
  Process reader({walfold_binary(), "run", "--role", "reader", "--config", env.config_path});
  ASSERT_TRUE(reader.wait_for_output("lost walfold's queue while walfold was stopped",
                                     std::chrono::seconds(60)))
      << reader.output();
  ASSERT_TRUE(reader.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << reader.output();
  // A commit made after the reader started is live traffic: its own priority (3), ahead of the
  // replay backlog.
  pg_query(env.dsn,
           "WITH u AS (INSERT INTO users (full_name, email) VALUES ('Live', 'live@example.org') "
           "RETURNING id), a AS (INSERT INTO accounts (user_id, currency) SELECT id, 'EUR' FROM u "
           "RETURNING id) INSERT INTO transactions (account_id, amount, kind) SELECT id, 10, "
           "'deposit' FROM a");
  const long long replayed = [&] {
    long long n = 0;
    for (const auto& [p, jobs] : before) n += jobs;
    return n;
  }();
  std::map<int, long long> after;
  ASSERT_TRUE(wait_until(
      [&] {
        after = queued_jobs_by_priority(env);
        return after[255] == replayed && after[3] >= 2;  // the new user's and account's jobs
      },
      std::chrono::seconds(60)))
      << "replayed " << replayed << " jobs; priority 255 holds " << after[255]
      << ", priority 3 holds " << after[3];
  EXPECT_EQ(after.size(), 2u) << "only the replay class and the live commit's class";
  EXPECT_GT(jobs_by_priority(env)[255], 0) << "walfold queue stats shows the replay class";
  // The new keys are claimed first: a worker's first claim takes priority 3.
  reader.signal(SIGTERM);
  ASSERT_TRUE(reader.wait(std::chrono::seconds(60)).has_value());
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Recovery, RedisDownForThirtySecondsLosesNothing) {
  LiveRun run;
  auto load = run.activity(40, 23);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  servers_ctl({"stop-redis"});
  std::this_thread::sleep_for(std::chrono::seconds(30));
  servers_ctl({"start-redis"});
  wait_ok(*load);
  EXPECT_NE(run.daemon->output().find("redis at"), std::string::npos)
      << "the outage was not reported";
  EXPECT_TRUE(run.daemon->is_running()) << run.daemon->output();
  run.finish();
}

// Redis at its maxmemory (noeviction: the default policy) answers writes with OOM until memory
// is freed: a wait, not a fault. The reader and the workers back off and carry on; nothing is
// lost, and the daemon does not exit (it did: the OOM reply was an error of no known kind, and
// the reader's thread stopped the daemon with exit 70).
TEST(Recovery, RedisAtMaxmemoryIsWaitedOutNotFatal) {
  LiveRun run;
  auto load = run.activity(20, 24);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  struct MaxmemoryLimit {
    MaxmemoryLimit() { redis_cmd({"CONFIG", "SET", "maxmemory", "1"}); }
    ~MaxmemoryLimit() { redis_cmd({"CONFIG", "SET", "maxmemory", "0"}); }
  };
  {
    MaxmemoryLimit limit;
    ASSERT_TRUE(run.daemon->wait_for_output("OOM command not allowed", std::chrono::seconds(30)))
        << run.daemon->output();
    std::this_thread::sleep_for(std::chrono::seconds(5));
    EXPECT_TRUE(run.daemon->is_running()) << run.daemon->output();
  }
  wait_ok(*load);
  EXPECT_TRUE(run.daemon->is_running()) << run.daemon->output();
  run.finish();
}

// Commits with jobs not yet folded (P:pending holds one member per such commit).
long long pending_commits(const BankEnv& env) {
  return std::stoll(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"}));
}

TEST(Recovery, MongoUnreachableForThirtySecondsLosesNothing) {
  if (servers().mongo_is_real) GTEST_SKIP() << "pause-mongo controls the stand-in only";
  BankEnv env;
  // The same installation with socketTimeoutMS=2000 in the URI (libmongoc waits 5 minutes by
  // default): operations on connections to the hung server give up, so the workers see errors,
  // release their keys and back off; the requests they gave up on stay in the paused server's
  // socket buffers and are applied when it resumes, late, after other attempts of the same jobs.
  const std::string cfg = env.dir + "/short-socket-timeout.yaml";
  {
    std::ifstream in(env.config_path);
    std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string uri = servers().mongo_uri;
    auto at = yaml.find("\"" + uri + "\"");
    ASSERT_NE(at, std::string::npos) << yaml;
    yaml.insert(at + 1 + uri.size(), std::string(uri.find('?') == std::string::npos ? "/?" : "&") +
                                         "socketTimeoutMS=2000");
    std::ofstream(cfg) << yaml;
  }
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "200", "--transactions", "0", "--no-progress"}).status,
            0);
  Process daemon({walfold_binary(), "run", "--config", cfg});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  Process load({walfold_binary(), "loadgen", "--config", cfg, "--reuse", "--transactions", "7200",
                "--rate", "200", "--seed", "24", "--update-share", "0.1", "--delete-share", "0.05",
                "--no-progress"});
  std::this_thread::sleep_for(std::chrono::seconds(3));

  MongoPause pause;  // never leaves the shared stand-in stopped, whatever fails below
  std::this_thread::sleep_for(std::chrono::seconds(5));
  const Lsn confirmed_early = slot_confirmed(env);
  const long long pending_early = pending_commits(env);
  std::this_thread::sleep_for(std::chrono::seconds(23));
  const Lsn confirmed_late = slot_confirmed(env);
  const long long pending_late = pending_commits(env);
  EXPECT_TRUE(daemon.is_running()) << "walfold died while MongoDB was unreachable:\n"
                                   << daemon.output();
  // The reader kept streaming into Redis, and the checkpoint did not move past work MongoDB
  // could not have acknowledged.
  EXPECT_GT(pending_late, pending_early) << "the reader stopped streaming while MongoDB hung";
  EXPECT_EQ(format_lsn(confirmed_late), format_lsn(confirmed_early))
      << "the slot was confirmed while MongoDB could acknowledge nothing";
  std::this_thread::sleep_for(std::chrono::seconds(2));
  pause.resume();

  wait_ok(load);
  const auto out = daemon.output();
  EXPECT_NE(out.find("retrying in"), std::string::npos)
      << "the workers never reported MongoDB's outage:\n"
      << out;
  EXPECT_TRUE(daemon.is_running()) << out;
  stop_cleanly(daemon);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
}

TEST(Recovery, SigkillAtRandomMomentsLosesNothingAndDoublesNothing) {
  // Short leases so keys held by a killed worker come back quickly.
  BankEnv env("", "  lease_ms: 1500\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "200", "--transactions", "0", "--no-progress"}).status,
            0);
  Process load({walfold_binary(), "loadgen", "--config", env.config_path, "--reuse",
                "--transactions", "12000", "--rate", "500", "--seed", "31", "--update-share", "0.1",
                "--delete-share", "0.05", "--no-progress"});
  std::mt19937 rng(12345);
  int kills = 0;
  for (int trial = 0; trial < 20; ++trial) {
    Process daemon({walfold_binary(), "run", "--config", env.config_path});
    ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
        << daemon.output();
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(100, 900)(rng)));
    ASSERT_TRUE(daemon.is_running()) << "walfold died on its own: " << daemon.output();
    daemon.signal(SIGKILL);
    ASSERT_TRUE(daemon.wait(std::chrono::seconds(10)).has_value());
    ++kills;
  }
  EXPECT_EQ(kills, 20);
  auto st = load.wait(std::chrono::seconds(120));
  ASSERT_TRUE(st.has_value());
  ASSERT_EQ(*st, 0) << load.output();
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
