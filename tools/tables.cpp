#include "tools/tables.h"

#include <memory>

#include "common/error.h"

namespace walfold::tools {
namespace {

std::string escape_identifier(const PgConn& conn, const std::string& name) {
  std::unique_ptr<char, void (*)(void*)> quoted(
      PQescapeIdentifier(conn.get(), name.data(), name.size()), PQfreemem);
  if (!quoted) {
    throw ConfigError("PostgreSQL " + conn.address() + ": cannot quote the table name '" + name +
                      "': " + pg_error_text(conn.get()));
  }
  return quoted.get();
}

}  // namespace

std::vector<TableName> mapped_tables(const Config& cfg) {
  std::vector<TableName> out;
  for (const auto& [_, t] : cfg.tables) out.push_back({t.model, t.schema, t.name});
  return out;
}

std::string quote_table(const PgConn& conn, const std::string& schema, const std::string& name) {
  return escape_identifier(conn, schema) + "." + escape_identifier(conn, name);
}

std::string ConfigTables::qualified(std::string_view model) const {
  for (const auto& t : tables_)
    if (t.model == model) return quote_table(conn_, t.schema, t.name);
  throw ConfigError("no table is configured for the " + std::string(model) +
                    " model (tables: in the configuration)");
}

}  // namespace walfold::tools
