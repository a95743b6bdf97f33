#pragma once
// Waiting and waking (docs/design/queue.md, "Waking without a system call on the fast path",
// "Pipe"). A queue's sleepers sleep on futexes; a pipe direction's in ppoll on this end's
// socket, which the peer writes a byte to. Which of the two a ring uses is fixed when its view
// is made (RingState::waiter); each operation below switches on it once, and none of them is on
// the fast path of a put or a get (those only read the waiting and armed flags).
#include <atomic>
#include <cstdint>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/ring.hpp"
#include "os/sys.hpp"
#include "ring/layout.hpp"
#include "ring/side.hpp"

namespace mproc::detail {

enum class WaiterKind : std::uint8_t {
  futex,   // a queue: futexes in the ring (and an eventfd for fileno(), if it has one)
  socket,  // a pipe direction: this end's socket of that direction
};

inline WaiterKind waiter_of(const RingState& s) noexcept {
  return static_cast<WaiterKind>(s.waiter);
}

// The two halves of every handshake between a commit and a sleeper (queue.md, "Waking"): one
// side stores a word (head, tail; a waiting flag, an armed or signalled flag), then reads the
// other's. In a process registered for membarrier a commit runs no fence of its own: the
// sleeper's membarrier() runs one on every CPU that is running a registered process (and a
// context switch is one), so either the sleeper's re-check sees the commit or the committer sees
// the flag. A process that cannot register fences on every commit, as before.
inline void committer_fence() noexcept {
  if (!sys::membarrier_registered()) std::atomic_thread_fence(std::memory_order_seq_cst);
}
// If membarrier() fails here although this process registered (a seccomp filter applied since),
// a missed wake-up still ends at the sleeper's next heartbeat.
inline void sleeper_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sys::membarrier_registered()) (void)sys::membarrier_global();
}

/// Wakes the sleepers of side `sleepers` after a commit of the other side and committer_fence(),
/// when their waiting flag or the armed flag was seen set.
void wake(const RingState& s, Side sleepers) noexcept;
/// Sleeps on `self`'s wake-ups until woken, `until`, or a heartbeat passes. Returns false if the
/// peer end of a pipe is gone (POLLHUP). The caller has set its waiting flag, fenced, read `seen`
/// (self.wake_seq()) and re-checked.
bool sleep(const RingState& s, Side self, std::uint32_t seen, Clock::time_point until);
/// Whether a pipe's peer end is gone (always false for a queue).
bool peer_gone(const RingState& s) noexcept;
/// fileno(): a reader that found the ring empty (at tail word `t`) clears the armed descriptor.
/// Returns whether a record is waiting after all.
bool unsignal_if_empty(const RingState& s, Word t) noexcept;

}  // namespace mproc::detail
