#pragma once
// Futex waits and wakes on words in shared memory. Never FUTEX_PRIVATE_FLAG: the waiter and
// the waker are different processes, and private futexes are keyed by address space.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>

#include "mproc/detail/deadline.hpp"
#include "os/wait.hpp"

namespace mproc::sys {

/// Sleeps while `*word == expected`, until woken or `until` (monotonic) passes. Returns on any
/// wake, spurious ones included: callers re-check their condition.
inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       detail::Clock::time_point until) noexcept {
  const timespec ts = monotonic_timespec(until);
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so EINTR needs no recomputation.
  (void)::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_BITSET, expected, &ts,
                  nullptr, FUTEX_BITSET_MATCH_ANY);
}

inline void futex_wake(std::atomic<std::uint32_t>* word, int count) noexcept {
  (void)::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

}  // namespace mproc::sys
