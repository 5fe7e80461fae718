// The one RAII wrapper over libpq: walfold's own connections (setup, replication, checks) and the
// bank tools (loadgen, report). Errors name the server (host:port, never the password) and carry
// PostgreSQL's message.
#pragma once

#include <libpq-fe.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace walfold {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// The kind of a statement the server rejected, by its SQLSTATE (the one table: common/pg.cpp):
// connection exceptions (08), insufficient resources (53), operator intervention that ends
// sessions (57P01-57P03) and system errors (58) are Unavailable; authorization (28) and
// insufficient privilege (42501) Auth; serialization failures and deadlocks (40), a cancelled
// statement (57014), an object in use (55006, a busy replication slot) or a lock not available
// (55P03) Transient; anything else Internal (walfold's own SQL failed).
ErrorKind pg_error_kind(std::string_view sqlstate);

// A statement the server rejected. sqlstate() is its SQLSTATE (e.g. "23505"), empty if the
// server reported none; its kind follows from it (pg_error_kind).
class PgError : public Error {
 public:
  PgError(const std::string& message, std::string sqlstate)
      : Error(pg_error_kind(sqlstate), message), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  std::string sqlstate_;
};

using PgParams = std::vector<std::optional<std::string>>;  // text values; nullopt is SQL NULL

// Where and as whom to connect: a libpq connection string or URI (key=value, quoted values,
// postgresql://..., service=...) and, apart from it, the password. The password is never spliced
// into the string: it goes to libpq as its own keyword. Empty: libpq's own sources count
// (PGPASSWORD, then the password file PGPASSFILE or ~/.pgpass, or the service file).
struct PgConnInfo {
  PgConnInfo() = default;
  PgConnInfo(std::string dsn_) : dsn(std::move(dsn_)) {}  // NOLINT: a bare DSN converts
  PgConnInfo(const char* dsn_) : dsn(dsn_) {}             // NOLINT
  std::string dsn;
  std::string password;
};

// Empty when libpq can parse `dsn`; otherwise what is wrong with it, without quoting any part of
// it (libpq's own message does, and an unquoted value with a space may be part of a password):
// libpq's wording with the quoted pieces removed, and for key=value strings the last valid
// keyword before the problem.
std::string conninfo_problem(std::string_view dsn);
// True when `dsn` parses and sets a password (password=..., postgresql://user:secret@...,
// ?password=...).
bool conninfo_has_password(std::string_view dsn);

class PgConn {
 public:
  // `info.dsn` is a libpq connection string or URI, `info.password` (if any) is passed as its
  // own keyword; `overrides` (e.g. replication=database) win over both. Sessions always use
  // TimeZone=UTC and DateStyle=ISO, added after the DSN's own `options` (or PGOPTIONS); its
  // application_name (or PGAPPNAME) is kept, "walfold" otherwise. Throws ConfigError for a
  // malformed DSN (never quoting it), AuthError when the server refuses the credentials or TLS
  // verification fails (permanent), UnavailableError otherwise.
  PgConn(const PgConnInfo& info, const std::map<std::string, std::string>& overrides = {},
         const std::string& purpose = "");
  PGconn* get() const { return conn_.get(); }
  const std::string& address() const { return address_; }

  // Run SQL. A lost connection throws UnavailableError; any other failure PgError. Messages
  // start "postgresql at host:port: " and then name `context` (e.g. "creating the schema") followed
  // by the server's message and SQLSTATE, or without a context the statement's first words
  // ("'SELECT ...' failed: " and libpq's message).
  PgResult exec(const std::string& sql, std::string_view context = {});
  PgResult exec_params(const std::string& sql, const PgParams& params,
                       std::string_view context = {});
  void prepare(const std::string& name, const std::string& sql, std::string_view context = {});
  PgResult exec_prepared(const std::string& name, const PgParams& params,
                         std::string_view context = {});
  // First column of the first row, or nullopt if no row / NULL.
  std::optional<std::string> scalar(const std::string& sql);

  // Runs a query in single-row mode and calls `row` with each one-row result, so a large result
  // never sits in memory at once. If `row` throws, the query is cancelled and the connection
  // stays usable. (libpq 15 leaves single-row mode on until the next query sent outside pipeline
  // mode: run an ordinary exec() before entering pipeline mode after this.)
  void stream(const std::string& sql, const std::function<void(const PGresult&)>& row,
              std::string_view context = {});

  // Throws the error for a failed `result` (null: the connection's own error), as exec would
  // with `context`. For callers driving libpq directly (pipeline mode).
  [[noreturn]] void fail(const PGresult* result, std::string_view context) const;

 private:
  PgResult check(PGresult* r, const std::string& sql, std::string_view context) const;
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_{nullptr, PQfinish};
  std::string address_;
};

// libpq's error text for a connection or result, without its trailing newline.
std::string pg_error_text(PGconn* conn, const PGresult* result = nullptr);

// Text value of a column ("" for SQL NULL), and whether it is NULL.
inline std::string_view pg_value(const PGresult& res, int row, int col) {
  return {PQgetvalue(&res, row, col), static_cast<std::size_t>(PQgetlength(&res, row, col))};
}
inline bool pg_is_null(const PGresult& res, int row, int col) {
  return PQgetisnull(&res, row, col) != 0;
}

// A PostgreSQL array literal ({"a","b\"c"}) of the given elements, for $n::text[] parameters.
std::string pg_text_array(const std::vector<std::string>& elements);

// SQL identifier quoting ("name").
std::string quote_ident(const std::string& name);
std::string quote_literal(const std::string& value);

}  // namespace walfold
