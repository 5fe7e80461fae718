// The assembler: pgoutput rows of the configured tables become one job per ordering key per
// commit, mapped by column name.
#include <gtest/gtest.h>

#include "cdc/assembler.h"
#include "common/error.h"
#include "pipeline/source_adapter.h"
#include "projections/bank/bank.h"
#include "projections/bank/schema.h"
#include "projections/registry.h"

namespace {

using namespace walfold;
using cdc::TupleValue;

struct Fixture : ::testing::Test {
  Config cfg = projections::parse_config("postgres: {dsn: 'x'}\n", "test.yaml");
  pipeline::SourceAdapter src{cfg, projections::bank::projection()};
  std::vector<cdc::CommittedTransaction> out;
  cdc::Assembler a{src.source, src.router, pipeline::assembly_settings(cfg),
                   [this](cdc::CommittedTransaction&& t) { out.push_back(std::move(t)); }};

  static cdc::Relation rel(std::uint32_t id, const std::string& name,
                           std::vector<std::pair<std::string, std::uint32_t>> cols) {
    cdc::Relation r{id, "public", name, 'f', {}};
    for (auto& [n, oid] : cols) r.columns.push_back({0, n, oid, -1});
    return r;
  }
  void relations() {
    a.on_relation(
        rel(1, "users", {{"id", 20}, {"full_name", 25}, {"email", 25}, {"created_at", 1184}}));
    a.on_relation(rel(2, "accounts",
                      {{"id", 20}, {"user_id", 20}, {"currency", 1042}, {"created_at", 1184}}));
    a.on_relation(rel(3, "transactions",
                      {{"id", 20},
                       {"account_id", 20},
                       {"amount", 1700},
                       {"kind", 25},
                       {"transfer_id", 2950},
                       {"created_at", 1184}}));
  }
  static std::vector<TupleValue> tx(const char* id, const char* acct, const char* amount,
                                    const char* kind) {
    return {{'t', id},   {'t', acct}, {'t', amount},
            {'t', kind}, {'n', {}},   {'t', "2026-11-23 02:19:57.123456+00"}};
  }
};

TEST_F(Fixture, GroupsRowsByOrderingKeyInRowOrder) {
  relations();
  a.on_begin({100, 0, 7});
  auto w = tx("1", "10", "5.0000", "withdrawal");
  auto d = tx("2", "11", "5.0000", "deposit");
  auto d2 = tx("3", "10", "1.0000", "deposit");
  a.on_insert(3, w);
  a.on_insert(3, d);
  a.on_insert(3, d2);
  std::vector<TupleValue> user{
      {'t', "5"}, {'t', "Ada"}, {'t', "ada@x"}, {'t', "2026-01-01 00:00:00+00"}};
  a.on_insert(1, user);
  EXPECT_TRUE(a.in_transaction());
  a.on_commit({0, 100, 164, 0});
  ASSERT_EQ(out.size(), 1u);
  auto& t = out[0];
  EXPECT_EQ(t.commit_lsn, 100u);
  EXPECT_EQ(t.end_lsn, 164u);
  ASSERT_EQ(t.jobs.size(), 3u);
  EXPECT_EQ(t.jobs[0].key, "a:10");
  EXPECT_EQ(t.jobs[1].key, "a:11");
  EXPECT_EQ(t.jobs[2].key, "u:5");
  ASSERT_EQ(t.jobs[0].changes.size(), 2u);
  EXPECT_EQ(t.jobs[0].changes[0].new_row[projections::bank::kTxId].text, "1");
  EXPECT_EQ(t.jobs[0].changes[1].new_row[projections::bank::kTxId].text, "3");
  EXPECT_EQ(t.jobs[0].commit_lsn, 100u);
  EXPECT_EQ(t.jobs[0].end_lsn, 164u);
  EXPECT_EQ(t.priorities[0], 5);
  EXPECT_EQ(t.priorities[2], 3);
  EXPECT_EQ(t.jobs[2].changes[0].new_row[projections::bank::kUserEmail].text, "ada@x");
}

TEST_F(Fixture, MapsColumnsByNameWhateverTheirOrderAndExtras) {
  a.on_relation(rel(3, "transactions",
                    {{"note", 25},
                     {"kind", 25},
                     {"created_at", 1184},
                     {"amount", 1700},
                     {"account_id", 20},
                     {"id", 20}}));
  a.on_begin({100, 0, 7});
  std::vector<TupleValue> row{{'t', "hello"},  {'t', "deposit"}, {'t', "2026-11-23 02:19:57+00"},
                              {'t', "3.5000"}, {'t', "42"},      {'t', "9"}};
  a.on_insert(3, row);
  a.on_commit({0, 100, 120, 0});
  ASSERT_EQ(out.size(), 1u);
  const auto& c = out[0].jobs[0].changes[0];
  EXPECT_EQ(out[0].jobs[0].key, "a:42");
  EXPECT_EQ(c.new_row[projections::bank::kTxId].text, "9");
  EXPECT_EQ(c.new_row[projections::bank::kTxAmount].text, "3.5000");
  EXPECT_EQ(c.new_row[projections::bank::kTxTransferId].kind,
            queue::Value::Missing);  // dropped column
}

TEST_F(Fixture, MoneyColumnWithAnotherTypeFailsClosedAtItsFirstRowChange) {
  // The Relation message itself is accepted (it has no WAL position of its own); the first row
  // change that uses it is refused, so the reader names that change's position.
  a.on_relation(
      rel(3, "transactions",
          {{"id", 20}, {"account_id", 20}, {"amount", 701}, {"kind", 25}, {"created_at", 1184}}));
  a.on_begin({100, 0, 7});
  std::vector<TupleValue> row{
      {'t', "1"}, {'t', "1"}, {'t', "0.1"}, {'t', "deposit"}, {'t', "2026-01-01 00:00:00+00"}};
  try {
    a.on_insert(3, row);
    FAIL() << "a double precision amount was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("column 'amount' is now double precision"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("numeric"), std::string::npos) << e.what();
  }
  // A relation without an id column likewise.
  a.on_relation(rel(4, "accounts", {{"user_id", 20}, {"currency", 1042}}));
  std::vector<TupleValue> acct{{'t', "1"}, {'t', "EUR"}};
  EXPECT_THROW(a.on_insert(4, acct), DataError);
}

TEST_F(Fixture, UnconfiguredTablesAreIgnored) {
  a.on_relation(rel(9, "audit_log", {{"id", 20}}));
  a.on_begin({100, 0, 7});
  std::vector<TupleValue> row{{'t', "1"}};
  a.on_insert(9, row);
  a.on_commit({0, 100, 120, 0});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].jobs.empty());
}

