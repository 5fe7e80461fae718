// The source alone: an Assembler driven by tables and a Router written here, with no
// configuration and no projection. This file is linked into cdc_alone_tests with wf_cdc and
// nothing else (tests/CMakeLists.txt), so it also proves that cdc/ needs neither config/ nor
// projections/ to key and prioritise rows: jobs are keyed and prioritised exactly as the router
// says, rows carry the source's columns in the source's order, and the router is asked with the
// table it belongs to.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "cdc/assembler.h"
#include "cdc/source.h"
#include "common/error.h"

namespace {

using namespace walfold;
using cdc::TupleValue;

// Two tables: orders (job table id 7) keyed by customer, notes (id 3) keyed by their author.
cdc::Source test_source() {
  cdc::Source s;
  s.name = "router-test";
  s.tables.push_back(
      {"shop",
       "orders",
       7,
       "orders",
       {{"order_no", cdc::TypeClass::Integer}, {"customer"}, {"total", cdc::TypeClass::Numeric}},
       true});
  s.tables.push_back({"shop", "notes", 3, "notes", {{"note_id"}, {"author"}}, false});
  s.tables.push_back({"shop",
                      "broken",
                      9,
                      "broken",
                      {{"id"}},
                      false,
                      "is listed by this test as one that cannot be decoded"});
  return s;
}

// Keys: "<table>/<column 1>"; a change of column 1 moves the row between keys. Priority: a row
// whose column 1 starts with "vip" gets 1, others 40 + the table's index. Every call recorded.
struct TestRouter : cdc::Router {
  mutable std::vector<std::pair<std::size_t, std::string>> routed;       // (table, key)
  mutable std::vector<std::pair<std::size_t, std::string>> prioritised;  // (table, column 1)
  cdc::Keys route(std::size_t table, const queue::Change& c,
                  const cdc::ChangeContext& where) const override {
    const auto& row = c.op == 'D' ? c.old_row : c.new_row;
    if (row.at(1).kind != queue::Value::Text)
      throw DataError("no key for a change of " + std::string(where.relation));
    cdc::Keys k{std::to_string(table) + "/" + row[1].text, {}};
    if (c.op == 'U' && !c.old_row.empty() && c.old_row[1].kind == queue::Value::Text &&
        c.old_row[1].text != row[1].text)
      k.old_key = std::to_string(table) + "/" + c.old_row[1].text;
    routed.emplace_back(table, k.key);
    return k;
  }
  int priority(std::size_t table, const std::vector<queue::Value>& row) const override {
    prioritised.emplace_back(table, row.at(1).text);
    return row[1].text.rfind("vip", 0) == 0 ? 1 : 40 + static_cast<int>(table);
  }
};

cdc::Relation relation(std::uint32_t oid, const std::string& name,
                       std::vector<std::pair<std::string, std::uint32_t>> cols) {
  cdc::Relation r{oid, "shop", name, 'f', {}};
  for (auto& [n, type] : cols) r.columns.push_back({0, n, type, -1});
  return r;
}

struct AssemblerAlone : ::testing::Test {
  cdc::Source source = test_source();
  TestRouter router;
  std::vector<cdc::CommittedTransaction> out;
  cdc::Assembler a{source,
                   router,
                   {.max_transaction_mb = 1, .replay_priority = 200},
                   [this](cdc::CommittedTransaction&& t) { out.push_back(std::move(t)); }};

