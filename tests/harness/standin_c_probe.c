/*
 * standin_c_probe.c - exercises the MongoDB stand-in through libmongoc (walfold's real client).
 *
 *   gcc -O1 -Wall -o standin_c_probe standin_c_probe.c $(pkg-config --cflags --libs libmongoc-1.0)
 *   ./standin_c_probe mongodb://127.0.0.1:PORT [STATEMENTS] [ACCOUNTS]
 *
 * Prints "PASS <check>" / "FAIL <check>: <why>" lines, a "THROUGHPUT <n> statements <s> seconds
 * <r> statements/s" line and "DOC <canonical extended JSON>" lines; exits 0 only if every check
 * passed.  Built and run by test_mongo_standin.py.
 */
#include <inttypes.h>
#include <mongoc/mongoc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0;

static void check(int ok, const char *name, const char *fmt, ...) {
  if (ok) {
    printf("PASS %s\n", name);
  } else {
    va_list ap;
    printf("FAIL %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    g_failures++;
  }
  fflush(stdout);
}

static int64_t reply_int(const bson_t *reply, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it)) {
    return bson_iter_as_int64(&it);
  }
  return -1;
}

static void print_doc(const char *tag, const bson_t *doc) {
  char *json = bson_as_canonical_extended_json(doc, NULL);
  printf("DOC %s %s\n", tag, json);
  fflush(stdout);
  bson_free(json);
}

/* Fetch one document by _id into *out (caller destroys). Returns 1 when found. */
static int find_by_id(mongoc_collection_t *coll, int64_t id, bson_t *out) {
  bson_t *filter = BCON_NEW("_id", BCON_INT64(id));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
  const bson_t *doc;
  int found = 0;
  if (mongoc_cursor_next(cur, &doc)) {
    bson_copy_to(doc, out);
    found = 1;
  }
  bson_error_t error;
  if (mongoc_cursor_error(cur, &error)) {
    printf("FAIL find_by_id: %s\n", error.message);
    g_failures++;
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  return found;
}

static int field_is(const bson_t *doc, const char *path, bson_type_t type) {
  bson_iter_t it, child;
  return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &child) &&
         bson_iter_type(&child) == type;
}

static int decimal_string_is(const bson_t *doc, const char *path, const char *want, char *got) {
  bson_iter_t it, child;
  bson_decimal128_t dec;
  got[0] = '\0';
  if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, path, &child) ||
      !BSON_ITER_HOLDS_DECIMAL128(&child)) {
    strcpy(got, "(not a decimal128)");
    return 0;
  }
  bson_iter_decimal128(&child, &dec);
  bson_decimal128_to_string(&dec, got);
  return strcmp(got, want) == 0;
}