TEST_F(Fixture, RowBeforeItsRelationIsAnError) {
  a.on_begin({100, 0, 7});
  std::vector<TupleValue> row{{'t', "1"}};
  EXPECT_THROW(a.on_insert(3, row), cdc::DecodeError);
}

TEST_F(Fixture, TransactionMovedBetweenAccountsGoesToBothKeys) {
  relations();
  a.on_begin({100, 0, 7});
  auto old_row = tx("1", "10", "5.0000", "deposit");
  auto new_row = tx("1", "11", "5.0000", "deposit");
  a.on_update(3, 'O', old_row, new_row);
  a.on_commit({0, 100, 120, 0});
  ASSERT_EQ(out[0].jobs.size(), 2u);
  EXPECT_EQ(out[0].jobs[0].key, "a:10");
  EXPECT_EQ(out[0].jobs[1].key, "a:11");
  EXPECT_EQ(out[0].jobs[0].changes[0].op, 'U');
  EXPECT_EQ(out[0].jobs[1].changes[0].op, 'U');
}

TEST_F(Fixture, PrimaryKeyChangeBecomesDeleteAndInsert) {
  relations();
  a.on_begin({100, 0, 7});
  auto old_row = tx("1", "10", "5.0000", "deposit");
  auto new_row = tx("2", "10", "5.0000", "deposit");
  a.on_update(3, 'O', old_row, new_row);
  a.on_commit({0, 100, 120, 0});
  ASSERT_EQ(out[0].jobs.size(), 1u);
  ASSERT_EQ(out[0].jobs[0].changes.size(), 2u);
  EXPECT_EQ(out[0].jobs[0].changes[0].op, 'D');
  EXPECT_EQ(out[0].jobs[0].changes[0].old_row[0].text, "1");
  EXPECT_EQ(out[0].jobs[0].changes[1].op, 'I');
  EXPECT_EQ(out[0].jobs[0].changes[1].new_row[0].text, "2");
}

