#pragma once
// The one seam between mproc and Linux. Every system call that can be interrupted goes through
// retry_eintr() here; Linux-only calls (pidfd, gettid) are wrapped here so that the rest of the
// library reads as plain POSIX. close() is deliberately never retried on EINTR: on Linux the
// descriptor is gone either way and a retry could close a descriptor another thread just got.
#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string_view>

namespace mproc::sys {

/// Calls `op` until it does not fail with EINTR; returns its last result (errno intact).
template <class Op>
auto retry_eintr(Op op) {
  for (;;) {
    auto r = op();
    if (!(r == -1 && errno == EINTR)) return r;
  }
}

/// Throws mproc::Error for the current errno.
[[noreturn]] void throw_errno(std::string_view operation, std::string_view object = {});

/// The kernel thread id of the calling thread, cached per thread and reset in a forked child.
pid_t current_tid() noexcept;

/// A random 64-bit token naming the calling thread, never 0, drawn again in a forked child.
/// Unlike a tid, it names no later thread once this one is gone (a ring's bias slots keep it).
/// Inline: a queue's biased side reads it on every operation.
extern thread_local std::uint64_t t_thread_token;
std::uint64_t draw_thread_token() noexcept;
inline std::uint64_t thread_token() noexcept {
  const std::uint64_t t = t_thread_token;
  return t != 0 ? t : draw_thread_token();
}

/// Whether this process is registered for membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which
/// makes the first call register it (again in a forked child). false where the kernel does not
/// offer it. Inline: a commit to a ring asks on every put and get.
extern std::atomic<int> g_membarrier_state;  // 0 not tried, 1 registered, 2 refused
bool register_membarrier() noexcept;
inline bool membarrier_registered() noexcept {
  const int state = g_membarrier_state.load(std::memory_order_relaxed);
  return state == 1 || (state == 0 && register_membarrier());
}
/// The heavy half of an asymmetric fence: a full memory barrier on every CPU that is running a
/// registered process, then here. false where the kernel refused.
bool membarrier_global() noexcept;

/// Increments in every child forked from this process (pthread_atfork): objects that hold
/// per-process resources (file descriptors of OFD locks) compare it to know they were forked.
std::uint64_t fork_generation() noexcept;

/// Registers `fd` to be closed in every child forked after this call, until untracked.
/// Used for descriptors whose mere inheritance would change behaviour (an OFD lock stays
/// held while any copy of its descriptor is open).
void close_in_children(int fd);
void stop_closing_in_children(int fd) noexcept;

/// While one exists, no thread of this process forks (fork waits for it to go): for
/// descriptors that must not reach a child even briefly (a lock that a child would keep).
/// Never fork while holding one, and do not nest them (they take turns, process-wide).
class ForkFence {
 public:
  ForkFence() noexcept;
  ~ForkFence();
  ForkFence(const ForkFence&) = delete;
  ForkFence& operator=(const ForkFence&) = delete;
};

int pidfd_open(pid_t pid) noexcept;
int pidfd_send_signal(int pidfd, int signo) noexcept;

/// Closes without retrying on EINTR (see above); errors are ignored.
void close_fd(int fd) noexcept;

/// When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); 0 if it
/// does not exist or cannot be read. With the pid it names one process for good: pids are
/// recycled, (pid, start) pairs are not.
std::uint64_t process_start_ticks(pid_t pid) noexcept;
/// Whether the process (pid, start_ticks) is still running; start_ticks 0 means "unknown",
/// checked by pid alone. A zombie counts as dead.
bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept;

}  // namespace mproc::sys

#include <pthread.h>

namespace mproc::sys {

/// The kernel thread id that holds a *robust* pthread mutex, 0 when it is free or its owner
/// died. Reads glibc's futex word (__data.__lock), whose low 30 bits are the owner's tid for
/// robust mutexes: a kernel ABI (the robust-futex protocol), not a glibc whim.
pid_t robust_mutex_owner(const pthread_mutex_t* m) noexcept;

}  // namespace mproc::sys
