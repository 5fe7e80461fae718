// walfold loadgen: drives the bank schema (examples/bank/schema.sql) with a realistic mix of
// writes so the CDC pipeline has something to fold.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/pg.h"
#include "projections/projection.h"

namespace walfold::projections::bank {

struct LoadgenOptions {
  PgConnInfo pg_dsn;  // libpq connection string or URI, and the password apart from it
  // The bank's tables as the `tables:` mapping names them, quoted on the run's connection: every
  // statement goes to them.
  std::function<std::unique_ptr<TableNames>(const PgConn&)> tables;
  long users = 1000;          // users to create first (each gets 1-3 accounts in random currencies)
  long transactions = 10000;  // bank operations to run after users/accounts exist
  double rate = 0;            // operations per second; 0 = as fast as possible
  double transfer_share = 0.2, update_share = 0.05,
         delete_share = 0.03;  // rest: deposits (60%) / withdrawals (40%)
  std::vector<std::string> currencies{"USD", "EUR", "GBP"};
  std::uint64_t seed = 0;  // 0 = random
  int ops_per_commit = 1;  // >1 groups several operations into one PostgreSQL transaction
  bool progress = true;  // progress line on stderr (\r-updated, ~4x per second: done/total, ops/s,
                         // ETA); plain lines when stderr is not a TTY, at most every 2 s
  bool reuse_existing =
      false;  // when true and users/accounts already exist, use them instead of creating new
};

// users/accounts: how many this run worked with (created, or found when reuse_existing).
// deposits..deletes: operations committed, by kind. A transfer whose currency has fewer than two
// accounts, and an update/delete with no known transaction to touch, run as a deposit and count
// as one. seconds: wall-clock time of the operations phase (after users/accounts exist).
struct LoadgenStats {
  long users, accounts, deposits, withdrawals, transfers, updates, deletes;
  double seconds;
};

// Emails are user-<seed>-<n>@example.test, so two runs with the same explicit seed (and
// reuse_existing false) collide on users.email: that is reported as an error naming the seed.
// Updates (corrections) and deletes touch transactions created by this run (plus, with
// reuse_existing, up to the 100,000 newest existing ones); both apply to the two legs of a
// transfer together, in one statement. About 1 in 10 corrections of a plain deposit/withdrawal
// also flips its kind. Each operation is one statement; with ops_per_commit == 1 each is its own
// transaction. Statements are prepared and pipelined (up to 256 in flight), so throughput with
// ops_per_commit == 1 is bounded by the server's commit (WAL flush) rate. `rate` paces whole
// groups of ops_per_commit operations (a group is sent at once when it is due).
// Throws std::runtime_error (walfold::ConfigError for bad options, UnavailableError when the
// server cannot be reached or the connection is lost, walfold::PgError when a statement fails)
// with a message naming the server.
LoadgenStats run_loadgen(const LoadgenOptions& options);

// `walfold loadgen` for the bank (projection.h: LoadGenerator): the options above on the command
// line, run_loadgen, and its counts as the summary line.
class BankLoadGenerator : public LoadGenerator {
 public:
  void add_options(CLI::App& command) override;
  std::string run(const LoadTarget& target) override;

 private:
  LoadgenOptions options_;
};

}  // namespace walfold::projections::bank
