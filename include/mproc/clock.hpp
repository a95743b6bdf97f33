#pragma once
/// mproc::Clock — the clock every mproc timeout runs on: the monotonic std::chrono::steady_clock,
/// so that setting the system time neither shortens nor stretches a wait. Every blocking call
/// also takes a time point of another clock (system_clock, say): it measures the time left on
/// that clock once and waits that long on this one (see <mproc/detail/deadline.hpp>).
#include <chrono>

namespace mproc {

using Clock = std::chrono::steady_clock;

}  // namespace mproc
