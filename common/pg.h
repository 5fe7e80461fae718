// RAII over libpq for walfold's own connections (setup, replication, checks). Errors name the
// server (host:port, never the password) and carry PostgreSQL's message.
#pragma once

#include <libpq-fe.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace walfold {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

class PgConn {
 public:
  // `dsn` is a libpq connection string or URI; `overrides` (e.g. replication=database) win
  // over it. Sessions always use TimeZone=UTC and DateStyle=ISO. Throws UnavailableError.
  PgConn(const std::string& dsn, const std::map<std::string, std::string>& overrides = {},
         const std::string& purpose = "");
  PGconn* get() const { return conn_.get(); }
  const std::string& address() const { return address_; }

  // Runs SQL; throws std::runtime_error naming the server and the statement's first words.
  PgResult exec(const std::string& sql);
  PgResult exec_params(const std::string& sql,
                       const std::vector<std::optional<std::string>>& params);
  // First column of the first row, or nullopt if no row / NULL.
  std::optional<std::string> scalar(const std::string& sql);

 private:
  PgResult check(PGresult* r, const std::string& sql);
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_{nullptr, PQfinish};
  std::string address_;
};

// libpq's error text for a connection or result, without its trailing newline.
std::string pg_error_text(PGconn* conn, const PGresult* result = nullptr);

// SQL identifier quoting ("name").
std::string quote_ident(const std::string& name);
std::string quote_literal(const std::string& value);

}  // namespace walfold
