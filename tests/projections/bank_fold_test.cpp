// The bank fold: which guarded MongoDB updates a job turns into. Semantics against a MongoDB
// server are covered by the integration tests; here every rule is pinned down without I/O.
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/timestamp.h"
#include "projections/bank/bank_fold.h"
#include "projections/bank/schema.h"

namespace {

using namespace walfold;
using namespace walfold::projections;
using queue::Change;
using queue::Job;
using queue::Value;

Value t(const std::string& s) {
  return {Value::Text, s};
}
Value null() {
  return {Value::Null, ""};
}

std::vector<Value> txrow(const std::string& id, const std::string& acct, const std::string& amount,
                         const std::string& kind,
                         const std::string& ts = "2026-11-23 02:19:57.123456+00") {
  return {t(id), t(acct), t(amount), t(kind), null(), t(ts)};
}
std::vector<Value> acctrow(const std::string& id, const std::string& user, const std::string& cur) {
  return {t(id), t(user), t(cur), t("2026-11-01 00:00:00+00")};
}

Job job(const std::string& key, Lsn lsn, std::vector<Change> changes) {
  Job j;
  j.key = key;
  j.commit_lsn = lsn;
  j.end_lsn = lsn + 10;
  j.changes = std::move(changes);
  return j;
}

std::string json(const std::vector<Statement>& v) {
  std::string s;
  for (const auto& st : v)
    s += bson_json(st.filter.get()) + " => " + bson_json(st.update.get()) + "\n";
  return s;
}

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

AccountSnapshot known(std::int64_t user, const std::string& cur, const std::string& balance,
                      Lsn applied) {
  AccountSnapshot s;
  s.exists = true;
  s.user_id = user;
  s.currency = cur;
  s.balance = *Decimal::parse(balance);
  s.applied_lsn = applied;
  return s;
}

TEST(Fold, AccountInsertCreatesAccountAndUserMembership) {
  BankFold f;
  WritePlan p;
  f.fold(job("a:7", 100, {{projections::bank::kAccounts, 'I', acctrow("7", "3", "USD"), {}}}), p);
  auto acc = json(p.accounts), users = json(p.users);
  EXPECT_TRUE(has(acc, R"("$setOnInsert" : { "balance" : { "$numberDecimal" : "0" })")) << acc;
  EXPECT_TRUE(has(acc, R"("applied_lsn" : { "$not" : { "$gte" : 100 } })")) << acc;
  EXPECT_TRUE(has(acc, R"("user_id" : 3, "currency" : "USD")")) << acc;
  EXPECT_TRUE(has(users, R"("acct_lsn.7" : { "$not" : { "$gte" : 100 } })")) << users;
  EXPECT_TRUE(
      has(users,
          R"("$inc" : { "balances.USD" : { "$numberDecimal" : "0" }, "account_count.USD" : 1 })"))
      << users;
  EXPECT_TRUE(has(users, R"("$addToSet" : { "accounts" : 7 })")) << users;
  EXPECT_TRUE(p.transactions.empty());
}

TEST(Fold, DepositsAndWithdrawalsAreExactAndCoalescedPerDocument) {
  BankFold f;
  f.set_account(7, known(3, "EUR", "10.0000", 50));
  WritePlan p;
  f.fold(job("a:7", 100,
             {{projections::bank::kTransactions, 'I', txrow("1", "7", "100.5000", "deposit"), {}},
              {projections::bank::kTransactions,
               'I',
               txrow("2", "7", "0.1234", "withdrawal", "2026-11-23 02:19:58+00"),
               {}}}),
         p);
  auto acc = json(p.accounts), users = json(p.users), txs = json(p.transactions);
  // One guarded update per document: +100.5000 - 0.1234 = 100.3766, never a double.
  EXPECT_TRUE(has(acc, R"("$inc" : { "balance" : { "$numberDecimal" : "100.3766" } })")) << acc;
  EXPECT_TRUE(has(users, R"("balances.EUR" : { "$numberDecimal" : "100.3766" })")) << users;
  EXPECT_TRUE(has(acc, R"("$slice" : 3)")) << acc;
  EXPECT_TRUE(has(acc, R"("$sort" : { "created_at_us" : -1, "id" : -1 })")) << acc;
  EXPECT_TRUE(
      has(acc, R"("id" : 1, "kind" : "deposit", "amount" : { "$numberDecimal" : "100.5000" })"))
      << acc;
  EXPECT_TRUE(
      has(txs,
          R"("account_id" : 7, "kind" : "withdrawal", "amount" : { "$numberDecimal" : "0.1234" })"))
      << txs;
  EXPECT_EQ(p.accounts.size(), 2u);  // ensure + guarded
  EXPECT_EQ(p.users.size(), 2u);
  EXPECT_EQ(p.transactions.size(), 4u);
  EXPECT_TRUE(p.dirty_windows.empty());
}

// A BSON date is milliseconds: both documents that carry a transaction's created_at (its own
// and the account's last_transactions entry) floor the microseconds, so a time half a
// millisecond before the epoch is -1 ms in both, never 0 in one of them.
TEST(Fold, DatesAreFlooredToTheMillisecondInEveryDocument) {
  BankFold f;
  f.set_account(7, known(3, "EUR", "0", 50));
  WritePlan p;
  f.fold(job("a:7", 100,
             {{projections::bank::kTransactions,
               'I',
               txrow("1", "7", "1.0000", "deposit", "1969-12-31 23:59:59.9995+00"),
               {}}}),
         p);
  auto acc = json(p.accounts), txs = json(p.transactions);
  const std::string floored = R"("created_at" : { "$date" : { "$numberLong" : "-1" } })";
  EXPECT_TRUE(has(acc, floored)) << acc;
  EXPECT_TRUE(has(txs, floored)) << txs;
  EXPECT_TRUE(has(txs, R"("created_at_us" : -500)")) << txs;
  EXPECT_EQ(floor_ms(-1), -1);
  EXPECT_EQ(floor_ms(-1000), -1);
  EXPECT_EQ(floor_ms(-1001), -2);
  EXPECT_EQ(floor_ms(1999), 1);
}

TEST(Fold, AJobTheAccountDocumentAlreadyHoldsWritesNothing) {
  BankFold f;
  f.set_account(7, known(3, "EUR", "10.0000", 100));
  WritePlan p;
  f.fold(job("a:7", 100,
             {{projections::bank::kTransactions, 'I', txrow("1", "7", "1.0000", "deposit"), {}}}),
         p);
  f.fold(job("a:7", 90,
             {{projections::bank::kTransactions, 'I', txrow("0", "7", "1.0000", "deposit"), {}}}),
         p);
  EXPECT_TRUE(p.accounts.empty());
  EXPECT_TRUE(p.users.empty());
  EXPECT_TRUE(p.transactions.empty());
}

TEST(Fold, LaterJobsInOneBatchSeeEarlierOnes) {
  BankFold f;
  f.set_account(7, known(3, "EUR", "0", 50));
  WritePlan p;
  f.fold(job("a:7", 100,
             {{projections::bank::kTransactions, 'I', txrow("1", "7", "5.0000", "deposit"), {}}}),
         p);
  // The account moves to user 4 later in the same batch: its balance (5) moves too.
  f.fold(job("a:7", 200,
             {{projections::bank::kAccounts, 'U', acctrow("7", "4", "EUR"),
               acctrow("7", "3", "EUR")}}),
         p);
  auto users = json(p.users);
  EXPECT_TRUE(has(
      users,
      R"({ "_id" : 3, "acct_lsn.7" : { "$not" : { "$gte" : 200 } }, "floor_lsn" : { "$not" : { "$gte" : 200 } }, "$and" : [ { "balances.EUR" : { "$not" : { "$gt" : { "$numberDecimal" : "999999999999999999999999999999.9999" } } } }, { "balances.EUR" : { "$not" : { "$lt" : { "$numberDecimal" : "-999999999999999999999999999994.9999" } } } } ] } => { "$inc" : { "balances.EUR" : { "$numberDecimal" : "-5.0000" }, "account_count.EUR" : -1 }, "$pull" : { "accounts" : 7 })"))
      << users;
  // The currency leaves user 3 once no account of it is left there.
  EXPECT_TRUE(has(
      users,
      R"({ "_id" : 3, "account_count.EUR" : 0 } => { "$unset" : { "balances.EUR" : "", "account_count.EUR" : "" } })"))
      << users;
  EXPECT_TRUE(has(
      users,
      R"({ "_id" : 4, "acct_lsn.7" : { "$not" : { "$gte" : 200 } }, "floor_lsn" : { "$not" : { "$gte" : 200 } }, "$and" : [ { "balances.EUR" : { "$not" : { "$gt" : { "$numberDecimal" : "999999999999999999999999999994.9999" } } } }, { "balances.EUR" : { "$not" : { "$lt" : { "$numberDecimal" : "-999999999999999999999999999999.9999" } } } } ] } => { "$inc" : { "balances.EUR" : { "$numberDecimal" : "5.0000" }, "account_count.EUR" : 1 }, "$addToSet" : { "accounts" : 7 })"))
      << users;
}

TEST(Fold, CorrectionsTakeTheOldAmountOutAndRecomputeTheWindow) {
  BankFold f;
  f.set_account(7, known(3, "USD", "100.0000", 50));
  WritePlan p;
  f.fold(job("a:7", 100,
             {{projections::bank::kTransactions, 'U', txrow("1", "7", "30.0000", "deposit"),
               txrow("1", "7", "100.0000", "deposit")}}),
         p);
  auto acc = json(p.accounts);
  EXPECT_TRUE(has(acc, R"("balance" : { "$numberDecimal" : "-70.0000" })")) << acc;
  EXPECT_FALSE(has(acc, "$push")) << acc;
  ASSERT_EQ(p.dirty_windows.count(7), 1u);
  EXPECT_EQ(p.dirty_windows[7], 100u);

  WritePlan d;
  f.fold(job("a:7", 200,
             {{projections::bank::kTransactions, 'D', {}, txrow("1", "7", "30.0000", "deposit")}}),
         d);
  auto txs = json(d.transactions);
  EXPECT_TRUE(has(txs, R"("deleted" : true, "applied_lsn" : 200)"))
      << txs;  // tombstone, not a delete
  EXPECT_TRUE(has(json(d.accounts), R"("balance" : { "$numberDecimal" : "-30.0000" })"));
  EXPECT_EQ(d.dirty_windows[7], 200u);
}

TEST(Fold, TransactionMovedOutLeavesAMarkAndTheOtherAccountGetsIt) {
  BankFold f;
  f.set_account(7, known(3, "USD", "10.0000", 50));
  f.set_account(8, known(3, "USD", "0", 50));
  Change move{projections::bank::kTransactions, 'U', txrow("1", "8", "10.0000", "deposit"),
              txrow("1", "7", "10.0000", "deposit")};
  WritePlan p;
  f.fold(job("a:7", 100, {move}), p);
  f.fold(job("a:8", 100, {move}), p);
  auto txs = json(p.transactions), acc = json(p.accounts);
  EXPECT_TRUE(has(txs, R"("$max" : { "left.7" : 100 })")) << txs;
  EXPECT_TRUE(has(txs, R"("account_id" : 8)")) << txs;
  EXPECT_TRUE(has(
      acc,
      R"({ "_id" : 7, "applied_lsn" : { "$not" : { "$gte" : 100 } } } => { "$inc" : { "balance" : { "$numberDecimal" : "-10.0000" } })"))
      << acc;
  EXPECT_TRUE(has(
      acc,
      R"({ "_id" : 8, "applied_lsn" : { "$not" : { "$gte" : 100 } } } => { "$inc" : { "balance" : { "$numberDecimal" : "10.0000" } })"))
      << acc;
  EXPECT_EQ(p.dirty_windows.size(), 2u);
}

TEST(Fold, UserProfileChangesAreGuardedSeparately) {
  BankFold f;
  WritePlan p;
  f.fold(job("u:3", 100,
             {{projections::bank::kUsers,
               'U',
               {t("3"), {Value::Unchanged, ""}, t("new@x"), t("2026-01-01 00:00:00+00")},
               {t("3"), t("Ada"), t("old@x"), t("2026-01-01 00:00:00+00")}}}),
         p);
  auto users = json(p.users);
  EXPECT_TRUE(has(users, R"("profile_lsn" : { "$not" : { "$gte" : 100 } })")) << users;
  // The TOAST-unchanged name is taken from the old row, never written as a placeholder.
  EXPECT_TRUE(has(users, R"("full_name" : "Ada", "email" : "new@x")")) << users;
  WritePlan d;
  f.fold(job("u:3", 200, {{projections::bank::kUsers, 'D', {}, {t("3"), null(), null(), null()}}}),
         d);
  EXPECT_TRUE(has(json(d.users), R"("deleted" : true)"));
}

TEST(Fold, UnchangedToastWithoutOldValueIsNeverWritten) {
  BankFold f;
  WritePlan p;
  f.fold(job("u:3", 100,
             {{projections::bank::kUsers,
               'U',
               {t("3"), {Value::Unchanged, ""}, t("e@x"), t("2026-01-01 00:00:00+00")},
               {}}}),
         p);
  auto users = json(p.users);
  EXPECT_FALSE(has(users, "full_name")) << users;
  EXPECT_TRUE(has(users, R"("email" : "e@x")")) << users;
}

TEST(Fold, NanAmountIsRejectedWithItsLocation) {
  BankFold f;
  f.set_account(7, known(3, "USD", "0", 50));
  WritePlan p;
  try {
    f.fold(job("a:7", 0x1A2B3C,
               {{projections::bank::kTransactions, 'I', txrow("99", "7", "NaN", "deposit"), {}}}),
           p);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    std::string m = e.what();
    EXPECT_TRUE(has(m, "transactions row id=99")) << m;
    EXPECT_TRUE(has(m, "column amount")) << m;
    EXPECT_TRUE(has(m, "0/1A2B3C")) << m;
    EXPECT_TRUE(has(m, "NaN")) << m;
  }
  EXPECT_TRUE(p.accounts.empty());  // nothing half-written for the failed job
}

TEST(Fold, NullMoneyAndUnknownKindAreRejected) {
  BankFold f;
  f.set_account(7, known(3, "USD", "0", 50));
  WritePlan p;
  auto row = txrow("1", "7", "1.0000", "deposit");
  row[projections::bank::kTxAmount] = null();
  EXPECT_THROW(f.fold(job("a:7", 100, {{projections::bank::kTransactions, 'I', row, {}}}), p),
               DataError);
  EXPECT_THROW(
      f.fold(job("a:7", 100,
                 {{projections::bank::kTransactions, 'I', txrow("1", "7", "1", "refund"), {}}}),
             p),
      DataError);
}

TEST(Fold, DeleteWithoutOldRowNamesReplicaIdentity) {
  BankFold f;
  f.set_account(7, known(3, "USD", "0", 50));
  WritePlan p;
  std::vector<Value> key_only{t("1"),
                              t("7"),
                              {Value::Missing, ""},
                              {Value::Missing, ""},
                              {Value::Missing, ""},
                              {Value::Missing, ""}};
  try {
    f.fold(job("a:7", 100, {{projections::bank::kTransactions, 'D', {}, key_only}}), p);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_TRUE(has(e.what(), "REPLICA IDENTITY FULL")) << e.what();
  }
}

TEST(Fold, MoneyForAnAccountTheReadModelDoesNotKnowIsAnError) {
  BankFold f;
  WritePlan p;
  try {
    f.fold(job("a:7", 100,
               {{projections::bank::kTransactions, 'I', txrow("1", "7", "1.0000", "deposit"), {}}}),
           p);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_TRUE(has(e.what(), "account 7")) << e.what();
    EXPECT_TRUE(has(e.what(), "reconcile")) << e.what();
  }
}

TEST(Fold, AccountDeleteLeavesATombstoneAndLeavesTheUser) {
  BankFold f;
  f.set_account(7, known(3, "USD", "0", 50));
  WritePlan p;
  f.fold(job("a:7", 100, {{projections::bank::kAccounts, 'D', {}, acctrow("7", "3", "USD")}}), p);
  EXPECT_TRUE(has(json(p.accounts), R"("deleted" : true)"));
  EXPECT_TRUE(has(json(p.users), R"("$pull" : { "accounts" : 7 })"));
}

TEST(Fold, MalformedKeysAreRejected) {
  EXPECT_THROW(parse_ordering_key("x:1"), DataError);
  EXPECT_THROW(parse_ordering_key("a:"), DataError);
  EXPECT_THROW(parse_ordering_key("a:12z"), DataError);
  EXPECT_EQ(parse_ordering_key("a:12").second, 12);
  EXPECT_EQ(parse_ordering_key("u:5").first, 'u');
}

}  // namespace

