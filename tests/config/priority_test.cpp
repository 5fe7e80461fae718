// Issue #4 without servers: priority rules in the configuration (exact decimal thresholds),
// the assembler applying them per job, the replay priority, workers.retry, and Decimal::compare.
#include <gtest/gtest.h>

#include "cdc/assembler.h"
#include "common/decimal.h"
#include "common/error.h"
#include "pipeline/source_adapter.h"
#include "projections/bank/bank.h"
#include "projections/bank/schema.h"
#include "projections/registry.h"

namespace {

using namespace walfold;
using cdc::TupleValue;

Decimal dec(const char* s) {
  auto d = Decimal::parse(s);
  EXPECT_TRUE(d.has_value()) << s;
  return d.value_or(Decimal{});
}

TEST(DecimalCompare, ExactAcrossScalesAndSigns) {
  EXPECT_EQ(dec("10000").compare(dec("10000.0000")), 0);
  EXPECT_EQ(dec("10000.0001").compare(dec("10000")), 1);
  EXPECT_EQ(dec("9999.9999").compare(dec("10000")), -1);
  EXPECT_EQ(dec("-5").compare(dec("3")), -1);
  EXPECT_EQ(dec("-5.5").compare(dec("-5.25")), -1);
  EXPECT_EQ(dec("0").compare(dec("-0.000")), 0);
  // 0.1 + 0.2 style values a double would blur.
  EXPECT_EQ(dec("0.30000000000000000001").compare(dec("0.3")), 1);
  // Scales far apart: the scaled-up side overflows 34 digits and is known to be larger.
  EXPECT_EQ(dec("9999999999999999999999999999999999").compare(dec("0.0000000001")), 1);
  EXPECT_EQ(dec("0.0000000001").compare(dec("9999999999999999999999999999999999")), -1);
  EXPECT_EQ(dec("-9999999999999999999999999999999999").compare(dec("-0.0000000001")), -1);
}

constexpr const char* kRules = R"(postgres: {dsn: x}
priorities:
  aging_ms: 250
  replay: 200
  rules:
    - {table: public.transactions, amount_above: "10000", priority: 1}
    - {kind: withdrawal, priority: 2}
    - {table: users, priority: 0}
workers:
  retry: {initial_ms: 50, max_ms: 5000, max_attempts: 4}
)";

TEST(PriorityConfig, RulesRetryAndDefaults) {
  Config c = projections::parse_config(kRules, "p.yaml");
  EXPECT_EQ(c.priorities.aging.count(), 250);
  EXPECT_EQ(c.priorities.replay, 200);
  ASSERT_EQ(c.priorities.rules.size(), 3u);
  EXPECT_EQ(c.priorities.rules[0].table, "public.transactions");
  const RowCondition* above = c.priorities.rules[0].condition("amount_above");
  ASSERT_TRUE(above && above->number);
  EXPECT_EQ(above->column, "amount");
  EXPECT_EQ(above->number->canonical(), "10000");
  const RowCondition* kind = c.priorities.rules[1].condition("kind");
  ASSERT_TRUE(kind);
  EXPECT_EQ(kind->value, "withdrawal");
  EXPECT_EQ(c.priorities.rules[1].model, "transactions");
  EXPECT_EQ(c.priorities.rules[2].table, "public.users");
  EXPECT_EQ(c.workers.retry.initial.count(), 50);
  EXPECT_EQ(c.workers.retry.max.count(), 5000);
  EXPECT_EQ(c.workers.retry.max_attempts, 4);

  Config d = projections::parse_config("postgres: {dsn: x}\n", "d.yaml");
  EXPECT_EQ(d.priorities.aging.count(), 1000);
  EXPECT_EQ(d.priorities.replay, 255);
  EXPECT_TRUE(d.priorities.rules.empty());
  EXPECT_EQ(d.workers.retry.initial.count(), 100);
  EXPECT_EQ(d.workers.retry.max.count(), 60000);
  EXPECT_EQ(d.workers.retry.max_attempts, 10);
}

