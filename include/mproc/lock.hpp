#pragma once
/// Crash-safe locks shared by processes: mproc::Lock and mproc::RLock.
///
/// A lock lives in a small block of shared memory that it maps when constructed. Create it
/// before starting the processes that use it: every child started afterwards inherits the same
/// block, so there is one lock for all of them, not a copy per child.
///
///   mproc::Lock lock;
///   mproc::Process p([&] { std::scoped_lock hold{lock}; print_three_lines(); });
///
/// Thread safety: every member may be called concurrently from any thread.
/// Process safety: any number of processes that inherited the lock may use it at once (an
///   anonymous lock reaches a spawned or forkserver child as `Lock&`: <mproc/start_method.hpp>).
/// Memory ordering: release() synchronises with the acquire that next takes the lock, in any
///   process: writes made before release() are visible after that acquire returns.
/// If the owner dies: when the thread or process holding the lock dies (SIGKILL included), the
///   kernel hands the lock to the next acquirer, whose acquire() returns `owner_died()`. From
///   then on the lock is *inconsistent*: every acquirer is told `owner_died()` (and the
///   std-style lock()/try_lock*() throw mproc::OwnerDied) until a holder repairs the guarded
///   state and calls mark_consistent(). Nothing hangs and nothing is hidden. Contrast: POSIX
///   makes such a mutex unusable forever once it is released unrepaired, Python's Lock stays
///   locked forever, Boost.Interprocess's mutex throws forever.
///
/// Ownership: unlike Python's `multiprocessing.Lock` (an ownerless semaphore that any process
/// may release), an mproc lock has an owner — the thread that acquired it — and releasing it
/// from any other thread or process throws mproc::UsageError (a contract breach, not an
/// operating-system failure: see <mproc/error.hpp>). The owner is what makes
/// recovery possible: an ownerless lock cannot tell that its holder died. For the ownerless
/// use (acquired in one process, released by another) use `mproc::Semaphore(1)`
/// (<mproc/semaphore.hpp>).
///
/// Waiting: an uncontended acquire or release is a single atomic instruction in user space;
/// a contended waiter sleeps in the kernel (futex) and uses no CPU. Timeouts use the
/// monotonic clock. Built on glibc's robust, process-shared pthread mutex (see
/// docs/design/locks.md for the layout and why).
///
/// Lifetime: destroying a Lock unmaps it from this process only; children that inherited it
/// keep using it. Destroying a lock that the calling thread still holds releases it first.
#include <pthread.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "mproc/acquired.hpp"
#include "mproc/detail/deadline.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/detail/std_lockable.hpp"

namespace mproc {

template <class T>
class Value;  // <mproc/value.hpp>: a received Value or Array rebuilds its RLock
template <class T>
class Array;

namespace detail {

// Whether this translation unit is built with ThreadSanitizer (GCC defines the macro, clang has
// the feature test).
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif

template <class T>
struct Travel;  // <mproc/start_method.hpp>: how an anonymous lock reaches a spawned child

/// What Lock and RLock share: everything but the constructor.
class RobustLock : public StdLockable<RobustLock> {
 public:
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;
  ~RobustLock();

