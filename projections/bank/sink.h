// MongoDB side of a worker batch: read the account snapshots the fold needs, send the plan as
// three ordered bulk writes (transactions, users, accounts: a document in `accounts` at LSN L
// means the whole job L is in MongoDB), then recompute last_transactions where a correction
// made the pushed window inexact.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "projections/bank/bank_fold.h"
#include "projections/mongo.h"

namespace walfold::projections {

struct SinkStats {
  std::uint64_t write_commands = 0;  // bulk write round trips
  std::uint64_t statements = 0;
  std::uint64_t read_commands = 0;
};

class MongoSink {
 public:
  explicit MongoSink(MongoPool& pool);
  std::map<std::int64_t, AccountSnapshot> read_accounts(const std::vector<std::int64_t>& ids);
  std::map<std::int64_t, UserSnapshot> read_users(const std::vector<std::int64_t>& ids);
  // Throws UnavailableError on connection problems, TransientError on other read and write
  // errors, DataError on a document MongoDB refused (mongo/pool.h: the room's error table).
  void write(WritePlan& plan);
  // Creates the indexes the read model needs (idempotent).
  void ensure_indexes();
  const SinkStats& stats() const { return stats_; }

 private:
  void bulk(const char* collection, std::vector<Statement>& statements);
  void for_each_by_id(const char* collection, const std::vector<std::int64_t>& ids,
                      std::initializer_list<const char*> fields,
                      const std::function<void(bson_iter_t&)>& fn);
  // Throws DataError when a user update of the plan was refused by its exactness bound.
  void check_totals(const WritePlan& plan);
  void recompute_window(std::int64_t account_id, Lsn lsn, std::vector<Statement>& out);
  MongoPool& pool_;
  MongoPool::Client client_;
  SinkStats stats_;
};

}  // namespace walfold::projections
