// Turns decoded pgoutput messages into jobs: rows of the source's tables are collected while
// a transaction is open (Begin..Commit) and, at Commit, grouped by ordering key into one job
// per key, in row order. What a table's columns are and which types they must keep are the
// Source's, which ordering key(s) and priority a row change has the Router's (cdc/source.h):
// relations are mapped to the columns by name, so added or reordered columns are harmless; a
// column whose type no longer is the one needed fails closed.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cdc/pgoutput.h"
#include "cdc/source.h"
#include "queue/job.h"

namespace walfold::cdc {

struct CommittedTransaction {
  Lsn commit_lsn = 0, end_lsn = 0;
  std::int64_t commit_time_us = 0;
  std::uint32_t xid = 0;
  std::vector<queue::Job> jobs;        // one per ordering key, first-touched first
  std::vector<int> priorities;         // per job: the highest priority (lowest number) of its rows
  std::vector<std::string> truncated;  // source tables this transaction TRUNCATEd (a rebuild)
};

class Assembler : public Handler {
 public:
  using CommitFn = std::function<void(CommittedTransaction&&)>;
  // `source` and `router` outlive the assembler.
  Assembler(const Source& source, const Router& router, AssemblySettings settings,
            CommitFn on_commit);

  bool in_transaction() const { return in_txn_; }
  Lsn open_transaction_lsn() const { return txn_.commit_lsn; }
  // Forget any half-received transaction and the relation cache (after a reconnect).
  void reset();
  std::size_t open_changes() const { return open_changes_; }
  std::size_t open_bytes() const { return open_bytes_; }
  // Replay mode (snapshot, replay after a Redis loss, reconcile traffic): while on, every job
  // committed gets AssemblySettings::replay_priority instead of its rows' priority. For the reader
  // to switch.
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
    const SourceTable* table = nullptr;  // nullptr: not one of the source's tables
    std::size_t index = 0;               // of `table` in Source::tables (the Router's table)
    std::string name;
    std::vector<int> field_column;  // source column -> column index in the tuple, -1 if absent
    std::string problem;            // why it cannot be folded: thrown at its first row change
  };
  const RelInfo& rel(std::uint32_t relid) const;
  std::vector<queue::Value> row(const RelInfo& r, Tuple t) const;
  void add(const RelInfo& r, const std::string& key, queue::Change c, int priority);
  void route(const RelInfo& r, queue::Change c, int priority);

  const Source& source_;
  const Router& router_;
  AssemblySettings settings_;
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
