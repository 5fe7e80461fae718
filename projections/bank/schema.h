// The bank projection's source tables: users, accounts, transactions, and the columns a job
// carries for each (queue::Change rows are indexed by the enums below).
#pragma once

#include <cstdint>
#include <vector>

#include "projections/projection.h"

namespace walfold::projections::bank {

// Table indexes (queue::Change::table), in the order of tables().
enum Table : std::uint32_t { kUsers, kAccounts, kTransactions, kTableCount };

// Columns, per table, in this order:
//   users:        id, full_name, email, created_at
//   accounts:     id, user_id, currency, created_at
//   transactions: id, account_id, amount, kind, transfer_id, created_at
enum UserField { kUserId, kUserFullName, kUserEmail, kUserCreatedAt, kUserFieldCount };
enum AccountField { kAcctId, kAcctUserId, kAcctCurrency, kAcctCreatedAt, kAcctFieldCount };
enum TxField {
  kTxId,
  kTxAccountId,
  kTxAmount,
  kTxKind,
  kTxTransferId,
  kTxCreatedAt,
  kTxFieldCount
};

// How many transactions an account document lists (`last_transactions`, newest first by
// created_at then id): the fold, the window recompute, the snapshot and the canonical form all
// use this one number.
inline constexpr int kLastTransactions = 3;

// The TableSpecs of the bank (models "users", "accounts", "transactions").
const std::vector<TableSpec>& tables();
// "users", "accounts", "transactions"; "?" for an index out of range.
const char* table_name(std::uint32_t table);
int column_count(std::uint32_t table);                     // 0 for an index out of range
const char* column_name(std::uint32_t table, int column);  // "?" when out of range

// The bank schema shipped with walfold (examples/bank/schema.sql, embedded at build time).
const char* schema_sql();

}  // namespace walfold::projections::bank
