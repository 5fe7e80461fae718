// The fold's own cost (issue #12): what a worker does with a claimed batch besides waiting for
// Redis and MongoDB — decode the job bodies, fold them through BankFold into a WritePlan (the
// guarded statements of the three bulk writes) — without any server. items_per_second is
// changes per second on one core; `mongo_cmds_per_row` is the write commands the plan needs
// (one ordered bulk per collection with statements) per source row.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "projections/bank/bank_fold.h"
#include "projections/bank/schema.h"
#include "queue/job.h"

namespace {

using namespace walfold;
using projections::AccountSnapshot;
using projections::BankFold;
using projections::UserSnapshot;
using projections::WritePlan;
using queue::Change;
using queue::Job;

using queue::Value;

Value t(std::string s) {
  return {Value::Text, std::move(s)};
}

// A claimed batch as the worker sees it: `keys` accounts (10 users), each with `jobs` jobs of
// `rows` transaction inserts (deposits and withdrawals; every `transfer_every`-th job a transfer
// leg), bodies encoded as the reader writes them.
struct Batch {
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> bodies;
  std::size_t changes = 0;
};

Batch make_batch(int keys, int jobs, int rows) {
  Batch b;
  Lsn lsn = 0x1000000;
  long long tx_id = 1;
  for (int k = 0; k < keys; ++k) {
    b.keys.push_back("a:" + std::to_string(k + 1));
    b.bodies.emplace_back();
  }
  for (int j = 0; j < jobs; ++j)
    for (int k = 0; k < keys; ++k) {
      Job job;
      job.key = b.keys[static_cast<std::size_t>(k)];
      job.commit_lsn = lsn;
      job.end_lsn = lsn + 0x40;
      lsn += 0x100;
      job.commit_time_us = 1764000000000000LL + static_cast<std::int64_t>(lsn);
      for (int r = 0; r < rows; ++r, ++tx_id)
        job.changes.push_back(Change{
            projections::bank::kTransactions,
            'I',
            {t(std::to_string(tx_id)), t(std::to_string(k + 1)),
             t(tx_id % 3 ? "125.5000" : "-40.2500"), t(tx_id % 3 ? "deposit" : "withdrawal"),
             tx_id % 5 ? Value{Value::Null, ""} : t("77"), t("2026-11-23 02:19:57.123456+00")},
            {}});
      b.changes += job.changes.size();
      b.bodies[static_cast<std::size_t>(k)].push_back(queue::encode_job(job));
    }
  return b;
}

void fold_batch(benchmark::State& state) {
  const int keys = static_cast<int>(state.range(0)), jobs = static_cast<int>(state.range(1)),
            rows = static_cast<int>(state.range(2));
  const Batch b = make_batch(keys, jobs, rows);
  std::size_t statements = 0, commands = 0;
  for (auto _ : state) {
    std::vector<std::vector<Job>> decoded(b.bodies.size());
    std::vector<const Job*> all;
    for (std::size_t k = 0; k < b.bodies.size(); ++k)
      for (const auto& body : b.bodies[k]) decoded[k].push_back(queue::decode_job(body));
    for (const auto& js : decoded)
      for (const auto& j : js) all.push_back(&j);
    BankFold fold;
    for (auto id : BankFold::accounts_needed(b.keys)) {
      AccountSnapshot s;
      s.exists = true;
      s.user_id = 1 + id % 10;
      s.currency = "EUR";
      s.balance = *Decimal::parse("1000.0000");
      s.applied_lsn = 1;
      fold.set_account(id, s);
    }
    for (auto id : fold.users_needed(all)) {
      UserSnapshot u;
      u.balances["EUR"] = *Decimal::parse("10000.0000");
      fold.set_user(id, std::move(u));
    }
    WritePlan plan;
    for (const auto& js : decoded)
      for (const auto& j : js) fold.fold(j, plan);
    statements = plan.transactions.size() + plan.users.size() + plan.accounts.size();
    commands = !plan.transactions.empty() + !plan.users.empty() + !plan.accounts.empty();
    benchmark::DoNotOptimize(plan);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * b.changes));
  state.counters["changes"] = static_cast<double>(b.changes);
  state.counters["stmts_per_row"] =
      static_cast<double>(statements) / static_cast<double>(b.changes);
  state.counters["mongo_cmds_per_row"] =
      static_cast<double>(commands) / static_cast<double>(b.changes);
}

// Claims as the worker makes them (workers.batch_keys 256, batch_jobs_per_key 64): a backlog
// with several one-row jobs per account (OLTP), one job per account (bulk), and big jobs
// (2,000-row transactions on ten accounts).
BENCHMARK(fold_batch)
    ->ArgNames({"keys", "jobs", "rows"})
    ->Args({256, 8, 1})
    ->Args({256, 1, 1})
    ->Args({10, 1, 2000})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
