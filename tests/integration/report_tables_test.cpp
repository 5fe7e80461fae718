// `reconcile --verify` and `report` read the tables the configuration's `tables:` mapping names,
// schema-qualified, not `users`, `accounts` and `transactions` wherever the search_path finds
// them. The bank lives in schema bank2 under other names, and default-named decoy tables in
// public hold other data: reading the decoys shows as drift and as the decoy's rows.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "config/config.h"
#include "projections/bank/bank.h"
#include "reconcile/verify.h"
#include "tests/integration/bank_env.h"
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

  const Config cfg = load_config(env.config_path);
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
