// Races at the fold level, driven step by step from the test with the real queue (Redis), the
// real fold and sink (MongoDB) and jobs the real reader produced from PostgreSQL:
//  - a worker's lease expires while it is still writing; another worker claims the same keys and
//    folds them; the first worker's writes land late. The per-document LSN guards must turn
//    those late writes into no-ops, and its acknowledgement must be rejected.
//  - two account keys of one user fold into the same user document at the same moments, from two
//    threads; the per-account guards (acct_lsn.<id>) must keep the user's totals exact.
// Every scenario ends with the read model exactly equal to PostgreSQL and `reconcile --verify`
// clean.
#include <gtest/gtest.h>

#include <barrier>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "projections/bank/bank_fold.h"
#include "projections/bank/schema.h"
#include "projections/bank/sink.h"
#include "queue/job.h"
#include "queue/job_queue.h"
#include "queue/redis.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

using namespace std::chrono_literals;

MongoConfig mongo_config(const BankEnv& env) {
  MongoConfig mc;
  mc.uri = servers().mongo_uri;
  mc.database = env.mongo_db;
  return mc;
}

// One claim, decoded and folded into a plan the way a worker does, but not written yet.
struct Folded {
  queue::Claim claim;
  projections::WritePlan plan;
  std::vector<queue::AckItem> acks;
  std::set<std::string> keys;
  std::size_t jobs = 0;
  std::size_t account_jobs = 0;  // of them, jobs of account keys (balances, windows, totals)
};

Folded claim_and_fold(queue::JobQueue& q, projections::MongoPool& pool, int max_keys, int max_jobs,
                      std::chrono::milliseconds lease) {
  Folded f;
  f.claim = q.claim(max_keys, max_jobs, lease);
  std::vector<std::string> keys;
  std::vector<std::vector<queue::Job>> jobs;
  for (const auto& k : f.claim.keys) {
    keys.push_back(k.key);
    f.keys.insert(k.key);
    auto& js = jobs.emplace_back();
    for (const auto& body : k.bodies) js.push_back(queue::decode_job(body));
  }
  projections::MongoSink sink(pool);
  projections::BankFold fold;
  for (auto& [id, snap] : sink.read_accounts(projections::BankFold::accounts_needed(keys)))
    fold.set_account(id, snap);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    queue::AckItem a{keys[i], static_cast<int>(jobs[i].size())};
    for (const auto& job : jobs[i]) fold.fold(job, f.plan);
    f.jobs += jobs[i].size();
    if (keys[i].rfind("a:", 0) == 0) f.account_jobs += jobs[i].size();
    f.acks.push_back(std::move(a));
  }
  return f;
}

void write_plan(projections::MongoPool& pool, projections::WritePlan& plan) {
  projections::MongoSink sink(pool);
  sink.write(plan);
}

TEST(Race, ExpiredLeaseLateWritesAreNoOpsAndTheirAckIsRejected) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  auto lg =
      env.cmd("loadgen", {"--users", "60", "--transactions", "1500", "--seed", "41",
                          "--update-share", "0.15", "--delete-share", "0.05", "--no-progress"});
  ASSERT_EQ(lg.status, 0) << lg.output;
  // Reader only: every job is in Redis, nothing folded. The test plays the workers.
  auto rd = env.cmd("run", {"--role", "reader", "--stop-at-lsn", "current"});
  ASSERT_EQ(rd.status, 0) << rd.output;

  queue::Redis redis_a(redis_config()), redis_b(redis_config());
  queue::JobQueue qa(redis_a, env.queue_prefix()), qb(redis_b, env.queue_prefix());
  projections::MongoPool pool(mongo_config(env));

  std::size_t late_account_jobs = 0;
  int rounds = 0;
  for (int round = 0; round < 8; ++round) {
    // Worker A claims the most urgent keys (a few jobs each) under a short lease, reads its
    // snapshots and folds ... then stalls past the lease. (User keys come first: profiles are
    // more urgent; 48 keys a round reach the accounts from the second round on.)
    Folded a = claim_and_fold(qa, pool, 48, 3, 300ms);
    if (a.claim.keys.empty()) break;
    std::this_thread::sleep_for(900ms);
    // Worker B takes the same keys over (their jobs kept their place) and folds more of them.
    Folded b = claim_and_fold(qb, pool, 48, 8, 60s);
    for (const auto& k : a.keys)
      ASSERT_TRUE(b.keys.count(k)) << "key " << k << " of the expired claim was not taken over";
    ASSERT_GE(b.jobs, a.jobs);
    if (round % 2 == 0) {
      // A's writes land after B's: every guarded update of A must match nothing.
      write_plan(pool, b.plan);
      write_plan(pool, a.plan);
    } else {
      // A's writes land between B's snapshot read and B's writes: B's updates for the jobs A
      // already wrote must match nothing, the later ones apply.
      write_plan(pool, a.plan);
      write_plan(pool, b.plan);
    }
    auto rejected = qa.ack(a.claim.fence, a.acks);
    ASSERT_EQ(std::set<std::string>(rejected.begin(), rejected.end()), a.keys)
        << "the expired claim's acknowledgement must be rejected for every key";
    ASSERT_TRUE(qb.ack(b.claim.fence, b.acks).empty())
        << "the current owner's acknowledgement was rejected";
    late_account_jobs += a.account_jobs;
    ++rounds;
  }
  EXPECT_EQ(rounds, 8);
  EXPECT_GT(late_account_jobs, 300u) << "too few account jobs were written late to prove much";

  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
}

