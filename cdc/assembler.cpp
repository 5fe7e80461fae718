#include "cdc/assembler.h"

#include <spdlog/spdlog.h>

#include "common/error.h"

namespace walfold::cdc {
namespace {

constexpr std::uint32_t kNumericOid = 1700;
constexpr std::uint32_t kInt8Oid = 20, kInt4Oid = 23, kInt2Oid = 21;

int id_field(Model) {
  return 0;
}  // `id` is field 0 of every model

}  // namespace

int row_priority(const TableConfig& table, const std::vector<const PriorityRule*>& rules,
                 const std::vector<queue::Value>& row) {
  int best = table.priority;
  for (const auto* rule : rules) {
    if (rule->priority >= best) continue;
    if (rule->kind || rule->amount_above) {
      if (table.model != Model::Transactions || row.size() <= queue::kTxKind) continue;
      if (rule->kind && (row[queue::kTxKind].kind != queue::Value::Text ||
                         row[queue::kTxKind].text != *rule->kind))
        continue;
      if (rule->amount_above) {
        if (row[queue::kTxAmount].kind != queue::Value::Text) continue;
        auto amount = Decimal::parse(row[queue::kTxAmount].text);
        // NaN and the like match nothing here; the fold refuses them with the row's details.
        if (!amount || amount->compare(*rule->amount_above) <= 0) continue;
      }
    }
    best = rule->priority;
  }
  return best;
}

Assembler::Assembler(const Config& cfg, CommitFn on_commit)
    : cfg_(cfg), on_commit_(std::move(on_commit)) {}

void Assembler::reset() {
  in_txn_ = false;
  txn_ = {};
  job_index_.clear();
  relations_.clear();
  open_changes_ = 0;
  open_bytes_ = 0;
}

void Assembler::on_begin(const Begin& b) {
  if (in_txn_)
    throw DecodeError("Begin at " + format_lsn(b.final_lsn) + " inside an open transaction");
  in_txn_ = true;
  txn_ = {};
  txn_.commit_lsn = b.final_lsn;
  txn_.xid = b.xid;
  job_index_.clear();
  open_changes_ = 0;
  open_bytes_ = 0;
}

void Assembler::on_commit(const Commit& c) {
  if (!in_txn_) throw DecodeError("Commit at " + format_lsn(c.commit_lsn) + " without Begin");
  in_txn_ = false;
  txn_.commit_lsn = c.commit_lsn;
  txn_.end_lsn = c.end_lsn;
  // PostgreSQL epoch (2000-01-01) microseconds -> Unix microseconds.
  txn_.commit_time_us = c.commit_time + 946684800LL * 1000000;
  if (replay_)
    for (auto& pr : txn_.priorities) pr = cfg_.priorities.replay;
  for (auto& j : txn_.jobs) {
    j.commit_lsn = c.commit_lsn;
    j.end_lsn = c.end_lsn;
    j.commit_time_us = txn_.commit_time_us;
  }
  job_index_.clear();
  open_changes_ = 0;
  open_bytes_ = 0;
  on_commit_(std::move(txn_));
  txn_ = {};
}

void Assembler::on_relation(const Relation& r) {
  RelInfo info;
  info.name = r.nspname + "." + r.relname;
  info.table = cfg_.table(r.nspname, r.relname);
  if (!info.table) {
    spdlog::warn(
        "relation {} (oid {}) is in the publication but not in the configuration's tables; "
        "its changes are ignored",
        info.name, r.relid);
    relations_[r.relid] = std::move(info);
    return;
  }
  for (const auto& rule : cfg_.priorities.rules) {
    if (!rule.table.empty()
            ? rule.table == info.name
            : (!rule.kind && !rule.amount_above) || info.table->model == Model::Transactions)
      info.rules.push_back(&rule);
  }
  Model m = info.table->model;
  int n = queue::field_count(m);
  info.field_column.assign(n, -1);
  for (int f = 0; f < n; ++f) {
    for (std::size_t c = 0; c < r.columns.size(); ++c)
      if (r.columns[c].name == queue::field_name(m, f)) info.field_column[f] = static_cast<int>(c);
  }
  // A Relation message carries no WAL position of its own (its XLogData starts at 0/0): a
  // relation walfold cannot fold is refused at the first change that uses it, whose position
  // the reader names (and pg_logical_slot_peek_binary_changes shows).
  if (info.field_column[id_field(m)] < 0) {
    info.problem = "relation " + info.name + " has no column 'id' (the " +
                   std::string(model_name(m)) +
                   " model needs it); columns were changed incompatibly";
    relations_[r.relid] = std::move(info);
    return;
  }
  auto type_name = [](std::uint32_t oid) -> std::string {
    switch (oid) {
      case 20:
        return "bigint";
      case 21:
        return "smallint";
      case 23:
        return "integer";
      case 25:
        return "text";
      case 700:
        return "real";
      case 701:
        return "double precision";
      case 790:
        return "money";
      case 1043:
        return "varchar";
      case 1700:
        return "numeric";
      default:
        return "type oid " + std::to_string(oid);
    }
  };
  auto check_type = [&](int f, std::initializer_list<std::uint32_t> oids, const char* what) {
    int col = info.field_column[f];
    if (col < 0 || !info.problem.empty()) return;
    for (auto o : oids)
      if (r.columns[col].type_oid == o) return;
    info.problem = "relation " + info.name + " column '" + queue::field_name(m, f) + "' is now " +
                   type_name(r.columns[col].type_oid) + ", but walfold needs " + what +
                   "; refusing to fold it inexactly (fix the schema or the configuration)";
  };
  check_type(id_field(m), {kInt8Oid, kInt4Oid, kInt2Oid}, "an integer");
  if (m == Model::Transactions) {
    check_type(queue::kTxAmount, {kNumericOid}, "numeric (money is exact)");
    check_type(queue::kTxAccountId, {kInt8Oid, kInt4Oid, kInt2Oid}, "an integer");
  }
  if (m == Model::Accounts)
    check_type(queue::kAcctUserId, {kInt8Oid, kInt4Oid, kInt2Oid}, "an integer");
  relations_[r.relid] = std::move(info);
}

const Assembler::RelInfo& Assembler::rel(std::uint32_t relid) const {
  auto it = relations_.find(relid);
  if (it == relations_.end())
    throw DecodeError("row change for relation oid " + std::to_string(relid) +
                      " before its Relation message");
  if (!it->second.problem.empty()) throw DataError(it->second.problem);
  return it->second;
}

std::vector<queue::Value> Assembler::row(const RelInfo& r, Tuple t) const {
  std::vector<queue::Value> out(r.field_column.size());
  for (std::size_t f = 0; f < r.field_column.size(); ++f) {
    int col = r.field_column[f];
    if (col < 0 || static_cast<std::size_t>(col) >= t.size()) continue;  // Missing
    const auto& v = t[col];
    switch (v.kind) {
      case 'n':
        out[f].kind = queue::Value::Null;
        break;
      case 'u':
        out[f].kind = queue::Value::Unchanged;
        break;
      default:
        out[f].kind = queue::Value::Text;
        out[f].text.assign(v.data);
    }
  }
  return out;
}

std::string Assembler::key_for(const RelInfo& r, const std::vector<queue::Value>& row,
                               bool old) const {
  Model m = r.table->model;
  int f = m == Model::Transactions ? queue::kTxAccountId : 0;
  if (row[f].kind != queue::Value::Text)
    throw DataError("relation " + r.name + ": " + (old ? "old" : "new") + " row without " +
                    queue::field_name(m, f) + " (NULL or missing); cannot order it");
  return std::string(m == Model::Users ? "u:" : "a:") + row[f].text;
}

void Assembler::add(const RelInfo&, const std::string& key, queue::Change c, int priority) {
  auto [it, inserted] = job_index_.try_emplace(key, txn_.jobs.size());
  if (inserted) {
    queue::Job j;
    j.key = key;
    txn_.jobs.push_back(std::move(j));
    txn_.priorities.push_back(priority);
  }
  auto& pr = txn_.priorities[it->second];
  pr = std::min(pr, priority);
  std::size_t bytes = sizeof(queue::Change);
  for (const auto* row : {&c.new_row, &c.old_row})
    for (const auto& v : *row) bytes += sizeof(queue::Value) + v.text.size();
  txn_.jobs[it->second].changes.push_back(std::move(c));
  ++open_changes_;
  open_bytes_ += bytes;
  const std::size_t limit = static_cast<std::size_t>(cfg_.reader.max_transaction_mb) << 20;
  if (open_bytes_ > limit)
    throw DataError("transaction " + std::to_string(txn_.xid) + " (commit at " +
                    format_lsn(txn_.commit_lsn) + ") holds more than " +
                    std::to_string(cfg_.reader.max_transaction_mb) + " MiB of changes to the " +
                    "bank tables (" + std::to_string(open_changes_) + " rows so far); walfold " +
                    "assembles a transaction in memory until its Commit. Nothing of it was " +
                    "enqueued or confirmed: raise reader.max_transaction_mb (the reader needs " +
                    "about that much memory, twice while it enqueues) and start walfold again");
}

void Assembler::on_insert(std::uint32_t relid, Tuple t) {
  const auto& r = rel(relid);
  if (!r.table) return;
  queue::Change c{r.table->model, 'I', row(r, t), {}};
  auto key = key_for(r, c.new_row, false);
  int prio = row_priority(*r.table, r.rules, c.new_row);
  add(r, key, std::move(c), prio);
}

void Assembler::on_update(std::uint32_t relid, char old_kind, Tuple old_t, Tuple new_t) {
  const auto& r = rel(relid);
  if (!r.table) return;
  queue::Change c{r.table->model, 'U', row(r, new_t),
                  old_kind ? row(r, old_t) : std::vector<queue::Value>{}};
  // An update is as urgent as the more urgent of its old and new row.
  int prio = row_priority(*r.table, r.rules, c.new_row);
  if (!c.old_row.empty()) prio = std::min(prio, row_priority(*r.table, r.rules, c.old_row));
  // The primary key changed: fold it as a delete of the old row and an insert of the new one.
  const auto& old_id = c.old_row.empty() ? queue::Value{} : c.old_row[0];
  if (old_id.kind == queue::Value::Text && c.new_row[0].kind == queue::Value::Text &&
      old_id.text != c.new_row[0].text) {
    queue::Change del{c.model, 'D', {}, c.old_row};
    queue::Change ins{c.model, 'I', c.new_row, {}};
    auto dk = key_for(r, del.old_row, true);
    add(r, dk, std::move(del), prio);
    auto ik = key_for(r, ins.new_row, false);
    add(r, ik, std::move(ins), prio);
    return;
  }
  auto new_key = key_for(r, c.new_row, false);
  if (r.table->model == Model::Transactions && !c.old_row.empty() &&
      c.old_row[queue::kTxAccountId].kind == queue::Value::Text) {
    // A transaction moved between accounts: both accounts' keys see the change.
    auto old_key = key_for(r, c.old_row, true);
    if (old_key != new_key) add(r, old_key, c, prio);
  }
  add(r, new_key, std::move(c), prio);
}

void Assembler::on_delete(std::uint32_t relid, char, Tuple old_t) {
  const auto& r = rel(relid);
  if (!r.table) return;
  queue::Change c{r.table->model, 'D', {}, row(r, old_t)};
  if (r.table->model == Model::Transactions &&
      c.old_row[queue::kTxAccountId].kind != queue::Value::Text)
    throw DataError(
        "DELETE on " + r.name +
        " id=" + (c.old_row[0].kind == queue::Value::Text ? c.old_row[0].text : "?") +
        " in the transaction ending at " + format_lsn(txn_.commit_lsn) +
        " carries only the key: set REPLICA IDENTITY FULL on it (`walfold setup` does) so "
        "walfold can take the old amount out of the balance");
  auto key = key_for(r, c.old_row, true);
  int prio = row_priority(*r.table, r.rules, c.old_row);
  add(r, key, std::move(c), prio);
}

void Assembler::on_truncate(const Truncate& t) {
  // Not foldable row by row: the reader rebuilds the read model after this commit.
  for (auto relid : t.relids) {
    const auto& r = rel(relid);
    if (r.table) txn_.truncated.push_back(r.name);
  }
}

}  // namespace walfold::cdc
