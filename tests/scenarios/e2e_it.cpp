// End to end against real PostgreSQL 15 and Redis and the MongoDB stand-in (or a real MongoDB
// with WALFOLD_TEST_MONGODB_URI): bank activity in PostgreSQL must land in MongoDB exactly.
#include <gtest/gtest.h>
#include <signal.h>

#include <sstream>
#include <thread>

#include "common/decimal.h"
#include "common/lsn.h"
#include "queue/job.h"
#include "queue/job_queue.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

// Corrections, moves and deletes that loadgen does not do, each in its own commit.
void edge_case_activity(const std::string& dsn) {
  pg_query(dsn,
           "UPDATE transactions t SET account_id = coalesce((SELECT a2.id FROM accounts a1 JOIN "
           "accounts a2 "
           "ON a2.currency = a1.currency AND a2.id <> a1.id WHERE a1.id = t.account_id ORDER BY "
           "a2.id LIMIT 1), "
           "t.account_id) WHERE t.id IN (SELECT id FROM transactions ORDER BY id DESC LIMIT 20 "
           "OFFSET 7)");
  pg_query(dsn,
           "UPDATE users SET email = 'changed-' || id || '@example.test', full_name = full_name || "
           "' Jr.' "
           "WHERE id % 17 = 0");
  pg_query(dsn,
           "UPDATE accounts SET user_id = (SELECT min(id) FROM users) WHERE id IN "
           "(SELECT id FROM accounts ORDER BY id DESC LIMIT 4)");
  pg_query(dsn,
           "UPDATE accounts SET currency = 'CHF' WHERE id IN (SELECT id FROM accounts ORDER BY id "
           "LIMIT 2 OFFSET 10)");
  pg_query(
      dsn,
      "BEGIN; CREATE TEMP TABLE victims AS SELECT id FROM accounts ORDER BY id LIMIT 3 OFFSET 20; "
      "DELETE FROM transactions WHERE account_id IN (SELECT id FROM victims); "
      "DELETE FROM accounts WHERE id IN (SELECT id FROM victims); COMMIT");
  pg_query(dsn,
           "BEGIN; CREATE TEMP TABLE gone AS SELECT id FROM users ORDER BY id LIMIT 2 OFFSET 30; "
           "DELETE FROM transactions WHERE account_id IN (SELECT a.id FROM accounts a JOIN gone g "
           "ON g.id = a.user_id); "
           "DELETE FROM accounts WHERE user_id IN (SELECT id FROM gone); "
           "DELETE FROM users WHERE id IN (SELECT id FROM gone); COMMIT");
  // One commit touching every account.
  pg_query(dsn,
           "INSERT INTO transactions (account_id, amount, kind) SELECT id, (id % 97) + 0.0001, "
           "'deposit' FROM accounts");
  // User, account and money created in one commit.
  pg_query(
      dsn,
      "WITH u AS (INSERT INTO users (full_name, email) VALUES ('Same Commit', 'same@example.test') "
      "RETURNING id), "
      "a AS (INSERT INTO accounts (user_id, currency) SELECT id, 'USD' FROM u RETURNING id) "
      "INSERT INTO transactions (account_id, amount, kind) SELECT id, 5.5555, 'deposit' FROM a");
  // Insert, correct and delete inside one commit; and a correction of the newest row.
  pg_query(dsn,
           "BEGIN; INSERT INTO transactions (id, account_id, amount, kind) VALUES (9000001, 1, "
           "1.0000, 'deposit'); "
           "UPDATE transactions SET amount = 2.0000 WHERE id = 9000001; "
           "DELETE FROM transactions WHERE id = 9000001; COMMIT");
  pg_query(dsn,
           "UPDATE transactions SET amount = amount + 0.0001, kind = 'withdrawal' WHERE id = "
           "(SELECT max(id) FROM transactions)");
  pg_query(dsn,
           "DELETE FROM transactions WHERE id IN (SELECT id FROM transactions ORDER BY created_at "
           "DESC, id DESC LIMIT 5)");
}

