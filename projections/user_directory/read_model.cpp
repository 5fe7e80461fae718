// The user directory from the users table instead of the WAL (projections/read_model.h): the
// snapshot load, the canonical form and the repair, over the same document fields the fold
// writes (UserDirectoryProjection::append_fields, canonical_line).
#include "projections/user_directory/read_model.h"

#include <algorithm>
#include <map>
#include <set>

#include "common/error.h"
#include "common/pg.h"
#include "projections/mongo.h"

namespace walfold::projections::user_directory {
namespace {

using queue::Value;
constexpr std::size_t kBulk = 1000;

// The users rows as the directory's table carries them (column 0 the id).
void for_each_row(const UserDirectoryProjection& p, PgRead& pg,
                  const std::function<void(std::vector<Value>&)>& each) {
  const auto& cols = p.tables()[0].columns;
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < cols.size(); ++i)
    sql += (i ? ", " : "") + quote_ident(cols[i].name) + "::text";
  sql += " FROM " + pg.tables.qualified(kModel);
  std::vector<Value> row(cols.size());
  pg.conn.stream(
      sql,
      [&](const PGresult& r) {
        for (std::size_t i = 0; i < cols.size(); ++i) {
          const int c = static_cast<int>(i);
          row[i].kind = pg_is_null(r, 0, c) ? Value::Null : Value::Text;
          row[i].text = row[i].kind == Value::Text ? std::string(pg_value(r, 0, c)) : "";
        }
        each(row);
      },
      "reading the users table");
}

std::string utf8_of(const bson_iter_t& it) {
  std::uint32_t len = 0;
  const char* s = bson_iter_utf8(&it, &len);
  return std::string(s, len);
}

// What a stored document says: its id, guard, tombstone flag and canonical fields.
struct Stored {
  std::string id;
  Lsn lsn = 0;
  bool deleted = false;
  std::vector<std::pair<std::string, std::optional<std::string>>> fields;
};

Stored read_stored(const UserDirectoryProjection& p, const bson_t* doc) {
  Stored s;
  s.fields.emplace_back("user_id", std::nullopt);
  for (const auto& [name, _] : p.fields()) s.fields.emplace_back(name, std::nullopt);
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return s;
  while (bson_iter_next(&it)) {
    const std::string k = bson_iter_key(&it);
    if (k == "_id" && BSON_ITER_HOLDS_UTF8(&it))
      s.id = utf8_of(it);
    else if (k == "lsn")
      s.lsn = static_cast<Lsn>(get_int64(it));
    else if (k == "deleted")
      s.deleted = bson_iter_as_bool(&it);
    else
      for (auto& [name, value] : s.fields)
        if (name == k)
          value = BSON_ITER_HOLDS_UTF8(&it) ? std::optional(utf8_of(it)) : std::nullopt;
  }
  return s;
}

Bson live_document(const UserDirectoryProjection& p, const std::vector<Value>& row, Lsn lsn) {
  Bson d;
  BSON_APPEND_INT64(d.get(), "lsn", static_cast<std::int64_t>(lsn));
  BSON_APPEND_BOOL(d.get(), "deleted", false);
  p.append_fields(d.get(), row);
  return d;
}

Bson tombstone(Lsn lsn) {
  Bson d;
  BSON_APPEND_INT64(d.get(), "lsn", static_cast<std::int64_t>(lsn));
  BSON_APPEND_BOOL(d.get(), "deleted", true);
  return d;
}

// Every stored document of the collection, ascending _id.
void scan_stored(const UserDirectoryProjection& p, MongoPool& pool,
                 const std::function<void(const Stored&)>& each) {
  MongoPool::Client client(pool);
  Collection coll = client.collection(p.collection().c_str());
  StackBson filter;
  auto opts = make_bson();
  bson_t sort;
  bson_append_document_begin(opts.get(), "sort", -1, &sort);
  BSON_APPEND_INT32(&sort, "_id", 1);
  bson_append_document_end(opts.get(), &sort);
  mongo::Cursor cur(
      mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr));
  const bson_t* doc;
  while (mongoc_cursor_next(cur.get(), &doc)) each(read_stored(p, doc));
  bson_error_t err;
  if (mongoc_cursor_error(cur.get(), &err))
    throw_mongo_error(pool, std::string("reading ") + p.collection(), err);
}

}  // namespace

void DirectoryReadModel::prepare(mongo::MongoPool&) const {}  // _id is the only index it uses

