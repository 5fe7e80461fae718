// The bank projection: turns jobs (row changes of users, accounts, transactions) into guarded
// MongoDB updates. Pure: no I/O here, so every rule is unit-testable.
//
// Idempotency: every document carries the commit LSN of the last change folded into it
// (accounts.applied_lsn, transactions.applied_lsn, users.profile_lsn, and per account
// users.acct_lsn.<id>), and every update is filtered on "that LSN < this job's LSN". A document
// is only ever changed by one ordering key's jobs (or, for a user document, per account by that
// account's key), and the queue folds one key's jobs in commit order, so a replayed job matches
// nothing and changes nothing. See projections/README.md for the documents.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/decimal.h"
#include "projections/mongo.h"
#include "queue/job.h"

namespace walfold::projections {

// What one batch of jobs writes, per collection, in order.
struct WritePlan {
  std::vector<Statement> transactions, users, accounts;
  // accounts whose last_transactions must be recomputed from the transactions collection after
  // the writes (a transaction was corrected, deleted or moved): account id -> highest job LSN.
  std::map<std::int64_t, Lsn> dirty_windows;
  std::size_t changes = 0;
  // Users whose totals this plan $incs under an exactness bound (see BankFold): after the users
  // bulk, each must hold the account's job (acct_lsn.<account> or floor_lsn at or past `lsn`);
  // one that does not was refused by its bound, because the sum would have been rounded.
  struct TotalCheck {
    std::int64_t user_id = 0, account_id = 0;
    Lsn lsn = 0;
    std::string currencies;  // for the error: "EUR +12.5000"
  };
  std::vector<TotalCheck> total_checks;
};

// What MongoDB holds for an account before the batch (from one find per batch).
struct AccountSnapshot {
  bool exists = false;
  std::int64_t user_id = 0;
  std::string currency;
  Decimal balance;
  Lsn applied_lsn = 0;
  bool deleted = false;
};

// What MongoDB holds for a user before the batch: the totals and which account jobs they hold.
struct UserSnapshot {
  std::map<std::string, Decimal> balances;  // currency -> total
  std::map<std::int64_t, Lsn> acct_lsn;     // account id -> LSN of its last job folded here
  Lsn floor_lsn = 0;
};

// "a:17" -> 17 (accounts), "u:5" -> 5 (users); throws DataError otherwise.
std::pair<char, std::int64_t> parse_ordering_key(const std::string& key);

class BankFold {
 public:
  // Account ids whose snapshot the fold needs: the account keys among the claimed keys.
  static std::vector<std::int64_t> accounts_needed(const std::vector<std::string>& keys);
  void set_account(std::int64_t id, const AccountSnapshot& snapshot);
  // User ids whose totals the jobs of the accounts set so far can change: their owners, and the
  // users accounts move to in these jobs.
  std::vector<std::int64_t> users_needed(const std::vector<const queue::Job*>& jobs) const;
  void set_user(std::int64_t id, UserSnapshot snapshot);

  // Folds one job into the plan. Jobs of one key must be folded in commit order. Throws
  // DataError (naming table, column, row id and LSN) when the job cannot be folded exactly.
  void fold(const queue::Job& job, WritePlan& plan);

 private:
  void fold_user_job(const queue::Job& job, std::int64_t user_id, WritePlan& plan);
  void fold_account_job(const queue::Job& job, std::int64_t account_id, WritePlan& plan);
  std::unordered_map<std::int64_t, AccountSnapshot> accounts_;
  // Running totals: every sum MongoDB is asked to compute ($inc on Decimal128) is computed here
  // first, exactly, and refused (DataError naming user, currency and LSN) when it needs more
  // than 34 significant digits, where Decimal128 would round it silently.
  std::unordered_map<std::int64_t, UserSnapshot> users_;
};

}  // namespace walfold::projections
