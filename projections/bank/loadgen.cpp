#include "projections/bank/loadgen.h"

#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/error.h"
#include "common/pg.h"

namespace walfold::projections::bank {

namespace {

using Clock = std::chrono::steady_clock;
using Rng = std::mt19937_64;

// Operations sent ahead before their results are read (pipeline depth). Small enough that the
// queries and their results always fit in the socket buffers, so blocking writes cannot deadlock.
constexpr std::size_t kMaxInFlight = 256;
// Users created per multi-row INSERT (each block of users and their accounts is one transaction).
constexpr long kUserBlock = 1000;
// With reuse_existing, how many of the newest existing transactions updates/deletes may touch.
constexpr long kPreloadLimit = 100000;

// Parameters of a pipelined statement: text values pointing into the caller's strings.
using SendParams = std::vector<const char*>;

std::int64_t uniform(Rng& rng, std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}
double unit(Rng& rng) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// An amount in ten-thousandths: 1 .. 100,000,000 (0.0001 .. 10000.0000). Mostly arbitrary
// (non-zero last digits), some whole cents and whole units so canonical forms with stripped
// zeros show up too, and some below one unit.
std::int64_t random_amount(Rng& rng) {
  std::int64_t shape = uniform(rng, 0, 99);
  if (shape < 5) return uniform(rng, 1, 9999);
  if (shape < 15) return uniform(rng, 1, 10000) * 10000;
  if (shape < 30) return uniform(rng, 1, 1000000) * 100;
  return uniform(rng, 1, 100000000);
}

std::string format_amount(std::int64_t ten_thousandths) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%" PRId64 ".%04" PRId64, ten_thousandths / 10000,
                ten_thousandths % 10000);
  return buf;
}

std::string random_name(Rng& rng) {
  static const char* const kFirst[] = {
      "Ada",    "Alan",  "Grace",   "Edsger", "Barbara", "Donald", "Frances", "Ken",   "Margaret",
      "Dennis", "Radia", "Niklaus", "Zoë",    "José",    "Björn",  "Søren",   "Anaïs", "Łukasz"};
  static const char* const kLast[] = {"Lovelace",     "Turing", "Hopper",    "Dijkstra", "Liskov",
                                      "Knuth",        "Allen",  "Thompson",  "Hamilton", "Ritchie",
                                      "Perlman",      "Wirth",  "O'Brien",   "Müller",   "García",
                                      "van der Berg", "Nuñez",  "Østergaard"};
  // Now and then a name that needs escaping in the report.
  static const char* const kOdd[] = {"Jean \"JJ\" Dupont", "Back\\slash Bob", "Quote \"Q\" \\ Mix"};
  if (uniform(rng, 0, 199) == 0) return kOdd[uniform(rng, 0, std::size(kOdd) - 1)];
  std::string name = kFirst[uniform(rng, 0, std::size(kFirst) - 1)];
  name.push_back(' ');
  name += kLast[uniform(rng, 0, std::size(kLast) - 1)];
  return name;
}

std::string int_array(const std::vector<std::int64_t>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i != 0) out.push_back(',');
    out += std::to_string(values[i]);
  }
  out.push_back('}');
  return out;
}

std::int64_t to_int64(std::string_view text, const PgConn& conn, std::string_view what) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end) {
    throw DataError("PostgreSQL " + conn.address() + ": " + std::string(what) +
                    ": not an integer: '" + std::string(text) + "'");
  }
  return v;
}

class Progress {
 public:
  Progress(bool enabled, const char* what, long total)
      : enabled_(enabled && total > 0),
        tty_(enabled_ && isatty(STDERR_FILENO) != 0),
        what_(what),
        total_(total),
        start_(Clock::now()),
        last_(start_) {}

