#include "common/pg.h"

#include <cstdlib>
#include <stdexcept>

#include "common/error.h"
#include "common/progress.h"

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

// Every occurrence of `secret` in `text` replaced by "***" (a last line of defence: libpq's
// messages are not expected to contain the password).
std::string without_secret(std::string text, const std::string& secret) {
  if (secret.size() < 3) return text;
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3))
    text.replace(at, secret.size(), "***");
  return text;
}

enum class Refusal { None, Credentials, Tls, Service };

// Whether a failed connection attempt was refused for good: the server rejected the credentials
// (wrong or missing password, no pg_hba.conf entry, no such role) or the TLS certificate did not
// verify. libpq reports no SQLSTATE for a failed connection, so this reads its (English) text.
Refusal classify_connection_failure(std::string_view msg) {
  static constexpr std::string_view credentials[] = {
      "password authentication failed", "authentication failed for user",
      "no password supplied",           "pg_hba.conf rejects connection",
      "no pg_hba.conf entry",           "must be superuser or replication role",
      "permission denied for database", "SCRAM authentication requires",
  };
  static constexpr std::string_view tls[] = {
      "certificate verify failed",
      "does not match host name",
      "root certificate file",
      "server does not support SSL, but SSL was required",
      "certificate present, but not private key",
      "could not load private key file",
      "certificate is not valid",
  };
  for (auto t : tls)
    if (msg.find(t) != std::string_view::npos) return Refusal::Tls;
  if (msg.find("role \"") != std::string_view::npos &&
      msg.find("\" does not exist") != std::string_view::npos)
    return Refusal::Credentials;
  if (msg.find("definition of service \"") != std::string_view::npos ||
      msg.find("service file \"") != std::string_view::npos)
    return Refusal::Service;
  for (auto c : credentials)
    if (msg.find(c) != std::string_view::npos) return Refusal::Credentials;
  return Refusal::None;
}

std::vector<const char*> param_values(const PgParams& params) {
  std::vector<const char*> vals;
  vals.reserve(params.size());
  for (const auto& p : params) vals.push_back(p ? p->c_str() : nullptr);
  return vals;
}

}  // namespace

ErrorKind pg_error_kind(std::string_view state) {
  struct Row {
    std::string_view prefix;  // a whole SQLSTATE, or its two-character class
    ErrorKind kind;
  };
  // The most specific row first.
  static constexpr Row kRows[] = {
      {"42501", ErrorKind::Auth},        {"57014", ErrorKind::Transient},
      {"57P01", ErrorKind::Unavailable}, {"57P02", ErrorKind::Unavailable},
      {"57P03", ErrorKind::Unavailable}, {"55006", ErrorKind::Transient},
      {"55P03", ErrorKind::Transient},   {"08", ErrorKind::Unavailable},
      {"28", ErrorKind::Auth},           {"40", ErrorKind::Transient},
      {"53", ErrorKind::Unavailable},    {"58", ErrorKind::Unavailable},
  };
  for (const auto& r : kRows)
    if (state.size() == 5 && state.starts_with(r.prefix)) return r.kind;
  return ErrorKind::Internal;
}

namespace {

std::string sqlstate_of(const PGresult* res) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  return state != nullptr ? state : "";
}

}  // namespace

PgConn::PgConn(const PgConnInfo& info, const std::map<std::string, std::string>& overrides,
               const std::string& purpose) {
  const std::string& dsn = info.dsn;
  const std::string what = purpose.empty() ? "" : " (" + purpose + ")";
  if (std::string problem = conninfo_problem(dsn); !problem.empty())
    throw ConfigError("the PostgreSQL connection string" + what + " " + problem);
  ServerWait wait(Server::PostgreSQL);
  // walfold reads timestamps as UTC and ISO: its settings go after the user's own `options`
  // (which are kept); the user's application_name wins over "walfold". Where the DSN has
  // neither, libpq's environment variables (PGOPTIONS, PGAPPNAME) count, as they would without
  // walfold's values.
  std::string options = "-c TimeZone=UTC -c DateStyle=ISO", application = "walfold";
  std::string given_options, given_application;
  if (const char* env = std::getenv("PGOPTIONS")) given_options = env;
  if (const char* env = std::getenv("PGAPPNAME")) given_application = env;
  if (PQconninfoOption* given = PQconninfoParse(dsn.c_str(), nullptr)) {
    for (const PQconninfoOption* o = given; o->keyword != nullptr; ++o) {
      if (o->val == nullptr || *o->val == '\0') continue;
      if (std::string_view(o->keyword) == "options") given_options = o->val;
      if (std::string_view(o->keyword) == "application_name") given_application = o->val;
    }
    PQconninfoFree(given);
  }
  if (!given_options.empty()) options = given_options + " " + options;
  if (!given_application.empty()) application = given_application;
  // expand_dbname: the DSN (any form) is expanded in place of `dbname`; the keywords after it
  // win over what it says, the password included.
  std::vector<const char*> keys{"dbname"};
  std::vector<const char*> values{dsn.c_str()};
  if (!info.password.empty()) {
    keys.push_back("password");
    values.push_back(info.password.c_str());
  }
  keys.insert(keys.end(), {"options", "application_name"});
  values.insert(values.end(), {options.c_str(), application.c_str()});
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
    std::string msg = without_secret(one_line(pg_error_text(c)), info.password);
    const std::string head = "postgresql at " + address_ + what;
    switch (classify_connection_failure(msg)) {
      case Refusal::Credentials:
        throw AuthError(head +
                        " refused walfold's credentials (check postgres.password_file, "
                        "PGPASSFILE or the role's pg_hba.conf entry): " +
                        msg);
      case Refusal::Tls:
        throw AuthError(head +
                        ": TLS verification failed (check sslmode, sslrootcert and the "
                        "server's certificate): " +
                        msg);
      case Refusal::Service:
        throw ConfigError(head + ": " + msg + " (see PGSERVICEFILE and PGSYSCONFDIR)");
      case Refusal::None:
        break;
    }
    throw UnavailableError(head + " is unreachable or refused the connection: " + msg);
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
  ServerWait wait(Server::PostgreSQL);
  return check(PQexec(conn_.get(), sql.c_str()), sql, context);
}

