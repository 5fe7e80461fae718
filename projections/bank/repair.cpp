// The bank's repair (read_model.h: BankSnapshotRepair): each collection walked in _id order
// beside the snapshot; a document that differs is rewritten with a compare-and-set on its guards.
#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "projections/bank/canonical.h"
#include "projections/bank/read_model.h"
#include "projections/bank/snapshot.h"

namespace walfold::projections::bank {
namespace {

// The snapshot's records (canonical.h).
AccountRecord account_record_of(const AccountTruth& a) {
  return account_record(a);
}
UserRecord user_record_of(const UserTruth& u) {
  return user_record(u);
}
TransactionRecord transaction_record_of(const TxTruth& t) {
  return transaction_record(t);
}

// A document's canonical record (canonical.h), or why it has none: a document walfold cannot
// read differs from every snapshot record, and repair rewrites it.
template <typename Read>
std::string record_text(Read read) {
  try {
    return canonical_text(read());
  } catch (const DataError& e) {
    return std::string("unreadable (") + e.what() + ")\n";
  }
}

// What repair needs of a MongoDB document: its canonical line and the guards to compare-and-set.
struct MongoDoc {
  std::int64_t id = 0;
  bool deleted = false;
  std::string key;       // the canonical record's text (not read for a tombstone)
  Bson cas;              // filter matching the document only while its guards are unchanged
  Lsn newest_guard = 0;  // highest LSN among its guards
};

// The LSN guards of a document, read as they are and turned into a compare-and-set filter that
// matches the document only while every guard still has that value (or is still absent). A
// guard is an LSN or a document of LSNs (acct_lsn, left).
class Guards {
 public:
  Guards(std::initializer_list<const char*> names) : names_(names), read_(names_.size()) {}
  // True when `key` is one of the guards (and `it` is kept).
  bool take(std::string_view key, const bson_iter_t& it) {
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (key != names_[i]) continue;
      read_[i] = it;
      if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t sub;
        bson_iter_recurse(&it, &sub);
        while (bson_iter_next(&sub)) newest_ = std::max<Lsn>(newest_, get_int64(sub));
      } else {
        newest_ = std::max<Lsn>(newest_, get_int64(it));
      }
      return true;
    }
    return false;
  }
  void finish(MongoDoc& m) const {
    m.newest_guard = newest_;
    m.cas = make_bson();
    BSON_APPEND_INT64(m.cas.get(), "_id", m.id);
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (read_[i]) {
        bson_append_iter(m.cas.get(), names_[i], -1, &*read_[i]);
      } else {
        bson_t e;
        bson_append_document_begin(m.cas.get(), names_[i], -1, &e);
        BSON_APPEND_BOOL(&e, "$exists", false);
        bson_append_document_end(m.cas.get(), &e);
      }
    }
  }

 private:
  std::vector<const char*> names_;
  std::vector<std::optional<bson_iter_t>> read_;
  Lsn newest_ = 0;
};

// What every document has: its id, its tombstone flag and its guards. True when `key` was one.
bool read_common(MongoDoc& m, Guards& guards, std::string_view key, const bson_iter_t& it) {
  if (key == "_id")
    m.id = get_int64(it);
  else if (key == "deleted")
    m.deleted = bson_iter_as_bool(&it);
  else
    return guards.take(key, it);
  return true;
}

// The guards, the tombstone flag and (for a live document) the record of a document.
template <typename Record>
MongoDoc parse(std::string_view where, const bson_t* doc,
               std::initializer_list<const char*> guard_names,
               Record (*record)(std::string_view, const bson_t*)) {
  MongoDoc m;
  Guards guards(guard_names);
  bson_iter_t it;
  bson_iter_init(&it, doc);
  while (bson_iter_next(&it)) read_common(m, guards, bson_iter_key(&it), it);
  if (!m.deleted) m.key = record_text([&] { return record(where, doc); });
  guards.finish(m);
  return m;
}

