#include "projections/user_directory/user_directory.h"

#include <algorithm>
#include <map>

#include <bson/bson.h>

#include "common/error.h"
#include "config/section.h"
#include "projections/mongo.h"
#include "projections/rules.h"
#include "projections/user_directory/read_model.h"

namespace walfold::projections::user_directory {
namespace {

using queue::Value;

const Value* text_at(const std::vector<Value>& row, std::size_t f) {
  return f < row.size() && row[f].kind == Value::Text ? &row[f] : nullptr;
}

// What one key's document becomes after the batch's jobs: the last job wins (jobs of a key
// come in commit order), guarded by that job's commit LSN.
struct Pending {
  Lsn lsn = 0;
  bool deleted = false;
  std::vector<Value> row;  // live: the row (column 0 the id), unchanged values filled in
};

class DirectoryBatch : public Batch {
 public:
  DirectoryBatch(const UserDirectoryProjection& p, MongoPool& pool)
      : p_(p), pool_(pool), client_(pool) {}

  void prefetch(const std::vector<std::string>&, const std::vector<const queue::Job*>&) override {
  }  // every change carries its whole row: nothing to read first

  void fold(const queue::Job& job) override {
    for (const auto& c : job.changes) {
      if (c.table != 0) continue;
      Pending next;
      next.lsn = job.commit_lsn;
      const bool to_new = c.op != 'D' && key_of(c.new_row) == job.key;
      if (to_new) {
        next.row = c.new_row;
        // A TOASTed value an update left unchanged: the old row (REPLICA IDENTITY FULL) has it.
        for (std::size_t i = 0; i < next.row.size(); ++i)
          if (next.row[i].kind == Value::Unchanged && i < c.old_row.size() &&
              c.old_row[i].kind == Value::Text)
            next.row[i] = c.old_row[i];
      } else if (c.op == 'I' || (c.op == 'U' && key_of(c.old_row) != job.key)) {
        throw DataError("user_directory: a change of the users row id=" + id_of(c) + " at LSN " +
                        format_lsn(job.commit_lsn) + " reached key " + job.key +
                        ", which is neither its old nor its new email's");
      } else {
        next.deleted = true;  // a delete, or the old email of a moved row
      }
      pending_[job.key] = std::move(next);
      ++changes_;
    }
  }

  void write() override {
    std::vector<Statement> out;
    for (const auto& [key, st] : pending_) {
      const std::string id = key.substr(2);
      // Creates the document (as a tombstone below every LSN) if missing, never changes one.
      Statement ensure;
      BSON_APPEND_UTF8(ensure.filter.get(), "_id", id.c_str());
      bson_t soi;
      bson_append_document_begin(ensure.update.get(), "$setOnInsert", -1, &soi);
      BSON_APPEND_BOOL(&soi, "deleted", true);
      BSON_APPEND_INT64(&soi, "lsn", 0);
      bson_append_document_end(ensure.update.get(), &soi);
      ensure.upsert = true;
      out.push_back(std::move(ensure));
      Statement s;
      BSON_APPEND_UTF8(s.filter.get(), "_id", id.c_str());
      append_lsn_not(s.filter.get(), "lsn", "$gte", st.lsn);
      bson_t set, unset;
      bson_append_document_begin(s.update.get(), "$set", -1, &set);
      BSON_APPEND_INT64(&set, "lsn", static_cast<std::int64_t>(st.lsn));
      BSON_APPEND_BOOL(&set, "deleted", st.deleted);
      if (!st.deleted) p_.append_fields(&set, st.row);
      bson_append_document_end(s.update.get(), &set);
      if (st.deleted) {
        bson_append_document_begin(s.update.get(), "$unset", -1, &unset);
        BSON_APPEND_UTF8(&unset, "user_id", "");
        for (const auto& [name, _] : p_.fields()) BSON_APPEND_UTF8(&unset, name.c_str(), "");
        bson_append_document_end(s.update.get(), &unset);
      }
      out.push_back(std::move(s));
    }
    if (out.empty()) return;
    statements_ += out.size();
    bulk_write(pool_, client_, p_.collection().c_str(), out, true);
    ++write_commands_;
  }

  BatchStats stats() const override { return {changes_, write_commands_, statements_}; }

 private:
  std::string key_of(const std::vector<Value>& row) const {
    auto id = p_.document_id(row);
    return id ? "d:" + *id : std::string();
  }
  static std::string id_of(const queue::Change& c) {
    const auto& row = c.op == 'D' ? c.old_row : c.new_row;
    const Value* v = text_at(row, 0);
    return v ? v->text : "?";
  }

