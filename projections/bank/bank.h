// The bank projection (projections/projection.h): users, accounts and transactions folded into
// the `users`, `accounts` and `transactions` collections (projections/README.md).
//
// Ordering keys: "a:<account id>" for an account and its transactions (a transaction moved
// between accounts goes to both), "u:<user id>" for a user's profile. Priority rules may test a
// transaction's `kind` and `amount` (config/README.md, priorities.rules).
#pragma once

#include "projections/projection.h"

namespace walfold::projections::bank {

class BankProjection : public Projection {
 public:
  std::string_view name() const override { return "bank"; }
  const std::vector<TableSpec>& tables() const override;
  Route route(const queue::Change& c, const ChangeContext& where) const override;
  bool rule_applies(std::size_t table, const PriorityRule& rule) const override;
  bool rule_matches(std::size_t table, const PriorityRule& rule,
                    const std::vector<queue::Value>& row) const override;
  std::unique_ptr<Batch> start_batch(mongo::MongoPool& pool) const override;
  std::string_view schema_sql() const override;
  const SnapshotLoad* snapshot_load() const override;
  const CanonicalForm* canonical_form() const override;
  const SnapshotRepair* snapshot_repair() const override;
  std::unique_ptr<LoadGenerator> load_generator() const override;
};

// The one instance walfold runs.
const BankProjection& projection();

}  // namespace walfold::projections::bank
