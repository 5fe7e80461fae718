// The user directory's read model from the tables (projections/read_model.h): loading it whole
// at a snapshot, its canonical form, and repairing drifted documents.
#pragma once

#include "projections/read_model.h"
#include "projections/user_directory/user_directory.h"

namespace walfold::projections::user_directory {

// The canonical form's one section: a record per live document, its id the document's _id.
inline constexpr const char* kSection = "user_directory";

class DirectoryReadModel : public SnapshotLoad, public CanonicalForm, public SnapshotRepair {
 public:
  explicit DirectoryReadModel(const UserDirectoryProjection& p) : p_(p) {}
  void prepare(mongo::MongoPool& pool) const override;
  LoadStats load(PgRead& pg, mongo::MongoPool& pool, Lsn guard,
                 std::atomic<std::uint64_t>* written) const override;
  void from_postgres(PgRead& pg, const RecordSink& each) const override;
  void from_mongo(DocumentScan& mongo, const RecordSink& each) const override;
  void repair(PgRead& pg, mongo::MongoPool& pool, Lsn consistent_point,
              RepairLog& log) const override;

 private:
  const UserDirectoryProjection& p_;
};

}  // namespace walfold::projections::user_directory
