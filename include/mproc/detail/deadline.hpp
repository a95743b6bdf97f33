#pragma once
// Timeouts in mproc run on the monotonic clock. These helpers turn a caller's duration or time
// point into a steady_clock deadline without overflowing: `std::chrono::hours::max()` or a
// `time_point::max()` means "wait forever", a zero or negative duration means "try once".
#include <chrono>
#include <type_traits>

namespace mproc::detail {

using Clock = std::chrono::steady_clock;

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
    return std::chrono::time_point_cast<Clock::duration>(when);
  } else {
    // Another clock (system_clock, say): measure the remaining time on it once and wait that
    // long on the monotonic clock, as std::timed_mutex implementations do.
    return deadline_after(when - C::now());
  }
}

}  // namespace mproc::detail
