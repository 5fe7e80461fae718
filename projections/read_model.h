// The read model seen from PostgreSQL's tables instead of the WAL: what a projection provides so
// that the generic rooms can load it whole, print it canonically and repair it, without knowing
// its tables, documents or guards (projection.h hands these out: snapshot_load(),
// canonical_form(), snapshot_repair()).
//
// The generic side (pipeline/rebuild.cpp, reconcile/, tools/) owns the connections and the
// snapshots: a replication slot's exported snapshot (its consistent point CP is exact), one
// read-only REPEATABLE READ transaction importing it (or, for report and verify, a consistent
// transaction of its own), MongoDB. The projection owns the SQL over its tables, the documents
// it writes, the canonical lines and the per-document comparison.
//
// Guards: documents written from a snapshot at CP carry CP - 1 in every LSN guard; every commit
// the snapshot holds is below CP and every commit streamed afterwards is at or above it, so the
// fold skips exactly what the snapshot already wrote.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/lsn.h"

struct _bson_t;  // libbson's bson_t

namespace walfold {
class PgConn;
namespace mongo {
class MongoPool;
}
}  // namespace walfold

namespace walfold::projections {

// The PostgreSQL tables of a projection, as the configuration's `tables:` mapping names them.
class TableNames {
 public:
  virtual ~TableNames() = default;
  // The table mapped to `model` (a TableSpec::model), schema-qualified, both parts quoted with
  // PQescapeIdentifier: ready to splice into SQL. Throws ConfigError when none is mapped.
  virtual std::string qualified(std::string_view model) const = 0;
};

// One read-only transaction on PostgreSQL that sees one consistent state of the tables (an
// imported exported snapshot for load and repair). The projection runs its SELECTs on `conn`
// (PgConn::stream for rows in bounded memory) and never commits or rolls back.
struct PgRead {
  PgConn& conn;
  const TableNames& tables;
};

// A count per collection (or canonical section), in the projection's order: {"accounts", 12}.
using Counts = std::vector<std::pair<std::string, std::size_t>>;

struct LoadStats {
  Counts documents;            // written from the snapshot, per collection
  std::size_t tombstoned = 0;  // documents the snapshot did not contain
};

// (a) The snapshot load: initial load of a new slot, rebuild after a TRUNCATE, reconcile --full.
class SnapshotLoad {
 public:
  virtual ~SnapshotLoad() = default;
  // What the read model needs before anything is written to it (indexes). Idempotent.
  virtual void prepare(mongo::MongoPool& pool) const = 0;
  // Writes the whole read model as `pg` sees it, every guard at `guard` (CP - 1), replacing
  // what is there, and tombstones every document `pg` does not contain. Nothing folds jobs at
  // or above CP meanwhile (the caller guarantees it). `written`, when not null, counts the
  // documents as MongoDB acknowledges them (progress).
  virtual LoadStats load(PgRead& pg, mongo::MongoPool& pool, Lsn guard,
                         std::atomic<std::uint64_t>* written) const = 0;
};

// One record of the canonical form: the same bytes from PostgreSQL and from MongoDB when the
// read model is in step. `text` is one or more lines, each ending in '\n'; records of a
// `section` are matched between the two sides by `id` (all-digit ids compare as numbers).
struct CanonicalRecord {
  std::string_view section;
  std::string_view id;
  std::string_view text;
};
using RecordSink = std::function<void(const CanonicalRecord&)>;

// A document read from MongoDB. `where` names the server and namespace for error messages
// ("MongoDB host:port: db.collection").
struct Document {
  std::string_view where;
  const _bson_t* bson;
};

// MongoDB read for the canonical form: a collection's documents in ascending _id order.
class DocumentScan {
 public:
  virtual ~DocumentScan() = default;
  // Calls `each` with every document of `collection` (the `fields` given, and _id).
  virtual void scan(const char* collection, std::initializer_list<const char*> fields,
                    const std::function<void(const Document&)>& each) = 0;
};

// (b) The canonical form, which `report` prints and `reconcile --verify` compares.
class CanonicalForm {
 public:
  virtual ~CanonicalForm() = default;
  // Records of the read model computed from the tables, in output order (section by section,
  // ids ascending). Throws DataError for a value that cannot be printed exactly.
  virtual void from_postgres(PgRead& pg, const RecordSink& each) const = 0;
  // The same records read from the documents (tombstones left out), in the same order.
  virtual void from_mongo(DocumentScan& mongo, const RecordSink& each) const = 0;
};

// What repair did, document by document (reconcile/ counts and prints it).
class RepairLog {
 public:
  virtual ~RepairLog() = default;
  virtual void compared(std::string_view section) = 0;
  // Rewritten: `was` is the document's canonical line ("missing", "deleted"), `now` the
  // snapshot's ("tombstone" when the row is not in PostgreSQL).
  virtual void repaired(std::string_view section, std::string_view id, bool in_postgres,
                        std::string_view was, std::string_view now) = 0;
  // Drifted, but changed while being rewritten (the compare-and-set matched nothing).
  virtual void skipped(std::string_view section, std::string_view id) = 0;
  // Changed past the snapshot: it cannot be judged against it.
  virtual void unchecked(std::string_view section, std::string_view id) = 0;
};

// (c) Repair: per document, compare with the snapshot and rewrite what differs.
class SnapshotRepair {
 public:
  virtual ~SnapshotRepair() = default;
  // Compares every document with what `pg` (importing the snapshot at `consistent_point`; the
  // caller waited until every change below it is folded) says it should be, and rewrites those
  // that differ with a compare-and-set on the guards it read, guards at CP - 1. A document with
  // a guard at or past CP is unchecked.
  virtual void repair(PgRead& pg, mongo::MongoPool& pool, Lsn consistent_point,
                      RepairLog& log) const = 0;
};

}  // namespace walfold::projections
