#include "projections/bank/schema.h"

namespace walfold::projections::bank {

const std::vector<TableSpec>& tables() {
  using T = ColumnType;
  // accounts and transactions need the old row of an UPDATE/DELETE: a balance takes the old
  // amount out, an account moving to another user takes its balance along.
  static const std::vector<TableSpec> specs{
      {"users", {{"id", T::Integer}, {"full_name"}, {"email"}, {"created_at"}}, false},
      {"accounts",
       {{"id", T::Integer}, {"user_id", T::Integer}, {"currency"}, {"created_at"}},
       true},
      {"transactions",
       {{"id", T::Integer},
        {"account_id", T::Integer},
        {"amount", T::Numeric, "numeric (money is exact)"},
        {"kind"},
        {"transfer_id"},
        {"created_at"}},
       true},
  };
  return specs;
}

const char* table_name(std::uint32_t table) {
  return table < kTableCount ? tables()[table].model.c_str() : "?";
}

int column_count(std::uint32_t table) {
  return table < kTableCount ? static_cast<int>(tables()[table].columns.size()) : 0;
}

const char* column_name(std::uint32_t table, int column) {
  if (column < 0 || column >= column_count(table)) return "?";
  return tables()[table].columns[static_cast<std::size_t>(column)].name.c_str();
}

}  // namespace walfold::projections::bank
