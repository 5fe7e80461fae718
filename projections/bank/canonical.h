// The bank's canonical records, one printer per kind: `report` prints them, `reconcile --verify`
// compares them (canonical.cpp: BankCanonicalForm) and `reconcile --repair` compares each
// document with the snapshot through them and prints them as was/now (repair.cpp), so the three
// cannot disagree about what a document says. The format is in read_model.h (BankCanonicalForm).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "projections/bank/snapshot.h"

struct _bson_t;

namespace walfold::projections::bank {

// One "  tx" line of an account: amount canonical, time in microseconds since the epoch.
struct TxLine {
  std::int64_t id = 0;
  std::string kind, amount;
  std::int64_t us = 0;
};

struct AccountRecord {
  std::int64_t id = 0, user = 0;
  std::string currency, balance;  // balance canonical
  std::vector<TxLine> last;       // newest first
};

struct UserRecord {
  std::int64_t id = 0;
  std::string name, email;
  std::vector<std::int64_t> accounts;         // any order: printed sorted
  std::map<std::string, std::string> totals;  // trimmed currency -> canonical amount
};

// The read model's copy of a transaction row (what a window recompute reads). Not in the
// report: repair compares and prints it.
struct TransactionRecord {
  std::int64_t id = 0, account = 0;
  std::string kind, amount;
  std::int64_t us = 0;
  std::optional<std::string> transfer;
};

// The record's text: one or more lines, each ending in '\n'.
//   account 17 user 5 currency USD balance 1234.5
//     tx 902 deposit 100.5 2026-11-23T02:19:57.123456Z
//   user 5 name "Ada Lovelace" email "ada@example.test" accounts 17,18 totals EUR=0 USD=1234.5
//   transaction 902 account 17 deposit 100.5 2026-11-23T02:19:57.123456Z transfer -
std::string canonical_text(const AccountRecord& a);
std::string canonical_text(const UserRecord& u);
std::string canonical_text(const TransactionRecord& t);

// From the snapshot (snapshot.h).
AccountRecord account_record(const AccountTruth& a);
UserRecord user_record(const UserTruth& u);
TransactionRecord transaction_record(const TxTruth& t);

// From a live document (the caller skips tombstones). Throws DataError naming `where`, the
// document's _id and the field when a field the record shows is missing or of another type.
AccountRecord account_record(std::string_view where, const _bson_t* doc);
UserRecord user_record(std::string_view where, const _bson_t* doc);
TransactionRecord transaction_record(std::string_view where, const _bson_t* doc);

}  // namespace walfold::projections::bank