  void update(long done) {
    if (!enabled_) return;
    Clock::time_point now = Clock::now();
    if (now - last_ < (tty_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(2000))) {
      return;
    }
    last_ = now;
    print(done, now, false);
  }

  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  // An aborted run (exception) still ends the \r-updated line, so the error starts on its own.
  ~Progress() {
    if (open_line_) std::fputc('\n', stderr);
  }

  void finish(long done) {
    if (enabled_) print(done, Clock::now(), true);
  }

 private:
  void print(long done, Clock::time_point now, bool final) {
    double secs = std::chrono::duration<double>(now - start_).count();
    double per_sec = secs > 0 ? static_cast<double>(done) / secs : 0.0;
    char line[256];
    if (final) {
      std::snprintf(line, sizeof line, "loadgen: %s %ld/%ld done in %.1f s (%.0f/s)", what_, done,
                    total_, secs, per_sec);
    } else {
      char eta[32] = "?";
      if (per_sec > 0) {
        long left = static_cast<long>(std::ceil(static_cast<double>(total_ - done) / per_sec));
        std::snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", left / 3600, left / 60 % 60, left % 60);
      }
      std::snprintf(line, sizeof line, "loadgen: %s %ld/%ld (%.1f%%), %.0f/s, ETA %s", what_, done,
                    total_, 100.0 * static_cast<double>(done) / static_cast<double>(total_),
                    per_sec, eta);
    }
    if (tty_) {
      std::fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
      open_line_ = !final;
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }

  bool enabled_;
  bool tty_;
  bool open_line_ = false;
  const char* what_;
  long total_;
  Clock::time_point start_;
  Clock::time_point last_;
};

// The accounts operations pick from, grouped by currency for transfers.
class AccountBook {
 public:
  void add(std::int64_t id, const std::string& currency) {
    auto [it, inserted] = currency_index_.try_emplace(currency, by_currency_.size());
    if (inserted) by_currency_.emplace_back();
    std::size_t cur = it->second;
    accounts_.push_back({id, cur, by_currency_[cur].size()});
    by_currency_[cur].push_back(id);
  }
  bool empty() const { return accounts_.empty(); }
  std::size_t size() const { return accounts_.size(); }
  std::size_t pick(Rng& rng) const {
    return static_cast<std::size_t>(uniform(rng, 0, static_cast<std::int64_t>(size()) - 1));
  }
  std::int64_t id(std::size_t index) const { return accounts_[index].id; }
  // Another account in the same currency, or 0 if there is none.
  std::int64_t partner(std::size_t index, Rng& rng) const {
    const Account& a = accounts_[index];
    const std::vector<std::int64_t>& same = by_currency_[a.currency];
    if (same.size() < 2) return 0;
    auto pos =
        static_cast<std::size_t>(uniform(rng, 0, static_cast<std::int64_t>(same.size()) - 2));
    if (pos >= a.pos_in_currency) ++pos;
    return same[pos];
  }

