// The source's adapter: the configuration and a projection as cdc/source.h asks for them. The
// bank through it is tested where the assembler is (tests/cdc/assembler_test.cpp,
// tests/config/priority_test.cpp); here what the adapter itself decides: the table list, a
// configured table the projection does not have, the settings.
#include <gtest/gtest.h>

#include "cdc/assembler.h"
#include "common/error.h"
#include "pipeline/source_adapter.h"
#include "projections/registry.h"

namespace {

using namespace walfold;
using cdc::TupleValue;

// One table ("users": email, id), keyed by email.
struct OneTable : projections::Projection {
  std::vector<projections::TableSpec> specs{
      {"users",
       {{"email"}, {"id", projections::ColumnType::Integer, "an integer id"}},
       /*replica_identity_full=*/true}};
  std::string_view name() const override { return "one-table"; }
  const std::vector<projections::TableSpec>& tables() const override { return specs; }
  projections::Route route(const queue::Change& c,
                           const projections::ChangeContext&) const override {
    return {"e:" + (c.op == 'D' ? c.old_row : c.new_row).at(0).text, {}};
  }
  bool rule_applies(std::size_t, const PriorityRule&) const override { return false; }
  bool rule_matches(std::size_t, const PriorityRule&,
                    const std::vector<queue::Value>&) const override {
    return true;
  }
  std::unique_ptr<projections::Batch> start_batch(mongo::MongoPool&) const override {
    return nullptr;
  }
};

TEST(SourceAdapter, ListsTheConfiguredTablesAsTheProjectionDeclaresThem) {
  // The bank's default tables: only users is the projection's.
  Config cfg = projections::parse_config("postgres: {dsn: 'x'}\n", "test.yaml");
  OneTable p;
  const auto source = pipeline::source_of(cfg, p);
  EXPECT_EQ(source.name, "one-table");
  ASSERT_EQ(source.tables.size(), cfg.tables.size());
  const auto users = source.find("public", "users");
  ASSERT_TRUE(users);
  const auto& t = source.tables[*users];
  EXPECT_EQ(t.id, 0u);
  EXPECT_EQ(t.model, "users");
  EXPECT_TRUE(t.replica_identity_full);
  EXPECT_TRUE(t.problem.empty());
  ASSERT_EQ(t.columns.size(), 2u);
  EXPECT_EQ(t.columns[0].name, "email");
  EXPECT_EQ(t.columns[0].type, cdc::TypeClass::Any);
  EXPECT_EQ(t.columns[1].name, "id");
  EXPECT_EQ(t.columns[1].type, cdc::TypeClass::Integer);
  EXPECT_EQ(t.columns[1].need, "an integer id");
  const auto accounts = source.find("public", "accounts");
  ASSERT_TRUE(accounts);
  EXPECT_EQ(source.tables[*accounts].problem,
            "is configured as model 'accounts', which the one-table projection does not have");
  EXPECT_FALSE(source.find("public", "elsewhere"));
}

TEST(SourceAdapter, ATableOfAModelTheProjectionLacksFailsAtItsFirstRowChange) {
  Config cfg = projections::parse_config("postgres: {dsn: 'x'}\n", "test.yaml");
  OneTable p;
  pipeline::SourceAdapter src{cfg, p};
  int commits = 0;
  cdc::Assembler a{src.source, src.router, pipeline::assembly_settings(cfg),
                   [&](cdc::CommittedTransaction&&) { ++commits; }};
  a.on_relation({1, "public", "accounts", 'f', {{0, "id", 20, -1}}});
  a.on_relation({2, "public", "users", 'f', {{0, "id", 20, -1}, {0, "email", 25, -1}}});
  a.on_begin({100, 0, 7});
  a.on_insert(2, std::vector<TupleValue>{{'t', "5"}, {'t', "ada@x"}});
  try {
    a.on_insert(1, std::vector<TupleValue>{{'t', "5"}});
    FAIL() << "a row of a table the projection does not have was accepted";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()),
              "relation public.accounts is configured as model 'accounts', which the one-table "
              "projection does not have");
  }
  EXPECT_EQ(commits, 0);
}

TEST(SourceAdapter, TheSettingsAreTheConfigurations) {
  Config cfg = projections::parse_config(
      "postgres: {dsn: 'x', slot: s1}\n"
      "reader: {status_interval_ms: 250, heartbeat_interval_ms: 0, enqueue_max_delay_ms: 7,\n"
      "         enqueue_batch_jobs: 33, max_transaction_mb: 9}\n"
      "priorities: {replay: 250}\n",
      "test.yaml");
  const auto s = pipeline::source_settings(cfg, PgConnInfo("dbname=x"));
  EXPECT_EQ(s.conninfo.dsn, "dbname=x");
  EXPECT_EQ(s.slot, "s1");
  EXPECT_EQ(s.status_interval.count(), 250);
  EXPECT_EQ(s.heartbeat_interval.count(), 0);
  EXPECT_EQ(s.enqueue_max_delay.count(), 7);
  EXPECT_EQ(s.enqueue_batch_jobs, 33);
  EXPECT_EQ(s.assembly.max_transaction_mb, 9);
  EXPECT_EQ(s.assembly.replay_priority, 250);
}

}  // namespace
