#include "sys.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>

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
