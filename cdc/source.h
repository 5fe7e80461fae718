// What the source (cdc/) needs from the house around it, declared here so that cdc/ depends on
// nothing but common/ and the queue's enqueue format (queue/job.h, queue/enqueue.h):
//   - SourceSettings: the replication loop's settings (where PostgreSQL is, the slot, intervals,
//     batch sizes, limits), as plain values: no YAML;
//   - Source: the tables it decodes (schema, name, the columns it extracts and the type class
//     each must keep, whether UPDATE/DELETE must carry the whole old row);
//   - Router: per row change, the ordering key(s) and the priority of its job.
// pipeline/source_adapter.h builds them from the configuration and the projection
// (projections/projection.h); a test can write its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/lsn.h"
#include "common/pg.h"
#include "queue/job.h"

namespace walfold::cdc {

// What PostgreSQL type a column must have to be decoded exactly. A relation whose column has
// another type is refused at its first row change (cdc/assembler.cpp), never decoded inexactly.
enum class TypeClass {
  Any,      // read as text, whatever its type
  Integer,  // smallint, integer or bigint
  Numeric,  // numeric (exact decimal)
};

struct SourceColumn {
  std::string name;  // matched by name in the Relation message: added/reordered columns are fine
  TypeClass type = TypeClass::Any;
  // How a type error names what is needed ("numeric (money is exact)"); empty: "an integer" /
  // "numeric" from `type`.
  std::string need = {};
};

// One PostgreSQL table the source decodes.
struct SourceTable {
  std::string schema = "public", name;
  std::uint32_t id = 0;  // queue::Change::table of its rows (the job format's table index)
  std::string model;     // what the table feeds, as error messages name it ("the <model> model")
  // The columns a change carries, in this order. Column 0 identifies the row: a change of it is
  // decoded as a delete of the old row and an insert of the new one.
  std::vector<SourceColumn> columns;
  // UPDATE/DELETE must carry the whole old row (REPLICA IDENTITY FULL; run_setup sets it).
  bool replica_identity_full = false;
  // Non-empty: the table is listed but cannot be decoded, and why, as the rest of a sentence
  // that starts with its name ("is configured as model 'x', which ..."). Its first row change
  // fails with it (DataError); preflight refuses it (ConfigError).
  std::string problem = {};

  std::string qualified_name() const { return schema + "." + name; }
};

struct Source {
  std::string name;  // whose tables these are (the projection's name), for messages
  // In the order the checks report the first problem.
  std::vector<SourceTable> tables;

  // The index in `tables` of the table `schema`.`relname`; nullopt when the source does not
  // decode it.
  std::optional<std::size_t> find(std::string_view schema, std::string_view relname) const {
    for (std::size_t i = 0; i < tables.size(); ++i)
      if (tables[i].schema == schema && tables[i].name == relname) return i;
    return std::nullopt;
  }
};

// The assembler's limits.
struct AssemblySettings {
  // A transaction is assembled in memory until its Commit; one whose changes exceed this many
  // MiB is refused (DataError) instead of exhausting memory.
  int max_transaction_mb = 256;
  int replay_priority = 255;  // the priority of every job of replayed traffic
};

// The replication loop's settings (cdc/reader.h). The defaults are only a test's convenience;
// the daemon's come from the configuration (pipeline::source_settings, config/README.md).
struct SourceSettings {
  PgConnInfo conninfo;                                  // PostgreSQL (the heartbeat's connection)
  std::string slot;                                     // named in error messages
  std::chrono::milliseconds status_interval{1000};      // standby status updates to PostgreSQL
  std::chrono::milliseconds heartbeat_interval{10000};  // 0: no heartbeats
  std::chrono::milliseconds enqueue_max_delay{5};       // the oldest buffered job waits at most
  int enqueue_batch_jobs = 2000;                        // or a batch is full
  AssemblySettings assembly;
};

// Where a row change goes in the queue.
struct Keys {
  std::string key;  // the ordering key whose job carries the change
  // Non-empty when the change moves the row from another key: that key's job carries the same
  // change too, so both keys see it in order.
  std::string old_key;
};

// Names a change in error messages: the relation ("schema.name") and its transaction's commit.
struct ChangeContext {
  std::string_view relation;
  Lsn commit_lsn = 0;
};

// Asked per row change; `table` is the index of its table in Source::tables.
class Router {
 public:
  virtual ~Router() = default;
  // The ordering key(s) of a change (rows as SourceTable::columns). An update whose column 0
  // changed has been split into a delete and an insert before this. Throws DataError when the
  // change cannot be ordered, naming it with `where`.
  virtual Keys route(std::size_t table, const queue::Change& c,
                     const ChangeContext& where) const = 0;
  // The priority of a row (0 most urgent .. 255): the new row, or the old one for a delete.
  virtual int priority(std::size_t table, const std::vector<queue::Value>& row) const = 0;
};

}  // namespace walfold::cdc