MongoDoc parse_account(std::string_view where, const bson_t* doc) {
  return parse(where, doc, {"applied_lsn", "window_lsn"}, account_record);
}

MongoDoc parse_user(std::string_view where, const bson_t* doc) {
  return parse(where, doc, {"profile_lsn", "floor_lsn", "acct_lsn"}, user_record);
}

// A copy in `transactions`: guarded by applied_lsn and by `left` (the LSNs at which it moved out
// of accounts), which the snapshot's document resets.
MongoDoc parse_transaction(std::string_view where, const bson_t* doc) {
  return parse(where, doc, {"applied_lsn", "left"}, transaction_record);
}

// Walks a collection in _id order alongside the truth (also in id order).
class MongoWalk {
 public:
  MongoWalk(MongoPool& pool, const MongoPool::Client& client, const char* collection,
            MongoDoc (*parse)(std::string_view, const bson_t*))
      : pool_(pool),
        coll_(client.collection(collection)),
        parse_(parse),
        where_("MongoDB " + pool.address() + ": " + collection) {
    // Every handle is a member that frees itself: advance() below may throw (a failed first
    // batch or getMore, a document parse_ refuses) before this constructor completes.
    auto opts = make_bson();
    bson_t sort;
    bson_append_document_begin(opts.get(), "sort", -1, &sort);
    BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(opts.get(), &sort);
    auto filter = make_bson();
    cur_.reset(mongoc_collection_find_with_opts(coll_.get(), filter.get(), opts.get(), nullptr));
    advance();
  }
  const std::optional<MongoDoc>& current() const { return current_; }
  MongoDoc take() {
    MongoDoc d = std::move(*current_);
    advance();
    return d;
  }
  void advance() {
    const bson_t* doc;
    if (mongoc_cursor_next(cur_.get(), &doc)) {
      current_ = parse_(where_, doc);
      return;
    }
    current_.reset();
    bson_error_t err;
    if (mongoc_cursor_error(cur_.get(), &err)) throw_mongo_error(pool_, "reading", err);
  }

 private:
  MongoPool& pool_;
  Collection coll_;
  MongoDoc (*parse_)(std::string_view, const bson_t*);
  std::string where_;
  mongo::Cursor cur_;
  std::optional<MongoDoc> current_;
};

// Compare-and-set: true when the document was written (or inserted), false when it changed
// meanwhile.
bool cas_write(MongoPool& pool, const MongoPool::Client& client, const char* collection,
               const Bson& filter, const Bson& doc, bool replace) {
  Collection coll(client.collection(collection));
  auto opts = make_bson();
  BSON_APPEND_BOOL(opts.get(), "upsert", true);
  StackBson reply;
  bson_error_t err;
  bool ok = replace ? mongoc_collection_replace_one(coll.get(), filter.get(), doc.get(), opts.get(),
                                                    reply.get(), &err)
                    : mongoc_collection_update_one(coll.get(), filter.get(), doc.get(), opts.get(),
                                                   reply.get(), &err);
  std::int64_t changed = 0;
  bson_iter_t it;
  if (ok) {
    for (const char* f : {"matchedCount", "upsertedCount"})
      if (bson_iter_init_find(&it, reply.get(), f)) changed += get_int64(it);
  }
  if (!ok) {
    // An upsert that collides with a document created meanwhile: changed, leave it.
    if (err.code == 11000) return false;
    throw_mongo_error(pool, std::string("repairing ") + collection, err);
  }
  return changed > 0;
}

Bson tombstone_update(const char* guard_field, Lsn guard) {
  auto u = make_bson();
  bson_t set;
  bson_append_document_begin(u.get(), "$set", -1, &set);
  BSON_APPEND_BOOL(&set, "deleted", true);
  BSON_APPEND_INT64(&set, guard_field, static_cast<std::int64_t>(guard));
  if (std::string_view(guard_field) == "profile_lsn")
    BSON_APPEND_INT64(&set, "floor_lsn", static_cast<std::int64_t>(guard));
  bson_append_document_end(u.get(), &set);
  return u;
}

