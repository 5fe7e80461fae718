// The bank's read model from the tables (projections/read_model.h): the snapshot load
// (snapshot.cpp), the canonical form that `report` prints and `reconcile --verify` compares
// (canonical.cpp), and the per-document repair (repair.cpp). All three read the tables through
// the snapshot's TruthReader (snapshot.h) and print through canonical.h's printers.
#pragma once

#include "projections/read_model.h"

namespace walfold::projections::bank {

// Writes transactions, then users, then accounts (the order of a worker's bulk writes), each
// replaced whole, and tombstones what the snapshot lacks.
class BankSnapshotLoad : public SnapshotLoad {
 public:
  void prepare(mongo::MongoPool& pool) const override;
  LoadStats load(PgRead& pg, mongo::MongoPool& pool, Lsn guard,
                 std::atomic<std::uint64_t>* written) const override;
};

// Sections "account" (its line, then one "  tx" line per transaction of its window) and
// "user". Format:
//   account 17 user 5 currency USD balance 1234.5
//     tx 902 deposit 100.5 2026-11-23T02:19:57.123456Z
//   user 5 name "Ada Lovelace" email "ada@example.test" accounts 17,18 totals EUR=0 USD=1234.5
// Amounts are in canonical decimal form (no trailing zeros, "0" for zero); an account lists its
// kLastTransactions newest transactions (created_at desc, id desc; from MongoDB:
// `last_transactions` in stored order); name and email are quoted with \" \\ \n escaped;
// accounts "-" and totals "-" when the user has none.
class BankCanonicalForm : public CanonicalForm {
 public:
  void from_postgres(PgRead& pg, const RecordSink& each) const override;
  void from_mongo(DocumentScan& mongo, const RecordSink& each) const override;
};

// Compares the copies of transaction rows (which a window recompute reads), then users, then
// accounts, each walked in _id order beside the snapshot. Guards compared-and-set: applied_lsn
// and window_lsn (accounts); profile_lsn, floor_lsn and acct_lsn (users); applied_lsn and left
// (transactions).
class BankSnapshotRepair : public SnapshotRepair {
 public:
  void repair(PgRead& pg, mongo::MongoPool& pool, Lsn consistent_point,
              RepairLog& log) const override;
};

}  // namespace walfold::projections::bank
