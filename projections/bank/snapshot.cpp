#include "projections/bank/snapshot.h"

#include <sstream>

#include "common/error.h"
#include "common/timestamp.h"
#include "projections/bank/read_model.h"
#include "projections/bank/schema.h"
#include "projections/bank/sink.h"

namespace walfold::projections::bank {
namespace {

// Microseconds since the epoch, exactly (EXTRACT returns numeric).
std::string us(const std::string& column) {
  return "(EXTRACT(EPOCH FROM " + column + ") * 1000000)::bigint";
}

std::int64_t to_int(PGresult* r, int row, int col) {
  return std::stoll(PQgetvalue(r, row, col));
}

Decimal to_decimal(PGresult* r, int row, int col, const char* what) {
  std::string_view text = PQgetvalue(r, row, col);
  auto d = Decimal::parse(text);
  if (!d)
    throw DataError(std::string(what) + " '" + std::string(text) +
                    "' is not a finite decimal of at most 34 digits");
  return *d;
}

void append_date(bson_t* d, const char* key, std::int64_t us) {
  BSON_APPEND_DATE_TIME(d, key, floor_ms(us));
}

}  // namespace

void TruthReader::stream(const std::string& sql, const std::function<void(PGresult*, int)>& row) {
  const std::string cursor = "wf_truth_" + std::to_string(++cursors_);
  pg_.conn.exec("DECLARE " + cursor + " NO SCROLL CURSOR FOR " + sql);
  while (true) {
    auto r = pg_.conn.exec("FETCH 2000 FROM " + cursor);
    const int n = PQntuples(r.get());
    for (int i = 0; i < n; ++i) row(r.get(), i);
    if (n == 0) break;
  }
  pg_.conn.exec("CLOSE " + cursor);
}

namespace {
const char* kSignedAmount =
    "CASE kind WHEN 'deposit' THEN amount WHEN 'withdrawal' THEN -amount ELSE NULL END";
}

void TruthReader::accounts(const std::function<void(AccountTruth&&)>& each) {
  const std::string tx = pg_.tables.qualified("transactions");
  const std::string sql =
      "WITH bal AS (SELECT account_id, SUM(" + std::string(kSignedAmount) +
      ") AS balance, bool_or(kind NOT IN ('deposit', 'withdrawal')) AS bad FROM " + tx +
      " GROUP BY account_id), "
      "newest AS (SELECT account_id, string_agg(id || ' ' || kind || ' ' || amount::text || ' ' "
      "|| us, ',' ORDER BY rn) AS last FROM (SELECT account_id, id, kind, amount, " +
      us("created_at") +
      " AS us, row_number() OVER (PARTITION BY account_id ORDER BY created_at DESC, id DESC) AS "
      "rn FROM " +
      tx + ") w WHERE rn <= " + std::to_string(kLastTransactions) +
      " GROUP BY account_id) "
      "SELECT a.id, a.user_id, a.currency::text, " +
      us("a.created_at") +
      ", COALESCE(b.balance, 0)::text, COALESCE(n.last, ''), COALESCE(b.bad, false) FROM " +
      pg_.tables.qualified("accounts") +
      " a LEFT JOIN bal b ON b.account_id = a.id LEFT JOIN newest n ON n.account_id = a.id" +
      " ORDER BY a.id";
  stream(sql, [&](PGresult* r, int i) {
    AccountTruth a;
    a.id = to_int(r, i, 0);
    a.user_id = to_int(r, i, 1);
    a.currency = PQgetvalue(r, i, 2);
    a.created_at_us = to_int(r, i, 3);
    if (std::string_view(PQgetvalue(r, i, 6)) == "t")
      throw DataError("account " + std::to_string(a.id) +
                      " has a transaction whose kind is neither deposit nor withdrawal");
    a.balance = to_decimal(r, i, 4, "balance");
    std::istringstream last(PQgetvalue(r, i, 5));
    std::string entry;
    while (std::getline(last, entry, ',')) {
      std::istringstream f(entry);
      TxTruth t;
      std::string amount;
      f >> t.id >> t.kind >> amount >> t.created_at_us;
      auto d = Decimal::parse(amount);
      if (!d)
        throw DataError("transaction " + std::to_string(t.id) + " amount '" + amount +
                        "' is not a finite decimal");
      t.amount = *d;
      t.account_id = a.id;
      a.last.push_back(std::move(t));
    }
    each(std::move(a));
  });
}

void TruthReader::users(const std::function<void(UserTruth&&)>& each) {
  const std::string sql =
      "WITH bal AS (SELECT account_id, SUM(" + std::string(kSignedAmount) + ") AS balance FROM " +
      pg_.tables.qualified("transactions") +
      " GROUP BY account_id) "
      "SELECT u.id, u.full_name, u.email, " +
      us("u.created_at") +
      ", COALESCE(string_agg(a.id || ' ' || a.currency::text || ' ' || COALESCE(b.balance, "
      "0)::text, ','), '') FROM " +
      pg_.tables.qualified("users") + " u LEFT JOIN " + pg_.tables.qualified("accounts") +
      " a ON a.user_id = u.id LEFT JOIN bal b ON b.account_id = a.id" +
      " GROUP BY u.id ORDER BY u.id";
  stream(sql, [&](PGresult* r, int i) {
    UserTruth u;
    u.id = to_int(r, i, 0);
    u.full_name = PQgetvalue(r, i, 1);
    u.email = PQgetvalue(r, i, 2);
    u.created_at_us = to_int(r, i, 3);
    std::istringstream accts(PQgetvalue(r, i, 4));
    std::string entry;
    while (std::getline(accts, entry, ',')) {
      std::istringstream f(entry);
      std::int64_t id = 0;
      std::string cur, bal;
      f >> id >> cur >> bal;
      auto d = Decimal::parse(bal);
      if (!d) throw DataError("account " + std::to_string(id) + " balance is not finite");
      u.accounts.push_back(id);
      auto sum = u.balances[cur].plus(*d);
      if (!sum)
        throw DataError("user " + std::to_string(u.id) + " total in " + cur +
                        " overflows 34 digits");
      u.balances[cur] = *sum;
      ++u.counts[cur];
    }
    each(std::move(u));
  });
}

void TruthReader::transactions(const std::function<void(TxTruth&&)>& each) {
  // transfer_id is optional: the stream maps columns by name and tolerates it being dropped,
  // and so does the snapshot (every transfer_id is then null).
  const std::string table = pg_.tables.qualified("transactions");
  auto has = pg_.conn.exec_params(
      "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = "
      "'transfer_id' AND attnum > 0 AND NOT attisdropped",
      {table});
  const bool transfer_id = std::string(PQgetvalue(has.get(), 0, 0)) == "1";
  const std::string sql = "SELECT id, account_id, kind, amount::text, " + us("created_at") +
                          (transfer_id ? ", transfer_id::text" : ", NULL::text") + " FROM " +
                          table + " ORDER BY id";
  stream(sql, [&](PGresult* r, int i) {
    TxTruth t;
    t.id = to_int(r, i, 0);
    t.account_id = to_int(r, i, 1);
    t.kind = PQgetvalue(r, i, 2);
    t.amount = to_decimal(r, i, 3, "amount");
    t.created_at_us = to_int(r, i, 4);
    if (!PQgetisnull(r, i, 5)) t.transfer_id = PQgetvalue(r, i, 5);
    each(std::move(t));
  });
}

Bson account_document(const AccountTruth& a, Lsn guard) {
  auto d = make_bson();
  bson_t* b = d.get();
  BSON_APPEND_INT64(b, "_id", a.id);
  BSON_APPEND_INT64(b, "user_id", a.user_id);
  BSON_APPEND_UTF8(b, "currency", a.currency.c_str());
  append_date(b, "created_at", a.created_at_us);
  append_decimal(b, "balance", a.balance);
  bson_t arr;
  bson_append_array_begin(b, "last_transactions", -1, &arr);
  for (std::size_t i = 0; i < a.last.size(); ++i) {
    const auto& t = a.last[i];
    bson_t e;
    bson_append_document_begin(&arr, std::to_string(i).c_str(), -1, &e);
    BSON_APPEND_INT64(&e, "id", t.id);
    BSON_APPEND_UTF8(&e, "kind", t.kind.c_str());
    append_decimal(&e, "amount", t.amount);
    append_date(&e, "created_at", t.created_at_us);
    BSON_APPEND_INT64(&e, "created_at_us", t.created_at_us);
    bson_append_document_end(&arr, &e);
  }
  bson_append_array_end(b, &arr);
  BSON_APPEND_BOOL(b, "deleted", false);
  BSON_APPEND_INT64(b, "applied_lsn", static_cast<std::int64_t>(guard));
  BSON_APPEND_INT64(b, "window_lsn", static_cast<std::int64_t>(guard));
  return d;
}

Bson user_document(const UserTruth& u, Lsn guard) {
  auto d = make_bson();
  bson_t* b = d.get();
  BSON_APPEND_INT64(b, "_id", u.id);
  BSON_APPEND_UTF8(b, "full_name", u.full_name.c_str());
  BSON_APPEND_UTF8(b, "email", u.email.c_str());
  append_date(b, "created_at", u.created_at_us);
  bson_t arr, bal, cnt, lsns;
  bson_append_array_begin(b, "accounts", -1, &arr);
  for (std::size_t i = 0; i < u.accounts.size(); ++i)
    BSON_APPEND_INT64(&arr, std::to_string(i).c_str(), u.accounts[i]);
  bson_append_array_end(b, &arr);
  bson_append_document_begin(b, "balances", -1, &bal);
  for (const auto& [cur, v] : u.balances) append_decimal(&bal, cur.c_str(), v);
  bson_append_document_end(b, &bal);
  bson_append_document_begin(b, "account_count", -1, &cnt);
  for (const auto& [cur, n] : u.counts) BSON_APPEND_INT32(&cnt, cur.c_str(), n);
  bson_append_document_end(b, &cnt);
  BSON_APPEND_BOOL(b, "deleted", false);
  BSON_APPEND_INT64(b, "profile_lsn", static_cast<std::int64_t>(guard));
  bson_append_document_begin(b, "acct_lsn", -1, &lsns);
  for (auto id : u.accounts)
    BSON_APPEND_INT64(&lsns, std::to_string(id).c_str(), static_cast<std::int64_t>(guard));
  bson_append_document_end(b, &lsns);
  BSON_APPEND_INT64(b, "floor_lsn", static_cast<std::int64_t>(guard));
  return d;
}

Bson transaction_document(const TxTruth& t, Lsn guard) {
  auto d = make_bson();
  bson_t* b = d.get();
  BSON_APPEND_INT64(b, "_id", t.id);
  BSON_APPEND_INT64(b, "account_id", t.account_id);
  BSON_APPEND_UTF8(b, "kind", t.kind.c_str());
  append_decimal(b, "amount", t.amount);
  append_date(b, "created_at", t.created_at_us);
  BSON_APPEND_INT64(b, "created_at_us", t.created_at_us);
  if (t.transfer_id)
    BSON_APPEND_UTF8(b, "transfer_id", t.transfer_id->c_str());
  else
    BSON_APPEND_NULL(b, "transfer_id");
  BSON_APPEND_BOOL(b, "deleted", false);
  BSON_APPEND_INT64(b, "applied_lsn", static_cast<std::int64_t>(guard));
  bson_t left;
  bson_append_document_begin(b, "left", -1, &left);
  bson_append_document_end(b, &left);
  return d;
}

namespace {

// Buffers replacement upserts and sends them unordered, 1000 at a time.
class Loader {
 public:
  Loader(MongoPool& pool, const char* collection, std::atomic<std::uint64_t>* written)
      : pool_(pool), client_(pool), collection_(collection), written_(written) {}
  void put(std::int64_t id, Bson doc) {
    Statement s;
    s.filter = make_bson();
    BSON_APPEND_INT64(s.filter.get(), "_id", id);
    s.update = std::move(doc);
    s.upsert = true;
    s.replace = true;
    batch_.push_back(std::move(s));
    ++count_;
    if (batch_.size() >= 1000) flush();
  }
  void flush() {
    bulk_write(pool_, client_, collection_, batch_, /*ordered=*/false);
    if (written_) *written_ += batch_.size();
    batch_.clear();
  }
  // Documents the snapshot did not write (their guard is below it) become tombstones.
  std::size_t tombstone_rest(const char* guard_field, Lsn guard, const Bson& extra_set) {
    flush();
    Collection coll(client_.collection(collection_));
    auto filter = make_bson();
    append_lsn_not(filter.get(), guard_field, "$gte", guard);
    auto update = make_bson();
    bson_t set;
    bson_append_document_begin(update.get(), "$set", -1, &set);
    BSON_APPEND_BOOL(&set, "deleted", true);
    BSON_APPEND_INT64(&set, guard_field, static_cast<std::int64_t>(guard));
    bson_concat(&set, extra_set.get());
    bson_append_document_end(update.get(), &set);
    StackBson reply;
    bson_error_t err;
    bool ok = mongoc_collection_update_many(coll.get(), filter.get(), update.get(), nullptr,
                                            reply.get(), &err);
    std::size_t n_mod = 0;
    bson_iter_t it;
    if (ok && bson_iter_init_find(&it, reply.get(), "modifiedCount"))
      n_mod = static_cast<std::size_t>(get_int64(it));
    if (!ok) throw_mongo_error(pool_, std::string("tombstoning ") + collection_, err);
    return n_mod;
  }
  std::size_t count() const { return count_; }

