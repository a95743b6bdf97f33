#pragma once
/// mproc::Semaphore and mproc::BoundedSemaphore — counting semaphores shared by processes, as
/// Python's multiprocessing.Semaphore / BoundedSemaphore.
///
///   mproc::Semaphore slots(3);                 // at most three processes inside at once
///   mproc::Process p([&] { slots.acquire(); work(); slots.release(); });
///
/// A semaphore has no owner: any thread of any process may release what another acquired. That
/// is what makes Semaphore(1) the ownerless lock (Python's Lock semantics), and also why it
/// cannot recover a count held by a process that died: nobody can tell that the count was
/// "held". For mutual exclusion that survives the death of its holder, use mproc::Lock.
///
/// Like a Lock, a Semaphore lives in a small block of shared memory mapped by the constructor:
/// create it before starting the processes that use it; every child inherits the same one.
///
/// Thread safety: every member may be called from any thread.
/// Process safety: any number of processes that inherited it (create it before start(); a
///   spawned or forkserver child gets it as a `Semaphore&` or `BoundedSemaphore&` argument:
///   <mproc/start_method.hpp>).
/// Memory ordering: a release() synchronises with the acquire() that takes that count.
/// If a peer dies: a count acquired by a process that then dies is lost (release it in a
///   handler, or use Lock). A process that dies while *waiting* costs nothing: the other
///   waiters go on. A waker that dies between raising the count and waking a sleeper delays
///   that sleeper by at most 100 ms (waiters re-check on a heartbeat).
/// Waiting: an acquire spins briefly, then sleeps on a futex in shared memory (no CPU use); an
///   uncontended acquire or release is one atomic instruction, with no system call.
#include <chrono>
#include <cstdint>
#include <string_view>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/error.hpp"

namespace mproc {

class BoundedSemaphore;
namespace detail {
template <class T>
struct Travel;  // <mproc/start_method.hpp>: how an anonymous semaphore reaches a spawned child
}  // namespace detail

class Semaphore {
 public:
  /// The initial count.
  explicit Semaphore(std::uint32_t value = 1) : Semaphore(value, 0) {}
  /// Named forms, for programs started separately (names, modes and checks: shared_memory.hpp).
  /// `value` is used only when this call creates it.
  static Semaphore create(std::string_view name, std::uint32_t value, NamedOptions options = {}) {
    return Semaphore(detail::NamedSpec{name, detail::OpenHow::create, options}, value, 0);
  }
  static Semaphore open(std::string_view name) {
    return Semaphore(detail::NamedSpec{name, detail::OpenHow::open, {}}, 0, 0);
  }
  static Semaphore open_or_create(std::string_view name, std::uint32_t value, NamedOptions options = {}) {
    return Semaphore(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, value, 0);
  }
  static void unlink(std::string_view name);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// Takes one count, waiting while it is zero. Always true (for symmetry with the timed form).
  bool acquire() { return acquire_until(detail::Deadline::forever()); }
  /// Waits at most `timeout`; false if no count became available.
  bool acquire_for(detail::Timeout timeout) { return acquire_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  bool acquire_until(detail::Deadline deadline);
  /// No waiting.
  bool try_acquire() { return acquire_until(detail::Deadline::now()); }
  /// Python's spelling of acquire_for().
  bool acquire(detail::Timeout timeout) { return acquire_until(timeout); }

  /// Returns `n` counts, waking as many waiters. For a BoundedSemaphore, releasing beyond the
  /// initial value is an mproc::UsageError (Python's ValueError) and changes nothing.
  void release(std::uint32_t n = 1);

  /// The count now (Python's get_value()).
  std::uint32_t get_value() const noexcept;

  // std::counting_semaphore-style names, so generic code works.
  bool try_acquire_for(detail::Timeout timeout) { return acquire_until(timeout); }
  bool try_acquire_until(detail::Deadline deadline) { return acquire_until(deadline); }

 protected:
  /// `bound` 0: unbounded.
  Semaphore(std::uint32_t value, std::uint32_t bound);
  /// `bounded` names the kind to create or expect: a BoundedSemaphore opened by name does not
  /// know its bound (it comes from the segment), so the bound cannot tell.
  Semaphore(const detail::NamedSpec& spec, std::uint32_t value, std::uint32_t bound, bool bounded = false);
  /// An anonymous semaphore's memory received from another process (Travel): its header is
  /// checked; `bounded`: it must be a BoundedSemaphore's, else either kind is taken.
  Semaphore(detail::Mapping mapping, bool bounded);

 private:
  friend struct detail::Travel<Semaphore>;
  friend struct detail::Travel<BoundedSemaphore>;
  struct Block;
  Block* block() const noexcept;
  static void init_block(void* mem, const void* value_and_bound);
  detail::Mapping mapping_;
};

/// A Semaphore whose count may never exceed its initial value: a release() without a matching
/// acquire() is caught as an error instead of silently raising the limit.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::uint32_t value = 1) : Semaphore(value, value) {}
  static BoundedSemaphore create(std::string_view name, std::uint32_t value, NamedOptions options = {}) {
    return BoundedSemaphore(detail::NamedSpec{name, detail::OpenHow::create, options}, value);
  }
  static BoundedSemaphore open(std::string_view name) {
    return BoundedSemaphore(detail::NamedSpec{name, detail::OpenHow::open, {}}, 0);
  }
  static BoundedSemaphore open_or_create(std::string_view name, std::uint32_t value,
                                         NamedOptions options = {}) {
    return BoundedSemaphore(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, value);
  }

 private:
  friend struct detail::Travel<BoundedSemaphore>;
  BoundedSemaphore(const detail::NamedSpec& spec, std::uint32_t value)
      : Semaphore(spec, value, value, true) {}
  explicit BoundedSemaphore(detail::Mapping mapping) : Semaphore(std::move(mapping), true) {}
};

}  // namespace mproc
