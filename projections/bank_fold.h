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

// "a:17" -> 17 (accounts), "u:5" -> 5 (users); throws DataError otherwise.
std::pair<char, std::int64_t> parse_ordering_key(const std::string& key);

class BankFold {
 public:
  // Account ids whose snapshot the fold needs: the account keys among the claimed keys.
  static std::vector<std::int64_t> accounts_needed(const std::vector<std::string>& keys);
  void set_account(std::int64_t id, const AccountSnapshot& snapshot);

  // Folds one job into the plan. Jobs of one key must be folded in commit order. Throws
  // DataError (naming table, column, row id and LSN) when the job cannot be folded exactly.
  void fold(const queue::Job& job, WritePlan& plan);

 private:
  void fold_user_job(const queue::Job& job, std::int64_t user_id, WritePlan& plan);
  void fold_account_job(const queue::Job& job, std::int64_t account_id, WritePlan& plan);
  std::unordered_map<std::int64_t, AccountSnapshot> accounts_;
};

}  // namespace walfold::projections
