// Turns decoded pgoutput messages into jobs: rows of the configured tables are collected while
// a transaction is open (Begin..Commit) and, at Commit, grouped by ordering key into one job
// per key, in row order. What a table's columns are, which types they must keep and which
// ordering key(s) and priority a row change has are the projection's (projections/projection.h):
// relations are mapped to its columns by name, so added or reordered columns are harmless; a
// column whose type no longer is the one the projection needs fails closed.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cdc/pgoutput.h"
#include "config/config.h"
#include "projections/projection.h"
#include "queue/job.h"

namespace walfold::cdc {

struct CommittedTransaction {
  Lsn commit_lsn = 0, end_lsn = 0;
  std::int64_t commit_time_us = 0;
  std::uint32_t xid = 0;
  std::vector<queue::Job> jobs;        // one per ordering key, first-touched first
  std::vector<int> priorities;         // per job: the highest priority (lowest number) of its rows
  std::vector<std::string> truncated;  // projected tables this transaction TRUNCATEd (a rebuild)
};

// The priority of one row of the projection's table `table_id`: its table's, or a more urgent
// one from a rule of `priorities.rules` (config/README.md) the projection says it matches. `row`
// is the new row, or the old one for a delete.
int row_priority(const projections::Projection& projection, std::uint32_t table_id,
                 const TableConfig& table, const std::vector<const PriorityRule*>& rules,
                 const std::vector<queue::Value>& row);

class Assembler : public Handler {
 public:
  using CommitFn = std::function<void(CommittedTransaction&&)>;
  Assembler(const Config& cfg, const projections::Projection& projection, CommitFn on_commit);

  bool in_transaction() const { return in_txn_; }
  Lsn open_transaction_lsn() const { return txn_.commit_lsn; }
  // Forget any half-received transaction and the relation cache (after a reconnect).
  void reset();
  std::size_t open_changes() const { return open_changes_; }
  std::size_t open_bytes() const { return open_bytes_; }
  // Replay mode (snapshot, replay after a Redis loss, reconcile traffic): while on, every job
  // committed gets priorities.replay instead of its rows' priority. For the reader to switch.
  void set_replay(bool on) { replay_ = on; }
  bool replay() const { return replay_; }

  void on_begin(const Begin&) override;
  void on_commit(const Commit&) override;
  void on_relation(const Relation&) override;
  void on_insert(std::uint32_t relid, Tuple new_tuple) override;
  void on_update(std::uint32_t relid, char old_kind, Tuple old_tuple, Tuple new_tuple) override;
  void on_delete(std::uint32_t relid, char old_kind, Tuple old_tuple) override;
  void on_truncate(const Truncate&) override;

 private:
  struct RelInfo {
    const TableConfig* table = nullptr;  // nullptr: not projected
    std::uint32_t table_id = 0;          // index into the projection's tables()
    std::string name;
    std::vector<int> field_column;  // projection column -> column index in the tuple, -1 if absent
    std::vector<const PriorityRule*> rules;  // priorities.rules that can apply to this table
    std::string problem;  // why it cannot be folded: thrown at its first row change
  };
  const RelInfo& rel(std::uint32_t relid) const;
  std::vector<queue::Value> row(const RelInfo& r, Tuple t) const;
  void add(const RelInfo& r, const std::string& key, queue::Change c, int priority);
  void route(const RelInfo& r, queue::Change c, int priority);

  const Config& cfg_;
  const projections::Projection& projection_;
  CommitFn on_commit_;
  std::unordered_map<std::uint32_t, RelInfo> relations_;
  bool in_txn_ = false;
  CommittedTransaction txn_;
  std::unordered_map<std::string, std::size_t> job_index_;
  std::size_t open_changes_ = 0;
  std::size_t open_bytes_ = 0;  // approximate memory of the open transaction's changes
  bool replay_ = false;
};

}  // namespace walfold::cdc
