// Money stays exact end to end (issue #9): a sum MongoDB would compute past Decimal128's 34
// significant digits is refused loudly, never rounded. Against real PostgreSQL and Redis and the
// MongoDB stand-in (or a real MongoDB with WALFOLD_TEST_MONGODB_URI).
#include <gtest/gtest.h>

#include "common/error.h"
#include "projections/bank/bank_fold.h"
#include "projections/bank/schema.h"
#include "projections/bank/sink.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// Two accounts of one user whose balances each fit in 34 digits, but whose sum needs 35: the
// user's total in MongoDB keeps the first balance exactly, the second account's job is
// dead-lettered naming the user, the currency and the LSN, and the checkpoint holds before it.
TEST(Money, AUserTotalPastThirtyFourDigitsIsDeadLetteredNotRounded) {
  BankEnv env("", "  retry:\n    initial_ms: 10\n    max_ms: 20\n    max_attempts: 2\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  // Still numeric, so walfold accepts it; wide enough for 34-digit amounts.
  pg_query(env.dsn, "ALTER TABLE transactions ALTER COLUMN amount TYPE numeric(40,6)");
  pg_query(env.dsn, "INSERT INTO users (full_name, email) VALUES ('Rich', 'rich@example.test')");
  pg_query(env.dsn,
           "INSERT INTO accounts (user_id, currency) SELECT id, 'EUR' FROM users, "
           "generate_series(1, 2)");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES "
           "(1, 5999999999999999999999999999.994000, 'deposit')");
  run_until_caught_up(env);
  expect_verify_clean(env);

  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES "
           "(2, 5999999999999999999999999999.994001, 'deposit')");
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(r.status, 65) << r.output;  // everything left waits behind the dead key
  EXPECT_TRUE(contains(r.output, "DEAD LETTER: key a:2")) << r.output;
  EXPECT_TRUE(contains(r.output, "user 1 total in EUR overflows 34 decimal digits at commit LSN"))
      << r.output;
  // Never rounded: the total is still the first account's balance, to the last digit.
  auto totals = read_mongo_user_totals(servers().mongo_uri, env.mongo_db);
  EXPECT_EQ(totals[1]["EUR"], "5999999999999999999999999999.994") << "canonical form";
  auto acc = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  EXPECT_EQ(acc[2].balance, "0") << "the refused job left nothing of itself";
  // The slot still streams the refused commit again.
  EXPECT_EQ(slot_peek(env, "count(*)", 'I'), "1");
  auto dead = env.cmd("queue", {"dead", "list"});
  EXPECT_TRUE(contains(dead.output, "a:2")) << dead.output;
}

// The bound in the filter: a worker whose read of the user's total is stale (another account's
// job raised it meanwhile) must not let MongoDB round the sum. The fold is given no read of the
// user (as if it were stale); MongoDB holds a total near the limit; the write is refused by its
// bound and the sink says why, and the total is unchanged.
TEST(Money, AStaleReadCannotLetMongoRoundAUserTotal) {
  BankEnv env;
  const std::string near_limit = "9999999999999999999999999999.999999";  // 34 digits
  mongo_command(servers().mongo_uri, env.mongo_db,
                R"({"insert": "users", "documents": [{"_id": {"$numberLong": "3"}, "accounts": [],
                    "balances": {"EUR": {"$numberDecimal": ")" +
                    near_limit + R"("}}, "account_count": {"EUR": 1}, "acct_lsn": {},
                    "deleted": false}]})");
  MongoConfig mc;
  mc.uri = servers().mongo_uri;
  mc.database = env.mongo_db;
  projections::MongoPool pool(mc);
  projections::MongoSink sink(pool);
  projections::BankFold fold;
  projections::AccountSnapshot a;
  a.exists = true;
  a.user_id = 3;
  a.currency = "EUR";
  a.balance = *Decimal::parse("0.000000");
  fold.set_account(7, a);
  queue::Job job;
  job.key = "a:7";
  job.commit_lsn = 0x500;
  job.end_lsn = 0x510;
  using queue::Value;
  job.changes.push_back({projections::bank::kTransactions,
                         'I',
                         {{Value::Text, "1"},
                          {Value::Text, "7"},
                          {Value::Text, "0.000002"},
                          {Value::Text, "deposit"},
                          {Value::Null, ""},
                          {Value::Text, "2026-12-01 00:00:00+00"}},
                         {}});
  projections::WritePlan plan;
  fold.fold(job, plan);  // passes: the fold believes the total is 0
  try {
    sink.write(plan);
    FAIL() << "the write went through";
  } catch (const DataError& e) {
    EXPECT_TRUE(contains(e.what(), "user 3: adding EUR +0.000002")) << e.what();
    EXPECT_TRUE(contains(e.what(), "commit LSN 0/500")) << e.what();
    EXPECT_TRUE(contains(e.what(), "more than 34 significant digits")) << e.what();
  }
  auto totals = read_mongo_user_totals(servers().mongo_uri, env.mongo_db);
  EXPECT_EQ(totals[3]["EUR"], near_limit) << "MongoDB must not have rounded the total";
}

}  // namespace
}  // namespace walfold::test
