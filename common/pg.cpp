#include "common/pg.h"

#include <cstdlib>
#include <stdexcept>

#include "common/error.h"

namespace walfold {

namespace {

// libpq messages end with a newline and continue lines with a tab; one line reads better.
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    bool blank = c == '\n' || c == '\t' || c == '\r' || c == ' ';
    if (!blank) {
      out.push_back(c);
    } else if (!out.empty() && out.back() != ' ') {
      out.push_back(' ');
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// "<primary> (<detail>) [SQLSTATE xxxxx]" for a server-reported error, else libpq's own message
// on one line.
std::string describe(PGconn* conn, const PGresult* res) {
  const char* primary = res != nullptr ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  if (primary != nullptr) {
    std::string msg = primary;
    if (const char* detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL)) {
      msg.append(" (").append(one_line(detail)).append(")");
    }
    if (const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
      msg.append(" [SQLSTATE ").append(state).append("]");
    }
    return msg;
  }
  std::string msg = one_line(res != nullptr ? PQresultErrorMessage(res) : "");
  if (msg.empty()) msg = one_line(PQerrorMessage(conn));
  if (msg.empty() && res != nullptr) {
    msg = std::string("unexpected result status ") + PQresStatus(PQresultStatus(res));
  }
  return msg.empty() ? "no result from server" : msg;
}

std::vector<const char*> param_values(const PgParams& params) {
  std::vector<const char*> vals;
  vals.reserve(params.size());
  for (const auto& p : params) vals.push_back(p ? p->c_str() : nullptr);
  return vals;
}

std::string sqlstate_of(const PGresult* res) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  return state != nullptr ? state : "";
}

}  // namespace

PgConn::PgConn(const std::string& dsn, const std::map<std::string, std::string>& overrides,
               const std::string& purpose) {
  // walfold reads timestamps as UTC and ISO: its settings go after the user's own `options`
  // (which are kept); the user's application_name wins over "walfold". Where the DSN has
  // neither, libpq's environment variables (PGOPTIONS, PGAPPNAME) count, as they would without
  // walfold's values.
  std::string options = "-c TimeZone=UTC -c DateStyle=ISO", application = "walfold";
  std::string given_options, given_application;
  if (const char* env = std::getenv("PGOPTIONS")) given_options = env;
  if (const char* env = std::getenv("PGAPPNAME")) given_application = env;
  char* parse_error = nullptr;
  if (PQconninfoOption* given = PQconninfoParse(dsn.c_str(), &parse_error)) {
    for (const PQconninfoOption* o = given; o->keyword != nullptr; ++o) {
      if (o->val == nullptr || *o->val == '\0') continue;
      if (std::string_view(o->keyword) == "options") given_options = o->val;
      if (std::string_view(o->keyword) == "application_name") given_application = o->val;
    }
    PQconninfoFree(given);
  }
  if (!given_options.empty()) options = given_options + " " + options;
  if (!given_application.empty()) application = given_application;
  PQfreemem(parse_error);  // a malformed DSN is reported by the connection attempt below
  std::vector<const char*> keys{"dbname", "options", "application_name"};
  std::vector<const char*> values{dsn.c_str(), options.c_str(), application.c_str()};
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

void PgConn::fail(const PGresult* r, std::string_view context) const {
  std::string prefix = "postgresql at " + address_ + ": ";
  if (!context.empty()) prefix.append(context).append(": ");
  std::string msg = describe(conn_.get(), r);
  if (PQstatus(conn_.get()) == CONNECTION_BAD) {
    throw UnavailableError(prefix + "connection lost: " + msg);
  }
  throw PgError(prefix + msg, sqlstate_of(r));
}

PgResult PgConn::check(PGresult* raw, const std::string& sql, std::string_view context) const {
  PgResult r(raw);
  auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_BOTH ||
      st == PGRES_COPY_IN || st == PGRES_COPY_OUT)
    return r;
  if (!context.empty()) fail(r.get(), context);
  std::string msg = pg_error_text(conn_.get(), r.get());
  std::string head = sql.substr(0, 60);
  if (PQstatus(conn_.get()) == CONNECTION_BAD)
    throw UnavailableError("postgresql at " + address_ + ": connection lost during '" + head +
                           "': " + msg);
  throw PgError("postgresql at " + address_ + ": '" + head + "' failed: " + msg,
                sqlstate_of(r.get()));
}

PgResult PgConn::exec(const std::string& sql, std::string_view context) {
  return check(PQexec(conn_.get(), sql.c_str()), sql, context);
}

PgResult PgConn::exec_params(const std::string& sql, const PgParams& params,
                             std::string_view context) {
  std::vector<const char*> vals = param_values(params);
  return check(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(vals.size()), nullptr,
                            vals.data(), nullptr, nullptr, 0),
               sql, context);
}

void PgConn::prepare(const std::string& name, const std::string& sql, std::string_view context) {
  check(PQprepare(conn_.get(), name.c_str(), sql.c_str(), 0, nullptr), sql, context);
}

PgResult PgConn::exec_prepared(const std::string& name, const PgParams& params,
                               std::string_view context) {
  std::vector<const char*> vals = param_values(params);
  return check(PQexecPrepared(conn_.get(), name.c_str(), static_cast<int>(vals.size()), vals.data(),
                              nullptr, nullptr, 0),
               "EXECUTE " + name, context);
}

std::optional<std::string> PgConn::scalar(const std::string& sql) {
  auto r = exec(sql);
  if (PQntuples(r.get()) == 0 || PQgetisnull(r.get(), 0, 0)) return std::nullopt;
  return std::string(PQgetvalue(r.get(), 0, 0));
}

void PgConn::stream(const std::string& sql, const std::function<void(const PGresult&)>& row,
                    std::string_view context) {
  PGconn* c = conn_.get();
  auto drain = [c] {
    while (PGresult* rest = PQgetResult(c)) PQclear(rest);
  };
  if (PQsendQuery(c, sql.c_str()) == 0) fail(nullptr, context);
  if (PQsetSingleRowMode(c) == 0) {
    drain();
    fail(nullptr, context);
  }
  // Read every result up to the terminating null, even after an error, so the connection stays
  // usable; remember the first failure and throw it at the end.
  PgResult failed;
  while (PGresult* raw = PQgetResult(c)) {
    PgResult res(raw);
    if (failed) continue;
    switch (PQresultStatus(raw)) {
      case PGRES_SINGLE_TUPLE:
        try {
          row(*raw);
        } catch (...) {
          // Abandon the rest of the result: cancel if we can, drain, then rethrow.
          if (PGcancel* cancel = PQgetCancel(c)) {
            char buf[256];
            PQcancel(cancel, buf, sizeof buf);
            PQfreeCancel(cancel);
          }
          drain();
          throw;
        }
        break;
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK:
        break;
      default:
        failed = std::move(res);
        break;
    }
  }
  if (failed) fail(failed.get(), context);
}

std::string pg_error_text(PGconn* conn, const PGresult* result) {
  std::string msg = result ? PQresultErrorMessage(result) : PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

std::string pg_text_array(const std::vector<std::string>& elements) {
  std::string out = "{";
  for (std::size_t i = 0; i < elements.size(); ++i) {
    if (i != 0) out.push_back(',');
    out.push_back('"');
    for (char c : elements[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
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