  /// Blocks until this thread holds the lock. Returns `owner_died()` when the guarded state
  /// may be torn (see "If the owner dies" above). Throws mproc::UsageError when a
  /// non-recursive Lock is acquired again by the thread that holds it (the lock stays held).
  Acquired acquire() { return acquire_until(Deadline::forever()); }
  /// Waits at most `timeout` (monotonic clock); `timed_out()` if the lock was not acquired.
  Acquired acquire_for(Timeout timeout) { return acquire_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  Acquired acquire_until(Deadline deadline) {
    // Inline, the uncontended case: one try inside glibc and a look at the owner-death flag,
    // no more than a bare robust pthread mutex costs (bench/path_cost.sh).
    const int rc = ::pthread_mutex_trylock(mutex_);
    if (rc == 0 && *poisoned_ == 0) [[likely]]
      return Acquired::Status::ok;
    return acquire_slow(rc, deadline);
  }
  /// Python's spelling of acquire_for().
  Acquired acquire(Timeout timeout) { return acquire_until(timeout); }

  /// Releases one level of ownership. Throws mproc::UsageError when the calling thread does
  /// not hold the lock — including a thread of another process.
  void release() {
    // glibc checks the owner of every robust mutex (EPERM from any other thread, or unheld).
    // ThreadSanitizer reports such an unlock before glibc can refuse it: ask first there.
    if constexpr (kThreadSanitizer) {
      if (!held_by_this_thread()) release_failed(EPERM);
    }
    const int rc = ::pthread_mutex_unlock(mutex_);
    if (rc != 0) [[unlikely]]
      release_failed(rc);
  }

  /// Declares the guarded state repaired after an `owner_died()` acquire. Only the holder may
  /// call it (mproc::UsageError otherwise). A no-op on a consistent lock.
  void mark_consistent();

  /// Whether the calling thread holds the lock.
  bool held_by_this_thread() const noexcept;

  /// What error messages (and mproc::OwnerDied) call this lock: "Lock" or "RLock", with the
  /// name for a named one (`RLock "jobs"`); for the lock inside a Value, Array or Condition,
  /// the object it guards (`the lock of Value "counter"`, `the lock of an Array`).
  const char* kind_name() const noexcept { return label_.c_str(); }
  /// Named forms: whether this handle created the lock (open_or_create tells which).
  bool created() const noexcept { return created_; }

 protected:
  explicit RobustLock(bool recursive);
  RobustLock(const NamedSpec& spec, bool recursive);
  /// An anonymous lock's memory received from another process (Travel): its header is checked.
  RobustLock(Mapping mapping, bool recursive);
  /// The descriptor of an anonymous lock's memory (-1 for a named lock, or none was left).
  int memfd() const noexcept { return mapping_.memfd(); }

 private:
  struct Block;
  Block* block() const noexcept;
  static void init_block(void* mem, const void* recursive);
  Acquired acquire_slow(int rc, Deadline deadline);  // after a first try that did not simply win
  [[gnu::cold, noreturn]] void release_failed(int rc) const;
  void find_block() noexcept;  // sets mutex_ and poisoned_

  friend void name_guarded_lock(RobustLock& lock, const char* kind, std::string_view name);
  template <class U>
  friend struct Travel;  // reads memfd() of the lock inside a Value or Array

  bool created_ = false;  // before mapping_: its initialiser sets it
  Mapping mapping_;
  pthread_mutex_t* mutex_ = nullptr;         // the robust mutex, in mapping_
  const std::uint32_t* poisoned_ = nullptr;  // its owner-death flag, guarded by it
  std::string label_;                        // kind_name()
};

/// Makes `lock`'s messages name the object it guards: "the lock of Value \"counter\"", or
/// "the lock of a Value" when `name` is empty. For Value, Array and Condition, whose lock is an
/// RLock of their own that users reach through get_lock()/lock().
void name_guarded_lock(RobustLock& lock, const char* kind, std::string_view name);

}  // namespace detail

/// A mutual-exclusion lock shared by processes, with an owner and owner-death recovery.
/// Not recursive: acquiring it again from the thread that holds it throws mproc::UsageError
/// instead of deadlocking. See the file comment for the full contract.
///
/// Named: `Lock::create(name)`, `Lock::open(name)`, `Lock::open_or_create(name)` share one lock
/// between programs started separately (see <mproc/shared_memory.hpp> for names, modes and the
/// checks made on open; `SharedMemory::unlink(name)`-style removal is `Lock::unlink(name)`).
class Lock final : public detail::RobustLock, public detail::NamedFactories<Lock> {
 public:
  Lock() : RobustLock(false) {}
  static void unlink(std::string_view name);

 private:
  friend class detail::NamedFactories<Lock>;
  friend struct detail::Travel<Lock>;
  explicit Lock(const detail::NamedSpec& spec) : RobustLock(spec, false) {}
  explicit Lock(detail::Mapping mapping) : RobustLock(std::move(mapping), false) {}
};

/// A recursive lock shared by processes: the holding thread may acquire it again and must
/// release it as many times. Owner death and ownership work as for Lock; the recursion count
/// of a dead owner is discarded and the next acquirer holds the lock once.
class RLock final : public detail::RobustLock, public detail::NamedFactories<RLock> {
 public:
  RLock() : RobustLock(true) {}
  static void unlink(std::string_view name);

 private:
  friend class detail::NamedFactories<RLock>;
  friend class Condition;  // a named Condition attaches its own named RLock
  friend struct detail::Travel<RLock>;
  template <class>
  friend class Value;
  template <class>
  friend class Array;
  explicit RLock(const detail::NamedSpec& spec) : RobustLock(spec, true) {}
  explicit RLock(detail::Mapping mapping) : RobustLock(std::move(mapping), true) {}
};

}  // namespace mproc