TEST(EndToEnd, RandomBankActivityLandsExactly) {
  BankEnv env;
  auto s = env.cmd("setup", {"--schema"});
  ASSERT_EQ(s.status, 0) << s.output;
  auto lg = env.cmd("loadgen", {"--users", "300", "--transactions", "4000", "--seed", "11",
                                "--update-share", "0.1", "--delete-share", "0.05", "--currencies",
                                "USD,EUR,GBP,JPY", "--no-progress"});
  ASSERT_EQ(lg.status, 0) << lg.output;
  edge_case_activity(env.dsn);
  auto before = parse_lsn(pg_scalar(env.dsn, "SELECT pg_current_wal_lsn()"));
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
  // The slot was advanced past everything folded, and nothing is left in flight.
  auto confirmed = parse_lsn(pg_scalar(
      env.dsn,
      "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '" + env.name + "'"));
  ASSERT_TRUE(confirmed && before);
  EXPECT_GE(*confirmed, *before);
  EXPECT_EQ(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"}), "0");
  EXPECT_EQ(redis_cmd({"ZCARD", env.queue_prefix() + ":ready"}), "0");
  EXPECT_EQ(
      redis_cmd({"EXISTS", env.queue_prefix() + ":l:" +
                               std::to_string(queue::lane_of_key("a:1", queue::kDefaultLanes))}),
      "0")
      << "finished jobs must be removed";
}

TEST(EndToEnd, FollowsLiveWritesAndResumesAfterRestart) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  auto lg = env.cmd("loadgen", {"--users", "100", "--transactions", "2000", "--rate", "1500",
                                "--seed", "5", "--no-progress"});
  ASSERT_EQ(lg.status, 0) << lg.output;
  stop_cleanly(daemon);
  // More writes while walfold is down, then catch up from the checkpoint.
  auto lg2 =
      env.cmd("loadgen", {"--reuse", "--transactions", "1000", "--seed", "6", "--no-progress"});
  ASSERT_EQ(lg2.status, 0) << lg2.output;
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
}

TEST(EndToEnd, DuplicateDeliveryChangesNothing) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "80", "--transactions", "1500", "--seed", "3",
                                "--update-share", "0.15", "--no-progress"})
                .status,
            0);
  // Reader only: every job is in Redis, none folded yet. Keep a copy of all of them.
  ASSERT_EQ(env.cmd("run", {"--role", "reader", "--stop-at-lsn", "current"}).status, 0);
  RedisConfig rc;
  rc.host = servers().redis_host;
  rc.port = servers().redis_port;
  queue::Redis redis(rc);
  std::vector<queue::EnqueueItem> copy;
  // Every list of the queue: the lanes "l:<n>" and detached keys "k:<key>" (format 3).
  auto keys = redis.command({"KEYS", env.queue_prefix() + ":[kl]:*"});
  ASSERT_GT(keys->elements, 50u);
  for (size_t i = 0; i < keys->elements; ++i) {
    std::string list(keys->element[i]->str, keys->element[i]->len);
    auto jobs = redis.command({"LRANGE", list, "0", "-1"});
    for (size_t j = 0; j < jobs->elements; ++j) {
      std::string body = queue::parse_entry({jobs->element[j]->str, jobs->element[j]->len}).body;
      auto job = queue::decode_job(body);
      copy.push_back({job.key, 5, job.commit_lsn, body});
    }
  }
  run_until_caught_up(env);
  expect_read_model_exact(env);
  // Deliver every job a second time, in a different order across keys; fold again.
  std::reverse(copy.begin(), copy.end());
  std::stable_sort(copy.begin(), copy.end(),
                   [](const auto& a, const auto& b) { return a.key < b.key; });
  queue::JobQueue q(redis, env.queue_prefix());
  for (std::size_t i = 0; i < copy.size(); i += 500) {
    // Per key, the copies must stay in commit order: re-sort each key's slice by commit.
    std::vector<queue::EnqueueItem> part(copy.begin() + i,
                                         copy.begin() + std::min(copy.size(), i + 500));
    std::stable_sort(part.begin(), part.end(), [](const auto& a, const auto& b) {
      return a.key != b.key ? a.key < b.key : a.commit_lsn < b.commit_lsn;
    });
    q.enqueue(part, 0);
  }
  EXPECT_NE(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"}), "0");
  run_until_caught_up(env);
  EXPECT_EQ(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"}), "0");
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
}

TEST(EndToEnd, ABigTransactionIsFoldedInBatchesOfAtMostBatchMaxChanges) {
  // workers.batch_max_changes bounds what one batch folds (and so a worker's memory): whole
  // jobs, at least one per batch; the jobs left out go back to the queue in order.
  BankEnv env("", "  batch_max_changes: 500\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "10", "--transactions", "0", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  // One commit, ten accounts: ten jobs of 2,000 rows each.
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) SELECT 1 + g % 10, 0.0100, "
           "'deposit' FROM generate_series(1, 20000) g");
  auto r = env.cmd("run", {"--stop-at-lsn", "current"});
  ASSERT_EQ(r.status, 0) << r.output;
  // "... N MongoDB write commands for 20000 changes": all ten keys would fit one claim
  // (batch_keys 64), i.e. about three write commands; one job per batch needs ten batches of
  // at least two (transactions, accounts).
  const auto at = r.output.find(" MongoDB write commands for 20000 changes");
  ASSERT_NE(at, std::string::npos) << r.output;
  const auto start = r.output.rfind(' ', at - 1) + 1;
  const long commands = std::stol(r.output.substr(start, at - start));
  EXPECT_GE(commands, 20) << r.output;
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
