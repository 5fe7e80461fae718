// Issue #3 item 8 against a real PostgreSQL: Relation messages are mapped by column name, so
// columns added or dropped under a running walfold are tolerated; a money column whose type
// changes fails closed, naming the table, the column, the type and the WAL position.
#include <gtest/gtest.h>

#include "common/lsn.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(Schema, ColumnsAddedAndDroppedWhileStreamingAreTolerated) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "30", "--transactions", "300", "--no-progress"}).status,
            0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  // New columns in every table, before and between the columns walfold reads.
  pg_query(env.dsn, "ALTER TABLE transactions ADD COLUMN note text DEFAULT 'n/a'");
  pg_query(env.dsn, "ALTER TABLE accounts ADD COLUMN nickname text");
  pg_query(env.dsn, "ALTER TABLE users ADD COLUMN phone text DEFAULT '+00'");
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "300", "--seed", "2", "--update-share",
                                "0.1", "--delete-share", "0.05", "--no-progress"})
                .status,
            0);
  pg_query(env.dsn, "UPDATE accounts SET nickname = 'n' || id WHERE id % 3 = 0");
  pg_query(env.dsn,
           "UPDATE users SET phone = '+1' || id, full_name = full_name || ' Jr' "
           "WHERE id % 4 = 0");
  pg_query(env.dsn, "UPDATE transactions SET note = 'checked' WHERE id % 7 = 0");
  // Dropped columns: one walfold never read, and transfer_id, which it reads but can do without.
  pg_query(env.dsn, "ALTER TABLE transactions DROP COLUMN note");
  pg_query(env.dsn, "ALTER TABLE transactions DROP COLUMN transfer_id");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) "
           "SELECT id, 1.2500, 'deposit' FROM accounts WHERE id % 5 = 0");
  pg_query(env.dsn,
           "UPDATE transactions SET amount = amount + 1 WHERE id IN (SELECT max(id) FROM "
           "transactions GROUP BY account_id LIMIT 10)");
  // The running daemon streams all of it.
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  stop_cleanly(daemon);
  EXPECT_FALSE(contains(daemon.output(), "critical")) << daemon.output();
  expect_read_model_exact(env);
  expect_verify_clean(env);
  // A rebuild from the tables copes with the dropped column too.
  auto full = env.cmd("reconcile", {"--full"}, 240);
  ASSERT_EQ(full.status, 0) << full.output;
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Schema, AMoneyColumnWhoseTypeChangesFailsClosed) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "20", "--transactions", "200", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  // A double cannot hold money exactly: walfold refuses to fold anything after the change.
  pg_query(env.dsn, "ALTER TABLE transactions DROP CONSTRAINT transactions_amount_check");
  pg_query(env.dsn, "ALTER TABLE transactions ALTER COLUMN amount TYPE double precision");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (1, 0.1, 'deposit')");
  const Lsn after_insert = *parse_lsn(pg_scalar(env.dsn, "SELECT pg_current_wal_lsn()"));
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(r.status, 65) << r.output;
  EXPECT_TRUE(contains(r.output, "column 'amount' is now double precision")) << r.output;
  EXPECT_TRUE(contains(r.output, "numeric (money is exact)")) << r.output;
  // The position named is the refused change's, as pg_logical_slot_peek_binary_changes shows it
  // (a Relation message's own XLogData starts at 0/0, which named nothing).
  const auto at = r.output.find("WAL record at ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string named = r.output.substr(at + 14, r.output.find(']', at) - at - 14);
  EXPECT_NE(named, "0/0") << r.output;
  const std::string peeked = slot_peek(env, "max(lsn)", 'I');
  EXPECT_EQ(named, peeked) << r.output;
  // The refused commit was not confirmed: the slot still holds it.
  EXPECT_LT(slot_confirmed(env), after_insert);

  // The operator puts the type back and rebuilds from the tables.
  pg_query(env.dsn, "ALTER TABLE transactions ALTER COLUMN amount TYPE numeric(20,4)");
  auto full = env.cmd("reconcile", {"--full"}, 240);
  ASSERT_EQ(full.status, 0) << full.output;
  expect_verify_clean(env);
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "100", "--seed", "3", "--no-progress"})
                .status,
            0);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Schema, AToastedValueThatAnUpdateLeavesUnchangedIsKept) {
  // users has the default replica identity: an UPDATE that does not touch a TOASTed column
  // sends it as pgoutput's "unchanged" marker ('u'), which must never overwrite the name.
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "5", "--transactions", "20", "--no-progress"}).status,
            0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  pg_query(env.dsn, "ALTER TABLE users ALTER COLUMN full_name SET STORAGE EXTERNAL");
  pg_query(env.dsn,
           "UPDATE users SET full_name = (SELECT string_agg(md5(random()::text), '') FROM "
           "generate_series(1, 400)) WHERE id = 1");
  ASSERT_EQ(pg_scalar(env.dsn, "SELECT length(full_name) FROM users WHERE id = 1"), "12800");
  // Stored out of line (TOAST), so the next update does not carry it.
  const auto toast = pg_scalar(
      env.dsn, "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'users'::regclass");
  ASSERT_NE(pg_scalar(env.dsn, "SELECT count(*) FROM " + toast), "0");
  pg_query(env.dsn, "UPDATE users SET email = 'moved@example.org' WHERE id = 1");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) SELECT id, 3, 'deposit' FROM "
           "accounts WHERE user_id = 1");
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  stop_cleanly(daemon);
  expect_reports_identical(env);  // names and emails included
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
