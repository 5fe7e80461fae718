// walfold report: one text report of the bank's accounts and users, produced either from the
// PostgreSQL write model or from the MongoDB read model. When the read model is in sync the two
// are byte-for-byte identical, so `diff` shows exactly what the projection got wrong.
//
// Format: accounts first (ascending id), then users (ascending id):
//   account 17 user 5 currency USD balance 1234.5
//     tx 902 deposit 100.5 2026-11-23T02:19:57.123456Z
//   user 5 name "Ada Lovelace" email "ada@example.test" accounts 17,18 totals EUR=0 USD=1234.5
// Amounts are in canonical decimal form (no trailing zeros, "0" for zero); an account lists its
// 3 newest transactions (created_at desc, id desc; from MongoDB: `last_transactions` in stored
// order); name and email are quoted with \" \\ \n escaped; accounts "-" and totals "-" when the
// user has none.
#pragma once

#include <ostream>
#include <string>

#include "common/pg.h"

namespace walfold::tools {

enum class ReportSource { Postgres, Mongo };

struct ReportOptions {
  ReportSource from;
  PgConnInfo pg_dsn;
  std::string mongo_uri;
  std::string mongo_database = "walfold";
  // Set on the parsed URI (never spliced into its text) when mongo_username is not empty.
  std::string mongo_username, mongo_password;
};

// Writes the report to `out` as it is read (memory stays bounded by one account or user at a
// time); returns the number of accounts reported. PostgreSQL is read in one REPEATABLE READ
// transaction (a consistent snapshot); MongoDB has no such snapshot, so its side should be
// read while the read model is quiescent. Throws std::runtime_error naming the server and its
// address (walfold::UnavailableError when it cannot be reached, walfold::DataError when a
// value cannot be reported exactly, e.g. a NaN amount or a field of the wrong BSON type).
long write_report(const ReportOptions& options, std::ostream& out);

}  // namespace walfold::tools
