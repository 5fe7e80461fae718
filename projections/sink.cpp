#include "projections/sink.h"

#include <string>

#include "common/error.h"

namespace walfold::projections {
MongoSink::MongoSink(MongoPool& pool) : pool_(pool), client_(pool) {}

std::map<std::int64_t, AccountSnapshot> MongoSink::read_accounts(
    const std::vector<std::int64_t>& ids) {
  std::map<std::int64_t, AccountSnapshot> out;
  if (ids.empty()) return out;
  Collection coll(client_.collection("accounts"));
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
  for (const char* f : {"user_id", "currency", "balance", "applied_lsn", "deleted"})
    BSON_APPEND_INT32(&proj, f, 1);
  bson_append_document_end(opts.get(), &proj);
  mongoc_cursor_t* cur =
      mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  ++stats_.read_commands;
  const bson_t* doc;
  while (mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    AccountSnapshot s;
    std::int64_t id = 0;
    if (!bson_iter_init(&it, doc)) continue;
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
        bson_decimal128_t d;
        bson_iter_decimal128(&it, &d);
        char buf[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&d, buf);
        auto canon = Decimal::canonicalize(buf);
        auto parsed = canon ? Decimal::parse(*canon) : std::nullopt;
        if (!parsed)
          throw DataError("accounts document " + std::to_string(id) + " holds balance " + buf +
                          ", which is not a finite decimal");
        s.balance = *parsed;
      }
    }
    // A document created only by an "ensure" has no owner yet; treat it as unknown.
    s.exists = !s.currency.empty() || s.deleted;
    out[id] = s;
  }
  bson_error_t err;
  bool failed = mongoc_cursor_error(cur, &err);
  mongoc_cursor_destroy(cur);
  if (failed) {
    std::string msg = "mongodb at " + pool_.address() + ": reading accounts failed: " + err.message;
    if (is_connection_error(err)) throw UnavailableError(msg);
    throw std::runtime_error(msg);
  }
  return out;
}

void MongoSink::bulk(const char* collection, std::vector<Statement>& statements) {
  if (statements.empty()) return;
  bulk_write(pool_, client_, collection, statements, /*ordered=*/true);
  ++stats_.write_commands;
  stats_.statements += statements.size();
}

void MongoSink::recompute_window(std::int64_t account_id, Lsn lsn, std::vector<Statement>& out) {
  Collection coll(client_.collection("transactions"));
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
  mongoc_cursor_t* cur =
      mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  ++stats_.read_commands;
  auto set = make_bson();
  bson_t arr;
  bson_append_array_begin(set.get(), "last_transactions", -1, &arr);
  int taken = 0;
  const bson_t* doc;
  const std::string left_key = std::to_string(account_id);
  while (taken < 3 && mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    std::int64_t applied = 0, left = -1, id = 0, us = 0, date = 0;
    const bson_value_t* amount = nullptr;
    std::string kind;
    if (!bson_iter_init(&it, doc)) continue;
    while (bson_iter_next(&it)) {
      std::string_view k = bson_iter_key(&it);
      if (k == "_id")
        id = get_int64(it);
      else if (k == "applied_lsn")
        applied = get_int64(it);
      else if (k == "created_at_us")
        us = get_int64(it);
      else if (k == "created_at" && BSON_ITER_HOLDS_DATE_TIME(&it))
        date = bson_iter_date_time(&it);
      else if (k == "kind" && BSON_ITER_HOLDS_UTF8(&it))
        kind = bson_iter_utf8(&it, nullptr);
      else if (k == "amount")
        amount = bson_iter_value(&it);
      else if (k == "left" && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t sub;
        if (bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, left_key.c_str()))
          left = get_int64(sub);
      }
    }
    // Moved out of this account after the write that put it here (the destination's job
    // has not rewritten it yet): not in this account any more.
    if (left > applied) continue;
    bson_t e;
    std::string idx = std::to_string(taken++);
    bson_append_document_begin(&arr, idx.c_str(), -1, &e);
    BSON_APPEND_INT64(&e, "id", id);
    BSON_APPEND_UTF8(&e, "kind", kind.c_str());
    if (amount) bson_append_value(&e, "amount", -1, amount);
    BSON_APPEND_DATE_TIME(&e, "created_at", date);
    BSON_APPEND_INT64(&e, "created_at_us", us);
    bson_append_document_end(&arr, &e);
  }
  bson_error_t err;
  bool failed = mongoc_cursor_error(cur, &err);
  mongoc_cursor_destroy(cur);
  if (failed) {
    std::string msg =
        "mongodb at " + pool_.address() + ": reading transactions failed: " + err.message;
    if (is_connection_error(err)) throw UnavailableError(msg);
    throw std::runtime_error(msg);
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
  bulk("accounts", plan.accounts);
  if (plan.dirty_windows.empty()) return;
  std::vector<Statement> windows;
  for (const auto& [id, lsn] : plan.dirty_windows) recompute_window(id, lsn, windows);
  bulk("accounts", windows);
}

void MongoSink::ensure_indexes() {
  Collection coll(client_.collection("transactions"));
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
  bson_t reply;
  bool ok = mongoc_collection_write_command_with_opts(coll.get(), cmd.get(), nullptr, &reply, &err);
  bson_destroy(&reply);
  if (!ok) {
    std::string msg = "mongodb at " + pool_.address() + ": creating indexes failed: " + err.message;
    if (is_connection_error(err)) throw UnavailableError(msg);
    throw std::runtime_error(msg);
  }
}

}  // namespace walfold::projections
