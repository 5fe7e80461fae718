// A job is one PostgreSQL transaction's changes for one ordering key, in row order. Jobs are what
// the reader writes to Redis and what a worker folds into MongoDB.
//
// The job format is generic: a change names its table by index into the projection's table list
// (projections/projection.h, Projection::tables()) and carries that table's columns in the order
// the projection lists them. Which tables, columns and keys exist is the projection's business.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/lsn.h"

namespace walfold::queue {

struct Value {
  enum Kind : char { Null = 'n', Unchanged = 'u', Text = 't', Missing = 'm' };
  Kind kind = Missing;  // Missing: the column is not in the tuple (old key only, or dropped)
  std::string text;
};

// One row change of a projected table.
struct Change {
  std::uint32_t table = 0;     // index into the projection's tables()
  char op = 'I';               // 'I' insert, 'U' update, 'D' delete
  std::vector<Value> new_row;  // insert/update: the table's columns, in the projection's order
  std::vector<Value> old_row;  // update/delete: old values ('O' full row or 'K' key only)
};

struct Job {
  Lsn commit_lsn = 0;  // start of the commit record: the checkpoint unit
  Lsn end_lsn = 0;     // end of the commit record
  std::int64_t commit_time_us = 0;
  std::string key;  // ordering key (the projection's Route::key); opaque to the queue
  std::vector<Change> changes;
};

// The body format starts with "J2" (generic row changes). A body of an older format ("J1", the
// bank-only format of walfold before the projection interface) is refused by decode_job with a
// DataError that says so: drain the queue before upgrading (README.md, "Upgrading").
std::string encode_job(const Job& job);
// Throws DataError naming the offset on malformed input.
Job decode_job(std::string_view encoded);

}  // namespace walfold::queue