// SQL for one user (id 1) with two USD accounts (1, 2) and `commits` commits of activity on
// them: deposits and withdrawals on either, transfers between them in one commit, corrections,
// moves of a transaction from one account to the other, deletes.
std::string two_account_activity(int commits, unsigned seed) {
  std::mt19937 rng(seed);
  auto amount = [&] {
    return std::to_string(std::uniform_int_distribution<int>(1, 99999)(rng)) + "." +
           std::to_string(std::uniform_int_distribution<int>(1000, 9999)(rng));
  };
  std::string sql =
      "BEGIN; INSERT INTO users (id, full_name, email) VALUES (1, 'Ada', 'ada@example.test'); "
      "INSERT INTO accounts (id, user_id, currency) VALUES (1, 1, 'USD'), (2, 1, 'USD'); "
      "COMMIT;\n";
  for (int i = 0; i < commits; ++i) {
    const int a = 1 + static_cast<int>(rng() % 2), other = 3 - a;
    const std::string acct = std::to_string(a), to = std::to_string(other);
    std::string body;
    switch (rng() % 10) {
      case 0:
      case 1:
      case 2:
        body = "INSERT INTO transactions (account_id, amount, kind) VALUES (" + acct + ", " +
               amount() + ", 'deposit');";
        break;
      case 3:
      case 4:
        body = "INSERT INTO transactions (account_id, amount, kind) VALUES (" + acct + ", " +
               amount() + ", 'withdrawal');";
        break;
      case 5:
      case 6: {
        std::string x = amount();
        body = "INSERT INTO transactions (account_id, amount, kind, transfer_id) VALUES (" + acct +
               ", " + x + ", 'withdrawal', md5('" + std::to_string(i) + "')::uuid), (" + to + ", " +
               x + ", 'deposit', md5('" + std::to_string(i) + "')::uuid);";
        break;
      }
      case 7:
        body =
            "UPDATE transactions SET amount = amount + 1.2500 WHERE id = (SELECT max(id) FROM "
            "transactions WHERE account_id = " +
            acct + ");";
        break;
      case 8:
        body = "UPDATE transactions SET account_id = " + to +
               " WHERE id = (SELECT min(id) FROM transactions WHERE account_id = " + acct + ");";
        break;
      default:
        body =
            "DELETE FROM transactions WHERE id = (SELECT min(id) FROM transactions WHERE "
            "account_id = " +
            acct + ");";
    }
    sql += "BEGIN; " + body + " COMMIT;\n";
  }
  return sql;
}

// One claim of every key of the queue, its jobs decoded per key, and the acknowledgement of all
// of them (sent by the test when it is done).
struct ClaimedJobs {
  queue::Claim claim;
  std::map<std::string, std::vector<queue::Job>> jobs;
  std::vector<queue::AckItem> acks;
};
ClaimedJobs claim_every_key(queue::JobQueue& q) {
  ClaimedJobs c;
  c.claim = q.claim(1000, 1000000, 600s);
  for (const auto& k : c.claim.keys) {
    queue::AckItem a{k.key, static_cast<int>(k.bodies.size())};
    for (const auto& body : k.bodies) c.jobs[k.key].push_back(queue::decode_job(body));
    c.acks.push_back(std::move(a));
  }
  return c;
}

