// The state directory's checkpoint file: only a file that does not exist is "no checkpoint";
// any other failure to read it is an error naming the path and errno (it used to be treated as
// missing, which silently disabled the "read model was dropped or swapped" check).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "checkpoint/store.h"
#include "common/error.h"
#include "config/config.h"
#include "projections/mongo.h"

namespace walfold {
namespace {

namespace fs = std::filesystem;

struct StateDir {
  StateDir() {
    char tmpl[] = "/tmp/wf-state-test-XXXXXX";
    dir = mkdtemp(tmpl);
    cfg.state_dir = dir;
    cfg.postgres.slot = "s1";
  }
  ~StateDir() {
    std::error_code ec;
    fs::permissions(dir, fs::perms::owner_all, ec);
    fs::remove_all(dir, ec);
  }
  std::string file() const { return dir + "/s1.checkpoint"; }
  std::string dir;
  Config cfg;
};

// The message and exit code of load_state_dir's error, or "" when it returned.
std::pair<std::string, int> load_error(const Config& cfg) {
  projections::MongoPool pool(cfg.mongodb);  // never contacted: load_state_dir reads a file
  checkpoint::Store store(cfg, pool);
  try {
    store.load_state_dir();
  } catch (const std::exception& e) {
    return {e.what(), exit_status_for(e).code};
  }
  return {"", 0};
}

TEST(StateDir, AMissingCheckpointFileIsNoCheckpoint) {
  StateDir s;
  projections::MongoPool pool(s.cfg.mongodb);
  checkpoint::Store store(s.cfg, pool);
  EXPECT_FALSE(store.load_state_dir().has_value());
  EXPECT_TRUE(store.read_history_file().empty());
  std::ofstream(s.file()) << "slot=s1\nsystem_id=42\nlsn=0/16B3748\n";
  auto c = store.load_state_dir();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->identity.system_id, "42");
  EXPECT_EQ(format_lsn(c->lsn), "0/16B3748");
}

TEST(StateDir, ACheckpointThatCannotBeReadIsAnErrorNamingPathAndErrno) {
  StateDir s;
  fs::create_directory(s.file());  // opens, but read() fails with EISDIR
  auto [msg, code] = load_error(s.cfg);
  EXPECT_EQ(msg, "state_dir: cannot read the checkpoint file " + s.file() +
                     ": Is a directory (errno 21)");
  EXPECT_EQ(code, 74);  // EX_IOERR, not 78 and not "no checkpoint"
}

// EACCES: run by an unprivileged user (root reads anything, so as root the check runs in a child
// that drops to nobody).
TEST(StateDir, APermissionDeniedCheckpointIsAnError) {
  StateDir s;
  std::ofstream(s.file()) << "slot=s1\n";
  ASSERT_EQ(::chmod(s.file().c_str(), 0), 0);
  ASSERT_EQ(::chmod(s.dir.c_str(), 0755), 0);
  const std::string expected =
      "state_dir: cannot read the checkpoint file " + s.file() + ": Permission denied (errno 13)";
  if (::geteuid() != 0) {
    EXPECT_EQ(load_error(s.cfg).first, expected);
    return;
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    auto [msg, code] = load_error(s.cfg);
    ::_exit(msg == expected && code == 74 ? 0 : msg.empty() ? 1 : 2);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "1: treated as missing, 2: another message, 3: setuid failed";
}

// Root on a state directory another user owns: refused before anything is written, saying how
// to run it as the owner. Root on its own directory, or anyone else, is let through.
TEST(StateDir, RootIsRefusedOnAStateDirectoryAnotherUserOwns) {
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root (CI runs the tests as root)";
  StateDir s;
  EXPECT_NO_THROW(checkpoint::check_state_dir_owner(s.dir, "setup"));  // root's own
  ASSERT_EQ(::chown(s.dir.c_str(), 65534, 65534), 0);
  try {
    checkpoint::check_state_dir_owner(s.dir, "setup --config /etc/walfold/walfold.yaml");
    ADD_FAILURE() << "expected PermissionError";
  } catch (const PermissionError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("state_dir " + s.dir + " belongs to user nobody (uid 65534)"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("runuser -u nobody -- walfold setup --config /etc/walfold/walfold.yaml"),
              std::string::npos)
        << msg;
    EXPECT_EQ(exit_status_for(e).code, 77);
  }
  EXPECT_NO_THROW(checkpoint::check_state_dir_owner(s.dir + "/missing", "setup"));
}

}  // namespace
}  // namespace walfold