namespace {

// Issue #9: a user's per-currency total is a sum MongoDB computes ($inc on Decimal128); one that
// needs more than 34 significant digits would be rounded silently.
TEST(Fold, AUserTotalPastThirtyFourDigitsIsRefusedNamingUserCurrencyAndLsn) {
  BankFold f;
  f.set_account(8, known(3, "EUR", "0.000000", 60));
  UserSnapshot u;  // account 7 of the same user holds the rest of the total
  u.balances["EUR"] = *Decimal::parse("5999999999999999999999999999.994000");
  u.acct_lsn[7] = 50;
  u.acct_lsn[8] = 60;
  f.set_user(3, u);
  WritePlan p;
  try {
    // Fits account 8's balance (34 digits), but the user's total would need 35.
    f.fold(job("a:8", 0x100,
               {{projections::bank::kTransactions,
                 'I',
                 txrow("9", "8", "5999999999999999999999999999.994001", "deposit"),
                 {}}}),
           p);
    FAIL() << "a total of 35 digits was folded";
  } catch (const DataError& e) {
    const std::string m = e.what();
    EXPECT_TRUE(has(m, "user 3 total in EUR")) << m;
    EXPECT_TRUE(has(m, "34 decimal digits")) << m;
    EXPECT_TRUE(has(m, "0/100")) << m;
  }
  EXPECT_TRUE(p.users.empty() && p.transactions.empty() && p.accounts.empty())
      << "a refused job leaves no statement behind";
}

TEST(Fold, UserTotalUpdatesCarryAnExactnessBoundAndAreChecked) {
  BankFold f;
  f.set_account(7, known(3, "EUR", "10.0000", 50));
  UserSnapshot u;
  u.balances["EUR"] = *Decimal::parse("10.0000");
  f.set_user(3, u);
  WritePlan p;
  f.fold(job("a:7", 100,
             {{projections::bank::kTransactions, 'I', txrow("1", "7", "2.5000", "deposit"), {}}}),
         p);
  auto users = json(p.users);
  // 34 nines at scale 4, minus the increment: above it, MongoDB would round the sum; below,
  // the total itself is not exact at that scale.
  EXPECT_TRUE(has(
      users,
      R"("$and" : [ { "balances.EUR" : { "$not" : { "$gt" : { "$numberDecimal" : "999999999999999999999999999997.4999" } } } }, { "balances.EUR" : { "$not" : { "$lt" : { "$numberDecimal" : "-999999999999999999999999999999.9999" } } } } ])"))
      << users;
  // Mixed scales bound both sides: a total at scale 0 near the negative limit can be pushed
  // past 34 digits by a positive increment with more fractional digits.
  {
    BankFold g;
    g.set_account(7, known(3, "EUR", "10", 50));
    UserSnapshot v;
    v.balances["EUR"] = *Decimal::parse("-5000000000000000000000000000000000");
    g.set_user(3, v);
    WritePlan q;
    EXPECT_THROW(
        g.fold(
            job("a:7", 100,
                {{projections::bank::kTransactions, 'I', txrow("1", "7", "0.5", "deposit"), {}}}),
            q),
        DataError);
    BankFold h;  // the same without the read: the bound in the filter catches it instead
    h.set_account(7, known(3, "EUR", "10", 50));
    WritePlan r;
    h.fold(job("a:7", 100,
               {{projections::bank::kTransactions, 'I', txrow("1", "7", "0.5", "deposit"), {}}}),
           r);
    auto hu = json(r.users);
    EXPECT_TRUE(has(hu, R"("$gt" : { "$numberDecimal" : "999999999999999999999999999999999.4" })"))
        << hu;
    EXPECT_TRUE(has(hu, R"("$lt" : { "$numberDecimal" : "-999999999999999999999999999999999.9" })"))
        << hu;
  }
  ASSERT_EQ(p.total_checks.size(), 1u);
  EXPECT_EQ(p.total_checks[0].user_id, 3);
  EXPECT_EQ(p.total_checks[0].account_id, 7);
  EXPECT_EQ(p.total_checks[0].lsn, 100u);
  // The running total follows the batch: a second job sees 12.5000.
  f.fold(job("a:7", 200,
             {{projections::bank::kTransactions,
               'I',
               txrow("2", "7", "999999999999999999999999999987.4999", "deposit"),
               {}}}),
         p);
  EXPECT_THROW(
      f.fold(
          job("a:7", 300,
              {{projections::bank::kTransactions, 'I', txrow("3", "7", "0.0001", "deposit"), {}}}),
          p),
      DataError);
}

}  // namespace

