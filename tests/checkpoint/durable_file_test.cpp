// checkpoint::write_file_durably on its failure paths: a failed fsync is an I/O error (exit 74)
// naming the file and errno, and leaves no descriptor open (it once ran `fsync(fd) || close(fd)`,
// which skipped the close whenever fsync failed). fsync fails here through a seam of the test
// binary: this file defines fsync(2), which the linker prefers to libc's for every object of
// unit_tests; it calls the real system call unless a test asks for a failure.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

#include "checkpoint/store.h"
#include "common/error.h"

namespace {
std::atomic<int> fail_fsync_with{0};  // errno to fail with; 0: the real fsync
}  // namespace

extern "C" int fsync(int fd) {
  if (int e = fail_fsync_with.load()) {
    errno = e;
    return -1;
  }
  return static_cast<int>(::syscall(SYS_fsync, fd));
}

namespace walfold {
namespace {

namespace fs = std::filesystem;

std::size_t open_descriptors() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/wf-durable-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string path;
};

struct FailFsync {
  explicit FailFsync(int e) { fail_fsync_with = e; }
  ~FailFsync() { fail_fsync_with = 0; }
};

TEST(DurableFile, AFailedFsyncIsAnIoErrorAndLeavesNoDescriptorOpen) {
  TempDir dir;
  const std::string file = dir.path + "/s1.checkpoint";
  checkpoint::write_file_durably(file, "lsn=0/1\n");
  const std::size_t before = open_descriptors();
  for (int i = 0; i < 3; ++i) {
    FailFsync fail(EIO);
    try {
      checkpoint::write_file_durably(file, "lsn=0/2\n");
      ADD_FAILURE() << "write_file_durably succeeded although fsync failed";
    } catch (const FileError& e) {
      EXPECT_EQ(std::string(e.what()),
                "state_dir: flushing " + file + ".tmp failed: Input/output error (errno 5)");
      EXPECT_EQ(exit_status_for(e).code, 74);
    }
  }
  EXPECT_EQ(open_descriptors(), before);
  // The old content stays in place: the failed write never reached the rename.
  std::ifstream in(file);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "lsn=0/1\n");
}

TEST(DurableFile, AFileThatCannotBeCreatedLeavesNoDescriptorOpen) {
  TempDir dir;
  const std::size_t before = open_descriptors();
  EXPECT_THROW(checkpoint::write_file_durably(dir.path + "/missing/s1.checkpoint", "x"), FileError);
  EXPECT_EQ(open_descriptors(), before);
}

}  // namespace
}  // namespace walfold
