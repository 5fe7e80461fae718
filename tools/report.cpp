#include "tools/report.h"

#include <mongoc/mongoc.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/decimal.h"
#include "common/error.h"
#include "common/pg.h"
#include "common/timestamp.h"
#include "mongo/connect.h"
#include "mongo/handles.h"

namespace walfold::tools {

namespace {

// ---------------------------------------------------------------------------------------------
// The text format, shared by both sources so equal data prints equal bytes.

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void append_quoted(std::string& line, std::string_view text) {
  line.push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        line += "\\\"";
        break;
      case '\\':
        line += "\\\\";
        break;
      case '\n':
        line += "\\n";
        break;
      default:
        line.push_back(c);
    }
  }
  line.push_back('"');
}

class ReportWriter {
 public:
  explicit ReportWriter(std::ostream& out) : out_(out) {}

  void account(std::int64_t id, std::int64_t user, std::string_view currency,
               std::string_view balance) {
    line_ = "account ";
    line_ += std::to_string(id);
    line_ += " user ";
    line_ += std::to_string(user);
    line_ += " currency ";
    line_ += trim(currency);
    line_ += " balance ";
    line_ += balance;
    emit();
    ++accounts_;
  }

  void tx(std::int64_t id, std::string_view kind, std::string_view amount, std::int64_t us) {
    line_ = "  tx ";
    line_ += std::to_string(id);
    line_.push_back(' ');
    line_ += kind;
    line_.push_back(' ');
    line_ += amount;
    line_.push_back(' ');
    line_ += format_timestamp_us(us);
    emit();
  }

  // `accounts` is sorted here; `totals` maps trimmed currency code -> canonical amount.
  void user(std::int64_t id, std::string_view name, std::string_view email,
            std::vector<std::int64_t>& accounts, const std::map<std::string, std::string>& totals) {
    line_ = "user ";
    line_ += std::to_string(id);
    line_ += " name ";
    append_quoted(line_, name);
    line_ += " email ";
    append_quoted(line_, email);
    line_ += " accounts ";
    std::sort(accounts.begin(), accounts.end());
    if (accounts.empty()) line_.push_back('-');
    for (std::size_t i = 0; i < accounts.size(); ++i) {
      if (i != 0) line_.push_back(',');
      line_ += std::to_string(accounts[i]);
    }
    line_ += " totals";
    if (totals.empty()) line_ += " -";
    for (const auto& [currency, amount] : totals) {
      line_.push_back(' ');
      line_ += currency;
      line_.push_back('=');
      line_ += amount;
    }
    emit();
  }

  long finish() {
    out_.flush();
    if (!out_) throw std::runtime_error("report: writing the output failed");
    return accounts_;
  }

 private:
  void emit() {
    line_.push_back('\n');
    out_.write(line_.data(), static_cast<std::streamsize>(line_.size()));
    if (!out_) throw std::runtime_error("report: writing the output failed");
  }

  std::ostream& out_;
  std::string line_;
  long accounts_ = 0;
};

// ---------------------------------------------------------------------------------------------
// PostgreSQL

// The bank's tables as SQL: schema-qualified, each part quoted by PQescapeIdentifier.
struct SqlTables {
  std::string users, accounts, transactions;
};

std::string escape_identifier(const PgConn& conn, const std::string& name) {
  std::unique_ptr<char, void (*)(void*)> quoted(
      PQescapeIdentifier(conn.get(), name.data(), name.size()), PQfreemem);
  if (!quoted) {
    throw ConfigError("PostgreSQL " + conn.address() + ": cannot quote the table name '" + name +
                      "': " + pg_error_text(conn.get()));
  }
  return quoted.get();
}

SqlTables sql_tables(const PgConn& conn, const BankTables& t) {
  auto q = [&](const TableName& n) {
    return escape_identifier(conn, n.schema) + "." + escape_identifier(conn, n.name);
  };
  return {q(t.users), q(t.accounts), q(t.transactions)};
}

// Balance per account: deposits minus withdrawals.
std::string balances(const SqlTables& t) {
  return "bal AS (SELECT account_id, "
         "SUM(CASE kind WHEN 'deposit' THEN amount WHEN 'withdrawal' THEN -amount ELSE 0 END) "
         "AS balance FROM " +
         t.transactions + " GROUP BY account_id)";
}

