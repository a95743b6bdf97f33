#pragma once
// The std-style members shared by every mproc lock (Lockable / TimedLockable), written once in
// terms of the lock's own acquire_until()/release(). They exist so that std::scoped_lock,
// std::unique_lock and std::lock work; they turn an owner_died result into mproc::OwnerDied
// because these signatures (void lock(), bool try_lock()) have no room for it, and silently
// returning "acquired" would hide that the guarded data may be torn.
#include <chrono>
#include <string>

#include "mproc/acquired.hpp"
#include "mproc/detail/deadline.hpp"
#include "mproc/error.hpp"

namespace mproc::detail {

[[noreturn]] void throw_owner_died(const char* kind);

template <class Derived>
class StdLockable {
 public:
  /// Blocks until acquired. Throws OwnerDied (with the lock released again) when the previous
  /// owner died holding it and the state was not marked consistent since.
  void lock() { (void)settle(self().acquire_until(Clock::time_point::max())); }
  /// One attempt, no waiting.
  bool try_lock() { return settle(self().acquire_until(Clock::time_point::min())); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return settle(self().acquire_until(deadline_after(timeout)));
  }
  template <class C, class D>
  bool try_lock_until(const std::chrono::time_point<C, D>& when) {
    return settle(self().acquire_until(to_steady(when)));
  }
  void unlock() { self().release(); }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
  bool settle(Acquired got) {
    if (got.owner_died()) {
      self().release();
      throw_owner_died(self().kind_name());
    }
    return static_cast<bool>(got);
  }
};

}  // namespace mproc::detail