// The user's own profile job first (as any worker might).
void fold_profile_jobs(projections::MongoPool& pool, const std::vector<queue::Job>& jobs) {
  projections::BankFold fold;
  projections::WritePlan plan;
  for (const auto& j : jobs) fold.fold(j, plan);
  write_plan(pool, plan);
}

// Two threads, one per account key, fold their key's jobs in small batches that start at the
// same moment (a barrier) and overlap the previous batch now and then (a redelivery), so the two
// keys' updates of their user interleave every way. Returns the batches written; `errors` gets
// what a thread threw.
class TwoKeysFoldingAtOnce {
 public:
  TwoKeysFoldingAtOnce(projections::MongoPool& pool,
                       const std::map<std::string, std::vector<queue::Job>>& jobs)
      : pool_(pool), jobs_(jobs) {}

  std::size_t run(const std::string& key1, const std::string& key2,
                  std::vector<std::string>& errors) {
    std::thread t1(&TwoKeysFoldingAtOnce::fold_key, this, key1, 1u),
        t2(&TwoKeysFoldingAtOnce::fold_key, this, key2, 2u);
    t1.join();
    t2.join();
    errors = errors_;
    return batches_;
  }

 private:
  void fold_key(const std::string& key, unsigned seed) {
    std::mt19937 rng(seed);
    const auto& js = jobs_.at(key);
    const auto [kind, account_id] = projections::parse_ordering_key(key);
    (void)kind;
    try {
      for (std::size_t pos = 0; pos < js.size();) {
        std::size_t start = pos > 0 && rng() % 3 == 0 ? pos - 1 : pos;  // redeliver one job
        std::size_t end = std::min(js.size(), pos + 1 + rng() % 4);
        sync_.arrive_and_wait();
        fold_batch(account_id, js, start, end);
        pos = end;
        std::lock_guard lock(mu_);
        ++batches_;
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(mu_);
      errors_.push_back(key + ": " + e.what());
    }
    sync_.arrive_and_drop();
  }

  // What a worker does with one batch of one account key: read, fold, write.
  void fold_batch(std::int64_t account_id, const std::vector<queue::Job>& js, std::size_t start,
                  std::size_t end) {
    projections::MongoSink sink(pool_);
    projections::BankFold fold;
    for (auto& [id, snap] : sink.read_accounts({account_id})) fold.set_account(id, snap);
    projections::WritePlan plan;
    for (std::size_t i = start; i < end; ++i) fold.fold(js[i], plan);
    sink.write(plan);
  }

  projections::MongoPool& pool_;
  const std::map<std::string, std::vector<queue::Job>>& jobs_;
  std::barrier<> sync_{2};
  std::mutex mu_;
  std::vector<std::string> errors_;
  std::size_t batches_ = 0;
};

// Before anything else touches MongoDB: user 1's USD total and both balances are exact.
void expect_user_total_and_balances_exact(const BankEnv& env) {
  const auto truth = pg_query(env.dsn,
                              "SELECT coalesce(sum(CASE kind WHEN 'deposit' THEN amount ELSE "
                              "-amount END), 0)::text FROM transactions");
  auto users = read_mongo_user_totals(servers().mongo_uri, env.mongo_db);
  ASSERT_TRUE(users.count(1) && users[1].count("USD"));
  EXPECT_EQ(users[1]["USD"], *Decimal::canonicalize(*truth[0][0]))
      << "user 1's USD total after two keys folded into it concurrently";
  auto accounts = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  for (std::int64_t id : {1, 2}) {
    auto want = pg_scalar(env.dsn,
                          "SELECT coalesce(sum(CASE kind WHEN 'deposit' THEN amount ELSE -amount "
                          "END), 0)::text FROM transactions WHERE account_id = " +
                              std::to_string(id));
    EXPECT_EQ(accounts[id].balance, *Decimal::canonicalize(want)) << "account " << id;
  }
}

TEST(Race, TwoAccountsOfOneUserFoldIntoItsTotalsConcurrently) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn, two_account_activity(600, 7));
  auto rd = env.cmd("run", {"--role", "reader", "--stop-at-lsn", "current"});
  ASSERT_EQ(rd.status, 0) << rd.output;

  queue::Redis redis(redis_config());
  queue::JobQueue q(redis, env.queue_prefix());
  projections::MongoPool pool(mongo_config(env));
  // One claim holds every key (a:1, a:2, u:1); its jobs are then folded by two threads, one per
  // account key, concurrently (TwoKeysFoldingAtOnce).
  auto claimed = claim_every_key(q);
  ASSERT_GT(claimed.jobs["a:1"].size(), 200u);
  ASSERT_GT(claimed.jobs["a:2"].size(), 200u);
  fold_profile_jobs(pool, claimed.jobs["u:1"]);
  std::vector<std::string> errors;
  const auto batches = TwoKeysFoldingAtOnce(pool, claimed.jobs).run("a:1", "a:2", errors);
  ASSERT_TRUE(errors.empty()) << errors.front();
  EXPECT_GT(batches, 150u);
  ASSERT_NO_FATAL_FAILURE(expect_user_total_and_balances_exact(env));

  EXPECT_TRUE(q.ack(claimed.claim.fence, claimed.acks).empty());
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
}