 private:
  struct Account {
    std::int64_t id;
    std::size_t currency;
    std::size_t pos_in_currency;
  };
  std::vector<Account> accounts_;
  std::vector<std::vector<std::int64_t>> by_currency_;
  std::unordered_map<std::string, std::size_t> currency_index_;
};

// Transactions known to exist, for corrections and deletes: O(1) random pick and removal.
class TxPool {
 public:
  struct Entry {
    std::int64_t id;
    std::int64_t partner;  // the other leg of a transfer, 0 if none
  };
  void add(std::int64_t id, std::int64_t partner) {
    if (index_.try_emplace(id, entries_.size()).second) entries_.push_back({id, partner});
  }
  bool empty() const { return entries_.empty(); }
  Entry pick(Rng& rng) const {
    return entries_[static_cast<std::size_t>(
        uniform(rng, 0, static_cast<std::int64_t>(entries_.size()) - 1))];
  }
  void remove(std::int64_t id) {
    auto it = index_.find(id);
    if (it == index_.end()) return;
    std::size_t pos = it->second;
    index_.erase(it);
    if (pos + 1 != entries_.size()) {
      entries_[pos] = entries_.back();
      index_[entries_[pos].id] = pos;
    }
    entries_.pop_back();
  }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::int64_t, std::size_t> index_;
};

enum class Op { Deposit, Withdrawal, Transfer, Update, Delete };

const char* op_name(Op op) {
  switch (op) {
    case Op::Deposit:
      return "deposit";
    case Op::Withdrawal:
      return "withdrawal";
    case Op::Transfer:
      return "transfer";
    case Op::Update:
      return "correction (update)";
    case Op::Delete:
      return "delete";
  }
  return "?";
}

// Sends prepared statements in libpq pipeline mode and reads their results in batches, so the
// round trip is paid once per up to kMaxInFlight operations instead of once per operation.
// Statements between two syncs run as one implicit transaction (PostgreSQL's pipeline rule), so a
// sync after each group of ops_per_commit operations is that group's commit.
class Pipeline {
 public:
  Pipeline(PgConn& conn, TxPool& pool, LoadgenStats& stats)
      : conn_(conn), pool_(pool), stats_(stats) {
    // libpq 15 keeps single-row mode switched on after a PgConn::stream() until the next
    // query sent outside pipeline mode; without this the pipeline's results would arrive as
    // single rows.
    conn_.exec("SELECT 1", "resetting the session before pipelining");
    if (PQenterPipelineMode(conn_.get()) == 0) conn_.fail(nullptr, "entering pipeline mode");
  }

  void send(const char* statement, const SendParams& params, Op op, std::int64_t subject) {
    if (PQsendQueryPrepared(conn_.get(), statement, static_cast<int>(params.size()), params.data(),
                            nullptr, nullptr, 0) == 0) {
      conn_.fail(nullptr, context(op, subject));
    }
    expected_.push_back({op, subject, false});
    ++ops_in_flight_;
    last_was_sync_ = false;
  }

  void sync() {
    if (PQpipelineSync(conn_.get()) == 0) conn_.fail(nullptr, "sending a commit (sync)");
    expected_.push_back({Op::Deposit, 0, true});
    last_was_sync_ = true;
  }

  std::size_t ops_in_flight() const { return ops_in_flight_; }
  long completed() const { return completed_; }

  // Reads every outstanding result. Operations whose results arrive count as done.
  void drain() {
    if (expected_.empty()) return;
    PGconn* c = conn_.get();
    if (!last_was_sync_ && PQsendFlushRequest(c) == 0) {
      conn_.fail(nullptr, "sending a flush request");
    }
    if (PQflush(c) != 0) conn_.fail(nullptr, "sending queries");
    while (!expected_.empty()) {
      Pending p = expected_.front();
      expected_.pop_front();
      PgResult res(PQgetResult(c));
      if (!res) conn_.fail(nullptr, p.sync ? "committing" : context(p.op, p.subject));
      ExecStatusType st = PQresultStatus(res.get());
      if (p.sync) {
        if (st != PGRES_PIPELINE_SYNC) conn_.fail(res.get(), "committing");
        continue;
      }
      if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        conn_.fail(res.get(), context(p.op, p.subject));
      }
      on_result(p.op, *res);
      PgResult end(PQgetResult(c));  // each query's results end with a null
      if (end) conn_.fail(end.get(), "reading pipeline results (unexpected extra result)");
      --ops_in_flight_;
      ++completed_;
    }
  }

  void leave() {
    drain();
    if (PQexitPipelineMode(conn_.get()) == 0) conn_.fail(nullptr, "leaving pipeline mode");
  }

 private:
  struct Pending {
    Op op;
    std::int64_t subject;  // account or transaction id, for error messages
    bool sync;
  };

  std::string context(Op op, std::int64_t subject) const {
    std::string s = std::string("running a ") + op_name(op);
    s += (op == Op::Update || op == Op::Delete) ? " of transaction " : " on account ";
    s += std::to_string(subject);
    return s;
  }

