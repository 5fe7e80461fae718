// The daemon under systemd's notify protocol: a datagram socket stands in for systemd
// (NOTIFY_SOCKET), and the test asserts the order READY -> (WATCHDOG...) -> RELOADING/READY on
// SIGHUP -> STOPPING, as Type=notify with WatchdogSec= expects.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <thread>

#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

class NotifySocket {
 public:
  NotifySocket() {
    path_ = "/tmp/wf-notify-" + std::to_string(getpid()) + "-" + std::to_string(counter_++);
    unlink(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("bind " + path_);
    timeval tv{0, 200000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // Collects messages until one contains `needle` or the timeout passes.
  bool wait_for(const std::string& needle, std::chrono::seconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (receive() && messages_.back().find(needle) != std::string::npos) return true;
    }
    return false;
  }
  // Collects every message that arrives for `duration`.
  void collect_for(std::chrono::milliseconds duration) {
    auto end = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < end) receive();
  }
  const std::vector<std::string>& messages() const { return messages_; }
  // When each message arrived.
  const std::vector<std::chrono::steady_clock::time_point>& arrivals() const { return arrivals_; }
  std::string all() const {
    std::string s;
    for (const auto& m : messages_) s += "[" + m + "] ";
    return s;
  }

 private:
  bool receive() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf - 1, 0);
    if (n <= 0) return false;
    messages_.emplace_back(buf, static_cast<std::size_t>(n));
    arrivals_.push_back(std::chrono::steady_clock::now());
    return true;
  }
  static inline int counter_ = 0;
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
  std::vector<std::chrono::steady_clock::time_point> arrivals_;
};

// requirepass on the shared Redis for the lifetime of this object (the harness's redis_cmd
// sends no AUTH, so the reset goes through a connection of its own).
class RedisRequirePass {
 public:
  explicit RedisRequirePass(std::string password) : password_(std::move(password)) {
    const auto reply = redis_cmd({"CONFIG", "SET", "requirepass", password_});
    if (reply != "OK") throw std::runtime_error("CONFIG SET requirepass: " + reply);
  }
  ~RedisRequirePass() {
    const auto& s = servers();
    timeval tv{5, 0};
    redisContext* c = redisConnectWithTimeout(s.redis_host.c_str(), s.redis_port, tv);
    if (c == nullptr) return;
    if (c->err == 0) {
      freeReplyObject(redisCommand(c, "AUTH %s", password_.c_str()));
      freeReplyObject(redisCommand(c, "CONFIG SET requirepass %s", ""));
    }
    redisFree(c);
  }
  RedisRequirePass(const RedisRequirePass&) = delete;
  RedisRequirePass& operator=(const RedisRequirePass&) = delete;

 private:
  std::string password_;
};

std::string random_secret(const std::string& prefix) {
  std::random_device rd;
  std::string s = prefix;
  for (int i = 0; i < 16; ++i) s += "0123456789abcdef"[rd() % 16];
  // The suite-wide scan (tests/harness/scan_secrets.sh) looks for it in every captured output.
  std::ofstream(servers().dir + "/test-secrets", std::ios::app) << s << "\n";
  return s;
}

std::string secret_file(const BankEnv& env, const std::string& name, const std::string& value) {
  const std::string path = env.dir + "/" + name + ".secret";  // the scan skips *.secret
  std::ofstream(path) << value << "\n";
  chmod(path.c_str(), 0600);
  return path;
}

