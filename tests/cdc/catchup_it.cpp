// Catching up after maintenance (`run --stop-at-lsn current`) and stopping with SIGTERM while a
// writer keeps committing (issue #9): walfold must never confirm to PostgreSQL a commit it has
// not folded, so every commit reaches MongoDB however often it is stopped.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <thread>

#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

using namespace std::chrono_literals;

// Commits a 1.0000 deposit on `account` every 5 ms on its own connection until `stop`.
class Writer {
 public:
  Writer(const std::string& dsn, std::int64_t account, const char* synchronous_commit = "on")
      : thread_([this, dsn, account, synchronous_commit] {
          std::unique_ptr<PGconn, decltype(&PQfinish)> c(PQconnectdb(dsn.c_str()), &PQfinish);
          if (PQstatus(c.get()) != CONNECTION_OK) {
            error_ = PQerrorMessage(c.get());
            return;
          }
          const std::string set = std::string("SET synchronous_commit = ") + synchronous_commit;
          PQclear(PQexec(c.get(), set.c_str()));
          const std::string sql = "INSERT INTO transactions (account_id, amount, kind) VALUES (" +
                                  std::to_string(account) + ", 1.0000, 'deposit')";
          while (!stop_.load()) {
            std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(c.get(), sql.c_str()), &PQclear);
            if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
              error_ = PQerrorMessage(c.get());
              return;
            }
            ++rows_;
            std::this_thread::sleep_for(5ms);
          }
        }) {}
  ~Writer() { finish(); }
  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int rows() const { return rows_.load(); }
  const std::string& error() const { return error_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> rows_{0};
  std::string error_;
  std::thread thread_;
};

std::int64_t one_user_one_account(const BankEnv& env) {
  pg_query(env.dsn, "INSERT INTO users (full_name, email) VALUES ('Ada', 'ada@example.test')");
  return std::stoll(pg_scalar(
      env.dsn,
      "INSERT INTO accounts (user_id, currency) SELECT id, 'EUR' FROM users RETURNING id"));
}

// Every deposit committed below the slot's confirmed position is in MongoDB (the slot is idle:
// walfold is stopped, the writer goes on). Deposits at or after it are what the slot streams
// again (peeked through pgoutput); counting all rows before the peek bounds the ones below it
// from below: rows_before >= count - peeked.
void expect_confirmed_is_folded(const BankEnv& env, std::int64_t account) {
  const auto count = std::stoll(pg_scalar(env.dsn, "SELECT count(*) FROM transactions"));
  const auto peeked = std::stoll(slot_peek(env, "count(*)", 'I'));
  auto acc = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  const long long folded = acc.count(account) ? std::stoll(acc[account].balance) : 0;
  EXPECT_GE(folded, count - peeked)
      << "the slot is confirmed past commits MongoDB does not have (" << count << " rows, "
      << peeked << " still to stream, " << folded << " in MongoDB)";
}

void expect_all_commits_folded(const BankEnv& env, std::int64_t account, int written) {
  ASSERT_EQ(pg_scalar(env.dsn, "SELECT count(*) FROM transactions"), std::to_string(written));
  auto acc = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  ASSERT_TRUE(acc.count(account));
  EXPECT_EQ(acc[account].balance, std::to_string(written))
      << "MongoDB's balance must count every committed deposit";
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

// The reproduction of issue #9: three catch-up runs while a writer commits every 5 ms, then one
// more after it stops. On 804e88f MongoDB ended ~300 commits short (the runs confirmed the
// server's WAL end past data they had dropped after the stop position).
TEST(CatchUp, StopAtCurrentUnderLiveWritesLosesNothing) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const auto account = one_user_one_account(env);
  Writer w(env.dsn, account);
  const auto until = std::chrono::steady_clock::now() + 12s;
  for (int i = 0; i < 3; ++i) {
    auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output.find("refusing to confirm"), std::string::npos) << r.output;
    expect_confirmed_is_folded(env, account);
    std::this_thread::sleep_for(500ms);
  }
  std::this_thread::sleep_until(until);
  w.finish();
  ASSERT_TRUE(w.error().empty()) << w.error();
  ASSERT_GT(w.rows(), 100);
  run_until_caught_up(env);
  expect_all_commits_folded(env, account, w.rows());
}

// A backlog written with synchronous_commit = off before the run: `current` is the insert
// position, waited for until flushed, so the run folds every commit that returned before it.
TEST(CatchUp, StopAtCurrentCoversAsynchronousCommitsOfTheBacklog) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const auto account = one_user_one_account(env);
  {
    Writer w(env.dsn, account, "off");
    std::this_thread::sleep_for(1500ms);
    w.finish();
    ASSERT_TRUE(w.error().empty()) << w.error();
  }
  const int written = std::stoi(pg_scalar(env.dsn, "SELECT count(*) FROM transactions"));
  run_until_caught_up(env);
  // No second run: this one alone must have folded everything committed before it started.
  auto acc = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  EXPECT_EQ(acc[account].balance, std::to_string(written));
  expect_verify_clean(env);
}

// The same with SIGTERM instead of --stop-at-lsn: the daemon is stopped at random moments while
// the writer goes on, restarted, and in the end every commit is in MongoDB.
TEST(CatchUp, SigtermUnderLiveWritesLosesNothing) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const auto account = one_user_one_account(env);
  Writer w(env.dsn, account);
  std::mt19937 rng(9);
  for (int i = 0; i < 4; ++i) {
    Process daemon({walfold_binary(), "run", "--config", env.config_path});
    ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", 60s)) << daemon.output();
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1500));
    stop_cleanly(daemon);
    EXPECT_EQ(daemon.output().find("refusing to confirm"), std::string::npos) << daemon.output();
    expect_confirmed_is_folded(env, account);
  }
  w.finish();
  ASSERT_TRUE(w.error().empty()) << w.error();
  run_until_caught_up(env);
  expect_all_commits_folded(env, account, w.rows());
}

}  // namespace
}  // namespace walfold::test