  void on_result(Op op, const PGresult& res) {
    switch (op) {
      case Op::Deposit:
      case Op::Withdrawal:
        if (PQntuples(&res) == 1) pool_.add(to_int64(pg_value(res, 0, 0), conn_, "new id"), 0);
        ++(op == Op::Deposit ? stats_.deposits : stats_.withdrawals);
        break;
      case Op::Transfer:
        if (PQntuples(&res) == 2) {
          std::int64_t a = to_int64(pg_value(res, 0, 0), conn_, "new id");
          std::int64_t b = to_int64(pg_value(res, 1, 0), conn_, "new id");
          pool_.add(a, b);
          pool_.add(b, a);
        }
        ++stats_.transfers;
        break;
      case Op::Update:
        ++stats_.updates;
        break;
      case Op::Delete:
        ++stats_.deletes;
        break;
    }
  }

  PgConn& conn_;
  TxPool& pool_;
  LoadgenStats& stats_;
  std::deque<Pending> expected_;
  std::size_t ops_in_flight_ = 0;
  long completed_ = 0;
  bool last_was_sync_ = true;
};

void validate(const LoadgenOptions& o) {
  auto bad = [](const std::string& what) { throw ConfigError("loadgen: " + what); };
  if (o.users < 0) bad("users must be >= 0 (got " + std::to_string(o.users) + ")");
  if (o.transactions < 0) {
    bad("transactions must be >= 0 (got " + std::to_string(o.transactions) + ")");
  }
  if (!std::isfinite(o.rate) || o.rate < 0) bad("rate must be >= 0 operations per second");
  for (auto [name, v] :
       {std::pair{"transfer", o.transfer_share}, std::pair{"update", o.update_share},
        std::pair{"delete", o.delete_share}}) {
    if (!std::isfinite(v) || v < 0 || v > 1) {
      bad(std::string(name) + " share must be between 0 and 1 (got " + std::to_string(v) + ")");
    }
  }
  if (o.transfer_share + o.update_share + o.delete_share > 1 + 1e-9) {
    bad("transfer, update and delete shares add up to more than 1");
  }
  if (o.ops_per_commit < 1) bad("ops_per_commit must be >= 1");
  if (o.currencies.empty()) bad("at least one currency is needed");
  for (const std::string& c : o.currencies) {
    bool ok = c.size() == 3 &&
              std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
    if (!ok) bad("currency '" + c + "' is not a 3-letter upper-case ISO code");
  }
}

// The bank's tables as SQL, as the `tables:` mapping names them (TableNames quotes them).
struct LoadTables {
  std::string users, accounts, transactions;
};

LoadTables load_tables(const TableNames& t) {
  return {t.qualified("users"), t.qualified("accounts"), t.qualified("transactions")};
}

// Every statement a run sends, named for PREPARE, on the mapped tables.
std::vector<std::pair<const char*, std::string>> prepared_statements(const LoadTables& t) {
  return {
      {"wf_lg_users",
       "INSERT INTO " + t.users +
           " (full_name, email) "
           "SELECT n, e FROM unnest($1::text[], $2::text[]) AS u(n, e) RETURNING id"},
      {"wf_lg_accounts", "INSERT INTO " + t.accounts +
                             " (user_id, currency) "
                             "SELECT u, c FROM unnest($1::bigint[], $2::text[]) AS a(u, c) "
                             "RETURNING id, btrim(currency::text)"},
      {"wf_lg_tx", "INSERT INTO " + t.transactions +
                       " (account_id, amount, kind) "
                       "VALUES ($1::bigint, $2::numeric, $3::text) RETURNING id"},
      // Both legs in one statement (so one transaction even without a surrounding group); the
      // MATERIALIZED CTE evaluates gen_random_uuid() once for both rows.
      {"wf_lg_transfer",
       "WITH t AS MATERIALIZED (SELECT gen_random_uuid() AS transfer_id) "
       "INSERT INTO " +
           t.transactions +
           " (account_id, amount, kind, transfer_id) "
           "SELECT leg.account_id, $3::numeric, leg.kind, t.transfer_id "
           "FROM t CROSS JOIN (VALUES ($1::bigint, 'withdrawal'), ($2::bigint, 'deposit')) "
           "AS leg(account_id, kind) RETURNING id"},
      {"wf_lg_update",
       "UPDATE " + t.transactions +
           " SET amount = $2::numeric, kind = CASE WHEN $3::boolean THEN "
           "(CASE kind WHEN 'deposit' THEN 'withdrawal' ELSE 'deposit' END) ELSE kind END "
           "WHERE id = ANY($1::bigint[])"},
      {"wf_lg_delete", "DELETE FROM " + t.transactions + " WHERE id = ANY($1::bigint[])"},
  };
}