  void SetUp() override {
    // Columns in another order than the source's, with one the source does not extract.
    a.on_relation(relation(100, "orders",
                           {{"total", 1700}, {"note", 25}, {"customer", 25}, {"order_no", 20}}));
    a.on_relation(relation(200, "notes", {{"note_id", 25}, {"author", 25}}));
    a.on_relation(relation(300, "elsewhere", {{"id", 20}}));  // not the source's: ignored
  }
  static std::vector<TupleValue> order(const char* total, const char* customer, const char* no) {
    return {{'t', total}, {'t', "a note"}, {'t', customer}, {'t', no}};
  }
};

TEST_F(AssemblerAlone, KeysAndPrioritisesRowsAsTheRouterSays) {
  a.on_begin({0x100, 0, 7});
  a.on_insert(100, order("10.50", "ada", "1"));
  a.on_insert(200, std::vector<TupleValue>{{'t', "n1"}, {'t', "vip-bo"}});
  a.on_insert(100, order("3.00", "ada", "2"));
  a.on_insert(300, std::vector<TupleValue>{{'t', "1"}});  // ignored
  a.on_insert(100, order("7.00", "cy", "3"));
  a.on_commit({0, 0x100, 0x164, 0});

  ASSERT_EQ(out.size(), 1u);
  const auto& t = out[0];
  ASSERT_EQ(t.jobs.size(), 3u);  // one per key, first-touched first
  EXPECT_EQ(t.jobs[0].key, "0/ada");
  EXPECT_EQ(t.jobs[1].key, "1/vip-bo");
  EXPECT_EQ(t.jobs[2].key, "0/cy");
  EXPECT_EQ(t.priorities, (std::vector<int>{40, 1, 40}));
  ASSERT_EQ(t.jobs[0].changes.size(), 2u);  // both of ada's rows, in row order
  const auto& c = t.jobs[0].changes[0];
  EXPECT_EQ(c.table, 7u);  // the job format's table id, not the index in Source::tables
  EXPECT_EQ(c.op, 'I');
  ASSERT_EQ(c.new_row.size(), 3u);  // the source's columns, in the source's order
  EXPECT_EQ(c.new_row[0].text, "1");
  EXPECT_EQ(c.new_row[1].text, "ada");
  EXPECT_EQ(c.new_row[2].text, "10.50");
  EXPECT_EQ(t.jobs[0].changes[1].new_row[0].text, "2");
  EXPECT_EQ(t.jobs[1].changes[0].table, 3u);
  // The router was asked once per row, with the row's table.
  EXPECT_EQ(router.routed, (std::vector<std::pair<std::size_t, std::string>>{
                               {0, "0/ada"}, {1, "1/vip-bo"}, {0, "0/ada"}, {0, "0/cy"}}));
  EXPECT_EQ(router.prioritised.size(), 4u);
}

TEST_F(AssemblerAlone, AJobTakesItsMostUrgentRowAndAnUpdateTheMoreUrgentOfItsRows) {
  a.on_begin({0x200, 0, 8});
  a.on_insert(100, order("1.00", "dee", "4"));
  // The old row was a vip customer's, the new one is not: the row moves between keys.
  a.on_update(100, 'O', order("1.00", "vip-eve", "5"), order("1.00", "eve", "5"));
  a.on_delete(200, 'O', std::vector<TupleValue>{{'t', "n2"}, {'t', "vip-fay"}});
  a.on_commit({0, 0x200, 0x264, 0});

  ASSERT_EQ(out.size(), 1u);
  const auto& t = out[0];
  ASSERT_EQ(t.jobs.size(), 4u);
  EXPECT_EQ(t.jobs[0].key, "0/dee");
  EXPECT_EQ(t.priorities[0], 40);
  // The update moved the row from vip-eve to eve: both keys carry it, at the old row's priority.
  EXPECT_EQ(t.jobs[1].key, "0/vip-eve");
  EXPECT_EQ(t.jobs[2].key, "0/eve");
  EXPECT_EQ(t.priorities[1], 1);
  EXPECT_EQ(t.priorities[2], 1);
  EXPECT_EQ(t.jobs[1].changes.at(0).op, 'U');
  EXPECT_EQ(t.jobs[1].changes.at(0).old_row.at(1).text, "vip-eve");
  // A delete is keyed and prioritised by its old row.
  EXPECT_EQ(t.jobs[3].key, "1/vip-fay");
  EXPECT_EQ(t.priorities[3], 1);
}

TEST_F(AssemblerAlone, ReplayedTrafficGetsTheSettingsReplayPriority) {
  a.set_replay(true);
  a.on_begin({0x300, 0, 9});
  a.on_insert(200, std::vector<TupleValue>{{'t', "n3"}, {'t', "vip-gus"}});
  a.on_commit({0, 0x300, 0x364, 0});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].jobs.at(0).key, "1/vip-gus");
  EXPECT_EQ(out[0].priorities, (std::vector<int>{200}));
}

TEST_F(AssemblerAlone, TheRoutersErrorStopsTheTransaction) {
  a.on_begin({0x400, 0, 10});
  EXPECT_THROW(a.on_insert(200, std::vector<TupleValue>{{'t', "n4"}, {'n', {}}}), DataError);
}

TEST_F(AssemblerAlone, TablesTheSourceCannotDecodeFailClosedWithTheirReasons) {
  // A listed table with a problem: its first row change fails with it.
  a.on_relation(relation(400, "broken", {{"id", 20}}));
  a.on_begin({0x500, 0, 11});
  try {
    a.on_insert(400, std::vector<TupleValue>{{'t', "1"}});
    FAIL() << "a row of a table with a problem was accepted";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()),
              "relation shop.broken is listed by this test as one that cannot be decoded");
  }
  // A column whose type is not of the class the source needs.
  a.on_relation(relation(
      100, "orders", {{"order_no", 20}, {"customer", 25}, {"total", 701 /* double precision */}}));
  try {
    a.on_insert(100, std::vector<TupleValue>{{'t', "1"}, {'t', "hal"}, {'t', "1.5"}});
    FAIL() << "a double precision total was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("column 'total' is now double precision, but walfold "
                                         "needs numeric"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(router.routed.empty());
}

}  // namespace