PgResult PgConn::exec_params(const std::string& sql, const PgParams& params,
                             std::string_view context) {
  ServerWait wait(Server::PostgreSQL);
  std::vector<const char*> vals = param_values(params);
  return check(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(vals.size()), nullptr,
                            vals.data(), nullptr, nullptr, 0),
               sql, context);
}

void PgConn::prepare(const std::string& name, const std::string& sql, std::string_view context) {
  ServerWait wait(Server::PostgreSQL);
  check(PQprepare(conn_.get(), name.c_str(), sql.c_str(), 0, nullptr), sql, context);
}

PgResult PgConn::exec_prepared(const std::string& name, const PgParams& params,
                               std::string_view context) {
  ServerWait wait(Server::PostgreSQL);
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
  ServerWait wait(Server::PostgreSQL);
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

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// libpq's message with the pieces of the string it quotes taken out (its own punctuation, such
// as "=", is kept).
std::string libpq_wording(std::string_view msg) {
  std::string out;
  for (std::size_t i = 0; i < msg.size(); ++i) {
    if (msg[i] != '"') {
      out.push_back(msg[i]);
      continue;
    }
    auto close = msg.find('"', i + 1);
    if (close == std::string_view::npos) break;
    std::string_view inner = msg.substr(i + 1, close - i - 1);
    const bool punctuation = inner == "=" || inner == "]" || inner == ":" || inner == "/";
    out.append(punctuation ? "\"" + std::string(inner) + "\"" : "\"...\"");
    i = close;
  }
  return one_line(out);
}

bool is_keyword(std::string_view name) {
  static const std::vector<std::string> known = [] {
    std::vector<std::string> k;
    if (PQconninfoOption* d = PQconndefaults()) {
      for (const PQconninfoOption* o = d; o->keyword != nullptr; ++o) k.emplace_back(o->keyword);
      PQconninfoFree(d);
    }
    return k;
  }();
  for (const auto& k : known)
    if (k == name) return true;
  return false;
}

// For a key=value string that libpq rejected: the last valid keyword whose value was read
// before the problem (empty when the problem comes first), following libpq's parser (values
// end at a blank unless single-quoted; a backslash escapes the next character).
std::string last_keyword_before_problem(std::string_view s) {
  std::string last;
  std::size_t i = 0;
  while (true) {
    while (i < s.size() && is_space(s[i])) ++i;
    if (i >= s.size()) return last;
    std::size_t name_start = i;
    while (i < s.size() && s[i] != '=' && !is_space(s[i])) ++i;
    std::string_view name = s.substr(name_start, i - name_start);
    while (i < s.size() && is_space(s[i])) ++i;
    if (i >= s.size() || s[i] != '=') return last;
    ++i;
    while (i < s.size() && is_space(s[i])) ++i;
    if (i < s.size() && s[i] == '\'') {
      for (++i; i < s.size() && s[i] != '\''; ++i)
        if (s[i] == '\\') ++i;
      if (i >= s.size()) return last;  // unterminated quote
      ++i;
    } else {
      for (; i < s.size() && !is_space(s[i]); ++i)
        if (s[i] == '\\') ++i;
    }
    if (!is_keyword(name)) return last;
    last = std::string(name);
  }
}

}  // namespace

std::string conninfo_problem(std::string_view dsn) {
  const std::string text(dsn);
  const bool uri = text.rfind("postgresql://", 0) == 0 || text.rfind("postgres://", 0) == 0;
  // libpq's rule for expand_dbname: anything else without an '=' is a database name.
  if (!uri && text.find('=') == std::string::npos) return {};
  char* error = nullptr;
  if (PQconninfoOption* parsed = PQconninfoParse(text.c_str(), &error)) {
    PQconninfoFree(parsed);
    return {};
  }
  std::string wording = error != nullptr ? libpq_wording(error) : "libpq is out of memory";
  PQfreemem(error);
  std::string out = "is malformed: " + wording;
  if (!uri) {
    std::string after = last_keyword_before_problem(text);
    out += after.empty() ? " (at its first keyword)" : " (after the value of '" + after + "')";
    out += "; a value with blanks or quotes must be single-quoted, key='...'";
  }
  return out + " (the string is not shown: it may hold a password)";
}

bool conninfo_has_password(std::string_view dsn) {
  const std::string text(dsn);
  PQconninfoOption* parsed = PQconninfoParse(text.c_str(), nullptr);
  if (parsed == nullptr) return false;
  bool found = false;
  for (const PQconninfoOption* o = parsed; o->keyword != nullptr; ++o)
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0')
      found = true;
  PQconninfoFree(parsed);
  return found;
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
