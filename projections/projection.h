// The projection interface: what walfold's generic machinery (cdc/ reads PostgreSQL, queue/
// carries jobs, the worker writes MongoDB) needs to know about one read model, and nothing more.
// The generic rooms never name a read model's tables or columns: they see table indexes into
// tables(), column values in the order a TableSpec lists them, ordering keys as opaque strings.
//
// A projection declares:
//   - the source tables and columns it reads (tables()), which of them need REPLICA IDENTITY
//     FULL, and the PostgreSQL types a column must keep to be folded exactly;
//   - for a row change, its ordering key(s) (route(): one, or two when the row moves between
//     keys) and its priority (priority rules: rule_applies()/rule_matches());
//   - the fold (start_batch()): what to read from the read model before folding (prefetch), the
//     pure fold of jobs into a write plan, and the write of that plan;
//   - the read model from the tables (read_model.h): the snapshot load, the canonical form
//     (report and verify compare it) and the repair.
//
// The bank (projections/bank/) is the projection walfold ships. The interface is meant to hold a
// second one (a user directory: one document per user keyed by email, with per-column privacy
// transforms), so nothing here assumes numeric ids, money or more than one key per row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/lsn.h"
#include "common/pg.h"
#include "projections/read_model.h"
#include "queue/job.h"

namespace CLI {
class App;
}

namespace walfold {
struct PriorityRule;
namespace mongo {
class MongoPool;
}
}  // namespace walfold

namespace walfold::projections {

// What PostgreSQL type a column must have for the fold to be exact. A relation whose column has
// another type is refused at its first row change (cdc/assembler.cpp), never folded inexactly.
enum class ColumnType {
  Any,      // read as text, whatever its type
  Integer,  // smallint, integer or bigint
  Numeric,  // numeric (exact decimal)
};

struct ColumnSpec {
  std::string name;  // matched by name in the Relation message: added/reordered columns are fine
  ColumnType type = ColumnType::Any;
  // How a type error names what the fold needs ("numeric (money is exact)"); empty: "an
  // integer" / "numeric" from `type`.
  std::string need = {};
};

// One source table. The configuration's `tables:` maps a PostgreSQL table to it by `model`.
struct TableSpec {
  std::string model;  // the `model:` value of `tables:` (config/README.md)
  // The columns a job carries for a row of this table, in this order (queue::Change rows are
  // indexed by it). Column 0 identifies the row: a change of it is folded as a delete of the old
  // row and an insert of the new one.
  std::vector<ColumnSpec> columns;
  // UPDATE/DELETE must carry the whole old row (`walfold setup` sets REPLICA IDENTITY FULL).
  bool replica_identity_full = false;
};

// Where a row change goes in the queue.
struct Route {
  std::string key;  // the ordering key whose job carries the change
  // Non-empty when the change moves the row from another key (an update that changes the key
  // column): that key's job carries the same change too, so both keys see it in order.
  std::string old_key;
};

// Names a change in error messages: the relation ("schema.name") and its transaction's commit.
struct ChangeContext {
  std::string_view relation;
  Lsn commit_lsn = 0;
};

// Counters of one batch's writes (observe/ shows them).
struct BatchStats {
  std::size_t changes = 0;  // row changes folded
  std::uint64_t write_commands = 0, statements = 0;
};

// One worker batch: prefetch, fold (pure, job by job), write. Made by Projection::start_batch.
class Batch {
 public:
  virtual ~Batch() = default;
  // Reads from the read model what folding `jobs` (of the claimed `keys`) needs. Throws
  // UnavailableError when the store cannot be reached, DataError when what it holds cannot be
  // read exactly.
  virtual void prefetch(const std::vector<std::string>& keys,
                        const std::vector<const queue::Job*>& jobs) = 0;
  // Folds one job into the batch's write plan. No I/O. Jobs of one key come in commit order.
  // Throws DataError (naming table, column, row and LSN) when the job cannot be folded exactly:
  // the job's key stops there (poison), the plan keeps the jobs folded before it.
  virtual void fold(const queue::Job& job) = 0;
  // Writes the plan. Idempotent: a replayed batch changes nothing (LSN guards).
  virtual void write() = 0;
  virtual BatchStats stats() const = 0;
};

// Where `walfold loadgen` writes: the database, and the projection's tables in it as the
// configuration's `tables:` mapping names them (quoted on the connection the generator opens).
struct LoadTarget {
  PgConnInfo pg;
  std::function<std::unique_ptr<TableNames>(const PgConn&)> tables;
  bool progress = true;  // a progress line on stderr
};

// `walfold loadgen`: writes activity into a projection's source tables, for tests, benchmarks
// and demonstrations. Made by Projection::load_generator().
class LoadGenerator {
 public:
  virtual ~LoadGenerator() = default;
  // Adds the generator's options to the `loadgen` subcommand; their values are kept here.
  virtual void add_options(CLI::App& command) = 0;
  // Writes the load. Returns one line saying what was written (the command logs it). Throws
  // ConfigError for bad options, UnavailableError or PgError (naming the server) otherwise.
  virtual std::string run(const LoadTarget& target) = 0;
};

class Projection {
 public:
  virtual ~Projection() = default;
  virtual std::string_view name() const = 0;
  virtual const std::vector<TableSpec>& tables() const = 0;
  // Index in tables() of the table with this model, or -1.
  int table_index(std::string_view model) const {
    const auto& t = tables();
    for (std::size_t i = 0; i < t.size(); ++i)
      if (t[i].model == model) return static_cast<int>(i);
    return -1;
  }

  // The ordering key(s) of a row change of tables()[c.table] (rows as TableSpec::columns). An
  // update whose column 0 changed has been split into a delete and an insert before this.
  // Throws DataError when the change cannot be ordered (a key column NULL, an old row without
  // the columns REPLICA IDENTITY FULL would carry), naming it with `where`.
  virtual Route route(const queue::Change& c, const ChangeContext& where) const = 0;

  // Priority rules (config `priorities.rules`): whether a rule without a `table:` applies to
  // rows of `table`, and whether a row satisfies the rule's row conditions (a rule without
  // any matches every row of its table).
  virtual bool rule_applies(std::size_t table, const PriorityRule& rule) const = 0;
  virtual bool rule_matches(std::size_t table, const PriorityRule& rule,
                            const std::vector<queue::Value>& row) const = 0;

  // DDL that creates the projection's tables where missing (`walfold setup --schema`); empty
  // when the projection ships none.
  virtual std::string_view schema_sql() const { return {}; }

  // A new batch writing to `pool`.
  virtual std::unique_ptr<Batch> start_batch(mongo::MongoPool& pool) const = 0;

  // The read model from the tables (projections/read_model.h): loading it whole, its canonical
  // form (report, verify), repairing it. nullptr: the projection cannot be loaded, compared or
  // repaired from a snapshot (the commands that need it refuse).
  virtual const SnapshotLoad* snapshot_load() const { return nullptr; }
  virtual const CanonicalForm* canonical_form() const { return nullptr; }
  virtual const SnapshotRepair* snapshot_repair() const { return nullptr; }

  // A new load generator for the projection's tables; nullptr: it has none (`walfold loadgen`
  // refuses, naming the projection).
  virtual std::unique_ptr<LoadGenerator> load_generator() const { return nullptr; }
};

}  // namespace walfold::projections
