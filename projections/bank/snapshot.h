// The bank's read model computed by PostgreSQL from its tables, inside one consistent
// transaction (projections/read_model.h: PgRead), and the documents written from it with every
// guard at CP - 1 (applied_lsn, window_lsn, profile_lsn, acct_lsn.<id>, floor_lsn).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/decimal.h"
#include "common/lsn.h"
#include "common/pg.h"
#include "projections/mongo.h"
#include "projections/read_model.h"

namespace walfold::projections::bank {

struct TxTruth {
  std::int64_t id = 0, account_id = 0, created_at_us = 0;
  std::string kind;
  Decimal amount;
  std::optional<std::string> transfer_id;
};
struct AccountTruth {
  std::int64_t id = 0, user_id = 0, created_at_us = 0;
  std::string currency;
  Decimal balance;
  std::vector<TxTruth> last;  // newest first, at most kLastTransactions
};
struct UserTruth {
  std::int64_t id = 0, created_at_us = 0;
  std::string full_name, email;
  std::vector<std::int64_t> accounts;
  std::map<std::string, Decimal> balances;
  std::map<std::string, int> counts;
};

// Reads the truth in `pg`'s transaction, in id order. Rows are streamed through a cursor, so
// memory stays bounded by one fetch.
class TruthReader {
 public:
  explicit TruthReader(PgRead& pg) : pg_(pg) {}
  void accounts(const std::function<void(AccountTruth&&)>& each);
  void users(const std::function<void(UserTruth&&)>& each);
  void transactions(const std::function<void(TxTruth&&)>& each);

 private:
  void stream(const std::string& sql, const std::function<void(PGresult*, int)>& row);
  PgRead& pg_;
  int cursors_ = 0;
};

// The read model's documents for the truth, with guards at `guard` (= CP - 1).
Bson account_document(const AccountTruth& a, Lsn guard);
Bson user_document(const UserTruth& u, Lsn guard);
Bson transaction_document(const TxTruth& t, Lsn guard);

}  // namespace walfold::projections::bank
