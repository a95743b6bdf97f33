#include "os/robust_mutex.hpp"

#include "os/wait.hpp"

#include <algorithm>
#include <cerrno>
#include <ctime>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define MPROC_TSAN 1
#else
#define MPROC_TSAN 0
#endif

namespace mproc::sys {

int init_robust_mutex(pthread_mutex_t* m, bool recursive) noexcept {
  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  ::pthread_mutexattr_settype(&attr, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
  const int rc = ::pthread_mutex_init(m, &attr);
  ::pthread_mutexattr_destroy(&attr);
  return rc;
}

namespace {

// One timed attempt, ending at `until`.
int clocklock(pthread_mutex_t* m, detail::Clock::time_point until) noexcept {
  const timespec ts = monotonic_timespec(until);
  // ThreadSanitizer intercepts pthread_mutex_lock/trylock/unlock but not clocklock: tell it
  // about the acquisition by hand, or it misses the happens-before edge and reports the
  // matching unlock as "unlock of an unlocked mutex".
#if MPROC_TSAN
  __tsan_mutex_pre_lock(m, 0);
#endif
  const int rc = ::pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#if MPROC_TSAN
  __tsan_mutex_post_lock(m, (rc == 0 || rc == EOWNERDEAD) ? 0 : __tsan_mutex_try_lock_failed, 0);
#endif
  return rc;
}

}  // namespace

int lock_contended_robust_mutex(pthread_mutex_t* m, detail::Clock::time_point deadline) noexcept {
  // Contended: sleep in slices, never in one unbounded pthread_mutex_lock. glibc wakes one
  // waiter when a robust mutex is released; if that waiter is SIGKILLed before it takes the
  // lock, the wake-up dies with it and the other waiters sleep on a free lock forever (the
  // kernel's robust-list cleanup only covers locks that are *held* at death). Waking every
  // slice bounds that stall (the queue stress test found it; see docs/design/locks.md).
  for (;;) {
    const detail::Clock::time_point now = detail::Clock::now();  // one clock read a slice
    if (now >= deadline) return ETIMEDOUT;
    const int r = clocklock(m, std::min(deadline, now + kHeartbeat));
    if (r != ETIMEDOUT) return r;
  }
}

}  // namespace mproc::sys