// One ordered stream for the accounts part: each account's row (part 0) followed by its up to 3
// newest transactions (part 1, rn 1..3).
// Columns: account_id, part, ref (user_id | tx id), text (currency | kind), amount (balance |
// amount), created_at, rn.
std::string accounts_query(const SqlTables& t) {
  return "WITH " + balances(t) +
         ", newest AS (SELECT account_id, id, kind, amount, created_at, rn FROM ("
         "SELECT account_id, id, kind, amount, created_at, row_number() OVER ("
         "PARTITION BY account_id ORDER BY created_at DESC, id DESC) AS rn FROM " +
         t.transactions +
         ") w "
         "WHERE rn <= 3) "
         "SELECT a.id, 0 AS part, a.user_id, a.currency::text, COALESCE(b.balance, 0)::text, "
         "NULL::timestamptz, 0::bigint AS rn "
         "FROM " +
         t.accounts +
         " a LEFT JOIN bal b ON b.account_id = a.id "
         "UNION ALL "
         "SELECT n.account_id, 1, n.id, n.kind, n.amount::text, n.created_at, n.rn FROM newest n "
         "ORDER BY 1, 2, 7";
}

// One ordered stream for the users part: each user's row (part 0) followed by its accounts with
// their balances (part 1). Columns: user_id, part, account_id, full_name, email, currency,
// balance.
std::string users_query(const SqlTables& t) {
  return "WITH " + balances(t) +
         " SELECT u.id, 0 AS part, 0::bigint, u.full_name, u.email, NULL::text, NULL::text "
         "FROM " +
         t.users +
         " u "
         "UNION ALL "
         "SELECT a.user_id, 1, a.id, NULL, NULL, a.currency::text, COALESCE(b.balance, 0)::text "
         "FROM " +
         t.accounts +
         " a LEFT JOIN bal b ON b.account_id = a.id "
         "ORDER BY 1, 2, 3";
}

std::int64_t pg_int(const PGresult& row, int col, const PgConn& conn, const char* what) {
  std::string_view text = pg_value(row, 0, col);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (pg_is_null(row, 0, col) || ec != std::errc() || ptr != text.data() + text.size()) {
    throw DataError("PostgreSQL " + conn.address() + ": " + what + ": not an integer: '" +
                    std::string(text) + "'");
  }
  return v;
}

std::string pg_canonical(const PGresult& row, int col, const PgConn& conn,
                         const std::string& what) {
  std::optional<std::string> c = Decimal::canonicalize(pg_value(row, 0, col));
  if (!c) {
    throw DataError("PostgreSQL " + conn.address() + ": " + what + " is not a finite number: '" +
                    std::string(pg_value(row, 0, col)) + "'");
  }
  return *c;
}

long report_postgres(const ReportOptions& o, std::ostream& out) {
  PgConn conn(o.pg_dsn, {}, "report");
  conn.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "starting the report snapshot");
  ReportWriter w(out);
  const SqlTables tables = sql_tables(conn, o.tables);

  std::optional<std::int64_t> current;  // account whose transactions follow
  conn.stream(
      accounts_query(tables),
      [&](const PGresult& row) {
        std::int64_t account = pg_int(row, 0, conn, "accounts.id");
        if (pg_int(row, 1, conn, "part") == 0) {
          current = account;
          w.account(account, pg_int(row, 2, conn, "accounts.user_id"), pg_value(row, 0, 3),
                    pg_canonical(row, 4, conn, "balance of account " + std::to_string(account)));
          return;
        }
        if (current != account) return;  // cannot happen with the foreign key
        std::int64_t id = pg_int(row, 2, conn, "transactions.id");
        std::optional<std::int64_t> us = parse_pg_timestamptz(pg_value(row, 0, 5));
        if (!us) {
          throw DataError("PostgreSQL " + conn.address() + ": transactions.created_at of id " +
                          std::to_string(id) + " is not a reportable timestamp: '" +
                          std::string(pg_value(row, 0, 5)) + "'");
        }
        w.tx(id, pg_value(row, 0, 3),
             pg_canonical(row, 4, conn, "transactions.amount of id " + std::to_string(id)), *us);
      },
      "reading accounts and transactions");

  struct User {
    std::int64_t id = 0;
    std::string name, email;
    std::vector<std::int64_t> accounts;
    std::map<std::string, Decimal> totals;
  };
  std::optional<User> user;
  auto flush_user = [&] {
    if (!user) return;
    std::map<std::string, std::string> totals;
    for (const auto& [currency, sum] : user->totals) totals.emplace(currency, sum.canonical());
    w.user(user->id, user->name, user->email, user->accounts, totals);
    user.reset();
  };
  conn.stream(
      users_query(tables),
      [&](const PGresult& row) {
        std::int64_t id = pg_int(row, 0, conn, "users.id");
        if (pg_int(row, 1, conn, "part") == 0) {
          flush_user();
          user.emplace();
          user->id = id;
          user->name = pg_value(row, 0, 3);
          user->email = pg_value(row, 0, 4);
          return;
        }
        if (!user || user->id != id) return;  // cannot happen with the foreign key
        std::int64_t account = pg_int(row, 2, conn, "accounts.id");
        user->accounts.push_back(account);
        std::optional<Decimal> balance = Decimal::parse(pg_value(row, 0, 6));
        if (!balance) {
          throw DataError("PostgreSQL " + conn.address() + ": balance of account " +
                          std::to_string(account) + " is not a finite number: '" +
                          std::string(pg_value(row, 0, 6)) + "'");
        }
        Decimal& total = user->totals[std::string(trim(pg_value(row, 0, 5)))];
        std::optional<Decimal> sum = total.plus(*balance);
        if (!sum) {
          throw DataError("PostgreSQL " + conn.address() + ": total of user " + std::to_string(id) +
                          " overflows 34 significant digits");
        }
        total = *sum;
      },
      "reading users and account balances");
  flush_user();
  conn.exec("COMMIT", "ending the report snapshot");
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// MongoDB