  const UserDirectoryProjection& p_;
  MongoPool& pool_;
  MongoPool::Client client_;
  std::map<std::string, Pending> pending_;
  std::size_t changes_ = 0;
  std::uint64_t write_commands_ = 0, statements_ = 0;
};

}  // namespace

std::shared_ptr<const ProjectionSettings> parse_settings(SectionReader& r) {
  auto s = std::make_shared<Settings>();
  const std::string where = r.key();
  const YAML::Node& sec = r.section();
  bool email_listed = false;
  if (sec.IsDefined() && r.check_keys(sec, where, {"collection", "salt_file", "columns"})) {
    s->collection = r.text(sec, "collection", where, s->collection);
    s->salt_file = r.text(sec, "salt_file", where, "");
    if (s->collection.empty() || s->collection.find_first_of("$\0", 0, 2) != std::string::npos ||
        s->collection.rfind("system.", 0) == 0)
      r.error(sec["collection"], where + ".collection '" + s->collection +
                                     "' is not a collection name MongoDB accepts");
    if (auto cols = sec["columns"]) {
      if (!cols.IsMap()) {
        r.error(cols, where +
                          ".columns must be a mapping of column to keep, drop, hash or "
                          "pseudonym");
      } else {
        for (const auto& kv : cols) {
          const std::string col = kv.first.IsScalar() ? kv.first.Scalar() : "";
          const std::string at = where + ".columns." + col;
          Transform t{};
          const std::string text = kv.second.IsScalar() ? kv.second.Scalar() : "";
          if (col.empty() || col.find_first_of(".$") != std::string::npos) {
            r.error(kv.first, where + ".columns: '" + col +
                                  "' is not a column name walfold can write as a field");
            continue;
          }
          if (col == kIdColumn) {
            r.error(kv.first, at + ": the id identifies the row (the pseudonym is derived from "
                                   "it) and is kept as user_id; it takes no transform");
            continue;
          }
          bool dup = false;
          for (const auto& [name, _] : s->columns) dup = dup || name == col;
          if (dup) {
            r.error(kv.first, at + " is configured twice");
            continue;
          }
          if (!parse_transform(text, t)) {
            auto near = SectionReader::near(text, {"keep", "drop", "hash", "pseudonym"});
            r.error(kv.second, at + " '" + text + "' is not one of keep, drop, hash, pseudonym" +
                                   (near.empty() ? "" : " (did you mean '" + near + "'?)"));
            continue;
          }
          if (col == kEmailColumn) {
            email_listed = true;
            if (t != Transform::Keep && t != Transform::Hash) {
              r.error(kv.second, at +
                                     ": the email is the document's key; it can be kept or "
                                     "hashed, not " +
                                     text);
              continue;
            }
            s->columns.insert(s->columns.begin(), {col, t});
          } else {
            s->columns.emplace_back(col, t);
          }
        }
      }
    }
  }
  if (!email_listed) s->columns.insert(s->columns.begin(), {kEmailColumn, Transform::Keep});
  const bool keyed = std::any_of(s->columns.begin(), s->columns.end(), [](const auto& c) {
    return c.second == Transform::Hash || c.second == Transform::Pseudonym;
  });
  if (keyed && s->salt_file.empty())
    r.error(sec.IsDefined() ? sec : YAML::Node(YAML::NodeType::Undefined),
            where + ".salt_file is required: hash and pseudonym are keyed with its content");
  return s;
}

UserDirectoryProjection::UserDirectoryProjection(const Settings& settings, std::string salt)
    : collection_(settings.collection), salt_(std::move(salt)) {
  TableSpec t;
  t.model = kModel;
  // The old row of every update: an email change must know the old email to move the document.
  t.replica_identity_full = true;
  t.columns.push_back({kIdColumn});
  for (const auto& [name, tr] : settings.columns) {
    if (tr == Transform::Drop) continue;  // never carried: not in Redis, not in MongoDB
    t.columns.push_back({name});
    fields_.emplace_back(name, tr);
  }
  for (const auto& [_, tr] : fields_)
    if ((tr == Transform::Hash || tr == Transform::Pseudonym) && salt_.empty())
      throw ConfigError("user_directory: the salt file " + settings.salt_file +
                        " is empty; hash and pseudonym need a secret key");
  tables_.push_back(std::move(t));
  read_model_ = std::make_unique<DirectoryReadModel>(*this);
}

UserDirectoryProjection::~UserDirectoryProjection() = default;

const SnapshotLoad* UserDirectoryProjection::snapshot_load() const {
  return read_model_.get();
}
const CanonicalForm* UserDirectoryProjection::canonical_form() const {
  return read_model_.get();
}
const SnapshotRepair* UserDirectoryProjection::snapshot_repair() const {
  return read_model_.get();
}

std::optional<std::string> UserDirectoryProjection::document_id(
    const std::vector<Value>& row) const {
  // fields_[0] is the email (parse_settings puts it first), column 1.
  const Value* v = text_at(row, 1);
  if (!v) return std::nullopt;
  return transformed(0, v->text, "");
}

std::string UserDirectoryProjection::transformed(std::size_t f, const std::string& value,
                                                 const std::string& user_id) const {
  switch (fields_[f].second) {
    case Transform::Hash:
      return hmac_sha256_hex(salt_, value);
    case Transform::Pseudonym:
      return pseudonym(salt_, user_id);
    default:
      return value;
  }
}

void UserDirectoryProjection::append_fields(bson_t* doc, const std::vector<Value>& row) const {
  const std::string user_id = !row.empty() ? row[0].text : "";
  BSON_APPEND_UTF8(doc, "user_id", user_id.c_str());
  for (std::size_t f = 0; f < fields_.size(); ++f) {
    const std::size_t col = f + 1;
    if (col >= row.size()) continue;
    const auto& v = row[col];
    if (v.kind == Value::Text)
      BSON_APPEND_UTF8(doc, fields_[f].first.c_str(), transformed(f, v.text, user_id).c_str());
    else if (v.kind == Value::Null)
      BSON_APPEND_NULL(doc, fields_[f].first.c_str());
  }
}

namespace {
void append_quoted(std::string& out, const std::optional<std::string>& v) {
  if (!v) {
    out += "null";
    return;
  }
  out += '"';
  for (char ch : *v) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    out += ch;
  }
  out += '"';
}
}  // namespace

