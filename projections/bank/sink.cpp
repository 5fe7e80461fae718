#include "projections/bank/sink.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/error.h"
#include "projections/bank/schema.h"

namespace walfold::projections {
MongoSink::MongoSink(MongoPool& pool) : pool_(pool), client_(pool) {}

namespace {

using mongo::Cursor;

// Decimal128 -> Decimal, keeping the stored scale where the text shows it ("100.5000").
std::optional<Decimal> read_decimal(const bson_iter_t& it) {
  if (!BSON_ITER_HOLDS_DECIMAL128(&it)) return std::nullopt;
  bson_decimal128_t d;
  bson_iter_decimal128(&it, &d);
  char buf[BSON_DECIMAL128_STRING];
  bson_decimal128_to_string(&d, buf);
  if (auto exact = Decimal::parse(buf)) return exact;
  auto canon = Decimal::canonicalize(buf);
  return canon ? Decimal::parse(*canon) : std::nullopt;
}

// What the window recompute reads of one transactions document (nullopt: unreadable).
// `amount` is an iterator positioned on the field: it reads the document's bytes, which stay
// valid until the cursor moves on (a bson_value_t from bson_iter_value would point into the
// iterator itself, gone when this function returns).
struct WindowEntry {
  std::int64_t applied = 0, left = -1, id = 0, us = 0, date = 0;
  std::optional<bson_iter_t> amount;
  std::string kind;
};
std::optional<WindowEntry> window_entry(const bson_t* doc, std::int64_t account_id) {
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return std::nullopt;
  WindowEntry e;
  const std::string left_key = std::to_string(account_id);
  while (bson_iter_next(&it)) {
    std::string_view k = bson_iter_key(&it);
    if (k == "_id")
      e.id = get_int64(it);
    else if (k == "applied_lsn")
      e.applied = get_int64(it);
    else if (k == "created_at_us")
      e.us = get_int64(it);
    else if (k == "created_at" && BSON_ITER_HOLDS_DATE_TIME(&it))
      e.date = bson_iter_date_time(&it);
    else if (k == "kind" && BSON_ITER_HOLDS_UTF8(&it))
      e.kind = bson_iter_utf8(&it, nullptr);
    else if (k == "amount")
      e.amount = it;
    else if (k == "left" && BSON_ITER_HOLDS_DOCUMENT(&it)) {
      bson_iter_t sub;
      if (bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, left_key.c_str()))
        e.left = get_int64(sub);
    }
  }
  return e;
}

}  // namespace

void MongoSink::for_each_by_id(const char* collection, const std::vector<std::int64_t>& ids,
                               std::initializer_list<const char*> fields,
                               const std::function<void(bson_iter_t&)>& fn) {
  if (ids.empty()) return;
  Collection coll = client_.collection(collection);
  auto filter = make_bson();
  bson_t idd, in;
  bson_append_document_begin(filter.get(), "_id", -1, &idd);
  bson_append_array_begin(&idd, "$in", -1, &in);
  for (std::size_t i = 0; i < ids.size(); ++i)
    BSON_APPEND_INT64(&in, std::to_string(i).c_str(), ids[i]);
  bson_append_array_end(&idd, &in);
  bson_append_document_end(filter.get(), &idd);
  auto opts = make_bson();
  bson_t proj;
  bson_append_document_begin(opts.get(), "projection", -1, &proj);
  for (const char* f : fields) BSON_APPEND_INT32(&proj, f, 1);
  bson_append_document_end(opts.get(), &proj);
  Cursor cur(mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr));
  ++stats_.read_commands;
  const bson_t* doc;
  while (mongoc_cursor_next(cur.get(), &doc)) {
    bson_iter_t it;
    if (bson_iter_init(&it, doc)) fn(it);
  }
  bson_error_t err;
  if (mongoc_cursor_error(cur.get(), &err)) {
    std::string msg =
        "mongodb at " + pool_.address() + ": reading " + collection + " failed: " + err.message;
    if (is_connection_error(err)) throw UnavailableError(msg);
    throw TransientError(msg);  // a read the server failed: retried
  }
}

