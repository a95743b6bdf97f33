#include "os/sys.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mproc::sys {

int pidfd_open(pid_t pid) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfd_send_signal(int pidfd, int signo) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0));
}

void close_fd(int fd) noexcept {
  if (fd >= 0) (void)::close(fd);
}

namespace {

// Reads the state (field 3) and start time (field 22) of /proc/PID/stat. The command name
// (field 2) is in parentheses and may itself hold spaces and parentheses: the last ')' ends it.
bool read_stat(pid_t pid, char& state, std::uint64_t& start) noexcept {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  const ssize_t n = retry_eintr([&] { return ::read(fd, buf, sizeof buf - 1); });
  close_fd(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  state = p[2];
  for (int field = 3; field < 22; ++field) {  // from field 3's separator to field 22's
    p = std::strchr(p + 1, ' ');
    if (p == nullptr) return false;
  }
  start = std::strtoull(p + 1, nullptr, 10);
  return true;
}

}  // namespace

std::uint64_t process_start_ticks(pid_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, state, start) ? start : 0;
}

bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept {
  if (pid <= 0) return false;
  char state = 0;
  std::uint64_t start = 0;
  if (!read_stat(pid, state, start)) {
    // No /proc entry we can read: ask the kernel directly (EPERM: it exists, not ours).
    return ::kill(pid, 0) == 0 || errno == EPERM;
  }
  if (state == 'Z' || state == 'X') return false;  // a zombie has finished running
  return start_ticks == 0 || start == start_ticks;
}

}  // namespace mproc::sys

#include <linux/futex.h>

#include <atomic>

namespace mproc::sys {

#if !defined(__GLIBC__)
#error "mproc's locks read glibc's robust mutex word; port robust_mutex_owner() first"
#endif

pid_t robust_mutex_owner(const pthread_mutex_t* m) noexcept {
  // The word is changed atomically by glibc and the kernel; read it atomically too.
  auto& word = const_cast<int&>(m->__data.__lock);
  const auto value = static_cast<unsigned>(std::atomic_ref<int>(word).load(std::memory_order_relaxed));
  return static_cast<pid_t>(value & FUTEX_TID_MASK);
}

}  // namespace mproc::sys
