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
#include "config/config.h"

namespace walfold::tools {

enum class ReportSource { Postgres, Mongo };

// A PostgreSQL table as the configuration's `tables:` mapping names it (unquoted; the report
// quotes both parts with PQescapeIdentifier).
struct TableName {
  std::string schema = "public";
  std::string name;
};
// The bank's three tables; the defaults are the mapping's defaults (config/README.md).
struct BankTables {
  TableName users{"public", "users"};
  TableName accounts{"public", "accounts"};
  TableName transactions{"public", "transactions"};
};
// The tables `cfg` maps to the users, accounts and transactions models (the default name for a
// model the mapping leaves out, which the configuration parser does not allow anyway).
BankTables bank_tables(const Config& cfg);

struct ReportOptions {
  ReportSource from;
  PgConnInfo pg_dsn;
  std::string mongo_uri;
  std::string mongo_database = "walfold";
  // Set on the parsed URI (never spliced into its text) when mongo_username is not empty.
  std::string mongo_username, mongo_password;
  BankTables tables;  // the PostgreSQL side reads these
};

// Everything but `from` taken from a configuration: PostgreSQL connection, MongoDB URI, database
// and credentials (the password read from mongodb.password_file), and the `tables:` mapping.
ReportOptions report_options(const Config& cfg, ReportSource from);

// Writes the report to `out` as it is read (memory stays bounded by one account or user at a
// time); returns the number of accounts reported. PostgreSQL is read in one REPEATABLE READ
// transaction (a consistent snapshot); MongoDB has no such snapshot, so its side should be
// read while the read model is quiescent. Throws std::runtime_error naming the server and its
// address (walfold::UnavailableError when it cannot be reached, walfold::DataError when a
// value cannot be reported exactly, e.g. a NaN amount or a field of the wrong BSON type).
long write_report(const ReportOptions& options, std::ostream& out);

}  // namespace walfold::tools