LoadStats DirectoryReadModel::load(PgRead& pg, mongo::MongoPool& pool, Lsn guard,
                                   std::atomic<std::uint64_t>* written) const {
  MongoPool::Client client(pool);
  std::set<std::string> seen;
  std::vector<Statement> batch;
  std::size_t documents = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    bulk_write(pool, client, p_.collection().c_str(), batch, false);
    if (written) *written += batch.size();
    batch.clear();
  };
  for_each_row(p_, pg, [&](std::vector<Value>& row) {
    auto id = p_.document_id(row);
    if (!id)
      throw DataError("users row id=" + row[0].text +
                      " has no email: the user directory cannot key it");
    Statement s;
    BSON_APPEND_UTF8(s.filter.get(), "_id", id->c_str());
    s.update = live_document(p_, row, guard);
    s.replace = true;
    s.upsert = true;
    batch.push_back(std::move(s));
    seen.insert(*id);
    ++documents;
    if (batch.size() >= kBulk) flush();
  });
  flush();
  LoadStats st;
  // The documents the tables no longer hold become tombstones at the guard.
  std::vector<std::string> stale;
  scan_stored(p_, pool, [&](const Stored& d) {
    if (!d.deleted && !seen.count(d.id)) stale.push_back(d.id);
  });
  for (const auto& id : stale) {
    Statement s;
    BSON_APPEND_UTF8(s.filter.get(), "_id", id.c_str());
    s.update = tombstone(guard);
    s.replace = true;
    batch.push_back(std::move(s));
    if (batch.size() >= kBulk) flush();
  }
  flush();
  st.tombstoned = stale.size();
  st.documents = {{p_.collection(), documents}};
  return st;
}

void DirectoryReadModel::from_postgres(PgRead& pg, const RecordSink& each) const {
  // The document ids are keyed hashes (or emails): ordered here, not in SQL.
  std::map<std::string, std::string> lines;
  for_each_row(p_, pg, [&](std::vector<Value>& row) {
    auto id = p_.document_id(row);
    if (!id)
      throw DataError("users row id=" + row[0].text +
                      " has no email: the user directory cannot key it");
    lines[*id] = p_.canonical_line(row);
  });
  for (const auto& [id, text] : lines) each({kSection, id, text});
}

void DirectoryReadModel::from_mongo(DocumentScan& mongo, const RecordSink& each) const {
  // The fields are configured, and DocumentScan takes an initializer_list: no projection (an
  // empty one), every field read, ours picked.
  mongo.scan(p_.collection().c_str(), {}, [&](const Document& doc) {
    Stored s = read_stored(p_, doc.bson);
    if (s.deleted || s.id.empty()) return;
    const std::string text = p_.canonical_line(s.fields);
    each({kSection, s.id, text});
  });
}

void DirectoryReadModel::repair(PgRead& pg, mongo::MongoPool& pool, Lsn consistent_point,
                                RepairLog& log) const {
  std::map<std::string, std::vector<Value>> want;
  for_each_row(p_, pg, [&](std::vector<Value>& row) {
    if (auto id = p_.document_id(row)) want[*id] = row;
  });
  std::vector<Stored> stored;
  scan_stored(p_, pool, [&](const Stored& d) { stored.push_back(d); });
  log.compared(kSection);
  MongoPool::Client client(pool);
  Collection coll = client.collection(p_.collection().c_str());
  const Lsn guard = consistent_point - 1;
  // Rewrites document `id` when its guard is still `expect` (or, for a missing document, when
  // none was written meanwhile); false when it changed first.
  auto rewrite = [&](const std::string& id, std::optional<Lsn> expect, const Bson& doc) {
    StackBson filter, reply;
    BSON_APPEND_UTF8(filter.get(), "_id", id.c_str());
    if (expect) BSON_APPEND_INT64(filter.get(), "lsn", static_cast<std::int64_t>(*expect));
    auto opts = make_bson();
    if (!expect) BSON_APPEND_BOOL(opts.get(), "upsert", true);
    bson_error_t err;
    if (!mongoc_collection_replace_one(coll.get(), filter.get(), doc.get(), opts.get(), reply.get(),
                                       &err)) {
      if (!expect && err.code == 11000) return false;  // inserted by a fold meanwhile
      throw_mongo_error(pool, "repairing " + p_.collection(), err);
    }
    bson_iter_t it;
    std::int64_t n = 0;
    if (bson_iter_init_find(&it, reply.get(), "matchedCount")) n += get_int64(it);
    if (bson_iter_init_find(&it, reply.get(), "upsertedCount")) n += get_int64(it);
    return n > 0;
  };
  for (const auto& d : stored) {
    auto w = want.find(d.id);
    const bool in_pg = w != want.end();
    if (d.lsn >= consistent_point) {
      log.unchecked(kSection, d.id);
    } else {
      const std::string was = d.deleted ? "deleted" : p_.canonical_line(d.fields);
      const std::string now = in_pg ? p_.canonical_line(w->second) : "tombstone";
      const bool same = in_pg ? was == now : d.deleted;
      if (!same) {
        const Bson doc = in_pg ? live_document(p_, w->second, guard) : tombstone(guard);
        if (rewrite(d.id, d.lsn, doc))
          log.repaired(kSection, d.id, in_pg, was, now);
        else
          log.skipped(kSection, d.id);
      }
    }
    if (in_pg) want.erase(w);
  }
  for (const auto& [id, row] : want) {
    const Bson doc = live_document(p_, row, guard);
    if (rewrite(id, std::nullopt, doc))
      log.repaired(kSection, id, true, "missing", p_.canonical_line(row));
    else
      log.skipped(kSection, id);
  }
}

}  // namespace walfold::projections::user_directory
