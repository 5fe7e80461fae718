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

void Wakeup::notify() {
  set_ = true;
  const std::uint64_t one = 1;
  // Cannot fail but with a counter near 2^64 (then it is readable anyway).
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

void Wakeup::clear() {
  set_ = false;
  std::uint64_t count;
  [[maybe_unused]] auto n = ::read(fd_, &count, sizeof count);  // EAGAIN when not set
}

bool Wakeup::wait_for(std::chrono::milliseconds timeout) const {
  if (is_set()) return true;
  pollfd p{fd_, POLLIN, 0};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (::poll(&p, 1, static_cast<int>(left.count())) >= 0 || errno != EINTR) break;
  }
  return is_set();
}

}  // namespace walfold
