// walfold report: the read model's canonical form (projections/read_model.h: CanonicalForm),
// produced either from the PostgreSQL write model or from the MongoDB read model. When the read
// model is in sync the two are byte-for-byte identical, so `diff` shows exactly what the
// projection got wrong. The format is the projection's (the bank's:
// projections/bank/read_model.h); this is the plumbing: connections, one consistent
// PostgreSQL transaction, the `tables:` mapping, the output.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "common/pg.h"
#include "config/config.h"
#include "projections/projection.h"
#include "tools/tables.h"

namespace walfold::tools {

enum class ReportSource { Postgres, Mongo };

struct ReportOptions {
  ReportSource from;
  PgConnInfo pg_dsn;
  std::string mongo_uri;
  std::string mongo_database = "walfold";
  // Set on the parsed URI (never spliced into its text) when mongo_username is not empty.
  std::string mongo_username, mongo_password;
  std::vector<TableName> tables;  // the PostgreSQL side reads these (the `tables:` mapping)
};

// Everything but `from` taken from a configuration: PostgreSQL connection, MongoDB URI, database
// and credentials (the password read from mongodb.password_file), and the `tables:` mapping.
ReportOptions report_options(const Config& cfg, ReportSource from);

// Calls `each` with the projection's canonical records as they are read (memory stays bounded
// by one record). PostgreSQL is read in one REPEATABLE READ transaction (a consistent
// snapshot); MongoDB has no such snapshot, so its side should be read while the read model is
// quiescent. Throws std::runtime_error naming the server and its address
// (walfold::UnavailableError when it cannot be reached, walfold::DataError when a value cannot
// be reported exactly, e.g. a NaN amount or a field of the wrong BSON type), ConfigError when
// the projection has no canonical form.
void read_canonical(const ReportOptions& options, const projections::Projection& projection,
                    const projections::RecordSink& each);

// Writes the records' text to `out`; returns the records per section, in output order.
projections::Counts write_report(const ReportOptions& options,
                                 const projections::Projection& projection, std::ostream& out);

}  // namespace walfold::tools