static int64_t int64_at(const bson_t *doc, const char *path) {
  bson_iter_t it, child;
  if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &child) &&
      BSON_ITER_HOLDS_INT64(&child)) {
    return bson_iter_int64(&child);
  }
  return INT64_MIN;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s URI [STATEMENTS] [ACCOUNTS]\n", argv[0]);
    return 2;
  }
  const int64_t statements = argc > 2 ? atoll(argv[2]) : 20000;
  const int64_t accounts = argc > 3 ? atoll(argv[3]) : 1000;
  const int64_t per_account = statements / accounts;
  bson_error_t error;
  char buf[BSON_DECIMAL128_STRING];
  char want[64];

  mongoc_init();
  mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &error);
  if (!uri) {
    fprintf(stderr, "bad URI: %s\n", error.message);
    return 2;
  }
  mongoc_client_t *client = mongoc_client_new_from_uri(uri);
  mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
  mongoc_client_set_appname(client, "standin-c-probe");

  /* Handshake + ping. */
  bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
  bson_t reply;
  bool ok = mongoc_client_command_simple(client, "admin", ping, NULL, &reply, &error);
  check(ok, "ping", "%s", error.message);
  bson_destroy(&reply);
  bson_destroy(ping);

  bson_t *bi = BCON_NEW("buildInfo", BCON_INT32(1));
  ok = mongoc_client_command_simple(client, "admin", bi, NULL, &reply, &error);
  bson_iter_t it;
  check(ok && bson_iter_init_find(&it, &reply, "version") &&
            strcmp(bson_iter_utf8(&it, NULL), "6.0.0") == 0,
        "buildInfo", "%s", ok ? "wrong version" : error.message);
  bson_destroy(&reply);
  bson_destroy(bi);

  bson_t *dropdb = BCON_NEW("dropDatabase", BCON_INT32(1));
  ok = mongoc_client_command_simple(client, "c_probe", dropdb, NULL, &reply, &error);
  check(ok, "dropDatabase", "%s", error.message);
  bson_destroy(&reply);
  bson_destroy(dropdb);
  mongoc_collection_t *coll = mongoc_client_get_collection(client, "c_probe", "probe");

  /* 1. Bulk upsert, w:majority, Decimal128 $inc, int64 $max, $setOnInsert, $push/$sort/$slice. */
  bson_t *bulk_opts = BCON_NEW("ordered", BCON_BOOL(true), "writeConcern", "{", "w",
                               BCON_UTF8("majority"), "}");
  mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, bulk_opts);
  bson_decimal128_t inc_amount;
  bson_decimal128_from_string("100.5000", &inc_amount);
  bson_t *upsert_opts = BCON_NEW("upsert", BCON_BOOL(true));
  int64_t t0 = bson_get_monotonic_time();
  for (int64_t i = 0; i < statements; i++) {
    int64_t id = i % accounts;
    bson_t *sel = BCON_NEW("_id", BCON_INT64(id), "acct_lsn.17", "{", "$not", "{", "$gte",
                           BCON_INT64(i + 1), "}", "}");
    bson_t *upd = BCON_NEW(
        "$inc", "{", "balance", BCON_DECIMAL128(&inc_amount), "n", BCON_INT32(1), "}",
        "$max", "{", "lsn", BCON_INT64(i), "acct_lsn.17", BCON_INT64(i), "}",
        "$setOnInsert", "{", "created", BCON_DATE_TIME(1700000000123), "kind", BCON_UTF8("acct"), "}",
        "$push", "{", "recent", "{", "$each", "[", "{", "created_at_us", BCON_INT64(i), "id",
        BCON_INT32((int32_t)(i % 7)), "}", "]", "$sort", "{", "created_at_us", BCON_INT32(-1), "id",
        BCON_INT32(-1), "}", "$slice", BCON_INT32(5), "}", "}");
    if (!mongoc_bulk_operation_update_one_with_opts(bulk, sel, upd, upsert_opts, &error)) {
      check(0, "bulk_build", "%s", error.message);
    }
    bson_destroy(sel);
    bson_destroy(upd);
  }
  uint32_t server_id = mongoc_bulk_operation_execute(bulk, &reply, &error);
  int64_t t1 = bson_get_monotonic_time();
  check(server_id != 0, "bulk_upsert_execute", "%s", error.message);
  check(reply_int(&reply, "nUpserted") == accounts, "bulk_upsert_nUpserted", "got %" PRId64,
        reply_int(&reply, "nUpserted"));
  check(reply_int(&reply, "nMatched") == statements - accounts, "bulk_upsert_nMatched",
        "got %" PRId64, reply_int(&reply, "nMatched"));
  check(reply_int(&reply, "nModified") == statements - accounts, "bulk_upsert_nModified",
        "got %" PRId64, reply_int(&reply, "nModified"));
  double secs = (double)(t1 - t0) / 1e6;
  printf("THROUGHPUT %" PRId64 " statements %.3f seconds %.0f statements/s\n", statements, secs,
         secs > 0 ? (double)statements / secs : 0.0);
  fflush(stdout);
  bson_destroy(&reply);
  mongoc_bulk_operation_destroy(bulk);

  /* 2. Read back one account and check exact values and BSON types. */
  bson_t doc;
  int64_t probe_id = 7 % accounts;
  if (find_by_id(coll, probe_id, &doc)) {
    print_doc("account", &doc);
    /* balance = per_account * 100.5000 */
    snprintf(want, sizeof want, "%" PRId64 ".%04d", per_account * 100 + per_account / 2,
             (int)(per_account % 2 ? 5000 : 0));
    check(decimal_string_is(&doc, "balance", want, buf), "decimal_inc_exact", "want %s got %s", want,
          buf);
    int64_t last_i = (per_account - 1) * accounts + probe_id;
    check(field_is(&doc, "lsn", BSON_TYPE_INT64) && int64_at(&doc, "lsn") == last_i,
          "int64_max_type", "lsn %" PRId64 " want %" PRId64, int64_at(&doc, "lsn"), last_i);
    check(field_is(&doc, "acct_lsn.17", BSON_TYPE_INT64), "digit_key_subdoc",
          "acct_lsn.17 missing or not int64");
    check(field_is(&doc, "acct_lsn", BSON_TYPE_DOCUMENT), "digit_key_is_document",
          "acct_lsn must be a sub-document");
    check(field_is(&doc, "n", BSON_TYPE_INT32), "int32_stays_int32", "n is not int32");
    check(field_is(&doc, "created", BSON_TYPE_DATE_TIME), "date_type", "created is not a date");
    check(field_is(&doc, "recent.0.created_at_us", BSON_TYPE_INT64) &&
              int64_at(&doc, "recent.0.created_at_us") == last_i &&
              !field_is(&doc, "recent.5", BSON_TYPE_DOCUMENT) &&
              field_is(&doc, "recent.4", BSON_TYPE_DOCUMENT),
          "push_sort_slice", "recent array is wrong");
    bson_iter_t dit, dchild;
    check(bson_iter_init(&dit, &doc) && bson_iter_find_descendant(&dit, "created", &dchild) &&
              bson_iter_date_time(&dchild) == 1700000000123,
          "date_millis_roundtrip", "created changed");
    bson_destroy(&doc);
  } else {
    check(0, "find_account", "account %" PRId64 " not found", probe_id);
  }

  /* 3. Idempotency guard: replaying an old LSN must not match, and the upsert then collides. */
  {
    bson_t *sel = BCON_NEW("_id", BCON_INT64(probe_id), "acct_lsn.17", "{", "$not", "{", "$gte",
                           BCON_INT64(0), "}", "}");
    bson_t *upd = BCON_NEW("$inc", "{", "balance", BCON_DECIMAL128(&inc_amount), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bool r = mongoc_collection_update_one(coll, sel, upd, opts, &reply, &error);
    check(!r && error.code == 11000, "replay_upsert_duplicate_key", "r=%d code=%u %s", r,
          error.code, error.message);
    bson_destroy(&reply);
    bson_destroy(sel);
    bson_destroy(upd);
    bson_destroy(opts);
  }

  /* 4. Find with a Decimal128 filter, sort and a small batch size (exercises getMore). */
  {
    bson_decimal128_t floor;
    bson_decimal128_from_string("100", &floor);
    bson_t *filter = BCON_NEW("balance", "{", "$gte", BCON_DECIMAL128(&floor), "}");
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}", "batchSize", BCON_INT32(37),
                            "projection", "{", "balance", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *d;
    int64_t count = 0, prev = INT64_MAX;
    int sorted = 1;
    while (mongoc_cursor_next(cur, &d)) {
      bson_iter_t i2;
      if (bson_iter_init_find(&i2, d, "_id")) {
        int64_t v = bson_iter_as_int64(&i2);
        if (v >= prev) sorted = 0;
        prev = v;
      }
      count++;
    }
    bool cerr = mongoc_cursor_error(cur, &error);
    check(!cerr && count == accounts && sorted, "find_getmore_sorted",
          "count=%" PRId64 " sorted=%d err=%s", count, sorted, cerr ? error.message : "");
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
  }

  /* 5. What the stand-in does not offer is refused with 115 CommandNotSupported. */
  {
    bson_t *filter = BCON_NEW("_id", BCON_INT64(probe_id));
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    check(n < 0 && error.code == 115, "count_documents_not_supported", "n=%" PRId64 " code=%u",
          n, error.code);
    bson_destroy(filter);
  }

  /* 6. Ordered and unordered bulk inserts with a duplicate key. */
  {
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(true));
    mongoc_bulk_operation_t *b = mongoc_collection_create_bulk_operation_with_opts(coll, opts);
    bson_t *d1 = BCON_NEW("_id", BCON_INT64(accounts + 1));
    bson_t *d2 = BCON_NEW("_id", BCON_INT64(3)); /* exists */
    bson_t *d3 = BCON_NEW("_id", BCON_INT64(accounts + 2));
    mongoc_bulk_operation_insert(b, d1);
    mongoc_bulk_operation_insert(b, d2);
    mongoc_bulk_operation_insert(b, d3);
    uint32_t r = mongoc_bulk_operation_execute(b, &reply, &error);
    check(r == 0 && error.code == 11000 && reply_int(&reply, "nInserted") == 1,
          "ordered_insert_stops", "r=%u code=%u nInserted=%" PRId64, r, error.code,
          reply_int(&reply, "nInserted"));
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(b);
    bson_destroy(opts);

    opts = BCON_NEW("ordered", BCON_BOOL(false));
    b = mongoc_collection_create_bulk_operation_with_opts(coll, opts);
    bson_t *d4 = BCON_NEW("_id", BCON_INT64(accounts + 3));
    mongoc_bulk_operation_insert(b, d2);
    mongoc_bulk_operation_insert(b, d4);
    r = mongoc_bulk_operation_execute(b, &reply, &error);
    check(r == 0 && error.code == 11000 && reply_int(&reply, "nInserted") == 1,
          "unordered_insert_continues", "r=%u code=%u nInserted=%" PRId64, r, error.code,
          reply_int(&reply, "nInserted"));
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(b);
    bson_destroy(opts);
    bson_destroy(d1);
    bson_destroy(d2);
    bson_destroy(d3);
    bson_destroy(d4);
  }

  /* 7. Type rules: int32 field + Decimal128 -> decimal; int64 + int32 -> int64; 0.1 + 0.2 exact. */
  {
    bson_decimal128_t tenth, two;
    bson_decimal128_from_string("0.1", &tenth);
    bson_decimal128_from_string("0.2", &two);
    bson_t *sel = BCON_NEW("_id", BCON_INT64(probe_id));
    bson_t *upd = BCON_NEW("$inc", "{", "n", BCON_DECIMAL128(&tenth), "lsn", BCON_INT32(1),
                           "fresh", BCON_DECIMAL128(&tenth), "}");
    bool r = mongoc_collection_update_one(coll, sel, upd, NULL, &reply, &error);
    check(r, "type_rules_update", "%s", error.message);
    bson_destroy(&reply);
    bson_destroy(upd);
    upd = BCON_NEW("$inc", "{", "fresh", BCON_DECIMAL128(&two), "}");
    r = mongoc_collection_update_one(coll, sel, upd, NULL, &reply, &error);
    bson_destroy(&reply);
    bson_destroy(upd);
    if (find_by_id(coll, probe_id, &doc)) {
      snprintf(want, sizeof want, "%" PRId64 ".1", per_account);
      check(decimal_string_is(&doc, "n", want, buf), "int32_plus_decimal", "want %s got %s", want,
            buf);
      check(field_is(&doc, "lsn", BSON_TYPE_INT64), "int64_plus_int32_is_int64", "lsn type");
      check(decimal_string_is(&doc, "fresh", "0.3", buf), "decimal_0.1_plus_0.2", "got %s", buf);
      print_doc("types", &doc);
      bson_destroy(&doc);
    }
    bson_destroy(sel);
  }

  /* 8. Unknown command -> CommandNotFound (59). */
  {
    bson_t *cmd = BCON_NEW("walfoldNoSuchCommand", BCON_INT32(1));
    bool r = mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &error);
    check(!r && error.code == 59 && strstr(error.message, "walfoldNoSuchCommand") != NULL,
          "unknown_command", "r=%d code=%u %s", r, error.code, error.message);
    bson_destroy(&reply);
    bson_destroy(cmd);
  }

  /* 9. A pooled client with implicit sessions, then a clean shutdown (endSessions). */
  {
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_t *pc = mongoc_client_pool_pop(pool);
    mongoc_client_session_t *session = mongoc_client_start_session(pc, NULL, &error);
    check(session != NULL, "start_session", "%s", error.message);
    if (session) {
      mongoc_collection_t *pcoll = mongoc_client_get_collection(pc, "c_probe", "probe");
      bson_t *opts = bson_new();
      mongoc_client_session_append(session, opts, &error);
      bson_t *filter = BCON_NEW("_id", BCON_INT64(probe_id));
      mongoc_cursor_t *cur = mongoc_collection_find_with_opts(pcoll, filter, opts, NULL);
      const bson_t *found;
      int n = 0;
      while (mongoc_cursor_next(cur, &found)) n++;
      bool cerr = mongoc_cursor_error(cur, &error);
      check(n == 1 && !cerr, "session_find", "n=%d %s", n, cerr ? error.message : "");
      mongoc_cursor_destroy(cur);
      bson_destroy(filter);
      bson_destroy(opts);
      mongoc_collection_destroy(pcoll);
      mongoc_client_session_destroy(session);
    }
    mongoc_client_pool_push(pool, pc);
    mongoc_client_pool_destroy(pool);
  }

  bson_destroy(bulk_opts);
  bson_destroy(upsert_opts);
  mongoc_collection_destroy(coll);
  mongoc_client_destroy(client);
  mongoc_uri_destroy(uri);
  mongoc_cleanup();
  printf("%s %d failure(s)\n", g_failures ? "PROBE FAILED" : "PROBE OK", g_failures);
  return g_failures ? 1 : 0;
}
