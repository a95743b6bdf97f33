#pragma once
/// mproc::redis::Lock — a lock for processes on different machines: a lease in Redis with a
/// fencing token.
///
///   auto lock = mproc::redis::Lock::open("redis://10.0.0.5/tickets");
///   if (auto got = lock.acquire()) {
///     if (got.owner_died()) { repair(); lock.mark_consistent(); }
///     resource.write(data, got.fence());   // the resource rejects fences older than it has seen
///     lock.release();                      // throws LeaseLost if the lease was lost meanwhile
///   }
///
/// A lease: `SET lease <random token> NX PX <lease>`, renewed by a background thread (its own
/// connection) every lease/3 while held, and released by compare-and-delete in Lua, so a
/// holder never deletes another's lease. Keys and scripts: docs/design/redis.md, "Lock".
///
/// Fencing token: every acquisition increments a counter in Redis and returns it
///   (`Held::fence()`, `fence()`). A holder can be paused (GC, SIGSTOP, swapping, a VM
///   migration) past its lease and wake up believing it still holds the lock; no lock service
///   can stop that holder from writing, but a resource that remembers the highest fence it has
///   seen and refuses smaller ones can. Pass the fence along with every protected write.
/// Lost lease: when the renewal finds that another holder acquired the lock (the fence moved
///   on), `lost()` becomes true, and release() throws mproc::redis::LeaseLost: the work done
///   under that hold may have overlapped another holder's. (A lease that merely expired with
///   nobody acquiring in between is renewed, not lost: exclusion was never broken.)
/// If the owner dies: the server cannot see a client die, so the lease runs out first (at
///   most `lease` later). The next acquirer is then told `owner_died()`, and so is every
///   acquirer until a holder calls mark_consistent() — the shared-memory Lock's rule
///   (<mproc/lock.hpp>); lock()/try_lock() throw mproc::OwnerDied as there.
/// Why not Redlock: its safety rests on bounded clock drift and pauses across independent
///   primaries and it hands out no fencing token; a fencing token needs one linearisable
///   counter — one Redis primary (with `appendfsync always` if the counter must survive a
///   restart). A failover to a replica that missed the last INCR could repeat a fence.
///
/// Thread safety: one thread uses a Lock object at a time (the renewal thread is internal).
///   Other threads and processes open their own.
/// Process safety: any number of processes on any machines, each with its own object; never
///   shared across fork().
/// Memory ordering: none beyond what the protected resource provides: fence it.
/// Waiting: a blocked acquire waits in the server for a "released" wake-up, and at most until
///   the current lease would expire; never polls in between.
/// Ownership: the object that acquired releases; release() without holding is
///   mproc::UsageError. Destroying a held Lock releases it (errors swallowed).
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "mproc/acquired.hpp"
#include "mproc/detail/deadline.hpp"
#include "mproc/detail/std_lockable.hpp"
#include "mproc/redis/address.hpp"

namespace mproc::redis {

struct LockOptions {
  /// How long a hold survives without renewal: a dead holder blocks others at most this long.
  std::chrono::milliseconds lease{10000};
  Options connection{};
};

/// acquire()'s result: Acquired (ok, owner_died, timed_out) plus the fencing token of this hold.
class [[nodiscard]] Held : public Acquired {
 public:
  constexpr Held(Status status, std::uint64_t fence) noexcept : Acquired(status), fence_(fence) {}
  /// Greater than every fence handed out before; 0 when not acquired.
  constexpr std::uint64_t fence() const noexcept { return fence_; }

 private:
  std::uint64_t fence_;
};

class Lock : public mproc::detail::StdLockable<Lock> {
 public:
  /// Opens (or makes: a lock needs no creating) the lock at `address`.
  static Lock open(std::string_view address, LockOptions options = {});
  /// Deletes the lock's keys, fence counter included (a new lock starts at fence 1 again).
  static void unlink(std::string_view address, const Options& options = {});

  Lock(Lock&&) noexcept;
  Lock& operator=(Lock&&) noexcept;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  ~Lock();

  Held acquire() { return acquire_until(mproc::detail::Deadline::forever()); }
  Held acquire(mproc::detail::Timeout timeout) { return acquire_until(timeout); }
  Held acquire_for(mproc::detail::Timeout timeout) { return acquire_until(timeout); }
  Held acquire_until(mproc::detail::Deadline deadline);
  Held try_acquire() { return acquire_until(mproc::detail::Deadline::now()); }
  /// Releases the hold. mproc::UsageError when not held; LeaseLost when another holder
  /// acquired the lock since this one's lease ran out (the hold is over either way).
  void release();
  /// Clears the owner-died state (the caller repaired what the lock guards). Must be held.
  void mark_consistent();

  bool held() const noexcept;
  /// True once the renewal found that another holder took the lock over.
  bool lost() const noexcept;
  /// The fencing token of the current hold (0 when not held).
  std::uint64_t fence() const noexcept;
  std::string address() const;
  const char* kind_name() const noexcept { return "redis::Lock"; }

 private:
  struct Impl;
  explicit Lock(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::redis
