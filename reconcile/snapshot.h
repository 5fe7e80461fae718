// The read model computed by PostgreSQL from its tables, inside one exported snapshot whose
// position in the WAL is known exactly (the consistent point of a replication slot created with
// SNAPSHOT 'export'). Used by the initial snapshot (a new slot), by `reconcile --full` (rebuild
// when the slot is gone), by the rebuild after a TRUNCATE, and by `reconcile --repair`.
//
// Documents written from a snapshot at consistent point CP carry CP - 1 in every guard
// (applied_lsn, window_lsn, profile_lsn, acct_lsn.<id>, floor_lsn): every commit the snapshot
// contains is below CP, every commit the slot streams afterwards is at or above it, so the fold's
// guards skip exactly what the snapshot already holds.
#pragma once

#include <atomic>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/decimal.h"
#include "common/lsn.h"
#include "common/pg.h"
#include "config/config.h"
#include "projections/mongo.h"

namespace walfold::reconcile {

// A replication slot created with an exported snapshot. The snapshot stays importable while
// this object (its replication connection) lives and runs nothing else.
struct ExportedSnapshot {
  std::unique_ptr<PgConn> connection;
  std::string slot;
  std::string name;  // for SET TRANSACTION SNAPSHOT
  Lsn consistent_point = 0;
  std::string system_id;
};
// CREATE_REPLICATION_SLOT <slot> [TEMPORARY] LOGICAL pgoutput (SNAPSHOT 'export').
ExportedSnapshot create_slot_with_snapshot(const PgConnInfo& dsn, const std::string& slot,
                                           bool temporary);
// A temporary slot (gone with its connection) next to walfold's own, named
// "<slot>_<purpose>_<pid>": an exact snapshot position for a rebuild or a repair.
ExportedSnapshot create_temporary_snapshot(const PgConnInfo& dsn, const std::string& slot,
                                           const std::string& purpose);

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
  std::vector<TxTruth> last;  // newest first, at most 3
};
struct UserTruth {
  std::int64_t id = 0, created_at_us = 0;
  std::string full_name, email;
  std::vector<std::int64_t> accounts;
  std::map<std::string, Decimal> balances;
  std::map<std::string, int> counts;
};

// Reads the truth inside `snapshot` (a transaction is opened on `pg` and imports it). With ids
// given, only those accounts / users are read; nullopt reads all. Rows are streamed through a
// cursor, so memory stays bounded by one fetch.
class TruthReader {
 public:
  TruthReader(const Config& cfg, const PgConnInfo& dsn, const std::string& snapshot);
  void accounts(const std::optional<std::vector<std::int64_t>>& ids,
                const std::function<void(AccountTruth&&)>& each);
  void users(const std::optional<std::vector<std::int64_t>>& ids,
             const std::function<void(UserTruth&&)>& each);
  void transactions(const std::function<void(TxTruth&&)>& each);
  PgConn& connection() { return pg_; }

 private:
  void stream(const std::string& sql, const std::vector<std::optional<std::string>>& params,
              const std::function<void(PGresult*, int)>& row);
  const Config& cfg_;
  PgConn pg_;
  int cursors_ = 0;
};

// The read model's documents for the truth, with guards at `guard` (= CP - 1).
projections::Bson account_document(const AccountTruth& a, Lsn guard);
projections::Bson user_document(const UserTruth& u, Lsn guard);
projections::Bson transaction_document(const TxTruth& t, Lsn guard);

struct LoadStats {
  std::size_t accounts = 0, users = 0, transactions = 0, tombstoned = 0;
  double seconds = 0;
};
// Writes the whole read model from the snapshot (replacing what is there) and tombstones every
// document the snapshot does not contain. Nothing may fold jobs at or above the consistent point
// meanwhile (the callers guarantee it: nothing is streamed from the slot yet).
// `written`, when given, counts the documents as MongoDB acknowledges them (progress metrics).
LoadStats load_read_model(const Config& cfg, projections::MongoPool& pool,
                          const std::string& snapshot, Lsn consistent_point,
                          std::atomic<std::uint64_t>* written = nullptr);

}  // namespace walfold::reconcile