TEST(Systemd, NotifiesReadyWatchdogReloadAndStopping) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  NotifySocket sd;
  Process::Options opts;
  opts.env["NOTIFY_SOCKET"] = sd.path();
  opts.env["WATCHDOG_USEC"] = "1500000";  // 1.5 s: pings expected about every 0.5 s
  Process daemon({walfold_binary(), "run", "--config", env.config_path}, opts);
  ASSERT_TRUE(sd.wait_for("READY=1", std::chrono::seconds(60))) << sd.all() << daemon.output();
  ASSERT_TRUE(sd.wait_for("WATCHDOG=1", std::chrono::seconds(10))) << sd.all();
  ASSERT_TRUE(sd.wait_for("WATCHDOG=1", std::chrono::seconds(10)))
      << "the watchdog is fed repeatedly: " << sd.all();
  // STATUS= (what `systemctl status` shows) says where the stream stands, from observe/'s
  // sampler: the confirmed position and the lag.
  ASSERT_TRUE(sd.wait_for("STATUS=confirmed ", std::chrono::seconds(30))) << sd.all();
  {
    std::string status;
    for (const auto& msg : sd.messages())
      if (auto at = msg.find("STATUS=confirmed "); at != std::string::npos) status = msg.substr(at);
    EXPECT_NE(status.find(", lag "), std::string::npos) << status;
    EXPECT_NE(status.find(" rows/s"), std::string::npos) << status;
  }

  daemon.signal(SIGHUP);
  ASSERT_TRUE(sd.wait_for("RELOADING=1", std::chrono::seconds(10))) << sd.all();
  ASSERT_TRUE(sd.wait_for("READY=1", std::chrono::seconds(10)))
      << "READY after the reload: " << sd.all();
  ASSERT_TRUE(daemon.wait_for_output("reloaded", std::chrono::seconds(10))) << daemon.output();

  daemon.signal(SIGTERM);
  ASSERT_TRUE(sd.wait_for("STOPPING=1", std::chrono::seconds(30))) << sd.all();
  auto st = daemon.wait(std::chrono::seconds(60));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(*st, 0) << daemon.output();
  // Order: the first READY comes before any WATCHDOG, and STOPPING is last.
  const auto& m = sd.messages();
  std::size_t first_ready = m.size(), first_dog = m.size();
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (first_ready == m.size() && m[i].find("READY=1") != std::string::npos) first_ready = i;
    if (first_dog == m.size() && m[i].find("WATCHDOG=1") != std::string::npos) first_dog = i;
  }
  EXPECT_LT(first_ready, first_dog) << sd.all();
  EXPECT_NE(m.back().find("STOPPING=1"), std::string::npos) << sd.all();
}

TEST(Systemd, AConfigErrorExits78WithoutReady) {
  NotifySocket sd;
  char tmpl[] = "/tmp/wf-badcfg-XXXXXX";
  int fd = mkstemp(tmpl);
  const std::string bad = "postgres: {dsn: x}\nworkers: {count: -3}\n";
  ASSERT_EQ(write(fd, bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
  close(fd);
  auto r =
      run_command({walfold_binary(), "run", "--config", tmpl}, 30, {{"NOTIFY_SOCKET", sd.path()}});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_NE(r.output.find(std::string(tmpl) + ":2:"), std::string::npos) << r.output;
  EXPECT_FALSE(sd.wait_for("READY=1", std::chrono::seconds(1))) << sd.all();
}

// Bug #10.5: the watchdog watches walfold's own loops, not the servers. With MongoDB stalled
// (the stand-in SIGSTOPped) for twice WatchdogSec under load, workers sit in MongoDB calls whose
// socket timeout (30 s) outlasts the stall; they are waiting, not stuck, so the pings go on.
TEST(Systemd, TheWatchdogIsFedWhileMongoDbIsStalled) {
  if (servers().mongo_is_real) GTEST_SKIP() << "pause-mongo controls the stand-in only";
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "200", "--transactions", "0", "--no-progress"}).status,
            0);
  const auto watchdog = std::chrono::seconds(8);
  NotifySocket sd;
  Process::Options opts;
  opts.env["NOTIFY_SOCKET"] = sd.path();
  opts.env["WATCHDOG_USEC"] =
      std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(watchdog).count());
  Process daemon({walfold_binary(), "run", "--config", env.config_path}, opts);
  ASSERT_TRUE(sd.wait_for("READY=1", std::chrono::seconds(60))) << sd.all() << daemon.output();
  const std::size_t ready = sd.messages().size() - 1;
  Process load({walfold_binary(), "loadgen", "--config", env.config_path, "--reuse",
                "--transactions", "8000", "--rate", "200", "--seed", "5", "--no-progress"});
  sd.collect_for(std::chrono::seconds(3));

  MongoPause pause;  // never leaves the shared stand-in stopped, whatever fails below
  sd.collect_for(2 * watchdog);
  pause.resume();
  sd.collect_for(std::chrono::seconds(4));
  const auto end = std::chrono::steady_clock::now();

  std::vector<std::chrono::steady_clock::time_point> pings{sd.arrivals()[ready]};
  for (std::size_t i = ready + 1; i < sd.messages().size(); ++i)
    if (sd.messages()[i].find("WATCHDOG=1") != std::string::npos) pings.push_back(sd.arrivals()[i]);
  pings.push_back(end);
  std::chrono::steady_clock::duration longest{0};
  for (std::size_t i = 1; i < pings.size(); ++i)
    longest = std::max(longest, pings[i] - pings[i - 1]);
  RecordProperty(
      "longest_ping_gap_ms",
      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(longest).count()));
  EXPECT_LE(longest, watchdog / 2)
      << "longest gap between pings "
      << std::chrono::duration_cast<std::chrono::milliseconds>(longest).count() << " ms ("
      << pings.size() - 2 << " pings): " << daemon.output();
  EXPECT_TRUE(daemon.is_running()) << daemon.output();
  EXPECT_EQ(daemon.output().find("not feeding the watchdog"), std::string::npos) << daemon.output();
  load.stop();
  stop_cleanly(daemon);
}