void create_users(PgConn& conn, const LoadgenOptions& o, std::uint64_t seed, Rng& rng,
                  AccountBook& book, LoadgenStats& stats) {
  Progress progress(o.progress, "users", o.users);
  for (long first = 0; first < o.users; first += kUserBlock) {
    long n = std::min(kUserBlock, o.users - first);
    std::vector<std::string> names, emails;
    names.reserve(n);
    emails.reserve(n);
    for (long i = 0; i < n; ++i) {
      names.push_back(random_name(rng));
      emails.push_back("user-" + std::to_string(seed) + "-" + std::to_string(first + i + 1) +
                       "@example.test");
    }
    std::string names_arr = pg_text_array(names), emails_arr = pg_text_array(emails);
    conn.exec("BEGIN", "creating users");
    PgResult users;
    try {
      users = conn.exec_prepared("wf_lg_users", {names_arr, emails_arr}, "creating users");
    } catch (const PgError& e) {
      if (e.sqlstate() != "23505") throw;
      throw PgError(std::string(e.what()) + "; emails are user-<seed>-<n>@example.test and seed " +
                        std::to_string(seed) +
                        " was used before: pick another seed (0 = random) or reuse existing users",
                    e.sqlstate());
    }
    std::vector<std::int64_t> owners;
    std::vector<std::string> currencies;
    for (int r = 0; r < PQntuples(users.get()); ++r) {
      std::int64_t user = to_int64(pg_value(*users, r, 0), conn, "users.id");
      for (std::int64_t k = uniform(rng, 1, 3); k > 0; --k) {
        owners.push_back(user);
        currencies.push_back(
            o.currencies[uniform(rng, 0, static_cast<std::int64_t>(o.currencies.size()) - 1)]);
      }
    }
    std::string owners_arr = int_array(owners), currencies_arr = pg_text_array(currencies);
    PgResult accounts =
        conn.exec_prepared("wf_lg_accounts", {owners_arr, currencies_arr}, "creating accounts");
    for (int r = 0; r < PQntuples(accounts.get()); ++r) {
      book.add(to_int64(pg_value(*accounts, r, 0), conn, "accounts.id"),
               std::string(pg_value(*accounts, r, 1)));
    }
    conn.exec("COMMIT", "creating users");
    stats.users += PQntuples(users.get());
    stats.accounts += PQntuples(accounts.get());
    progress.update(first + n);
  }
  progress.finish(o.users);
}

