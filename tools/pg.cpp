#include "tools/pg.h"

#include <cstring>

#include "common/error.h"

namespace walfold::tools {

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

std::string describe_address(PGconn* conn) {
  const char* host = conn != nullptr ? PQhost(conn) : nullptr;
  const char* port = conn != nullptr ? PQport(conn) : nullptr;
  std::string h = (host != nullptr && *host != '\0') ? host : "localhost";
  std::string p = (port != nullptr && *port != '\0') ? port : "5432";
  return h + ":" + p;
}

}  // namespace

PgConnection::PgConnection(const std::string& dsn) : conn_(PQconnectdb(dsn.c_str())) {
  if (!conn_) throw UnavailableError("PostgreSQL: out of memory while connecting");
  address_ = describe_address(conn_.get());
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    throw UnavailableError("PostgreSQL " + address_ +
                           ": cannot connect: " + one_line(PQerrorMessage(conn_.get())));
  }
}

PgError PgConnection::error(const PGresult* res, std::string_view context) const {
  std::string msg = "PostgreSQL " + address_;
  if (!context.empty()) msg.append(": ").append(context);
  std::string sqlstate;
  const char* primary = res != nullptr ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  if (primary != nullptr) {
    msg.append(": ").append(primary);
    if (const char* detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL)) {
      msg.append(" (").append(one_line(detail)).append(")");
    }
    if (const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
      sqlstate = state;
      msg.append(" [SQLSTATE ").append(state).append("]");
    }
  } else {
    std::string conn_msg =
        one_line(res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn_.get()));
    if (conn_msg.empty()) conn_msg = one_line(PQerrorMessage(conn_.get()));
    if (res != nullptr && conn_msg.empty()) {
      conn_msg = std::string("unexpected result status ") + PQresStatus(PQresultStatus(res));
    }
    msg.append(": ").append(conn_msg.empty() ? "no result from server" : conn_msg);
  }
  return PgError(msg, std::move(sqlstate));
}

PgResult PgConnection::check(PGresult* raw, std::string_view context, ExecStatusType good1,
                             ExecStatusType good2) const {
  PgResult res(raw);
  if (!res) throw error(nullptr, context);
  ExecStatusType st = PQresultStatus(res.get());
  if (st != good1 && st != good2) throw error(res.get(), context);
  return res;
}

PgResult PgConnection::exec(const std::string& sql, std::string_view context) {
  return check(PQexec(conn_.get(), sql.c_str()), context);
}

PgResult PgConnection::exec_params(const std::string& sql, const PgParams& params,
                                   std::string_view context) {
  return check(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(params.size()), nullptr,
                            params.data(), nullptr, nullptr, 0),
               context);
}

void PgConnection::prepare(const std::string& name, const std::string& sql,
                           std::string_view context) {
  check(PQprepare(conn_.get(), name.c_str(), sql.c_str(), 0, nullptr), context);
}

PgResult PgConnection::exec_prepared(const std::string& name, const PgParams& params,
                                     std::string_view context) {
  return check(PQexecPrepared(conn_.get(), name.c_str(), static_cast<int>(params.size()),
                              params.data(), nullptr, nullptr, 0),
               context);
}

void PgConnection::stream(const std::string& sql, const std::function<void(const PGresult&)>& row,
                          std::string_view context) {
  PGconn* c = conn_.get();
  if (PQsendQuery(c, sql.c_str()) == 0) throw error(nullptr, context);
  if (PQsetSingleRowMode(c) == 0) {
    PgResult drain;
    while ((drain.reset(PQgetResult(c)), drain)) {
    }
    throw error(nullptr, context);
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
          PgResult drain;
          while ((drain.reset(PQgetResult(c)), drain)) {
          }
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
  if (failed) throw error(failed.get(), context);
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

}  // namespace walfold::tools
