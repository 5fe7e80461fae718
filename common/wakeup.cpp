#include "common/wakeup.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "common/error.h"

namespace walfold {

Wakeup::Wakeup() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw InternalError(std::string("eventfd: ") + std::strerror(errno));
}

Wakeup::~Wakeup() {
  ::close(fd_);
}

// The flag is set after the write and cleared before the read, so a clear() that finds the flag
// down never leaves a readable fd behind it: either the write it raced has not set the flag yet
// (the next clear() reads it), or the read drained it. clear() on a flag that is down costs no
// system call, which matters for callers that clear on every turn (the reader takes the Redis
// thread's acknowledgements once per WAL message).
void Wakeup::notify() {
  const std::uint64_t one = 1;
  // Cannot fail but with a counter near 2^64 (then it is readable anyway).
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
  set_ = true;
}

void Wakeup::clear() {
  if (!set_.exchange(false)) return;
  std::uint64_t count;
  [[maybe_unused]] auto n = ::read(fd_, &count, sizeof count);  // EAGAIN when already drained
}

bool Wakeup::wait_for(std::chrono::milliseconds timeout) const {
  if (is_set()) return true;
  pollfd p{fd_, POLLIN, 0};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc > 0) return true;  // written: notify() raises the flag right after the write
    if (rc == 0 || errno != EINTR) break;
  }
  return is_set();
}

}  // namespace walfold