void load_existing(PgConn& conn, const LoadTables& t, AccountBook& book, TxPool& pool,
                   LoadgenStats& stats) {
  conn.stream(
      "SELECT id, btrim(currency::text) FROM " + t.accounts + " ORDER BY id",
      [&](const PGresult& row) {
        book.add(to_int64(pg_value(row, 0, 0), conn, "accounts.id"),
                 std::string(pg_value(row, 0, 1)));
      },
      "reading existing accounts");
  if (book.empty()) return;
  stats.accounts = static_cast<long>(book.size());
  PgResult users = conn.exec("SELECT count(*) FROM " + t.users, "counting existing users");
  stats.users = static_cast<long>(to_int64(pg_value(*users, 0, 0), conn, "count(*)"));
  conn.stream(
      "SELECT t.id, p.id FROM (SELECT id, transfer_id FROM " + t.transactions +
          " ORDER BY id DESC LIMIT " + std::to_string(kPreloadLimit) + ") t LEFT JOIN " +
          t.transactions + " p ON p.transfer_id = t.transfer_id AND p.id <> t.id",
      [&](const PGresult& row) {
        std::int64_t partner =
            pg_is_null(row, 0, 1) ? 0 : to_int64(pg_value(row, 0, 1), conn, "transactions.id");
        pool.add(to_int64(pg_value(row, 0, 0), conn, "transactions.id"), partner);
      },
      "reading existing transactions");
}

// The seed to use: the given one, or a random one when it is 0.
std::uint64_t pick_seed(std::uint64_t seed) {
  while (seed == 0) {
    std::random_device rd;
    seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  }
  return seed;
}

void prepare_session(PgConn& conn, const LoadTables& tables) {
  conn.exec("SET client_encoding = 'UTF8'", "setting up the session");
  for (const auto& [name, sql] : prepared_statements(tables)) {
    conn.prepare(name, sql,
                 std::string("preparing ") + name +
                     " (is the bank schema from examples/bank/schema.sql loaded?)");
  }
}

Op choose_op(const LoadgenOptions& o, Rng& rng) {
  const double r = unit(rng);
  if (r < o.transfer_share) return Op::Transfer;
  if (r < o.transfer_share + o.update_share) return Op::Update;
  if (r < o.transfer_share + o.update_share + o.delete_share) return Op::Delete;
  return unit(rng) < 0.6 ? Op::Deposit : Op::Withdrawal;
}

// Sends one operation on a random account (a transfer whose currency has no second account
// runs as a deposit); updates and deletes pick a transaction from `pool`, which is not empty.
void send_op(Op op, const std::string& amount, Pipeline& pipe, AccountBook& book, TxPool& pool,
             Rng& rng) {
  std::size_t account = book.pick(rng);
  std::int64_t account_id = book.id(account);
  std::string a = std::to_string(account_id);
  if (op == Op::Transfer) {
    std::int64_t to = book.partner(account, rng);
    if (to == 0) {
      op = Op::Deposit;
    } else {
      std::string b = std::to_string(to);
      pipe.send("wf_lg_transfer", {a.c_str(), b.c_str(), amount.c_str()}, op, account_id);
    }
  }
  if (op == Op::Deposit || op == Op::Withdrawal) {
    pipe.send("wf_lg_tx", {a.c_str(), amount.c_str(), op_name(op)}, op, account_id);
  } else if (op == Op::Update) {
    // A correction of a transfer corrects both legs (one statement, one transaction) so the
    // transfer stays balanced; now and then a correction of a plain deposit/withdrawal also
    // flips its kind.
    TxPool::Entry e = pool.pick(rng);
    std::vector<std::int64_t> ids{e.id};
    if (e.partner != 0) ids.push_back(e.partner);
    std::string arr = int_array(ids);
    const char* flip = (e.partner == 0 && uniform(rng, 0, 9) == 0) ? "true" : "false";
    pipe.send("wf_lg_update", {arr.c_str(), amount.c_str(), flip}, op, e.id);
  } else if (op == Op::Delete) {
    TxPool::Entry e = pool.pick(rng);
    std::vector<std::int64_t> ids{e.id};
    if (e.partner != 0) ids.push_back(e.partner);
    for (std::int64_t id : ids) pool.remove(id);
    std::string arr = int_array(ids);
    pipe.send("wf_lg_delete", {arr.c_str()}, op, e.id);
  }
}

}  // namespace