using mongo::Bson;
using mongo::Collection;
using mongo::Cursor;
using mongo::StackBson;

// The servers a URI names, for messages (never the URI itself: it may hold a password).
std::string describe_hosts(const mongoc_uri_t* uri) {
  std::string out;
  for (const mongoc_host_list_t* h = mongoc_uri_get_hosts(uri); h != nullptr; h = h->next) {
    if (!out.empty()) out.push_back(',');
    out += h->host_and_port;
  }
  if (out.empty()) {
    const char* srv = mongoc_uri_get_srv_hostname(uri);
    out = srv != nullptr ? std::string("srv:") + srv : "?";
  }
  return out;
}

// Where a document value came from, for error messages.
class DocContext {
 public:
  DocContext(const std::string& server, const std::string& ns, const bson_t* doc)
      : server_(server), ns_(ns) {
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_id")) {
      if (BSON_ITER_HOLDS_INT64(&it))
        id_ = std::to_string(bson_iter_int64(&it));
      else if (BSON_ITER_HOLDS_INT32(&it))
        id_ = std::to_string(bson_iter_int32(&it));
      else
        id_ = "(non-integer)";
    }
  }
  [[noreturn]] void fail(std::string_view field, std::string_view problem) const {
    throw DataError("MongoDB " + server_ + ": " + ns_ + " document _id " + id_ + ": field " +
                    std::string(field) + " " + std::string(problem));
  }

  std::int64_t int64(const bson_iter_t* it, std::string_view field) const {
    if (BSON_ITER_HOLDS_INT64(it)) return bson_iter_int64(it);
    if (BSON_ITER_HOLDS_INT32(it)) return bson_iter_int32(it);
    fail(field, "is not an integer");
  }
  std::string_view utf8(const bson_iter_t* it, std::string_view field) const {
    if (!BSON_ITER_HOLDS_UTF8(it)) fail(field, "is not a string");
    std::uint32_t len = 0;
    const char* s = bson_iter_utf8(it, &len);
    return {s, len};
  }
  std::string decimal(const bson_iter_t* it, std::string_view field) const {
    if (!BSON_ITER_HOLDS_DECIMAL128(it)) fail(field, "is not a Decimal128");
    bson_decimal128_t dec;
    bson_iter_decimal128(it, &dec);
    char buf[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&dec, buf);
    std::optional<std::string> c = Decimal::canonicalize(buf);
    if (!c) fail(field, std::string("is not a finite number: ") + buf);
    return *c;
  }

 private:
  const std::string& server_;
  const std::string& ns_;
  std::string id_ = "(missing)";
};

bool is_deleted(const bson_t* doc) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, "deleted") && BSON_ITER_HOLDS_BOOL(&it) &&
         bson_iter_bool(&it);
}