// Bug #10.6: READY=1 only once every server accepted walfold's credentials; a refusal is
// permanent (exit 77, EX_NOPERM) and names the server and its address, never the secret.
TEST(Systemd, ARefusedRedisPasswordExits77WithoutReady) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const std::string right = random_secret("RedisRight-"), wrong = random_secret("RedisWrong-");
  const std::string prefix_line = "  prefix: " + env.redis_prefix + "\n";
  const auto wrong_cfg = env.config_variant(
      "redis-wrong", prefix_line,
      prefix_line + "  password_file: " + secret_file(env, "redis-wrong", wrong) + "\n");
  const auto right_cfg = env.config_variant(
      "redis-right", prefix_line,
      prefix_line + "  password_file: " + secret_file(env, "redis-right", right) + "\n");
  const std::string address = servers().redis_host + ":" + std::to_string(servers().redis_port);
  RedisRequirePass guard(right);
  for (const auto& [cfg, what] :
       {std::pair{wrong_cfg, "a wrong password"}, std::pair{env.config_path, "no password"}}) {
    SCOPED_TRACE(what);
    NotifySocket sd;
    auto r =
        run_command({walfold_binary(), "run", "--config", cfg}, 60, {{"NOTIFY_SOCKET", sd.path()}});
    EXPECT_EQ(r.status, 77) << r.output;
    EXPECT_NE(r.output.find("redis at " + address + " refused walfold's credentials"),
              std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find(right), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find(wrong), std::string::npos) << r.output;
    EXPECT_FALSE(sd.wait_for("READY=1", std::chrono::seconds(1))) << sd.all();
  }
  // The right password: READY, and a clean stop.
  NotifySocket sd;
  Process::Options opts;
  opts.env["NOTIFY_SOCKET"] = sd.path();
  Process daemon({walfold_binary(), "run", "--config", right_cfg}, opts);
  EXPECT_TRUE(sd.wait_for("READY=1", std::chrono::seconds(60))) << sd.all() << daemon.output();
  stop_cleanly(daemon);
  EXPECT_EQ(daemon.output().find(right), std::string::npos);
}

TEST(Systemd, ARefusedPostgresPasswordExits77WithoutReady) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const std::string wrong = random_secret("PgWrong-");
  const std::string role_dsn = dsn_with(env.dsn, "user", "walfold");
  const auto cfg = env.config_variant("pg-wrong", "  dsn: \"" + env.dsn + "\"\n",
                                      "  dsn: \"" + role_dsn + "\"\n  password_file: " +
                                          secret_file(env, "pg-wrong", wrong) + "\n");
  NotifySocket sd;
  auto r =
      run_command({walfold_binary(), "run", "--config", cfg}, 60, {{"NOTIFY_SOCKET", sd.path()}});
  EXPECT_EQ(r.status, 77) << r.output;
  EXPECT_NE(
      r.output.find("postgresql at " + servers().pg_host + ":" + std::to_string(servers().pg_port)),
      std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("refused walfold's credentials"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(wrong), std::string::npos) << r.output;
  EXPECT_FALSE(sd.wait_for("READY=1", std::chrono::seconds(1))) << sd.all();
}

}  // namespace
}  // namespace walfold::test
