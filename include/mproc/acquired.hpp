#pragma once
/// The result of acquiring one of mproc's locks.
#include <cstdint>

namespace mproc {

/// What an `acquire()` call achieved. It is [[nodiscard]] because the one fact that matters
/// most — the previous owner died while holding the lock, so the guarded data may be torn —
/// must not be dropped on the floor.
///
///   if (auto got = lock.acquire(500ms)) {     // true: this thread now holds the lock
///     if (got.owner_died()) { repair(); lock.mark_consistent(); }
///     ...
///     lock.release();
///   } else { /* timed out: the lock is not held */ }
class [[nodiscard]] Acquired {
 public:
  enum class Status : std::uint8_t {
    ok,          ///< acquired; the guarded state is consistent
    owner_died,  ///< acquired; a previous owner died holding it and nobody marked it consistent
    timed_out,   ///< not acquired before the deadline
  };

  constexpr Acquired(Status status) noexcept : status_(status) {}  // NOLINT: implicit by design

  /// True when the lock is now held by the caller.
  constexpr explicit operator bool() const noexcept { return status_ != Status::timed_out; }
  constexpr bool owner_died() const noexcept { return status_ == Status::owner_died; }
  constexpr bool timed_out() const noexcept { return status_ == Status::timed_out; }
  constexpr Status status() const noexcept { return status_; }

  friend constexpr bool operator==(Acquired, Acquired) noexcept = default;

 private:
  Status status_;
};

}  // namespace mproc