TEST_F(Fixture, DeleteWithoutFullOldRowPointsToReplicaIdentity) {
  relations();
  a.on_begin({100, 0, 7});
  std::vector<TupleValue> key_only{{'t', "1"}, {'n', {}}, {'n', {}},
                                   {'n', {}},  {'n', {}}, {'n', {}}};
  try {
    a.on_delete(3, 'K', key_only);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("REPLICA IDENTITY FULL"), std::string::npos) << e.what();
  }
}

TEST_F(Fixture, TruncateOfAProjectedTableIsReportedAtCommit) {
  relations();
  a.on_begin({100, 0, 7});
  a.on_truncate({0, {3}});
  a.on_commit({0, 100, 120, 0});
  ASSERT_EQ(out.size(), 1u);
  // The reader ends its session at this commit and the read model is rebuilt (pipeline/rebuild.h).
  ASSERT_EQ(out[0].truncated.size(), 1u);
  EXPECT_NE(out[0].truncated[0].find("transactions"), std::string::npos) << out[0].truncated[0];
  a.on_begin({200, 0, 8});
  a.on_commit({0, 200, 220, 0});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[1].truncated.empty());
}

TEST_F(Fixture, NullsAndUnchangedToastAreCarried) {
  relations();
  a.on_begin({100, 0, 7});
  std::vector<TupleValue> oldu{
      {'t', "5"}, {'t', "Ada"}, {'t', "a@x"}, {'t', "2026-01-01 00:00:00+00"}};
  std::vector<TupleValue> newu{
      {'t', "5"}, {'u', {}}, {'t', "b@x"}, {'t', "2026-01-01 00:00:00+00"}};
  a.on_update(1, 'O', oldu, newu);
  a.on_commit({0, 100, 120, 0});
  const auto& c = out[0].jobs[0].changes[0];
  EXPECT_EQ(c.new_row[projections::bank::kUserFullName].kind, queue::Value::Unchanged);
  EXPECT_EQ(c.old_row[projections::bank::kUserFullName].text, "Ada");
}

TEST_F(Fixture, ResetDropsAHalfReceivedTransaction) {
  relations();
  a.on_begin({100, 0, 7});
  auto d = tx("2", "11", "5.0000", "deposit");
  a.on_insert(3, d);
  a.reset();
  EXPECT_FALSE(a.in_transaction());
  std::vector<TupleValue> row{{'t', "1"}};
  EXPECT_THROW(a.on_insert(3, row), cdc::DecodeError);  // relations forgotten too
  EXPECT_TRUE(out.empty());
}

}  // namespace

