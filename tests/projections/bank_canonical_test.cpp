// The bank's canonical records (projections/bank/canonical.h): one printer per kind, the same
// text whether the record comes from the snapshot's rows or from the document written from them,
// and a document that cannot be read is refused naming the field.
#include <gtest/gtest.h>

#include <string>

#include "common/decimal.h"
#include "common/error.h"
#include "projections/bank/canonical.h"
#include "projections/bank/snapshot.h"

namespace walfold::projections::bank {
namespace {

Decimal dec(const char* text) {
  auto d = Decimal::parse(text);
  if (!d) throw std::runtime_error(std::string("bad decimal ") + text);
  return *d;
}

// 2026-01-02T03:04:05.25Z in microseconds since the epoch.
constexpr std::int64_t kT = 1767323045250000;

AccountTruth account() {
  AccountTruth a;
  a.id = 17;
  a.user_id = 5;
  a.currency = "USD";
  a.created_at_us = kT;
  a.balance = dec("1234.50");
  TxTruth t;
  t.id = 902;
  t.account_id = 17;
  t.kind = "deposit";
  t.amount = dec("100.50");
  t.created_at_us = kT + 750000;
  a.last.push_back(t);
  t.id = 901;
  t.kind = "withdrawal";
  t.amount = dec("3");
  t.created_at_us = kT;
  a.last.push_back(t);
  return a;
}

UserTruth user() {
  UserTruth u;
  u.id = 5;
  u.full_name = "Ada \"A\" L\\ove";
  u.email = "ada@example.test";
  u.created_at_us = kT;
  u.accounts = {18, 17};
  u.balances["USD"] = dec("1234.50");
  u.balances["EUR"] = dec("0.00");
  u.counts = {{"USD", 1}, {"EUR", 1}};
  return u;
}

TEST(BankCanonical, EachRecordKindHasOneFormat) {
  EXPECT_EQ(canonical_text(account_record(account())),
            "account 17 user 5 currency USD balance 1234.5\n"
            "  tx 902 deposit 100.5 2026-01-02T03:04:06.000000Z\n"
            "  tx 901 withdrawal 3 2026-01-02T03:04:05.250000Z\n");
  EXPECT_EQ(canonical_text(user_record(user())),
            "user 5 name \"Ada \\\"A\\\" L\\\\ove\" email \"ada@example.test\" accounts 17,18 "
            "totals EUR=0 USD=1234.5\n");
  UserTruth none = user();
  none.accounts.clear();
  none.balances.clear();
  EXPECT_EQ(canonical_text(user_record(none)),
            "user 5 name \"Ada \\\"A\\\" L\\\\ove\" email \"ada@example.test\" accounts - "
            "totals -\n");
  TxTruth t = account().last[0];
  EXPECT_EQ(canonical_text(transaction_record(t)),
            "transaction 902 account 17 deposit 100.5 2026-01-02T03:04:06.000000Z transfer -\n");
  t.transfer_id = "6f1c";
  EXPECT_EQ(canonical_text(transaction_record(t)),
            "transaction 902 account 17 deposit 100.5 2026-01-02T03:04:06.000000Z transfer 6f1c\n");
}

// The snapshot's documents read back print what the snapshot's rows print: repair compares
// exactly these two.
TEST(BankCanonical, TheSnapshotsDocumentPrintsLikeItsRows) {
  const Lsn guard = 41;
  const AccountTruth a = account();
  EXPECT_EQ(canonical_text(account_record("test", account_document(a, guard).get())),
            canonical_text(account_record(a)));
  const UserTruth u = user();
  EXPECT_EQ(canonical_text(user_record("test", user_document(u, guard).get())),
            canonical_text(user_record(u)));
  TxTruth t = a.last[0];
  EXPECT_EQ(canonical_text(transaction_record("test", transaction_document(t, guard).get())),
            canonical_text(transaction_record(t)));
  t.transfer_id = "6f1c";
  EXPECT_EQ(canonical_text(transaction_record("test", transaction_document(t, guard).get())),
            canonical_text(transaction_record(t)));
}

TEST(BankCanonical, ADocumentWithAFieldOfAnotherTypeIsRefusedNamingIt) {
  auto doc = make_bson();
  BSON_APPEND_INT64(doc.get(), "_id", 17);
  BSON_APPEND_INT64(doc.get(), "user_id", 5);
  BSON_APPEND_UTF8(doc.get(), "currency", "USD");
  BSON_APPEND_UTF8(doc.get(), "balance", "12");  // a string, not a Decimal128
  try {
    account_record("MongoDB h:1: db.accounts", doc.get());
    FAIL() << "read";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()),
              "MongoDB h:1: db.accounts document _id 17: field balance is not a Decimal128");
  }
}

}  // namespace
}  // namespace walfold::projections::bank
