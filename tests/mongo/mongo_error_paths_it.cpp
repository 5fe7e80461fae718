// MongoDB failing mid-cursor (tests/harness/mongo_failing_cursor.py: every find answers a first
// batch and an open cursor, every getMore fails): each reader of a cursor throws an error naming
// the server's message and frees the cursor. Run under the sanitizer build (detect_leaks=1) these
// are the leak tests of the error paths: a cursor opened in MongoWalk's constructor (repair)
// leaked when its first batch was followed by a failing getMore.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/config.h"
#include "projections/bank/bank.h"
#include "projections/bank/bank_fold.h"
#include "projections/bank/sink.h"
#include "projections/mongo.h"
#include "projections/registry.h"
#include "reconcile/rebuild.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

constexpr const char* kGetMoreFails = "mongo_failing_cursor: getMore fails on purpose";

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The failing server, stopped (and its process group killed) when this goes.
class FailingCursorMongo {
 public:
  explicit FailingCursorMongo(const std::vector<std::string>& first_batch = {}) {
    std::vector<std::string> argv{"/usr/bin/python3",
                                  source_dir() + "/tests/harness/mongo_failing_cursor.py"};
    for (const auto& d : first_batch) {
      argv.push_back("--doc");
      argv.push_back(d);
    }
    proc_ = std::make_unique<Process>(argv);
    wait_until(
        [&] {
          auto out = proc_->output();
          auto at = out.find("port ");
          if (at != std::string::npos && out.find('\n', at) != std::string::npos)
            port_ = std::stoi(out.substr(at + 5));
          return port_ > 0 || !proc_->is_running();
        },
        std::chrono::seconds(60));
    if (port_ <= 0)
      throw std::runtime_error("mongo_failing_cursor.py did not start: " + proc_->output());
  }
  MongoConfig config() const {
    MongoConfig mc;
    mc.uri = "mongodb://localhost:" + std::to_string(port_) + "/?serverSelectionTimeoutMS=10000";
    mc.database = "walfold_failing";
    mc.write_concern = "1";
    return mc;
  }

 private:
  std::unique_ptr<Process> proc_;
  int port_ = 0;
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MongoErrorPaths, AWindowRecomputeFailingMidCursorThrowsAndFreesTheCursor) {
  FailingCursorMongo mongo({R"({"_id": {"$numberLong": "11"}, "account_id": {"$numberLong": "5"},
      "kind": "deposit", "amount": {"$numberDecimal": "1"}, "created_at_us": {"$numberLong": "7"},
      "applied_lsn": {"$numberLong": "1"}, "deleted": false})"});
  projections::MongoPool pool(mongo.config());
  projections::MongoSink sink(pool);
  projections::WritePlan plan;
  plan.dirty_windows[5] = 100;  // one document, then getMore for the next two
  std::string msg = error_of([&] { sink.write(plan); });
  EXPECT_TRUE(contains(msg, "reading transactions failed")) << msg;
  EXPECT_TRUE(contains(msg, kGetMoreFails)) << msg;
}

TEST(MongoErrorPaths, AnAccountReadFailingMidCursorThrowsAndFreesTheCursor) {
  FailingCursorMongo mongo({R"({"_id": {"$numberLong": "5"}, "user_id": {"$numberLong": "1"},
      "currency": "USD", "balance": {"$numberDecimal": "1"}})"});
  projections::MongoPool pool(mongo.config());
  projections::MongoSink sink(pool);
  std::string msg = error_of([&] { sink.read_accounts({5, 6}); });
  EXPECT_TRUE(contains(msg, "reading accounts failed")) << msg;
  EXPECT_TRUE(contains(msg, kGetMoreFails)) << msg;
}

TEST(MongoErrorPaths, ADocumentRefusedInsideTheCursorLoopFreesTheCursor) {
  FailingCursorMongo mongo({R"({"_id": {"$numberLong": "5"}, "user_id": {"$numberLong": "1"},
      "currency": "USD", "balance": {"$numberDecimal": "NaN"}})"});
  projections::MongoPool pool(mongo.config());
  projections::MongoSink sink(pool);
  std::string msg = error_of([&] { sink.read_accounts({5}); });
  EXPECT_TRUE(contains(msg, "holds a balance that is not a finite decimal")) << msg;
}

// repair walks each collection with a cursor opened in MongoWalk's constructor, which reads the
// first document at once: an empty first batch makes that a getMore, which fails inside the
// constructor (the cursor leaked there before it was a member that frees itself).
TEST(MongoErrorPaths, ARepairWhoseFirstGetMoreFailsFreesTheCursor) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  auto load =
      env.cmd("loadgen", {"--users", "5", "--transactions", "40", "--seed", "3", "--no-progress"});
  ASSERT_EQ(load.status, 0) << load.output;
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();

  FailingCursorMongo mongo;  // every first batch empty
  Config cfg = projections::load_config(env.config_path);
  cfg.mongodb = mongo.config();
  projections::MongoPool pool(cfg.mongodb);
  std::ostringstream out;
  std::string msg = error_of([&] {
    reconcile::repair(cfg, projections::bank::projection(), pool, out, std::chrono::seconds(120));
  });
  EXPECT_TRUE(contains(msg, kGetMoreFails)) << msg;
  EXPECT_EQ(out.str(), "");
  stop_cleanly(daemon);
}

}  // namespace
}  // namespace walfold::test
