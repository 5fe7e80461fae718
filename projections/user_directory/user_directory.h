// The user directory projection: one MongoDB document per user of one `users` table, keyed by
// email, with per-column privacy transforms declared in the configuration (config/README.md,
// `projection: user_directory`; the documents in projections/README.md).
//
// Ordering key: "d:<document id>", the document id being the email, or its keyed hash with
// `email: hash` (then neither MongoDB nor Redis's key names hold the plaintext address). An
// email change moves the document: the update goes to the old key (which tombstones the old
// document) and to the new one (which writes the new document). Every document carries the
// commit LSN of the last change folded into it (`lsn`) and every write is guarded on it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "projections/projection.h"
#include "projections/user_directory/transforms.h"

struct _bson_t;  // libbson's bson_t

namespace walfold {
class SectionReader;
}

namespace walfold::projections::user_directory {

// The `user_directory:` section.
struct Settings : ProjectionSettings {
  std::string collection = "user_directory";
  std::string salt_file;  // the key of `hash` and `pseudonym`; read like a password file
  // The configured columns other than the id, in the file's order (email first: it is always
  // there, `keep` unless configured).
  std::vector<std::pair<std::string, Transform>> columns;
};
std::shared_ptr<const ProjectionSettings> parse_settings(SectionReader& r);

// The model of its one table, and the columns every row has.
inline constexpr const char* kModel = "users";
inline constexpr const char* kIdColumn = "id";
inline constexpr const char* kEmailColumn = "email";

class DirectoryReadModel;  // read_model.h

class UserDirectoryProjection : public Projection {
 public:
  // `salt` is the content of settings.salt_file (empty when no column needs it).
  UserDirectoryProjection(const Settings& settings, std::string salt);
  ~UserDirectoryProjection() override;
  std::string_view name() const override { return "user_directory"; }
  const std::vector<TableSpec>& tables() const override { return tables_; }
  Route route(const queue::Change& c, const ChangeContext& where) const override;
  bool rule_applies(std::size_t table, const PriorityRule& rule) const override;
  bool rule_matches(std::size_t table, const PriorityRule& rule,
                    const std::vector<queue::Value>& row) const override;
  std::unique_ptr<Batch> start_batch(mongo::MongoPool& pool) const override;
  // The read model from the users table (read_model.h).
  const SnapshotLoad* snapshot_load() const override;
  const CanonicalForm* canonical_form() const override;
  const SnapshotRepair* snapshot_repair() const override;

  // The document id of a row (its email, transformed as configured); nullopt when the email is
  // NULL or not in the row.
  std::optional<std::string> document_id(const std::vector<queue::Value>& row) const;
  // One document field per carried column after the id: (field name, transform), in the order
  // of tables()[0].columns from column 1 on.
  const std::vector<std::pair<std::string, Transform>>& fields() const { return fields_; }
  // What `value` of column `f` (an index into fields()) becomes in the document.
  std::string transformed(std::size_t f, const std::string& value,
                          const std::string& user_id) const;
  const std::string& collection() const { return collection_; }

  // The fields of the live document of `row` (user_id, then the transformed columns), as
  // the fold and the snapshot load write them. NULL is written as null; a value an update left
  // unchanged (or a column the relation lacks) is left out, so the stored value stays.
  void append_fields(_bson_t* doc, const std::vector<queue::Value>& row) const;
  // The canonical line of a live document (report, verify, repair compare it): "user_id=…" and
  // every field in order, values quoted, null as null, ending in '\n'.
  std::string canonical_line(
      const std::vector<std::pair<std::string, std::optional<std::string>>>& stored) const;
  // The same from a row: its fields transformed.
  std::string canonical_line(const std::vector<queue::Value>& row) const;

 private:
  std::string collection_;
  std::string salt_;
  std::vector<std::pair<std::string, Transform>> fields_;
  std::vector<TableSpec> tables_;
  std::unique_ptr<DirectoryReadModel> read_model_;
};

// The ProjectionConfigSpec of the user directory (projections/registry.cpp lists it).
const ProjectionConfigSpec& config_spec();

}  // namespace walfold::projections::user_directory
