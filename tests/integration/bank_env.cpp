#include "tests/integration/bank_env.h"

#include <stdexcept>

#include "common/decimal.h"
#include "projections/mongo.h"

namespace walfold::test {
namespace {

std::string decimal_text(const bson_iter_t& it) {
  if (!BSON_ITER_HOLDS_DECIMAL128(&it)) throw std::runtime_error("money field is not Decimal128");
  bson_decimal128_t d;
  bson_iter_decimal128(&it, &d);
  char buf[BSON_DECIMAL128_STRING];
  bson_decimal128_to_string(&d, buf);
  auto c = Decimal::canonicalize(buf);
  if (!c) throw std::runtime_error(std::string("not a finite decimal: ") + buf);
  return *c;
}

template <typename Fn>
void for_each_doc(const std::string& uri, const std::string& db, const char* coll, Fn fn) {
  projections::mongo_global_init();
  mongoc_client_t* client = mongoc_client_new(uri.c_str());
  if (!client) throw std::runtime_error("bad mongo uri " + uri);
  mongoc_collection_t* c = mongoc_client_get_collection(client, db.c_str(), coll);
  bson_t filter = BSON_INITIALIZER;
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(c, &filter, nullptr, nullptr);
  const bson_t* doc;
  while (mongoc_cursor_next(cur, &doc)) fn(doc);
  bson_error_t err;
  bool failed = mongoc_cursor_error(cur, &err);
  mongoc_cursor_destroy(cur);
  mongoc_collection_destroy(c);
  mongoc_client_destroy(client);
  bson_destroy(&filter);
  if (failed) throw std::runtime_error(std::string("mongo read failed: ") + err.message);
}

}  // namespace

std::map<std::int64_t, MongoAccount> read_mongo_accounts(const std::string& uri,
                                                         const std::string& db) {
  std::map<std::int64_t, MongoAccount> out;
  for_each_doc(uri, db, "accounts", [&](const bson_t* doc) {
    bson_iter_t it;
    std::int64_t id = 0;
    bool deleted = false;
    MongoAccount a;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
      std::string k = bson_iter_key(&it);
      if (k == "_id") id = bson_iter_as_int64(&it);
      if (k == "deleted") deleted = bson_iter_as_bool(&it);
      if (k == "user_id") a.user_id = bson_iter_as_int64(&it);
      if (k == "balance") a.balance = decimal_text(it);
      if (k == "last_transactions") {
        bson_iter_t arr;
        bson_iter_recurse(&it, &arr);
        while (bson_iter_next(&arr)) {
          bson_iter_t e;
          bson_iter_recurse(&arr, &e);
          if (bson_iter_find(&e, "id")) a.last_ids.push_back(bson_iter_as_int64(&e));
        }
      }
    }
    if (!deleted) out[id] = a;
  });
  return out;
}

std::map<std::int64_t, std::map<std::string, std::string>> read_mongo_user_totals(
    const std::string& uri, const std::string& db) {
  std::map<std::int64_t, std::map<std::string, std::string>> out;
  for_each_doc(uri, db, "users", [&](const bson_t* doc) {
    bson_iter_t it;
    std::int64_t id = 0;
    bool deleted = false;
    std::map<std::string, std::string> totals;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
      std::string k = bson_iter_key(&it);
      if (k == "_id") id = bson_iter_as_int64(&it);
      if (k == "deleted") deleted = bson_iter_as_bool(&it);
      if (k == "balances") {
        bson_iter_t b;
        bson_iter_recurse(&it, &b);
        while (bson_iter_next(&b)) totals[bson_iter_key(&b)] = decimal_text(b);
      }
    }
    if (!deleted) out[id] = totals;
  });
  return out;
}

}  // namespace walfold::test
