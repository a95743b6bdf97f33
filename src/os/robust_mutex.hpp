#pragma once
// Robust, process-shared pthread mutexes: the one primitive behind Lock, RLock and the rings'
// producer and consumer locks. See docs/design/locks.md for why glibc's robust mutex.
#include <pthread.h>

#include <cerrno>

#include "mproc/detail/deadline.hpp"

namespace mproc::sys {

/// Initialises a PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST mutex, RECURSIVE or ERRORCHECK.
/// Returns 0 or an errno value.
int init_robust_mutex(pthread_mutex_t* m, bool recursive) noexcept;

/// lock_robust_mutex() once the first try found `m` held: sleeps in slices until `deadline`.
int lock_contended_robust_mutex(pthread_mutex_t* m, detail::Clock::time_point deadline) noexcept;

/// Locks `m`, waiting until `deadline` (time_point::max(): forever; a past deadline: one try).
/// Returns 0, EOWNERDEAD (acquired; the previous owner died — the caller must repair and call
/// pthread_mutex_consistent), ETIMEDOUT (not acquired), or another errno value.
inline int lock_robust_mutex(pthread_mutex_t* m, detail::Clock::time_point deadline) noexcept {
  // Fast path, inline: one CAS in user space (inside glibc), no clock read, no frame of ours.
  const int rc = ::pthread_mutex_trylock(m);
  return rc != EBUSY ? rc : lock_contended_robust_mutex(m, deadline);
}

}  // namespace mproc::sys
