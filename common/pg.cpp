#include "common/pg.h"

#include <stdexcept>

#include "common/error.h"

namespace walfold {

PgConn::PgConn(const std::string& dsn, const std::map<std::string, std::string>& overrides,
               const std::string& purpose) {
  std::vector<const char*> keys{"dbname", "options", "application_name"};
  std::vector<const char*> values{dsn.c_str(), "-c TimeZone=UTC -c DateStyle=ISO", "walfold"};
  for (const auto& [k, v] : overrides) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_.reset(PQconnectdbParams(keys.data(), values.data(), 1));
  PGconn* c = conn_.get();
  if (c == nullptr) throw UnavailableError("postgresql: out of memory");
  const char* host = PQhost(c);
  const char* port = PQport(c);
  address_ = std::string(host ? host : "?") + ":" + (port ? port : "?");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = pg_error_text(c);
    throw UnavailableError("postgresql at " + address_ +
                           (purpose.empty() ? "" : " (" + purpose + ")") +
                           " is unreachable or refused the connection: " + msg);
  }
}

PgResult PgConn::check(PGresult* raw, const std::string& sql) {
  PgResult r(raw);
  auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_BOTH ||
      st == PGRES_COPY_IN || st == PGRES_COPY_OUT)
    return r;
  std::string msg = pg_error_text(conn_.get(), r.get());
  std::string head = sql.substr(0, 60);
  if (PQstatus(conn_.get()) == CONNECTION_BAD)
    throw UnavailableError("postgresql at " + address_ + ": connection lost during '" + head +
                           "': " + msg);
  throw std::runtime_error("postgresql at " + address_ + ": '" + head + "' failed: " + msg);
}

PgResult PgConn::exec(const std::string& sql) {
  return check(PQexec(conn_.get(), sql.c_str()), sql);
}

PgResult PgConn::exec_params(const std::string& sql,
                             const std::vector<std::optional<std::string>>& params) {
  std::vector<const char*> vals;
  for (const auto& p : params) vals.push_back(p ? p->c_str() : nullptr);
  return check(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(vals.size()), nullptr,
                            vals.data(), nullptr, nullptr, 0),
               sql);
}

std::optional<std::string> PgConn::scalar(const std::string& sql) {
  auto r = exec(sql);
  if (PQntuples(r.get()) == 0 || PQgetisnull(r.get(), 0, 0)) return std::nullopt;
  return std::string(PQgetvalue(r.get(), 0, 0));
}

std::string pg_error_text(PGconn* conn, const PGresult* result) {
  std::string msg = result ? PQresultErrorMessage(result) : PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

std::string quote_ident(const std::string& name) {
  std::string s = "\"";
  for (char c : name) {
    if (c == '"') s += '"';
    s += c;
  }
  return s + "\"";
}

std::string quote_literal(const std::string& value) {
  std::string s = "'";
  for (char c : value) {
    if (c == '\'') s += '\'';
    s += c;
  }
  return s + "'";
}

}  // namespace walfold