std::string UserDirectoryProjection::canonical_line(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& stored) const {
  std::string out;
  for (const auto& [name, value] : stored) {
    out += (out.empty() ? "" : " ") + name + "=";
    append_quoted(out, value);
  }
  return out + "\n";
}

std::string UserDirectoryProjection::canonical_line(const std::vector<Value>& row) const {
  std::vector<std::pair<std::string, std::optional<std::string>>> stored;
  const std::string user_id = !row.empty() ? row[0].text : "";
  stored.emplace_back("user_id", user_id);
  for (std::size_t f = 0; f < fields_.size(); ++f) {
    const std::size_t col = f + 1;
    std::optional<std::string> v;
    if (col < row.size() && row[col].kind == Value::Text)
      v = transformed(f, row[col].text, user_id);
    stored.emplace_back(fields_[f].first, std::move(v));
  }
  return canonical_line(stored);
}

Route UserDirectoryProjection::route(const queue::Change& c, const ChangeContext& where) const {
  auto key = [&](const std::vector<Value>& row, bool old) {
    auto id = document_id(row);
    if (!id)
      throw DataError("relation " + std::string(where.relation) + ": " + (old ? "old" : "new") +
                      " row id=" + (text_at(row, 0) ? row[0].text : std::string("?")) +
                      " without an email (NULL, or not carried: set REPLICA IDENTITY FULL, "
                      "`walfold setup` does) in the transaction ending at " +
                      format_lsn(where.commit_lsn) + "; cannot key its directory entry");
    return "d:" + *id;
  };
  if (c.op == 'I') return {key(c.new_row, false), {}};
  if (c.op == 'D') return {key(c.old_row, true), {}};
  Route r{key(c.new_row, false), {}};
  auto old_key = key(c.old_row, true);
  if (old_key != r.key) r.old_key = std::move(old_key);
  return r;
}

bool UserDirectoryProjection::rule_applies(std::size_t table, const PriorityRule& rule) const {
  return table < tables_.size() && rule_applies_to(tables_[table], rule);
}

bool UserDirectoryProjection::rule_matches(std::size_t table, const PriorityRule& rule,
                                           const std::vector<Value>& row) const {
  return table < tables_.size() && row_satisfies(tables_[table], rule, row);
}

std::unique_ptr<Batch> UserDirectoryProjection::start_batch(mongo::MongoPool& pool) const {
  return std::make_unique<DirectoryBatch>(*this, pool);
}

namespace {
// The salt file, for `walfold check-config` (checked like a password file).
std::vector<std::pair<std::string, std::string>> secret_files(const ProjectionSettings& s) {
  const auto* settings = dynamic_cast<const Settings*>(&s);
  if (!settings) return {};
  return {{"user_directory.salt_file", settings->salt_file}};
}
}  // namespace

const ProjectionConfigSpec& config_spec() {
  static const ProjectionConfigSpec spec{
      "user_directory", {kModel},      {TableConfig{"public", "users", kModel, 3}}, {},
      &parse_settings,  &secret_files,
  };
  return spec;
}

}  // namespace walfold::projections::user_directory
