// The configuration's `tables:` mapping as projections::TableNames: a projection's model name
// (TableSpec::model) -> the PostgreSQL table mapped to it, schema-qualified and quoted with
// PQescapeIdentifier on the connection the SQL runs on.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/pg.h"
#include "config/config.h"
#include "projections/read_model.h"

namespace walfold::tools {

// A PostgreSQL table as the mapping names it (unquoted), with the model it is mapped to.
struct TableName {
  std::string model;
  std::string schema = "public";
  std::string name;
};
// Every table of `cfg`'s mapping.
std::vector<TableName> mapped_tables(const Config& cfg);

// "schema"."name" with both parts quoted by PQescapeIdentifier on `conn`.
std::string quote_table(const PgConn& conn, const std::string& schema, const std::string& name);

class ConfigTables : public projections::TableNames {
 public:
  ConfigTables(std::vector<TableName> tables, const PgConn& conn)
      : tables_(std::move(tables)), conn_(conn) {}
  std::string qualified(std::string_view model) const override;

 private:
  std::vector<TableName> tables_;
  const PgConn& conn_;
};

}  // namespace walfold::tools