std::map<std::int64_t, AccountSnapshot> MongoSink::read_accounts(
    const std::vector<std::int64_t>& ids) {
  std::map<std::int64_t, AccountSnapshot> out;
  for_each_by_id("accounts", ids, {"user_id", "currency", "balance", "applied_lsn", "deleted"},
                 [&](bson_iter_t& it) {
                   AccountSnapshot s;
                   std::int64_t id = 0;
                   while (bson_iter_next(&it)) {
                     std::string_view k = bson_iter_key(&it);
                     if (k == "_id")
                       id = get_int64(it);
                     else if (k == "user_id")
                       s.user_id = get_int64(it);
                     else if (k == "applied_lsn")
                       s.applied_lsn = static_cast<Lsn>(get_int64(it));
                     else if (k == "deleted")
                       s.deleted = bson_iter_as_bool(&it);
                     else if (k == "currency" && BSON_ITER_HOLDS_UTF8(&it))
                       s.currency = bson_iter_utf8(&it, nullptr);
                     else if (k == "balance" && BSON_ITER_HOLDS_DECIMAL128(&it)) {
                       auto parsed = read_decimal(it);
                       if (!parsed)
                         throw DataError("accounts document " + std::to_string(id) +
                                         " holds a balance that is not a finite decimal");
                       s.balance = *parsed;
                     }
                   }
                   // A document created only by an "ensure" has no owner yet; treat it as unknown.
                   s.exists = !s.currency.empty() || s.deleted;
                   out[id] = s;
                 });
  return out;
}

std::map<std::int64_t, UserSnapshot> MongoSink::read_users(const std::vector<std::int64_t>& ids) {
  std::map<std::int64_t, UserSnapshot> out;
  for_each_by_id("users", ids, {"balances", "acct_lsn", "floor_lsn"}, [&](bson_iter_t& it) {
    UserSnapshot u;
    std::int64_t id = 0;
    while (bson_iter_next(&it)) {
      std::string_view k = bson_iter_key(&it);
      bson_iter_t sub;
      if (k == "_id") {
        id = get_int64(it);
      } else if (k == "floor_lsn") {
        u.floor_lsn = static_cast<Lsn>(get_int64(it));
      } else if (k == "balances" && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub)) {
        while (bson_iter_next(&sub)) {
          auto d = read_decimal(sub);
          if (!d)
            throw DataError("users document " + std::to_string(id) + " holds a total in " +
                            bson_iter_key(&sub) + " that is not a finite Decimal128");
          u.balances[bson_iter_key(&sub)] = *d;
        }
      } else if (k == "acct_lsn" && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub)) {
        while (bson_iter_next(&sub))
          u.acct_lsn[std::strtoll(bson_iter_key(&sub), nullptr, 10)] =
              static_cast<Lsn>(get_int64(sub));
      }
    }
    out[id] = std::move(u);
  });
  return out;
}

