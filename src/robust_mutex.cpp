#include "robust_mutex.hpp"

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

int lock_robust_mutex(pthread_mutex_t* m, detail::Clock::time_point deadline) noexcept {
  if (deadline == detail::Clock::time_point::max()) return ::pthread_mutex_lock(m);
  if (deadline <= detail::Clock::now()) {
    const int rc = ::pthread_mutex_trylock(m);
    return rc == EBUSY ? ETIMEDOUT : rc;
  }
  // steady_clock is CLOCK_MONOTONIC in libstdc++.
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
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

}  // namespace mproc::sys
