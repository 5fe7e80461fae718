// The worker service (pipeline/worker_service.cpp) after a batch fails as a whole, with the keys
// of the batch sharing one lane of the queue (queue/job_queue.h lane_of_key): the daemon against
// real PostgreSQL and Redis and the MongoDB stand-in. A lane is claimed whole, so a poison key
// and its healthy lane mates are always in one batch; the batch's failure must be told apart
// from the key's (isolation: one key at a time), and a transient failure must only delay.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "queue/job_queue.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

std::string account_key(std::int64_t id) {
  return "a:" + std::to_string(id);
}

// `n` account ids whose ordering keys hash into one lane (the queue's own function).
std::vector<std::int64_t> accounts_sharing_a_lane(int n) {
  std::map<std::uint32_t, std::vector<std::int64_t>> by_lane;
  for (std::int64_t id = 5000;; ++id) {
    auto& ids = by_lane[queue::lane_of_key(account_key(id), queue::kDefaultLanes)];
    ids.push_back(id);
    if (static_cast<int>(ids.size()) == n) return ids;
  }
}

// One user and one account per id (so no two keys share a user document), folded.
void create_accounts(const BankEnv& env, const std::vector<std::int64_t>& ids) {
  for (auto id : ids) {
    const auto s = std::to_string(id);
    pg_query(env.dsn, "INSERT INTO users (id, full_name, email) VALUES (" + s + ", 'Lane " + s +
                          "', 'lane" + s + "@example.com')");
    pg_query(env.dsn,
             "INSERT INTO accounts (id, user_id, currency) VALUES (" + s + ", " + s + ", 'EUR')");
  }
  run_until_caught_up(env);
}

