#pragma once
/// mproc::Event — a flag that processes can set, clear and wait for, as Python's
/// multiprocessing.Event.
///
///   mproc::Event ready;
///   mproc::Process p([&] { load(); ready.set(); });
///   p.start();
///   if (!ready.wait(5s)) give_up();
///
/// Thread safety: every member may be called from any thread.
/// Process safety: any number of processes that inherited it (create it before start(); a
///   spawned or forkserver child gets it as an `Event&` argument: <mproc/start_method.hpp>).
/// Memory ordering: what a process wrote before set() is visible to a waiter after wait()
///   returns true because of that set().
/// If a peer dies: the flag stays as it was; waiters go on waiting for a set() from someone
///   else (wait with a timeout if the only setter may die). A setter that dies between raising
///   the flag and waking sleepers delays them by at most 100 ms (heartbeat).
/// Waiting: spins briefly, then sleeps on a futex in shared memory; is_set() and set() on a
///   flag nobody waits for make no system call.
#include <chrono>
#include <string_view>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"

namespace mproc {

namespace detail {
template <class T>
struct Travel;  // <mproc/start_method.hpp>: how an anonymous Event reaches a spawned child
}  // namespace detail

class Event : public detail::NamedFactories<Event> {
 public:
  Event();
  // Named forms, for programs started separately: create(name, mode), open(name),
  // open_or_create(name, mode) (NamedFactories; names, modes and checks: shared_memory.hpp).
  static void unlink(std::string_view name);
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void set() noexcept;
  void clear() noexcept;
  bool is_set() const noexcept;

  /// Blocks until the flag is set. Always true.
  bool wait() { return wait_until(detail::Deadline::forever()); }
  /// Waits at most `timeout`; returns whether the flag is set.
  bool wait_for(detail::Timeout timeout) { return wait_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  bool wait_until(detail::Deadline deadline);
  /// Python's spelling of wait_for().
  bool wait(detail::Timeout timeout) { return wait_until(timeout); }

 private:
  friend class detail::NamedFactories<Event>;
  friend struct detail::Travel<Event>;
  explicit Event(const detail::NamedSpec& spec);
  /// An anonymous Event's memory received from another process (Travel): its header is checked.
  explicit Event(detail::Mapping mapping);
  struct Block;
  Block* block() const noexcept;
  static void init_block(void* mem, const void* unused);
  detail::Mapping mapping_;
};

}  // namespace mproc