LoadgenStats run_loadgen(const LoadgenOptions& o) {
  validate(o);
  const std::uint64_t seed = pick_seed(o.seed);
  Rng rng(seed);
  LoadgenStats stats{0, 0, 0, 0, 0, 0, 0, 0.0};

  PgConn conn(o.pg_dsn, {}, "loadgen");
  if (!o.tables) throw InternalError("loadgen: no table names given");
  const LoadTables tables = load_tables(*o.tables(conn));
  prepare_session(conn, tables);
  AccountBook book;
  TxPool pool;
  if (o.reuse_existing) load_existing(conn, tables, book, pool, stats);
  if (book.empty()) create_users(conn, o, seed, rng, book, stats);
  if (o.transactions > 0 && book.empty()) {
    throw ConfigError("loadgen: no accounts to run operations on (users is 0" +
                      std::string(o.reuse_existing ? " and none exist" : "") + ")");
  }

  Progress progress(o.progress, "operations", o.transactions);
  Clock::time_point start = Clock::now();
  Pipeline pipe(conn, pool, stats);
  auto drain = [&] {
    pipe.drain();
    progress.update(pipe.completed());
  };
  for (long sent = 0; sent < o.transactions;) {
    if (o.rate > 0) {
      auto due = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(static_cast<double>(sent) / o.rate));
      if (Clock::now() < due) {
        drain();
        std::this_thread::sleep_until(due);
      }
    }
    long group = std::min<long>(o.ops_per_commit, o.transactions - sent);
    for (long i = 0; i < group; ++i) {
      std::string amount = format_amount(random_amount(rng));
      Op op = choose_op(o, rng);
      if ((op == Op::Update || op == Op::Delete) && pool.empty()) {
        // Inserts still in flight will fill the pool: read their ids first, so the mix is
        // right from the start of the run.
        if (pipe.ops_in_flight() > 0) drain();
        if (pool.empty()) op = Op::Deposit;
      }
      send_op(op, amount, pipe, book, pool, rng);
      if (i + 1 < group && pipe.ops_in_flight() >= kMaxInFlight)
        drain();  // a large group: read results mid-transaction
    }
    pipe.sync();
    sent += group;
    if (pipe.ops_in_flight() >= kMaxInFlight) drain();
  }
  pipe.leave();
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  progress.finish(pipe.completed());
  return stats;
}

void BankLoadGenerator::add_options(CLI::App& sub) {
  LoadgenOptions& lg = options_;
  sub.add_option("--users", lg.users, "Users to create first")->capture_default_str();
  sub.add_option("--transactions", lg.transactions, "Bank operations to run")
      ->capture_default_str();
  sub.add_option("--rate", lg.rate, "Operations per second (0: as fast as possible)")
      ->capture_default_str();
  sub.add_option("--transfer-share", lg.transfer_share)->capture_default_str();
  sub.add_option("--update-share", lg.update_share)->capture_default_str();
  sub.add_option("--delete-share", lg.delete_share)->capture_default_str();
  sub.add_option("--currencies", lg.currencies)->delimiter(',')->capture_default_str();
  sub.add_option("--seed", lg.seed, "Random seed (0: random)")->capture_default_str();
  sub.add_option("--ops-per-commit", lg.ops_per_commit, "Operations per PostgreSQL transaction")
      ->capture_default_str();
  sub.add_flag("--reuse", lg.reuse_existing, "Use existing users and accounts");
}

std::string BankLoadGenerator::run(const LoadTarget& target) {
  LoadgenOptions o = options_;
  o.pg_dsn = target.pg;
  o.tables = target.tables;
  o.progress = target.progress;
  const LoadgenStats st = run_loadgen(o);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f", st.seconds);
  return std::to_string(st.users) + " users, " + std::to_string(st.accounts) + " accounts, " +
         std::to_string(st.deposits) + " deposits, " + std::to_string(st.withdrawals) +
         " withdrawals, " + std::to_string(st.transfers) + " transfers, " +
         std::to_string(st.updates) + " updates, " + std::to_string(st.deletes) + " deletes in " +
         seconds + " s";
}

}  // namespace walfold::projections::bank