// Runs statements one by one (a worker's bulk write, cut where the test wants).
void write_statements(projections::MongoPool& pool, const char* collection,
                      std::vector<projections::Statement>& statements) {
  projections::MongoPool::Client client(pool);
  projections::Collection c = client.collection(collection);
  for (auto& s : statements) {
    auto opts = projections::make_bson();
    if (s.upsert) BSON_APPEND_BOOL(opts.get(), "upsert", true);
    bson_error_t err;
    bool ok = mongoc_collection_update_one(c.get(), s.filter.get(), s.update.get(), opts.get(),
                                           nullptr, &err);
    if (!ok) throw std::runtime_error(std::string("update failed: ") + err.message);
  }
}

// Found by this test (it failed with last_transactions [103 103 102]) and fixed: a late worker's
// last_transactions recompute (MongoSink::recompute_window) was guarded only by window_lsn and
// read the transactions collection, which may already hold the next job's half-written state.
// Here A (lease expired) holds the correction of tx 101; B redoes it and acks; B's next claim
// (insert of tx 103) has written its transactions document but not yet its accounts update when
// A's late writes land. The recompute now reads only documents written up to its LSN and is
// refused once the account holds a later job; a batch stamps it with the account's last job.
TEST(Race, LateWindowRecomputeWhileTheNextJobIsHalfWritten) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn,
           "BEGIN; INSERT INTO users (id, full_name, email) VALUES (1, 'Ada', 'a@x.test'); "
           "INSERT INTO accounts (id, user_id, currency) VALUES (1, 1, 'USD'); COMMIT;"
           "BEGIN; INSERT INTO transactions (id, account_id, amount, kind) VALUES (101, 1, 1, "
           "'deposit'); COMMIT;"
           "BEGIN; INSERT INTO transactions (id, account_id, amount, kind) VALUES (102, 1, 2, "
           "'deposit'); COMMIT;"
           "BEGIN; UPDATE transactions SET amount = 5 WHERE id = 101; COMMIT;"
           "BEGIN; INSERT INTO transactions (id, account_id, amount, kind) VALUES (103, 1, 3, "
           "'deposit'); COMMIT;");
  ASSERT_EQ(env.cmd("run", {"--role", "reader", "--stop-at-lsn", "current"}).status, 0);
  queue::Redis redis(redis_config());
  queue::JobQueue q(redis, env.queue_prefix());
  projections::MongoPool pool(mongo_config(env));
  // Everything up to tx 102, normally.
  {
    Folded f = claim_and_fold(q, pool, 10, 3, 60s);
    write_plan(pool, f.plan);
    ASSERT_TRUE(q.ack(f.claim.fence, f.acks).empty());
  }
  Folded a = claim_and_fold(q, pool, 1, 1, 300ms);  // the correction of 101
  ASSERT_EQ(a.jobs, 1u);
  std::this_thread::sleep_for(900ms);
  Folded b = claim_and_fold(q, pool, 1, 1, 60s);  // the same job, taken over
  write_plan(pool, b.plan);
  ASSERT_TRUE(q.ack(b.claim.fence, b.acks).empty());
  Folded b2 = claim_and_fold(q, pool, 1, 1, 60s);  // tx 103
  ASSERT_EQ(b2.jobs, 1u);
  write_statements(pool, "transactions", b2.plan.transactions);  // B2 is half-way...
  write_plan(pool, a.plan);                                      // ...when A's writes land
  write_statements(pool, "users", b2.plan.users);
  write_statements(pool, "accounts", b2.plan.accounts);
  ASSERT_TRUE(q.ack(b2.claim.fence, b2.acks).empty());
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
