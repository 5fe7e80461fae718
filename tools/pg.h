// A small RAII wrapper over libpq for walfold's tools (loadgen, report). Every error names the
// server (host:port) and carries the server's own message and SQLSTATE.
#pragma once

#include <libpq-fe.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace walfold::tools {

struct PgConnCloser {
  void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
struct PgResultClearer {
  void operator()(PGresult* res) const noexcept { PQclear(res); }
};
using PgResult = std::unique_ptr<PGresult, PgResultClearer>;

// A failed statement: what() is "PostgreSQL <host:port>: <context>: <server message> (SQLSTATE
// xxxxx)"; sqlstate() is empty when the failure was not reported by the server (lost connection).
class PgError : public std::runtime_error {
 public:
  PgError(const std::string& message, std::string sqlstate)
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  std::string sqlstate_;
};

// Parameters are text (or nullptr for SQL NULL); the server infers or casts their types.
using PgParams = std::vector<const char*>;

class PgConnection {
 public:
  // Connects with a libpq connection string or URI. Throws walfold::UnavailableError naming the
  // server when the connection fails.
  explicit PgConnection(const std::string& dsn);

  PGconn* get() const noexcept { return conn_.get(); }
  // "host:port" of the server (a socket directory for Unix-domain connections).
  const std::string& address() const noexcept { return address_; }

  // Run one statement (several for exec without parameters); throws PgError unless the result is
  // COMMAND_OK or TUPLES_OK. `context` (e.g. "creating users") goes into the message.
  PgResult exec(const std::string& sql, std::string_view context = {});
  PgResult exec_params(const std::string& sql, const PgParams& params,
                       std::string_view context = {});
  void prepare(const std::string& name, const std::string& sql, std::string_view context = {});
  PgResult exec_prepared(const std::string& name, const PgParams& params,
                         std::string_view context = {});

  // Runs a query in single-row mode and calls `row` with each one-row result, so a large result
  // never sits in memory at once. Throws PgError when the query fails. (libpq 15 leaves
  // single-row mode on until the next query sent outside pipeline mode: run an ordinary exec()
  // before entering pipeline mode after this.)
  void stream(const std::string& sql, const std::function<void(const PGresult&)>& row,
              std::string_view context = {});

  // Throws PgError if `res` is null or its status is not one of the good ones; else returns it.
  PgResult check(PGresult* res, std::string_view context, ExecStatusType good1 = PGRES_COMMAND_OK,
                 ExecStatusType good2 = PGRES_TUPLES_OK) const;
  // Builds the PgError for `res` (may be null: then the connection's error message is used).
  PgError error(const PGresult* res, std::string_view context) const;

 private:
  std::unique_ptr<PGconn, PgConnCloser> conn_;
  std::string address_;
};

// Text value of a column (never null: "" for SQL NULL), and whether it is NULL.
inline std::string_view pg_value(const PGresult& res, int row, int col) {
  return {PQgetvalue(&res, row, col), static_cast<std::size_t>(PQgetlength(&res, row, col))};
}
inline bool pg_is_null(const PGresult& res, int row, int col) {
  return PQgetisnull(&res, row, col) != 0;
}

// A PostgreSQL array literal ({"a","b\"c"}) of the given elements, for $n::text[] parameters.
std::string pg_text_array(const std::vector<std::string>& elements);

}  // namespace walfold::tools