long long pending_commits(const BankEnv& env) {
  return std::stoll(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"}));
}

// With the queue paused, one deposit per account, each its own commit; then the daemon (one
// worker, debug log) is started and waits until the reader has put all of them in Redis, so the
// worker's first claim, after the resume, takes the whole lane in one batch.
Process start_with_lane_queued(const BankEnv& env, const std::string& config,
                               const std::vector<std::int64_t>& ids) {
  const auto before = pending_commits(env);
  EXPECT_EQ(env.cmd("queue", {"pause"}).status, 0);
  for (auto id : ids)
    pg_query(env.dsn, "INSERT INTO transactions (account_id, amount, kind) VALUES (" +
                          std::to_string(id) + ", 7.0000, 'deposit')");
  Process daemon({walfold_binary(), "run", "--config", config, "--workers", "1"});
  EXPECT_TRUE(wait_until(
      [&] { return pending_commits(env) == before + static_cast<long long>(ids.size()); },
      std::chrono::seconds(60)))
      << daemon.output();
  return daemon;
}

void resume_queue(const BankEnv& env) {
  auto r = env.cmd("queue", {"resume"});
  ASSERT_EQ(r.status, 0) << r.output;
}

// Each key was given back for a retry by a batch that failed as a whole (release_after logs the
// backoff of every key of the batch with the batch's error, at debug level).
void expect_each_retried_with_the_batch(const Process& daemon,
                                        const std::vector<std::int64_t>& ids) {
  const auto out = daemon.output();
  for (auto id : ids)
    EXPECT_TRUE(contains(out, "key " + account_key(id) + " retried in")) << account_key(id) << "\n"
                                                                         << out;
}

std::string debug_config(const BankEnv& env, const std::string& uri_suffix = "") {
  const auto path = env.config_variant("debug", "log_level: info", "log_level: debug");
  if (uri_suffix.empty()) return path;
  const std::string uri = servers().mongo_uri;
  std::ifstream in(path);
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto at = yaml.find("\"" + uri + "\"");
  if (at == std::string::npos) throw std::runtime_error("the MongoDB URI is not in " + path);
  yaml.insert(at + 1 + uri.size(),
              std::string(uri.find('?') == std::string::npos ? "/?" : "&") + uri_suffix);
  std::ofstream(path) << yaml;
  return path;
}

// A key whose job MongoDB refuses (a validator on its account document: a data error, the same
// on every attempt) shares its lane, and so its batch, with two healthy keys. The batch fails as
// a whole; the worker then folds one key at a time: the healthy keys are folded and acknowledged,
// the poison key ends dead (max_attempts), holding only its own commit.
TEST(WorkerIsolation, APoisonKeyInALaneWithHealthyKeysEndsDeadAndItsLaneMatesAreFolded) {
  BankEnv env("", "  retry: {initial_ms: 10, max_ms: 50, max_attempts: 3}\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const auto ids = accounts_sharing_a_lane(3);
  const auto poison = ids[1];  // neither the lane's first key nor its last
  create_accounts(env, ids);
  mongo_command(
      servers().mongo_uri, env.mongo_db,
      R"({"collMod": "accounts", "validator": {"_id": {"$ne": )" + std::to_string(poison) + "}}}");

  Process daemon = start_with_lane_queued(env, debug_config(env), ids);
  resume_queue(env);
  ASSERT_TRUE(
      daemon.wait_for_output("DEAD LETTER: key " + account_key(poison), std::chrono::seconds(90)))
      << daemon.output();
  expect_each_retried_with_the_batch(daemon, ids);
  EXPECT_TRUE(contains(daemon.output(), "Document failed validation")) << daemon.output();

  // The healthy lane mates are folded (exactly: one deposit each) and acknowledged: the only
  // pending commit and job left are the poison key's.
  for (auto id : {ids[0], ids[2]})
    EXPECT_TRUE(
        wait_until([&] { return balance_matches_postgres(env, id); }, std::chrono::seconds(60)))
        << account_key(id) << "\n"
        << daemon.output();
  EXPECT_FALSE(balance_matches_postgres(env, poison));
  EXPECT_EQ(pending_commits(env), 1);
  EXPECT_EQ(redis_cmd({"HVALS", env.queue_prefix() + ":left"}), "1");
  auto list = env.cmd("queue", {"dead", "list"});
  EXPECT_EQ(list.status, 0) << list.output;
  EXPECT_TRUE(contains(list.output, account_key(poison))) << list.output;
  EXPECT_FALSE(contains(list.output, account_key(ids[0]))) << list.output;
  EXPECT_FALSE(contains(list.output, account_key(ids[2]))) << list.output;

  // Without the validator the dead key is retried and folded; the read model is then exact.
  mongo_command(servers().mongo_uri, env.mongo_db, R"({"collMod": "accounts", "validator": {}})");
  auto retry = env.cmd("queue", {"dead", "retry", account_key(poison)});
  ASSERT_EQ(retry.status, 0) << retry.output;
  ASSERT_TRUE(
      wait_until([&] { return balance_matches_postgres(env, poison); }, std::chrono::seconds(60)))
      << daemon.output();
  stop_cleanly(daemon);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

// The same lane's batch fails as a whole for a transient reason (MongoDB hangs: the stand-in is
// paused, and socketTimeoutMS=2000 makes the worker give up): every key waits out a backoff,
// none is dead, and once MongoDB answers again everything is folded exactly once.
TEST(WorkerIsolation, ATransientBatchWideFailureDelaysALaneButFoldsEveryKeyExactlyOnce) {
  if (servers().mongo_is_real) GTEST_SKIP() << "pause-mongo controls the stand-in only";
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const auto ids = accounts_sharing_a_lane(3);
  create_accounts(env, ids);

  Process daemon = start_with_lane_queued(env, debug_config(env, "socketTimeoutMS=2000"), ids);
  {
    MongoPause pause;  // never leaves the shared stand-in stopped, whatever fails below
    resume_queue(env);
    ASSERT_TRUE(daemon.wait_for_output("retrying in", std::chrono::seconds(60))) << daemon.output();
    EXPECT_TRUE(wait_until(
        [&] {
          const auto out = daemon.output();
          for (auto id : ids)
            if (!contains(out, "key " + account_key(id) + " retried in")) return false;
          return true;
        },
        std::chrono::seconds(60)))
        << daemon.output();
    pause.resume();
  }
  for (auto id : ids)
    EXPECT_TRUE(
        wait_until([&] { return balance_matches_postgres(env, id); }, std::chrono::seconds(120)))
        << account_key(id) << "\n"
        << daemon.output();
  EXPECT_TRUE(wait_until([&] { return pending_commits(env) == 0; }, std::chrono::seconds(60)));
  EXPECT_FALSE(contains(daemon.output(), "DEAD LETTER")) << daemon.output();
  stop_cleanly(daemon);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
