#pragma once
/// mproc::Barrier — N processes wait until all of them have arrived, as Python's
/// multiprocessing.Barrier.
///
///   mproc::Barrier start(3, [] { std::puts("all three here"); }, 10s);
///   // in each of 3 processes:
///   std::uint32_t index = start.wait();   // 0 .. 2, a different one for each
///
/// The action (optional) runs once per round, in the process that arrives last, before the others
/// are released; it must exist in that process, so create the Barrier before start(). If it
/// throws, the barrier breaks and the exception propagates from that process's wait().
///
/// Broken barriers: abort(), a wait() that times out, or a failing action break the barrier:
///   every waiter, and every later wait() until reset(), throws mproc::BrokenBarrier (Python's
///   BrokenBarrierError). reset() returns it to empty; processes waiting at that moment get
///   BrokenBarrier too.
/// Thread safety: every member may be called from any thread.
/// Process safety: any number of processes that inherited it (create it before start(); a
///   spawned or forkserver child gets it as a `Barrier&` argument: <mproc/start_method.hpp>).
/// Memory ordering: what each party wrote before wait() is visible to every party after its
///   wait() returns.
/// If a peer dies: a party that dies after arriving still counts (the others are released when
///   the rest arrive). A party that dies *before* arriving cannot be told apart from a slow one:
///   the others wait until a timeout breaks the barrier — which is why a Barrier takes a default
///   timeout. With no timeout anywhere, a dead party means waiting forever, as in Python.
///   A process that dies inside the barrier's own bookkeeping (a few instructions under its
///   internal lock) breaks it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string_view>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/error.hpp"

namespace mproc {

class BrokenBarrier : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class T>
struct Travel;  // <mproc/start_method.hpp>: how an anonymous Barrier reaches a spawned child
}  // namespace detail

class Barrier {
 public:
  /// `timeout` is the default for wait(); zero or negative: wait forever.
  explicit Barrier(std::uint32_t parties, std::function<void()> action = {},
                   detail::Clock::duration timeout = detail::Clock::duration::zero());
  /// Named, for programs started separately (names as for SharedMemory). `parties` is used only
  /// when this call creates it; the action and default timeout are this process's own.
  static Barrier create(std::string_view name, std::uint32_t parties, std::function<void()> action = {},
                        detail::Clock::duration timeout = detail::Clock::duration::zero(),
                        NamedOptions options = {}) {
    return Barrier(detail::NamedSpec{name, detail::OpenHow::create, options}, parties, std::move(action),
                   timeout);
  }
  static Barrier open(std::string_view name, std::function<void()> action = {},
                      detail::Clock::duration timeout = detail::Clock::duration::zero()) {
    return Barrier(detail::NamedSpec{name, detail::OpenHow::open, {}}, 1, std::move(action), timeout);
  }
  static Barrier open_or_create(std::string_view name, std::uint32_t parties,
                                std::function<void()> action = {},
                                detail::Clock::duration timeout = detail::Clock::duration::zero(),
                                NamedOptions options = {}) {
    return Barrier(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, parties,
                   std::move(action), timeout);
  }
  static void unlink(std::string_view name);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  /// Waits for the others, with the barrier's default timeout. Returns the arrival index.
  std::uint32_t wait();
  /// Waits at most `timeout` instead of the default.
  std::uint32_t wait_for(detail::Timeout timeout) { return wait_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  std::uint32_t wait_until(detail::Deadline deadline);
  /// Python's spelling of wait_for().
  std::uint32_t wait(detail::Timeout timeout) { return wait_until(timeout); }

  void reset();
  void abort();

  std::uint32_t parties() const noexcept;
  std::uint32_t n_waiting() const noexcept;
  bool broken() const noexcept;

 private:
  Barrier(const detail::NamedSpec& spec, std::uint32_t parties, std::function<void()> action,
          detail::Clock::duration timeout);
  friend struct detail::Travel<Barrier>;
  /// An anonymous Barrier's memory received from another process (Travel): its header is
  /// checked. The action and the default timeout are not sent (they are the sender's own, as
  /// for open()): none, and waiting forever.
  explicit Barrier(detail::Mapping mapping);
  struct Block;
  Block* block() const noexcept;
  static void init_block(void* mem, const void* parties);
  void lock_block();
  void unlock_block() noexcept;

  std::function<void()> action_;
  detail::Clock::duration timeout_;
  detail::Mapping mapping_;
};

}  // namespace mproc
