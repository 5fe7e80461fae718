// `reconcile --verify` and `report` read the tables the configuration's `tables:` mapping names,
// schema-qualified, not `users`, `accounts` and `transactions` wherever the search_path finds
// them. The bank lives in schema bank2 under other names, and default-named decoy tables in
// public hold other data: reading the decoys shows as drift and as the decoy's rows.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "config/config.h"
#include "mongo/handles.h"
#include "projections/bank/bank.h"
#include "projections/mongo.h"
#include "projections/registry.h"
#include "reconcile/verify.h"
#include "tests/harness/bank_env.h"
#include "tools/report.h"

namespace walfold::test {
namespace {

std::string bank_schema_sql() {
  std::ifstream f(source_dir() + "/examples/bank/schema.sql");
  std::stringstream sql;
  sql << f.rdbuf();
  return sql.str();
}

// The bank schema with the tables renamed (columns keep their names, as the mapping requires).
std::string renamed_schema_sql() {
  std::string sql = bank_schema_sql();
  sql = std::regex_replace(sql, std::regex("\\busers\\b"), "customers");
  sql = std::regex_replace(sql, std::regex("\\baccounts\\b"), "wallets");
  sql = std::regex_replace(sql, std::regex("\\btransactions\\b"), "ledger");
  return sql;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(Reconcile, VerifyAndReportReadTheConfiguredTablesNotTheDefaultNames) {
  BankEnv env(
      "tables:\n"
      "  bank2.customers: { model: users }\n"
      "  bank2.wallets: { model: accounts }\n"
      "  bank2.ledger: { model: transactions }\n");
  // Decoys: default names in public (first on the search_path), other people, other money.
  pg_query(env.dsn, bank_schema_sql());
  pg_query(env.dsn,
           "INSERT INTO public.users (id, full_name, email) VALUES (1, 'Decoy', "
           "'decoy@example.test');"
           "INSERT INTO public.accounts (id, user_id, currency) VALUES (1, 1, 'EUR');"
           "INSERT INTO public.transactions (account_id, amount, kind) VALUES (1, 999, 'deposit')");
  // The bank walfold is configured for.
  pg_query(env.dsn, "CREATE SCHEMA bank2; SET search_path = bank2; " + renamed_schema_sql());
  pg_query(env.dsn,
           "INSERT INTO bank2.customers (id, full_name, email) VALUES (1, 'Ada', "
           "'ada@example.test'), (2, 'Bob', 'bob@example.test');"
           "INSERT INTO bank2.wallets (id, user_id, currency) VALUES (1, 1, 'USD'), (2, 2, 'USD'),"
           " (3, 2, 'EUR');"
           "INSERT INTO bank2.ledger (account_id, amount, kind, created_at) VALUES "
           "(1, 10, 'deposit', '2026-01-02 03:04:05.25+00'), "
           "(1, 2.5, 'withdrawal', '2026-01-02 03:04:06+00'), "
           "(2, 7, 'deposit', '2026-01-02 03:04:07+00'), "
           "(3, 1, 'deposit', '2026-01-02 03:04:08+00')");
  auto setup = env.cmd("setup");
  ASSERT_EQ(setup.status, 0) << setup.output;
  run_until_caught_up(env);

  const Config cfg = projections::load_config(env.config_path);
  std::ostringstream pg, mongo;
  const auto& bank = projections::bank::projection();
  EXPECT_EQ(
      tools::write_report(tools::report_options(cfg, tools::ReportSource::Postgres), bank, pg),
      (projections::Counts{{"account", 3}, {"user", 2}}));
  EXPECT_TRUE(contains(pg.str(), "account 1 user 1 currency USD balance 7.5\n")) << pg.str();
  EXPECT_TRUE(contains(pg.str(),
                       "user 2 name \"Bob\" email \"bob@example.test\" accounts 2,3 "
                       "totals EUR=1 USD=7\n"))
      << pg.str();
  EXPECT_FALSE(contains(pg.str(), "Decoy")) << pg.str();
  EXPECT_FALSE(contains(pg.str(), "999")) << pg.str();
  tools::write_report(tools::report_options(cfg, tools::ReportSource::Mongo), bank, mongo);
  EXPECT_EQ(pg.str(), mongo.str());

  std::ostringstream drift;
  auto r =
      reconcile::verify(tools::report_options(cfg, tools::ReportSource::Postgres), bank, drift);
  EXPECT_EQ(r.compared, (projections::Counts{{"account", 3}, {"user", 2}}));
  EXPECT_EQ(r.drifted, 0u) << drift.str();
  EXPECT_EQ(drift.str(), "");

  // The commands users run read the same tables: `report` prints the configured bank, and
  // `reconcile --verify` compares it (the decoy would be one drifted account and a missing one).
  auto report = env.cmd("report", {"--from", "postgres"});
  ASSERT_EQ(report.status, 0) << report.output;
  EXPECT_TRUE(contains(report.output, "account 1 user 1 currency USD balance 7.5\n"))
      << report.output;
  EXPECT_FALSE(contains(report.output, "Decoy")) << report.output;
  auto verify = env.cmd("reconcile", {"--verify"});
  EXPECT_EQ(verify.status, 0) << verify.output;
  EXPECT_TRUE(contains(verify.output, "3 accounts and 2 users compared, 0 drifted"))
      << verify.output;
}

}  // namespace
}  // namespace walfold::test

namespace walfold::test {
namespace {

// The BSON dates the read model holds, straight from MongoDB: "transactions <id>" -> created_at,
// "accounts <id> <n>" -> last_transactions[n].created_at (milliseconds since the epoch).
std::map<std::string, std::int64_t> read_model_dates(const Config& cfg) {
  projections::MongoPool pool(cfg.mongodb);
  projections::MongoPool::Client client(pool);
  std::map<std::string, std::int64_t> out;
  auto walk = [&](const char* coll, auto each) {
    projections::Collection c(client.collection(coll));
    auto filter = projections::make_bson();
    mongo::Cursor cur(mongoc_collection_find_with_opts(c.get(), filter.get(), nullptr, nullptr));
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cur.get(), &doc)) each(doc);
  };
  auto id_of = [](const bson_t* doc) {
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, "_id") ? std::to_string(bson_iter_as_int64(&it)) : "?";
  };
  walk("transactions", [&](const bson_t* doc) {
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "created_at") && BSON_ITER_HOLDS_DATE_TIME(&it))
      out["transactions " + id_of(doc)] = bson_iter_date_time(&it);
  });
  walk("accounts", [&](const bson_t* doc) {
    bson_iter_t it, arr, e;
    if (!bson_iter_init_find(&it, doc, "last_transactions") || !BSON_ITER_HOLDS_ARRAY(&it)) return;
    bson_iter_recurse(&it, &arr);
    for (int n = 0; bson_iter_next(&arr); ++n)
      if (BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &e) &&
          bson_iter_find(&e, "created_at") && BSON_ITER_HOLDS_DATE_TIME(&e))
        out["accounts " + id_of(doc) + " " + std::to_string(n)] = bson_iter_date_time(&e);
  });
  return out;
}

