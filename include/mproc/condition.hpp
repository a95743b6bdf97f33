#pragma once
/// mproc::Condition — a condition variable shared by processes, over a Lock or an RLock, as
/// Python's multiprocessing.Condition.
///
///   mproc::Lock lock;
///   mproc::Condition ready(lock);
///   // consumer                                   // producer
///   std::unique_lock hold{lock};                  std::scoped_lock hold{lock};
///   ready.wait_for([&] { return *count > 0; }, 5s);   ++*count; ready.notify();
///
/// wait() must be called with the lock held by the calling thread; it releases the lock (every
/// level of an RLock), sleeps until notified or timed out, and re-acquires it before returning.
/// notify(n) wakes at least n waiters if there are that many (possibly more: loop on a
/// predicate, or use wait_for); notify_all() wakes them all. Both need the lock held, as in
/// Python: waiting or notifying without it is an mproc::UsageError (Python's RuntimeError).
/// A Condition() with a lock of its own names itself in that lock's messages and in
/// mproc::OwnerDied (`the lock of a Condition`, `the lock of Condition "name"`).
///
/// Thread safety: every member may be called from any thread (holding the lock as required).
/// Process safety: any number of processes that inherited the Condition and its lock.
/// Memory ordering: that of the lock: a waiter sees what the notifier wrote before releasing.
/// If a peer dies: a waiter that dies costs nothing. A process that dies while holding the lock
///   makes the lock report owner death to the next acquirer, as always — including a waiter
///   re-acquiring it: wait() then reports owner_died(), and wait_for() throws mproc::OwnerDied
///   (with the lock held, so the caller's guard releases it). A notifier that dies between
///   notifying and waking delays waiters by at most 100 ms (heartbeat).
#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/error.hpp"
#include "mproc/lock.hpp"

namespace mproc {

/// The outcome of Condition::wait: true unless it timed out. Either way the lock is held again.
class [[nodiscard]] Waited {
 public:
  constexpr Waited(bool timed_out, bool owner_died) noexcept
      : timed_out_(timed_out), owner_died_(owner_died) {}
  constexpr explicit operator bool() const noexcept { return !timed_out_; }
  constexpr bool timed_out() const noexcept { return timed_out_; }
  /// The lock was re-acquired from a dead owner (or is still inconsistent): see lock.hpp.
  constexpr bool owner_died() const noexcept { return owner_died_; }

 private:
  bool timed_out_, owner_died_;
};

class Condition;

namespace detail {
template <class T>
struct Travel;  // <mproc/start_method.hpp>: how a Condition reaches a spawned child
/// A Condition over a lock of the caller's (Condition(lock)): its own memory only. The lock
/// travels by itself, and the Condition is rebuilt over the lock that arrived (the Python
/// module's Condition(lock); a C++ entry cannot take one yet, see start-methods.md).
std::string encode_condition_block(const Condition& condition, std::vector<int>& fds);
/// Rebuilds it from the received descriptors (in a child or under AdoptedDescriptors), over `lock`.
std::unique_ptr<Condition> decode_condition_over(const std::string& bytes, RobustLock& lock);
}  // namespace detail

class Condition : public detail::NamedFactories<Condition> {
 public:
  /// Over `lock` (a Lock or an RLock), which must outlive the Condition.
  explicit Condition(detail::RobustLock& lock);
  /// Over an RLock of its own, as Python's Condition() (reach it through lock()).
  Condition();
  // Named (create/open/open_or_create from NamedFactories): the condition "<name>" with its own
  // RLock "<name>.lock" (names as for SharedMemory, at most 195 characters).
  /// Removes the condition and its lock.
  static void unlink(std::string_view name);
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;
  ~Condition();

  Waited wait() { return wait_until(detail::Deadline::forever()); }
  /// Waits at most `timeout` for a notify.
  Waited wait_for(detail::Timeout timeout) { return wait_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  Waited wait_until(detail::Deadline deadline);
  /// Python's spelling of wait_for(timeout).
  Waited wait(detail::Timeout timeout) { return wait_until(timeout); }

  /// Waits until `predicate()` is true or `deadline` passes; returns the predicate's last value.
  /// Throws mproc::OwnerDied if the lock came back from a dead owner.
  template <class Pred>
  requires std::invocable<Pred&>
  bool wait_until(Pred predicate, detail::Deadline deadline) {
    while (!predicate()) {
      const Waited w = wait_until(deadline);
      if (w.owner_died()) detail::throw_owner_died(lock_->kind_name());
      if (w.timed_out()) return predicate();
    }
    return true;
  }
  /// The same with a timeout (Python's wait_for(predicate, timeout)).
  template <class Pred>
  requires std::invocable<Pred&>
  bool wait_for(Pred predicate, detail::Timeout timeout) { return wait_until(predicate, timeout); }
  template <class Pred>
  requires std::invocable<Pred&>
  void wait_for(Pred predicate) { (void)wait_until(predicate, detail::Deadline::forever()); }

  void notify(std::uint32_t n = 1);
  void notify_all();

  /// The lock this Condition uses.
  detail::RobustLock& lock() noexcept { return *lock_; }

 private:
  friend class detail::NamedFactories<Condition>;
  template <class>
  friend struct detail::Travel;
  friend std::string detail::encode_condition_block(const Condition&, std::vector<int>&);
  friend std::unique_ptr<Condition> detail::decode_condition_over(const std::string&, detail::RobustLock&);
  explicit Condition(const detail::NamedSpec& spec);
  /// Over `lock`, with memory received from another process (its header checked).
  Condition(detail::RobustLock& lock, detail::Mapping mapping);
  /// Over an RLock of its own, both received from another process (both headers checked).
  Condition(detail::Mapping own_lock, detail::Mapping mapping);
  struct Block;
  Block* block() const noexcept;
  static void init_block(void* mem, const void* unused);
  void check_held(const char* what) const;

  std::unique_ptr<RLock> own_lock_;
  detail::RobustLock* lock_;
  detail::Mapping mapping_;
};

}  // namespace mproc