class MongoSource {
 public:
  explicit MongoSource(const ReportOptions& o) : database_(o.mongo_database) {
    mongo::mongo_global_init();
    bson_error_t err;
    uri_.reset(mongoc_uri_new_with_error(o.mongo_uri.c_str(), &err));
    if (!uri_) throw ConfigError(std::string("MongoDB URI is not valid: ") + err.message);
    server_ = describe_hosts(uri_.get());
    if (!o.mongo_username.empty() &&
        (!mongoc_uri_set_username(uri_.get(), o.mongo_username.c_str()) ||
         !mongoc_uri_set_password(uri_.get(), o.mongo_password.c_str())))
      throw ConfigError("MongoDB " + server_ + ": the user name or password is not valid UTF-8");
    // Fail fast when the server is down, unless the URI chose its own timeout.
    if (!mongoc_uri_has_option(uri_.get(), MONGOC_URI_SERVERSELECTIONTIMEOUTMS)) {
      mongoc_uri_set_option_as_int32(uri_.get(), MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    }
    client_.reset(mongoc_client_new_from_uri(uri_.get()));
    if (!client_) throw ConfigError("MongoDB " + server_ + ": cannot create a client for the URI");
    mongoc_client_set_error_api(client_.get(), MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_appname(client_.get(), "walfold-report");

    Bson ping = Bson::adopt(BCON_NEW("ping", BCON_INT32(1)));
    StackBson reply;
    bool ok = mongoc_client_command_simple(client_.get(), "admin", ping.get(), nullptr, reply.get(),
                                           &err);
    if (!ok) mongo::throw_connect_error(server_, err);
  }

  // Calls `fn` with each document of `collection` in ascending _id order.
  template <typename Fn>
  void scan(const char* collection, const bson_t* projection, Fn&& fn) {
    std::string ns = database_ + "." + collection;
    Collection coll(mongoc_client_get_collection(client_.get(), database_.c_str(), collection));
    Bson filter;
    Bson opts = Bson::adopt(BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}"));
    BSON_APPEND_DOCUMENT(opts.get(), "projection", projection);
    Cursor cursor(mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr));
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cursor.get(), &doc)) {
      if (is_deleted(doc)) continue;
      fn(DocContext(server_, ns, doc), doc);
    }
    bson_error_t err;
    if (mongoc_cursor_error(cursor.get(), &err)) {
      throw UnavailableError("MongoDB " + server_ + ": reading " + ns + " failed: " + err.message);
    }
  }

 private:
  std::string database_;
  std::string server_;
  mongo::Uri uri_;
  mongo::Client client_;
};

struct TxLine {
  std::int64_t id = 0;
  std::string kind, amount;
  std::int64_t us = 0;
};

TxLine read_tx(const DocContext& ctx, const bson_iter_t* element) {
  if (!BSON_ITER_HOLDS_DOCUMENT(element)) ctx.fail("last_transactions", "has a non-document entry");
  bson_iter_t it;
  if (!bson_iter_recurse(element, &it)) ctx.fail("last_transactions", "has a corrupt entry");
  TxLine tx;
  bool has_id = false, has_kind = false, has_amount = false, has_us = false;
  while (bson_iter_next(&it)) {
    std::string_view key = bson_iter_key(&it);
    if (key == "id") {
      tx.id = ctx.int64(&it, "last_transactions.id");
      has_id = true;
    } else if (key == "kind") {
      tx.kind = ctx.utf8(&it, "last_transactions.kind");
      has_kind = true;
    } else if (key == "amount") {
      tx.amount = ctx.decimal(&it, "last_transactions.amount");
      has_amount = true;
    } else if (key == "created_at_us") {
      tx.us = ctx.int64(&it, "last_transactions.created_at_us");
      has_us = true;
    }
  }
  if (!has_id) ctx.fail("last_transactions.id", "is missing");
  if (!has_kind) ctx.fail("last_transactions.kind", "is missing");
  if (!has_amount) ctx.fail("last_transactions.amount", "is missing");
  if (!has_us) ctx.fail("last_transactions.created_at_us", "is missing");
  return tx;
}