// Walks the read model beside the snapshot, document by document, and rewrites what differs.
class Repairer {
 public:
  Repairer(MongoPool& pool, Lsn cp, RepairLog& log)
      : pool_(pool), client_(pool), cp_(cp), guard_(cp - 1), log_(log) {}

  // Walks one collection in _id order alongside the truth (also in id order): a document on
  // one side only, or differing, is handled.
  template <typename ReadTruth, typename KeyOf, typename DocOf>
  void compare(const char* what, const char* coll, const char* guard_field,
               MongoDoc (*parse)(std::string_view, const bson_t*), ReadTruth read_truth,
               KeyOf key_of, DocOf doc_of) {
    MongoWalk walk(pool_, client_, coll, parse);
    auto only_in_mongo = [&] {
      handle(what, coll, guard_field, walk.current()->id, nullptr, nullptr, walk.current());
      walk.advance();
    };
    read_truth([&](auto&& t) {
      log_.compared(what);
      while (walk.current() && walk.current()->id < t.id) only_in_mongo();
      std::optional<MongoDoc> m;
      if (walk.current() && walk.current()->id == t.id) m = walk.take();
      const std::string key = canonical_text(key_of(t));
      if (m && !m->deleted && m->key == key) return;  // equal: no document to build
      auto doc = doc_of(t, guard_);
      handle(what, coll, guard_field, t.id, &key, &doc, m);
    });
    while (walk.current()) only_in_mongo();
  }

 private:
  void handle(const char* what, const char* coll, const char* guard_field, std::int64_t id,
              const std::string* truth_key, const Bson* truth_doc,
              const std::optional<MongoDoc>& m) {
    if (!truth_key && (!m || m->deleted)) return;  // absent on both sides
    const std::string name = std::to_string(id);
    if (m && m->newest_guard >= cp_) {
      // Newer than the snapshot: it cannot be judged against it (a later run will).
      log_.unchecked(what, name);
      return;
    }
    bool written;
    if (truth_doc) {
      auto by_id = make_bson();
      BSON_APPEND_INT64(by_id.get(), "_id", id);
      written = cas_write(pool_, client_, coll, m ? m->cas : by_id, *truth_doc, /*replace=*/true);
    } else {
      written = cas_write(pool_, client_, coll, m->cas, tombstone_update(guard_field, guard_),
                          /*replace=*/false);
    }
    if (!written) {
      log_.skipped(what, name);
      return;
    }
    log_.repaired(what, name, truth_key != nullptr,
                  m ? (m->deleted ? "deleted" : m->key) : std::string("missing"),
                  truth_key ? *truth_key : std::string("tombstone"));
  }

  MongoPool& pool_;
  MongoPool::Client client_;
  const Lsn cp_, guard_;
  RepairLog& log_;
};

}  // namespace

void BankSnapshotRepair::repair(PgRead& pg, MongoPool& pool, Lsn consistent_point,
                                RepairLog& log) const {
  TruthReader truth(pg);
  Repairer r(pool, consistent_point, log);
  // The copies of transaction rows first (a later window recompute reads them), then users and
  // accounts: the order of a worker's bulk writes.
  r.compare(
      "transaction", "transactions", "applied_lsn", parse_transaction,
      [&](auto each) { truth.transactions(each); }, transaction_record_of, transaction_document);
  r.compare(
      "user", "users", "profile_lsn", parse_user, [&](auto each) { truth.users(each); },
      user_record_of, user_document);
  r.compare(
      "account", "accounts", "applied_lsn", parse_account, [&](auto each) { truth.accounts(each); },
      account_record_of, account_document);
}

}  // namespace walfold::projections::bank