// The fold, the snapshot and the canonical form agree on the read model's definition: the
// window of the newest transactions and the dates floored to the millisecond (sub-millisecond
// times, and times before 1970 where truncation and flooring differ). The rows are folded from
// the WAL; their report from MongoDB equals PostgreSQL's; a rebuild from the tables
// (`reconcile --full`, the snapshot's documents) then writes the very same dates.
TEST(Snapshot, TheFoldAndTheSnapshotWriteTheSameDatesAndWindows) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn,
           "INSERT INTO users (id, full_name, email) VALUES (1, 'Ada', 'ada@example.test');"
           "INSERT INTO accounts (id, user_id, currency) VALUES (1, 1, 'USD'), (2, 1, 'EUR');"
           "INSERT INTO transactions (account_id, amount, kind, created_at) VALUES "
           "(1, 10, 'deposit', '1969-12-31 23:59:59.9995+00'), "
           "(1, 2.5, 'withdrawal', '1969-12-31 23:59:59.000001+00'), "
           "(1, 7, 'deposit', '2026-01-02 03:04:05.123456+00'), "
           "(1, 1, 'deposit', '2026-01-02 03:04:05.123999+00'), "
           "(1, 4, 'deposit', '2026-01-02 03:04:05.124+00'), "
           "(2, 3, 'deposit', '1960-06-01 00:00:00.0000005+00')");
  // A correction makes the fold recompute the window from the transactions collection.
  pg_query(env.dsn, "UPDATE transactions SET amount = 8 WHERE amount = 7");
  run_until_caught_up(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
  const Config cfg = projections::load_config(env.config_path);
  const auto folded = read_model_dates(cfg);
  EXPECT_EQ(folded.count("accounts 1 2"), 1u);  // a window of three
  EXPECT_EQ(folded.count("accounts 1 3"), 0u);
  EXPECT_EQ(folded.at("transactions " + pg_scalar(env.dsn,
                                                  "SELECT id FROM transactions WHERE created_at "
                                                  "= '1969-12-31 23:59:59.9995+00'")),
            -1);  // floored, not truncated to 0

  auto full = env.cmd("reconcile", {"--full"}, 120);
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_EQ(read_model_dates(cfg), folded);
  expect_reports_identical(env);
}