namespace bank = walfold::projections::bank;

TEST(BankSchema, ColumnCountsAndNames) {
  EXPECT_EQ(bank::column_count(bank::kUsers), 4);
  EXPECT_EQ(bank::column_count(bank::kAccounts), 4);
  EXPECT_EQ(bank::column_count(bank::kTransactions), 6);
  EXPECT_EQ(bank::column_count(bank::kTableCount), 0);
  EXPECT_STREQ(bank::column_name(bank::kUsers, bank::kUserEmail), "email");
  EXPECT_STREQ(bank::column_name(bank::kAccounts, bank::kAcctCurrency), "currency");
  EXPECT_STREQ(bank::column_name(bank::kTransactions, bank::kTxAmount), "amount");
  EXPECT_STREQ(bank::column_name(bank::kTransactions, bank::kTxTransferId), "transfer_id");
  EXPECT_STREQ(bank::column_name(bank::kUsers, 4), "?");
  EXPECT_STREQ(bank::column_name(bank::kUsers, -1), "?");
  EXPECT_STREQ(bank::table_name(bank::kTransactions), "transactions");
  EXPECT_STREQ(bank::table_name(7), "?");
  // What preflight and the assembler are told: the tables that need the whole old row.
  const auto& specs = bank::tables();
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_FALSE(specs[bank::kUsers].replica_identity_full);
  EXPECT_TRUE(specs[bank::kAccounts].replica_identity_full);
  EXPECT_TRUE(specs[bank::kTransactions].replica_identity_full);
  EXPECT_EQ(specs[bank::kTransactions].columns[bank::kTxAmount].type,
            projections::ColumnType::Numeric);
}

