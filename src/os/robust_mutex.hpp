#pragma once
// Robust, process-shared pthread mutexes: the one primitive behind Lock, RLock and the rings'
// producer and consumer locks. See docs/design/locks.md for why glibc's robust mutex.
#include <pthread.h>

#include "mproc/detail/deadline.hpp"

namespace mproc::sys {

/// Initialises a PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST mutex, RECURSIVE or ERRORCHECK.
/// Returns 0 or an errno value.
int init_robust_mutex(pthread_mutex_t* m, bool recursive) noexcept;

/// Locks `m`, waiting until `deadline` (time_point::max(): forever; a past deadline: one try).
/// Returns 0, EOWNERDEAD (acquired; the previous owner died — the caller must repair and call
/// pthread_mutex_consistent), ETIMEDOUT (not acquired), or another errno value.
int lock_robust_mutex(pthread_mutex_t* m, detail::Clock::time_point deadline) noexcept;

}  // namespace mproc::sys
