// A job is one PostgreSQL transaction's changes for one ordering key (an account or a user),
// in row order. Jobs are what the reader writes to Redis and what a worker folds into MongoDB.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/lsn.h"
#include "config/config.h"

namespace walfold::queue {

// Fields the bank projection needs, per model, in this order:
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
int field_count(Model m);
const char* field_name(Model m, int field);

struct Value {
  enum Kind : char { Null = 'n', Unchanged = 'u', Text = 't', Missing = 'm' };
  Kind kind = Missing;  // Missing: the column is not in the tuple (old key only, or dropped)
  std::string text;
};

struct Change {
  Model model;
  char op;                     // 'I' insert, 'U' update, 'D' delete
  std::vector<Value> new_row;  // insert/update
  std::vector<Value> old_row;  // update/delete: old values ('O' full row or 'K' key only)
};

struct Job {
  Lsn commit_lsn = 0;  // start of the commit record: the checkpoint unit
  Lsn end_lsn = 0;     // end of the commit record
  std::int64_t commit_time_us = 0;
  std::string key;  // ordering key: "a:<account id>" or "u:<user id>"
  std::vector<Change> changes;
};

std::string encode_job(const Job& job);
// Throws DataError naming the offset on malformed input.
Job decode_job(std::string_view encoded);

}  // namespace walfold::queue