void MongoSink::check_totals(const WritePlan& plan) {
  if (plan.total_checks.empty()) return;
  std::vector<std::int64_t> ids;
  for (const auto& c : plan.total_checks) ids.push_back(c.user_id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  auto now = read_users(ids);
  for (const auto& c : plan.total_checks) {
    const auto& u = now[c.user_id];
    auto g = u.acct_lsn.find(c.account_id);
    if ((g != u.acct_lsn.end() && g->second >= c.lsn) || u.floor_lsn >= c.lsn) continue;
    throw DataError("user " + std::to_string(c.user_id) + ": adding " + c.currencies +
                    " (account " + std::to_string(c.account_id) + ", commit LSN " +
                    format_lsn(c.lsn) +
                    ") to the user's total would need more than 34 significant digits, which "
                    "Decimal128 would round; refused");
  }
}

void MongoSink::bulk(const char* collection, std::vector<Statement>& statements) {
  if (statements.empty()) return;
  bulk_write(pool_, client_, collection, statements, /*ordered=*/true);
  ++stats_.write_commands;
  stats_.statements += statements.size();
}

void MongoSink::recompute_window(std::int64_t account_id, Lsn lsn, std::vector<Statement>& out) {
  Collection coll = client_.collection("transactions");
  auto filter = make_bson();
  BSON_APPEND_INT64(filter.get(), "account_id", account_id);
  BSON_APPEND_BOOL(filter.get(), "deleted", false);
  // Only what jobs up to `lsn` wrote: a later job of this account whose transactions document
  // is written but whose account update is not yet (another worker, after our lease expired)
  // must not enter the window twice.
  append_lsn_not(filter.get(), "applied_lsn", "$gt", lsn);
  auto opts = make_bson();
  bson_t sort;
  bson_append_document_begin(opts.get(), "sort", -1, &sort);
  BSON_APPEND_INT32(&sort, "created_at_us", -1);
  BSON_APPEND_INT32(&sort, "_id", -1);
  bson_append_document_end(opts.get(), &sort);
  BSON_APPEND_INT32(opts.get(), "batchSize", 8);
  Cursor cursor(mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr));
  mongoc_cursor_t* cur = cursor.get();
  ++stats_.read_commands;
  auto set = make_bson();
  bson_t arr;
  bson_append_array_begin(set.get(), "last_transactions", -1, &arr);
  int taken = 0;
  const bson_t* doc;
  while (taken < bank::kLastTransactions && mongoc_cursor_next(cur, &doc)) {
    auto e = window_entry(doc, account_id);
    // Moved out of this account after the write that put it here (the destination's job
    // has not rewritten it yet): not in this account any more.
    if (!e || e->left > e->applied) continue;
    bson_t d;
    std::string idx = std::to_string(taken++);
    bson_append_document_begin(&arr, idx.c_str(), -1, &d);
    BSON_APPEND_INT64(&d, "id", e->id);
    BSON_APPEND_UTF8(&d, "kind", e->kind.c_str());
    if (e->amount) bson_append_iter(&d, "amount", -1, &*e->amount);
    BSON_APPEND_DATE_TIME(&d, "created_at", e->date);
    BSON_APPEND_INT64(&d, "created_at_us", e->us);
    bson_append_document_end(&arr, &d);
  }
  bson_error_t err;
  if (mongoc_cursor_error(cur, &err)) {
    std::string msg =
        "mongodb at " + pool_.address() + ": reading transactions failed: " + err.message;
    if (is_connection_error(err)) throw UnavailableError(msg);
    throw TransientError(msg);  // a read the server failed: retried
  }
  bson_append_array_end(set.get(), &arr);
  BSON_APPEND_INT64(set.get(), "window_lsn", static_cast<std::int64_t>(lsn));
  Statement s;
  s.filter = make_bson();
  BSON_APPEND_INT64(s.filter.get(), "_id", account_id);
  // Not when the window was recomputed later, nor when the account already holds a later job
  // (whose own fold keeps the window: a late recompute from an expired lease would undo it).
  append_lsn_not(s.filter.get(), "window_lsn", "$gt", lsn);
  append_lsn_not(s.filter.get(), "applied_lsn", "$gt", lsn);
  s.update = make_bson();
  BSON_APPEND_DOCUMENT(s.update.get(), "$set", set.get());
  out.push_back(std::move(s));
}

void MongoSink::write(WritePlan& plan) {
  bulk("transactions", plan.transactions);
  bulk("users", plan.users);
  check_totals(plan);  // before the accounts bulk, which marks the job as folded
  bulk("accounts", plan.accounts);
  if (plan.dirty_windows.empty()) return;
  std::vector<Statement> windows;
  for (const auto& [id, lsn] : plan.dirty_windows) recompute_window(id, lsn, windows);
  bulk("accounts", windows);
}

void MongoSink::ensure_indexes() {
  Collection coll = client_.collection("transactions");
  auto keys = make_bson();
  BSON_APPEND_INT32(keys.get(), "account_id", 1);
  BSON_APPEND_INT32(keys.get(), "created_at_us", -1);
  BSON_APPEND_INT32(keys.get(), "_id", -1);
  auto cmd = make_bson();
  BSON_APPEND_UTF8(cmd.get(), "createIndexes", "transactions");
  bson_t idxs, idx;
  bson_append_array_begin(cmd.get(), "indexes", -1, &idxs);
  bson_append_document_begin(&idxs, "0", -1, &idx);
  BSON_APPEND_DOCUMENT(&idx, "key", keys.get());
  BSON_APPEND_UTF8(&idx, "name", "account_newest");
  bson_append_document_end(&idxs, &idx);
  bson_append_array_end(cmd.get(), &idxs);
  bson_error_t err;
  StackBson reply;
  bool ok =
      mongoc_collection_write_command_with_opts(coll.get(), cmd.get(), nullptr, reply.get(), &err);
  if (!ok) {
    std::string msg = "mongodb at " + pool_.address() + ": creating indexes failed: " + err.message;
    if (is_connection_error(err)) throw UnavailableError(msg);
    throw TransientError(msg);  // a read the server failed: retried
  }
}

}  // namespace walfold::projections
