#pragma once
// Fault injection for tests: make chosen system calls fail, inside the test executable only.
//
//   mproc::test::FaultPlan plan;
//   plan.inject("posix_fallocate", ENOSPC);           // the next call fails with ENOSPC
//   plan.inject("futex_wait", EINTR, 0, 20);          // the next 20 futex waits return EINTR
//   EXPECT_THROW(mproc::Queue<int>::create("q"), mproc::Error);
//   EXPECT_EQ(plan.injected("posix_fallocate"), 1u);  // it did fire: the test tested something
//
// How: support/fault_injection.cpp defines open, mmap, posix_fallocate, eventfd, socketpair,
// fcntl, ppoll, syscall, fork, ... in the test executable itself. The dynamic linker binds every
// call made through a PLT (by mproc, whether linked statically or as a shared library, by
// libstdc++, by the test) to the executable's definition first. Each one fails the call if an
// armed FaultPlan says so, and otherwise forwards to the definition that would have been used
// without it: a sanitizer's interceptor when the binary has one (so ASan and TSan still see
// every call), libc's function otherwise. The library is untouched: no hook, no flag, no cost.
//
// What it cannot see: calls glibc makes inside itself (shm_open's open, eventfd_write's write,
// pthread_mutex_clocklock's futex). Fail the outer function instead.
//
// Names: the libc function names below, plus five system calls made through syscall(2):
// "futex_wait" (FUTEX_WAIT and FUTEX_WAIT_BITSET), "futex_wake", "pidfd_open",
// "pidfd_send_signal" and "membarrier" (any command). An unknown name is a std::invalid_argument, so a typo
// cannot make a test pass vacuously.
//
// Scope: a plan fires only in the process that armed it, in any of its threads; a forked child
// inherits a copy that stays silent there (a child arms its own plan if it wants one). The plan
// is disarmed when destroyed. Checking a call against the armed rules takes only atomic loads
// and getpid(): it is async-signal-safe, so a signal handler may call interposed functions
// (write, say) at any moment, armed or not.
#include <cerrno>
#include <climits>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace mproc::test {

/// `times` for a rule that never stops failing.
inline constexpr unsigned kAlways = UINT_MAX;
/// `fd` for a rule that matches calls on any descriptor.
inline constexpr int kAnyFd = INT_MIN;

/// One rule: the calls to `function` that match `fd` (for functions that take a descriptor, and
/// mmap, whose anonymous mappings have fd -1) are counted; the first `after` go through, the
/// next `times` fail with `error`, the rest go through again.
struct Fault {
  std::string_view function;
  int error;
  unsigned after = 0;
  unsigned times = 1;
  int fd = kAnyFd;
};

class FaultPlan {
 public:
  FaultPlan() = default;
  ~FaultPlan() { disarm(); }
  FaultPlan(const FaultPlan&) = delete;
  FaultPlan& operator=(const FaultPlan&) = delete;

  /// Arms a rule (std::invalid_argument for an unknown function; std::length_error when every
  /// one of the process's 64 rule slots is armed).
  FaultPlan& inject(const Fault& fault);
  FaultPlan& inject(std::string_view function, int error, unsigned after = 0, unsigned times = 1) {
    return inject(Fault{function, error, after, times});
  }
  /// Counts the calls to `function` without failing any.
  FaultPlan& count(std::string_view function) { return inject(Fault{function, 0, 0, 0}); }

  /// Once this plan has injected `n` failures in all, writes one byte to `fd` (from whichever
  /// thread or signal handler made the failing call): a test can wake a peer process exactly
  /// when the code under test has been interrupted. One notification per plan.
  void notify_after(unsigned n, int fd);

  /// Calls to `function` matched by this plan's rules since they were armed (summed over rules).
  std::uint64_t calls(std::string_view function) const;
  /// Failures this plan injected into `function`; without a name, into every function.
  std::uint64_t injected(std::string_view function) const;
  std::uint64_t injected() const;

  /// Disarms every rule of this plan. The counts stay readable.
  void disarm() noexcept;

 private:
  static constexpr int kMaxRules = 16;
  int slots_[kMaxRules] = {};
  int n_ = 0;
  // Counts copied out of the slots at disarm(), so that they outlive the slot.
  std::uint64_t final_calls_[kMaxRules] = {};
  std::uint64_t final_injected_[kMaxRules] = {};
  int function_[kMaxRules] = {};
  int record_ = -1;  // the process-wide record of this plan's injections and notification
  bool armed_ = false;
};

/// Every function name a plan accepts.
std::span<const std::string_view> interposed_functions();

/// The shared object that a call to libc function `function` goes to when no fault fires
/// ("libasan.so.8", "libc.so.6", or the test executable for a statically linked sanitizer
/// runtime): lets a test check that the seam chains through a sanitizer's interceptors.
std::string forwarded_to(std::string_view function);

}  // namespace mproc::test
