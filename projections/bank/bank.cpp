#include "projections/bank/bank.h"

#include "common/decimal.h"
#include "common/error.h"
#include "config/config.h"
#include "projections/bank/bank_fold.h"
#include "projections/bank/loadgen.h"
#include "projections/bank/read_model.h"
#include "projections/bank/schema.h"
#include "projections/bank/sink.h"
#include "projections/rules.h"

namespace walfold::projections::bank {
namespace {

using queue::Value;

// The ordering key of a row: its account's for accounts and transactions, its own for users.
std::string key_of(const queue::Change& c, const std::vector<Value>& row, bool old,
                   const ChangeContext& where) {
  const int f = c.table == kTransactions ? kTxAccountId : 0;
  if (static_cast<std::size_t>(f) >= row.size() || row[f].kind != Value::Text)
    throw DataError("relation " + std::string(where.relation) + ": " + (old ? "old" : "new") +
                    " row without " + column_name(c.table, f) +
                    " (NULL or missing); cannot order it");
  return std::string(c.table == kUsers ? "u:" : "a:") + row[f].text;
}

class BankBatch : public Batch {
 public:
  explicit BankBatch(mongo::MongoPool& pool) : sink_(pool) {}
  void prefetch(const std::vector<std::string>& keys,
                const std::vector<const queue::Job*>& jobs) override {
    for (auto& [id, snap] : sink_.read_accounts(BankFold::accounts_needed(keys)))
      fold_.set_account(id, snap);
    for (auto& [id, snap] : sink_.read_users(fold_.users_needed(jobs)))
      fold_.set_user(id, std::move(snap));
  }
  void fold(const queue::Job& job) override { fold_.fold(job, plan_); }
  void write() override { sink_.write(plan_); }
  BatchStats stats() const override {
    return {plan_.changes, sink_.stats().write_commands, sink_.stats().statements};
  }

 private:
  MongoSink sink_;
  BankFold fold_;
  WritePlan plan_;
};

}  // namespace

const std::vector<TableSpec>& BankProjection::tables() const {
  return bank::tables();
}

Route BankProjection::route(const queue::Change& c, const ChangeContext& where) const {
  if (c.op == 'I') return {key_of(c, c.new_row, false, where), {}};
  if (c.op == 'D') {
    if (c.table == kTransactions &&
        (c.old_row.size() <= kTxAccountId || c.old_row[kTxAccountId].kind != Value::Text))
      throw DataError(
          "DELETE on " + std::string(where.relation) + " id=" +
          (!c.old_row.empty() && c.old_row[0].kind == Value::Text ? c.old_row[0].text : "?") +
          " in the transaction ending at " + format_lsn(where.commit_lsn) +
          " carries only the key: set REPLICA IDENTITY FULL on it (`walfold setup` does) so "
          "walfold can take the old amount out of the balance");
    return {key_of(c, c.old_row, true, where), {}};
  }
  Route r{key_of(c, c.new_row, false, where), {}};
  // A transaction moved between accounts: both accounts' keys see the change.
  if (c.table == kTransactions && c.old_row.size() > kTxAccountId &&
      c.old_row[kTxAccountId].kind == Value::Text) {
    auto old_key = key_of(c, c.old_row, true, where);
    if (old_key != r.key) r.old_key = std::move(old_key);
  }
  return r;
}

bool BankProjection::rule_applies(std::size_t table, const PriorityRule& rule) const {
  // A rule without a table: its kind/amount_above conditions are about transactions.
  return table < kTableCount && rule_applies_to(tables()[table], rule);
}

bool BankProjection::rule_matches(std::size_t table, const PriorityRule& rule,
                                  const std::vector<Value>& row) const {
  // NaN and the like match nothing here; the fold refuses them with the row's details.
  return table < kTableCount && row_satisfies(tables()[table], rule, row);
}

std::unique_ptr<Batch> BankProjection::start_batch(mongo::MongoPool& pool) const {
  return std::make_unique<BankBatch>(pool);
}

std::string_view BankProjection::schema_sql() const {
  return bank::schema_sql();
}

const SnapshotLoad* BankProjection::snapshot_load() const {
  static const BankSnapshotLoad load;
  return &load;
}

const CanonicalForm* BankProjection::canonical_form() const {
  static const BankCanonicalForm form;
  return &form;
}

const SnapshotRepair* BankProjection::snapshot_repair() const {
  static const BankSnapshotRepair repair;
  return &repair;
}

std::unique_ptr<LoadGenerator> BankProjection::load_generator() const {
  return std::make_unique<BankLoadGenerator>();
}

const BankProjection& projection() {
  static const BankProjection p;
  return p;
}

}  // namespace walfold::projections::bank