TEST(Fold, RefusesRowsOfTheWrongWidthOrAnUnknownTable) {
  // The job format is generic (queue/job.h): the bank checks a change's table and row width
  // before reading any column, so a corrupt or foreign job is a DataError, never a read past
  // the row.
  BankFold f;
  f.set_account(7, known(3, "EUR", "0", 50));
  WritePlan p;
  auto short_row = txrow("1", "7", "1.0000", "deposit");
  short_row.pop_back();
  EXPECT_THROW(f.fold(job("a:7", 100, {{bank::kTransactions, 'I', short_row, {}}}), p), DataError);
  EXPECT_THROW(f.fold(job("u:3", 100, {{bank::kUsers, 'U', {t("3")}, {}}}), p), DataError);
  EXPECT_THROW(f.fold(job("u:3", 100, {{bank::kUsers, 'U', {}, {}}}), p), DataError);
  EXPECT_THROW(f.fold(job("a:7", 100, {{3, 'I', acctrow("7", "3", "EUR"), {}}}), p), DataError);
  EXPECT_EQ(p.changes, 0u);
  EXPECT_TRUE(p.accounts.empty() && p.users.empty() && p.transactions.empty());
  // The right width folds.
  EXPECT_NO_THROW(f.fold(
      job("a:7", 100, {{bank::kTransactions, 'I', txrow("1", "7", "1.0000", "deposit"), {}}}), p));
}
