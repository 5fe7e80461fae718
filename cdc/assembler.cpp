#include "cdc/assembler.h"

#include <spdlog/spdlog.h>

#include "common/error.h"

namespace walfold::cdc {
namespace {

constexpr std::uint32_t kNumericOid = 1700;
constexpr std::uint32_t kInt8Oid = 20, kInt4Oid = 23, kInt2Oid = 21;

std::string type_name(std::uint32_t oid) {
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
}

// Whether a PostgreSQL type is one a source column of class `type` accepts.
bool type_fits(TypeClass type, std::uint32_t oid) {
  switch (type) {
    case TypeClass::Any:
      return true;
    case TypeClass::Integer:
      return oid == kInt8Oid || oid == kInt4Oid || oid == kInt2Oid;
    case TypeClass::Numeric:
      return oid == kNumericOid;
  }
  return false;
}

std::string type_need(const SourceColumn& col) {
  if (!col.need.empty()) return col.need;
  return col.type == TypeClass::Integer ? "an integer" : "numeric";
}

}  // namespace

Assembler::Assembler(const Source& source, const Router& router, AssemblySettings settings,
                     CommitFn on_commit)
    : source_(source), router_(router), settings_(settings), on_commit_(std::move(on_commit)) {}

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
    for (auto& pr : txn_.priorities) pr = settings_.replay_priority;
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
  const auto index = source_.find(r.nspname, r.relname);
  if (!index) {
    spdlog::warn(
        "relation {} (oid {}) is in the publication but not in the configuration's tables; "
        "its changes are ignored",
        info.name, r.relid);
    relations_[r.relid] = std::move(info);
    return;
  }
  info.index = *index;
  info.table = &source_.tables[info.index];
  const auto& spec = *info.table;
  if (!spec.problem.empty()) {
    info.problem = "relation " + info.name + " " + spec.problem;
    relations_[r.relid] = std::move(info);
    return;
  }
  const std::size_t n = spec.columns.size();
  info.field_column.assign(n, -1);
  for (std::size_t f = 0; f < n; ++f) {
    for (std::size_t c = 0; c < r.columns.size(); ++c)
      if (r.columns[c].name == spec.columns[f].name) info.field_column[f] = static_cast<int>(c);
  }
  // A Relation message carries no WAL position of its own (its XLogData starts at 0/0): a
  // relation walfold cannot fold is refused at the first change that uses it, whose position
  // the reader names (and pg_logical_slot_peek_binary_changes shows).
  if (n == 0 || info.field_column[0] < 0) {
    info.problem = "relation " + info.name + " has no column '" +
                   (n ? spec.columns[0].name : std::string("?")) + "' (the " + spec.model +
                   " model needs it); columns were changed incompatibly";
    relations_[r.relid] = std::move(info);
    return;
  }
  for (std::size_t f = 0; f < n && info.problem.empty(); ++f) {
    const int col = info.field_column[f];
    if (col < 0 || type_fits(spec.columns[f].type, r.columns[col].type_oid)) continue;
    info.problem = "relation " + info.name + " column '" + spec.columns[f].name + "' is now " +
                   type_name(r.columns[col].type_oid) + ", but walfold needs " +
                   type_need(spec.columns[f]) +
                   "; refusing to fold it inexactly (fix the schema or the configuration)";
  }
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
  const std::size_t limit = static_cast<std::size_t>(settings_.max_transaction_mb) << 20;
  if (open_bytes_ > limit)
    throw DataError("transaction " + std::to_string(txn_.xid) + " (commit at " +
                    format_lsn(txn_.commit_lsn) + ") holds more than " +
                    std::to_string(settings_.max_transaction_mb) + " MiB of changes to the " +
                    "projected tables (" + std::to_string(open_changes_) +
                    " rows so far); walfold " +
                    "assembles a transaction in memory until its Commit. Nothing of it was " +
                    "enqueued or confirmed: raise reader.max_transaction_mb (the reader needs " +
                    "about that much memory, twice while it enqueues) and start walfold again");
}

// Adds the change under its ordering key, and under the key it moved from when it moved.
void Assembler::route(const RelInfo& r, queue::Change c, int priority) {
  auto keys = router_.route(r.index, c, {r.name, txn_.commit_lsn});
  if (!keys.old_key.empty() && keys.old_key != keys.key) add(r, keys.old_key, c, priority);
  add(r, keys.key, std::move(c), priority);
}

void Assembler::on_insert(std::uint32_t relid, Tuple t) {
  const auto& r = rel(relid);
  if (!r.table) return;
  queue::Change c{r.table->id, 'I', row(r, t), {}};
  int prio = router_.priority(r.index, c.new_row);
  route(r, std::move(c), prio);
}

void Assembler::on_update(std::uint32_t relid, char old_kind, Tuple old_t, Tuple new_t) {
  const auto& r = rel(relid);
  if (!r.table) return;
  queue::Change c{r.table->id, 'U', row(r, new_t),
                  old_kind ? row(r, old_t) : std::vector<queue::Value>{}};
  // An update is as urgent as the more urgent of its old and new row.
  int prio = router_.priority(r.index, c.new_row);
  if (!c.old_row.empty()) prio = std::min(prio, router_.priority(r.index, c.old_row));
  // The row's identity (column 0) changed: fold it as a delete of the old row and an insert of
  // the new one.
  const auto& old_id = c.old_row.empty() ? queue::Value{} : c.old_row[0];
  if (old_id.kind == queue::Value::Text && c.new_row[0].kind == queue::Value::Text &&
      old_id.text != c.new_row[0].text) {
    queue::Change del{c.table, 'D', {}, c.old_row};
    queue::Change ins{c.table, 'I', c.new_row, {}};
    route(r, std::move(del), prio);
    route(r, std::move(ins), prio);
    return;
  }
  route(r, std::move(c), prio);
}

void Assembler::on_delete(std::uint32_t relid, char, Tuple old_t) {
  const auto& r = rel(relid);
  if (!r.table) return;
  queue::Change c{r.table->id, 'D', {}, row(r, old_t)};
  int prio = router_.priority(r.index, c.old_row);
  route(r, std::move(c), prio);
}

void Assembler::on_truncate(const Truncate& t) {
  // Not foldable row by row: the reader rebuilds the read model after this commit.
  for (auto relid : t.relids) {
    const auto& r = rel(relid);
    if (r.table) txn_.truncated.push_back(r.name);
  }
}

}  // namespace walfold::cdc
