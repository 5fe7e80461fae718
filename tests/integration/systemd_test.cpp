// The daemon under systemd's notify protocol: a datagram socket stands in for systemd
// (NOTIFY_SOCKET), and the test asserts the order READY -> (WATCHDOG...) -> RELOADING/READY on
// SIGHUP -> STOPPING, as Type=notify with WatchdogSec= expects.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <thread>

#include "tests/integration/bank_env.h"

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
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf - 1, 0);
      if (n > 0) {
        messages_.emplace_back(buf, static_cast<std::size_t>(n));
        if (messages_.back().find(needle) != std::string::npos) return true;
      }
    }
    return false;
  }
  const std::vector<std::string>& messages() const { return messages_; }
  std::string all() const {
    std::string s;
    for (const auto& m : messages_) s += "[" + m + "] ";
    return s;
  }

 private:
  static inline int counter_ = 0;
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

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

}  // namespace
}  // namespace walfold::test
