#pragma once
// What every waiting loop in mproc shares: the spin-phase pause, the heartbeat that bounds every
// kernel sleep (docs/design/queue.md, "heartbeat"), and conversions of steady_clock times to the
// timespecs that futex, ppoll and pthread_mutex_clocklock take.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>

#include <sched.h>

#include "mproc/detail/deadline.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mproc::sys {

/// One spin-loop iteration's pause: frees the pipeline (and a hyperthread sibling) while spinning.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// The spin phase of a wait, before the kernel sleep: first pauses (a peer on another core is
/// usually a few hundred nanoseconds from its next step), then sched_yield() calls. With more
/// runnable processes than cores the process being waited for may be queued on this very core,
/// and pausing would only burn the time slice it needs; a yield hands it over (and returns at
/// once on an idle core). The budget is small either way: then the caller sleeps.
class Spin {
 public:
  static constexpr int kPauses = 256;
  static constexpr int kYields = 8;

  /// `enabled` false (a try_ call, a deadline already passed): no spinning at all. `pauses`:
  /// fewer pauses than the full phase (LearnedPauses).
  explicit Spin(bool enabled, int pauses = kPauses) noexcept : left_(enabled ? pauses + kYields : 0) {}
  /// Spends one step of the budget; false once it is spent.
  bool next() noexcept {
    if (left_ == 0) return false;
    if (--left_ >= kYields) {
      cpu_relax();
    } else {
      ::sched_yield();
    }
    return true;
  }
  /// Whether every step so far was a pause: no yield yet, the budget not spent.
  bool only_paused() const noexcept { return left_ >= kYields; }

 private:
  int left_;
};

/// The pause phase one waiter's spins start with, learned from how its earlier waits ended
/// (docs/design/queue.md, "Spinning on a crowded machine"). A wait that ended while pausing
/// found its peer running on another CPU: pause in full. One that had to yield or sleep found
/// the peer not running — idle, or queued behind this very process on an oversubscribed CPU,
/// where every pause only delays it: the next wait pauses a quarter as long, down to not at
/// all, and every 16th pauses in full again to see whether that has changed. The state is one
/// byte the caller keeps (zero: the full phase): the low four bits are the shift of the budget,
/// the high four count waits since the last full phase.
class LearnedPauses {
 public:
  explicit LearnedPauses(std::uint8_t& state) noexcept : state_(state) {}

  int pauses() const noexcept {
    if ((state_ >> 4) == 15) return Spin::kPauses;  // the probe
    return Spin::kPauses >> (state_ & 0x0F);
  }
  /// After a wait that ended ready: `while_pausing`, as Spin::only_paused() says.
  void ended(bool while_pausing) noexcept {
    if (while_pausing) {
      state_ = 0;
      return;
    }
    const int shift = std::min((state_ & 0x0F) + 2, kNoPauses);
    const int waits = ((state_ >> 4) + 1) & 0x0F;
    state_ = static_cast<std::uint8_t>((waits << 4) | shift);
  }

 private:
  static constexpr int kNoPauses = 10;  // 256 >> 10 == 0
  std::uint8_t& state_;
};

/// No sleep in mproc lasts longer than this before the sleeper re-checks: it bounds the stall
/// when a waker dies between changing a word and waking (and glibc's lost robust-mutex wake-up).
inline constexpr std::chrono::milliseconds kHeartbeat{100};

/// Whether a call with this deadline may wait at all; a blocking call reads no clock to know.
inline bool may_wait(detail::Clock::time_point deadline) noexcept {
  return deadline == detail::Clock::time_point::max() || deadline > detail::Clock::now();
}

/// The end of the next sleep: the deadline, or one heartbeat from now if that comes first.
inline detail::Clock::time_point next_wake(detail::Clock::time_point deadline) noexcept {
  return std::min(deadline, detail::Clock::now() + kHeartbeat);
}

inline timespec to_timespec(std::chrono::nanoseconds ns) noexcept {
  const auto n = ns.count();
  return timespec{static_cast<time_t>(n / 1'000'000'000), static_cast<long>(n % 1'000'000'000)};
}

/// An absolute CLOCK_MONOTONIC time (steady_clock is CLOCK_MONOTONIC in libstdc++).
inline timespec monotonic_timespec(detail::Clock::time_point when) noexcept {
  return to_timespec(std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()));
}

/// The time from now until `when` (zero if it has passed), for relative timeouts such as ppoll's.
inline timespec timespec_until(detail::Clock::time_point when) noexcept {
  const auto left = std::max(when - detail::Clock::now(), detail::Clock::duration::zero());
  return to_timespec(std::chrono::duration_cast<std::chrono::nanoseconds>(left));
}

}  // namespace mproc::sys
