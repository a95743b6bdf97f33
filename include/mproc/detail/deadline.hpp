#pragma once
// Timeouts in mproc run on the monotonic clock (mproc::Clock, <mproc/clock.hpp>).
//
// The convention, for every blocking call of the library:
//   op()                 blocks without limit (or, for Barrier::wait(), for its default timeout);
//   try_op()             never waits (where the operation has one);
//   op_for(duration)     waits at most that long: any std::chrono::duration;
//   op_until(when)       waits until then: a time point of any clock (steady, system, ...) or a
//                        detail::Deadline;
// and, kept as aliases because Python spells them so and existing code uses them,
//   op(duration)         = op_for(duration) (Lock::acquire(1s), Event::wait(1s), join(2s), ...).
// Why _for/_until: they are the standard library's names (std::timed_mutex::try_lock_for,
// condition_variable::wait_until, future::wait_for), the name says what the argument means (a
// time point is never taken for a duration, nor the other way round), and no timeout argument
// can be mistaken for a value argument (Queue<std::chrono::seconds>::put_for(v, 1s)).
//
// Each call is written once, as op_until(Deadline): a Deadline is made implicitly from any
// duration (from now), any clock's time point, Deadline::forever() or Deadline::now(), so one
// non-template function serves every spelling; op_for takes a Timeout, the Deadline that only
// a duration makes (op_for(some_time_point) does not compile). Both convert to
// Clock::time_point, the type the machinery below the headers waits on.
//
// Conversions never overflow: `std::chrono::hours::max()` or any `time_point::max()` means
// "wait forever"; a zero or negative duration, or a time point already passed, means "try once".
#include <chrono>
#include <compare>
#include <type_traits>

#include "mproc/clock.hpp"

namespace mproc::detail {

/// The public name is mproc::Clock (<mproc/clock.hpp>).
using Clock = mproc::Clock;

template <class Rep, class Period>
Clock::time_point deadline_after(const std::chrono::duration<Rep, Period>& timeout) noexcept {
  using std::chrono::duration;
  const auto now = Clock::now();
  if (timeout <= timeout.zero()) return now;
  // Compare in floating seconds first so that huge integer durations cannot overflow.
  const duration<double> wanted = timeout;
  const duration<double> room = Clock::time_point::max() - now;
  if (wanted >= room) return Clock::time_point::max();
  return now + std::chrono::ceil<Clock::duration>(timeout);
}

template <class C, class D>
Clock::time_point to_steady(const std::chrono::time_point<C, D>& when) noexcept {
  if constexpr (std::is_same_v<C, Clock>) {
    // A coarser duration (seconds) can hold time points Clock's nanoseconds cannot: saturate.
    const std::chrono::duration<double> since = when.time_since_epoch();
    if (since >= Clock::time_point::max().time_since_epoch()) return Clock::time_point::max();
    if (since <= Clock::time_point::min().time_since_epoch()) return Clock::time_point::min();
    return std::chrono::time_point_cast<Clock::duration>(when);
  } else {
    // Another clock (system_clock, say): measure the remaining time on it once and wait that
    // long on the monotonic clock, as std::timed_mutex implementations do.
    if (when == std::chrono::time_point<C, D>::max()) return Clock::time_point::max();
    return deadline_after(when - C::now());
  }
}

/// When a blocking call gives up: a steady-clock time point, made from whatever the caller
/// passed (see the file comment). Trivially copyable; pass it by value.
class Deadline {
 public:
  template <class Rep, class Period>
  Deadline(const std::chrono::duration<Rep, Period>& timeout) noexcept  // NOLINT: implicit
      : when_(deadline_after(timeout)) {}
  template <class C, class D>
  Deadline(const std::chrono::time_point<C, D>& when) noexcept  // NOLINT: implicit
      : when_(to_steady(when)) {}

  /// Never gives up.
  static constexpr Deadline forever() noexcept { return Deadline(Clock::time_point::max(), 0); }
  /// Already passed: try once, never wait.
  static constexpr Deadline now() noexcept { return Deadline(Clock::time_point::min(), 0); }

  constexpr Clock::time_point when() const noexcept { return when_; }
  constexpr operator Clock::time_point() const noexcept { return when_; }  // NOLINT: implicit
  constexpr bool is_forever() const noexcept { return when_ == Clock::time_point::max(); }

  friend constexpr bool operator==(const Deadline&, const Deadline&) noexcept = default;
  friend constexpr auto operator<=>(const Deadline&, const Deadline&) noexcept = default;

 private:
  constexpr Deadline(Clock::time_point when, int) noexcept : when_(when) {}
  Clock::time_point when_;
};

/// The argument of every op_for(): a Deadline that only a duration makes.
class Timeout : public Deadline {
 public:
  template <class Rep, class Period>
  Timeout(const std::chrono::duration<Rep, Period>& timeout) noexcept  // NOLINT: implicit
      : Deadline(timeout) {}
};

}  // namespace mproc::detail
