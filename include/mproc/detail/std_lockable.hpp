#pragma once
// The std-style members shared by every mproc lock (Lockable / TimedLockable), written once in
// terms of the lock's own acquire_until(Deadline)/release(). They exist so that std::scoped_lock,
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
  void lock() { (void)held_or_throw_owner_died(self().acquire_until(Deadline::forever())); }
  /// One attempt, no waiting.
  bool try_lock() { return held_or_throw_owner_died(self().acquire_until(Deadline::now())); }
  bool try_lock_for(Timeout timeout) { return try_lock_until(timeout); }
  bool try_lock_until(Deadline deadline) { return held_or_throw_owner_died(self().acquire_until(deadline)); }
  void unlock() { self().release(); }

 protected:
  /// An acquire's result as the std signatures want it: whether the lock is held, except that
  /// an owner_died() acquire is released again and thrown as mproc::OwnerDied.
  bool held_or_throw_owner_died(Acquired got) {
    if (got.owner_died()) {
      self().release();
      throw_owner_died(self().kind_name());
    }
    return static_cast<bool>(got);
  }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

}  // namespace mproc::detail