TEST(AssemblerLimits, ATransactionOverMaxTransactionMbIsRefusedNamingItAndTheSetting) {
  Config cfg = projections::parse_config("postgres: {dsn: 'x'}\nreader: {max_transaction_mb: 1}\n",
                                         "test.yaml");
  int commits = 0;
  pipeline::SourceAdapter src{cfg, projections::bank::projection()};
  cdc::Assembler a{src.source, src.router, pipeline::assembly_settings(cfg),
                   [&](cdc::CommittedTransaction&&) { ++commits; }};
  a.on_relation(Fixture::rel(1, "users", {{"id", 20}, {"full_name", 25}, {"email", 25}}));
  a.on_begin({0x5000, 0, 42});
  const std::string name(1000, 'n');
  int rows = 0;
  try {
    for (; rows < 10000; ++rows) {
      std::string id = std::to_string(rows);
      std::vector<TupleValue> user{{'t', id}, {'t', name}, {'t', "x@y"}};
      a.on_insert(1, user);
    }
    FAIL() << "10,000 rows of 1 KB did not exceed 1 MiB";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("transaction 42 (commit at 0/5000)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("reader.max_transaction_mb"), std::string::npos) << msg;
  }
  // About 1 MiB worth of rows got in, not fewer: the limit counts the row data.
  EXPECT_GT(rows, 700);
  EXPECT_LT(rows, 1100);
  EXPECT_EQ(commits, 0);
}

// The assembler knows no read model: columns, key, types and the identity column all come from
// the projection. A directory-like projection (one document per user keyed by email) over the
// configured users table shows it: the bank's rules (keys "u:<id>") play no part.
struct Directory : projections::Projection {
  std::vector<projections::TableSpec> specs{
      {"users", {{"email"}, {"full_name"}, {"id", projections::ColumnType::Integer}}, false}};
  std::string_view name() const override { return "directory"; }
  const std::vector<projections::TableSpec>& tables() const override { return specs; }
  projections::Route route(const queue::Change& c,
                           const projections::ChangeContext&) const override {
    const auto& row = c.op == 'D' ? c.old_row : c.new_row;
    return {"e:" + row[0].text, {}};
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

TEST(AssemblerProjection, KeysColumnsAndTypesComeFromTheProjection) {
  Config cfg = projections::parse_config("postgres: {dsn: 'x'}\n", "test.yaml");
  Directory dir;
  std::vector<cdc::CommittedTransaction> out;
  pipeline::SourceAdapter src{cfg, dir};
  cdc::Assembler a{src.source, src.router, pipeline::assembly_settings(cfg),
                   [&](cdc::CommittedTransaction&& t) { out.push_back(std::move(t)); }};
  a.on_relation(Fixture::rel(1, "users", {{"id", 20}, {"full_name", 25}, {"email", 25}}));
  a.on_begin({100, 0, 7});
  a.on_insert(1, std::vector<TupleValue>{{'t', "5"}, {'t', "Ada"}, {'t', "ada@x"}});
  // The projection's identity column (email) changed: a delete of the old row, an insert.
  a.on_update(1, 'O', std::vector<TupleValue>{{'t', "6"}, {'t', "Bo"}, {'t', "bo@x"}},
              std::vector<TupleValue>{{'t', "6"}, {'t', "Bo"}, {'t', "bo@y"}});
  a.on_commit({0, 100, 164, 0});
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].jobs.size(), 3u);
  EXPECT_EQ(out[0].jobs[0].key, "e:ada@x");
  EXPECT_EQ(out[0].jobs[1].key, "e:bo@x");
  EXPECT_EQ(out[0].jobs[2].key, "e:bo@y");
  const auto& ins = out[0].jobs[0].changes.at(0);
  EXPECT_EQ(ins.table, 0u);
  ASSERT_EQ(ins.new_row.size(), 3u);  // in the projection's column order
  EXPECT_EQ(ins.new_row[0].text, "ada@x");
  EXPECT_EQ(ins.new_row[1].text, "Ada");
  EXPECT_EQ(ins.new_row[2].text, "5");
  EXPECT_EQ(out[0].jobs[1].changes.at(0).op, 'D');
  EXPECT_EQ(out[0].jobs[2].changes.at(0).op, 'I');
  // A column the projection needs as an integer that is now text fails closed.
  a.on_relation(Fixture::rel(1, "users", {{"id", 25}, {"full_name", 25}, {"email", 25}}));
  a.on_begin({200, 0, 8});
  try {
    a.on_insert(1, std::vector<TupleValue>{{'t', "x"}, {'t', "Ada"}, {'t', "ada@x"}});
    FAIL() << "a text id was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("column 'id' is now text, but walfold needs an integer"),
              std::string::npos)
        << e.what();
  }
}