long report_mongo(const ReportOptions& o, std::ostream& out) {
  MongoSource mongo(o);
  ReportWriter w(out);

  Bson account_fields = Bson::adopt(BCON_NEW("user_id", BCON_INT32(1), "currency", BCON_INT32(1),
                                             "balance", BCON_INT32(1), "last_transactions",
                                             BCON_INT32(1), "deleted", BCON_INT32(1)));
  std::vector<TxLine> txs;
  mongo.scan("accounts", account_fields.get(), [&](const DocContext& ctx, const bson_t* doc) {
    std::optional<std::int64_t> id, user;
    std::optional<std::string> currency, balance;
    txs.clear();
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) ctx.fail("(document)", "is corrupt");
    while (bson_iter_next(&it)) {
      std::string_view key = bson_iter_key(&it);
      if (key == "_id") {
        id = ctx.int64(&it, "_id");
      } else if (key == "user_id") {
        user = ctx.int64(&it, "user_id");
      } else if (key == "currency") {
        currency = std::string(ctx.utf8(&it, "currency"));
      } else if (key == "balance") {
        balance = ctx.decimal(&it, "balance");
      } else if (key == "last_transactions" && !BSON_ITER_HOLDS_NULL(&it)) {
        if (!BSON_ITER_HOLDS_ARRAY(&it)) ctx.fail("last_transactions", "is not an array");
        bson_iter_t arr;
        if (!bson_iter_recurse(&it, &arr)) ctx.fail("last_transactions", "is corrupt");
        while (bson_iter_next(&arr)) txs.push_back(read_tx(ctx, &arr));
      }
    }
    if (!id) ctx.fail("_id", "is missing");
    if (!user) ctx.fail("user_id", "is missing");
    if (!currency) ctx.fail("currency", "is missing");
    if (!balance) ctx.fail("balance", "is missing");
    w.account(*id, *user, *currency, *balance);
    for (const TxLine& tx : txs) w.tx(tx.id, tx.kind, tx.amount, tx.us);
  });

  Bson user_fields =
      Bson::adopt(BCON_NEW("full_name", BCON_INT32(1), "email", BCON_INT32(1), "accounts",
                           BCON_INT32(1), "balances", BCON_INT32(1), "deleted", BCON_INT32(1)));
  std::vector<std::int64_t> accounts;
  std::map<std::string, std::string> totals;
  mongo.scan("users", user_fields.get(), [&](const DocContext& ctx, const bson_t* doc) {
    std::optional<std::int64_t> id;
    std::optional<std::string> name, email;
    accounts.clear();
    totals.clear();
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) ctx.fail("(document)", "is corrupt");
    while (bson_iter_next(&it)) {
      std::string_view key = bson_iter_key(&it);
      if (key == "_id") {
        id = ctx.int64(&it, "_id");
      } else if (key == "full_name") {
        name = std::string(ctx.utf8(&it, "full_name"));
      } else if (key == "email") {
        email = std::string(ctx.utf8(&it, "email"));
      } else if (key == "accounts" && !BSON_ITER_HOLDS_NULL(&it)) {
        if (!BSON_ITER_HOLDS_ARRAY(&it)) ctx.fail("accounts", "is not an array");
        bson_iter_t arr;
        if (!bson_iter_recurse(&it, &arr)) ctx.fail("accounts", "is corrupt");
        while (bson_iter_next(&arr)) accounts.push_back(ctx.int64(&arr, "accounts[]"));
      } else if (key == "balances" && !BSON_ITER_HOLDS_NULL(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) ctx.fail("balances", "is not a document");
        bson_iter_t sub;
        if (!bson_iter_recurse(&it, &sub)) ctx.fail("balances", "is corrupt");
        while (bson_iter_next(&sub)) {
          std::string currency(trim(bson_iter_key(&sub)));
          totals[currency] = ctx.decimal(&sub, "balances." + currency);
        }
      }
    }
    if (!id) ctx.fail("_id", "is missing");
    if (!name) ctx.fail("full_name", "is missing");
    if (!email) ctx.fail("email", "is missing");
    w.user(*id, *name, *email, accounts, totals);
  });
  return w.finish();
}

}  // namespace

BankTables bank_tables(const Config& cfg) {
  BankTables t;
  auto set = [&](Model m, TableName& out) {
    if (const TableConfig* c = cfg.table_for(m)) out = {c->schema, c->name};
  };
  set(Model::Users, t.users);
  set(Model::Accounts, t.accounts);
  set(Model::Transactions, t.transactions);
  return t;
}

ReportOptions report_options(const Config& cfg, ReportSource from) {
  ReportOptions o;
  o.from = from;
  o.pg_dsn = postgres_conninfo(cfg.postgres);
  o.mongo_uri = cfg.mongodb.uri;
  o.mongo_database = cfg.mongodb.database;
  if (!cfg.mongodb.username.empty()) {
    o.mongo_username = cfg.mongodb.username;
    o.mongo_password = read_secret_file(cfg.mongodb.password_file);
  }
  o.tables = bank_tables(cfg);
  return o;
}

long write_report(const ReportOptions& options, std::ostream& out) {
  switch (options.from) {
    case ReportSource::Postgres:
      return report_postgres(options, out);
    case ReportSource::Mongo:
      return report_mongo(options, out);
  }
  throw ConfigError("report: unknown source");
}

}  // namespace walfold::tools