std::string error_of(const std::string& yaml) {
  try {
    projections::parse_config(yaml, "e.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(PriorityConfig, BadRulesNameTheirPlace) {
  const std::string pg = "postgres: {dsn: x}\n";
  EXPECT_NE(error_of(pg + "priorities:\n  rules:\n    - {amount_above: 1e5, priority: 1}\n")
                .find("e.yaml:4:22: priorities.rules[0].amount_above '1e5' is not a decimal"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "priorities:\n  rules:\n    - {priority: 1}\n").find("no condition"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "priorities:\n  rules:\n    - {kind: x}\n")
                .find("priorities.rules[0].priority is required"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "priorities:\n  rules:\n    - {table: nope, priority: 1}\n")
                .find("'public.nope' is not in tables"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "priorities:\n  rules:\n    - {table: users, kind: x, priority: 1}\n")
                .find("apply to the transactions table"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "priorities:\n  rules:\n    - {kind: x, priority: 256}\n")
                .find("out of range [0, 255]"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "priorities:\n  aging_ms: 0\n").find("out of range"), std::string::npos);
  EXPECT_NE(error_of(pg + "priorities:\n  colour: red\n").find("unknown key 'colour'"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "workers:\n  retry: {initial_ms: 10, max_ms: 5}\n")
                .find("initial_ms is larger than workers.retry.max_ms"),
            std::string::npos);
  EXPECT_NE(error_of(pg + "workers:\n  retry: {max_attempts: 0}\n").find("out of range"),
            std::string::npos);
}

struct Assembled : ::testing::Test {
  Config cfg = projections::parse_config(kRules, "p.yaml");
  pipeline::SourceAdapter src{cfg, projections::bank::projection()};
  std::vector<cdc::CommittedTransaction> out;
  cdc::Assembler a{src.source, src.router, pipeline::assembly_settings(cfg),
                   [this](cdc::CommittedTransaction&& t) { out.push_back(std::move(t)); }};

  void SetUp() override {
    cdc::Relation users{1, "public", "users", 'f', {}};
    for (const char* n : {"id", "full_name", "email", "created_at"})
      users.columns.push_back({0, n, std::string(n) == "id" ? 20u : 25u, -1});
    a.on_relation(users);
    cdc::Relation tx{3, "public", "transactions", 'f', {}};
    for (auto [n, oid] : std::vector<std::pair<const char*, std::uint32_t>>{{"id", 20},
                                                                            {"account_id", 20},
                                                                            {"amount", 1700},
                                                                            {"kind", 25},
                                                                            {"transfer_id", 2950},
                                                                            {"created_at", 1184}})
      tx.columns.push_back({0, n, oid, -1});
    a.on_relation(tx);
  }
  static std::vector<TupleValue> row(const char* acct, const char* amount, const char* kind) {
    return {{'t', "1"}, {'t', acct}, {'t', amount}, {'t', kind}, {'n', {}}, {'t', "2026-01-01"}};
  }
  // One commit with one insert per (account, amount, kind); returns each job's priority.
  std::vector<int> commit(const std::vector<std::vector<TupleValue>>& rows, Lsn lsn = 100) {
    a.on_begin({lsn, 0, 1});
    for (auto r : rows) a.on_insert(3, r);
    a.on_commit({0, lsn, lsn + 10, 0});
    return out.back().priorities;
  }
};

TEST_F(Assembled, RulesGiveTheMostUrgentMatchingPriorityPerJob) {
  EXPECT_EQ(commit({row("1", "10000.0000", "deposit")}), std::vector<int>{5})
      << "not above the threshold";
  EXPECT_EQ(commit({row("1", "10000.0001", "deposit")}), std::vector<int>{1});
  EXPECT_EQ(commit({row("1", "3.00", "withdrawal")}), std::vector<int>{2});
  EXPECT_EQ(commit({row("1", "20000", "withdrawal")}), std::vector<int>{1});
  EXPECT_EQ(commit({row("1", "NaN", "deposit")}), std::vector<int>{5}) << "matches nothing";
  // A job is as urgent as its most urgent row; other keys keep their own priority.
  EXPECT_EQ(
      commit({row("1", "1", "deposit"), row("2", "1", "deposit"), row("1", "50000", "deposit")}),
      (std::vector<int>{1, 5}));
  // A table rule: users rows get priority 0.
  a.on_begin({200, 0, 1});
  std::vector<TupleValue> u{{'t', "5"}, {'t', "Ada"}, {'t', "a@x"}, {'t', "2026-01-01"}};
  a.on_insert(1, u);
  a.on_commit({0, 200, 210, 0});
  EXPECT_EQ(out.back().priorities, std::vector<int>{0});
  // A delete is judged by its old row.
  a.on_begin({300, 0, 1});
  a.on_delete(3, 'O', row("1", "99999", "deposit"));
  a.on_commit({0, 300, 310, 0});
  EXPECT_EQ(out.back().priorities, std::vector<int>{1});
}

TEST_F(Assembled, ReplayTrafficGetsTheReplayPriority) {
  a.set_replay(true);
  EXPECT_TRUE(a.replay());
  EXPECT_EQ(commit({row("1", "50000", "withdrawal"), row("2", "1", "deposit")}),
            (std::vector<int>{200, 200}));
  a.set_replay(false);
  EXPECT_EQ(commit({row("1", "50000", "withdrawal")}), std::vector<int>{1});
}

}  // namespace