 private:
  MongoPool& pool_;
  MongoPool::Client client_;
  const char* collection_;
  std::atomic<std::uint64_t>* written_;
  std::vector<Statement> batch_;
  std::size_t count_ = 0;
};

}  // namespace

void BankSnapshotLoad::prepare(MongoPool& pool) const {
  MongoSink(pool).ensure_indexes();
}

LoadStats BankSnapshotLoad::load(PgRead& pg, MongoPool& pool, Lsn guard,
                                 std::atomic<std::uint64_t>* written) const {
  TruthReader truth(pg);
  LoadStats st;
  // transactions first, accounts last: the same order as a worker's bulk writes.
  Loader txs(pool, "transactions", written);
  truth.transactions([&](TxTruth&& t) { txs.put(t.id, transaction_document(t, guard)); });
  st.documents.emplace_back("transactions", txs.count());
  st.tombstoned += txs.tombstone_rest("applied_lsn", guard, make_bson());

  Loader users(pool, "users", written);
  truth.users([&](UserTruth&& u) { users.put(u.id, user_document(u, guard)); });
  st.documents.emplace_back("users", users.count());
  {
    auto extra = make_bson();
    BSON_APPEND_INT64(extra.get(), "floor_lsn", static_cast<std::int64_t>(guard));
    bson_t empty;
    bson_append_array_begin(extra.get(), "accounts", -1, &empty);
    bson_append_array_end(extra.get(), &empty);
    bson_append_document_begin(extra.get(), "balances", -1, &empty);
    bson_append_document_end(extra.get(), &empty);
    bson_append_document_begin(extra.get(), "account_count", -1, &empty);
    bson_append_document_end(extra.get(), &empty);
    st.tombstoned += users.tombstone_rest("profile_lsn", guard, extra);
  }

  Loader accounts(pool, "accounts", written);
  truth.accounts([&](AccountTruth&& a) { accounts.put(a.id, account_document(a, guard)); });
  st.documents.emplace_back("accounts", accounts.count());
  {
    auto extra = make_bson();
    BSON_APPEND_INT64(extra.get(), "window_lsn", static_cast<std::int64_t>(guard));
    st.tombstoned += accounts.tombstone_rest("applied_lsn", guard, extra);
  }
  return st;
}

}  // namespace walfold::projections::bank