// The snapshot load and repair read the tables the mapping names too: rows already in bank2
// when `setup` loads them are in the read model before anything is streamed, and a balance
// corrupted in MongoDB is repaired from bank2 (the decoy in public would be a different one).
TEST(Reconcile, TheSnapshotLoadAndRepairReadTheConfiguredTables) {
  BankEnv env(
      "tables:\n"
      "  bank2.customers: { model: users }\n"
      "  bank2.wallets: { model: accounts }\n"
      "  bank2.ledger: { model: transactions }\n",
      "", "  heartbeat_interval_ms: 300\n");
  pg_query(env.dsn, bank_schema_sql());
  pg_query(env.dsn,
           "INSERT INTO public.users (id, full_name, email) VALUES (1, 'Decoy', "
           "'decoy@example.test');"
           "INSERT INTO public.accounts (id, user_id, currency) VALUES (1, 1, 'EUR');"
           "INSERT INTO public.transactions (account_id, amount, kind) VALUES (1, 999, 'deposit')");
  pg_query(env.dsn, "CREATE SCHEMA bank2; SET search_path = bank2; " + renamed_schema_sql() +
                        "INSERT INTO bank2.customers (id, full_name, email) VALUES (1, 'Ada', "
                        "'ada@example.test');"
                        "INSERT INTO bank2.wallets (id, user_id, currency) VALUES (1, 1, 'USD');"
                        "INSERT INTO bank2.ledger (account_id, amount, kind) VALUES "
                        "(1, 10, 'deposit'), (1, 2.5, 'withdrawal')");
  auto setup = env.cmd("setup");
  ASSERT_EQ(setup.status, 0) << setup.output;
  // Nothing streamed yet: this is the snapshot load alone.
  auto accounts = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  ASSERT_EQ(accounts.count(1), 1u);
  EXPECT_EQ(accounts.at(1).balance, "7.5");
  expect_reports_identical(env);

  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  corrupt_mongo_balance(servers().mongo_uri, env.mongo_db, 1, "123");
  auto r = env.cmd("reconcile", {"--repair"}, 120);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(
      r.output, "repaired: account 1\n  was:      account 1 user 1 currency USD balance 123\n"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "  now:      account 1 user 1 currency USD balance 7.5\n"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "1 accounts compared")) << r.output;
  EXPECT_EQ(read_mongo_accounts(servers().mongo_uri, env.mongo_db).at(1).balance, "7.5");
  stop_cleanly(daemon);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test

namespace walfold::test {
namespace {

// `walfold loadgen` writes the tables the mapping names too: its users, accounts and
// transactions land in bank2 under their mapped names, never in the default-named (empty) decoy
// tables in public that the connection's search_path finds first; `--reuse` reads bank2's.
TEST(Loadgen, WritesTheConfiguredTablesNotTheDefaultNames) {
  BankEnv env(
      "tables:\n"
      "  bank2.customers: { model: users }\n"
      "  bank2.wallets: { model: accounts }\n"
      "  bank2.ledger: { model: transactions }\n");
  pg_query(env.dsn, bank_schema_sql());
  pg_query(env.dsn, "CREATE SCHEMA bank2; SET search_path = bank2; " + renamed_schema_sql());
  auto count = [&](const std::string& table) {
    return std::stol(pg_scalar(env.dsn, "SELECT count(*) FROM " + table));
  };

  auto r =
      env.cmd("loadgen", {"--users", "7", "--transactions", "60", "--seed", "11", "--no-progress"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "loadgen: 7 users, ")) << r.output;
  EXPECT_EQ(count("bank2.customers"), 7);
  EXPECT_GE(count("bank2.wallets"), 7);
  EXPECT_GT(count("bank2.ledger"), 0);
  for (const char* decoy : {"public.users", "public.accounts", "public.transactions"})
    EXPECT_EQ(count(decoy), 0) << decoy;

  // Reusing what exists: the users and accounts it finds are bank2's, and corrections and
  // deletes touch bank2's ledger.
  const long wallets = count("bank2.wallets");
  r = env.cmd("loadgen", {"--reuse", "--transactions", "40", "--update-share", "0.3",
                          "--delete-share", "0.3", "--seed", "12", "--no-progress"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "loadgen: 7 users, " + std::to_string(wallets) + " accounts"))
      << r.output;
  EXPECT_EQ(count("bank2.customers"), 7);
  for (const char* decoy : {"public.users", "public.accounts", "public.transactions"})
    EXPECT_EQ(count(decoy), 0) << decoy;
}

// A projection without a load generator (the user directory has none) is refused with the
// configuration's exit code, naming it, before anything is written.
TEST(Loadgen, AProjectionWithoutALoadGeneratorIsRefused) {
  char tmpl[] = "/tmp/wf-salt-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::ofstream(dir + "/salt.secret") << "0123456789abcdef0123456789abcdef\n";
  BankEnv env(
      "projection: user_directory\n"
      "tables:\n  public.users: {model: users}\n"
      "user_directory:\n"
      "  salt_file: " +
      dir +
      "/salt.secret\n"
      "  columns:\n"
      "    email: hash\n");
  pg_query(env.dsn, "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE)");
  auto r = env.cmd("loadgen", {"--users", "3", "--transactions", "0", "--no-progress"});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, "projection 'user_directory' has no load generator")) << r.output;
  EXPECT_EQ(pg_scalar(env.dsn, "SELECT count(*) FROM users"), "0");
}

}  // namespace
}  // namespace walfold::test
